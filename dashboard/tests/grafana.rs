//! The Grafana dashboard in the Helm chart, run against a real warehouse: every
//! panel's SQL, with Grafana's PostgreSQL macros expanded as Grafana expands
//! them, runs, and the headline panels show the figures of the fact tables.

mod support;

use std::collections::HashMap;

use chrono::{Duration, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use shopstream_testkit::pg;
use support::filled;

const DASHBOARD: &str = include_str!("../../charts/shopstream/dashboards/shopstream.json");

/// Grafana's expansion of the macros our panels use, for a fixed time range,
/// a one-minute `$__interval` and the filter variables' values (`__all`:
/// the "All" choice, as the dashboard's allValue spells it).
fn expand(sql: &str, schema: &str, from: &str, to: &str, vars: &[(&str, &str)]) -> String {
    let mut out = sql
        .replace("${schema:raw}", schema)
        .replace("$__timeFrom()", &format!("'{from}'"))
        .replace("$__timeTo()", &format!("'{to}'"));
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    for (name, expansion) in [
        (
            "$__timeGroupAlias(",
            "floor(extract(epoch from {col})/60)*60 AS \"time\"",
        ),
        ("$__timeFilter(", "{col} BETWEEN '{from}' AND '{to}'"),
    ] {
        while let Some(start) = out.find(name) {
            let args_at = start + name.len();
            let end = args_at + out[args_at..].find(')').expect("macro closes");
            let col = out[args_at..end].split(',').next().unwrap().trim().to_string();
            let text = expansion
                .replace("{col}", &col)
                .replace("{from}", from)
                .replace("{to}", to);
            out.replace_range(start..=end, &text);
        }
    }
    assert!(!out.contains('$'), "a macro is left unexpanded: {out}");
    out
}

/// Each panel's first row as text (column name -> value), and all its rows.
struct Panel {
    rows: Vec<HashMap<String, Option<String>>>,
}

impl Panel {
    fn first(&self, column: &str) -> &str {
        self.rows[0][column]
            .as_deref()
            .unwrap_or_else(|| panic!("{column} is NULL"))
    }

    fn sum(&self, column: &str) -> Decimal {
        self.rows
            .iter()
            .map(|r| r[column].as_deref().unwrap_or("0").parse::<Decimal>().unwrap())
            .sum()
    }
}

fn run_panels(schema: &str, vars: &[(&str, &str)]) -> HashMap<String, Panel> {
    let dash: Value = serde_json::from_str(DASHBOARD).unwrap();
    let now = Utc::now();
    let (from, to) = (
        (now - Duration::hours(6)).to_rfc3339_opts(SecondsFormat::Secs, true),
        (now + Duration::minutes(5)).to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    let mut c = pg();
    let mut out = HashMap::new();
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap().to_string();
        let mut rows = Vec::new();
        for t in p["targets"].as_array().unwrap() {
            let sql = expand(t["rawSql"].as_str().unwrap(), schema, &from, &to, vars);
            let messages = c
                .simple_query(&sql)
                .unwrap_or_else(|e| panic!("panel {title:?}: {e}\n{sql}"));
            for m in messages {
                if let postgres::SimpleQueryMessage::Row(r) = m {
                    rows.push(
                        r.columns()
                            .iter()
                            .enumerate()
                            .map(|(i, col)| (col.name().to_string(), r.get(i).map(str::to_string)))
                            .collect(),
                    );
                }
            }
        }
        out.insert(title, Panel { rows });
    }
    out
}

fn scalar(sql: &str) -> String {
    let rows = pg().simple_query(sql).unwrap();
    rows.into_iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grafana_panel_runs_and_shows_the_facts() {
    let w = filled("dash_grafana", 6_000).await;
    let s = w.schema.name.clone();
    let (panels, facts, by_country) = tokio::task::spawn_blocking(move || {
        let all = [("country", "__all"), ("segment", "__all"), ("category", "__all"), ("device", "__all")];
        let panels = run_panels(&s, &all);
        // One country, on mobiles: the filtered panels show that slice of the facts.
        let country = scalar(&format!(
            "SELECT c.country FROM \"{s}\".fact_sales JOIN \"{s}\".dim_customer c USING (customer_key)
             GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ));
        let filtered = run_panels(
            &s,
            &[("country", &country), ("segment", "__all"), ("category", "__all"), ("device", "mobile")],
        );
        let want = scalar(&format!(
            "SELECT sum(f.net_amount) || ' ' || count(DISTINCT f.order_id) FROM \"{s}\".fact_sales f
             JOIN \"{s}\".dim_customer c USING (customer_key) JOIN \"{s}\".dim_device d USING (device_key)
             WHERE c.country = '{country}' AND d.device_type = 'mobile'"
        ));
        let shown = format!("{} {}", filtered["Revenue"].first("Revenue"), filtered["Orders"].first("Orders"));
        let f = |sql: &str| scalar(&sql.replace("{s}", &s));
        let facts = HashMap::from([
            ("revenue", f("SELECT sum(net_amount) FROM \"{s}\".fact_sales")),
            ("orders", f("SELECT count(DISTINCT order_id) FROM \"{s}\".fact_sales")),
            ("units", f("SELECT sum(quantity) FROM \"{s}\".fact_sales")),
            ("discounts", f("SELECT sum(discount_amount) FROM \"{s}\".fact_sales")),
            (
                "views",
                f("SELECT count(*) FROM \"{s}\".fact_activity WHERE event_type = 'page_view'"),
            ),
            (
                "carts",
                f("SELECT count(*) FROM \"{s}\".fact_activity WHERE event_type = 'add_to_cart'"),
            ),
            ("dead", f("SELECT count(*) FROM \"{s}\".dead_letter")),
            (
                "canceled_revenue",
                f("SELECT coalesce(sum(net_amount), 0) FROM \"{s}\".fact_sales WHERE order_id IN
                   (SELECT order_id FROM \"{s}\".order_status_event WHERE status = 'canceled')"),
            ),
            (
                "top",
                f("SELECT sum(net_amount) FROM \"{s}\".fact_sales GROUP BY product_key ORDER BY 1 DESC LIMIT 1"),
            ),
        ]);
        (panels, facts, (shown, want))
    })
    .await
    .unwrap();
    let fact = |k: &str| facts[k].parse::<Decimal>().unwrap();
    let shown = |title: &str, column: &str| panels[title].first(column).parse::<Decimal>().unwrap();

    assert!(fact("orders") > Decimal::ZERO && fact("dead") > Decimal::ZERO);
    assert_eq!(shown("Revenue", "Revenue"), fact("revenue"));
    assert_eq!(shown("Orders", "Orders"), fact("orders"));
    assert_eq!(shown("Units", "Units"), fact("units"));
    assert_eq!(shown("Discounts", "Discounts"), fact("discounts"));
    assert_eq!(
        shown("Average order value", "Average order value").round_dp(2),
        (fact("revenue") / fact("orders")).round_dp(2)
    );
    // The time series add up to the totals.
    assert_eq!(panels["Revenue and discounts"].sum("Revenue"), fact("revenue"));
    assert_eq!(panels["Orders and units"].sum("Orders"), fact("orders"));
    // Funnel and customers.
    assert_eq!(shown("Funnel", "Page views"), fact("views"));
    assert_eq!(shown("Funnel", "Cart adds"), fact("carts"));
    assert_eq!(shown("Funnel", "Orders"), fact("orders"));
    let split = &panels["New vs returning customers"];
    assert_eq!(split.sum("New") + split.sum("Returning"), fact("revenue"));
    assert_eq!(panels["Revenue by segment"].sum("Revenue"), fact("revenue"));
    assert_eq!(panels["Activity by hour of day (UTC)"].rows.len(), 24);
    assert_eq!(
        panels["Activity by hour of day (UTC)"].sum("Page views"),
        fact("views")
    );
    // Products.
    assert_eq!(shown("Top products", "Revenue"), fact("top"));
    assert_eq!(panels["Revenue by category"].sum("Revenue"), fact("revenue"));
    // Orders: every order in one status, the revenue split from the lines.
    let status = &panels["Orders by status"];
    let by_status = ["Pending", "Completed", "Refunded", "Canceled"].map(|c| status.sum(c));
    assert_eq!(by_status.iter().copied().sum::<Decimal>(), fact("orders"));
    // Orders take their next step at once in this fill: none may be left pending.
    assert!(by_status[1..].iter().all(|n| *n > Decimal::ZERO), "{by_status:?}");
    assert_eq!(shown("Revenue by order status", "Booked"), fact("revenue"));
    let reasons = panels["Cancellation and refund reasons"].sum("Orders");
    assert_eq!(
        reasons,
        by_status[2] + by_status[3],
        "a reason for every canceled and refunded order"
    );
    assert_eq!(
        shown("Revenue by order status", "Canceled"),
        fact("canceled_revenue"),
        "canceled revenue"
    );
    // Devices and payment methods split the orders.
    assert_eq!(panels["Orders by device"].sum("Orders"), fact("orders"));
    assert_eq!(panels["Sales by payment method"].sum("Revenue"), fact("revenue"));
    // A country on mobiles: its revenue and orders only.
    let (shown_filtered, want_filtered) = by_country;
    assert_eq!(
        shown_filtered, want_filtered,
        "Revenue and Orders under country and device filters"
    );
    // Freshness.
    assert_eq!(shown("Dead letters (last hour)", "Dead letters"), fact("dead"));
    assert_eq!(panels["Dead letters by kind"].sum("value"), fact("dead"));
    assert!(shown("End-to-end delay", "End-to-end delay") >= Decimal::ZERO);
    assert!(shown("Since the last event", "Since the last event") < Decimal::from(600));
}
