//! One query per API endpoint, over the rollups the worker maintains
//! (`agg_*`, exact and small) plus a few indexed reads for freshness. Money
//! stays exact: `rust_decimal` values, serialised as decimal strings.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shopstream_model::SchemaName;
use tokio_postgres::GenericClient;

use crate::filters::Filters;

/// Financial figures over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Money {
    pub revenue: Decimal,
    pub gross: Decimal,
    pub discounts: Decimal,
    pub orders: i64,
    pub units: i64,
    /// Revenue per order; zero without orders.
    pub average_order_value: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_loaded_at: Option<DateTime<Utc>>,
    /// Mean of loaded_at - event_time over the newest events.
    pub delay_seconds: Option<f64>,
    pub dead_letters_last_hour: i64,
    pub now: DateTime<Utc>,
}

pub(crate) fn ratio(num: i64, den: i64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

pub(crate) fn change(current: f64, previous: f64) -> Option<f64> {
    (previous != 0.0).then(|| (current - previous) / previous * 100.0)
}

pub(crate) fn to_f64(d: Decimal) -> f64 {
    d.to_string().parse().unwrap_or(0.0)
}

pub(crate) fn money(revenue: Decimal, gross: Decimal, discounts: Decimal, orders: i64, units: i64) -> Money {
    let aov = if orders > 0 {
        (revenue / Decimal::from(orders)).round_dp(2)
    } else {
        Decimal::ZERO
    };
    Money {
        revenue,
        gross,
        discounts,
        orders,
        units,
        average_order_value: aov,
    }
}

/// Orders by where they stand, the revenue split and the reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderStatuses {
    pub orders: i64,
    pub pending: i64,
    /// Completed, refunded or not.
    pub completed: i64,
    pub canceled: i64,
    pub refunded: i64,
    pub booked_revenue: Decimal,
    pub completed_revenue: Decimal,
    pub canceled_revenue: Decimal,
    pub refunded_revenue: Decimal,
    /// Completed orders less their refunds.
    pub net_realised_revenue: Decimal,
    /// Canceled of all orders; refunded of completed ones (`None`: no base).
    pub cancel_rate: Option<f64>,
    pub refund_rate: Option<f64>,
    pub reasons: Vec<StatusReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReason {
    pub status: String,
    pub reason: String,
    pub orders: i64,
    /// Booked amount of canceled orders, refunded amount of refunded ones.
    pub amount: Decimal,
}

/// A monthly cohort: customers whose first order fell in `cohort`, and the
/// share of them ordering again 1, 2, ... months later.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// First day of the month (UTC).
    pub cohort: chrono::NaiveDate,
    pub customers: i64,
    /// `retained[k - 1]`: customers ordering k months after their first
    /// order's month; as many months as have passed since, up to the last one asked for.
    pub retained: Vec<i64>,
    pub retention: Vec<f64>,
}

/// How fresh the warehouse is.
pub async fn freshness(c: &impl GenericClient, s: &SchemaName) -> Result<Freshness, tokio_postgres::Error> {
    let sql = format!(
        // Events stamped in the future (a skewed producer clock) would pin
        // "last event" ahead of now and make the delay negative: skip them.
        "SELECT (SELECT max(event_time) FROM {act} WHERE event_time <= now() + interval '1 minute'),
                (SELECT max(updated_at) FROM {offsets}),
                (SELECT avg(extract(epoch FROM loaded_at - event_time))::float8
                   FROM (SELECT loaded_at, event_time FROM {act}
                         WHERE event_time <= now() + interval '1 minute'
                         ORDER BY event_time DESC LIMIT 200) x),
                (SELECT count(*) FROM {dead} WHERE received_at >= now() - interval '1 hour'),
                now()",
        act = s.table(shopstream_model::warehouse::FACT_ACTIVITY),
        offsets = s.table(shopstream_model::warehouse::INGEST_OFFSETS),
        dead = s.table(shopstream_model::warehouse::DEAD_LETTER),
    );
    let r = c.query_one(&sql, &[]).await?;
    Ok(Freshness {
        last_event_at: r.get(0),
        last_loaded_at: r.get(1),
        delay_seconds: r.get(2),
        dead_letters_last_hour: r.get(3),
        now: r.get(4),
    })
}

