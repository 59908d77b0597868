//! The summary's current and previous ranges, over slice rows placed at
//! known minutes around a fixed "now": which buckets count where, that
//! future-stamped buckets count in the totals only, and that a country
//! filter keeps only its rows.

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use shopstream_dashboard::filters::{Filters, Range};
use shopstream_dashboard::sales;
use shopstream_model::SchemaName;
use shopstream_testkit::{TestSchema, database_url, pg};

#[tokio::test(flavor = "multi_thread")]
async fn current_and_previous_ranges_take_exactly_their_buckets() {
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
                // The same figures in a second country, ten times larger.
                for (country, k) in [("FR", 1), ("DE", 10)] {
                    c.execute(
                        &format!(
                            "INSERT INTO {} (grain, bucket, country, segment, device_key, payment_method, orders,
                                             units, gross, discounts, net)
                             VALUES ('minute', $1, $2, 'consumer', 1, 'card', $3, $4, $5, 0, $5)",
                            name.table(shopstream_model::warehouse::AGG_ORDER_SLICE)
                        ),
                        &[&bucket, &country, &(orders * k), &(units * k), &(net * Decimal::from(k))],
                    )
                    .expect("insert a slice row");
                }
                // Unfiltered figures come from the per-bucket rollup: both countries.
                c.execute(
                    &format!(
                        "INSERT INTO {} (bucket, orders, units, gross, discounts, net, new_orders, new_net)
                         VALUES ($1, $2, $3, $4, 0, $4, 0, 0)",
                        name.table(shopstream_model::warehouse::AGG_SALES_MINUTE)
                    ),
                    &[&bucket, &(orders * 11), &(units * 11), &(net * Decimal::from(11))],
                )
                .expect("insert a rollup row");
            }
            c.batch_execute(&format!(
                "INSERT INTO {t} SELECT 'day', date_trunc('day', bucket, 'UTC'), country, segment, device_key,
                        payment_method, sum(orders), sum(units), sum(gross), sum(discounts), sum(net)
                 FROM {t} GROUP BY 2, 3, 4, 5, 6",
                t = name.table(shopstream_model::warehouse::AGG_ORDER_SLICE),
            ))
            .expect("daily slice rows");
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

    let france = |range| Filters {
        range,
        country: Some("FR".into()),
        ..Filters::default()
    };
    let s = sales::summary(&client, &name, &france(Range::Hour), now)
        .await
        .expect("summary");
    assert_eq!(s.current.revenue, Decimal::from(30));
    assert_eq!((s.current.orders, s.current.units), (3, 6));
    assert_eq!(s.previous.revenue, Decimal::from(1_200));
    assert_eq!((s.previous.orders, s.previous.units), (120, 240));
    assert_eq!(s.all_time.revenue, Decimal::from(106_230));
    assert_eq!(s.change_pct.revenue, Some(-97.5));
    assert_eq!(s.change_pct.orders, Some(-97.5));

    // No filter (the per-bucket rollups): both countries, eleven times the figures.
    let both = Filters {
        range: Range::Hour,
        ..Filters::default()
    };
    let s = sales::summary(&client, &name, &both, now).await.expect("summary");
    assert_eq!(s.current.revenue, Decimal::from(330));
    assert_eq!(s.all_time.revenue, Decimal::from(11 * 106_230));

    // Fifteen minutes: only the minute in progress, nothing in the fifteen before.
    let s = sales::summary(&client, &name, &france(Range::Minutes15), now)
        .await
        .expect("summary");
    assert_eq!(s.current.revenue, Decimal::from(20));
    assert_eq!(s.previous.revenue, Decimal::ZERO);
    assert_eq!(s.change_pct.revenue, None, "no base to compare with");
}
