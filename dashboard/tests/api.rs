//! Every API number equals the same figure computed independently in SQL
//! over the fact tables; bad input and a database outage give clear errors,
//! and the API recovers when the database returns.

mod support;

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
use shopstream_testkit::{TcpProxy, database_url, pg, wait_until};
use support::{dashboard, dashboard_with, filled, get, get_json};

/// Run SQL on the blocking pool (the sync client cannot run on async threads).
async fn sql(query: String) -> Vec<postgres::Row> {
    tokio::task::spawn_blocking(move || pg().query(&query, &[]).unwrap())
        .await
        .unwrap()
}

/// Run statements (no result) on the blocking pool.
async fn exec(statements: String) {
    tokio::task::spawn_blocking(move || pg().batch_execute(&statements).unwrap())
        .await
        .unwrap()
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("money as a string: {v}"))
        .parse()
        .unwrap()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("an integer: {v}"))
}

/// The element of a JSON array whose fields have these string values.
fn find<'a>(list: &'a Value, fields: &[(&str, &str)]) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("an array: {list}"))
        .iter()
        .find(|e| fields.iter().all(|(k, v)| e[*k] == *v))
        .unwrap_or_else(|| panic!("no element with {fields:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_number_matches_sql_over_the_facts() {
    let w = filled("dash_api", 12_000).await;
    let s = w.schema.name.clone();
    let (_d, base) = dashboard(&s, &database_url());
    let base2 = base.clone();
    let api = move |path: &str| get_json(&base2, path);

    // Orders by status, recounted from the lines and the status events (the
    // generator cancels or completes each order, and refunds completed ones).
    let statuses = api("/api/orders/status");
    let o = &sql(format!(
        "WITH o AS (SELECT order_id, sum(net_amount) AS booked FROM \"{s}\".fact_sales GROUP BY 1),
              e AS (SELECT order_id, bool_or(status = 'completed') AS done, bool_or(status = 'canceled') AS canceled,
                           coalesce(sum(refund_amount) FILTER (WHERE status = 'refunded'), 0) AS refund,
                           bool_or(status = 'refunded') AS refunded
                    FROM \"{s}\".order_status_event GROUP BY 1)
         SELECT count(*), count(*) FILTER (WHERE e.order_id IS NULL OR NOT (done OR canceled)),
                count(*) FILTER (WHERE done), count(*) FILTER (WHERE canceled), count(*) FILTER (WHERE refunded),
                sum(booked), coalesce(sum(booked) FILTER (WHERE done), 0),
                coalesce(sum(booked) FILTER (WHERE canceled), 0), coalesce(sum(refund), 0),
                coalesce(sum(booked - refund) FILTER (WHERE done), 0)
         FROM o LEFT JOIN e USING (order_id)"
    ))
    .await[0];
    let counts = ["orders", "pending", "completed", "canceled", "refunded"];
    for (i, name) in counts.iter().enumerate() {
        assert_eq!(int(&statuses[name]), o.get::<_, i64>(i), "{name} orders");
    }
    let amounts = [
        "booked_revenue",
        "completed_revenue",
        "canceled_revenue",
        "refunded_revenue",
        "net_realised_revenue",
    ];
    for (i, name) in amounts.iter().enumerate() {
        assert_eq!(dec(&statuses[name]), o.get::<_, Decimal>(i + 5), "{name}");
    }
    assert!(
        int(&statuses["canceled"]) > 0 && int(&statuses["refunded"]) > 0,
        "{statuses}"
    );
    let rate = statuses["cancel_rate"].as_f64().unwrap();
    assert!((rate - int(&statuses["canceled"]) as f64 / int(&statuses["orders"]) as f64).abs() < 1e-12);
    let reasons = statuses["reasons"].as_array().unwrap();
    let by = |status: &str| -> i64 {
        reasons
            .iter()
            .filter(|r| r["status"] == status)
            .map(|r| int(&r["orders"]))
            .sum()
    };
    assert_eq!(
        by("canceled"),
        int(&statuses["canceled"]),
        "every cancellation has its reason"
    );
    assert_eq!(
        by("refunded"),
        int(&statuses["refunded"]),
        "every refund has its reason"
    );

    // Summary: a range holding the whole load; nothing before it.
    let summary = api("/api/summary?range=1h");
    let totals = &sql(format!(
        "SELECT count(DISTINCT order_id), coalesce(sum(quantity), 0)::bigint, coalesce(sum(line_total), 0),
                coalesce(sum(discount_amount), 0), coalesce(sum(net_amount), 0)
         FROM \"{s}\".fact_sales"
    ))
    .await[0];
    let (orders, units, gross, discounts, net): (i64, i64, Decimal, Decimal, Decimal) = (
        totals.get(0),
        totals.get(1),
        totals.get(2),
        totals.get(3),
        totals.get(4),
    );
    assert!(orders > 0);
    for part in ["current", "all_time"] {
        let m = &summary[part];
        assert_eq!(int(&m["orders"]), orders, "{part} orders");
        assert_eq!(int(&m["units"]), units, "{part} units");
        assert_eq!(dec(&m["gross"]), gross, "{part} gross");
        assert_eq!(dec(&m["discounts"]), discounts, "{part} discounts");
        assert_eq!(dec(&m["revenue"]), net, "{part} revenue");
        assert_eq!(
            dec(&m["average_order_value"]),
            (net / Decimal::from(orders)).round_dp(2)
        );
    }
    assert_eq!(int(&summary["previous"]["orders"]), 0);
    assert!(
        summary["change_pct"]["revenue"].is_null(),
        "no base to compare with"
    );
    // The summary's revenue is also the generator's audit.
    assert_eq!(net, w.summary.net_revenue);

    // Per minute: every non-empty minute, and the zero-filled length.
    let series = api("/api/sales/series?range=1h");
    assert_eq!(series["grain"], "minute");
    let minutes = &series["points"];
    assert_eq!(minutes.as_array().unwrap().len(), 60);
    let by_minute = sql(format!(
        "SELECT to_char(date_trunc('minute', event_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                sum(net_amount), count(DISTINCT order_id)
         FROM \"{s}\".fact_sales GROUP BY 1"
    ))
    .await;
    for row in &by_minute {
        let bucket: String = row.get(0);
        let point = find(minutes, &[("bucket", &bucket)]);
        assert_eq!(
            dec(&point["revenue"]),
            row.get::<_, Decimal>(1),
            "revenue in {bucket}"
        );
        assert_eq!(int(&point["orders"]), row.get::<_, i64>(2), "orders in {bucket}");
    }
    let hours = api("/api/sales/series?range=7d");
    assert_eq!(hours["points"].as_array().unwrap().len(), 168);
    let hour_total: Decimal = hours["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| dec(&p["revenue"]))
        .sum();
    assert_eq!(hour_total, net);

    // Top products, both orders.
    for (by, order) in [
        ("revenue", "net DESC, units DESC"),
        ("units", "units DESC, net DESC"),
    ] {
        let top = api(&format!("/api/products/top?by={by}&limit=10"));
        let expected = sql(format!(
            "SELECT p.product_id, coalesce(sum(f.net_amount), 0) AS net, coalesce(sum(f.quantity), 0)::bigint AS units,
                    count(f.*) AS lines,
                    (SELECT count(*) FROM \"{s}\".fact_activity a WHERE a.product_key = p.product_key AND a.event_type = 'page_view') AS views
             FROM \"{s}\".dim_product p LEFT JOIN \"{s}\".fact_sales f USING (product_key)
             GROUP BY p.product_key, p.product_id
             ORDER BY {order}, p.product_id LIMIT 10"
        ))
        .await;
        let top = top.as_array().unwrap();
        assert_eq!(top.len(), expected.len());
        for (got, want) in top.iter().zip(&expected) {
            assert_eq!(
                got["product_id"],
                want.get::<_, String>(0).as_str(),
                "top by {by}"
            );
            assert_eq!(dec(&got["revenue"]), want.get::<_, Decimal>(1));
            assert_eq!(int(&got["units"]), want.get::<_, i64>(2));
            assert_eq!(int(&got["order_lines"]), want.get::<_, i64>(3));
            assert_eq!(int(&got["views"]), want.get::<_, i64>(4));
        }
    }

    // Categories.
    let cats = api("/api/categories");
    let expected = sql(format!(
        "SELECT p.category, coalesce(sum(f.net_amount), 0), coalesce(sum(f.quantity), 0)::bigint
         FROM \"{s}\".dim_product p LEFT JOIN \"{s}\".fact_sales f USING (product_key)
         GROUP BY 1"
    ))
    .await;
    for row in &expected {
        let name: String = row.get(0);
        let got = find(&cats, &[("category", &name)]);
        assert_eq!(dec(&got["revenue"]), row.get::<_, Decimal>(1), "{name}");
        assert_eq!(int(&got["units"]), row.get::<_, i64>(2), "{name}");
    }

    // Funnel.
    let funnel = api("/api/funnel");
    let f = &sql(format!(
        "SELECT count(*) FILTER (WHERE event_type = 'page_view'), count(*) FILTER (WHERE event_type = 'add_to_cart'),
                (SELECT count(DISTINCT order_id) FROM \"{s}\".fact_sales)
         FROM \"{s}\".fact_activity"
    ))
    .await[0];
    assert_eq!(int(&funnel["page_views"]), f.get::<_, i64>(0));
    assert_eq!(int(&funnel["cart_adds"]), f.get::<_, i64>(1));
    assert_eq!(int(&funnel["purchases"]), f.get::<_, i64>(2));
    assert_eq!(
        int(&funnel["page_views"]) as u64,
        w.summary.events_by_type["page_view"]
    );
    // Cart abandonment: sessions with a cart add, and those without an order.
    let carts = &sql(format!(
        "SELECT count(*), count(*) FILTER (WHERE session_id NOT IN (SELECT session_id FROM \"{s}\".fact_sales))
         FROM (SELECT DISTINCT session_id FROM \"{s}\".fact_activity WHERE event_type = 'add_to_cart') c"
    ))
    .await[0];
    let (carting, abandoned): (i64, i64) = (carts.get(0), carts.get(1));
    assert!(abandoned > 0 && abandoned < carting, "{carting} {abandoned}");
    assert_eq!(int(&funnel["carting_sessions"]), carting);
    assert_eq!(int(&funnel["abandoned_carts"]), abandoned);
    let share = funnel["cart_abandonment"].as_f64().unwrap();
    assert!((share - abandoned as f64 / carting as f64).abs() < 1e-12);

    // New vs returning, and country x segment.
    let customers = api("/api/customers");
    let nr = &sql(format!(
        "SELECT count(DISTINCT order_id) FILTER (WHERE is_first_order), coalesce(sum(net_amount) FILTER (WHERE is_first_order), 0),
                count(DISTINCT order_id) FILTER (WHERE NOT is_first_order), coalesce(sum(net_amount) FILTER (WHERE NOT is_first_order), 0)
         FROM \"{s}\".fact_sales"
    ))
    .await[0];
    let split = &customers["new_vs_returning"];
    assert_eq!(int(&split["new"]["orders"]), nr.get::<_, i64>(0));
    assert_eq!(dec(&split["new"]["revenue"]), nr.get::<_, Decimal>(1));
    assert_eq!(int(&split["returning"]["orders"]), nr.get::<_, i64>(2));
    assert_eq!(dec(&split["returning"]["revenue"]), nr.get::<_, Decimal>(3));
    let geo = sql(format!(
        "SELECT c.country, c.segment, count(DISTINCT f.order_id), sum(f.net_amount)
         FROM \"{s}\".fact_sales f JOIN \"{s}\".dim_customer c USING (customer_key) GROUP BY 1, 2"
    ))
    .await;
    let got = &customers["by_country_segment"];
    assert_eq!(got.as_array().map(Vec::len), Some(geo.len()));
    for row in &geo {
        let (country, segment): (String, String) = (row.get(0), row.get(1));
        let g = find(got, &[("country", &country), ("segment", &segment)]);
        assert_eq!(int(&g["orders"]), row.get::<_, i64>(2), "{country}/{segment}");
        assert_eq!(
            dec(&g["revenue"]),
            row.get::<_, Decimal>(3),
            "{country}/{segment}"
        );
    }

    // Activity by hour of day.
    let hours = api("/api/activity/hours");
    let hours = &hours["hours"];
    assert_eq!(hours.as_array().unwrap().len(), 24);
    let by_hour = sql(format!(
        "SELECT extract(hour FROM event_time AT TIME ZONE 'UTC')::int, count(*) FILTER (WHERE event_type = 'page_view')
         FROM \"{s}\".fact_activity GROUP BY 1"
    ))
    .await;
    for row in &by_hour {
        let h: i32 = row.get(0);
        assert_eq!(
            int(&hours[h as usize]["page_views"]),
            row.get::<_, i64>(1),
            "hour {h}"
        );
    }

    // Freshness.
    let fresh = api("/api/freshness");
    let fr = &sql(format!(
        "SELECT max(event_time), (SELECT count(*) FROM \"{s}\".dead_letter)
         FROM \"{s}\".fact_activity"
    ))
    .await[0];
    let last_event: chrono::DateTime<chrono::Utc> = fresh["last_event_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("last_event_at is a timestamp: {}", fresh["last_event_at"]));
    assert_eq!(last_event, fr.get::<_, chrono::DateTime<chrono::Utc>>(0));
    assert_eq!(int(&fresh["dead_letters_last_hour"]), fr.get::<_, i64>(1));
    assert_eq!(
        int(&fresh["dead_letters_last_hour"]) as u64,
        w.summary.invalid_total
    );
    assert!(fresh["delay_seconds"].as_f64().is_some_and(|d| d >= 0.0));

    // Cohorts: earlier orders of some customers (another writer's backfill),
    // one and two months back, make three cohorts; the API equals SQL over
    // the facts.
    sql(format!(
        "INSERT INTO \"{s}\".fact_sales
         SELECT gen_random_uuid(), line_number, gen_random_uuid(), session_id, customer_key, product_key, date_key,
                time_key, currency, payment_method, quantity, unit_price, discount_amount, line_total, net_amount,
                false, event_time - k * interval '1 month', now(), kafka_partition, kafka_offset, device_key,
                channel_key
         FROM \"{s}\".fact_sales CROSS JOIN (VALUES (1), (2)) AS m(k)
         WHERE line_number = 1 AND customer_key % (k + 2) = 0"
    ))
    .await;
    let cohorts = api("/api/cohorts?months=12");
    let want = sql(format!(
        "WITH m AS (SELECT DISTINCT customer_key, date_trunc('month', event_time, 'UTC')::date AS month
                    FROM \"{s}\".fact_sales),
              f AS (SELECT customer_key, min(month) AS cohort FROM m GROUP BY 1)
         SELECT to_char(f.cohort, 'YYYY-MM-DD'),
                (extract(year FROM age(m.month, f.cohort)) * 12 + extract(month FROM age(m.month, f.cohort)))::int,
                count(*)
         FROM m JOIN f USING (customer_key) GROUP BY 1, 2"
    ))
    .await;
    let list = cohorts.as_array().unwrap();
    for row in &want {
        let (cohort, after, customers): (String, i32, i64) = (row.get(0), row.get(1), row.get(2));
        let c = find(&cohorts, &[("cohort", &cohort)]);
        let shown = if after == 0 {
            int(&c["customers"])
        } else {
            int(&c["retained"][after as usize - 1])
        };
        assert_eq!(shown, customers, "cohort {cohort}, {after} months after");
        if after > 0 {
            let share = c["retention"][after as usize - 1].as_f64().unwrap();
            assert!((share - customers as f64 / int(&c["customers"]) as f64).abs() < 1e-12);
        }
    }
    assert_eq!(
        list.len(),
        3,
        "two months back, one month back, this month: {cohorts}"
    );
    let ages: Vec<usize> = list
        .iter()
        .map(|c| c["retained"].as_array().unwrap().len())
        .collect();
    assert_eq!(
        ages,
        [2, 1, 0],
        "each cohort up to the latest month, oldest first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_schema_or_a_missing_database_is_explained_and_the_page_still_loads() {
    let (_d, base) = dashboard("no_such_schema", &database_url());
    let (status, body) = get(&base, "/api/summary");
    assert_eq!(status, 503);
    assert!(
        body.contains("schema `no_such_schema` has no Shopstream tables yet"),
        "{body}"
    );
    let (status, page) = get(&base, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<canvas"));
    // Bad parameters: a 400 that says what is allowed.
    let (status, body) = get(&base, "/api/products/top?by=price");
    assert_eq!(status, 400);
    assert!(body.contains("expected `revenue` or `units`"), "{body}");
    let (status, body) = get(&base, "/api/summary?range=an-hour");
    assert_eq!(status, 400);
    assert!(body.contains("range") && body.contains("15m"), "{body}");
    let (status, body) = get(&base, "/api/devices?device=fridge");
    assert_eq!(status, 400);
    assert!(
        body.contains("unknown device `fridge`") && body.contains("smart_tv"),
        "{body}"
    );

    let (_d2, base2) = dashboard("shop", "postgres://postgres@127.0.0.1:1/nowhere");
    let (status, body) = get(&base2, "/api/funnel");
    assert_eq!(status, 503);
    assert!(body.contains("database unreachable"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_recovers_when_the_database_returns() {
    let w = filled("dash_outage", 2_000).await;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = database_url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    let (_d, base) = dashboard(&w.schema.name, &url);
    let before = get_json(&base, "/api/funnel");

    proxy.down();
    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(20), || {
            let (status, body) = get(&b, "/api/funnel");
            status == 503 && (body.contains("database") || body.contains("connection"))
        })
    })
    .await
    .unwrap();

    proxy.up();
    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), || get(&b, "/api/funnel").0 == 200)
    })
    .await
    .unwrap();
    assert_eq!(
        get_json(&base, "/api/funnel"),
        before,
        "same figures after the outage"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_stops_answering_times_out_and_the_api_recovers() {
    let w = filled("dash_stall", 2_000).await;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = database_url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    let (_d, base) = dashboard_with(&w.schema.name, &url, &["--query-timeout-seconds", "1"]);
    let before = get_json(&base, "/api/funnel");

    // The pooled connection's query never gets an answer: 504 with the
    // reason, after the timeout and not much later.
    proxy.stall();
    let b = base.clone();
    let (status, body, took) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let (status, body) = get(&b, "/api/funnel");
        (status, body, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("did not answer within 1 s"), "{body}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");

    // The network returns: the hung connection was left out of the pool,
    // fresh ones serve the same figures.
    proxy.up();
    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), || get(&b, "/api/funnel").0 == 200)
    })
    .await
    .unwrap();
    assert_eq!(get_json(&base, "/api/funnel"), before);
}

/// One filter combination: its query string and the same filter as SQL over
/// the facts (`f`: the fact row, `c`: its customer, `p`: its product).
struct Case {
    query: String,
    lines: String,
    /// The same over `fact_order o` (placed_at, its customer `c`).
    orders: String,
}

fn case(s: &str, range: &str, interval: Option<&str>, dims: &[(&str, &str)]) -> Case {
    let mut q = vec![format!("range={range}")];
    let (mut lines, mut orders) = (vec!["true".to_string()], vec!["true".to_string()]);
    if let Some(i) = interval {
        lines.push(format!("f.event_time >= now() - interval '{i}'"));
        orders.push(format!("o.placed_at >= now() - interval '{i}'"));
    }
    for (name, value) in dims {
        q.push(format!("{name}={value}"));
        match *name {
            "country" | "segment" => {
                lines.push(format!("c.{name} = '{value}'"));
                orders.push(format!("c.{name} = '{value}'"));
            }
            "category" => {
                lines.push(format!("p.category = '{value}'"));
                orders.push(format!(
                    "EXISTS (SELECT 1 FROM \"{s}\".fact_sales x JOIN \"{s}\".dim_product xp USING (product_key)
                             WHERE x.order_id = o.order_id AND xp.category = '{value}')"
                ));
            }
            "device" => {
                let key =
                    format!("(SELECT device_key FROM \"{s}\".dim_device WHERE device_type = '{value}')");
                lines.push(format!("f.device_key = {key}"));
                orders.push(format!("o.device_key = {key}"));
            }
            other => panic!("no filter {other}"),
        }
    }
    Case {
        query: q.join("&"),
        lines: lines.join(" AND "),
        orders: orders.join(" AND "),
    }
}

/// Every panel under each filter and time range equals SQL over the facts.
/// Older facts (two days and three hours back, loaded by another writer)
/// fall inside some ranges and outside others.
#[tokio::test(flavor = "multi_thread")]
async fn every_panel_under_each_filter_equals_sql_over_the_facts() {
    let w = filled("dash_filters", 12_000).await;
    let s = w.schema.name.clone();
    exec(format!(
        "SET search_path = \"{s}\";
         INSERT INTO fact_sales
         SELECT gen_random_uuid(), line_number, gen_random_uuid(), session_id, customer_key, product_key, date_key,
                time_key, currency, payment_method, quantity, unit_price, discount_amount, line_total, net_amount,
                false, event_time - interval '2 days', now(), kafka_partition, kafka_offset, device_key, channel_key
         FROM fact_sales WHERE line_number = 1 LIMIT 300;
         INSERT INTO fact_activity (event_id, event_type, session_id, customer_key, product_key, date_key, time_key,
                                    quantity, list_price, device_key, channel_key, event_time, kafka_partition,
                                    kafka_offset)
         SELECT gen_random_uuid(), event_type, session_id, customer_key, product_key, date_key, time_key, quantity,
                list_price, device_key, channel_key, event_time - interval '3 hours', kafka_partition, kafka_offset
         FROM fact_activity LIMIT 500;
         RESET search_path"
    ))
    .await;
    let top = &sql(format!(
        "SELECT (SELECT country FROM \"{s}\".fact_sales JOIN \"{s}\".dim_customer USING (customer_key)
                 GROUP BY 1 ORDER BY count(*) DESC LIMIT 1),
                (SELECT category FROM \"{s}\".fact_sales JOIN \"{s}\".dim_product USING (product_key)
                 GROUP BY 1 ORDER BY count(*) DESC LIMIT 1)"
    ))
    .await[0];
    let (country, category): (String, String) = (top.get(0), top.get(1));
    let (_d, base) = dashboard(&s, &database_url());
    let cases = [
        case(&s, "all", None, &[]),
        case(&s, "all", None, &[("country", &country)]),
        case(&s, "all", None, &[("segment", "consumer")]),
        case(&s, "all", None, &[("category", &category)]),
        case(&s, "all", None, &[("device", "mobile")]),
        case(
            &s,
            "all",
            None,
            &[
                ("country", &country),
                ("category", &category),
                ("device", "mobile"),
            ],
        ),
        case(&s, "1h", Some("1 hour"), &[]),
        case(&s, "24h", Some("1 day"), &[("country", &country)]),
        case(
            &s,
            "7d",
            Some("7 days"),
            &[("segment", "consumer"), ("device", "pc")],
        ),
        case(&s, "15m", Some("15 minutes"), &[("category", &category)]),
    ];
    for c in &cases {
        check_case(&base, &s, c).await;
    }
}

async fn check_case(base: &str, s: &str, c: &Case) {
    let api = |path: &str| {
        get_json(
            base,
            &format!("{path}{}{}", if path.contains('?') { "&" } else { "?" }, c.query),
        )
    };
    let q = &c.query;
    let lines = format!(
        "SELECT f.*, c.country, c.segment, c.gender, p.category FROM \"{s}\".fact_sales f
         JOIN \"{s}\".dim_customer c USING (customer_key) JOIN \"{s}\".dim_product p USING (product_key)
         WHERE {}",
        c.lines
    );
    let acts = format!(
        "SELECT f.*, c.country, c.segment, p.category FROM \"{s}\".fact_activity f
         JOIN \"{s}\".dim_customer c USING (customer_key) JOIN \"{s}\".dim_product p USING (product_key)
         WHERE {}",
        c.lines
    );
    let t = &sql(format!(
        "SELECT count(DISTINCT order_id), coalesce(sum(quantity), 0)::bigint, coalesce(sum(line_total), 0),
                coalesce(sum(discount_amount), 0), coalesce(sum(net_amount), 0),
                (SELECT count(*) FROM ({acts}) a WHERE event_type = 'page_view'),
                (SELECT count(*) FROM ({acts}) a WHERE event_type = 'add_to_cart')
         FROM ({lines}) l"
    ))
    .await[0];
    let (orders, units, gross, discounts, net, views, carts): (
        i64,
        i64,
        Decimal,
        Decimal,
        Decimal,
        i64,
        i64,
    ) = (
        t.get(0),
        t.get(1),
        t.get(2),
        t.get(3),
        t.get(4),
        t.get(5),
        t.get(6),
    );
    assert!(orders > 0 && views > 0, "{q}: the case has data");

    let summary = api("/api/summary");
    let cur = &summary["current"];
    assert_eq!(
        (
            int(&cur["orders"]),
            int(&cur["units"]),
            dec(&cur["gross"]),
            dec(&cur["discounts"]),
            dec(&cur["revenue"])
        ),
        (orders, units, gross, discounts, net),
        "{q}: summary"
    );
    let series = api("/api/sales/series");
    let points = series["points"].as_array().unwrap();
    let series_net: Decimal = points.iter().map(|p| dec(&p["revenue"])).sum();
    let series_orders: i64 = points.iter().map(|p| int(&p["orders"])).sum();
    assert_eq!((series_net, series_orders), (net, orders), "{q}: series");

    let funnel = api("/api/funnel");
    assert_eq!(
        (
            int(&funnel["page_views"]),
            int(&funnel["cart_adds"]),
            int(&funnel["purchases"])
        ),
        (views, carts, orders),
        "{q}: funnel"
    );

    // Grouped panels: (endpoint, rows, key fields, SQL giving key, orders, revenue).
    let groups: [(&str, &str, &[&str], String); 4] = [
        (
            "/api/customers",
            "by_country_segment",
            &["country", "segment"],
            format!("SELECT country || '/' || segment, count(DISTINCT order_id), sum(net_amount) FROM ({lines}) l GROUP BY 1"),
        ),
        (
            "/api/devices",
            "",
            &["key"],
            format!(
                "SELECT d.device_type, count(DISTINCT order_id), sum(net_amount)
                 FROM ({lines}) l JOIN \"{s}\".dim_device d USING (device_key) GROUP BY 1"
            ),
        ),
        (
            "/api/calendar",
            "weekdays",
            &["key"],
            format!(
                "SELECT extract(isodow FROM event_time AT TIME ZONE 'UTC')::text, count(DISTINCT order_id), sum(net_amount)
                 FROM ({lines}) l GROUP BY 1"
            ),
        ),
        (
            "/api/calendar",
            "days_of_month",
            &["key"],
            format!(
                "SELECT extract(day FROM event_time AT TIME ZONE 'UTC')::text, count(DISTINCT order_id), sum(net_amount)
                 FROM ({lines}) l GROUP BY 1"
            ),
        ),
    ];
    for (endpoint, field, keys, want) in groups {
        let body = api(endpoint);
        let rows = if field.is_empty() { &body } else { &body[field] };
        let got: Vec<(String, i64, Decimal)> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| int(&r["orders"]) > 0)
            .map(|r| {
                let key: Vec<&str> = keys.iter().map(|k| r[*k].as_str().unwrap()).collect();
                (key.join("/"), int(&r["orders"]), dec(&r["revenue"]))
            })
            .collect();
        let mut want: Vec<(String, i64, Decimal)> = sql(want)
            .await
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want, "{q}: {endpoint} {field}");
    }

    // Payment methods: whole orders, so not under a category filter.
    let payments = api("/api/payments");
    if q.contains("category=") {
        assert!(payments["methods"].is_null(), "{q}: {payments}");
    } else {
        let want = sql(format!(
            "SELECT payment_method, count(DISTINCT order_id), sum(net_amount) FROM ({lines}) l GROUP BY 1"
        ))
        .await;
        for r in &want {
            let method: String = r.get(0);
            let got = find(&payments["methods"], &[("key", &method)]);
            assert_eq!(
                (int(&got["orders"]), dec(&got["revenue"])),
                (r.get(1), r.get(2)),
                "{q}: {method}"
            );
        }
    }

    // Categories, with views.
    let cats = api("/api/categories");
    let want = sql(format!(
        "SELECT category, coalesce(sum(l.net_amount), 0), coalesce(sum(l.quantity), 0)::bigint,
                count(DISTINCT l.order_id),
                (SELECT count(*) FROM ({acts}) a WHERE a.category = x.category AND a.event_type = 'page_view')
         FROM (SELECT DISTINCT category FROM ({lines}) l UNION SELECT DISTINCT category FROM ({acts}) a) x
         LEFT JOIN ({lines}) l USING (category) GROUP BY category"
    ))
    .await;
    assert_eq!(cats.as_array().unwrap().len(), want.len(), "{q}: categories");
    for r in &want {
        let name: String = r.get(0);
        let got = find(&cats, &[("category", &name)]);
        assert_eq!(
            (
                dec(&got["revenue"]),
                int(&got["units"]),
                int(&got["orders"]),
                int(&got["views"])
            ),
            (r.get(1), r.get(2), r.get(3), r.get(4)),
            "{q}: category {name}"
        );
    }

    // Hours of the day: page views and orders.
    let hours = api("/api/activity/hours");
    let want = sql(format!(
        "SELECT h, (SELECT count(*) FROM ({acts}) a WHERE a.event_type = 'page_view'
                      AND extract(hour FROM a.event_time AT TIME ZONE 'UTC') = h),
                (SELECT count(DISTINCT order_id) FROM ({lines}) l WHERE extract(hour FROM l.event_time AT TIME ZONE 'UTC') = h)
         FROM generate_series(0, 23) AS h"
    ))
    .await;
    for r in &want {
        let h: i32 = r.get(0);
        let got = &hours["hours"][h as usize];
        assert_eq!(
            (int(&got["page_views"]), int(&got["orders"])),
            (r.get(1), r.get(2)),
            "{q}: hour {h}"
        );
    }
    let am_pm = int(&hours["am"]["orders"]) + int(&hours["pm"]["orders"]);
    assert_eq!(am_pm, orders, "{q}: AM + PM");

    // Best sellers.
    let top = api("/api/products/top?by=revenue&limit=5");
    let want = sql(format!(
        "SELECT product_id, sum(net_amount) AS net, sum(quantity)::bigint AS units
         FROM ({lines}) l JOIN \"{s}\".dim_product USING (product_key)
         GROUP BY 1 ORDER BY net DESC, units DESC, product_id LIMIT 5"
    ))
    .await;
    for (got, r) in top.as_array().unwrap().iter().zip(&want) {
        assert_eq!(
            got["product_id"],
            r.get::<_, String>(0).as_str(),
            "{q}: top products"
        );
        assert_eq!(
            (dec(&got["revenue"]), int(&got["units"])),
            (r.get(1), r.get(2)),
            "{q}: top products"
        );
    }

    // Distinct customers with an order, by gender and by weekday.
    let profile = api("/api/customers/profile");
    let want = sql(format!(
        "SELECT 'gender:' || coalesce(gender, 'unknown'), count(DISTINCT customer_key) FROM ({lines}) l GROUP BY 1
         UNION ALL
         SELECT 'weekday:' || extract(isodow FROM event_time AT TIME ZONE 'UTC'), count(DISTINCT customer_key)
         FROM ({lines}) l GROUP BY 1
         UNION ALL SELECT 'all', count(DISTINCT customer_key) FROM ({lines}) l"
    ))
    .await;
    let mut got: Vec<(String, i64)> = vec![("all".into(), int(&profile["customers"]))];
    for (field, prefix) in [("by_gender", "gender"), ("by_weekday", "weekday")] {
        for r in profile[field].as_array().unwrap() {
            if int(&r["customers"]) > 0 {
                got.push((
                    format!("{prefix}:{}", r["key"].as_str().unwrap()),
                    int(&r["customers"]),
                ));
            }
        }
    }
    let mut want: Vec<(String, i64)> = want.iter().map(|r| (r.get(0), r.get(1))).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{q}: customers profile");

    // Orders by status, from fact_order.
    let statuses = api("/api/orders/status");
    let o = &sql(format!(
        "SELECT count(*), count(*) FILTER (WHERE status = 'canceled'), count(*) FILTER (WHERE status = 'refunded'),
                coalesce(sum(booked_amount), 0)
         FROM \"{s}\".fact_order o JOIN \"{s}\".dim_customer c USING (customer_key) WHERE {}",
        c.orders
    ))
    .await[0];
    assert_eq!(
        (
            int(&statuses["orders"]),
            int(&statuses["canceled"]),
            int(&statuses["refunded"]),
            dec(&statuses["booked_revenue"])
        ),
        (o.get(0), o.get(1), o.get(2), o.get(3)),
        "{q}: order statuses"
    );
}