/// Orders placed in the range by status, with booked, completed, canceled,
/// refunded and net realised revenue, and the reasons (the functions of
/// migration 0011 over `fact_order`, one row per order).
pub async fn order_statuses(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<OrderStatuses, tokio_postgres::Error> {
    let (start, end) = f.range.bounds(now);
    let device = f.device.map(|d| d.key());
    let args = "$1::timestamptz, $2::timestamptz, $3::text, $4::text, $5::text, $6::smallint";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&start, &end, &f.country, &f.segment, &f.category, &device];
    let r = c
        .query_one(
            &format!(
                "SELECT orders, pending_orders, completed_orders, canceled_orders, refunded_orders, booked_revenue,
                        completed_revenue, canceled_revenue, refunded_revenue, net_realised_revenue
                 FROM {}.revenue_by_status({args})",
                s.quoted()
            ),
            &params,
        )
        .await?;
    let reasons = c
        .query(
            &format!(
                "SELECT status, reason, orders, amount FROM {}.order_status_reasons({args})
                 ORDER BY status, orders DESC, reason",
                s.quoted()
            ),
            &params,
        )
        .await?;
    let (orders, completed, canceled, refunded): (i64, i64, i64, i64) =
        (r.get(0), r.get(2), r.get(3), r.get(4));
    Ok(OrderStatuses {
        orders,
        pending: r.get(1),
        completed,
        canceled,
        refunded,
        booked_revenue: r.get(5),
        completed_revenue: r.get(6),
        canceled_revenue: r.get(7),
        refunded_revenue: r.get(8),
        net_realised_revenue: r.get(9),
        cancel_rate: ratio(canceled, orders),
        refund_rate: ratio(refunded, completed),
        reasons: reasons
            .iter()
            .map(|r| StatusReason {
                status: r.get(0),
                reason: r.get(1),
                orders: r.get(2),
                amount: r.get(3),
            })
            .collect(),
    })
}

/// The last `months` cohorts (oldest first), each with its retention
/// through the latest month with orders.
pub async fn cohorts(
    c: &impl GenericClient,
    s: &SchemaName,
    months: i32,
) -> Result<Vec<Cohort>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!(
                "WITH recent AS (SELECT DISTINCT cohort FROM {v} ORDER BY cohort DESC LIMIT $1),
                      latest AS (SELECT max(month) AS m FROM {months})
                 SELECT r.cohort, v.months_after, coalesce(v.customers, 0)::bigint,
                        ((extract(year FROM l.m) - extract(year FROM r.cohort)) * 12
                         + extract(month FROM l.m) - extract(month FROM r.cohort))::int AS age
                 FROM recent r CROSS JOIN latest l
                 LEFT JOIN {v} v ON v.cohort = r.cohort
                 ORDER BY r.cohort, v.months_after",
                v = s.table(shopstream_model::warehouse::V_COHORT_RETENTION),
                months = s.table(shopstream_model::warehouse::AGG_CUSTOMER_MONTH),
            ),
            &[&i64::from(months)],
        )
        .await?;
    let mut out: Vec<Cohort> = Vec::new();
    for r in &rows {
        let (cohort, after, customers, age): (chrono::NaiveDate, i32, i64, i32) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if out.last().is_none_or(|c| c.cohort != cohort) {
            out.push(Cohort {
                cohort,
                customers: 0,
                retained: vec![0; age.max(0) as usize],
                retention: Vec::new(),
            });
        }
        let c = out.last_mut().expect("just pushed");
        match after {
            0 => c.customers = customers,
            k if k > 0 && (k as usize) <= c.retained.len() => c.retained[k as usize - 1] = customers,
            _ => {}
        }
    }
    for c in &mut out {
        c.retention = c
            .retained
            .iter()
            .map(|n| ratio(*n, c.customers).unwrap_or(0.0))
            .collect();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn average_order_value_and_changes() {
        let m = money(dec!(100.00), dec!(110.00), dec!(10.00), 3, 7);
        assert_eq!(m.average_order_value, dec!(33.33));
        assert_eq!(
            money(dec!(0), dec!(0), dec!(0), 0, 0).average_order_value,
            Decimal::ZERO
        );
        assert_eq!(change(150.0, 100.0), Some(50.0));
        assert_eq!(change(5.0, 0.0), None);
        assert_eq!(ratio(1, 4), Some(0.25));
        assert_eq!(ratio(1, 0), None);
    }
}
