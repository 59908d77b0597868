//! Shopper behaviour: interleaved sessions that follow a funnel.
//!
//! A session browses a few products (popular ones more often), adds some to
//! the cart and sometimes checks out. Many sessions are open at once, so
//! customers interleave on the wire as they would in a real shop; each
//! session's own events stay in order and share the customer key, so they
//! keep their order within a Kafka partition. Placed orders live on in
//! [`crate::lifecycle`]: their completions, cancellations and refunds come
//! later, from the shop rather than the shopper. A share of sessions is
//! late: a phone that was offline sends its events minutes to hours after
//! they happened.

use chrono::{DateTime, Timelike, Utc};
use rand::Rng;
use rand_distr::weighted::WeightedIndex;
use rand_distr::{Distribution, Geometric, Zipf};
use rust_decimal::{Decimal, RoundingStrategy};
use shopstream_model::{Channel, Device, Event, EventType, LineItem, Order, OrderUpdate, SCHEMA_VERSION};
use uuid::Uuid;

use crate::catalog::Catalog;
use crate::lifecycle::{FollowUp, Lifecycle, LifecycleRates, Placer, Step};
use crate::summary::Contribution;

/// Funnel parameters; defaults resemble a busy mid-size web shop, calibrated
/// to published figures: the Baymard Institute's average of documented cart
/// abandonment rates is about 70% (so 30% of carts check out), and session
/// conversion in e-commerce benchmarks is 2-3% (a 2.6% chance per viewed
/// product of adding it gives about 9% of sessions a cart, 2.7% an order).
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Sessions open at the same time.
    pub concurrent_sessions: usize,
    /// Chance that a viewed product goes into the cart.
    pub cart_probability: f64,
    /// Chance that a session with a non-empty cart checks out (1 - cart abandonment).
    pub purchase_probability: f64,
    /// Geometric parameter for extra page views after the first (mean (1-p)/p).
    pub extra_views_p: f64,
    /// Chance that an order line carries a discount.
    pub discount_probability: f64,
    /// Zipf exponent of product popularity.
    pub product_skew: f64,
    /// Zipf exponent of customer activity.
    pub customer_skew: f64,
    /// Currency of the shop's prices.
    pub currency: &'static str,
    /// What happens to orders after checkout.
    pub lifecycle: LifecycleRates,
    /// Share of sessions whose events arrive late.
    pub late_ratio: f64,
    /// The most a late session's events lag behind their event time.
    pub late_by: std::time::Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            concurrent_sessions: 64,
            cart_probability: 0.026,
            purchase_probability: 0.30,
            extra_views_p: 0.28,
            discount_probability: 0.25,
            product_skew: 1.05,
            customer_skew: 0.6,
            currency: "USD",
            lifecycle: LifecycleRates::default(),
            late_ratio: 0.02,
            late_by: std::time::Duration::from_secs(2 * 3600),
        }
    }
}

const MAX_VIEWS: u64 = 40;
const DISCOUNT_PERCENTS: &[i64] = &[5, 10, 15, 20, 25, 30];
const PAYMENT_METHODS: &[(&str, u32)] = &[
    ("card", 55),
    ("paypal", 20),
    ("apple_pay", 10),
    ("google_pay", 7),
    ("bank_transfer", 5),
    ("gift_card", 3),
];
/// Cart quantities 1..=5 with these weights.
const QUANTITY_WEIGHTS: &[u32] = &[75, 17, 5, 2, 1];
/// Where sessions come from, in the proportions e-commerce benchmarks
/// report (Wolfgang Digital's E-commerce KPI Benchmarks: organic and paid
/// search and direct bring most sessions; social, referral and e-mail the rest).
const CHANNELS: &[(Channel, u32)] = &[
    (Channel::OrganicSearch, 33),
    (Channel::Direct, 25),
    (Channel::PaidSearch, 20),
    (Channel::Social, 9),
    (Channel::Referral, 7),
    (Channel::Email, 6),
];
/// Device shares by part of the (UTC) day: phones bring most sessions at
/// every hour (about 60-70% of e-commerce traffic in Salesforce's Shopping
/// Index), desktops peak in working hours, tablets and TVs in the evening.
const DEVICES: [Device; 5] = [
    Device::Mobile,
    Device::Pc,
    Device::Laptop,
    Device::Tablet,
    Device::SmartTv,
];
const DEVICE_WEIGHTS_BY_DAY_PART: [[u32; 5]; 4] = [
    [72, 6, 10, 9, 3],  // night, 0-5 h
    [60, 16, 14, 8, 2], // morning, 6-11 h
    [55, 20, 16, 7, 2], // afternoon, 12-17 h
    [62, 8, 14, 11, 5], // evening, 18-23 h
];

