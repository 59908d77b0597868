//! The shop's stable world: a customer population and a product catalog.
//!
//! Both depend only on the seed, so every generator instance of a pipeline
//! sells the same products to the same customers; names come from `fake`,
//! geography and merchandise from the curated tables below.

use chrono::NaiveDate;
use fake::Fake;
use fake::faker::internet::raw::FreeEmailProvider;
use fake::faker::name::raw::{FirstName, LastName};
use fake::locales::{DE_DE, EN, FR_FR, IT_IT, JA_JP, PT_BR, PT_PT};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::weighted::WeightedIndex;
use rand_distr::{Distribution, LogNormal};
use rust_decimal::Decimal;
use shopstream_model::{Customer, Gender, Product};

#[derive(Debug, Clone, Copy)]
enum Locale {
    En,
    De,
    Fr,
    It,
    PtBr,
    PtPt,
    Ja,
}

struct Country {
    code: &'static str,
    weight: u32,
    locale: Locale,
    cities: &'static [&'static str],
}

const COUNTRIES: &[Country] = &[
    Country {
        code: "US",
        weight: 34,
        locale: Locale::En,
        cities: &[
            "New York",
            "Los Angeles",
            "Chicago",
            "Houston",
            "Phoenix",
            "Philadelphia",
            "San Diego",
            "Dallas",
            "Seattle",
            "Boston",
            "Denver",
            "Austin",
            "Atlanta",
            "Miami",
        ],
    },
    Country {
        code: "GB",
        weight: 12,
        locale: Locale::En,
        cities: &[
            "London",
            "Manchester",
            "Birmingham",
            "Leeds",
            "Glasgow",
            "Liverpool",
            "Bristol",
            "Edinburgh",
        ],
    },
    Country {
        code: "DE",
        weight: 12,
        locale: Locale::De,
        cities: &[
            "Berlin",
            "Hamburg",
            "Munich",
            "Cologne",
            "Frankfurt",
            "Stuttgart",
            "Düsseldorf",
            "Leipzig",
        ],
    },
    Country {
        code: "FR",
        weight: 10,
        locale: Locale::Fr,
        cities: &[
            "Paris",
            "Marseille",
            "Lyon",
            "Toulouse",
            "Nice",
            "Nantes",
            "Bordeaux",
            "Lille",
        ],
    },
    Country {
        code: "CA",
        weight: 7,
        locale: Locale::En,
        cities: &[
            "Toronto",
            "Montreal",
            "Vancouver",
            "Calgary",
            "Ottawa",
            "Edmonton",
        ],
    },
    Country {
        code: "IT",
        weight: 6,
        locale: Locale::It,
        cities: &["Rome", "Milan", "Naples", "Turin", "Florence", "Bologna"],
    },
    Country {
        code: "BR",
        weight: 6,
        locale: Locale::PtBr,
        cities: &[
            "São Paulo",
            "Rio de Janeiro",
            "Brasília",
            "Salvador",
            "Belo Horizonte",
            "Curitiba",
        ],
    },
    Country {
        code: "AU",
        weight: 5,
        locale: Locale::En,
        cities: &["Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide"],
    },
    Country {
        code: "JP",
        weight: 5,
        locale: Locale::Ja,
        cities: &["Tokyo", "Osaka", "Yokohama", "Nagoya", "Sapporo", "Fukuoka"],
    },
    Country {
        code: "PT",
        weight: 3,
        locale: Locale::PtPt,
        cities: &["Lisbon", "Porto", "Braga", "Coimbra"],
    },
];

const SEGMENTS: &[(&str, u32)] = &[("consumer", 72), ("small_business", 18), ("enterprise", 10)];
/// Online shoppers split about evenly; a few do not say.
const GENDERS: &[(Gender, u32)] = &[(Gender::Female, 50), (Gender::Male, 47), (Gender::Unspecified, 3)];
/// Age at sign-up (youngest, oldest, weight): online shoppers are mostly
/// 25-44, with long tails either side (the shape of the age shares in
/// Statista's and Pew's online-shopping surveys).
const AGE_BANDS: &[(u32, u32, u32)] = &[
    (18, 24, 14),
    (25, 34, 25),
    (35, 44, 22),
    (45, 54, 17),
    (55, 64, 13),
    (65, 80, 9),
];

