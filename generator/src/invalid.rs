//! Deliberately bad messages, so the pipeline's error handling is exercised
//! with the kinds of garbage real producers emit.

use std::fmt;

use rand::Rng;
use serde_json::{Value, json};
use shopstream_model::{ErrorKind, Event, EventType, READABLE_SCHEMA_VERSIONS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InvalidKind {
    NotJson,
    MissingField,
    WrongType,
    NegativeQuantity,
    UnknownEventType,
    UnknownSchemaVersion,
}

impl InvalidKind {
    pub const ALL: [InvalidKind; 6] = [
        InvalidKind::NotJson,
        InvalidKind::MissingField,
        InvalidKind::WrongType,
        InvalidKind::NegativeQuantity,
        InvalidKind::UnknownEventType,
        InvalidKind::UnknownSchemaVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::NotJson => "not_json",
            InvalidKind::MissingField => "missing_field",
            InvalidKind::WrongType => "wrong_type",
            InvalidKind::NegativeQuantity => "negative_quantity",
            InvalidKind::UnknownEventType => "unknown_event_type",
            InvalidKind::UnknownSchemaVersion => "unknown_schema_version",
        }
    }

    /// How a consumer validating with `shopstream_model` classifies it.
    pub fn expected_error(self) -> ErrorKind {
        match self {
            InvalidKind::NotJson => ErrorKind::NotJson,
            InvalidKind::MissingField => ErrorKind::MissingField,
            InvalidKind::WrongType => ErrorKind::WrongType,
            InvalidKind::NegativeQuantity => ErrorKind::InvalidValue,
            InvalidKind::UnknownEventType => ErrorKind::UnknownEventType,
            InvalidKind::UnknownSchemaVersion => ErrorKind::UnsupportedSchemaVersion,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for InvalidKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-kind counters indexed by [`InvalidKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts([u64; 6]);

impl KindCounts {
    pub fn add(&mut self, kind: InvalidKind) {
        self.0[kind.index()] += 1;
    }

    pub fn get(&self, kind: InvalidKind) -> u64 {
        self.0[kind.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Turn a valid event into a bad message of `kind`. Rare path (a few percent
/// of messages), so it goes through `serde_json::Value` for clarity.
pub fn corrupt<R: Rng>(rng: &mut R, event: &Event<'_>, kind: InvalidKind) -> Vec<u8> {
    let mut v = serde_json::to_value(event).expect("events always serialise");
    match kind {
        InvalidKind::NotJson => {
            let mut text = v.to_string();
            // A producer that crashed mid-write: cut inside the object (on a
            // character boundary, so it stays UTF-8 and is "only" broken JSON).
            let mut cut = rng.random_range(1..text.len() - 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            return text.into_bytes();
        }
        InvalidKind::MissingField => {
            let field =
                ["event_id", "event_time", "session_id", "customer", "event_type"][rng.random_range(0..5)];
            if let Value::Object(map) = &mut v {
                map.remove(field);
            }
        }
        InvalidKind::WrongType => match rng.random_range(0..3) {
            0 => v["event_time"] = json!(event.event_time.timestamp_millis()),
            1 => v["session_id"] = json!(12345),
            _ => v["customer"] = json!(event.customer.customer_id),
        },
        InvalidKind::NegativeQuantity => {
            let quantity = -rng.random_range(1..=5_i64);
            match event.event_type {
                EventType::Purchase => v["order"]["lines"][0]["quantity"] = json!(quantity),
                EventType::PageView | EventType::AddToCart => {
                    v["event_type"] = json!("add_to_cart");
                    v["quantity"] = json!(quantity);
                }
                EventType::OrderCompleted | EventType::OrderCanceled | EventType::OrderRefunded => {
                    v["event_type"] = json!("order_refunded");
                    v["order_update"]["reason"] = json!("damaged");
                    v["order_update"]["refunds"] =
                        json!([{"line_number": 1, "quantity": quantity, "amount": "1.00"}]);
                }
            }
        }
        InvalidKind::UnknownEventType => {
            v["event_type"] = json!(["refund", "wishlist_add", "checkout_start"][rng.random_range(0..3)]);
        }
        InvalidKind::UnknownSchemaVersion => {
            // A version from the future: beyond every one this build reads.
            let newest = *READABLE_SCHEMA_VERSIONS.end();
            v["schema_version"] = json!(rng.random_range(newest + 1..=newest + 8));
        }
    }
    serde_json::to_vec(&v).expect("values always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::traffic::{Behaviour, Traffic};
    use chrono::Utc;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn each_kind_is_rejected_with_its_expected_error() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let catalog = Catalog::generate(&mut rng, 500, 100);
        let mut traffic = Traffic::new(&catalog, Behaviour::default(), &mut rng);
        let mut covered = std::collections::HashSet::new();
        for i in 0..6_000 {
            let event = traffic.next_event(&mut rng, Utc::now());
            let kind = InvalidKind::ALL[i % 6];
            let bytes = corrupt(&mut rng, &event, kind);
            let err = shopstream_model::parse_event(&bytes).expect_err("corrupted messages are invalid");
            assert_eq!(err.kind(), kind.expected_error(), "{kind}: {err}");
            covered.insert((kind, event.event_type));
        }
        // Every kind was applied to every event type.
        assert_eq!(covered.len(), 18);
    }

    #[test]
    fn counts_by_kind() {
        let mut c = KindCounts::default();
        c.add(InvalidKind::NotJson);
        c.add(InvalidKind::NotJson);
        c.add(InvalidKind::UnknownSchemaVersion);
        assert_eq!(c.get(InvalidKind::NotJson), 2);
        assert_eq!(c.get(InvalidKind::WrongType), 0);
        assert_eq!(c.total(), 3);
    }
}