struct Session {
    id: Uuid,
    customer: usize,
    channel: Channel,
    /// Drawn at the session's first event, by the hour it happens.
    device: Option<Device>,
    /// How long after they happen its events are sent (zero: on time).
    lag: chrono::Duration,
    views_left: u64,
    /// A viewed product the shopper is about to add to the cart.
    pending_cart: Option<usize>,
    cart: Vec<(usize, i64)>,
}

pub struct Traffic<'c> {
    catalog: &'c Catalog,
    behaviour: Behaviour,
    sessions: Vec<Session>,
    product_rank: Zipf<f64>,
    customer_rank: Zipf<f64>,
    extra_views: Geometric,
    quantity: WeightedIndex<u32>,
    payment: WeightedIndex<u32>,
    channel: WeightedIndex<u32>,
    device: [WeightedIndex<u32>; 4],
    lifecycle: Lifecycle,
}

/// An event and what it adds to the summary once delivered.
pub struct Next<'c> {
    pub event: Event<'c>,
    pub contribution: Contribution,
}

/// A late session lags at least this much (less only if `late_by` is shorter).
const MIN_LAG_SECONDS: f64 = 60.0;

impl<'c> Traffic<'c> {
    pub fn new<R: Rng>(catalog: &'c Catalog, behaviour: Behaviour, rng: &mut R) -> Self {
        assert!(!catalog.customers.is_empty() && !catalog.products.is_empty());
        let product_rank =
            Zipf::new(catalog.products.len() as f64, behaviour.product_skew).expect("valid zipf");
        let customer_rank =
            Zipf::new(catalog.customers.len() as f64, behaviour.customer_skew).expect("valid zipf");
        let extra_views = Geometric::new(behaviour.extra_views_p).expect("valid geometric");
        let lifecycle = Lifecycle::new(behaviour.lifecycle.clone());
        let mut traffic = Self {
            catalog,
            sessions: Vec::with_capacity(behaviour.concurrent_sessions),
            behaviour,
            product_rank,
            customer_rank,
            extra_views,
            quantity: WeightedIndex::new(QUANTITY_WEIGHTS).expect("static weights"),
            payment: WeightedIndex::new(PAYMENT_METHODS.iter().map(|p| p.1)).expect("static weights"),
            channel: WeightedIndex::new(CHANNELS.iter().map(|c| c.1)).expect("static weights"),
            device: DEVICE_WEIGHTS_BY_DAY_PART.map(|w| WeightedIndex::new(w).expect("static weights")),
            lifecycle,
        };
        for _ in 0..traffic.behaviour.concurrent_sessions.max(1) {
            let s = traffic.new_session(rng);
            traffic.sessions.push(s);
        }
        traffic
    }

    fn new_session<R: Rng>(&self, rng: &mut R) -> Session {
        Session {
            id: random_uuid(rng),
            customer: self.customer_rank.sample(rng) as usize - 1,
            channel: CHANNELS[self.channel.sample(rng)].0,
            device: None,
            lag: self.draw_lag(rng),
            views_left: 1 + self.extra_views.sample(rng).min(MAX_VIEWS),
            pending_cart: None,
            cart: Vec::new(),
        }
    }

    fn draw_lag<R: Rng>(&self, rng: &mut R) -> chrono::Duration {
        let max = self.behaviour.late_by.as_secs_f64();
        if max <= 0.0 || !rng.random_bool(self.behaviour.late_ratio) {
            return chrono::Duration::zero();
        }
        let seconds = rng.random_range(MIN_LAG_SECONDS.min(max)..=max);
        chrono::Duration::milliseconds((seconds * 1000.0) as i64)
    }

