//! Dimension keys: resolve a batch's customers and products to surrogate
//! keys, upserting only what is new or changed (SCD type 1), with one
//! resolver for every [`Dimension`].
//!
//! A bounded LRU cache remembers keys and an attribute fingerprint of rows
//! known to be in the warehouse. Entries learnt inside a transaction are
//! handed back as [`Pending`] and enter the cache only after COMMIT, so a
//! rolled-back batch never leaves a key that does not exist.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, NaiveDate, Utc};
use lru::LruCache;
use postgres::Transaction;
use rust_decimal::Decimal;

use crate::db::Statements;
use crate::transform::{Batch, CustomerRow, FirstOrder, ProductRow};
use shopstream_model::Gender;
use uuid::Uuid;

/// What the warehouse holds for a customer: its key, a fingerprint of its
/// attributes (the warehouse's, which may be newer than ours) and its first order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CachedCustomer {
    key: i64,
    fingerprint: u64,
    first_order: Option<FirstOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct CachedProduct {
    key: i64,
    fingerprint: u64,
}

pub struct DimCache {
    customers: LruCache<String, CachedCustomer>,
    products: LruCache<String, CachedProduct>,
    capacity: usize,
}

/// What a batch learnt; applied with [`DimCache::commit`] after COMMIT.
#[derive(Debug, Default)]
pub struct Pending {
    customers: Vec<(String, CachedCustomer)>,
    products: Vec<(String, CachedProduct)>,
}

/// Keys for the batch's dimension rows, by batch-local index.
#[derive(Debug)]
pub struct Resolved {
    pub customer_keys: Vec<i64>,
    /// The customer's first order after this batch.
    pub first_orders: Vec<Option<FirstOrder>>,
    pub product_keys: Vec<i64>,
    pub upserted_customers: usize,
    pub upserted_products: usize,
    pub pending: Pending,
}

fn fingerprint(h: impl Hash) -> u64 {
    let mut s = DefaultHasher::new();
    h.hash(&mut s);
    s.finish()
}

fn customer_fingerprint(c: &CustomerRow) -> u64 {
    fingerprint((
        c.name.as_str(),
        c.email.as_str(),
        c.city.as_str(),
        c.country.as_str(),
        c.segment.as_str(),
        c.signup_date,
        c.gender.map(Gender::as_str),
        c.birth_date,
    ))
}

fn product_fingerprint(p: &ProductRow) -> u64 {
    product_attrs_fingerprint(&p.name, &p.category, &p.brand, p.list_price)
}

fn product_attrs_fingerprint(name: &str, category: &str, brand: &str, list_price: Decimal) -> u64 {
    fingerprint((name, category, brand, list_price.normalize()))
}

/// A dimension row as the warehouse returned it (upsert or select), in the
/// column order of `RETURNING` in `db.rs`.
fn customer_from_row(r: &postgres::Row) -> (String, CachedCustomer) {
    let first_order = r
        .get::<_, Option<DateTime<Utc>>>(2)
        // Written by a worker that predates first_order_id: never equal to an order.
        .map(|t| (t, r.get::<_, Option<Uuid>>(3).unwrap_or(Uuid::max())));
    let fp = fingerprint((
        r.get::<_, &str>(4),
        r.get::<_, &str>(5),
        r.get::<_, &str>(6),
        r.get::<_, &str>(7),
        r.get::<_, &str>(8),
        r.get::<_, NaiveDate>(9),
        r.get::<_, Option<&str>>(10),
        r.get::<_, Option<NaiveDate>>(11),
    ));
    (
        r.get(0),
        CachedCustomer {
            key: r.get(1),
            fingerprint: fp,
            first_order,
        },
    )
}

fn product_from_row(r: &postgres::Row) -> (String, CachedProduct) {
    (
        r.get(0),
        CachedProduct {
            key: r.get(1),
            fingerprint: product_attrs_fingerprint(r.get(2), r.get(3), r.get(4), r.get(5)),
        },
    )
}

/// Does a cached customer already reflect this row (attributes and first order)?
fn customer_is_current(cached: &CachedCustomer, row: &CustomerRow, fp: u64) -> bool {
    let first_order_known = match (row.first_order, cached.first_order) {
        (None, _) => true,
        (Some(new), Some(known)) => known <= new,
        (Some(_), None) => false,
    };
    cached.fingerprint == fp && first_order_known
}

/// One dimension table as the resolver sees it: how a batch's row is
/// identified and compared with what the warehouse holds, and the upsert and
/// select statements that return what it holds.
trait Dimension {
    type Row;
    /// What the cache keeps of a warehouse row.
    type Known: Copy;
    fn id(row: &Self::Row) -> &str;
    /// Whether the warehouse's entry already reflects `row`.
    fn is_current(known: &Self::Known, row: &Self::Row) -> bool;
    /// Upsert `rows` in one statement; returns the rows it wrote.
    fn upsert(
        tx: &mut Transaction<'_>,
        stmts: &Statements,
        rows: &[&Self::Row],
    ) -> Result<Vec<postgres::Row>, postgres::Error>;
    fn select(stmts: &Statements) -> &postgres::Statement;
    fn from_row(r: &postgres::Row) -> (String, Self::Known);
}