pub(crate) struct Category {
    pub name: &'static str,
    /// Share of the catalog.
    weight: u32,
    /// Median list price; prices are log-normal around it (right-skewed).
    median_price: f64,
    /// Log-normal shape: larger means a longer tail of expensive items.
    sigma: f64,
    brands: &'static [&'static str],
    nouns: &'static [&'static str],
}

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Pro",
    "Ultra",
    "Essential",
    "Premium",
    "Compact",
    "Eco",
    "Deluxe",
    "Lite",
    "Max",
    "Original",
    "Signature",
    "Everyday",
    "Studio",
];

const VARIANTS: &[&str] = &[
    "Black", "White", "Graphite", "Navy", "Sage", "Sand", "Red", "Small", "Medium", "Large", "2-Pack", "XL",
];

pub(crate) const CATEGORIES: &[Category] = &[
    Category {
        name: "Electronics",
        weight: 15,
        median_price: 89.0,
        sigma: 0.95,
        brands: &["Sonaris", "Voltix", "Nexon", "Aurion", "Pixelon", "Kyro"],
        nouns: &[
            "Wireless Earbuds",
            "Bluetooth Speaker",
            "Smartwatch",
            "4K Monitor",
            "Mechanical Keyboard",
            "Gaming Mouse",
            "USB-C Hub",
            "Portable SSD",
            "Noise-Cancelling Headphones",
            "Action Camera",
            "E-Reader",
            "Power Bank",
            "Webcam",
            "Smart Plug",
        ],
    },
    Category {
        name: "Home & Kitchen",
        weight: 18,
        median_price: 35.0,
        sigma: 0.8,
        brands: &["Casaluxe", "Hearthwell", "Nordhaus", "Kitchora"],
        nouns: &[
            "Chef's Knife",
            "Cast Iron Skillet",
            "Espresso Machine",
            "Blender",
            "Air Fryer",
            "Cutting Board",
            "Dutch Oven",
            "Electric Kettle",
            "Bedsheet Set",
            "Bath Towel Set",
            "Table Lamp",
            "Storage Baskets",
        ],
    },
    Category {
        name: "Clothing",
        weight: 20,
        median_price: 32.0,
        sigma: 0.6,
        brands: &["Northline", "Urban Thread", "Alder & Co", "Marlowe"],
        nouns: &[
            "T-Shirt",
            "Hoodie",
            "Denim Jeans",
            "Rain Jacket",
            "Wool Sweater",
            "Chinos",
            "Sneakers",
            "Running Shorts",
            "Puffer Vest",
            "Linen Shirt",
        ],
    },
    Category {
        name: "Books",
        weight: 12,
        median_price: 14.0,
        sigma: 0.45,
        brands: &["Pinecrest Press", "Lantern House", "Bluequill", "Meridian Books"],
        nouns: &[
            "Cookbook",
            "Thriller Novel",
            "Travel Guide",
            "Science Fiction Novel",
            "Biography",
            "Picture Book",
            "Programming Handbook",
            "Poetry Collection",
        ],
    },
    Category {
        name: "Sports & Outdoors",
        weight: 10,
        median_price: 40.0,
        sigma: 0.8,
        brands: &["Trailforge", "Summitra", "Velocita", "Ridgeway"],
        nouns: &[
            "Yoga Mat",
            "Dumbbell Set",
            "Camping Tent",
            "Hiking Backpack",
            "Water Bottle",
            "Cycling Helmet",
            "Trekking Poles",
            "Resistance Bands",
            "Sleeping Bag",
        ],
    },
    Category {
        name: "Beauty & Personal Care",
        weight: 10,
        median_price: 18.0,
        sigma: 0.6,
        brands: &["Lumière", "Verdana Botanics", "Solace", "Petalia"],
        nouns: &[
            "Face Serum",
            "Moisturizer",
            "Shampoo",
            "Electric Toothbrush",
            "Hair Dryer",
            "Sunscreen SPF 50",
            "Lip Balm Set",
            "Eau de Parfum",
        ],
    },
    Category {
        name: "Toys & Games",
        weight: 8,
        median_price: 25.0,
        sigma: 0.7,
        brands: &["Playwise", "Brickly", "Tumble & Co"],
        nouns: &[
            "Building Blocks Set",
            "Board Game",
            "1000-Piece Puzzle",
            "Plush Bear",
            "RC Car",
            "Science Kit",
            "Card Game",
        ],
    },
    Category {
        name: "Grocery",
        weight: 7,
        median_price: 7.5,
        sigma: 0.5,
        brands: &["Harvest Table", "Green Basket", "Origin Roasters"],
        nouns: &[
            "Ground Coffee",
            "Green Tea",
            "Olive Oil",
            "Dark Chocolate",
            "Granola",
            "Pasta",
            "Honey",
            "Almonds",
        ],
    },
];

