//! Kafka records -> warehouse rows, without I/O.
//!
//! A [`Batch`] collects one micro-batch: deduplicated dimension rows, fact
//! rows that point at them by batch-local index, dead letters for anything
//! invalid, and the offset range of every partition. Keys are resolved later
//! by the loader; everything here is a pure function of the records.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use rust_decimal::Decimal;
use shopstream_model::shopper::key_of;
use shopstream_model::{
    Channel, Customer, Device, ErrorKind, Event, EventType, Gender, Product, parse_event,
};
use uuid::Uuid;

/// A polled record, owned: kept until its batch is written, so the batch can
/// be rebuilt without a partition that was revoked meanwhile.
#[derive(Debug, Clone)]
pub struct OwnedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
}

impl OwnedRecord {
    pub fn raw(&self) -> RawRecord<'_> {
        RawRecord {
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref(),
            payload: self.payload.as_deref(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// One Kafka record as the consumer saw it.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// Kafka timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// Calendar key `yyyymmdd` (UTC), the primary key of `dim_date`.
pub fn date_key(t: DateTime<Utc>) -> i32 {
    t.year() * 10_000 + t.month() as i32 * 100 + t.day() as i32
}

/// Minute of the day (UTC), the primary key of `dim_time`.
pub fn time_key(t: DateTime<Utc>) -> i16 {
    (t.hour() * 60 + t.minute()) as i16
}

/// Part of the day of an hour, as in `dim_time.day_part`.
pub fn day_part(hour: u32) -> &'static str {
    match hour {
        0..=5 => "night",
        6..=11 => "morning",
        12..=17 => "afternoon",
        _ => "evening",
    }
}

/// A customer's first order: the earliest event time, ties broken by order
/// id, so every worker and every commit order picks the same one.
pub type FirstOrder = (DateTime<Utc>, Uuid);

/// The earlier of two first-order candidates.
pub fn earlier(a: Option<FirstOrder>, b: Option<FirstOrder>) -> Option<FirstOrder> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub customer_id: String,
    pub name: String,
    pub email: String,
    pub city: String,
    pub country: String,
    pub segment: String,
    pub signup_date: NaiveDate,
    /// Unknown for events of schema version 1 (a known value is kept).
    pub gender: Option<Gender>,
    pub birth_date: Option<NaiveDate>,
    /// Earliest purchase in this batch, if any.
    pub first_order: Option<FirstOrder>,
    /// Time of the event the attributes came from (latest wins: SCD type 1).
    pub seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductRow {
    pub product_id: String,
    pub name: String,
    pub category: String,
    pub brand: String,
    pub list_price: Decimal,
    pub seen_at: DateTime<Utc>,
}

/// A page view or cart add; `customer` and `product` index the batch's dimension rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub session_id: Uuid,
    pub customer: usize,
    pub product: usize,
    pub date_key: i32,
    pub time_key: i16,
    pub quantity: Option<i32>,
    pub list_price: Decimal,
    /// `dim_device` / `dim_channel` keys (0: unknown, schema version 1).
    pub device_key: i16,
    pub channel_key: i16,
    pub event_time: DateTime<Utc>,
    pub partition: i32,
    pub offset: i64,
}

/// One order line.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesRow {
    pub order_id: Uuid,
    pub line_number: i32,
    pub event_id: Uuid,
    pub session_id: Uuid,
    pub customer: usize,
    pub product: usize,
    pub date_key: i32,
    pub time_key: i16,
    pub currency: String,
    pub payment_method: String,
    pub quantity: i32,
    pub unit_price: Decimal,
    pub discount_amount: Decimal,
    pub line_total: Decimal,
    pub net_amount: Decimal,
    /// `dim_device` / `dim_channel` keys (0: unknown, schema version 1).
    pub device_key: i16,
    pub channel_key: i16,
    pub event_time: DateTime<Utc>,
    pub partition: i32,
    pub offset: i64,
}

