//! The end-of-run audit: what the generators say they delivered (their
//! summary files) against what the warehouse holds for this run's offsets.

use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shopstream_common::pg::DbSettings;
use shopstream_model::SchemaName;
use shopstream_model::summary::{Orders, Summary};

use super::LocalError;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub order_lines: i64,
    pub units: i64,
    pub net_revenue: Decimal,
    pub activity_rows: i64,
    pub dead_letters: i64,
    pub orders: Orders,
}

/// Every generator run's summary file in `dir`.
pub fn read_summaries(dir: &Path) -> Result<Vec<Summary>, LocalError> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = std::fs::read(&path).map_err(|source| LocalError::SummaryRead {
                path: path.display().to_string(),
                source,
            })?;
            out.push(
                Summary::from_json(&bytes).map_err(|source| LocalError::SummaryParse {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        }
    }
    Ok(out)
}

/// What the warehouse should hold, from the generators' summaries: the
/// acknowledged messages, and apart the messages in doubt.
pub fn expected(summaries: &[Summary]) -> Expected {
    let mut e = Expected::default();
    for s in summaries {
        let t = &mut e.confirmed;
        t.order_lines += s.order_lines as i64;
        t.units += s.units;
        t.net_revenue += s.net_revenue;
        t.activity_rows += s.activity_events() as i64;
        t.dead_letters += s.invalid_total as i64;
        t.orders.add(&s.orders);
        let (d, doubt) = (&mut e.in_doubt, &s.in_doubt);
        d.order_lines += doubt.order_lines as i64;
        d.units += doubt.units;
        d.net_revenue += doubt.net_revenue;
        d.activity_rows += doubt.activity_events as i64;
        d.dead_letters += doubt.invalid as i64;
        d.orders.canceled_amount += doubt.canceled_amount;
        d.orders.refunded_amount += doubt.refunded_amount;
        e.order_events_in_doubt += doubt.order_events;
        e.messages_in_doubt += doubt.messages;
    }
    e
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    pub confirmed: Totals,
    /// What the messages in doubt would add if the broker stored them all.
    pub in_doubt: Totals,
    pub messages_in_doubt: u64,
    /// Purchases and status events in doubt: each may move one order from
    /// one status count to another.
    pub order_events_in_doubt: u64,
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
    let mut client = db.connect()?;
    let partitions: Vec<i32> = (0..start.len() as i32).collect();
    let range = "JOIN unnest($1::int[], $2::bigint[]) AS r(p, start) ON f.kafka_partition = r.p AND f.kafka_offset >= r.start";
    // By load time, not event time: late events of this run may carry
    // times from before it started.
    let fact = format!("{range} WHERE f.loaded_at >= $4");
    let sql = format!(
        "WITH run_orders AS (SELECT DISTINCT f.order_id FROM {sales} f {fact})
         SELECT (SELECT count(*) FROM {sales} f {fact}),
                (SELECT coalesce(sum(f.quantity), 0)::bigint FROM {sales} f {fact}),
                (SELECT coalesce(sum(f.net_amount), 0) FROM {sales} f {fact}),
                (SELECT count(*) FROM {activity} f {fact}),
                (SELECT count(*) FROM {dead} f {range} WHERE f.topic = $3),
                count(o.order_id),
                count(*) FILTER (WHERE o.status = 'pending'),
                count(*) FILTER (WHERE o.status = 'completed'),
                count(*) FILTER (WHERE o.status = 'canceled'),
                count(*) FILTER (WHERE o.status = 'refunded'),
                coalesce(sum(o.booked_amount) FILTER (WHERE o.status = 'canceled'), 0),
                coalesce(sum(o.refunded_amount) FILTER (WHERE o.status = 'refunded'), 0)
         FROM run_orders JOIN {orders} o USING (order_id)",
        sales = schema.table(shopstream_model::warehouse::FACT_SALES),
        activity = schema.table(shopstream_model::warehouse::FACT_ACTIVITY),
        dead = schema.table(shopstream_model::warehouse::DEAD_LETTER),
        orders = schema.table(shopstream_model::warehouse::FACT_ORDER),
    );
    let row = client
        .query_one(&sql, &[&partitions, &start, &topic, &since])
        .map_err(LocalError::AuditQuery)?;
    let count = |i: usize| row.get::<_, i64>(i) as u64;
    Ok(Totals {
        order_lines: row.get(0),
        units: row.get(1),
        net_revenue: row.get(2),
        activity_rows: row.get(3),
        dead_letters: row.get(4),
        orders: Orders {
            placed: count(5),
            pending: count(6),
            completed: count(7),
            canceled: count(8),
            refunded: count(9),
            canceled_amount: row.get(10),
            refunded_amount: row.get(11),
        },
    })
}

pub struct Audit {
    pub lines: Vec<Line>,
    pub messages_in_doubt: u64,
}

