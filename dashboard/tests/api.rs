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

    // Summary: a window holding the whole load; nothing before it.
    let summary = api("/api/summary?window=600");
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
    let minutes = api("/api/sales/minute?minutes=60");
    assert_eq!(minutes.as_array().unwrap().len(), 60);
    let by_minute = sql(format!(
        "SELECT to_char(date_trunc('minute', event_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                sum(net_amount), count(DISTINCT order_id)
         FROM \"{s}\".fact_sales GROUP BY 1"
    ))
    .await;
    for row in &by_minute {
        let bucket: String = row.get(0);
        let point = find(&minutes, &[("bucket", &bucket)]);
        assert_eq!(
            dec(&point["revenue"]),
            row.get::<_, Decimal>(1),
            "revenue in {bucket}"
        );
        assert_eq!(int(&point["orders"]), row.get::<_, i64>(2), "orders in {bucket}");
    }
    let hours = api("/api/sales/hour?hours=48");
    let hour_total: Decimal = hours.as_array().unwrap().iter().map(|p| dec(&p["revenue"])).sum();
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
    assert_eq!(int(&customers["new"]["orders"]), nr.get::<_, i64>(0));
    assert_eq!(dec(&customers["new"]["revenue"]), nr.get::<_, Decimal>(1));
    assert_eq!(int(&customers["returning"]["orders"]), nr.get::<_, i64>(2));
    assert_eq!(dec(&customers["returning"]["revenue"]), nr.get::<_, Decimal>(3));
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
    let (status, body) = get(&base, "/api/summary?window=an-hour");
    assert_eq!(status, 400);
    assert!(body.contains("window"), "{body}");

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
