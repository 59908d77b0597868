//! The generator's `--summary-file`: what it delivered, counted from the
//! broker's acknowledgements. The generator writes it and the local runtime's
//! audit reads it; one type for both, so the contract cannot drift.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Why production ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Total,
    Duration,
    Profile,
    Signal,
    Error,
}

/// The `--summary-file` document. Money is decimal strings; `events_*` count
/// valid events, `invalid_*` the deliberately bad messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub instance: String,
    pub seed: u64,
    pub topic: String,
    pub events_total: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub order_lines: u64,
    pub units: i64,
    pub gross_revenue: Decimal,
    pub discount_total: Decimal,
    pub net_revenue: Decimal,
    /// Where the delivered orders stand at the end of the run.
    #[serde(default)]
    pub orders: Orders,
    pub invalid_total: u64,
    pub invalid_by_kind: BTreeMap<String, u64>,
    pub messages_total: u64,
    /// Messages that never reached the broker; non-zero means data was lost.
    pub delivery_failures: u64,
    /// Messages sent but never acknowledged (purged in flight at shutdown, or
    /// timed out): the topic may or may not hold them. Not in the totals above.
    #[serde(default)]
    pub in_doubt: InDoubt,
    pub stopped_by: StopReason,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    /// Time spent producing (start-up and the final flush excluded).
    pub producing_seconds: f64,
    /// Delivered messages per second while producing.
    pub events_per_second: f64,
}

/// The totals of the messages in doubt, so an audit can accept each one
/// present or absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InDoubt {
    pub messages: u64,
    pub order_lines: u64,
    pub units: i64,
    pub net_revenue: Decimal,
    /// Page views and add-to-carts (activity rows).
    pub activity_events: u64,
    /// Purchases and order status events: each may move one order between
    /// two statuses in the warehouse's counts.
    #[serde(default)]
    pub order_events: u64,
    #[serde(default)]
    pub canceled_amount: Decimal,
    #[serde(default)]
    pub refunded_amount: Decimal,
    pub invalid: u64,
}

/// Orders by the status they ended the run in, and the money canceled and
/// refunded. Counted from the acknowledged lifecycle events: the generator
/// cancels an order (before completion) or completes it and then refunds it
/// at most once, so each count follows from the numbers of events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Orders {
    pub placed: u64,
    pub pending: u64,
    /// Completed and not refunded.
    pub completed: u64,
    pub canceled: u64,
    pub refunded: u64,
    /// What the canceled orders had booked (net of discounts).
    pub canceled_amount: Decimal,
    pub refunded_amount: Decimal,
}

/// The numbers of acknowledged order events, and the money they moved.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OrderEvents {
    pub purchases: u64,
    pub completions: u64,
    pub cancellations: u64,
    pub refunds: u64,
    pub canceled_amount: Decimal,
    pub refunded_amount: Decimal,
}

impl OrderEvents {
    /// Purchases and status events together.
    pub fn total(&self) -> u64 {
        self.purchases + self.completions + self.cancellations + self.refunds
    }
}

impl Orders {
    pub fn from_events(e: OrderEvents) -> Self {
        Self {
            placed: e.purchases,
            pending: e.purchases.saturating_sub(e.completions + e.cancellations),
            completed: e.completions.saturating_sub(e.refunds),
            canceled: e.cancellations,
            refunded: e.refunds,
            canceled_amount: e.canceled_amount,
            refunded_amount: e.refunded_amount,
        }
    }

    /// The sum over several generators' orders.
    pub fn add(&mut self, o: &Orders) {
        self.placed += o.placed;
        self.pending += o.pending;
        self.completed += o.completed;
        self.canceled += o.canceled;
        self.refunded += o.refunded;
        self.canceled_amount += o.canceled_amount;
        self.refunded_amount += o.refunded_amount;
    }
}

impl Summary {
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Rows of `fact_activity` the delivered events make (views and carts).
    pub fn activity_events(&self) -> u64 {
        ["page_view", "add_to_cart"]
            .iter()
            .map(|t| self.events_by_type.get(*t).copied().unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn final_statuses_follow_from_the_event_counts() {
        let cases = [
            // (purchases, completions, cancellations, refunds) -> (pending, completed, canceled, refunded)
            ((0, 0, 0, 0), (0, 0, 0, 0)),
            ((10, 0, 0, 0), (10, 0, 0, 0)),
            ((10, 6, 2, 0), (2, 6, 2, 0)),
            ((10, 6, 2, 1), (2, 5, 2, 1)),
            ((10, 8, 2, 8), (0, 0, 2, 8)),
        ];
        for ((p, k, c, r), want) in cases {
            let o = Orders::from_events(OrderEvents {
                purchases: p,
                completions: k,
                cancellations: c,
                refunds: r,
                canceled_amount: dec!(1.50),
                refunded_amount: dec!(2.25),
            });
            assert_eq!(
                (o.pending, o.completed, o.canceled, o.refunded),
                want,
                "{p} {k} {c} {r}"
            );
            assert_eq!(o.placed, p);
            assert_eq!(
                o.pending + o.completed + o.canceled + o.refunded,
                p,
                "every order has one status"
            );
        }
    }

    #[test]
    fn summaries_without_orders_still_parse() {
        let mut v = serde_json::json!({"messages": 1, "order_lines": 0, "units": 0,
            "net_revenue": "0", "activity_events": 1, "invalid": 0});
        let d: InDoubt = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(d.order_events, 0);
        v["order_events"] = 3.into();
        assert_eq!(serde_json::from_value::<InDoubt>(v).unwrap().order_events, 3);
    }
}
