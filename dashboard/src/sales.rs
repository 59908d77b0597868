//! The sales, activity and calendar panels, under the global filters: each
//! sums the filter slices (migration 0011) of the range's grain, a few rows
//! per bucket whatever the number of facts. Per-product figures, which the
//! slices do not carry, come from `agg_product` or, under filters, from the
//! facts by their indexes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shopstream_model::warehouse::{
    AGG_CART_SESSION, AGG_PRODUCT, DIM_CUSTOMER, DIM_PRODUCT, FACT_SALES, V_SLICE,
};
use shopstream_model::{Device, SchemaName};
use tokio_postgres::GenericClient;

use crate::filters::Function::{ActivityTotals, SalesSlices, SalesTotals};
use crate::filters::{Condition, Filters, Grain, Range};
use crate::queries::{Money, change, money, ratio, to_f64};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub range: Range,
    pub current: Money,
    /// The same number of buckets just before (zero for all time).
    pub previous: Money,
    /// Percentage change of each figure against the previous range (`None`: no base).
    pub change_pct: Changes,
    /// All time under the dimension filters.
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
pub struct Series {
    pub grain: &'static str,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductRow {
    pub product_id: String,
    pub name: String,
    pub category: String,
    pub brand: String,
    pub revenue: Decimal,
    pub units: i64,
    /// Page views and cart adds: all time and unfiltered, or by category
    /// only (`None` under other filters: see `top_products`).
    pub views: Option<i64>,
    pub cart_adds: Option<i64>,
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
    /// Orders with a line in the category.
    pub orders: i64,
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
    /// and the share (the cart abandonment rate). All time and unfiltered
    /// only (`None` under filters): sessions are not in the slices.
    pub carting_sessions: Option<i64>,
    pub abandoned_carts: Option<i64>,
    pub cart_abandonment: Option<f64>,
}

/// Orders and revenue of one value of a dimension (country and segment,
/// device, payment method, weekday, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Share {
    pub key: String,
    pub orders: i64,
    pub units: i64,
    pub revenue: Decimal,
}

