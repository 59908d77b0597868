//! One query per API endpoint, over the rollups the worker maintains
//! (`agg_*`, exact and small) plus a few indexed reads for freshness. Money
//! stays exact: `rust_decimal` values, serialised as decimal strings.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shopstream_model::SchemaName;
use tokio_postgres::GenericClient;

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
pub struct Summary {
    pub window_minutes: i64,
    pub current: Money,
    pub previous: Money,
    /// Percentage change of each figure against the previous window (`None`: no base).
    pub change_pct: Changes,
    pub all_time: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    pub revenue: Option<f64>,
    pub orders: Option<f64>,
    pub units: Option<f64>,
    pub discounts: Option<f64>,
    pub average_order_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub bucket: DateTime<Utc>,
    pub revenue: Decimal,
    pub orders: i64,
    pub units: i64,
    pub discounts: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductRow {
    pub product_id: String,
    pub name: String,
    pub category: String,
    pub brand: String,
    pub revenue: Decimal,
    pub units: i64,
    pub views: i64,
    pub cart_adds: i64,
    pub order_lines: i64,
    /// Order lines per page view.
    pub view_to_purchase: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryRow {
    pub category: String,
    pub revenue: Decimal,
    pub units: i64,
    pub views: i64,
    pub order_lines: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    pub page_views: i64,
    pub cart_adds: i64,
    pub purchases: i64,
    pub view_to_cart: Option<f64>,
    pub cart_to_purchase: Option<f64>,
    pub view_to_purchase: Option<f64>,
    /// Sessions that added to the cart, those of them that did not order,
    /// and the share (the cart abandonment rate).
    pub carting_sessions: i64,
    pub abandoned_carts: i64,
    pub cart_abandonment: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub orders: i64,
    pub revenue: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeoRow {
    pub country: String,
    pub segment: String,
    pub orders: i64,
    pub revenue: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customers {
    pub new: Segment,
    pub returning: Segment,
    pub by_country_segment: Vec<GeoRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourOfDay {
    pub hour: i32,
    pub page_views: i64,
    pub cart_adds: i64,
    pub orders: i64,
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

fn ratio(num: i64, den: i64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn change(current: f64, previous: f64) -> Option<f64> {
    (previous != 0.0).then(|| (current - previous) / previous * 100.0)
}

fn to_f64(d: Decimal) -> f64 {
    d.to_string().parse().unwrap_or(0.0)
}

fn money(revenue: Decimal, gross: Decimal, discounts: Decimal, orders: i64, units: i64) -> Money {
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

/// The minute buckets a summary compares, as `[start, end)` ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub previous_start: DateTime<Utc>,
    pub current_start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The current window is the last `minutes` buckets up to and including the
/// minute in progress, so the KPIs are live; the previous window is the same
/// number of buckets just before it. Buckets after the current minute (events
/// stamped in the future by a skewed clock) count in neither.
pub fn windows(now: DateTime<Utc>, minutes: i64) -> Windows {
    let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    let end = minute + TimeDelta::minutes(1);
    Windows {
        previous_start: end - TimeDelta::minutes(2 * minutes),
        current_start: end - TimeDelta::minutes(minutes),
        end,
    }
}

/// Totals, the current window, the one before it, and the change.
pub async fn summary(
    c: &impl GenericClient,
    s: &SchemaName,
    window_minutes: i64,
    now: DateTime<Utc>,
) -> Result<Summary, tokio_postgres::Error> {
    let w = windows(now, window_minutes);
    let sql = format!(
        "SELECT coalesce(sum(m.net) FILTER (WHERE cur), 0), coalesce(sum(m.gross) FILTER (WHERE cur), 0),
                coalesce(sum(m.discounts) FILTER (WHERE cur), 0),
                coalesce(sum(m.orders) FILTER (WHERE cur), 0)::bigint,
                coalesce(sum(m.units) FILTER (WHERE cur), 0)::bigint,
                coalesce(sum(m.net) FILTER (WHERE NOT cur), 0), coalesce(sum(m.gross) FILTER (WHERE NOT cur), 0),
                coalesce(sum(m.discounts) FILTER (WHERE NOT cur), 0),
                coalesce(sum(m.orders) FILTER (WHERE NOT cur), 0)::bigint,
                coalesce(sum(m.units) FILTER (WHERE NOT cur), 0)::bigint,
                max(t.net), max(t.gross), max(t.discounts), max(t.orders), max(t.units)
         FROM (SELECT coalesce(sum(net), 0) AS net, coalesce(sum(gross), 0) AS gross,
                      coalesce(sum(discounts), 0) AS discounts, coalesce(sum(orders), 0)::bigint AS orders,
                      coalesce(sum(units), 0)::bigint AS units
               FROM {hour}) t
         LEFT JOIN (SELECT *, bucket >= $2 AS cur FROM {minute} WHERE bucket >= $1 AND bucket < $3) m ON true",
        minute = s.table(shopstream_model::warehouse::AGG_SALES_MINUTE),
        hour = s.table(shopstream_model::warehouse::AGG_SALES_HOUR),
    );
    let r = c
        .query_one(&sql, &[&w.previous_start, &w.current_start, &w.end])
        .await?;
    let current = money(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let previous = money(r.get(5), r.get(6), r.get(7), r.get(8), r.get(9));
    let all_time = money(r.get(10), r.get(11), r.get(12), r.get(13), r.get(14));
    let change_pct = Changes {
        revenue: change(to_f64(current.revenue), to_f64(previous.revenue)),
        orders: change(current.orders as f64, previous.orders as f64),
        units: change(current.units as f64, previous.units as f64),
        discounts: change(to_f64(current.discounts), to_f64(previous.discounts)),
        average_order_value: change(
            to_f64(current.average_order_value),
            to_f64(previous.average_order_value),
        ),
    };
    Ok(Summary {
        window_minutes,
        current,
        previous,
        change_pct,
        all_time,
    })
}

/// Sales per `unit` ("minute" or "hour") for the last `count` units, zero-filled.
pub async fn series(
    c: &impl GenericClient,
    s: &SchemaName,
    unit: &str,
    count: i64,
) -> Result<Vec<Point>, tokio_postgres::Error> {
    let unit = if unit == "hour" { "hour" } else { "minute" };
    let sql = format!(
        "WITH buckets AS (
             SELECT generate_series(date_trunc('{unit}', now()) - ($1::int - 1) * interval '1 {unit}',
                                    date_trunc('{unit}', now()), interval '1 {unit}') AS bucket
         ), sales AS (
             SELECT date_trunc('{unit}', bucket) AS bucket, sum(net) AS net, sum(orders) AS orders,
                    sum(units) AS units, sum(discounts) AS discounts
             FROM {t}
             WHERE bucket >= date_trunc('{unit}', now()) - ($1::int - 1) * interval '1 {unit}'
             GROUP BY 1
         )
         SELECT b.bucket, coalesce(s.net, 0), coalesce(s.orders, 0)::bigint, coalesce(s.units, 0)::bigint,
                coalesce(s.discounts, 0)
         FROM buckets b LEFT JOIN sales s USING (bucket)
         ORDER BY b.bucket",
        t = s.table(if unit == "hour" {
            "agg_sales_hour"
        } else {
            "agg_sales_minute"
        })
    );
    let rows = c.query(&sql, &[&(count as i32)]).await?;
    Ok(rows
        .iter()
        .map(|r| Point {
            bucket: r.get(0),
            revenue: r.get(1),
            orders: r.get(2),
            units: r.get(3),
            discounts: r.get(4),
        })
        .collect())
}

/// Best sellers by revenue or by units.
pub async fn top_products(
    c: &impl GenericClient,
    s: &SchemaName,
    by_units: bool,
    limit: i64,
) -> Result<Vec<ProductRow>, tokio_postgres::Error> {
    let order = if by_units {
        "a.units DESC, a.net DESC"
    } else {
        "a.net DESC, a.units DESC"
    };
    let sql = format!(
        "SELECT p.product_id, p.name, p.category, p.brand, a.net, a.units, a.views, a.cart_adds, a.order_lines
         FROM {a} a JOIN {p} p USING (product_key)
         ORDER BY {order}, p.product_id
         LIMIT $1",
        a = s.table(shopstream_model::warehouse::AGG_PRODUCT),
        p = s.table(shopstream_model::warehouse::DIM_PRODUCT),
    );
    let rows = c.query(&sql, &[&limit]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (views, order_lines): (i64, i64) = (r.get(6), r.get(8));
            ProductRow {
                product_id: r.get(0),
                name: r.get(1),
                category: r.get(2),
                brand: r.get(3),
                revenue: r.get(4),
                units: r.get(5),
                views,
                cart_adds: r.get(7),
                order_lines,
                view_to_purchase: ratio(order_lines, views),
            }
        })
        .collect())
}

pub async fn categories(
    c: &impl GenericClient,
    s: &SchemaName,
) -> Result<Vec<CategoryRow>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT p.category, sum(a.net), sum(a.units)::bigint, sum(a.views)::bigint, sum(a.order_lines)::bigint
         FROM {a} a JOIN {p} p USING (product_key)
         GROUP BY p.category
         ORDER BY 2 DESC, 1",
        a = s.table(shopstream_model::warehouse::AGG_PRODUCT),
        p = s.table(shopstream_model::warehouse::DIM_PRODUCT),
    );
    let rows = c.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| CategoryRow {
            category: r.get(0),
            revenue: r.get(1),
            units: r.get(2),
            views: r.get(3),
            order_lines: r.get(4),
        })
        .collect())
}

/// Page views -> cart adds -> purchases (orders), all time.
pub async fn funnel(c: &impl GenericClient, s: &SchemaName) -> Result<Funnel, tokio_postgres::Error> {
    let sql = format!(
        "SELECT (SELECT coalesce(sum(page_views), 0)::bigint FROM {act}),
                (SELECT coalesce(sum(cart_adds), 0)::bigint FROM {act}),
                (SELECT coalesce(sum(orders), 0)::bigint FROM {sales}),
                (SELECT count(*) FROM {carts} WHERE first_cart_at IS NOT NULL),
                (SELECT count(*) FROM {carts} WHERE first_cart_at IS NOT NULL AND NOT ordered)",
        act = s.table(shopstream_model::warehouse::AGG_ACTIVITY_HOUR),
        sales = s.table(shopstream_model::warehouse::AGG_SALES_HOUR),
        carts = s.table(shopstream_model::warehouse::AGG_CART_SESSION),
    );
    let r = c.query_one(&sql, &[]).await?;
    let (views, carts, purchases): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    let (carting_sessions, abandoned_carts): (i64, i64) = (r.get(3), r.get(4));
    Ok(Funnel {
        page_views: views,
        cart_adds: carts,
        purchases,
        view_to_cart: ratio(carts, views),
        cart_to_purchase: ratio(purchases, carts),
        view_to_purchase: ratio(purchases, views),
        carting_sessions,
        abandoned_carts,
        cart_abandonment: ratio(abandoned_carts, carting_sessions),
    })
}

/// New vs returning customers' orders, and revenue by country and segment.
pub async fn customers(c: &impl GenericClient, s: &SchemaName) -> Result<Customers, tokio_postgres::Error> {
    let sql = format!(
        "SELECT coalesce(sum(new_orders), 0)::bigint, coalesce(sum(new_net), 0),
                coalesce(sum(orders), 0)::bigint, coalesce(sum(net), 0)
         FROM {}",
        s.table(shopstream_model::warehouse::AGG_SALES_HOUR)
    );
    let r = c.query_one(&sql, &[]).await?;
    let (new_orders, new_net, orders, net): (i64, Decimal, i64, Decimal) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    let geo = c
        .query(
            &format!(
                "SELECT country, segment, orders, net FROM {} ORDER BY net DESC, country, segment",
                s.table(shopstream_model::warehouse::AGG_GEO)
            ),
            &[],
        )
        .await?;
    Ok(Customers {
        new: Segment {
            orders: new_orders,
            revenue: new_net,
        },
        returning: Segment {
            orders: orders - new_orders,
            revenue: net - new_net,
        },
        by_country_segment: geo
            .iter()
            .map(|r| GeoRow {
                country: r.get(0),
                segment: r.get(1),
                orders: r.get(2),
                revenue: r.get(3),
            })
            .collect(),
    })
}

/// Activity and orders by hour of the day (UTC), all time.
pub async fn hours(c: &impl GenericClient, s: &SchemaName) -> Result<Vec<HourOfDay>, tokio_postgres::Error> {
    let sql = format!(
        "WITH h AS (SELECT generate_series(0, 23) AS hour),
         act AS (SELECT extract(hour FROM bucket AT TIME ZONE 'UTC')::int AS hour, sum(page_views) AS v, sum(cart_adds) AS c
                 FROM {act} GROUP BY 1),
         sales AS (SELECT extract(hour FROM bucket AT TIME ZONE 'UTC')::int AS hour, sum(orders) AS o
                   FROM {sales} GROUP BY 1)
         SELECT h.hour, coalesce(act.v, 0)::bigint, coalesce(act.c, 0)::bigint, coalesce(sales.o, 0)::bigint
         FROM h LEFT JOIN act USING (hour) LEFT JOIN sales USING (hour)
         ORDER BY h.hour",
        act = s.table(shopstream_model::warehouse::AGG_ACTIVITY_HOUR),
        sales = s.table(shopstream_model::warehouse::AGG_SALES_HOUR),
    );
    let rows = c.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| HourOfDay {
            hour: r.get(0),
            page_views: r.get(1),
            cart_adds: r.get(2),
            orders: r.get(3),
        })
        .collect())
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

/// Orders by status with booked, completed, canceled, refunded and net
/// realised revenue, and the reasons, all time (from the views of migration
/// 0008 over `fact_order`, one row per order).
pub async fn order_statuses(
    c: &impl GenericClient,
    s: &SchemaName,
) -> Result<OrderStatuses, tokio_postgres::Error> {
    let r = c
        .query_one(
            &format!(
                "SELECT orders, pending_orders, completed_orders, canceled_orders, refunded_orders, booked_revenue,
                        completed_revenue, canceled_revenue, refunded_revenue, net_realised_revenue
                 FROM {}",
                s.table(shopstream_model::warehouse::V_REVENUE_BY_STATUS)
            ),
            &[],
        )
        .await?;
    let reasons = c
        .query(
            &format!(
                "SELECT status, reason, orders, amount FROM {} ORDER BY status, orders DESC, reason",
                s.table(shopstream_model::warehouse::V_ORDER_STATUS_REASONS)
            ),
            &[],
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

    #[test]
    fn summary_windows_cover_whole_minutes_up_to_the_current_one() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // (now, minutes) -> (previous_start, current_start, end)
        for (now, minutes, expected) in [
            (
                "2026-11-30T12:34:56.789Z",
                60,
                (
                    "2026-11-30T10:35:00Z",
                    "2026-11-30T11:35:00Z",
                    "2026-11-30T12:35:00Z",
                ),
            ),
            // Exactly on a minute: still 60 buckets, not 61.
            (
                "2026-11-30T12:00:00Z",
                60,
                (
                    "2026-11-30T10:01:00Z",
                    "2026-11-30T11:01:00Z",
                    "2026-11-30T12:01:00Z",
                ),
            ),
            (
                "2026-11-30T12:34:10Z",
                1,
                (
                    "2026-11-30T12:33:00Z",
                    "2026-11-30T12:34:00Z",
                    "2026-11-30T12:35:00Z",
                ),
            ),
            // Across midnight.
            (
                "2026-12-01T00:00:30Z",
                1440,
                (
                    "2026-11-29T00:01:00Z",
                    "2026-11-30T00:01:00Z",
                    "2026-12-01T00:01:00Z",
                ),
            ),
        ] {
            let w = windows(t(now), minutes);
            assert_eq!(
                (w.previous_start, w.current_start, w.end),
                (t(expected.0), t(expected.1), t(expected.2)),
                "{now} / {minutes} min"
            );
            assert_eq!(w.end - w.current_start, w.current_start - w.previous_start);
        }
    }
}