/// A change of an order's status (schema version 2).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderUpdateRow {
    pub event_id: Uuid,
    pub order_id: Uuid,
    /// `completed`, `canceled` or `refunded`.
    pub status: &'static str,
    pub event_time: DateTime<Utc>,
    pub reason: Option<String>,
    pub refund_amount: Decimal,
    pub refund_units: i32,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub kind: ErrorKind,
    pub error: String,
    pub kafka_timestamp: Option<DateTime<Utc>>,
}

impl DeadLetter {
    pub fn new(rec: RawRecord<'_>, kind: ErrorKind, error: &str) -> Self {
        Self {
            partition: rec.partition,
            offset: rec.offset,
            key: rec.key.map(<[u8]>::to_vec),
            payload: rec.payload.map(<[u8]>::to_vec),
            kind,
            error: printable(error),
            kafka_timestamp: rec.timestamp_ms.and_then(DateTime::from_timestamp_millis),
        }
    }
}

/// Error texts can echo the payload, and PostgreSQL text cannot hold NUL:
/// write it as the JSON escape it was on the wire.
fn printable(error: &str) -> String {
    error.replace('\0', "\\u0000")
}

/// First and last offset of a partition's records in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub first: i64,
    pub last: i64,
}

impl OffsetRange {
    /// The offset to resume from once this batch is committed.
    pub fn next(&self) -> i64 {
        self.last + 1
    }
}