impl Share {
    /// A value with no orders, for panels that list every value.
    fn none(key: String) -> Self {
        Self {
            key,
            orders: 0,
            units: 0,
            revenue: Decimal::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeoRow {
    pub country: String,
    pub segment: String,
    pub orders: i64,
    pub revenue: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourOfDay {
    pub hour: i32,
    pub page_views: i64,
    pub cart_adds: i64,
    pub orders: i64,
    pub units: i64,
    pub revenue: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hours {
    pub hours: Vec<HourOfDay>,
    /// Orders before and after noon (UTC).
    pub am: Share,
    pub pm: Share,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calendar {
    /// ISO weekdays, Monday first.
    pub weekdays: Vec<Share>,
    /// Days of the month 1..31.
    pub days_of_month: Vec<Share>,
}

/// The values each filter can take, for the page's pickers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dimensions {
    pub countries: Vec<String>,
    pub segments: Vec<String>,
    pub categories: Vec<String>,
    pub devices: Vec<&'static str>,
}

pub async fn dimensions(c: &impl GenericClient, s: &SchemaName) -> Result<Dimensions, tokio_postgres::Error> {
    let customer = s.table(DIM_CUSTOMER);
    let r = c
        .query_one(
            &format!(
                "SELECT ARRAY(SELECT DISTINCT country FROM {customer} ORDER BY 1),
                        ARRAY(SELECT DISTINCT segment FROM {customer} ORDER BY 1),
                        ARRAY(SELECT DISTINCT category FROM {} ORDER BY 1)",
                s.table(DIM_PRODUCT)
            ),
            &[],
        )
        .await?;
    Ok(Dimensions {
        countries: r.get(0),
        segments: r.get(1),
        categories: r.get(2),
        devices: Device::ALL.iter().map(|d| d.as_str()).collect(),
    })
}

/// Sum the sales figures of `sales` (a `Filters::call` of a sales function).
async fn money_of(c: &impl GenericClient, sales: Condition) -> Result<Money, tokio_postgres::Error> {
    let sql = format!(
        "SELECT coalesce(sum(net), 0), coalesce(sum(gross), 0), coalesce(sum(discounts), 0),
                coalesce(sum(orders), 0)::bigint, coalesce(sum(units), 0)::bigint
         FROM {} s",
        sales.sql
    );
    let r = c.query_one(&sql, &sales.params()).await?;
    Ok(money(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
}

/// The range, the one before it, all time, and the change.
pub async fn summary(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Summary, tokio_postgres::Error> {
    let grain = f.range.span().grain;
    let current = money_of(c, f.call_in_range(SalesTotals, s, now)).await?;
    let previous = match f.range.previous(now) {
        Some((start, end)) => money_of(c, f.call(SalesTotals, s, grain, Some(start), Some(end))).await?,
        None => Money::default(),
    };
    let all_time = money_of(c, f.call(SalesTotals, s, Grain::Day, None, None)).await?;
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
        range: f.range,
        current,
        previous,
        change_pct,
        all_time,
    })
}

/// Every bucket of `[start, end)` of `grain`, zero where `rows` has none;
/// with no start, the buckets that have rows.
pub fn fill(grain: Grain, start: Option<DateTime<Utc>>, end: DateTime<Utc>, rows: Vec<Point>) -> Vec<Point> {
    let Some(start) = start else {
        return rows;
    };
    let mut by_bucket: BTreeMap<DateTime<Utc>, Point> = rows.into_iter().map(|p| (p.bucket, p)).collect();
    let mut out = Vec::new();
    let mut b = start;
    while b < end {
        out.push(by_bucket.remove(&b).unwrap_or(Point {
            bucket: b,
            revenue: Decimal::ZERO,
            orders: 0,
            units: 0,
            discounts: Decimal::ZERO,
        }));
        b = grain.next(b);
    }
    out
}

/// Sales per bucket of the range's grain.
pub async fn series(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Series, tokio_postgres::Error> {
    let sales = f.call_in_range(SalesTotals, s, now);
    let sql = format!(
        "SELECT bucket, sum(net), sum(orders)::bigint, sum(units)::bigint, sum(discounts)
         FROM {} s GROUP BY bucket ORDER BY bucket",
        sales.sql
    );
    let rows = c.query(&sql, &sales.params()).await?;
    let points = rows
        .iter()
        .map(|r| Point {
            bucket: r.get(0),
            revenue: r.get(1),
            orders: r.get(2),
            units: r.get(3),
            discounts: r.get(4),
        })
        .collect();
    let (start, end) = f.range.bounds(now);
    let grain = f.range.span().grain;
    Ok(Series {
        grain: grain.as_str(),
        points: fill(grain, start, end, points),
    })
}

/// Best sellers by revenue or by units: from `agg_product` when only a
/// category narrows them, otherwise from the order lines in the range.
pub async fn top_products(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    by_units: bool,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<ProductRow>, tokio_postgres::Error> {
    let order = if by_units {
        "a.units DESC, a.net DESC"
    } else {
        "a.net DESC, a.units DESC"
    };
    let product = s.table(DIM_PRODUCT);
    let rollup_answers =
        f.range == Range::All && f.country.is_none() && f.segment.is_none() && f.device.is_none();
    let (sql, cond) = if rollup_answers {
        // Only a category can be set here.
        let mut cond = Condition::always();
        f.push_dimensions(&mut cond, "", "p.", "");
        let sql = format!(
            "SELECT p.product_id, p.name, p.category, p.brand, a.net, a.units, a.views, a.cart_adds, a.order_lines
             FROM {a} a JOIN {product} p USING (product_key)
             WHERE {where_}
             ORDER BY {order}, p.product_id
             LIMIT {limit}",
            a = s.table(AGG_PRODUCT),
            where_ = cond.sql,
        );
        (sql, cond)
    } else {
        // Order lines are a few percent of the facts, and the range's come
        // from the event_time index; page views would be the other 95%, so
        // under these filters a product's views are not given (None).
        let cond = f.fact_condition(now);
        let sql = format!(
            "WITH a AS (
                 SELECT f.product_key, sum(f.net_amount) AS net, sum(f.quantity)::bigint AS units,
                        NULL::bigint AS views, NULL::bigint AS cart_adds, count(*) AS order_lines
                 FROM {sales} f{joins}
                 WHERE {where_} GROUP BY 1
             )
             SELECT p.product_id, p.name, p.category, p.brand, a.net, a.units, a.views, a.cart_adds, a.order_lines
             FROM a JOIN {product} p USING (product_key)
             ORDER BY {order}, p.product_id
             LIMIT {limit}",
            sales = s.table(FACT_SALES),
            joins = f.fact_joins(s),
            where_ = cond.sql,
        );
        (sql, cond)
    };
    let rows = c.query(&sql, &cond.params()).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (views, order_lines): (Option<i64>, i64) = (r.get(6), r.get(8));
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
                view_to_purchase: views.and_then(|v| ratio(order_lines, v)),
            }
        })
        .collect())
}

pub async fn categories(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Vec<CategoryRow>, tokio_postgres::Error> {
    let cond = f.in_range(now);
    let sql = format!(
        "SELECT category, sum(net), sum(units)::bigint, sum(page_views)::bigint, sum(lines)::bigint,
                sum(orders)::bigint
         FROM {} WHERE {} GROUP BY category ORDER BY 2 DESC, 1",
        s.table(V_SLICE),
        cond.sql
    );
    let rows = c.query(&sql, &cond.params()).await?;
    Ok(rows
        .iter()
        .map(|r| CategoryRow {
            category: r.get(0),
            revenue: r.get(1),
            units: r.get(2),
            views: r.get(3),
            order_lines: r.get(4),
            orders: r.get(5),
        })
        .collect())
}

/// Page views -> cart adds -> purchases (orders).
pub async fn funnel(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Funnel, tokio_postgres::Error> {
    let activity = f.call_in_range(ActivityTotals, s, now);
    let act = c
        .query_one(
            &format!(
                "SELECT coalesce(sum(page_views), 0)::bigint, coalesce(sum(cart_adds), 0)::bigint FROM {} a",
                activity.sql
            ),
            &activity.params(),
        )
        .await?;
    let (views, carts): (i64, i64) = (act.get(0), act.get(1));
    let purchases = money_of(c, f.call_in_range(SalesTotals, s, now)).await?.orders;
    let (carting_sessions, abandoned_carts) = if f.range == Range::All && !f.has_dimensions() {
        let r = c
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE first_cart_at IS NOT NULL),
                            count(*) FILTER (WHERE first_cart_at IS NOT NULL AND NOT ordered)
                     FROM {}",
                    s.table(AGG_CART_SESSION)
                ),
                &[],
            )
            .await?;
        (Some(r.get::<_, i64>(0)), Some(r.get::<_, i64>(1)))
    } else {
        (None, None)
    };
    Ok(Funnel {
        page_views: views,
        cart_adds: carts,
        purchases,
        view_to_cart: ratio(carts, views),
        cart_to_purchase: ratio(purchases, carts),
        view_to_purchase: ratio(purchases, views),
        carting_sessions,
        abandoned_carts,
        cart_abandonment: carting_sessions
            .zip(abandoned_carts)
            .and_then(|(c, a)| ratio(a, c)),
    })
}

/// Orders, units and revenue of `sales` (a `Filters::call` of a sales function) grouped
/// by `key`, an SQL expression over its columns; largest revenue first.
async fn shares(
    c: &impl GenericClient,
    key: &str,
    sales: Condition,
) -> Result<Vec<Share>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT ({key})::text, coalesce(sum(orders), 0)::bigint, coalesce(sum(units), 0)::bigint,
                coalesce(sum(net), 0)
         FROM {} s GROUP BY 1 ORDER BY 4 DESC, 1",
        sales.sql
    );
    let rows = c.query(&sql, &sales.params()).await?;
    Ok(rows
        .iter()
        .map(|r| Share {
            key: r.get(0),
            orders: r.get(1),
            units: r.get(2),
            revenue: r.get(3),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub orders: i64,
    pub revenue: Decimal,
}

/// First orders of their customers against the others, in the range.
/// Unsplit by dimension filters (`None` under them): which order is a
/// customer's first can move when an earlier one loads later, and only the
/// per-minute and per-hour rollups follow that.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewVsReturning {
    pub new: Segment,
    pub returning: Segment,
}

pub async fn new_vs_returning(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Option<NewVsReturning>, tokio_postgres::Error> {
    if f.has_dimensions() {
        return Ok(None);
    }
    let totals = f.call_in_range(SalesTotals, s, now);
    let r = c
        .query_one(
            &format!(
                "SELECT coalesce(sum(new_orders), 0)::bigint, coalesce(sum(new_net), 0),
                        coalesce(sum(orders), 0)::bigint, coalesce(sum(net), 0)
                 FROM {} s",
                totals.sql
            ),
            &totals.params(),
        )
        .await?;
    let (new_orders, new_net, orders, net): (i64, Decimal, i64, Decimal) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    Ok(Some(NewVsReturning {
        new: Segment {
            orders: new_orders,
            revenue: new_net,
        },
        returning: Segment {
            orders: orders - new_orders,
            revenue: net - new_net,
        },
    }))
}

/// Orders and revenue by country and segment.
pub async fn geo(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Vec<GeoRow>, tokio_postgres::Error> {
    let sales = f.call_in_range(SalesSlices, s, now);
    let sql = format!(
        "SELECT country, segment, coalesce(sum(orders), 0)::bigint, coalesce(sum(net), 0)
         FROM {} s GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2",
        sales.sql
    );
    let rows = c.query(&sql, &sales.params()).await?;
    Ok(rows
        .iter()
        .map(|r| GeoRow {
            country: r.get(0),
            segment: r.get(1),
            orders: r.get(2),
            revenue: r.get(3),
        })
        .collect())
}

/// Orders by device type, every device listed (zero where none).
pub async fn devices(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Vec<Share>, tokio_postgres::Error> {
    let found = shares(c, "device_key", f.call_in_range(SalesSlices, s, now)).await?;
    let name = |key: &str| {
        Device::ALL
            .iter()
            .find(|d| d.key().to_string() == key)
            .map_or("unknown", |d| d.as_str())
    };
    let mut out: Vec<Share> = found
        .into_iter()
        .map(|r| Share {
            key: name(&r.key).to_string(),
            ..r
        })
        .collect();
    for d in Device::ALL {
        if !out.iter().any(|r| r.key == d.as_str()) {
            out.push(Share::none(d.as_str().to_string()));
        }
    }
    Ok(out)
}

/// Orders by payment method. The order slices have no category, so a
/// category filter narrows this panel to nothing it could answer exactly:
/// `None`, and the page says so.
pub async fn payments(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Option<Vec<Share>>, tokio_postgres::Error> {
    if f.category.is_some() {
        return Ok(None);
    }
    shares(c, "payment_method", f.call_in_range(SalesSlices, s, now))
        .await
        .map(Some)
}

/// The grain fine enough for hours of the day: the range's, but hours at most.
fn hourly(f: &Filters) -> Grain {
    match f.range.span().grain {
        Grain::Minute => Grain::Minute,
        Grain::Hour | Grain::Day => Grain::Hour,
    }
}

/// Activity and orders by hour of the day (UTC), and orders AM vs PM.
pub async fn hours(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Hours, tokio_postgres::Error> {
    let grain = hourly(f);
    let (start, end) = f.range.bounds(now);
    let hour = "extract(hour FROM bucket AT TIME ZONE 'UTC')::int";
    let activity = f.call(ActivityTotals, s, grain, start, Some(end));
    let act = c
        .query(
            &format!(
                "SELECT {hour}, sum(page_views)::bigint, sum(cart_adds)::bigint FROM {} a GROUP BY 1",
                activity.sql
            ),
            &activity.params(),
        )
        .await?;
    let sales = shares(c, hour, f.call(SalesTotals, s, grain, start, Some(end))).await?;
    let mut hours: Vec<HourOfDay> = (0..24)
        .map(|h| HourOfDay {
            hour: h,
            page_views: 0,
            cart_adds: 0,
            orders: 0,
            units: 0,
            revenue: Decimal::ZERO,
        })
        .collect();
    for r in &act {
        let h: i32 = r.get(0);
        hours[h as usize].page_views = r.get(1);
        hours[h as usize].cart_adds = r.get(2);
    }
    for r in sales {
        if let Ok(h) = r.key.parse::<usize>()
            && let Some(row) = hours.get_mut(h)
        {
            (row.orders, row.units, row.revenue) = (r.orders, r.units, r.revenue);
        }
    }
    let half = |name: &str, range: std::ops::Range<usize>| Share {
        key: name.to_string(),
        orders: hours[range.clone()].iter().map(|h| h.orders).sum(),
        units: hours[range.clone()].iter().map(|h| h.units).sum(),
        revenue: hours[range].iter().map(|h| h.revenue).sum(),
    };
    Ok(Hours {
        am: half("AM", 0..12),
        pm: half("PM", 12..24),
        hours,
    })
}

/// Sales by weekday and by day of the month, from the range's buckets (a
/// range of minutes or hours is cut by day in UTC all the same).
pub async fn calendar(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Calendar, tokio_postgres::Error> {
    let weekday = "extract(isodow FROM bucket AT TIME ZONE 'UTC')::int";
    let day = "extract(day FROM bucket AT TIME ZONE 'UTC')::int";
    let by_weekday = shares(c, weekday, f.call_in_range(SalesTotals, s, now)).await?;
    let by_day = shares(c, day, f.call_in_range(SalesTotals, s, now)).await?;
    Ok(Calendar {
        weekdays: numbered(by_weekday, 1..=7),
        days_of_month: numbered(by_day, 1..=31),
    })
}

/// Rows keyed "1", "2", ... in key order, zero where missing.
fn numbered(rows: Vec<Share>, keys: std::ops::RangeInclusive<u32>) -> Vec<Share> {
    keys.map(|k| {
        rows.iter()
            .find(|r| r.key == k.to_string())
            .cloned()
            .unwrap_or_else(|| Share::none(k.to_string()))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn p(bucket: &str, orders: i64) -> Point {
        Point {
            bucket: t(bucket),
            revenue: Decimal::from(orders * 10),
            orders,
            units: orders,
            discounts: Decimal::ZERO,
        }
    }

    #[test]
    fn series_are_zero_filled_over_bounded_ranges_only() {
        let rows = vec![p("2026-12-04T10:01:00Z", 2), p("2026-12-04T10:03:00Z", 5)];
        let filled = fill(
            Grain::Minute,
            Some(t("2026-12-04T10:00:00Z")),
            t("2026-12-04T10:04:00Z"),
            rows.clone(),
        );
        let orders: Vec<i64> = filled.iter().map(|p| p.orders).collect();
        assert_eq!(orders, [0, 2, 0, 5]);
        assert_eq!(filled[2].bucket, t("2026-12-04T10:02:00Z"));
        assert_eq!(
            fill(Grain::Day, None, t("2026-12-05T00:00:00Z"), rows.clone()),
            rows
        );
    }

    #[test]
    fn numbered_rows_cover_every_key_in_order() {
        let share = |k: &str, orders| Share {
            orders,
            units: orders,
            ..Share::none(k.into())
        };
        let rows = numbered(vec![share("7", 3), share("2", 1)], 1..=7);
        let keys: Vec<(&str, i64)> = rows.iter().map(|r| (r.key.as_str(), r.orders)).collect();
        assert_eq!(
            keys,
            [
                ("1", 0),
                ("2", 1),
                ("3", 0),
                ("4", 0),
                ("5", 0),
                ("6", 0),
                ("7", 3)
            ]
        );
    }
}
