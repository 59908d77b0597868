//! Dimension keys: resolve a batch's customers and products to surrogate
//! keys, upserting only what is new or changed (SCD type 1).
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
    customer_attrs_fingerprint(&c.name, &c.email, &c.city, &c.country, &c.segment, c.signup_date)
}

fn customer_attrs_fingerprint(
    name: &str,
    email: &str,
    city: &str,
    country: &str,
    segment: &str,
    signup_date: NaiveDate,
) -> u64 {
    fingerprint((name, email, city, country, segment, signup_date))
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
    let fp = customer_attrs_fingerprint(r.get(4), r.get(5), r.get(6), r.get(7), r.get(8), r.get(9));
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
        for (id, c) in pending.customers {
            self.customers.put(id, c);
            if self.customers.len() > self.capacity {
                self.customers.pop_lru();
            }
        }
        for (id, p) in pending.products {
            self.products.put(id, p);
            if self.products.len() > self.capacity {
                self.products.pop_lru();
            }
        }
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
        let (customer_keys, first_orders, upserted_customers) =
            self.resolve_customers(tx, stmts, &batch.customers, &mut pending)?;
        let (product_keys, upserted_products) =
            self.resolve_products(tx, stmts, &batch.products, &mut pending)?;
        Ok(Resolved {
            customer_keys,
            first_orders,
            product_keys,
            upserted_customers,
            upserted_products,
            pending,
        })
    }

    #[allow(clippy::type_complexity)]
    fn resolve_customers(
        &mut self,
        tx: &mut Transaction<'_>,
        stmts: &Statements,
        rows: &[CustomerRow],
        pending: &mut Pending,
    ) -> Result<(Vec<i64>, Vec<Option<FirstOrder>>, usize), postgres::Error> {
        let mut keys = vec![0_i64; rows.len()];
        let mut first_orders = vec![None; rows.len()];
        let mut todo: Vec<usize> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let fp = customer_fingerprint(row);
            match self.customers.get(&row.customer_id) {
                Some(c) if customer_is_current(c, row, fp) => {
                    keys[i] = c.key;
                    first_orders[i] = c.first_order;
                }
                _ => todo.push(i),
            }
        }
        if todo.is_empty() {
            return Ok((keys, first_orders, 0));
        }
        let col = |f: fn(&CustomerRow) -> String| todo.iter().map(|&i| f(&rows[i])).collect::<Vec<_>>();
        let ids = col(|r| r.customer_id.clone());
        let dates: Vec<NaiveDate> = todo.iter().map(|&i| rows[i].signup_date).collect();
        let first_at: Vec<Option<DateTime<Utc>>> =
            todo.iter().map(|&i| rows[i].first_order.map(|f| f.0)).collect();
        let first_id: Vec<Option<Uuid>> = todo.iter().map(|&i| rows[i].first_order.map(|f| f.1)).collect();
        let seen: Vec<DateTime<Utc>> = todo.iter().map(|&i| rows[i].seen_at).collect();
        let returned = tx.query(
            &stmts.upsert_customers,
            &[
                &ids,
                &col(|r| r.name.clone()),
                &col(|r| r.email.clone()),
                &col(|r| r.city.clone()),
                &col(|r| r.country.clone()),
                &col(|r| r.segment.clone()),
                &dates,
                &first_at,
                &first_id,
                &seen,
            ],
        )?;
        let upserted = returned.len();
        let mut found: HashMap<String, CachedCustomer> = returned.iter().map(customer_from_row).collect();
        if found.len() < todo.len() {
            // Rows already current (or newer) in the warehouse are not returned by the upsert.
            let missing: Vec<&String> = ids.iter().filter(|id| !found.contains_key(*id)).collect();
            found.extend(
                tx.query(&stmts.select_customers, &[&missing])?
                    .iter()
                    .map(customer_from_row),
            );
        }
        for &i in &todo {
            let row = &rows[i];
            let c = found[&row.customer_id];
            keys[i] = c.key;
            first_orders[i] = c.first_order;
            pending.customers.push((row.customer_id.clone(), c));
        }
        Ok((keys, first_orders, upserted))
    }

    fn resolve_products(
        &mut self,
        tx: &mut Transaction<'_>,
        stmts: &Statements,
        rows: &[ProductRow],
        pending: &mut Pending,
    ) -> Result<(Vec<i64>, usize), postgres::Error> {
        let mut keys = vec![0_i64; rows.len()];
        let mut todo: Vec<usize> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            match self.products.get(&row.product_id) {
                Some(p) if p.fingerprint == product_fingerprint(row) => keys[i] = p.key,
                _ => todo.push(i),
            }
        }
        if todo.is_empty() {
            return Ok((keys, 0));
        }
        let col = |f: fn(&ProductRow) -> String| todo.iter().map(|&i| f(&rows[i])).collect::<Vec<_>>();
        let ids = col(|r| r.product_id.clone());
        let prices: Vec<Decimal> = todo.iter().map(|&i| rows[i].list_price).collect();
        let seen: Vec<DateTime<Utc>> = todo.iter().map(|&i| rows[i].seen_at).collect();
        let returned = tx.query(
            &stmts.upsert_products,
            &[
                &ids,
                &col(|r| r.name.clone()),
                &col(|r| r.category.clone()),
                &col(|r| r.brand.clone()),
                &prices,
                &seen,
            ],
        )?;
        let upserted = returned.len();
        let mut found: HashMap<String, CachedProduct> = returned.iter().map(product_from_row).collect();
        if found.len() < todo.len() {
            let missing: Vec<&String> = ids.iter().filter(|id| !found.contains_key(*id)).collect();
            found.extend(
                tx.query(&stmts.select_products, &[&missing])?
                    .iter()
                    .map(product_from_row),
            );
        }
        for &i in &todo {
            let row = &rows[i];
            let p = found[&row.product_id];
            keys[i] = p.key;
            pending.products.push((row.product_id.clone(), p));
        }
        Ok((keys, upserted))
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