    /// The next event: an order's step that is due, else the next event of
    /// a randomly chosen open session.
    pub fn next<R: Rng>(&mut self, rng: &mut R, now: DateTime<Utc>) -> Next<'c> {
        if let Some(follow_up) = self.lifecycle.due(now) {
            return self.order_step(rng, now, follow_up);
        }
        let slot = rng.random_range(0..self.sessions.len());
        loop {
            if let Some(event) = self.advance(slot, rng, now) {
                let contribution = Contribution::of_event(&event, Decimal::ZERO);
                return Next { event, contribution };
            }
            // The session ended without an event to show: a new shopper arrives.
            self.sessions[slot] = self.new_session(rng);
        }
    }

    /// [`Traffic::next`] without its contribution.
    pub fn next_event<R: Rng>(&mut self, rng: &mut R, now: DateTime<Utc>) -> Event<'c> {
        self.next(rng, now).event
    }

    /// `event` (the last one taken) is not sent as itself: if it placed or
    /// completed an order, that order's later steps are dropped.
    pub fn discard(&mut self, event: &Event<'_>) {
        let order = event.order.as_ref().map(|o| o.order_id);
        if let Some(id) = order.or(event.order_update.as_ref().map(|u| u.order_id)) {
            self.lifecycle.forget(id);
        }
    }

    /// Steps of placed orders still to come.
    pub fn orders_in_flight(&self) -> usize {
        self.lifecycle.scheduled()
    }

    fn order_step<R: Rng>(&mut self, rng: &mut R, now: DateTime<Utc>, f: FollowUp) -> Next<'c> {
        let (event_type, reason, refunds, amount) = match f.step {
            Step::Complete => (EventType::OrderCompleted, None, Vec::new(), Decimal::ZERO),
            Step::Cancel { reason, booked } => (EventType::OrderCanceled, Some(reason), Vec::new(), booked),
            Step::Refund { reason, lines } => (EventType::OrderRefunded, Some(reason), lines, Decimal::ZERO),
        };
        let event = Event {
            schema_version: SCHEMA_VERSION,
            event_id: random_uuid(rng),
            event_type,
            event_time: now,
            session_id: f.placer.session_id,
            customer: self.catalog.customers[f.placer.customer].reborrow(),
            product: None,
            quantity: None,
            order: None,
            order_update: Some(OrderUpdate {
                order_id: f.order_id,
                reason: reason.map(Into::into),
                refunds,
            }),
            device: Some(f.placer.device),
            channel: Some(f.placer.channel),
        };
        let contribution = Contribution::of_event(&event, amount);
        Next { event, contribution }
    }

    fn advance<R: Rng>(&mut self, slot: usize, rng: &mut R, now: DateTime<Utc>) -> Option<Event<'c>> {
        let catalog = self.catalog;
        let session = &mut self.sessions[slot];
        let at = now - session.lag;
        let device = *session
            .device
            .get_or_insert_with(|| DEVICES[self.device[at.hour() as usize / 6].sample(rng)]);
        let (session_id, customer, channel) = (session.id, session.customer, session.channel);
        let base = move |event_type| Event {
            schema_version: SCHEMA_VERSION,
            event_id: Uuid::nil(),
            event_type,
            event_time: at,
            session_id,
            customer: catalog.customers[customer].reborrow(),
            product: None,
            quantity: None,
            order: None,
            order_update: None,
            device: Some(device),
            channel: Some(channel),
        };
        let mut event = if let Some(p) = session.pending_cart.take() {
            let quantity = self.quantity.sample(rng) as i64 + 1;
            match session.cart.iter_mut().find(|(q, _)| *q == p) {
                Some((_, qty)) => *qty += quantity,
                None => session.cart.push((p, quantity)),
            }
            Event {
                product: Some(catalog.products[p].reborrow()),
                quantity: Some(quantity),
                ..base(EventType::AddToCart)
            }
        } else if session.views_left > 0 {
            session.views_left -= 1;
            let p = self.product_rank.sample(rng) as usize - 1;
            if rng.random_bool(self.behaviour.cart_probability) {
                session.pending_cart = Some(p);
            }
            Event {
                product: Some(catalog.products[p].reborrow()),
                ..base(EventType::PageView)
            }
        } else if !session.cart.is_empty() && rng.random_bool(self.behaviour.purchase_probability) {
            let cart = std::mem::take(&mut session.cart);
            let payment = PAYMENT_METHODS[self.payment.sample(rng)].0;
            let lines = cart
                .into_iter()
                .enumerate()
                .map(|(i, (p, quantity))| {
                    let product = catalog.products[p].reborrow();
                    let unit_price = product.list_price;
                    let gross = unit_price * Decimal::from(quantity);
                    let discount = if rng.random_bool(self.behaviour.discount_probability) {
                        let pct = DISCOUNT_PERCENTS[rng.random_range(0..DISCOUNT_PERCENTS.len())];
                        (gross * Decimal::new(pct, 2))
                            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
                    } else {
                        Decimal::new(0, 2)
                    };
                    LineItem {
                        line_number: i as u32 + 1,
                        product,
                        quantity,
                        unit_price,
                        discount,
                    }
                })
                .collect();
            let order = Order {
                order_id: random_uuid(rng),
                currency: self.behaviour.currency.into(),
                payment_method: payment.into(),
                lines,
            };
            let placer = Placer {
                customer,
                session_id,
                device,
                channel,
            };
            // The shop's later steps happen on its clock, not the late phone's.
            self.lifecycle.placed(rng, now, &order, placer);
            let event = Event {
                order: Some(order),
                ..base(EventType::Purchase)
            };
            // Checkout ends the session.
            self.sessions[slot] = self.new_session(rng);
            event
        } else {
            return None;
        };
        event.event_id = random_uuid(rng);
        Some(event)
    }
}