pub struct Line {
    pub name: &'static str,
    pub expected: String,
    pub actual: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Equal,
    /// Above the acknowledged total by no more than the messages in doubt add.
    WithinDoubt,
    Differs,
}

/// An order status count: each order event in doubt, present or absent,
/// moves one order between two counts.
fn moved_verdict(confirmed: u64, doubt: u64, actual: u64) -> Verdict {
    if actual == confirmed {
        Verdict::Equal
    } else if actual.abs_diff(confirmed) <= doubt {
        Verdict::WithinDoubt
    } else {
        Verdict::Differs
    }
}

fn verdict<T: PartialOrd + std::ops::Add<Output = T> + Copy>(confirmed: T, doubt: T, actual: T) -> Verdict {
    if actual == confirmed {
        Verdict::Equal
    } else if actual > confirmed && actual <= confirmed + doubt {
        Verdict::WithinDoubt
    } else {
        Verdict::Differs
    }
}

impl Line {
    fn new(
        name: &'static str,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
        verdict: Verdict,
    ) -> Self {
        Self {
            name,
            expected: expected.to_string(),
            actual: actual.to_string(),
            verdict,
        }
    }
}

impl Audit {
    pub fn compare(expected: &Expected, actual: &Totals) -> Self {
        let (e, d, a) = (&expected.confirmed, &expected.in_doubt, actual);
        let mut lines = vec![
            Line::new(
                "order lines",
                e.order_lines,
                a.order_lines,
                verdict(e.order_lines, d.order_lines, a.order_lines),
            ),
            Line::new("units", e.units, a.units, verdict(e.units, d.units, a.units)),
            Line::new(
                "net revenue",
                e.net_revenue.normalize(),
                a.net_revenue.normalize(),
                verdict(e.net_revenue, d.net_revenue, a.net_revenue),
            ),
            Line::new(
                "activity rows",
                e.activity_rows,
                a.activity_rows,
                verdict(e.activity_rows, d.activity_rows, a.activity_rows),
            ),
            Line::new(
                "dead letters",
                e.dead_letters,
                a.dead_letters,
                verdict(e.dead_letters, d.dead_letters, a.dead_letters),
            ),
        ];
        let (e, d, a) = (&e.orders, &d.orders, &a.orders);
        let doubt = expected.order_events_in_doubt;
        for (name, e, a) in [
            ("orders placed", e.placed, a.placed),
            ("pending", e.pending, a.pending),
            ("completed", e.completed, a.completed),
            ("canceled", e.canceled, a.canceled),
            ("refunded", e.refunded, a.refunded),
        ] {
            lines.push(Line::new(name, e, a, moved_verdict(e, doubt, a)));
        }
        for (name, e, d, a) in [
            (
                "canceled amount",
                e.canceled_amount,
                d.canceled_amount,
                a.canceled_amount,
            ),
            (
                "refunded amount",
                e.refunded_amount,
                d.refunded_amount,
                a.refunded_amount,
            ),
        ] {
            lines.push(Line::new(name, e.normalize(), a.normalize(), verdict(e, d, a)));
        }
        Self {
            lines,
            messages_in_doubt: expected.messages_in_doubt,
        }
    }

