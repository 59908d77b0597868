//! The event contract: one JSON object per Kafka message, keyed by `customer_id`.
//!
//! Strings are `Cow` so the generator can serialise borrowed catalog data and the
//! worker can deserialise without copying when the JSON has no escapes.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::shopper::{Channel, Device, Gender};

/// The wire schema version this build writes. Version 2 adds who shops and
/// how: the customer's gender and birth date, the session's device and
/// channel (required from version 2 on).
pub const SCHEMA_VERSION: u32 = 2;

/// The versions this build reads: version 1 events (from generators of the
/// previous release during a rolling upgrade) load with those attributes
/// unknown. Workers of the previous release dead-letter version 2 as
/// `unsupported_schema_version` rather than loading it without them.
pub const READABLE_SCHEMA_VERSIONS: std::ops::RangeInclusive<u32> = 1..=SCHEMA_VERSION;

/// Number of decimal places money carries on the wire and in the warehouse.
pub const MONEY_SCALE: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    PageView,
    AddToCart,
    /// Places an order (`pending`).
    Purchase,
    /// The order was delivered (from version 2).
    OrderCompleted,
    /// The order was canceled before completion, with a reason (from version 2).
    OrderCanceled,
    /// Some or all lines of a completed order were refunded, with a reason
    /// (from version 2).
    OrderRefunded,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::PageView,
        EventType::AddToCart,
        EventType::Purchase,
        EventType::OrderCompleted,
        EventType::OrderCanceled,
        EventType::OrderRefunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PageView => "page_view",
            EventType::AddToCart => "add_to_cart",
            EventType::Purchase => "purchase",
            EventType::OrderCompleted => "order_completed",
            EventType::OrderCanceled => "order_canceled",
            EventType::OrderRefunded => "order_refunded",
        }
    }

    /// The status an order has after this event, as `fact_order.status`
    /// spells it (`None`: not an order event).
    pub fn order_status(self) -> Option<&'static str> {
        match self {
            EventType::Purchase => Some("pending"),
            EventType::OrderCompleted => Some("completed"),
            EventType::OrderCanceled => Some("canceled"),
            EventType::OrderRefunded => Some("refunded"),
            EventType::PageView | EventType::AddToCart => None,
        }
    }

    /// A change of an order's status after it was placed (carries `order_update`).
    pub fn is_order_update(self) -> bool {
        matches!(
            self,
            EventType::OrderCompleted | EventType::OrderCanceled | EventType::OrderRefunded
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One shop event. Which optional parts are required depends on `event_type`
/// (see [`crate::validate`]): product events carry `product`, cart adds also a
/// `quantity`, purchases an `order`, an order's later status changes an
/// `order_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<'a> {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub event_type: EventType,
    pub event_time: DateTime<Utc>,
    pub session_id: Uuid,
    #[serde(borrow)]
    pub customer: Customer<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub product: Option<Product<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order<'a>>,
    /// What changed for an order placed earlier (status events, version 2).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub order_update: Option<OrderUpdate<'a>>,
    /// The session's device (from version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// The session's traffic channel (from version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Customer<'a> {
    #[serde(borrow)]
    pub customer_id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub email: Cow<'a, str>,
    #[serde(borrow)]
    pub city: Cow<'a, str>,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(borrow)]
    pub country: Cow<'a, str>,
    #[serde(borrow)]
    pub segment: Cow<'a, str>,
    pub signup_date: NaiveDate,
    /// From version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    /// From version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Product<'a> {
    #[serde(borrow)]
    pub product_id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    #[serde(borrow)]
    pub brand: Cow<'a, str>,
    /// Exact decimal, serialised as a string.
    #[serde(with = "crate::money")]
    pub list_price: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order<'a> {
    pub order_id: Uuid,
    /// ISO 4217 code.
    #[serde(borrow)]
    pub currency: Cow<'a, str>,
    #[serde(borrow)]
    pub payment_method: Cow<'a, str>,
    #[serde(borrow)]
    pub lines: Vec<LineItem<'a>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem<'a> {
    /// 1-based position in the order; `(order_id, line_number)` is unique.
    pub line_number: u32,
    #[serde(borrow)]
    pub product: Product<'a>,
    pub quantity: i64,
    #[serde(with = "crate::money")]
    pub unit_price: Decimal,
    /// Absolute discount on the whole line (not per unit).
    #[serde(with = "crate::money")]
    pub discount: Decimal,
}

/// A status change of an order placed by an earlier `purchase`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderUpdate<'a> {
    pub order_id: Uuid,
    /// Why it was canceled or refunded (required for those).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    /// The refunded lines (refunds only): which, how many units, how much.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<RefundLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundLine {
    /// The order line, as numbered in its purchase.
    pub line_number: u32,
    pub quantity: i64,
    /// Money returned for these units.
    #[serde(with = "crate::money")]
    pub amount: Decimal,
}

impl OrderUpdate<'_> {
    pub fn refunded_amount(&self) -> Decimal {
        self.refunds.iter().map(|r| r.amount).sum()
    }

    pub fn refunded_units(&self) -> i64 {
        self.refunds.iter().map(|r| r.quantity).sum()
    }
}

impl Customer<'_> {
    /// A copy that borrows this one's strings: no allocation per event.
    pub fn reborrow(&self) -> Customer<'_> {
        Customer {
            customer_id: Cow::Borrowed(&self.customer_id),
            name: Cow::Borrowed(&self.name),
            email: Cow::Borrowed(&self.email),
            city: Cow::Borrowed(&self.city),
            country: Cow::Borrowed(&self.country),
            segment: Cow::Borrowed(&self.segment),
            signup_date: self.signup_date,
            gender: self.gender,
            birth_date: self.birth_date,
        }
    }
}

impl Product<'_> {
    /// A copy that borrows this one's strings: no allocation per event.
    pub fn reborrow(&self) -> Product<'_> {
        Product {
            product_id: Cow::Borrowed(&self.product_id),
            name: Cow::Borrowed(&self.name),
            category: Cow::Borrowed(&self.category),
            brand: Cow::Borrowed(&self.brand),
            list_price: self.list_price,
        }
    }
}

impl LineItem<'_> {
    /// Quantity times unit price, before discount.
    pub fn line_total(&self) -> Decimal {
        self.unit_price * Decimal::from(self.quantity)
    }

    /// What the customer pays for this line.
    pub fn net_amount(&self) -> Decimal {
        self.line_total() - self.discount
    }
}

impl Order<'_> {
    pub fn units(&self) -> i64 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    pub fn gross(&self) -> Decimal {
        self.lines.iter().map(LineItem::line_total).sum()
    }

    pub fn discount(&self) -> Decimal {
        self.lines.iter().map(|l| l.discount).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn product() -> Product<'static> {
        Product {
            product_id: "P000001".into(),
            name: "Acme Kettle".into(),
            category: "Home & Kitchen".into(),
            brand: "Acme".into(),
            list_price: dec!(19.99),
        }
    }

    #[test]
    fn money_is_exact() {
        let line = LineItem {
            line_number: 1,
            product: product(),
            quantity: 3,
            unit_price: dec!(0.10),
            discount: dec!(0.03),
        };
        assert_eq!(line.line_total(), dec!(0.30));
        assert_eq!(line.net_amount(), dec!(0.27));
    }

    #[test]
    fn money_serialises_as_decimal_strings() {
        let json = serde_json::to_value(product()).unwrap();
        assert_eq!(json["list_price"], serde_json::json!("19.99"));
    }

    #[test]
    fn event_type_names_match_the_wire() {
        for t in EventType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
    }
}