/// Lowest and highest list prices, in cents.
const MIN_PRICE_CENTS: i64 = 99;
const MAX_PRICE_CENTS: i64 = 499_999;

/// Signups spread from this date over `SIGNUP_SPAN_DAYS`, skewed to recent ones.
/// Fixed (not "today") so the same seed gives the same population every day.
const SIGNUP_START: (i32, u32, u32) = (2019, 1, 1);
const SIGNUP_SPAN_DAYS: i64 = 2_860;

pub struct Catalog {
    pub customers: Vec<Customer<'static>>,
    pub products: Vec<Product<'static>>,
}

impl Catalog {
    /// Build the population; depends only on the RNG's state.
    pub fn generate<R: Rng>(rng: &mut R, customers: usize, products: usize) -> Self {
        let draws = Draws::new();
        let customers = (0..customers).map(|i| customer(rng, &draws, i)).collect();
        let mut products: Vec<_> = (0..products).map(|i| product(rng, &draws, i)).collect();
        // Popularity is by position (see `traffic`); shuffle so that the best
        // sellers are spread across categories and ids.
        products.shuffle(rng);
        Self { customers, products }
    }
}

fn pick<'a, R: Rng, T>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A weighted table and its distribution, built once per world (a world
/// has hundreds of thousands of customers; a start-up is waited for).
struct Weighted<T: 'static> {
    items: &'static [T],
    dist: WeightedIndex<u32>,
}

impl<T> Weighted<T> {
    fn new(items: &'static [T], weight: impl Fn(&T) -> u32) -> Self {
        // The tables are non-empty constants with positive weights.
        let dist = WeightedIndex::new(items.iter().map(weight)).expect("static weights are valid");
        Self { items, dist }
    }

    fn pick<R: Rng>(&self, rng: &mut R) -> &'static T {
        &self.items[self.dist.sample(rng)]
    }
}