/// A version-4 UUID from the seeded RNG, so ids are reproducible per seed.
pub fn random_uuid<R: Rng>(rng: &mut R) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;
    use std::collections::{HashMap, HashSet};

    fn events(n: usize, seed: u64) -> Vec<Event<'static>> {
        events_at(n, seed, Utc::now())
    }

    fn events_at(n: usize, seed: u64, now: DateTime<Utc>) -> Vec<Event<'static>> {
        let catalog: &'static Catalog = Box::leak(Box::new(Catalog::generate(
            &mut Xoshiro256PlusPlus::seed_from_u64(1),
            5_000,
            500,
        )));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut t = Traffic::new(catalog, Behaviour::default(), &mut rng);
        (0..n).map(|_| t.next_event(&mut rng, now)).collect()
    }

    #[test]
    fn every_generated_event_is_valid() {
        for e in events(20_000, 11) {
            shopstream_model::validate::validate(&e).unwrap_or_else(|err| panic!("{err}: {e:?}"));
            // And survives the wire.
            let bytes = serde_json::to_vec(&e).unwrap();
            assert_eq!(shopstream_model::parse_event(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn funnel_shares_are_sane() {
        let evs = events(100_000, 5);
        let mut by_type: HashMap<EventType, usize> = HashMap::new();
        for e in &evs {
            *by_type.entry(e.event_type).or_default() += 1;
        }
        let share = |t| by_type.get(&t).copied().unwrap_or(0) as f64 / evs.len() as f64;
        let (views, carts, purchases) = (
            share(EventType::PageView),
            share(EventType::AddToCart),
            share(EventType::Purchase),
        );
        assert!((0.93..0.99).contains(&views), "views {views}");
        assert!((0.015..0.04).contains(&carts), "carts {carts}");
        assert!((0.004..0.012).contains(&purchases), "purchases {purchases}");
        assert!(views > carts && carts > purchases, "a funnel narrows");
    }

    #[test]
    fn conversion_and_cart_abandonment_match_published_rates() {
        let evs = events(300_000, 17);
        let mut sessions: HashMap<Uuid, (bool, bool)> = HashMap::new();
        for e in &evs {
            let s = sessions.entry(e.session_id).or_default();
            s.0 |= e.event_type == EventType::AddToCart;
            s.1 |= e.event_type == EventType::Purchase;
        }
        let n = sessions.len() as f64;
        let carted = sessions.values().filter(|s| s.0).count() as f64;
        let bought = sessions.values().filter(|s| s.1).count() as f64;
        let conversion = bought / n;
        let abandonment = 1.0 - bought / carted;
        assert!(
            (0.018..0.04).contains(&conversion),
            "session conversion {conversion}"
        );
        assert!(
            (0.62..0.78).contains(&abandonment),
            "cart abandonment {abandonment}"
        );
    }

    #[test]
    fn late_sessions_carry_their_event_times_and_keep_their_order() {
        let now: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().unwrap();
        let evs = events_at(100_000, 8, now);
        let mut lag_by_session: HashMap<Uuid, chrono::Duration> = HashMap::new();
        for e in &evs {
            let lag = now - e.event_time;
            assert!(
                lag >= chrono::Duration::zero() && lag <= chrono::Duration::hours(2),
                "lag {lag}"
            );
            let seen = lag_by_session.entry(e.session_id).or_insert(lag);
            assert_eq!(
                *seen, lag,
                "a session's events share their lag, so they stay in order"
            );
        }
        let late = lag_by_session
            .values()
            .filter(|l| **l >= chrono::Duration::minutes(1))
            .count() as f64;
        let share = late / lag_by_session.len() as f64;
        assert!((0.01..0.03).contains(&share), "late sessions {share}");
        assert!(
            lag_by_session
                .values()
                .all(|l| l.is_zero() || *l >= chrono::Duration::minutes(1))
        );
    }

    /// 20 events per simulated second, with delays of a minute: many orders
    /// run their whole course.
    #[test]
    fn placed_orders_complete_cancel_and_refund_in_order_and_the_counts_reproduce() {
        use crate::summary::Tally;
        use shopstream_model::summary::Orders;
        let catalog: &'static Catalog = Box::leak(Box::new(Catalog::generate(
            &mut Xoshiro256PlusPlus::seed_from_u64(1),
            2_000,
            300,
        )));
        let behaviour = Behaviour {
            lifecycle: LifecycleRates {
                cancel_ratio: 0.1,
                refund_ratio: 0.3,
                cancel_after: std::time::Duration::from_secs(30),
                complete_after: std::time::Duration::from_secs(60),
                refund_after: std::time::Duration::from_secs(60),
            },
            ..Behaviour::default()
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let mut traffic = Traffic::new(catalog, behaviour, &mut rng);
        let t0: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().unwrap();
        let mut tally = Tally::default();
        let mut orders: HashMap<Uuid, (Event<'static>, Vec<Event<'static>>)> = HashMap::new();
        for i in 0..400_000i64 {
            let next = traffic.next(&mut rng, t0 + chrono::Duration::milliseconds(i * 50));
            shopstream_model::validate::validate(&next.event)
                .unwrap_or_else(|e| panic!("{e}: {:?}", next.event));
            tally.add(&next.contribution);
            let e = next.event;
            if let Some(o) = &e.order {
                orders.insert(o.order_id, (e.clone(), Vec::new()));
            } else if let Some(u) = &e.order_update {
                let (placed, steps) = orders
                    .get_mut(&u.order_id)
                    .expect("a status event follows its purchase");
                assert_eq!(
                    e.customer.customer_id, placed.customer.customer_id,
                    "same key, same partition"
                );
                assert_eq!((e.device, e.session_id), (placed.device, placed.session_id));
                steps.push(e);
            }
        }
        // The warehouse's rule (worker/src/orders.rs) applied to the stream.
        let mut counted = Orders::default();
        for (placed, steps) in orders.values() {
            let types: Vec<EventType> = steps.iter().map(|e| e.event_type).collect();
            let order = placed.order.as_ref().unwrap();
            counted.placed += 1;
            match types.as_slice() {
                [] => counted.pending += 1,
                [EventType::OrderCanceled] => {
                    counted.canceled += 1;
                    counted.canceled_amount += order.gross() - order.discount();
                }
                [EventType::OrderCompleted] => counted.completed += 1,
                [EventType::OrderCompleted, EventType::OrderRefunded] => {
                    counted.refunded += 1;
                    let refund = steps[1].order_update.as_ref().unwrap();
                    assert!(refund.refunded_amount() <= order.gross() - order.discount());
                    for r in &refund.refunds {
                        let line = &order.lines[r.line_number as usize - 1];
                        assert!(r.quantity <= line.quantity && r.amount <= line.net_amount());
                    }
                    counted.refunded_amount += refund.refunded_amount();
                }
                other => panic!("an order went {other:?}"),
            }
            assert!(steps.windows(2).all(|w| w[0].event_time <= w[1].event_time));
            assert!(steps.iter().all(|s| s.event_time >= placed.event_time));
        }
        assert_eq!(Orders::from_events(tally.order_events()), counted);
        let share = |n: u64| n as f64 / counted.placed as f64;
        assert!(counted.placed > 1_000, "{counted:?}");
        assert!((0.07..0.13).contains(&share(counted.canceled)), "{counted:?}");
        assert!(
            counted.refunded > 0 && counted.completed > counted.refunded,
            "{counted:?}"
        );
        assert!(counted.pending > 0, "the last orders are still open");
    }

    #[test]
    fn devices_follow_the_hour_and_sessions_keep_theirs() {
        let share = |evs: &[Event<'_>], d: Device| {
            evs.iter().filter(|e| e.device == Some(d)).count() as f64 / evs.len() as f64
        };
        let at = |h: u32| {
            format!("2026-06-01T{h:02}:30:00Z")
                .parse::<DateTime<Utc>>()
                .unwrap()
        };
        let (night, afternoon) = (events_at(40_000, 3, at(3)), events_at(40_000, 3, at(14)));
        for evs in [&night, &afternoon] {
            let mobile = share(evs, Device::Mobile);
            assert!(
                (0.5..0.8).contains(&mobile),
                "phones bring most sessions: {mobile}"
            );
            assert!(
                Device::ALL.iter().all(|d| share(evs, *d) > 0.0),
                "every device appears"
            );
        }
        assert!(
            share(&afternoon, Device::Pc) > 2.0 * share(&night, Device::Pc),
            "desktops peak in working hours"
        );
        let organic = night
            .iter()
            .filter(|e| e.channel == Some(Channel::OrganicSearch))
            .count();
        assert!((0.2..0.5).contains(&(organic as f64 / night.len() as f64)));
        let mut by_session: HashMap<Uuid, (Option<Device>, Option<Channel>)> = HashMap::new();
        for e in &afternoon {
            let seen = by_session.entry(e.session_id).or_insert((e.device, e.channel));
            assert_eq!(
                *seen,
                (e.device, e.channel),
                "a session keeps its device and channel"
            );
        }
    }

    #[test]
    fn sessions_follow_the_funnel_in_order() {
        let evs = events(50_000, 9);
        let mut seen: HashMap<Uuid, Vec<&Event>> = HashMap::new();
        for e in &evs {
            seen.entry(e.session_id).or_default().push(e);
        }
        let mut purchases_checked = 0;
        for session in seen.values() {
            assert_eq!(
                session[0].event_type,
                EventType::PageView,
                "sessions start with a view"
            );
            let customer = &session[0].customer.customer_id;
            assert!(session.iter().all(|e| &e.customer.customer_id == customer));
            if let Some(pos) = session.iter().position(|e| e.event_type == EventType::Purchase) {
                assert_eq!(pos, session.len() - 1, "purchase ends the session");
                // Every purchased product was added to the cart earlier in the session.
                let carted: HashSet<_> = session[..pos]
                    .iter()
                    .filter(|e| e.event_type == EventType::AddToCart)
                    .map(|e| e.product.as_ref().unwrap().product_id.clone())
                    .collect();
                for line in &session[pos].order.as_ref().unwrap().lines {
                    assert!(carted.contains(&line.product.product_id));
                }
                purchases_checked += 1;
            }
        }
        assert!(purchases_checked > 100);
    }

    #[test]
    fn popular_products_get_more_traffic() {
        let evs = events(50_000, 3);
        let mut views: HashMap<&str, usize> = HashMap::new();
        for e in &evs {
            if let Some(p) = &e.product {
                *views.entry(p.product_id.as_ref()).or_default() += 1;
            }
        }
        let mut counts: Vec<usize> = views.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top10: usize = counts.iter().take(10).sum();
        let total: usize = counts.iter().sum();
        // 10 of 500 products (2%) draw well over 10% of the views.
        assert!(top10 * 10 > total, "top10 {top10} of {total}");
    }

    #[test]
    fn ids_are_unique_and_discounts_bounded() {
        let evs = events(30_000, 21);
        let ids: HashSet<_> = evs.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), evs.len());
        let orders: Vec<_> = evs.iter().filter_map(|e| e.order.as_ref()).collect();
        let order_ids: HashSet<_> = orders.iter().map(|o| o.order_id).collect();
        assert_eq!(order_ids.len(), orders.len());
        let discounted = orders
            .iter()
            .flat_map(|o| &o.lines)
            .filter(|l| !l.discount.is_zero())
            .count();
        let lines = orders.iter().map(|o| o.lines.len()).sum::<usize>();
        assert!(discounted > 0 && discounted < lines);
        assert!(
            orders.iter().any(|o| o.lines.len() > 1),
            "multi-line orders exist"
        );
    }
}
