//! The end-of-run audit: what the generators say they delivered (their
//! summary files) against what the warehouse holds for this run's offsets.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use shopstream_common::pg::DbSettings;
use shopstream_model::SchemaName;

use super::LocalError;

/// The fields of a generator `--summary-file` the audit needs.
#[derive(Debug, Clone, Deserialize)]
pub struct GeneratorSummary {
    pub events_by_type: BTreeMap<String, u64>,
    pub order_lines: u64,
    pub units: i64,
    pub net_revenue: Decimal,
    pub invalid_total: u64,
    pub messages_total: u64,
    pub delivery_failures: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub order_lines: i64,
    pub units: i64,
    pub net_revenue: Decimal,
    pub activity_rows: i64,
    pub dead_letters: i64,
}

pub fn read_summaries(dir: &Path) -> Result<Vec<GeneratorSummary>, LocalError> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| LocalError::Audit(format!("{}: {e}", path.display())))?;
            out.push(
                serde_json::from_str(&text)
                    .map_err(|e| LocalError::Audit(format!("{}: {e}", path.display())))?,
            );
        }
    }
    Ok(out)
}

/// What the warehouse should hold, from the generators' summaries.
pub fn expected(summaries: &[GeneratorSummary]) -> Totals {
    let mut t = Totals::default();
    for s in summaries {
        t.order_lines += s.order_lines as i64;
        t.units += s.units;
        t.net_revenue += s.net_revenue;
        t.activity_rows += (s.events_by_type.get("page_view").copied().unwrap_or(0)
            + s.events_by_type.get("add_to_cart").copied().unwrap_or(0)) as i64;
        t.dead_letters += s.invalid_total as i64;
    }
    t
}

/// What the warehouse holds for this run: records at or after `start` (per
/// partition) with events from `since` on. Facts do not store their topic,
/// so the event time keeps earlier runs on other topics of the same schema out.
pub fn warehouse_totals(
    db: &DbSettings,
    schema: &SchemaName,
    topic: &str,
    start: &[i64],
    since: DateTime<Utc>,
) -> Result<Totals, LocalError> {
    let mut client = db.connect().map_err(|e| LocalError::Audit(e.to_string()))?;
    let partitions: Vec<i32> = (0..start.len() as i32).collect();
    let range = "JOIN unnest($1::int[], $2::bigint[]) AS r(p, start) ON f.kafka_partition = r.p AND f.kafka_offset >= r.start";
    let fact = format!("{range} WHERE f.event_time >= $4");
    let sql = format!(
        "SELECT (SELECT count(*) FROM {sales} f {fact}),
                (SELECT coalesce(sum(f.quantity), 0)::bigint FROM {sales} f {fact}),
                (SELECT coalesce(sum(f.net_amount), 0) FROM {sales} f {fact}),
                (SELECT count(*) FROM {activity} f {fact}),
                (SELECT count(*) FROM {dead} f {range} WHERE f.topic = $3)",
        sales = schema.table("fact_sales"),
        activity = schema.table("fact_activity"),
        dead = schema.table("dead_letter"),
    );
    let row = client
        .query_one(&sql, &[&partitions, &start, &topic, &since])
        .map_err(|e| LocalError::Audit(shopstream_common::error::chain(&e)))?;
    Ok(Totals {
        order_lines: row.get(0),
        units: row.get(1),
        net_revenue: row.get(2),
        activity_rows: row.get(3),
        dead_letters: row.get(4),
    })
}

pub struct Audit {
    pub lines: Vec<(&'static str, String, String)>,
}

impl Audit {
    pub fn compare(expected: &Totals, actual: &Totals) -> Self {
        Self {
            lines: vec![
                (
                    "order lines",
                    expected.order_lines.to_string(),
                    actual.order_lines.to_string(),
                ),
                ("units", expected.units.to_string(), actual.units.to_string()),
                (
                    "net revenue",
                    expected.net_revenue.normalize().to_string(),
                    actual.net_revenue.normalize().to_string(),
                ),
                (
                    "activity rows",
                    expected.activity_rows.to_string(),
                    actual.activity_rows.to_string(),
                ),
                (
                    "dead letters",
                    expected.dead_letters.to_string(),
                    actual.dead_letters.to_string(),
                ),
            ],
        }
    }

    pub fn matches(&self) -> bool {
        self.lines.iter().all(|(_, e, a)| e == a)
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "audit: generators' summaries vs the warehouse (this run's offsets)"
        )?;
        writeln!(f, "  {:<14} {:>16} {:>16}", "", "generators", "warehouse")?;
        for (name, e, a) in &self.lines {
            let mark = if e == a { "ok" } else { "DIFFERS" };
            writeln!(f, "  {name:<14} {e:>16} {a:>16}  {mark}")?;
        }
        if self.matches() {
            write!(f, "MATCH")
        } else {
            let diffs: Vec<String> = self
                .lines
                .iter()
                .filter(|(_, e, a)| e != a)
                .map(|(n, e, a)| format!("{n}: expected {e}, warehouse has {a}"))
                .collect();
            write!(f, "MISMATCH: {}", diffs.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn summary(views: u64, lines: u64, net: Decimal, invalid: u64) -> GeneratorSummary {
        GeneratorSummary {
            events_by_type: BTreeMap::from([
                ("page_view".to_string(), views),
                ("add_to_cart".to_string(), 2),
                ("purchase".to_string(), 1),
            ]),
            order_lines: lines,
            units: lines as i64 * 2,
            net_revenue: net,
            invalid_total: invalid,
            messages_total: views + 3 + invalid,
            delivery_failures: 0,
        }
    }

    #[test]
    fn summaries_add_up_and_differences_are_named() {
        let e = expected(&[summary(10, 3, dec!(10.50), 1), summary(5, 1, dec!(0.25), 0)]);
        assert_eq!(
            e,
            Totals {
                order_lines: 4,
                units: 8,
                net_revenue: dec!(10.75),
                activity_rows: 19,
                dead_letters: 1
            }
        );
        let same = Audit::compare(
            &e,
            &Totals {
                net_revenue: dec!(10.7500),
                ..e.clone()
            },
        );
        assert!(same.matches(), "scale does not matter: {same}");
        assert!(same.to_string().ends_with("MATCH"));
        let off = Audit::compare(
            &e,
            &Totals {
                order_lines: 3,
                ..e.clone()
            },
        );
        assert!(!off.matches());
        assert!(
            off.to_string()
                .contains("MISMATCH: order lines: expected 4, warehouse has 3"),
            "{off}"
        );
    }
}
