//! The filter slices of a batch (migration 0011): its new fact rows summed
//! per minute x country x segment x category x device, appended to
//! `slice_queue` in the batch's transaction; `fold_slices()` moves them
//! into the rollups every few seconds. Summing here instead of in a trigger
//! keeps the cost off PostgreSQL, which is what bounds the drain rate.
//!
//! Only rows the insert returned count: a duplicate on the wire adds nothing.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::transform::Batch;
use shopstream_model::EventType;

/// A queue row's key. A category row (`agg_slice`) has no payment method;
/// an order-level row (`agg_order_slice`) has no category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliceKey<'a> {
    pub bucket: DateTime<Utc>,
    pub country: &'a str,
    pub segment: &'a str,
    pub category: Option<&'a str>,
    pub device_key: i16,
    pub payment_method: Option<&'a str>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measures {
    pub lines: i64,
    pub orders: i64,
    pub units: i64,
    pub gross: Decimal,
    pub discounts: Decimal,
    pub net: Decimal,
    pub page_views: i64,
    pub cart_adds: i64,
}

/// Which of the batch's staged rows the insert actually added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted<K: std::hash::Hash + Eq> {
    /// Every staged row (the common case: no duplicates).
    All,
    /// These keys only; each counts once even if the batch repeats it.
    Only(HashSet<K>),
}

impl<K: std::hash::Hash + Eq> Inserted<K> {
    /// From the insert's answer: `inserted` rows, and the keys it returns
    /// only when some staged rows were not inserted (and none when no row
    /// was: `array_agg` of nothing is NULL).
    pub fn from_insert(inserted: u64, keys: Option<impl IntoIterator<Item = K>>) -> Self {
        match keys {
            Some(keys) => Inserted::Only(keys.into_iter().collect()),
            None if inserted > 0 => Inserted::All,
            None => Inserted::Only(HashSet::new()),
        }
    }

    fn take(&mut self, key: &K) -> bool {
        match self {
            Inserted::All => true,
            Inserted::Only(keys) => keys.remove(key),
        }
    }
}

fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

/// The queue rows of `batch`'s inserted facts, in key order.
pub fn slices<'a>(
    batch: &'a Batch,
    mut sales: Inserted<(Uuid, i32)>,
    mut activity: Inserted<Uuid>,
) -> BTreeMap<SliceKey<'a>, Measures> {
    let mut out: BTreeMap<SliceKey<'a>, Measures> = BTreeMap::new();
    let mut orders_seen: HashSet<(SliceKey<'a>, Uuid)> = HashSet::new();
    for s in &batch.sales {
        if !sales.take(&(s.order_id, s.line_number)) {
            continue;
        }
        let customer = &batch.customers[s.customer];
        let category = batch.products[s.product].category.as_str();
        let order_level = SliceKey {
            bucket: minute(s.event_time),
            country: &customer.country,
            segment: &customer.segment,
            category: None,
            device_key: s.device_key,
            payment_method: Some(&s.payment_method),
        };
        for key in [
            SliceKey {
                category: Some(category),
                payment_method: None,
                ..order_level
            },
            order_level,
        ] {
            let m = out.entry(key).or_default();
            m.lines += 1;
            m.units += i64::from(s.quantity);
            m.gross += s.line_total;
            m.discounts += s.discount_amount;
            m.net += s.net_amount;
            if orders_seen.insert((key, s.order_id)) {
                m.orders += 1;
            }
        }
    }
    for a in &batch.activity {
        if !activity.take(&a.event_id) {
            continue;
        }
        let customer = &batch.customers[a.customer];
        let key = SliceKey {
            bucket: minute(a.event_time),
            country: &customer.country,
            segment: &customer.segment,
            category: Some(batch.products[a.product].category.as_str()),
            device_key: a.device_key,
            payment_method: None,
        };
        let m = out.entry(key).or_default();
        match a.event_type {
            EventType::PageView => m.page_views += 1,
            EventType::AddToCart => m.cart_adds += 1,
            // Purchases are sales rows, not activity.
            _ => {}
        }
    }
    out
}

