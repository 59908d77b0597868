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
use crate::transform::{Batch, CustomerRow, ProductRow};

#[derive(Debug, Clone, Copy, PartialEq)]
struct CachedCustomer {
    key: i64,
    fingerprint: u64,
    first_order_at: Option<DateTime<Utc>>,
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
    /// The customer's first purchase time after this batch.
    pub first_orders: Vec<Option<DateTime<Utc>>>,
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
    fingerprint((&c.name, &c.email, &c.city, &c.country, &c.segment, c.signup_date))
}

fn product_fingerprint(p: &ProductRow) -> u64 {
    fingerprint((&p.name, &p.category, &p.brand, p.list_price.normalize()))
}

/// Does a cached customer already reflect this row (attributes and first order)?
fn customer_is_current(cached: &CachedCustomer, row: &CustomerRow, fp: u64) -> bool {
    let first_order_known = match (row.first_order_at, cached.first_order_at) {
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
    ) -> Result<(Vec<i64>, Vec<Option<DateTime<Utc>>>, usize), postgres::Error> {
        let mut keys = vec![0_i64; rows.len()];
        let mut first_orders = vec![None; rows.len()];
        let mut todo: Vec<usize> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let fp = customer_fingerprint(row);
            match self.customers.get(&row.customer_id) {
                Some(c) if customer_is_current(c, row, fp) => {
                    keys[i] = c.key;
                    first_orders[i] = c.first_order_at;
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
        let firsts: Vec<Option<DateTime<Utc>>> = todo.iter().map(|&i| rows[i].first_order_at).collect();
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
                &firsts,
            ],
        )?;
        let upserted = returned.len();
        let mut found: HashMap<String, (i64, Option<DateTime<Utc>>)> = returned
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        if found.len() < todo.len() {
            // Rows already current in the warehouse are not returned by the upsert.
            let missing: Vec<&String> = ids.iter().filter(|id| !found.contains_key(*id)).collect();
            for r in tx.query(&stmts.select_customers, &[&missing])? {
                found.insert(r.get(0), (r.get(1), r.get(2)));
            }
        }
        for &i in &todo {
            let row = &rows[i];
            let (key, first_order_at) = found[&row.customer_id];
            keys[i] = key;
            first_orders[i] = first_order_at;
            pending.customers.push((
                row.customer_id.clone(),
                CachedCustomer {
                    key,
                    fingerprint: customer_fingerprint(row),
                    first_order_at,
                },
            ));
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
        let returned = tx.query(
            &stmts.upsert_products,
            &[
                &ids,
                &col(|r| r.name.clone()),
                &col(|r| r.category.clone()),
                &col(|r| r.brand.clone()),
                &prices,
            ],
        )?;
        let upserted = returned.len();
        let mut found: HashMap<String, i64> = returned.iter().map(|r| (r.get(0), r.get(1))).collect();
        if found.len() < todo.len() {
            let missing: Vec<&String> = ids.iter().filter(|id| !found.contains_key(*id)).collect();
            for r in tx.query(&stmts.select_products, &[&missing])? {
                found.insert(r.get(0), r.get(1));
            }
        }
        for &i in &todo {
            let row = &rows[i];
            let key = found[&row.product_id];
            keys[i] = key;
            pending.products.push((
                row.product_id.clone(),
                CachedProduct {
                    key,
                    fingerprint: product_fingerprint(row),
                },
            ));
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
            first_order_at: first_order.map(|t| t.parse().unwrap()),
            seen_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn when_a_cached_customer_needs_no_upsert() {
        let cached = |name: &str, first: Option<&str>| CachedCustomer {
            key: 7,
            fingerprint: customer_fingerprint(&row(name, None)),
            first_order_at: first.map(|t| t.parse().unwrap()),
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