struct Customers;
struct Products;

impl Dimension for Customers {
    type Row = CustomerRow;
    type Known = CachedCustomer;

    fn id(row: &CustomerRow) -> &str {
        &row.customer_id
    }

    fn is_current(known: &CachedCustomer, row: &CustomerRow) -> bool {
        customer_is_current(known, row, customer_fingerprint(row))
    }

    fn upsert(
        tx: &mut Transaction<'_>,
        stmts: &Statements,
        rows: &[&CustomerRow],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let col = |f: fn(&CustomerRow) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let dates: Vec<NaiveDate> = rows.iter().map(|r| r.signup_date).collect();
        let first_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.first_order.map(|f| f.0)).collect();
        let first_id: Vec<Option<Uuid>> = rows.iter().map(|r| r.first_order.map(|f| f.1)).collect();
        let seen: Vec<DateTime<Utc>> = rows.iter().map(|r| r.seen_at).collect();
        let genders: Vec<Option<&str>> = rows.iter().map(|r| r.gender.map(Gender::as_str)).collect();
        let births: Vec<Option<NaiveDate>> = rows.iter().map(|r| r.birth_date).collect();
        tx.query(
            &stmts.upsert_customers,
            &[
                &col(|r| r.customer_id.clone()),
                &col(|r| r.name.clone()),
                &col(|r| r.email.clone()),
                &col(|r| r.city.clone()),
                &col(|r| r.country.clone()),
                &col(|r| r.segment.clone()),
                &dates,
                &first_at,
                &first_id,
                &seen,
                &genders,
                &births,
            ],
        )
    }

    fn select(stmts: &Statements) -> &postgres::Statement {
        &stmts.select_customers
    }

    fn from_row(r: &postgres::Row) -> (String, CachedCustomer) {
        customer_from_row(r)
    }
}

impl Dimension for Products {
    type Row = ProductRow;
    type Known = CachedProduct;

    fn id(row: &ProductRow) -> &str {
        &row.product_id
    }

    fn is_current(known: &CachedProduct, row: &ProductRow) -> bool {
        known.fingerprint == product_fingerprint(row)
    }

    fn upsert(
        tx: &mut Transaction<'_>,
        stmts: &Statements,
        rows: &[&ProductRow],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let col = |f: fn(&ProductRow) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let prices: Vec<Decimal> = rows.iter().map(|r| r.list_price).collect();
        let seen: Vec<DateTime<Utc>> = rows.iter().map(|r| r.seen_at).collect();
        tx.query(
            &stmts.upsert_products,
            &[
                &col(|r| r.product_id.clone()),
                &col(|r| r.name.clone()),
                &col(|r| r.category.clone()),
                &col(|r| r.brand.clone()),
                &prices,
                &seen,
            ],
        )
    }

    fn select(stmts: &Statements) -> &postgres::Statement {
        &stmts.select_products
    }

    fn from_row(r: &postgres::Row) -> (String, CachedProduct) {
        product_from_row(r)
    }
}

/// What the warehouse holds for each of `rows` (by index), and how many rows
/// the upsert wrote. Rows the cache knows to be current cost nothing; the
/// others are upserted in one statement, and those it left alone (already
/// current or newer in the warehouse) are read back. What was learnt goes to
/// `pending`, for the cache after COMMIT.
fn resolve_dimension<D: Dimension>(
    cache: &mut LruCache<String, D::Known>,
    tx: &mut Transaction<'_>,
    stmts: &Statements,
    rows: &[D::Row],
    pending: &mut Vec<(String, D::Known)>,
) -> Result<(Vec<D::Known>, usize), postgres::Error> {
    let mut known: Vec<Option<D::Known>> = vec![None; rows.len()];
    let mut todo: Vec<usize> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match cache.get(D::id(row)) {
            Some(k) if D::is_current(k, row) => known[i] = Some(*k),
            _ => todo.push(i),
        }
    }
    let mut upserted = 0;
    if !todo.is_empty() {
        let todo_rows: Vec<&D::Row> = todo.iter().map(|&i| &rows[i]).collect();
        let returned = D::upsert(tx, stmts, &todo_rows)?;
        upserted = returned.len();
        let mut found: HashMap<String, D::Known> = returned.iter().map(D::from_row).collect();
        if found.len() < todo.len() {
            let missing: Vec<&str> = todo_rows
                .iter()
                .map(|r| D::id(r))
                .filter(|id| !found.contains_key(*id))
                .collect();
            found.extend(tx.query(D::select(stmts), &[&missing])?.iter().map(D::from_row));
        }
        for &i in &todo {
            let id = D::id(&rows[i]);
            let k = found[id];
            known[i] = Some(k);
            pending.push((id.to_string(), k));
        }
    }
    // Every row is either cached or was upserted or selected above.
    Ok((known.into_iter().flatten().collect(), upserted))
}