/// The weighted tables a world is drawn from.
struct Draws {
    countries: Weighted<Country>,
    segments: Weighted<(&'static str, u32)>,
    genders: Weighted<(Gender, u32)>,
    ages: Weighted<(u32, u32, u32)>,
    categories: Weighted<Category>,
}

impl Draws {
    fn new() -> Self {
        Self {
            countries: Weighted::new(COUNTRIES, |c| c.weight),
            segments: Weighted::new(SEGMENTS, |s| s.1),
            genders: Weighted::new(GENDERS, |g| g.1),
            ages: Weighted::new(AGE_BANDS, |b| b.2),
            categories: Weighted::new(CATEGORIES, |c| c.weight),
        }
    }
}

fn customer<R: Rng>(rng: &mut R, draws: &Draws, index: usize) -> Customer<'static> {
    let country = draws.countries.pick(rng);
    let (first, last): (String, String) = match country.locale {
        Locale::En => (FirstName(EN).fake_with_rng(rng), LastName(EN).fake_with_rng(rng)),
        Locale::De => (
            FirstName(DE_DE).fake_with_rng(rng),
            LastName(DE_DE).fake_with_rng(rng),
        ),
        Locale::Fr => (
            FirstName(FR_FR).fake_with_rng(rng),
            LastName(FR_FR).fake_with_rng(rng),
        ),
        Locale::It => (
            FirstName(IT_IT).fake_with_rng(rng),
            LastName(IT_IT).fake_with_rng(rng),
        ),
        Locale::PtBr => (
            FirstName(PT_BR).fake_with_rng(rng),
            LastName(PT_BR).fake_with_rng(rng),
        ),
        Locale::PtPt => (
            FirstName(PT_PT).fake_with_rng(rng),
            LastName(PT_PT).fake_with_rng(rng),
        ),
        Locale::Ja => (
            FirstName(JA_JP).fake_with_rng(rng),
            LastName(JA_JP).fake_with_rng(rng),
        ),
    };
    let name = match country.locale {
        Locale::Ja => format!("{last} {first}"),
        _ => format!("{first} {last}"),
    };
    let provider: String = FreeEmailProvider(EN).fake_with_rng(rng);
    let local = email_local_part(&first, &last, index);
    let segment = draws.segments.pick(rng).0;
    // u^0.6 skews signups towards the end of the window: the shop is growing.
    let u: f64 = rng.random();
    let days = (u.powf(0.6) * SIGNUP_SPAN_DAYS as f64) as i64;
    let (y, m, d) = SIGNUP_START;
    let signup_date =
        NaiveDate::from_ymd_opt(y, m, d).expect("valid constant date") + chrono::Days::new(days as u64);
    // Drawn after everything else, so a seed's earlier attributes stay as they were.
    let gender = draws.genders.pick(rng).0;
    let &(youngest, oldest, _) = draws.ages.pick(rng);
    let age_days = rng.random_range(u64::from(youngest) * 365..(u64::from(oldest) + 1) * 365);
    let birth_date = signup_date - chrono::Days::new(age_days);
    Customer {
        customer_id: format!("C{index:07}").into(),
        name: name.into(),
        email: format!("{local}@{provider}").into(),
        city: (*pick(rng, country.cities)).into(),
        country: country.code.into(),
        segment: segment.into(),
        signup_date,
        gender: Some(gender),
        birth_date: Some(birth_date),
    }
}

/// `first.last42`, ASCII only; names in other scripts fall back to `customer42`.
fn email_local_part(first: &str, last: &str, index: usize) -> String {
    let slug = |s: &str| -> String {
        s.chars()
            .filter_map(|c| {
                let c = match c {
                    'à' | 'á' | 'â' | 'ã' | 'ä' => 'a',
                    'ç' => 'c',
                    'è' | 'é' | 'ê' | 'ë' => 'e',
                    'ì' | 'í' | 'î' | 'ï' => 'i',
                    'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
                    'ù' | 'ú' | 'û' | 'ü' => 'u',
                    'ß' => 's',
                    c => c,
                };
                c.is_ascii_alphanumeric().then(|| c.to_ascii_lowercase())
            })
            .collect()
    };
    let (f, l) = (slug(first), slug(last));
    if f.is_empty() || l.is_empty() {
        format!("customer{index}")
    } else {
        format!("{f}.{l}{}", index % 1000)
    }
}

fn product<R: Rng>(rng: &mut R, draws: &Draws, index: usize) -> Product<'static> {
    let category = draws.categories.pick(rng);
    let brand = *pick(rng, category.brands);
    let noun = *pick(rng, category.nouns);
    let adjective = *pick(rng, ADJECTIVES);
    let name = if rng.random_bool(0.5) {
        format!("{brand} {adjective} {noun} ({})", pick(rng, VARIANTS))
    } else {
        format!("{brand} {adjective} {noun}")
    };
    Product {
        product_id: format!("P{index:06}").into(),
        name: name.into(),
        category: category.name.into(),
        brand: brand.into(),
        list_price: list_price(rng, category),
    }
}

