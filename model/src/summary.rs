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
    pub invalid: u64,
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
