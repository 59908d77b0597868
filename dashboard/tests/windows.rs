//! The summary's current and previous windows, over rollup rows placed at
//! known minutes around a fixed "now": which buckets count where, and that
//! future-stamped buckets count in the totals only.

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use shopstream_dashboard::queries;
use shopstream_model::SchemaName;
use shopstream_testkit::{TestSchema, database_url, pg};

#[tokio::test(flavor = "multi_thread")]
async fn current_and_previous_windows_take_exactly_their_minutes() {
    let schema = TestSchema::new("dash_windows");
    let name = SchemaName::parse(&schema.name).expect("valid schema name");
    let now: DateTime<Utc> = "2026-01-10T12:00:30Z".parse().unwrap();
    let at = |minutes: i64| now - TimeDelta::seconds(30) + TimeDelta::minutes(minutes);
    // (bucket, net): orders = net / 10, units = net / 5, so every figure checks.
    let rows: [(DateTime<Utc>, i64); 6] = [
        (at(1), 100_000),  // future: totals only
        (at(0), 20),       // the minute in progress: current
        (at(-59), 10),     // oldest current minute
        (at(-60), 400),    // newest previous minute
        (at(-119), 800),   // oldest previous minute
        (at(-120), 5_000), // before both windows: totals only
    ];
    {
        let (name, rows) = (name.clone(), rows.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut c = pg();
            shopstream_worker::migrate::migrate(&mut c, &name).expect("migrate");
            for (bucket, net) in rows {
                let (orders, units, net) = (net / 10, net / 5, Decimal::from(net));
                c.execute(
                    &format!(
                        "INSERT INTO {} (bucket, orders, units, gross, discounts, net, new_orders, new_net)
                         VALUES ($1, $2, $3, $4, 0, $4, 0, 0)",
                        name.table(shopstream_model::warehouse::AGG_SALES_MINUTE)
                    ),
                    &[&bucket, &orders, &units, &net],
                )
                .expect("insert a rollup row");
            }
            c.batch_execute(&format!(
                "INSERT INTO {} SELECT date_trunc('hour', bucket, 'UTC'), sum(orders), sum(units), sum(gross),
                        sum(discounts), sum(net), sum(new_orders), sum(new_net)
                 FROM {} GROUP BY 1",
                name.table(shopstream_model::warehouse::AGG_SALES_HOUR),
                name.table(shopstream_model::warehouse::AGG_SALES_MINUTE)
            ))
            .expect("hourly rollup rows");
        })
        .await
        .unwrap();
    }
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);

    let s = queries::summary(&client, &name, 60, now).await.expect("summary");
    assert_eq!(s.current.revenue, Decimal::from(30));
    assert_eq!((s.current.orders, s.current.units), (3, 6));
    assert_eq!(s.previous.revenue, Decimal::from(1_200));
    assert_eq!((s.previous.orders, s.previous.units), (120, 240));
    assert_eq!(s.all_time.revenue, Decimal::from(106_230));
    assert_eq!(s.change_pct.revenue, Some(-97.5));
    assert_eq!(s.change_pct.orders, Some(-97.5));

    // One minute: just the minute in progress against the one before.
    let s = queries::summary(&client, &name, 1, now).await.expect("summary");
    assert_eq!(s.current.revenue, Decimal::from(20));
    assert_eq!(s.previous.revenue, Decimal::ZERO);
    assert_eq!(s.change_pct.revenue, None, "no base to compare with");
}
