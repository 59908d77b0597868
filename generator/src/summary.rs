//! The audit: what was delivered, counted from delivery reports only, so it is
//! the ground truth a warehouse can be reconciled against.

use std::path::Path;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
pub use shopstream_model::summary::{InDoubt, OrderEvents, Orders, StopReason, Summary};
use shopstream_model::{Event, EventType};
use thiserror::Error;

use crate::invalid::{InvalidKind, KindCounts};

/// What one message adds to the totals once the broker has acknowledged it.
#[derive(Debug, Clone, PartialEq)]
pub enum Contribution {
    Event {
        event_type: EventType,
        order_lines: u64,
        units: i64,
        gross: Decimal,
        discount: Decimal,
        /// A cancellation's booked amount, a refund's refunded amount.
        order_amount: Decimal,
    },
    Invalid(InvalidKind),
}

impl Contribution {
    /// `canceled_amount`: what a cancellation's order had booked (the event
    /// names only the order); ignored for other events.
    pub fn of_event(event: &Event<'_>, canceled_amount: Decimal) -> Self {
        let (order_lines, units, gross, discount) = match &event.order {
            Some(order) => (
                order.lines.len() as u64,
                order.units(),
                order.gross(),
                order.discount(),
            ),
            None => (0, 0, Decimal::ZERO, Decimal::ZERO),
        };
        let order_amount = match event.event_type {
            EventType::OrderCanceled => canceled_amount,
            EventType::OrderRefunded => event
                .order_update
                .as_ref()
                .map_or(Decimal::ZERO, |u| u.refunded_amount()),
            _ => Decimal::ZERO,
        };
        Contribution::Event {
            event_type: event.event_type,
            order_lines,
            units,
            gross,
            discount,
            order_amount,
        }
    }
}

/// Running totals of delivered messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub by_type: [u64; EventType::ALL.len()],
    pub order_lines: u64,
    pub units: i64,
    pub gross: Decimal,
    pub discount: Decimal,
    pub canceled_amount: Decimal,
    pub refunded_amount: Decimal,
    pub invalid: KindCounts,
}

impl Tally {
    pub fn add(&mut self, c: &Contribution) {
        match c {
            Contribution::Event {
                event_type,
                order_lines,
                units,
                gross,
                discount,
                order_amount,
            } => {
                self.by_type[type_index(*event_type)] += 1;
                self.order_lines += order_lines;
                self.units += units;
                self.gross += gross;
                self.discount += discount;
                match event_type {
                    EventType::OrderCanceled => self.canceled_amount += order_amount,
                    EventType::OrderRefunded => self.refunded_amount += order_amount,
                    _ => {}
                }
            }
            Contribution::Invalid(kind) => self.invalid.add(*kind),
        }
    }

    pub fn events(&self) -> u64 {
        self.by_type.iter().sum()
    }

    pub fn messages(&self) -> u64 {
        self.events() + self.invalid.total()
    }

    pub fn count(&self, t: EventType) -> u64 {
        self.by_type[type_index(t)]
    }

    pub fn order_events(&self) -> OrderEvents {
        OrderEvents {
            purchases: self.count(EventType::Purchase),
            completions: self.count(EventType::OrderCompleted),
            cancellations: self.count(EventType::OrderCanceled),
            refunds: self.count(EventType::OrderRefunded),
            canceled_amount: self.canceled_amount,
            refunded_amount: self.refunded_amount,
        }
    }
}

fn type_index(t: EventType) -> usize {
    EventType::ALL.iter().position(|a| *a == t).unwrap_or_default()
}

/// The in-doubt section from the tally of the messages in doubt.
pub fn in_doubt_of(t: &Tally) -> InDoubt {
    InDoubt {
        messages: t.messages(),
        order_lines: t.order_lines,
        units: t.units,
        net_revenue: t.gross - t.discount,
        activity_events: t.count(EventType::PageView) + t.count(EventType::AddToCart),
        order_events: t.order_events().total(),
        canceled_amount: t.canceled_amount,
        refunded_amount: t.refunded_amount,
        invalid: t.invalid.total(),
    }
}

pub struct RunInfo<'a> {
    pub instance: &'a str,
    pub seed: u64,
    pub topic: &'a str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub producing_seconds: f64,
    pub stopped_by: StopReason,
    pub delivery_failures: u64,
    pub in_doubt: &'a Tally,
}

