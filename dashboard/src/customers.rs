//! Who buys: distinct customers with an order under the filters, by gender,
//! age band (at the order) and month. Distinct counts do not add up across
//! slices, so these read customers, not rollups: all time with only country
//! or segment filters, `dim_customer` and `agg_customer_month` (one row per
//! customer and month); otherwise the order lines in the range, by the
//! `fact_sales` indexes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use shopstream_model::SchemaName;
use shopstream_model::warehouse::{AGG_CUSTOMER_MONTH, DIM_CUSTOMER, DIM_PRODUCT, FACT_SALES};
use tokio_postgres::GenericClient;

use crate::filters::{Condition, Filters, Range};

/// Age bands (years at the order), as the report shows them.
const AGE_BANDS: &str = "CASE WHEN a IS NULL THEN 'unknown' WHEN a < 25 THEN '18-24' WHEN a < 35 THEN '25-34'
    WHEN a < 45 THEN '35-44' WHEN a < 55 THEN '45-54' WHEN a < 65 THEN '55-64' ELSE '65+' END";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub key: String,
    pub customers: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthCount {
    pub month: NaiveDate,
    pub customers: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub customers: i64,
    pub by_gender: Vec<Count>,
    pub by_age_band: Vec<Count>,
    pub by_month: Vec<MonthCount>,
    /// ISO weekdays, Monday first: customers with an order on that weekday.
    pub by_weekday: Vec<Count>,
}

/// One row per customer (and month) who ordered under the filters, with
/// gender, age and month columns: the source every count below groups.
fn buyers(s: &SchemaName, f: &Filters, now: DateTime<Utc>) -> (String, Condition) {
    let customer = s.table(DIM_CUSTOMER);
    if f.range == Range::All && f.category.is_none() && f.device.is_none() {
        // Only country and segment can be set here: both on the customer.
        let mut cond = Condition::always();
        f.push_dimensions(&mut cond, "c.", "", "");
        let sql = format!(
            "SELECT m.customer_key, m.month, coalesce(c.gender, 'unknown') AS gender,
                    extract(year FROM age(m.month, c.birth_date))::int AS a
             FROM {months} m JOIN {customer} c USING (customer_key) WHERE {where_}",
            months = s.table(AGG_CUSTOMER_MONTH),
            where_ = cond.sql
        );
        return (sql, cond);
    }
    let cond = f.fact_condition(now);
    let sql = format!(
        "SELECT DISTINCT f.customer_key, date_trunc('month', f.event_time, 'UTC')::date AS month,
                coalesce(c.gender, 'unknown') AS gender,
                extract(year FROM age(date_trunc('month', f.event_time, 'UTC')::date, c.birth_date))::int AS a
         FROM {sales} f JOIN {customer} c USING (customer_key){product}
         WHERE {where_}",
        sales = s.table(FACT_SALES),
        product = if f.category.is_some() {
            format!(" JOIN {} p USING (product_key)", s.table(DIM_PRODUCT))
        } else {
            String::new()
        },
        where_ = cond.sql
    );
    (sql, cond)
}

/// Customers by the weekday of their orders (UTC), from the order lines.
async fn weekdays(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Vec<Count>, tokio_postgres::Error> {
    let cond = f.fact_condition(now);
    // Distinct (weekday, customer) pairs first: one hash aggregate, then a count.
    let sql = format!(
        "SELECT d, count(*)
         FROM (SELECT DISTINCT extract(isodow FROM f.event_time AT TIME ZONE 'UTC')::int AS d, f.customer_key
               FROM {sales} f{joins} WHERE {where_}) x
         GROUP BY d",
        sales = s.table(FACT_SALES),
        joins = f.fact_joins(s),
        where_ = cond.sql
    );
    let rows = c.query(&sql, &cond.params()).await?;
    Ok((1..=7)
        .map(|d: i32| Count {
            key: d.to_string(),
            customers: rows
                .iter()
                .find(|r| r.get::<_, i32>(0) == d)
                .map_or(0, |r| r.get(1)),
        })
        .collect())
}

pub async fn profile(
    c: &impl GenericClient,
    s: &SchemaName,
    f: &Filters,
    now: DateTime<Utc>,
) -> Result<Profile, tokio_postgres::Error> {
    let (buyers, cond) = buyers(s, f, now);
    // A customer's gender and age band: from their latest month in the range.
    let sql = format!(
        "WITH b AS ({buyers}),
              latest AS (SELECT DISTINCT ON (customer_key) customer_key, gender, {AGE_BANDS} AS band
                         FROM b ORDER BY customer_key, month DESC)
         SELECT 'gender', gender, count(*) FROM latest GROUP BY 2
         UNION ALL SELECT 'band', band, count(*) FROM latest GROUP BY 2
         UNION ALL SELECT 'month', month::text, count(DISTINCT customer_key) FROM b GROUP BY 2
         UNION ALL SELECT 'all', '', count(*) FROM latest"
    );
    let rows = c.query(&sql, &cond.params()).await?;
    let mut p = Profile {
        customers: 0,
        by_gender: Vec::new(),
        by_age_band: Vec::new(),
        by_month: Vec::new(),
        by_weekday: weekdays(c, s, f, now).await?,
    };
    for r in &rows {
        let (kind, key, n): (&str, String, i64) = (r.get(0), r.get(1), r.get(2));
        match kind {
            "gender" => p.by_gender.push(Count { key, customers: n }),
            "band" => p.by_age_band.push(Count { key, customers: n }),
            "month" => {
                if let Ok(month) = key.parse() {
                    p.by_month.push(MonthCount { month, customers: n });
                }
            }
            _ => p.customers = n,
        }
    }
    p.by_gender.sort_by(|a, b| a.key.cmp(&b.key));
    p.by_age_band.sort_by(|a, b| a.key.cmp(&b.key));
    p.by_month.sort_by_key(|m| m.month);
    Ok(p)
}