/// Log-normal around the category median, then shop-style charm pricing
/// (x.99 below 100, x4.99/x9.99 above).
fn list_price<R: Rng>(rng: &mut R, category: &Category) -> Decimal {
    let dist =
        LogNormal::new(category.median_price.ln(), category.sigma).expect("static parameters are valid");
    let raw: f64 = dist.sample(rng);
    let cents = if raw < 100.0 {
        (raw.floor() as i64) * 100 + 99
    } else {
        ((raw / 5.0).round() as i64) * 500 - 1
    };
    Decimal::new(cents.clamp(MIN_PRICE_CENTS, MAX_PRICE_CENTS), 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;
    use std::collections::{HashMap, HashSet};

    fn catalog(seed: u64) -> Catalog {
        Catalog::generate(&mut Xoshiro256PlusPlus::seed_from_u64(seed), 2_000, 1_000)
    }

    #[test]
    fn same_seed_same_world() {
        let (a, b) = (catalog(7), catalog(7));
        assert_eq!(a.customers, b.customers);
        assert_eq!(a.products, b.products);
        assert_ne!(a.customers, catalog(8).customers);
    }

    #[test]
    fn customers_are_plausible_and_unique() {
        let c = catalog(1);
        let ids: HashSet<_> = c.customers.iter().map(|c| c.customer_id.clone()).collect();
        assert_eq!(ids.len(), 2_000);
        let countries: HashSet<_> = c.customers.iter().map(|c| c.country.clone()).collect();
        assert!(countries.len() >= 8, "{countries:?}");
        for cust in &c.customers {
            assert!(
                cust.email.contains('@') && cust.email.is_ascii(),
                "{}",
                cust.email
            );
            assert!(!cust.name.trim().is_empty());
            assert!(cust.signup_date.format("%Y").to_string().as_str() >= "2019");
        }
        let consumers = c.customers.iter().filter(|c| c.segment == "consumer").count();
        assert!(
            (1_200..1_700).contains(&consumers),
            "consumer share {consumers}/2000"
        );
        // Genders about even, ages 18-80 at sign-up and mostly 25-44.
        let female = c
            .customers
            .iter()
            .filter(|c| c.gender == Some(Gender::Female))
            .count();
        assert!((850..1_150).contains(&female), "female share {female}/2000");
        let ages: Vec<i64> = c
            .customers
            .iter()
            .map(|c| (c.signup_date - c.birth_date.expect("every customer has one")).num_days() / 365)
            .collect();
        assert!(ages.iter().all(|a| (18..=81).contains(a)), "{ages:?}");
        let core = ages.iter().filter(|a| (25..45).contains(*a)).count();
        assert!((800..1_150).contains(&core), "25-44 share {core}/2000");
    }

    #[test]
    fn prices_are_positive_charm_priced_and_right_skewed() {
        let c = catalog(3);
        let mut prices: Vec<Decimal> = c.products.iter().map(|p| p.list_price).collect();
        prices.sort();
        assert!(
            prices
                .iter()
                .all(|p| *p >= Decimal::new(MIN_PRICE_CENTS, 2) && p.scale() == 2)
        );
        assert!(prices.iter().all(|p| (p.mantissa() % 100) == 99), "charm pricing");
        let median = prices[prices.len() / 2];
        let mean: Decimal = prices.iter().sum::<Decimal>() / Decimal::from(prices.len());
        assert!(mean > median, "right-skewed: mean {mean} > median {median}");
        // Category medians are ordered as configured: electronics dearer than groceries.
        let mut by_cat: HashMap<&str, Vec<Decimal>> = HashMap::new();
        for p in &c.products {
            by_cat.entry(&p.category).or_default().push(p.list_price);
        }
        let mut med = |name: &str| {
            let v = by_cat.get_mut(name).unwrap();
            v.sort();
            v[v.len() / 2]
        };
        assert!(med("Electronics") > med("Books"));
        assert!(med("Books") > med("Grocery"));
        assert_eq!(by_cat.len(), CATEGORIES.len());
    }

    #[test]
    fn email_local_parts_are_ascii() {
        assert_eq!(email_local_part("José", "Müller", 1042), "jose.muller42");
        assert_eq!(email_local_part("太郎", "山田", 7), "customer7");
    }
}