/// The order-line table: paging by keyset visits every line once, newest
/// first; a filter, a search and the CSV export hold exactly their lines.
#[tokio::test(flavor = "multi_thread")]
async fn the_order_line_table_pages_searches_and_exports_exactly_its_lines() {
    let w = filled("dash_lines", 6_000).await;
    let s = w.schema.name.clone();
    let (_d, base) = dashboard(&s, &database_url());
    let all_pages = |query: String| {
        let base = base.clone();
        move || {
            let mut keys = Vec::new();
            let mut after = String::new();
            loop {
                let page = get_json(&base, &format!("/api/orders/lines?limit=7&{query}{after}"));
                for l in page["lines"].as_array().unwrap() {
                    keys.push(format!(
                        "{}/{}",
                        l["order_id"].as_str().unwrap(),
                        l["line_number"]
                    ));
                }
                match page["next"].as_str() {
                    Some(next) => after = format!("&after={next}"),
                    None => return keys,
                }
            }
        }
    };
    let ordered = |cond: &str| {
        sql(format!(
            "SELECT f.order_id::text || '/' || f.line_number FROM \"{s}\".fact_sales f
             JOIN \"{s}\".dim_customer c USING (customer_key) WHERE {cond}
             ORDER BY f.event_time DESC, f.order_id DESC, f.line_number DESC"
        ))
    };
    let keys = tokio::task::spawn_blocking(all_pages(String::new()))
        .await
        .unwrap();
    let want: Vec<String> = ordered("true").await.iter().map(|r| r.get(0)).collect();
    assert!(want.len() > 7 * 3, "several pages: {}", want.len());
    assert_eq!(keys, want, "every line once, newest first");

    let top = &sql(format!(
        "SELECT c.country, c.customer_id, f.order_id::text FROM \"{s}\".fact_sales f
         JOIN \"{s}\".dim_customer c USING (customer_key) ORDER BY f.event_time DESC LIMIT 1"
    ))
    .await[0];
    let (country, customer, order): (String, String, String) = (top.get(0), top.get(1), top.get(2));
    for (query, cond) in [
        (format!("country={country}&"), format!("c.country = '{country}'")),
        (
            format!("search={customer}&"),
            format!("c.customer_id = '{customer}'"),
        ),
        (format!("search={order}&"), format!("f.order_id = '{order}'")),
    ] {
        let keys = tokio::task::spawn_blocking(all_pages(query.clone()))
            .await
            .unwrap();
        let want: Vec<String> = ordered(&cond).await.iter().map(|r| r.get(0)).collect();
        assert!(!want.is_empty());
        assert_eq!(keys, want, "{query}");
    }

    let (status, csv) = get(&base, &format!("/api/orders/lines.csv?country={country}"));
    assert_eq!(status, 200);
    let mut rows = csv.lines();
    assert!(
        rows.next()
            .unwrap()
            .starts_with("event_time,order_id,line_number,customer_id")
    );
    let want = ordered(&format!("c.country = '{country}'")).await;
    assert_eq!(rows.clone().count(), want.len(), "one CSV row per line");
    let first: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(format!("{}/{}", first[1], first[2]), want[0].get::<_, String>(0));

    let (status, body) = get(&base, "/api/orders/lines?after=yesterday");
    assert_eq!(status, 400);
    assert!(body.contains("bad cursor"), "{body}");
}