/// Put learnt entries in a cache of at most `capacity`, the least recently
/// used going first.
fn put_bounded<K: Copy>(cache: &mut LruCache<String, K>, entries: Vec<(String, K)>, capacity: usize) {
    for (id, k) in entries {
        cache.put(id, k);
        if cache.len() > capacity {
            cache.pop_lru();
        }
    }
}

impl DimCache {
    /// At most `capacity` entries per dimension. The maps grow as keys are
    /// seen (`LruCache::new` would allocate the full capacity up front).
    pub fn new(capacity: usize) -> Self {
        Self {
            customers: LruCache::unbounded(),
            products: LruCache::unbounded(),
            capacity: capacity.max(1),
        }
    }

    pub fn commit(&mut self, pending: Pending) {
        put_bounded(&mut self.customers, pending.customers, self.capacity);
        put_bounded(&mut self.products, pending.products, self.capacity);
    }

    pub fn len(&self) -> (usize, usize) {
        (self.customers.len(), self.products.len())
    }

    /// Resolve every dimension row of `batch` inside `tx`.
    pub fn resolve(
        &mut self,
        tx: &mut Transaction<'_>,
        stmts: &Statements,
        batch: &Batch,
    ) -> Result<Resolved, postgres::Error> {
        let mut pending = Pending::default();
        let (customers, upserted_customers) = resolve_dimension::<Customers>(
            &mut self.customers,
            tx,
            stmts,
            &batch.customers,
            &mut pending.customers,
        )?;
        let (products, upserted_products) = resolve_dimension::<Products>(
            &mut self.products,
            tx,
            stmts,
            &batch.products,
            &mut pending.products,
        )?;
        Ok(Resolved {
            customer_keys: customers.iter().map(|c| c.key).collect(),
            first_orders: customers.iter().map(|c| c.first_order).collect(),
            product_keys: products.iter().map(|p| p.key).collect(),
            upserted_customers,
            upserted_products,
            pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, first_order: Option<&str>) -> CustomerRow {
        CustomerRow {
            customer_id: "C1".into(),
            name: name.into(),
            email: "a@b.c".into(),
            city: "Paris".into(),
            country: "FR".into(),
            segment: "consumer".into(),
            signup_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            gender: Some(Gender::Female),
            birth_date: NaiveDate::from_ymd_opt(1990, 5, 17),
            first_order: first_order.map(|t| (t.parse().unwrap(), Uuid::nil())),
            seen_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn when_a_cached_customer_needs_no_upsert() {
        let cached = |name: &str, first: Option<&str>| CachedCustomer {
            key: 7,
            fingerprint: customer_fingerprint(&row(name, None)),
            first_order: first.map(|t| (t.parse().unwrap(), Uuid::nil())),
        };
        let t1 = Some("2026-01-01T10:00:00Z");
        let t2 = Some("2026-01-02T10:00:00Z");
        // (cached entry, incoming row, current?)
        let cases = [
            (cached("Ann", None), row("Ann", None), true),
            (cached("Ann", None), row("Ann B.", None), false), // attributes changed
            (cached("Ann", None), row("Ann", t1), false),      // first purchase
            (cached("Ann", t1), row("Ann", t2), true),         // a later purchase changes nothing
            (cached("Ann", t2), row("Ann", t1), false),        // an earlier one does
        ];
        for (i, (c, r, want)) in cases.iter().enumerate() {
            assert_eq!(
                customer_is_current(c, r, customer_fingerprint(r)),
                *want,
                "case {i}"
            );
        }
    }

    #[test]
    fn pending_entries_reach_the_cache_only_on_commit() {
        let mut cache = DimCache::new(10);
        let mut pending = Pending::default();
        pending.products.push((
            "P1".into(),
            CachedProduct {
                key: 3,
                fingerprint: 1,
            },
        ));
        assert_eq!(cache.len(), (0, 0));
        cache.commit(pending);
        assert_eq!(cache.len(), (0, 1));

        // Bounded: the least recently used entry goes.
        let mut small = DimCache::new(2);
        for i in 0..5 {
            let mut p = Pending::default();
            p.products.push((
                format!("P{i}"),
                CachedProduct {
                    key: i,
                    fingerprint: 0,
                },
            ));
            small.commit(p);
        }
        assert_eq!(small.len(), (0, 2));
        assert!(small.products.contains("P4") && small.products.contains("P3"));
    }

    #[test]
    fn price_fingerprint_ignores_trailing_zeros() {
        let p = |price: Decimal| ProductRow {
            product_id: "P".into(),
            name: "n".into(),
            category: "c".into(),
            brand: "b".into(),
            list_price: price,
            seen_at: Utc::now(),
        };
        assert_eq!(
            product_fingerprint(&p(Decimal::new(500, 2))),
            product_fingerprint(&p(Decimal::new(5, 0)))
        );
    }
}