/// The queue's columns, in COPY order.
const QUEUE_LAYOUT: [(&str, Type); 14] = [
    ("bucket", Type::TIMESTAMPTZ),
    ("country", Type::TEXT),
    ("segment", Type::TEXT),
    ("category", Type::TEXT),
    ("device_key", Type::INT2),
    ("payment_method", Type::TEXT),
    ("lines", Type::INT8),
    ("orders", Type::INT8),
    ("units", Type::INT8),
    ("gross", Type::NUMERIC),
    ("discounts", Type::NUMERIC),
    ("net", Type::NUMERIC),
    ("page_views", Type::INT8),
    ("cart_adds", Type::INT8),
];

/// `COPY ... FROM STDIN` into the queue of `table` (schema-qualified).
pub fn copy_statement(table: &str) -> String {
    format!(
        "COPY {table} ({}) FROM STDIN (FORMAT binary)",
        crate::copy_layout::columns(&QUEUE_LAYOUT)
    )
}

/// Append `rows` to the queue; returns how many.
pub fn queue(
    tx: &mut Transaction<'_>,
    copy: &str,
    rows: &BTreeMap<SliceKey<'_>, Measures>,
) -> Result<u64, postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let types: Vec<Type> = QUEUE_LAYOUT.iter().map(|(_, t)| t.clone()).collect();
    let mut w = BinaryCopyInWriter::new(tx.copy_in(copy)?, &types);
    for (k, m) in rows {
        let row: [&(dyn ToSql + Sync); 14] = [
            &k.bucket,
            &k.country,
            &k.segment,
            &k.category,
            &k.device_key,
            &k.payment_method,
            &m.lines,
            &m.orders,
            &m.units,
            &m.gross,
            &m.discounts,
            &m.net,
            &m.page_views,
            &m.cart_adds,
        ];
        w.write(&row)?;
    }
    w.finish()?;
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::RawRecord;
    use rust_decimal::dec;
    use serde_json::json;

    fn customer(id: &str, country: &str) -> serde_json::Value {
        json!({"customer_id": id, "name": "Ann", "email": "a@b.c", "city": "X", "country": country,
               "segment": "consumer", "signup_date": "2024-01-01", "gender": "female", "birth_date": "1990-05-17"})
    }

    fn product(id: &str, category: &str) -> serde_json::Value {
        json!({"product_id": id, "name": "N", "category": category, "brand": "B", "list_price": "10.00"})
    }

    fn event(
        kind: &str,
        time: &str,
        who: serde_json::Value,
        device: &str,
        extra: serde_json::Value,
    ) -> Vec<u8> {
        let mut v = json!({
            "schema_version": 2, "event_id": Uuid::new_v4(), "event_type": kind, "event_time": time,
            "session_id": Uuid::new_v4(), "customer": who, "device": device, "channel": "direct"
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn purchase(time: &str, who: serde_json::Value, lines: &[(&str, &str, i32, &str)]) -> Vec<u8> {
        let lines: Vec<_> = lines
            .iter()
            .enumerate()
            .map(|(i, (id, cat, qty, price))| {
                json!({"line_number": i + 1, "quantity": qty, "unit_price": price, "discount": "0.00",
                       "product": product(id, cat)})
            })
            .collect();
        event(
            "purchase",
            time,
            who,
            "mobile",
            json!({"order": {"order_id": Uuid::new_v4(), "currency": "USD", "payment_method": "card", "lines": lines}}),
        )
    }

    fn batch_of(payloads: &[Vec<u8>]) -> Batch {
        let mut b = Batch::default();
        for (i, p) in payloads.iter().enumerate() {
            b.add(RawRecord {
                partition: 0,
                offset: i as i64,
                key: None,
                payload: Some(p),
                timestamp_ms: None,
            });
        }
        let errors: Vec<&str> = b.dead_letters.iter().map(|d| d.error.as_str()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        b
    }

    fn payloads() -> Vec<Vec<u8>> {
        let fr = customer("C1", "FR");
        let de = customer("C2", "DE");
        vec![
            // Two categories in one order, and a second order in the same minute.
            purchase(
                "2026-11-30T10:15:10Z",
                fr.clone(),
                &[("P1", "Home", 2, "5.00"), ("P2", "Toys", 1, "7.50")],
            ),
            purchase("2026-11-30T10:15:50Z", fr.clone(), &[("P3", "Home", 1, "3.00")]),
            purchase("2026-11-30T10:16:00Z", de.clone(), &[("P1", "Home", 1, "5.00")]),
            event(
                "page_view",
                "2026-11-30T10:15:01Z",
                fr.clone(),
                "pc",
                json!({"product": product("P1", "Home")}),
            ),
            event(
                "page_view",
                "2026-11-30T10:15:02Z",
                fr.clone(),
                "pc",
                json!({"product": product("P1", "Home")}),
            ),
            event(
                "add_to_cart",
                "2026-11-30T10:15:03Z",
                fr,
                "mobile",
                json!({"product": product("P2", "Toys"), "quantity": 1}),
            ),
        ]
    }

    #[test]
    fn a_batch_sums_per_minute_slice_and_counts_orders_per_slice() {
        let batch = batch_of(&payloads());
        let rows = slices(&batch, Inserted::All, Inserted::All);
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let key = |t: &str, country, category: Option<&'static str>, device_key| SliceKey {
            bucket: at(t),
            country,
            segment: "consumer",
            category,
            device_key,
            payment_method: category.is_none().then_some("card"),
        };
        let m = |lines, orders, units, net: Decimal, page_views, cart_adds| Measures {
            lines,
            orders,
            units,
            gross: net,
            discounts: Decimal::ZERO,
            net,
            page_views,
            cart_adds,
        };
        let (mobile, pc) = (1, 2);
        let want: BTreeMap<SliceKey<'_>, Measures> = [
            // FR 10:15 on mobile: both orders have a Home line; only the first a Toys line.
            (
                key("2026-11-30T10:15:00Z", "FR", Some("Home"), mobile),
                m(2, 2, 3, dec!(13.00), 0, 0),
            ),
            (
                key("2026-11-30T10:15:00Z", "FR", Some("Toys"), mobile),
                m(1, 1, 1, dec!(7.50), 0, 1),
            ),
            // The whole orders: two, not three.
            (
                key("2026-11-30T10:15:00Z", "FR", None, mobile),
                m(3, 2, 4, dec!(20.50), 0, 0),
            ),
            (
                key("2026-11-30T10:15:00Z", "FR", Some("Home"), pc),
                m(0, 0, 0, Decimal::ZERO, 2, 0),
            ),
            (
                key("2026-11-30T10:16:00Z", "DE", Some("Home"), mobile),
                m(1, 1, 1, dec!(5.00), 0, 0),
            ),
            (
                key("2026-11-30T10:16:00Z", "DE", None, mobile),
                m(1, 1, 1, dec!(5.00), 0, 0),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(rows, want);
    }

    #[test]
    fn what_the_insert_returned_decides_which_rows_count() {
        let keys = |k: &[u32]| Some(k.to_vec());
        // (inserted, keys returned, expected)
        let cases = [
            (5, None, Inserted::All),
            (0, None, Inserted::Only(HashSet::new())),
            (2, keys(&[1, 2]), Inserted::Only([1, 2].into_iter().collect())),
        ];
        for (inserted, returned, want) in cases {
            assert_eq!(Inserted::from_insert(inserted, returned), want, "{inserted}");
        }
    }

    #[test]
    fn only_inserted_rows_count_and_a_repeated_row_counts_once() {
        let once = payloads();
        let mut twice = once.clone();
        twice.extend(once.iter().cloned());
        let batch = batch_of(&twice);
        // The database inserted each key once: the second copies add nothing.
        let sales: HashSet<(Uuid, i32)> = batch.sales.iter().map(|s| (s.order_id, s.line_number)).collect();
        let activity: HashSet<Uuid> = batch.activity.iter().map(|a| a.event_id).collect();
        let single = batch_of(&once);
        assert_eq!(
            slices(&batch, Inserted::Only(sales), Inserted::Only(activity)),
            slices(&single, Inserted::All, Inserted::All)
        );
        // Nothing inserted (all duplicates): nothing queued.
        assert!(
            slices(
                &batch,
                Inserted::Only(HashSet::new()),
                Inserted::Only(HashSet::new())
            )
            .is_empty()
        );
    }
}