/// The summary of a run from the tally of what was acknowledged.
pub fn build(tally: &Tally, run: RunInfo<'_>) -> Summary {
    let duration_seconds = (run.finished_at - run.started_at)
        .to_std()
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let events_by_type = EventType::ALL
        .iter()
        .map(|t| (t.as_str().to_string(), tally.count(*t)))
        .collect();
    let invalid_by_kind = InvalidKind::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), tally.invalid.get(*k)))
        .collect();
    let messages = tally.messages();
    Summary {
        instance: run.instance.to_string(),
        seed: run.seed,
        topic: run.topic.to_string(),
        events_total: tally.events(),
        events_by_type,
        order_lines: tally.order_lines,
        units: tally.units,
        gross_revenue: tally.gross,
        discount_total: tally.discount,
        net_revenue: tally.gross - tally.discount,
        orders: Orders::from_events(tally.order_events()),
        invalid_total: tally.invalid.total(),
        invalid_by_kind,
        messages_total: messages,
        delivery_failures: run.delivery_failures,
        in_doubt: in_doubt_of(run.in_doubt),
        stopped_by: run.stopped_by,
        started_at: run.started_at,
        finished_at: run.finished_at,
        duration_seconds,
        producing_seconds: run.producing_seconds,
        events_per_second: if run.producing_seconds > 0.0 {
            messages as f64 / run.producing_seconds
        } else {
            0.0
        },
    }
}

/// Write atomically (temp file + rename): readers never see half a file.
pub fn write(summary: &Summary, path: &Path) -> Result<(), SummaryError> {
    let json = summary.to_json().map_err(SummaryError::Encode)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| SummaryError::Write {
            path: path.display().to_string(),
            source,
        })
}

pub fn read(path: &Path) -> Result<Summary, SummaryError> {
    let bytes = std::fs::read(path).map_err(|source| SummaryError::Write {
        path: path.display().to_string(),
        source,
    })?;
    Summary::from_json(&bytes).map_err(SummaryError::Encode)
}

#[derive(Debug, Error)]
pub enum SummaryError {
    #[error("cannot encode or decode the summary: {0}")]
    Encode(serde_json::Error),
    #[error("cannot access summary file {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn totals_add_up_and_net_is_gross_minus_discount() {
        let mut t = Tally::default();
        t.add(&Contribution::Event {
            event_type: EventType::Purchase,
            order_lines: 2,
            units: 3,
            gross: dec!(44.98),
            discount: dec!(4.00),
            order_amount: Decimal::ZERO,
        });
        for (event_type, order_amount) in [
            (EventType::OrderCanceled, dec!(10.00)),
            (EventType::OrderRefunded, dec!(2.50)),
        ] {
            t.add(&Contribution::Event {
                event_type,
                order_lines: 0,
                units: 0,
                gross: Decimal::ZERO,
                discount: Decimal::ZERO,
                order_amount,
            });
        }
        t.add(&Contribution::Event {
            event_type: EventType::PageView,
            order_lines: 0,
            units: 0,
            gross: Decimal::ZERO,
            discount: Decimal::ZERO,
            order_amount: Decimal::ZERO,
        });
        t.add(&Contribution::Invalid(InvalidKind::WrongType));
        let now = Utc::now();
        let s = build(
            &t,
            RunInfo {
                instance: "gen-0",
                seed: 42,
                topic: "t",
                started_at: now - chrono::Duration::seconds(2),
                finished_at: now,
                producing_seconds: 2.0,
                stopped_by: StopReason::Total,
                delivery_failures: 0,
                in_doubt: &Tally::default(),
            },
        );
        assert_eq!(s.events_total, 4);
        assert_eq!(s.messages_total, 5);
        assert_eq!(
            (
                s.orders.canceled,
                s.orders.refunded,
                s.orders.canceled_amount,
                s.orders.refunded_amount
            ),
            (1, 1, dec!(10.00), dec!(2.50))
        );
        assert_eq!(s.events_by_type["purchase"], 1);
        assert_eq!(s.events_by_type["add_to_cart"], 0);
        assert_eq!(s.invalid_by_kind["wrong_type"], 1);
        assert_eq!(s.invalid_by_kind.len(), 6);
        assert_eq!(s.net_revenue, dec!(40.98));
        assert!((s.events_per_second - 2.5).abs() < 1e-9);
        assert_eq!(s.in_doubt, InDoubt::default());
        assert_eq!(
            in_doubt_of(&t),
            InDoubt {
                messages: 5,
                order_lines: 2,
                units: 3,
                net_revenue: dec!(40.98),
                activity_events: 1,
                order_events: 3,
                canceled_amount: dec!(10.00),
                refunded_amount: dec!(2.50),
                invalid: 1,
            }
        );

        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["net_revenue"],
            serde_json::json!("40.98"),
            "money is a decimal string"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        write(&s, &path).unwrap();
        assert_eq!(read(&path).unwrap(), s);
        assert_eq!(s.activity_events(), 1);
    }
}