    pub fn matches(&self) -> bool {
        self.lines.iter().all(|l| l.verdict != Verdict::Differs)
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "audit: generators' summaries vs the warehouse (this run's offsets)"
        )?;
        writeln!(f, "  {:<14} {:>16} {:>16}", "", "generators", "warehouse")?;
        for l in &self.lines {
            let mark = match l.verdict {
                Verdict::Equal => "ok",
                Verdict::WithinDoubt => "ok (in doubt)",
                Verdict::Differs => "DIFFERS",
            };
            writeln!(f, "  {:<14} {:>16} {:>16}  {mark}", l.name, l.expected, l.actual)?;
        }
        if self.messages_in_doubt > 0 {
            writeln!(
                f,
                "  {} messages were sent but never acknowledged: each counts whether or not the broker stored it",
                self.messages_in_doubt
            )?;
        }
        if self.matches() {
            write!(f, "MATCH")
        } else {
            let diffs: Vec<String> = self
                .lines
                .iter()
                .filter(|l| l.verdict == Verdict::Differs)
                .map(|l| format!("{}: expected {}, warehouse has {}", l.name, l.expected, l.actual))
                .collect();
            write!(f, "MISMATCH: {}", diffs.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;
    use shopstream_model::summary::{InDoubt, StopReason};
    use std::collections::BTreeMap;

    fn summary(views: u64, lines: u64, net: Decimal, invalid: u64) -> Summary {
        let now = chrono::Utc::now();
        Summary {
            instance: "gen-0".into(),
            seed: 1,
            topic: "t".into(),
            events_total: views + 3,
            events_by_type: BTreeMap::from([
                ("page_view".to_string(), views),
                ("add_to_cart".to_string(), 2),
                ("purchase".to_string(), 1),
            ]),
            order_lines: lines,
            units: lines as i64 * 2,
            gross_revenue: net,
            discount_total: Decimal::ZERO,
            net_revenue: net,
            invalid_total: invalid,
            invalid_by_kind: BTreeMap::new(),
            messages_total: views + 3 + invalid,
            delivery_failures: 0,
            in_doubt: InDoubt::default(),
            orders: Orders::default(),
            stopped_by: StopReason::Total,
            started_at: now,
            finished_at: now,
            duration_seconds: 0.0,
            producing_seconds: 0.0,
            events_per_second: 0.0,
        }
    }

    #[test]
    fn summaries_add_up_and_differences_are_named() {
        let e = expected(&[summary(10, 3, dec!(10.50), 1), summary(5, 1, dec!(0.25), 0)]);
        assert_eq!(e.messages_in_doubt, 0);
        assert_eq!(
            e.confirmed,
            Totals {
                order_lines: 4,
                units: 8,
                net_revenue: dec!(10.75),
                activity_rows: 19,
                dead_letters: 1,
                orders: Orders::default(),
            }
        );
        let same = Audit::compare(
            &e,
            &Totals {
                net_revenue: dec!(10.7500),
                ..e.confirmed.clone()
            },
        );
        assert!(same.matches(), "scale does not matter: {same}");
        assert!(same.to_string().ends_with("MATCH"));
        let off = Audit::compare(
            &e,
            &Totals {
                order_lines: 3,
                ..e.confirmed.clone()
            },
        );
        assert!(!off.matches());
        assert!(
            off.to_string()
                .contains("MISMATCH: order lines: expected 4, warehouse has 3"),
            "{off}"
        );
    }

    #[test]
    fn order_statuses_and_amounts_are_compared() {
        let mut s = summary(10, 3, dec!(10.50), 0);
        s.orders = Orders {
            placed: 5,
            pending: 1,
            completed: 2,
            canceled: 1,
            refunded: 1,
            canceled_amount: dec!(7.00),
            refunded_amount: dec!(3.25),
        };
        let e = expected(&[s.clone(), s]);
        assert_eq!(e.confirmed.orders.placed, 10);
        let warehouse = |f: &dyn Fn(&mut Orders)| {
            let mut t = e.confirmed.clone();
            f(&mut t.orders);
            Audit::compare(&e, &t)
        };
        assert!(warehouse(&|_| {}).matches());
        let moved = warehouse(&|o| {
            o.pending += 1;
            o.completed -= 1;
        });
        assert!(
            moved
                .to_string()
                .contains("pending: expected 2, warehouse has 3; completed: expected 4, warehouse has 3"),
            "{moved}"
        );
        let money = warehouse(&|o| o.refunded_amount = dec!(6.00));
        assert!(
            money
                .to_string()
                .contains("refunded amount: expected 6.5, warehouse has 6"),
            "{money}"
        );

        // One completion in doubt: the order may be pending or completed.
        let mut doubt = e.clone();
        doubt.order_events_in_doubt = 1;
        let mut t = e.confirmed.clone();
        t.orders.pending -= 1;
        t.orders.completed += 1;
        assert!(Audit::compare(&doubt, &t).matches());
        t.orders.completed += 1;
        t.orders.pending -= 1;
        assert!(!Audit::compare(&doubt, &t).matches(), "two moved, one in doubt");
    }

    #[test]
    fn messages_in_doubt_count_present_or_absent_but_no_more() {
        let mut doubtful = summary(10, 3, dec!(10.50), 1);
        doubtful.in_doubt = InDoubt {
            messages: 3,
            order_lines: 2,
            units: 4,
            net_revenue: dec!(5.00),
            activity_events: 1,
            invalid: 0,
            ..InDoubt::default()
        };
        let e = expected(&[doubtful]);
        assert_eq!(e.messages_in_doubt, 3);
        let base = e.confirmed.clone();
        let with = |f: &dyn Fn(&mut Totals)| {
            let mut t = base.clone();
            f(&mut t);
            Audit::compare(&e, &t)
        };
        // (case, warehouse, matches)
        let cases: Vec<(&str, Audit, bool)> = vec![
            ("none stored", with(&|_| {}), true),
            (
                "all stored",
                with(&|t| {
                    t.order_lines += 2;
                    t.units += 4;
                    t.net_revenue += dec!(5.00);
                    t.activity_rows += 1;
                }),
                true,
            ),
            ("the view only", with(&|t| t.activity_rows += 1), true),
            ("more than in doubt", with(&|t| t.activity_rows += 2), false),
            ("fewer than confirmed", with(&|t| t.units -= 1), false),
            ("an invalid one too many", with(&|t| t.dead_letters += 1), false),
        ];
        for (name, audit, matches) in cases {
            assert_eq!(audit.matches(), matches, "{name}: {audit}");
        }
        let text = with(&|t| t.activity_rows += 1).to_string();
        assert!(
            text.contains("ok (in doubt)") && text.contains("3 messages were sent but never acknowledged"),
            "{text}"
        );
    }
}