#[derive(Debug, Default)]
pub struct Batch {
    pub customers: Vec<CustomerRow>,
    pub products: Vec<ProductRow>,
    pub activity: Vec<ActivityRow>,
    pub sales: Vec<SalesRow>,
    pub order_updates: Vec<OrderUpdateRow>,
    pub dead_letters: Vec<DeadLetter>,
    pub offsets: BTreeMap<i32, OffsetRange>,
    pub records: usize,
    /// Event time of every valid event, for the event-to-commit latency.
    pub event_times: Vec<DateTime<Utc>>,
    customer_index: HashMap<String, usize>,
    product_index: HashMap<String, usize>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// A batch of one record, stored as the given dead letter.
    pub fn rejected(dead: DeadLetter, partition: i32, offset: i64) -> Self {
        let mut batch = Self {
            records: 1,
            ..Self::default()
        };
        batch.offsets.insert(
            partition,
            OffsetRange {
                first: offset,
                last: offset,
            },
        );
        batch.dead_letters.push(dead);
        batch
    }

    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a OwnedRecord>) -> Self {
        let mut batch = Self::default();
        for r in records {
            batch.add(r.raw());
        }
        batch
    }

    /// Add one record: valid events become rows, anything else a dead letter.
    pub fn add(&mut self, rec: RawRecord<'_>) {
        self.records += 1;
        self.offsets
            .entry(rec.partition)
            .and_modify(|r| {
                r.first = r.first.min(rec.offset);
                r.last = r.last.max(rec.offset);
            })
            .or_insert(OffsetRange {
                first: rec.offset,
                last: rec.offset,
            });
        let Some(payload) = rec.payload else {
            self.dead(
                rec,
                ErrorKind::NotJson,
                "message has no value (a tombstone)".to_string(),
            );
            return;
        };
        match parse_event(payload) {
            Ok(event) => self.add_event(&event, rec),
            Err(e) => self.dead(rec, e.kind(), e.to_string()),
        }
    }

    fn dead(&mut self, rec: RawRecord<'_>, kind: ErrorKind, error: String) {
        self.dead_letters.push(DeadLetter::new(rec, kind, &error));
    }

    fn add_event(&mut self, e: &Event<'_>, rec: RawRecord<'_>) {
        let t = e.event_time;
        self.event_times.push(t);
        let first_order = e.order.as_ref().map(|o| (t, o.order_id));
        let customer = self.customer(&e.customer, t, first_order);
        let (date_key, time_key) = (date_key(t), time_key(t));
        let device_key = key_of(e.device, Device::key);
        let channel_key = key_of(e.channel, Channel::key);
        match e.event_type {
            EventType::PageView | EventType::AddToCart => {
                // Validation guarantees the product (and the quantity of a cart add).
                let Some(p) = &e.product else { return };
                let product = self.product(p, t);
                self.activity.push(ActivityRow {
                    event_id: e.event_id,
                    event_type: e.event_type,
                    session_id: e.session_id,
                    customer,
                    product,
                    date_key,
                    time_key,
                    quantity: e.quantity.map(|q| q as i32),
                    list_price: p.list_price,
                    device_key,
                    channel_key,
                    event_time: t,
                    partition: rec.partition,
                    offset: rec.offset,
                });
            }
            EventType::OrderCompleted | EventType::OrderCanceled | EventType::OrderRefunded => {
                // Validation guarantees the update (and the status).
                let (Some(u), Some(status)) = (&e.order_update, e.event_type.order_status()) else {
                    return;
                };
                self.order_updates.push(OrderUpdateRow {
                    event_id: e.event_id,
                    order_id: u.order_id,
                    status,
                    event_time: t,
                    reason: u.reason.as_ref().map(|r| r.to_string()),
                    refund_amount: u.refunded_amount(),
                    refund_units: u.refunded_units() as i32,
                    partition: rec.partition,
                    offset: rec.offset,
                });
            }
            EventType::Purchase => {
                let Some(order) = &e.order else { return };
                for line in &order.lines {
                    let product = self.product(&line.product, t);
                    let line_total = line.line_total();
                    self.sales.push(SalesRow {
                        order_id: order.order_id,
                        line_number: line.line_number as i32,
                        event_id: e.event_id,
                        session_id: e.session_id,
                        customer,
                        product,
                        date_key,
                        time_key,
                        currency: order.currency.to_string(),
                        payment_method: order.payment_method.to_string(),
                        quantity: line.quantity as i32,
                        unit_price: line.unit_price,
                        discount_amount: line.discount,
                        line_total,
                        net_amount: line_total - line.discount,
                        device_key,
                        channel_key,
                        event_time: t,
                        partition: rec.partition,
                        offset: rec.offset,
                    });
                }
            }
        }
    }

    /// Index of the customer's row, inserting or refreshing it (latest event wins).
    fn customer(
        &mut self,
        c: &Customer<'_>,
        seen_at: DateTime<Utc>,
        first_order: Option<FirstOrder>,
    ) -> usize {
        if let Some(&i) = self.customer_index.get(c.customer_id.as_ref()) {
            let row = &mut self.customers[i];
            if seen_at >= row.seen_at {
                row.name = c.name.to_string();
                row.email = c.email.to_string();
                row.city = c.city.to_string();
                row.country = c.country.to_string();
                row.segment = c.segment.to_string();
                row.signup_date = c.signup_date;
                row.gender = c.gender.or(row.gender);
                row.birth_date = c.birth_date.or(row.birth_date);
                row.seen_at = seen_at;
            }
            row.first_order = earlier(row.first_order, first_order);
            return i;
        }
        let i = self.customers.len();
        self.customers.push(CustomerRow {
            customer_id: c.customer_id.to_string(),
            name: c.name.to_string(),
            email: c.email.to_string(),
            city: c.city.to_string(),
            country: c.country.to_string(),
            segment: c.segment.to_string(),
            signup_date: c.signup_date,
            gender: c.gender,
            birth_date: c.birth_date,
            first_order,
            seen_at,
        });
        self.customer_index.insert(c.customer_id.to_string(), i);
        i
    }

    fn product(&mut self, p: &Product<'_>, seen_at: DateTime<Utc>) -> usize {
        if let Some(&i) = self.product_index.get(p.product_id.as_ref()) {
            let row = &mut self.products[i];
            if seen_at >= row.seen_at {
                row.name = p.name.to_string();
                row.category = p.category.to_string();
                row.brand = p.brand.to_string();
                row.list_price = p.list_price;
                row.seen_at = seen_at;
            }
            return i;
        }
        let i = self.products.len();
        self.products.push(ProductRow {
            product_id: p.product_id.to_string(),
            name: p.name.to_string(),
            category: p.category.to_string(),
            brand: p.brand.to_string(),
            list_price: p.list_price,
            seen_at,
        });
        self.product_index.insert(p.product_id.to_string(), i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;
    use serde_json::json;

    fn customer(name: &str) -> serde_json::Value {
        json!({"customer_id": "C1", "name": name, "email": "a@b.c", "city": "Paris", "country": "FR",
               "segment": "consumer", "signup_date": "2024-01-01"})
    }

    fn product(price: &str) -> serde_json::Value {
        json!({"product_id": "P1", "name": "Mug", "category": "Home", "brand": "Acme", "list_price": price})
    }

    fn event(kind: &str, time: &str, extra: serde_json::Value) -> Vec<u8> {
        let mut v = json!({
            "schema_version": 1, "event_id": uuid::Uuid::new_v4(), "event_type": kind, "event_time": time,
            "session_id": "0d7f3c1a-5b2e-4c8d-9e6f-1a2b3c4d5e6f", "customer": customer("Ann")
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn rec(partition: i32, offset: i64, payload: &[u8]) -> RawRecord<'_> {
        RawRecord {
            partition,
            offset,
            key: Some(b"C1"),
            payload: Some(payload),
            timestamp_ms: Some(1_700_000_000_000),
        }
    }

    #[test]
    fn derived_time_columns() {
        // (timestamp, date_key, time_key, day part)
        let cases = [
            ("2026-11-30T00:00:00Z", 20261130, 0, "night"),
            ("2026-11-30T05:59:59Z", 20261130, 359, "night"),
            ("2026-02-28T06:00:00Z", 20260228, 360, "morning"),
            ("2024-02-29T12:30:00Z", 20240229, 750, "afternoon"),
            ("2026-12-31T23:59:59.999Z", 20261231, 1439, "evening"),
        ];
        for (ts, dk, tk, part) in cases {
            let t: DateTime<Utc> = ts.parse().unwrap();
            assert_eq!(date_key(t), dk, "{ts}");
            assert_eq!(time_key(t), tk, "{ts}");
            assert_eq!(day_part(t.hour()), part, "{ts}");
        }
    }

    #[test]
    fn purchases_become_order_lines_with_exact_money() {
        let purchase = event(
            "purchase",
            "2026-11-30T10:15:00Z",
            json!({"order": {"order_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "currency": "USD",
                "payment_method": "card", "lines": [
                {"line_number": 1, "quantity": 3, "unit_price": "0.10", "discount": "0.03", "product": product("0.10")},
                {"line_number": 2, "quantity": 1, "unit_price": "19.99", "discount": "0.00",
                 "product": {"product_id": "P2", "name": "Kettle", "category": "Home", "brand": "Acme", "list_price": "19.99"}}
            ]}}),
        );
        let mut b = Batch::default();
        b.add(rec(0, 41, &purchase));
        assert_eq!(b.sales.len(), 2);
        let l1 = &b.sales[0];
        assert_eq!(
            (l1.line_total, l1.discount_amount, l1.net_amount),
            (dec!(0.30), dec!(0.03), dec!(0.27))
        );
        assert_eq!((l1.date_key, l1.time_key), (20261130, 615));
        assert_eq!(b.sales[1].net_amount, dec!(19.99));
        assert_eq!(b.products.len(), 2);
        assert_eq!(b.customers.len(), 1);
        assert_eq!(
            b.customers[0].first_order.map(|f| f.0),
            Some("2026-11-30T10:15:00Z".parse().unwrap())
        );
        assert_eq!(b.offsets[&0], OffsetRange { first: 41, last: 41 });
    }

    #[test]
    fn the_first_order_is_the_earliest_with_ties_broken_by_order_id() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (t1, t2) = (t("2026-01-01T10:00:00Z"), t("2026-01-01T11:00:00Z"));
        // (candidate, candidate, first)
        let cases = [
            (None, None, None),
            (Some((t1, b)), None, Some((t1, b))),
            (None, Some((t2, a)), Some((t2, a))),
            (Some((t2, a)), Some((t1, b)), Some((t1, b))), // time first
            (Some((t1, b)), Some((t1, a)), Some((t1, a))), // a tie: the lower order id
        ];
        for (x, y, first) in cases {
            assert_eq!(earlier(x, y), first, "{x:?} {y:?}");
            assert_eq!(earlier(y, x), first, "commutative: {y:?} {x:?}");
        }
    }

    #[test]
    fn dimensions_are_deduplicated_and_the_latest_attributes_win() {
        let mut b = Batch::default();
        let late = event(
            "page_view",
            "2026-11-30T10:00:05Z",
            json!({"product": product("5.00")}),
        );
        let mut early_v: serde_json::Value = serde_json::from_slice(&event(
            "add_to_cart",
            "2026-11-30T10:00:01Z",
            json!({"product": product("4.00"), "quantity": 2}),
        ))
        .unwrap();
        early_v["customer"] = customer("Ann Old");
        let early = serde_json::to_vec(&early_v).unwrap();
        // The later event arrives first (another partition), the earlier one after.
        b.add(rec(1, 7, &late));
        b.add(rec(0, 3, &early));
        assert_eq!(b.customers.len(), 1);
        assert_eq!(b.customers[0].name, "Ann", "attributes of the latest event");
        assert_eq!(b.products.len(), 1);
        assert_eq!(b.products[0].list_price, dec!(5.00));
        assert_eq!(b.activity.len(), 2);
        assert_eq!(b.activity[1].quantity, Some(2));
        assert_eq!(
            b.activity[1].list_price,
            dec!(4.00),
            "facts keep the price of their own event"
        );
        assert!(b.activity.iter().all(|a| a.customer == 0 && a.product == 0));
        assert_eq!(b.offsets.len(), 2);
    }

    #[test]
    fn invalid_records_become_dead_letters_with_their_reason() {
        let cases: Vec<(Option<&[u8]>, ErrorKind, &str)> = vec![
            (Some(b"\xff\xfe"), ErrorKind::NotUtf8, "not valid UTF-8"),
            (
                Some(b"{\"schema_version\":"),
                ErrorKind::NotJson,
                "not valid JSON",
            ),
            (None, ErrorKind::NotJson, "tombstone"),
            (
                Some(br#"{"schema_version":7}"#),
                ErrorKind::UnsupportedSchemaVersion,
                "schema_version 7",
            ),
            (
                // The error echoes the value; PostgreSQL text cannot hold NUL.
                Some(br#"{"schema_version":1,"event_type":"\u0000x"}"#),
                ErrorKind::UnknownEventType,
                "`\\u0000x`",
            ),
        ];
        let mut b = Batch::default();
        for (i, (payload, ..)) in cases.iter().enumerate() {
            b.add(RawRecord {
                partition: 2,
                offset: i as i64 + 10,
                key: Some(b"k"),
                payload: *payload,
                timestamp_ms: None,
            });
        }
        let ok = event(
            "page_view",
            "2026-11-30T10:00:00Z",
            json!({"product": product("1.00")}),
        );
        b.add(rec(2, 15, &ok));
        assert_eq!(b.dead_letters.len(), cases.len());
        for (d, (payload, kind, needle)) in b.dead_letters.iter().zip(&cases) {
            assert_eq!(d.kind, *kind);
            assert!(d.error.contains(needle), "{}", d.error);
            assert!(!d.error.contains('\0'), "{:?}", d.error);
            assert_eq!(d.payload.as_deref(), *payload, "raw bytes are kept");
        }
        assert_eq!(b.activity.len(), 1, "valid events after bad ones still load");
        assert_eq!(b.offsets[&2], OffsetRange { first: 10, last: 15 });
        assert_eq!(b.offsets[&2].next(), 16);
        assert_eq!(b.records, 6);
    }
}
