//! The order-line table (the report's "customer details"): one row per
//! order line, newest first, under the global filters, searchable by order
//! id or customer id, paged by keyset (the last row's event time, order id
//! and line number), so page 1000 costs what page 1 does on any number of
//! facts. The index behind it is migration 0011's on
//! `fact_sales (event_time, order_id, line_number)`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shopstream_model::SchemaName;
use shopstream_model::warehouse::{DIM_CUSTOMER, DIM_DEVICE, DIM_PRODUCT, FACT_ORDER, FACT_SALES};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::filters::{Condition, Filters};

/// Where a page starts: strictly after this row in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub event_time: DateTime<Utc>,
    pub order_id: Uuid,
    pub line_number: i32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad cursor `{0}`: pass back the `next` of the previous page")]
pub struct BadCursor(String);

impl Cursor {
    /// `micros_orderid_line`: URL-safe, no `+` or `:` to escape.
    pub fn encode(&self) -> String {
        format!(
            "{}_{}_{}",
            self.event_time.timestamp_micros(),
            self.order_id,
            self.line_number
        )
    }

    pub fn decode(s: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(s.to_string());
        let mut parts = s.splitn(3, '_');
        let micros: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let order_id: Uuid = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let line_number: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        Ok(Cursor {
            event_time: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            order_id,
            line_number,
        })
    }
}

/// A search: an order id if it parses as one, else a customer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    Order(Uuid),
    Customer(String),
}

impl Search {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(match text.parse::<Uuid>() {
            Ok(id) => Search::Order(id),
            Err(_) => Search::Customer(text.to_string()),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub event_time: DateTime<Utc>,
    pub order_id: Uuid,
    pub line_number: i32,
    pub customer_id: String,
    pub customer_name: String,
    /// Years at the time of the order; None when the birth date is unknown.
    pub age: Option<i32>,
    pub country: String,
    pub segment: String,
    pub payment_method: String,
    pub device: String,
    pub status: String,
    pub product: String,
    pub category: String,
    pub quantity: i32,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub lines: Vec<Line>,
    /// The cursor of the next page; None on the last one.
    pub next: Option<String>,
}

/// The CSV columns, in the order `Line` has them.
pub const CSV_HEADER: [&str; 15] = [
    "event_time",
    "order_id",
    "line_number",
    "customer_id",
    "customer_name",
    "age",
    "country",
    "segment",
    "payment_method",
    "device",
    "status",
    "product",
    "category",
    "quantity",
    "amount",
];

impl Line {
    pub fn csv_record(&self) -> [String; 15] {
        [
            self.event_time.to_rfc3339(),
            self.order_id.to_string(),
            self.line_number.to_string(),
            self.customer_id.clone(),
            self.customer_name.clone(),
            self.age.map(|a| a.to_string()).unwrap_or_default(),
            self.country.clone(),
            self.segment.clone(),
            self.payment_method.clone(),
            self.device.clone(),
            self.status.clone(),
            self.product.clone(),
            self.category.clone(),
            self.quantity.to_string(),
            self.amount.to_string(),
        ]
    }
}

/// Up to `limit` lines after `after`, newest first.
pub async fn lines(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    search: Option<&Search>,
    after: Option<Cursor>,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Page, tokio_postgres::Error> {
    let mut cond: Condition = f.fact_condition(now);
    if let Some(after) = after {
        cond.push_row(
            "(f.event_time, f.order_id, f.line_number)",
            "<",
            vec![
                Box::new(after.event_time),
                Box::new(after.order_id),
                Box::new(after.line_number),
            ],
        );
    }
    match search {
        Some(Search::Order(id)) => cond.push_value("f.order_id", "=", Box::new(*id)),
        Some(Search::Customer(id)) => cond.push_value("c.customer_id", "=", Box::new(id.clone())),
        None => {}
    }
    // One more than asked: whether there is a next page.
    let sql = format!(
        "SELECT f.event_time, f.order_id, f.line_number, c.customer_id, c.name,
                extract(year FROM age(f.event_time::date, c.birth_date))::int, c.country, c.segment,
                f.payment_method, coalesce(d.device_type, 'unknown'), coalesce(o.status, 'pending'), p.name,
                p.category, f.quantity, f.net_amount
         FROM {sales} f
         JOIN {customer} c USING (customer_key)
         JOIN {product} p USING (product_key)
         LEFT JOIN {device} d USING (device_key)
         LEFT JOIN {orders} o USING (order_id)
         WHERE {where_}
         ORDER BY f.event_time DESC, f.order_id DESC, f.line_number DESC
         LIMIT {}",
        limit + 1,
        sales = s.table(FACT_SALES),
        customer = s.table(DIM_CUSTOMER),
        product = s.table(DIM_PRODUCT),
        device = s.table(DIM_DEVICE),
        orders = s.table(FACT_ORDER),
        where_ = cond.sql,
    );
    let rows = c.query(&sql, &cond.params()).await?;
    let mut lines: Vec<Line> = rows
        .iter()
        .map(|r| Line {
            event_time: r.get(0),
            order_id: r.get(1),
            line_number: r.get(2),
            customer_id: r.get(3),
            customer_name: r.get(4),
            age: r.get(5),
            country: r.get(6),
            segment: r.get(7),
            payment_method: r.get(8),
            device: r.get(9),
            status: r.get(10),
            product: r.get(11),
            category: r.get(12),
            quantity: r.get(13),
            amount: r.get(14),
        })
        .collect();
    let next = if lines.len() as i64 > limit {
        lines.truncate(limit as usize);
        lines.last().map(|l| {
            Cursor {
                event_time: l.event_time,
                order_id: l.order_id,
                line_number: l.line_number,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Page { lines, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = Cursor {
            event_time: "2026-12-04T10:15:30.123456Z".parse().unwrap(),
            order_id: Uuid::from_u128(0x1234),
            line_number: 3,
        };
        let text = c.encode();
        assert!(!text.contains('+') && !text.contains(':'), "{text}");
        assert_eq!(Cursor::decode(&text), Ok(c));
        for bad in [
            "",
            "x_y_z",
            "1_not-a-uuid_1",
            "1_00000000-0000-0000-0000-000000001234",
        ] {
            assert_eq!(Cursor::decode(bad), Err(BadCursor(bad.into())), "{bad}");
        }
    }

    #[test]
    fn a_search_is_an_order_id_or_a_customer_id() {
        let id = Uuid::from_u128(7);
        let cases = [
            ("", None),
            ("  ", None),
            (" C00042 ", Some(Search::Customer("C00042".into()))),
            (&id.to_string(), Some(Search::Order(id))),
        ];
        for (text, want) in cases {
            assert_eq!(Search::parse(text), want, "{text:?}");
        }
    }
}
