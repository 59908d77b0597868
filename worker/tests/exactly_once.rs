//! Exactly-once loading against the real broker and PostgreSQL. Every
//! scenario compares the warehouse with the generator's audit exactly.
//! Each test has its own topic and schema.

use std::fs::File;
use std::process::Command;
use std::time::Duration;

use rust_decimal::Decimal;
use shopstream_generator::summary::{Orders, Summary};
use shopstream_testkit::{
    ChildGuard, TestSchema, WarehouseRoles, brokers, create_topic, database_url, database_url_as, free_addr,
    group_offsets, http_get, http_get_within, pg, produce_raw, recreate_topic, unique, wait_until,
};

const LOAD_TIMEOUT: Duration = Duration::from_secs(180);

struct Scenario {
    topic: String,
    schema: TestSchema,
    dir: tempfile::TempDir,
    runs: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, PartialEq)]
struct Totals {
    order_lines: i64,
    units: i64,
    net_revenue: Decimal,
    activity: i64,
    dead_letters: i64,
    /// From `fact_order`: orders by status, canceled and refunded money.
    orders: Orders,
}

/// Orders complete, cancel and refund within seconds, so a scenario's faults
/// hit status events and the purchases they follow alike; some sessions arrive late.
const LIFECYCLE: &[&str] = &[
    "--cancel-ratio",
    "0.1",
    "--refund-ratio",
    "0.3",
    "--cancel-after",
    "1s",
    "--complete-after",
    "1500ms",
    "--refund-after",
    "1500ms",
    "--late-ratio",
    "0.05",
];

impl Scenario {
    async fn new(prefix: &str, partitions: i32) -> Self {
        let topic = unique(prefix);
        create_topic(&topic, partitions).await;
        Self {
            topic,
            schema: TestSchema::new(prefix),
            dir: tempfile::tempdir().unwrap(),
            runs: Default::default(),
        }
    }

    fn worker(&self, name: &str) -> ChildGuard {
        self.worker_with(name, &[])
    }

    fn worker_with(&self, name: &str, extra: &[&str]) -> ChildGuard {
        let log = File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        ChildGuard::spawn(
            name,
            Command::new(env!("CARGO_BIN_EXE_shopstream-worker"))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("RUST_LOG", "info")
                .env("SHOPSTREAM_DATABASE_URL", database_url())
                .args([
                    "--brokers",
                    &brokers(),
                    "--topic",
                    &self.topic,
                    "--schema",
                    &self.schema.name,
                ])
                .args([
                    "--session-timeout",
                    "6s",
                    "--instance",
                    name,
                    "--batch-max-records",
                    "2000",
                ])
                .args(extra)
                .stderr(log),
        )
    }

    /// Run the generator (in-process, through its library) to completion.
    /// Run the generator: `total` events at `rate` per second (0: as fast as
    /// it can), 2% of them invalid, plus any `extra` flags.
    async fn produce(&self, total: u32, rate: u32, extra: &[&str]) -> Summary {
        let (total, rate) = (total.to_string(), rate.to_string());
        let mut args = vec!["--total", &total, "--rate", &rate, "--invalid-ratio", "0.02"];
        if !extra.contains(&"--instance") {
            args.extend(["--instance", "g1"]);
        }
        args.extend(extra);
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.path().join(format!("summary-{n}.json"));
        let mut argv = vec!["shopstream-generator", "--brokers"];
        let b = brokers();
        argv.push(&b);
        argv.extend(["--topic", &self.topic, "--progress-interval", "1h"]);
        argv.extend(&args);
        let path_str = path.display().to_string();
        argv.extend(["--summary-file", &path_str]);
        let cli = <shopstream_generator::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let outcome = shopstream_generator::run(cli).await.expect("generator ran");
        assert!(outcome.succeeded(), "every message was delivered");
        shopstream_generator::summary::read(&path).unwrap()
    }

    fn offsets_sql(&self) -> String {
        format!(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM \"{}\".ingest_offsets WHERE topic = $1",
            self.schema.name
        )
    }

    /// Records committed so far (offsets start at 0, so the sum of next offsets).
    async fn loaded(&self) -> i64 {
        let (sql, topic) = (self.offsets_sql(), self.topic.clone());
        blocking(move || pg().query_one(&sql, &[&topic]).map(|r| r.get(0)).unwrap_or(0)).await
    }

    /// Wait until the committed record count satisfies `done`.
    async fn wait_loaded_until(&self, done: impl Fn(i64) -> bool + Send + 'static) {
        let (sql, topic) = (self.offsets_sql(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let mut c = pg();
            wait_until(LOAD_TIMEOUT, || {
                done(
                    c.query_one(&sql, &[&topic])
                        .map(|r| r.get::<_, i64>(0))
                        .unwrap_or(0),
                )
            });
        })
        .await
        .unwrap();
    }

    async fn wait_loaded(&self, total: u64) {
        self.wait_loaded_until(move |n| n == total as i64).await;
    }

    async fn totals(&self) -> Totals {
        let s = self.schema.name.clone();
        let row = blocking(move || {
            pg().query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM \"{s}\".fact_sales),
                            (SELECT coalesce(sum(quantity), 0)::bigint FROM \"{s}\".fact_sales),
                            (SELECT coalesce(sum(net_amount), 0) FROM \"{s}\".fact_sales),
                            (SELECT count(*) FROM \"{s}\".fact_activity),
                            (SELECT count(*) FROM \"{s}\".dead_letter),
                            count(*), count(*) FILTER (WHERE status = 'pending'),
                            count(*) FILTER (WHERE status = 'completed'),
                            count(*) FILTER (WHERE status = 'canceled'),
                            count(*) FILTER (WHERE status = 'refunded'),
                            coalesce(sum(booked_amount) FILTER (WHERE status = 'canceled'), 0),
                            coalesce(sum(refunded_amount) FILTER (WHERE status = 'refunded'), 0)
                     FROM \"{s}\".fact_order"
                ),
                &[],
            )
            .unwrap()
        })
        .await;
        Totals {
            order_lines: row.get(0),
            units: row.get(1),
            net_revenue: row.get(2),
            activity: row.get(3),
            dead_letters: row.get(4),
            orders: Orders {
                placed: row.get::<_, i64>(5) as u64,
                pending: row.get::<_, i64>(6) as u64,
                completed: row.get::<_, i64>(7) as u64,
                canceled: row.get::<_, i64>(8) as u64,
                refunded: row.get::<_, i64>(9) as u64,
                canceled_amount: row.get(10),
                refunded_amount: row.get(11),
            },
        }
    }
}

impl Scenario {
    /// Terminate the PostgreSQL backends of this scenario's workers; how many.
    async fn terminate_backends(&self) -> i64 {
        let app = format!("shopstream-worker:{}", self.schema.name);
        blocking(move || {
            pg().query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap()
            .get::<_, i64>(0)
        })
        .await
    }

    /// Block until one of this scenario's workers waits on a lock.
    fn wait_for_lock_wait(&self) {
        let app = format!("shopstream-worker:{}", self.schema.name);
        let mut c = pg();
        wait_until(Duration::from_secs(30), || {
            c.query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .is_ok_and(|r| r.get::<_, i64>(0) > 0)
        });
    }
}

/// An exclusive lock on one table, held in an open transaction on its own
/// thread (as a migration or a DBA's session would) until released.
struct HeldLock {
    release: std::sync::mpsc::Sender<()>,
    holder: std::thread::JoinHandle<()>,
}

impl HeldLock {
    fn take(schema: &str, table: &str) -> Self {
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let sql = format!("LOCK TABLE \"{schema}\".{table} IN ACCESS EXCLUSIVE MODE");
        let holder = std::thread::spawn(move || {
            let mut c = pg();
            let mut tx = c.transaction().unwrap();
            tx.batch_execute(&sql).unwrap();
            locked_tx.send(()).unwrap();
            let _ = released.recv();
            tx.rollback().unwrap();
        });
        locked.recv().expect("lock taken");
        Self { release, holder }
    }

    fn release(self) {
        let _ = self.release.send(());
        self.holder.join().expect("lock holder");
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the full logs for a post-mortem; print the tails now.
            let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&self.schema.name);
            let _ = std::fs::create_dir_all(&keep);
            for entry in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
                let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
            }
            eprintln!("worker logs kept in {}", keep.display());
            for entry in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    eprintln!("--- {} (last lines)", entry.path().display());
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// Every reporting view, rolled up, gives the audit's numbers.
async fn assert_reporting_views_agree(schema: &str, s: &Summary) {
    let q = format!(
        "SELECT (SELECT net_revenue FROM \"{s}\".v_financial_summary),
                (SELECT units FROM \"{s}\".v_financial_summary),
                (SELECT orders FROM \"{s}\".v_financial_summary),
                (SELECT sum(net_revenue) FROM \"{s}\".v_sales_by_minute),
                (SELECT sum(net_revenue) FROM \"{s}\".v_sales_by_hour),
                (SELECT sum(net_revenue) FROM \"{s}\".v_sales_by_day),
                (SELECT sum(net_revenue) FROM \"{s}\".v_product_performance),
                (SELECT sum(net_revenue) FROM \"{s}\".v_category_performance),
                (SELECT sum(net_revenue) FROM \"{s}\".v_revenue_by_country_segment),
                (SELECT sum(units)::bigint FROM \"{s}\".v_product_performance),
                (SELECT sum(views)::bigint FROM \"{s}\".v_product_performance),
                (SELECT sum(orders)::bigint FROM \"{s}\".v_customer_new_vs_returning),
                (SELECT sessions_with_purchase FROM \"{s}\".v_customer_funnel),
                (SELECT average_order_value FROM \"{s}\".v_financial_summary)",
        s = schema
    );
    let row = blocking(move || pg().query_one(&q, &[]).unwrap()).await;
    let net = s.net_revenue;
    for (i, name) in [
        (0, "financial"),
        (3, "minute"),
        (4, "hour"),
        (5, "day"),
        (6, "product"),
        (7, "category"),
        (8, "country"),
    ] {
        assert_eq!(row.get::<_, Decimal>(i), net, "net revenue in the {name} view");
    }
    assert_eq!(row.get::<_, i64>(1), s.units);
    assert_eq!(row.get::<_, i64>(9), s.units);
    let purchases = s.events_by_type["purchase"] as i64;
    assert_eq!(row.get::<_, i64>(2), purchases, "orders");
    assert_eq!(row.get::<_, i64>(11), purchases, "new + returning orders");
    assert_eq!(
        row.get::<_, i64>(12),
        purchases,
        "sessions reaching purchase (one order per session)"
    );
    assert_eq!(row.get::<_, i64>(10), s.events_by_type["page_view"] as i64);
    assert_eq!(
        row.get::<_, Decimal>(13),
        (net / Decimal::from(purchases)).round_dp(2),
        "average order value"
    );
}

/// The rollups equal the same aggregates over the facts.
async fn assert_rollups_match_facts(schema: &str) {
    let s = schema.to_string();
    let checks = [
        (
            "agg_sales_minute",
            format!(
                "SELECT bucket, orders, units, gross, discounts, net, new_orders, new_net FROM \"{s}\".agg_sales_minute"
            ),
            format!(
                "SELECT date_trunc('minute', event_time), count(DISTINCT order_id), sum(quantity), sum(line_total),
                        sum(discount_amount), sum(net_amount), count(DISTINCT order_id) FILTER (WHERE is_first_order),
                        coalesce(sum(net_amount) FILTER (WHERE is_first_order), 0)
                 FROM \"{s}\".fact_sales GROUP BY 1"
            ),
        ),
        (
            "agg_sales_hour",
            format!(
                "SELECT bucket, orders, units, gross, discounts, net, new_orders, new_net FROM \"{s}\".agg_sales_hour"
            ),
            format!(
                "SELECT date_trunc('hour', event_time, 'UTC'), count(DISTINCT order_id), sum(quantity), sum(line_total),
                        sum(discount_amount), sum(net_amount), count(DISTINCT order_id) FILTER (WHERE is_first_order),
                        coalesce(sum(net_amount) FILTER (WHERE is_first_order), 0)
                 FROM \"{s}\".fact_sales GROUP BY 1"
            ),
        ),
        (
            "agg_activity_hour",
            format!("SELECT bucket, page_views, cart_adds FROM \"{s}\".agg_activity_hour"),
            format!(
                "SELECT date_trunc('hour', event_time, 'UTC'), count(*) FILTER (WHERE event_type = 'page_view'),
                        count(*) FILTER (WHERE event_type = 'add_to_cart')
                 FROM \"{s}\".fact_activity GROUP BY 1"
            ),
        ),
        (
            "agg_activity_minute",
            format!("SELECT bucket, page_views, cart_adds FROM \"{s}\".agg_activity_minute"),
            format!(
                "SELECT date_trunc('minute', event_time), count(*) FILTER (WHERE event_type = 'page_view'),
                        count(*) FILTER (WHERE event_type = 'add_to_cart')
                 FROM \"{s}\".fact_activity GROUP BY 1"
            ),
        ),
        (
            "agg_product",
            format!("SELECT product_key, views, cart_adds, order_lines, units, net FROM \"{s}\".agg_product"),
            format!(
                "SELECT p.product_key,
                        (SELECT count(*) FROM \"{s}\".fact_activity a WHERE a.product_key = p.product_key AND a.event_type = 'page_view'),
                        (SELECT count(*) FROM \"{s}\".fact_activity a WHERE a.product_key = p.product_key AND a.event_type = 'add_to_cart'),
                        (SELECT count(*) FROM \"{s}\".fact_sales f WHERE f.product_key = p.product_key),
                        (SELECT coalesce(sum(quantity), 0) FROM \"{s}\".fact_sales f WHERE f.product_key = p.product_key),
                        (SELECT coalesce(sum(net_amount), 0) FROM \"{s}\".fact_sales f WHERE f.product_key = p.product_key)
                 FROM \"{s}\".dim_product p"
            ),
        ),
        (
            "agg_geo",
            format!("SELECT country, segment, orders, net FROM \"{s}\".agg_geo"),
            format!(
                "SELECT c.country, c.segment, count(DISTINCT f.order_id), sum(f.net_amount)
                 FROM \"{s}\".fact_sales f JOIN \"{s}\".dim_customer c USING (customer_key) GROUP BY 1, 2"
            ),
        ),
    ];
    let checks = checks.into_iter().chain([
        (
            "agg_cart_session",
            format!("SELECT session_id, first_cart_at, ordered FROM \"{s}\".agg_cart_session"),
            format!(
                "SELECT coalesce(c.session_id, o.session_id), c.first_cart_at, o.session_id IS NOT NULL
                 FROM (SELECT session_id, min(event_time) AS first_cart_at FROM \"{s}\".fact_activity
                       WHERE event_type = 'add_to_cart' GROUP BY 1) c
                 FULL JOIN (SELECT DISTINCT session_id FROM \"{s}\".fact_sales) o USING (session_id)"
            ),
        ),
        (
            "v_slice",
            format!(
                "SELECT grain, bucket, country, segment, category, device_key, sum(lines), sum(orders), sum(units),
                        sum(gross), sum(discounts), sum(net), sum(page_views), sum(cart_adds)
                 FROM \"{s}\".v_slice GROUP BY 1, 2, 3, 4, 5, 6"
            ),
            format!(
                "WITH g(grain) AS (VALUES ('minute'), ('hour'), ('day')),
                 s AS (SELECT g.grain, date_trunc(g.grain, f.event_time, 'UTC') AS bucket, c.country, c.segment,
                              p.category, f.device_key, count(*) AS lines, count(DISTINCT f.order_id) AS orders,
                              sum(f.quantity) AS units, sum(f.line_total) AS gross, sum(f.discount_amount) AS discounts,
                              sum(f.net_amount) AS net
                       FROM \"{s}\".fact_sales f JOIN \"{s}\".dim_customer c USING (customer_key)
                            JOIN \"{s}\".dim_product p USING (product_key) CROSS JOIN g
                       GROUP BY 1, 2, 3, 4, 5, 6),
                 a AS (SELECT g.grain, date_trunc(g.grain, f.event_time, 'UTC') AS bucket, c.country, c.segment,
                              p.category, f.device_key, count(*) FILTER (WHERE f.event_type = 'page_view') AS views,
                              count(*) FILTER (WHERE f.event_type = 'add_to_cart') AS carts
                       FROM \"{s}\".fact_activity f JOIN \"{s}\".dim_customer c USING (customer_key)
                            JOIN \"{s}\".dim_product p USING (product_key) CROSS JOIN g
                       GROUP BY 1, 2, 3, 4, 5, 6)
                 SELECT grain, bucket, country, segment, category, device_key, coalesce(lines, 0), coalesce(orders, 0),
                        coalesce(units, 0), coalesce(gross, 0), coalesce(discounts, 0), coalesce(net, 0),
                        coalesce(views, 0), coalesce(carts, 0)
                 FROM s FULL JOIN a USING (grain, bucket, country, segment, category, device_key)"
            ),
        ),
        (
            "v_order_slice",
            format!(
                "SELECT grain, bucket, country, segment, device_key, payment_method, sum(orders), sum(units),
                        sum(gross), sum(discounts), sum(net)
                 FROM \"{s}\".v_order_slice GROUP BY 1, 2, 3, 4, 5, 6"
            ),
            format!(
                "SELECT g.grain, date_trunc(g.grain, f.event_time, 'UTC'), c.country, c.segment, f.device_key,
                        f.payment_method, count(DISTINCT f.order_id), sum(f.quantity), sum(f.line_total),
                        sum(f.discount_amount), sum(f.net_amount)
                 FROM \"{s}\".fact_sales f JOIN \"{s}\".dim_customer c USING (customer_key)
                      CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS g(grain)
                 GROUP BY 1, 2, 3, 4, 5, 6"
            ),
        ),
        (
        "agg_customer_month",
        format!("SELECT customer_key, month, orders, net FROM \"{s}\".agg_customer_month"),
        format!(
            "SELECT customer_key, date_trunc('month', event_time, 'UTC')::date, count(DISTINCT order_id), sum(net_amount)
             FROM \"{s}\".fact_sales GROUP BY 1, 2"
        ),
    )]);
    for (name, rollup, facts) in checks {
        let sql = format!(
            "SELECT (SELECT count(*) FROM (({rollup}) EXCEPT ({facts})) a) + (SELECT count(*) FROM (({facts}) EXCEPT ({rollup})) b),
                    (SELECT count(*) FROM ({rollup}) r)"
        );
        let row = blocking(move || pg().query_one(&sql, &[]).unwrap()).await;
        let (differences, rows): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(differences, 0, "{name} differs from the facts");
        assert!(rows > 0, "{name} is empty");
    }
}

/// The `postgres` client is synchronous: keep it off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// A scenario run with [`LIFECYCLE`] had orders in every final status.
fn assert_every_status(s: &Summary) {
    let o = &s.orders;
    assert!(
        o.pending > 0 && o.completed > 0 && o.canceled > 0 && o.refunded > 0,
        "orders in every status: {o:?}"
    );
}

fn expected(s: &Summary, copies: i64) -> Totals {
    Totals {
        order_lines: s.order_lines as i64,
        units: s.units,
        net_revenue: s.net_revenue,
        activity: (s.events_by_type["page_view"] + s.events_by_type["add_to_cart"]) as i64,
        dead_letters: s.invalid_total as i64 * copies,
        orders: s.orders.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_worker_loads_50k_events_exactly() {
    let sc = Scenario::new("w_one", 4).await;
    let summary = sc.produce(50_000, 0, &[]).await;
    let mut w = sc.worker("w1");
    sc.wait_loaded(summary.messages_total).await;
    assert_eq!(sc.totals().await, expected(&summary, 1));
    assert_reporting_views_agree(&sc.schema.name, &summary).await;
    assert_rollups_match_facts(&sc.schema.name).await;
    w.signal("TERM");
    assert!(
        w.wait_timeout(Duration::from_secs(10)).success(),
        "exits 0 within 10 s of SIGTERM"
    );
    assert_other_writers_keep_the_rollups_exact(&sc.schema.name).await;
}

/// Rows loaded by any other writer (a worker of an older version during a
/// rolling upgrade, a manual backfill) reach the rollups too, and rows that
/// already exist add nothing.
async fn assert_other_writers_keep_the_rollups_exact(schema: &str) {
    let s = schema.to_string();
    let (new_orders, new_views) = blocking(move || {
        let mut c = pg();
        let copied = c
            .execute(
                &format!(
                    "INSERT INTO \"{s}\".fact_sales
                     SELECT gen_random_uuid(), line_number, gen_random_uuid(), session_id, customer_key, product_key,
                            date_key, time_key, currency, payment_method, quantity, unit_price, discount_amount,
                            line_total, net_amount, is_first_order, event_time + interval '1 day', now(),
                            kafka_partition, kafka_offset
                     FROM \"{s}\".fact_sales WHERE line_number = 1 LIMIT 300"
                ),
                &[],
            )
            .unwrap();
        let views = c
            .execute(
                &format!(
                    "INSERT INTO \"{s}\".fact_activity
                     SELECT gen_random_uuid(), event_type, session_id, customer_key, product_key, date_key, time_key,
                            quantity, list_price, event_time - interval '1 day', now(), kafka_partition, kafka_offset
                     FROM \"{s}\".fact_activity LIMIT 500"
                ),
                &[],
            )
            .unwrap();
        let duplicates = c
            .execute(
                &format!(
                    "INSERT INTO \"{s}\".fact_activity SELECT * FROM \"{s}\".fact_activity LIMIT 500
                     ON CONFLICT DO NOTHING"
                ),
                &[],
            )
            .unwrap();
        assert_eq!(duplicates, 0);
        (copied, views)
    })
    .await;
    assert_eq!((new_orders, new_views), (300, 500));
    assert_rollups_match_facts(schema).await;
}

/// Migrations forward from a schema that already holds facts keep every
/// figure: the cohort rollup (migration 9) and the filter slices (11),
/// dropped as if they had never been applied, then applied again over the
/// loaded facts, backfill them exactly and keep up with what loads after.
#[tokio::test(flavor = "multi_thread")]
async fn the_rollup_migrations_backfill_the_facts_loaded_before_them() {
    let sc = Scenario::new("w_backfill", 2).await;
    let first = sc.produce(8_000, 0, &[]).await;
    {
        let _w = sc.worker("w1");
        sc.wait_loaded(first.messages_total).await;
    }
    let name = shopstream_model::SchemaName::parse(&sc.schema.name).unwrap();
    let reapplied = blocking(move || {
        let mut c = pg();
        let s = name.quoted();
        c.batch_execute(&format!(
            "DROP TABLE {s}.agg_customer_month CASCADE;
             DROP FUNCTION {s}.rollup_customer_months() CASCADE;
             DROP TABLE {s}.agg_slice, {s}.agg_order_slice, {s}.slice_queue CASCADE;
             DROP FUNCTION {s}.slice_queue_sql, {s}.fold_slices, {s}.queue_slices, {s}.sales_slices,
                           {s}.sales_totals, {s}.activity_totals, {s}.orders_filtered,
                           {s}.revenue_by_status, {s}.order_status_reasons CASCADE;
             DROP INDEX {s}.fact_sales_event_time_order_idx;
             CREATE INDEX fact_sales_event_time_idx ON {s}.fact_sales (event_time);
             DELETE FROM {s}.schema_migrations WHERE version IN (9, 11);"
        ))
        .unwrap();
        shopstream_worker::migrate::migrate(&mut c, &name).unwrap()
    })
    .await;
    assert_eq!(reapplied, [9, 11]);
    let s = sc.schema.name.clone();
    let (months, slices, queued): (i64, i64, i64) = blocking(move || {
        let r = pg()
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM \"{s}\".agg_customer_month),
                            (SELECT count(*) FROM \"{s}\".agg_slice), (SELECT count(*) FROM \"{s}\".slice_queue)"
                ),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    })
    .await;
    assert!(months > 0 && slices > 0, "the backfills found the loaded facts");
    assert_eq!(queued, 0, "the migration folds what it backfills");
    assert_rollups_match_facts(&sc.schema.name).await;
    // The same world (seed), other shoppers' traffic (instance).
    let second = sc.produce(4_000, 0, &["--instance", "g2"]).await;
    let _w = sc.worker("w1");
    sc.wait_loaded(first.messages_total + second.messages_total).await;
    assert_rollups_match_facts(&sc.schema.name).await;
    // The worker folds what it queued within seconds of loading it.
    let s = sc.schema.name.clone();
    blocking(move || {
        let mut c = pg();
        wait_until(Duration::from_secs(20), || {
            c.query_one(&format!("SELECT count(*) FROM \"{s}\".slice_queue"), &[])
                .is_ok_and(|r| r.get::<_, i64>(0) == 0)
        });
    })
    .await;
    assert_rollups_match_facts(&sc.schema.name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_load_and_restarted_loses_and_duplicates_nothing() {
    let sc = Scenario::new("w_kill", 4).await;
    let mut w1 = sc.worker("w1");
    let producing = sc.produce(50_000, 8_000, LIFECYCLE);
    let killer = async {
        sc.wait_loaded_until(|n| n >= 10_000).await;
        w1.signal("KILL");
        w1.wait_timeout(Duration::from_secs(5));
    };
    let (summary, ()) = tokio::join!(producing, killer);
    assert!(
        sc.loaded().await < summary.messages_total as i64,
        "killed in the middle of the load"
    );
    let _w2 = sc.worker("w2");
    sc.wait_loaded(summary.messages_total).await;
    assert_every_status(&summary);
    assert_eq!(sc.totals().await, expected(&summary, 1));
    assert_rollups_match_facts(&sc.schema.name).await;
}

/// Workers join and leave while the load goes on, under one group protocol.
async fn workers_join_and_leave_during_the_load(protocol: &str) {
    let sc = Scenario::new(&format!("w_rebalance_{protocol}"), 6).await;
    let flags = ["--group-protocol", protocol];
    let _w1 = sc.worker_with("w1", &flags);
    let producing = sc.produce(60_000, 6_000, LIFECYCLE);
    let choreography = async {
        sc.wait_loaded_until(|n| n >= 8_000).await;
        let mut w2 = sc.worker_with("w2", &flags);
        sc.wait_loaded_until(|n| n >= 18_000).await;
        let mut w3 = sc.worker_with("w3", &flags);
        sc.wait_loaded_until(|n| n >= 32_000).await;
        // Both leave gracefully while the load goes on.
        w2.signal("TERM");
        w3.signal("TERM");
        assert!(w2.wait_timeout(Duration::from_secs(10)).success());
        assert!(w3.wait_timeout(Duration::from_secs(10)).success());
    };
    let (summary, ()) = tokio::join!(producing, choreography);
    sc.wait_loaded(summary.messages_total).await;
    assert_eq!(sc.totals().await, expected(&summary, 1));
    assert_rollups_match_facts(&sc.schema.name).await;
    let sql = format!(
        "SELECT count(DISTINCT owner) FROM \"{}\".ingest_offsets WHERE topic = $1",
        sc.schema.name
    );
    let topic = sc.topic.clone();
    let owners: i64 = blocking(move || pg().query_one(&sql, &[&topic]).unwrap().get(0)).await;
    assert_eq!(
        owners, 1,
        "after the others left, the first worker holds every partition"
    );
    // The group's offsets (what the scaler reads as lag) end where the
    // warehouse's do: no stale commit from a worker that left moved one back.
    let sql = format!(
        "SELECT next_offset FROM \"{}\".ingest_offsets WHERE topic = $1 ORDER BY kafka_partition",
        sc.schema.name
    );
    let topic = sc.topic.clone();
    let stored: Vec<Option<i64>> = blocking(move || {
        pg().query(&sql, &[&topic])
            .unwrap()
            .iter()
            .map(|r| Some(r.get(0)))
            .collect()
    })
    .await;
    let (group, topic) = (format!("shopstream-{}", sc.schema.name), sc.topic.clone());
    tokio::task::spawn_blocking(move || {
        let mut last = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            last = group_offsets(&group, &topic, 6);
            if last == stored {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("group offsets {last:?} != warehouse offsets {stored:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_joining_and_leaving_rebalance_exactly_once_with_the_consumer_protocol() {
    workers_join_and_leave_during_the_load("consumer").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_joining_and_leaving_rebalance_exactly_once_with_cooperative_sticky() {
    workers_join_and_leave_during_the_load("cooperative").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_joining_and_leaving_rebalance_exactly_once_with_eager_rebalancing() {
    workers_join_and_leave_during_the_load("eager").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_grown_from_3_to_6_partitions_mid_load_is_loaded_exactly() {
    let sc = Scenario::new("w_grow", 3).await;
    let _w1 = sc.worker("w1");
    let _w2 = sc.worker("w2");
    let producing = sc.produce(60_000, 5_000, LIFECYCLE);
    let grow = async {
        sc.wait_loaded_until(|n| n >= 10_000).await;
        shopstream_testkit::grow_topic(&sc.topic, 6).await;
    };
    let (summary, ()) = tokio::join!(producing, grow);
    sc.wait_loaded(summary.messages_total).await;
    assert_every_status(&summary);
    assert_eq!(sc.totals().await, expected(&summary, 1));
    assert_rollups_match_facts(&sc.schema.name).await;
    // The generator wrote to the new partitions and the workers loaded them.
    let sql = format!(
        "SELECT count(*) FROM \"{}\".ingest_offsets WHERE topic = $1 AND kafka_partition >= 3 AND next_offset > 0",
        sc.schema.name
    );
    let topic = sc.topic.clone();
    let loaded_new: i64 = blocking(move || pg().query_one(&sql, &[&topic]).unwrap().get(0)).await;
    assert_eq!(loaded_new, 3, "every added partition was produced to and loaded");
    // Orders placed before the growth had later steps keyed to another
    // partition: their status events could load before their purchases, and
    // the statuses above still came out exact.
    let sql = format!(
        "SELECT count(DISTINCT e.order_id) FROM \"{s}\".order_status_event e
         JOIN \"{s}\".fact_sales f USING (order_id) WHERE e.kafka_partition <> f.kafka_partition",
        s = sc.schema.name
    );
    let moved: i64 = blocking(move || pg().query_one(&sql, &[]).unwrap().get(0)).await;
    assert!(
        moved > 0,
        "no order's status event went to another partition than its purchase"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_events_produced_twice_load_once() {
    let sc = Scenario::new("w_dupes", 3).await;
    let first = sc.produce(20_000, 0, &["--seed", "5"]).await;
    let second = sc.produce(20_000, 0, &["--seed", "5"]).await;
    assert_eq!(
        first.net_revenue, second.net_revenue,
        "the second run repeats the first"
    );
    let _w = sc.worker("w1");
    sc.wait_loaded(first.messages_total + second.messages_total).await;
    // Facts once; each copy of a bad message is its own record, so twice.
    assert_eq!(sc.totals().await, expected(&first, 2));
    assert_rollups_match_facts(&sc.schema.name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_database_backends_are_survived_without_loss_or_duplicates() {
    let sc = Scenario::new("w_pgkill", 4).await;
    let _w = sc.worker("w1");
    let producing = sc.produce(50_000, 8_000, LIFECYCLE);
    let terminator = async {
        let mut killed = 0;
        for threshold in [5_000_i64, 15_000, 30_000] {
            sc.wait_loaded_until(move |n| n >= threshold).await;
            killed += sc.terminate_backends().await;
        }
        killed
    };
    let (summary, killed) = tokio::join!(producing, terminator);
    assert!(killed >= 3, "terminated {killed} backends");
    sc.wait_loaded(summary.messages_total).await;
    assert_every_status(&summary);
    assert_eq!(sc.totals().await, expected(&summary, 1));
    assert_rollups_match_facts(&sc.schema.name).await;
}

fn valid_page_view(id: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1, "event_id": uuid::Uuid::new_v4(), "event_type": "page_view",
        "event_time": "2026-11-30T10:00:00Z", "session_id": uuid::Uuid::new_v4(),
        "customer": {"customer_id": format!("C{id}"), "name": "Ann Lee", "email": "ann@example.com",
                     "city": "Lyon", "country": "FR", "segment": "consumer", "signup_date": "2025-01-01"},
        "product": {"product_id": "P1", "name": "Mug", "category": "Home", "brand": "Acme", "list_price": "9.99"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_invalid_kind_becomes_one_dead_letter_and_the_partition_keeps_moving() {
    let sc = Scenario::new("w_dead", 1).await;
    let good = valid_page_view(1);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let bad: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        (
            "not_utf8",
            Some(b"{\"event_type\":\"\xff\"}".to_vec()),
            "not valid UTF-8",
        ),
        (
            "not_json",
            Some(b"{\"schema_version\": 1, \"event".to_vec()),
            "not valid JSON",
        ),
        ("not_json", None, "tombstone"),
        (
            "missing_field",
            Some(with(&|v| {
                v.as_object_mut().unwrap().remove("event_id");
            })),
            "`event_id`",
        ),
        (
            "wrong_type",
            Some(with(&|v| v["event_time"] = serde_json::json!(12))),
            "`event_time`",
        ),
        (
            "invalid_value",
            Some(with(&|v| {
                v["event_type"] = "add_to_cart".into();
                v["quantity"] = (-2).into();
            })),
            "greater than 0",
        ),
        (
            "unknown_event_type",
            Some(with(&|v| v["event_type"] = "refund".into())),
            "`refund`",
        ),
        (
            "unsupported_schema_version",
            Some(with(&|v| v["schema_version"] = 9.into())),
            "schema_version 9",
        ),
    ];
    let mut records: Vec<(&[u8], Option<&[u8]>)> = vec![(b"C1", Some(&good))];
    for (_, payload, _) in &bad {
        records.push((b"C1", payload.as_deref()));
    }
    let after = valid_page_view(2);
    records.push((b"C2", Some(&after)));
    tokio::task::block_in_place(|| produce_raw(&sc.topic, 0, &records));

    let _w = sc.worker("w1");
    sc.wait_loaded(records.len() as u64).await;
    let sql = format!(
        "SELECT kafka_offset, error_kind, error, payload FROM \"{}\".dead_letter ORDER BY kafka_offset",
        sc.schema.name
    );
    let rows = blocking(move || pg().query(&sql, &[]).unwrap()).await;
    assert_eq!(rows.len(), bad.len());
    for (i, (row, (kind, payload, needle))) in rows.iter().zip(&bad).enumerate() {
        assert_eq!(row.get::<_, i64>(0), i as i64 + 1, "offset");
        assert_eq!(row.get::<_, &str>(1), *kind);
        let error: &str = row.get(2);
        assert!(
            error.contains(needle),
            "{kind}: `{error}` should mention {needle}"
        );
        assert_eq!(
            row.get::<_, Option<Vec<u8>>>(3),
            *payload,
            "raw payload kept byte for byte"
        );
    }
    assert_eq!(
        sc.totals().await.activity,
        2,
        "the valid events before and after were loaded"
    );
}

fn valid_purchase(id: u32, quantity: i64, unit_price: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1, "event_id": uuid::Uuid::new_v4(), "event_type": "purchase",
        "event_time": "2026-11-30T10:05:00Z", "session_id": uuid::Uuid::new_v4(),
        "customer": {"customer_id": format!("C{id}"), "name": "Ann Lee", "email": "ann@example.com",
                     "city": "Lyon", "country": "FR", "segment": "consumer", "signup_date": "2025-01-01"},
        "order": {"order_id": uuid::Uuid::new_v4(), "currency": "EUR", "payment_method": "card", "lines": [
            {"line_number": 1, "quantity": quantity, "unit_price": unit_price, "discount": "0",
             "product": {"product_id": "P1", "name": "Mug", "category": "Home", "brand": "Acme",
                         "list_price": "9.99"}}]}
    }))
    .unwrap()
}

/// Each record that once stopped its partition for good (retried forever),
/// among valid events on one partition in one batch: each becomes one dead
/// letter with a readable reason, everything valid loads, offsets advance.
#[tokio::test(flavor = "multi_thread")]
async fn poison_records_become_dead_letters_and_never_stop_the_partition() {
    let sc = Scenario::new("w_poison", 1).await;
    // Migrate the schema, then add a rule the validation knows nothing of,
    // as a DBA might: the warehouse itself rejects that record.
    let w = sc.worker("w1");
    let (schema, s) = (sc.schema.name.clone(), sc.schema.name.clone());
    tokio::task::spawn_blocking(move || {
        let mut c = pg();
        wait_until(Duration::from_secs(60), || {
            c.query_one(&format!("SELECT count(*) FROM \"{s}\".schema_migrations"), &[])
                .is_ok_and(|r| r.get::<_, i64>(0) >= 4)
        });
        c.batch_execute(&format!(
            "ALTER TABLE \"{s}\".fact_sales ADD CONSTRAINT no_sevens CHECK (quantity <> 7)"
        ))
        .unwrap();
    })
    .await
    .unwrap();
    drop(w); // restart: its next batch holds everything below

    let valid: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            if i % 2 == 0 {
                valid_page_view(i)
            } else {
                valid_purchase(i, 2, "19.99")
            }
        })
        .collect();
    // (payload, kind, what the reason must say)
    let poison: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            // Its line total overflowed numeric(18,2): retried forever before.
            valid_purchase(90, 2, "9999999999999999.99"),
            "invalid_value",
            "must be at most 1000000.00",
        ),
        (
            // The error text echoes a NUL, which PostgreSQL text refuses.
            br#"{"schema_version":1,"event_type":"\u0000x"}"#.to_vec(),
            "unknown_event_type",
            "\\u0000x",
        ),
        (
            valid_purchase(91, 7, "1.00"),
            "rejected_by_warehouse",
            "no_sevens",
        ),
    ];
    let mut records: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
    let mut poison_offsets = Vec::new();
    for (i, v) in valid.iter().enumerate() {
        records.push((b"k", Some(v)));
        if let Some((p, ..)) = poison.get(i / 3).filter(|_| i % 3 == 1) {
            poison_offsets.push(records.len() as i64);
            records.push((b"k", Some(p)));
        }
    }
    assert_eq!(poison_offsets.len(), poison.len());
    tokio::task::block_in_place(|| produce_raw(&sc.topic, 0, &records));

    let started = std::time::Instant::now();
    let _w = sc.worker("w2");
    let (sql, topic, total) = (sc.offsets_sql(), sc.topic.clone(), records.len() as i64);
    tokio::task::spawn_blocking(move || {
        let mut c = pg();
        wait_until(Duration::from_secs(30), || {
            c.query_one(&sql, &[&topic])
                .is_ok_and(|r| r.get::<_, i64>(0) == total)
        });
    })
    .await
    .unwrap();
    eprintln!("loaded around the poison in {:?}", started.elapsed());

    let sql =
        format!("SELECT kafka_offset, error_kind, error FROM \"{schema}\".dead_letter ORDER BY kafka_offset");
    let rows = blocking(move || pg().query(&sql, &[]).unwrap()).await;
    assert_eq!(rows.len(), poison.len(), "one dead letter per poison record");
    for ((row, (_, kind, needle)), offset) in rows.iter().zip(&poison).zip(&poison_offsets) {
        assert_eq!(row.get::<_, i64>(0), *offset);
        assert_eq!(row.get::<_, &str>(1), *kind);
        let error: &str = row.get(2);
        assert!(
            error.contains(needle),
            "{kind}: `{error}` should mention {needle}"
        );
    }
    let totals = sc.totals().await;
    assert_eq!(
        (totals.activity, totals.order_lines),
        (5, 5),
        "every valid event loaded"
    );
    assert_rollups_match_facts(&sc.schema.name).await;
}

/// Probes answer at once whatever the loader is doing: here a batch waits
/// on a lock held on `ingest_offsets` (as during a migration).
#[tokio::test(flavor = "multi_thread")]
async fn probes_answer_at_once_while_a_batch_waits_on_a_lock() {
    let sc = Scenario::new("w_probe", 1).await;
    let addr = free_addr();
    let _w = sc.worker_with("w1", &["--metrics-addr", &addr]);
    let a = addr.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(60), || {
            http_get(&a, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        })
    })
    .await
    .unwrap();
    let first = valid_page_view(1);
    tokio::task::block_in_place(|| produce_raw(&sc.topic, 0, &[(b"k", Some(&first))]));
    sc.wait_loaded(1).await;

    // Hold the lock in an open transaction, then give the worker a batch.
    let lock = HeldLock::take(&sc.schema.name, "ingest_offsets");
    let second = valid_page_view(2);
    tokio::task::block_in_place(|| produce_raw(&sc.topic, 0, &[(b"k", Some(&second))]));
    tokio::task::block_in_place(|| sc.wait_for_lock_wait());
    let a = addr.clone();
    let answers = tokio::task::spawn_blocking(move || {
        ["/healthz", "/readyz", "/metrics"].map(|path| {
            let started = std::time::Instant::now();
            // The lock stays held until after these probes, so a probe that
            // waits on the loader never answers; 5 s leaves room for a
            // machine busy with the rest of the suite.
            let answer = http_get_within(&a, path, Duration::from_secs(5));
            (
                path,
                answer.map(|r| r.lines().next().unwrap_or("").to_string()),
                started.elapsed(),
            )
        })
    })
    .await
    .unwrap();
    for (path, status, took) in &answers {
        assert!(
            status.is_some(),
            "{path} did not answer within 5 s (blocked on the loader)"
        );
        eprintln!("{path}: {status:?} in {took:?}");
    }
    assert!(answers[0].1.as_deref().is_some_and(|s| s.contains("200")));
    lock.release();
    sc.wait_loaded(2).await;
}

/// A Pipeline deleted with its topic and created again: the new topic's
/// offsets start over below the stored ones. Every new record loads.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_topic_is_loaded_from_its_start() {
    let sc = Scenario::new("w_recreate", 1).await;
    let first = sc.produce(1_000, 0, &["--seed", "1"]).await;
    let w = sc.worker("w1");
    sc.wait_loaded(first.messages_total).await;
    drop(w);
    recreate_topic(&sc.topic, 1).await;
    let second = sc.produce(500, 0, &["--seed", "2"]).await;
    let _w = sc.worker("w2");
    sc.wait_loaded(second.messages_total).await;
    let (a, b) = (expected(&first, 1), expected(&second, 1));
    let totals = sc.totals().await;
    assert_eq!(
        (totals.order_lines, totals.activity, totals.dead_letters),
        (
            a.order_lines + b.order_lines,
            a.activity + b.activity,
            a.dead_letters + b.dead_letters
        ),
        "the second topic's records were all loaded after the first's"
    );
    let log = std::fs::read_to_string(sc.dir.path().join("w2.log")).unwrap();
    assert!(
        log.contains("deleted and created again"),
        "the reset is logged loudly"
    );
}

/// A loader stuck on a lock for longer than `max.poll.interval.ms` must not
/// get the worker evicted from the group: the consumer keeps polling with
/// its partitions paused, and nothing is revoked.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_blocked_past_the_poll_interval_keeps_the_partitions() {
    let sc = Scenario::new("w_blocked", 1).await;
    let addr = free_addr();
    let flags = [
        "--group-protocol",
        "cooperative",
        "--max-poll-interval",
        "7s",
        "--metrics-addr",
        &addr,
    ];
    let _w = sc.worker_with("w1", &flags);
    let events: Vec<Vec<u8>> = (0..3).map(valid_page_view).collect();
    tokio::task::block_in_place(|| produce_raw(&sc.topic, 0, &[(b"k", Some(&events[0]))]));
    sc.wait_loaded(1).await;

    let lock = HeldLock::take(&sc.schema.name, "ingest_offsets");
    tokio::task::block_in_place(|| {
        produce_raw(&sc.topic, 0, &[(b"k", Some(&events[1]))]);
        sc.wait_for_lock_wait();
        // The next batch now waits for the loader: past the poll interval.
        produce_raw(&sc.topic, 0, &[(b"k", Some(&events[2]))]);
        // Until the loader's statement has been blocked for twice the poll interval.
        let app = format!("shopstream-worker:{}", sc.schema.name);
        let mut c = pg();
        wait_until(Duration::from_secs(30), || {
            c.query_one(
                "SELECT coalesce(max(extract(epoch FROM now() - query_start)), 0)::float8
                 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .is_ok_and(|r| r.get::<_, f64>(0) >= 14.0)
        });
    });
    let paused = http_get(&addr, "/metrics").is_some_and(|m| {
        m.lines()
            .any(|l| l.starts_with("shopstream_worker_paused_waits_total ") && !l.ends_with(" 0"))
    });
    lock.release();
    sc.wait_loaded(3).await;
    let log = std::fs::read_to_string(sc.dir.path().join("w1.log")).unwrap();
    assert!(
        !log.contains("partitions revoked"),
        "no partition was revoked:\n{log}"
    );
    assert!(
        !log.contains("poll interval"),
        "never evicted for not polling:\n{log}"
    );
    assert!(paused, "the consumer waited with its partitions paused");
    assert_eq!(sc.totals().await.activity, 3);
}

/// `event` with the JSON pointers in `set` replaced.
fn patched(event: &[u8], set: &[(&str, serde_json::Value)]) -> Vec<u8> {
    event.to_vec().pipe_json(|v| {
        for (pointer, value) in set {
            *v.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = value.clone();
        }
    })
}

/// A customer's earlier order committed after a later one (another
/// producer, a retry, partitions grown): still exactly one first order, the
/// earlier, and the new-customer rollups agree. Dimension attributes come
/// from the newest event, not the last commit.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_order_and_the_newest_attributes_win_whatever_the_commit_order() {
    let sc = Scenario::new("w_order", 1).await;
    let _w = sc.worker("w1");
    let at = |t: &str| serde_json::Value::from(format!("2026-11-30T{t}Z"));
    let later = patched(&valid_purchase(77, 1, "5.00"), &[("/event_time", at("10:10:00"))]);
    // Customer C78 and product P9 seen at `time` with these attributes.
    let view = |time: &str, city: &str, price: &str| {
        patched(
            &valid_page_view(78),
            &[
                ("/event_time", at(time)),
                ("/customer/city", city.into()),
                ("/product/product_id", "P9".into()),
                ("/product/list_price", price.into()),
            ],
        )
    };
    let newer_view = view("10:30:00", "Paris", "10.00");
    tokio::task::block_in_place(|| {
        produce_raw(&sc.topic, 0, &[(b"k", Some(&later)), (b"k", Some(&newer_view))])
    });
    sc.wait_loaded(2).await;
    // The older events arrive last.
    let earlier = patched(&valid_purchase(77, 3, "2.00"), &[("/event_time", at("10:05:00"))]);
    let older_view = view("10:00:00", "Lyon", "8.00");
    tokio::task::block_in_place(|| {
        produce_raw(&sc.topic, 0, &[(b"k", Some(&earlier)), (b"k", Some(&older_view))])
    });
    sc.wait_loaded(4).await;

    let s = sc.schema.name.clone();
    let row = blocking(move || {
        pg().query_one(
            &format!(
                "SELECT (SELECT count(*) FROM \"{s}\".fact_sales WHERE is_first_order),
                        (SELECT quantity FROM \"{s}\".fact_sales WHERE is_first_order),
                        (SELECT sum(new_orders)::bigint FROM \"{s}\".agg_sales_minute),
                        (SELECT city FROM \"{s}\".dim_customer WHERE customer_id = 'C78'),
                        (SELECT list_price::text FROM \"{s}\".dim_product WHERE product_id = 'P9')"
            ),
            &[],
        )
        .unwrap()
    })
    .await;
    assert_eq!(row.get::<_, i64>(0), 1, "one first order");
    assert_eq!(row.get::<_, i32>(1), 3, "the earlier order is the first");
    assert_eq!(
        row.get::<_, i64>(2),
        1,
        "the rollup counts one new-customer order"
    );
    assert_eq!(row.get::<_, &str>(3), "Paris", "the newest event's city");
    assert_eq!(row.get::<_, &str>(4), "10.00", "the newest event's price");
    assert_rollups_match_facts(&sc.schema.name).await;
}

/// Kills, terminated warehouse backends and the rebalances they cause, all
/// at once, for the whole load: then every partition must be consumed again
/// (the test plays kubelet: a worker whose liveness fails is restarted), the
/// audit must match exactly and the catch-up must be bounded.
#[tokio::test(flavor = "multi_thread")]
async fn combined_faults_recover_exactly_within_a_bounded_time() {
    let sc = Scenario::new("w_chaos", 6).await;
    let spawn = |slot: usize, incarnation: usize, addr: &str| {
        sc.worker_with(
            &format!("w{slot}-{incarnation}"),
            &["--metrics-addr", addr, "--stall-timeout", "30s"],
        )
    };
    let mut workers: Vec<(ChildGuard, String, usize)> = (0..3)
        .map(|i| {
            let a = free_addr();
            (spawn(i, 0, &a), a, 0)
        })
        .collect();
    let producing = sc.produce(150_000, 3_000, LIFECYCLE);
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut kills = 0;
    let mut terminated = 0;
    let mut liveness_restarts = 0;
    let chaos = async {
        let mut tick = tokio::time::interval(Duration::from_millis(5_500));
        tick.tick().await;
        let mut n = 0usize;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            n += 1;
            if n % 2 == 1 {
                // SIGKILL one worker (in turn) and start it again at once.
                let slot = (n / 2) % workers.len();
                let (guard, a, incarnation) = &mut workers[slot];
                guard.signal("KILL");
                *incarnation += 1;
                *guard = spawn(slot, *incarnation, a);
                kills += 1;
            } else {
                terminated += sc.terminate_backends().await;
            }
        }
    };
    let summary = tokio::select! {
        s = producing => s,
        () = chaos => unreachable!("chaos runs until the load ends"),
    };
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        kills >= 3 && terminated >= 3,
        "kills {kills}, terminated backends {terminated}"
    );

    // Catch-up, with liveness acted on as a kubelet would.
    let started = std::time::Instant::now();
    let total = summary.messages_total as i64;
    loop {
        let loaded = sc.loaded().await;
        if loaded == total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "stalled at {loaded} of {total} records after {:?}",
            started.elapsed()
        );
        for (slot, (guard, a, incarnation)) in workers.iter_mut().enumerate() {
            let a2 = a.clone();
            let health = blocking(move || http_get_within(&a2, "/healthz", Duration::from_secs(2))).await;
            if health.is_some_and(|h| h.starts_with("HTTP/1.1 503")) {
                guard.signal("KILL");
                *incarnation += 1;
                *guard = spawn(slot, *incarnation, a);
                liveness_restarts += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "{kills} kills, {terminated} backends terminated, {liveness_restarts} liveness restarts; caught up {:?} after the load",
        started.elapsed()
    );
    assert_every_status(&summary);
    assert_eq!(sc.totals().await, expected(&summary, 1));
    assert_rollups_match_facts(&sc.schema.name).await;
}

/// Schema version 2 (issue 16): the customer's gender and birth date land in
/// `dim_customer`, the session's device and channel in the facts' keys;
/// version 1 events (from generators of the previous release) still load,
/// with those unknown, and do not erase what a newer event said. The
/// device and channel dimensions hold exactly the model's values.
#[tokio::test(flavor = "multi_thread")]
async fn who_shops_and_how_lands_in_the_dimensions_and_version_1_still_loads() {
    use shopstream_model::{Channel, Device};
    let sc = Scenario::new("w_shopper", 1).await;
    let _w = sc.worker("w1");
    let at = |t: &str| serde_json::Value::from(format!("2026-11-30T{t}Z"));
    let v2 = |event: Vec<u8>, device: &str| {
        patched(
            &event,
            &[("/schema_version", 2.into()), ("/event_time", at("10:10:00"))],
        )
        .pipe_json(|v| {
            v["customer"]["gender"] = "female".into();
            v["customer"]["birth_date"] = "1990-05-17".into();
            v["device"] = device.into();
            v["channel"] = "email".into();
        })
    };
    let purchase = v2(valid_purchase(90, 2, "5.00"), "smart_tv");
    // Version 1, newer: the gender and birth date stay as the version 2 event said.
    let old_view = patched(&valid_page_view(90), &[("/event_time", at("10:20:00"))]);
    let stranger = valid_page_view(91);
    tokio::task::block_in_place(|| {
        produce_raw(
            &sc.topic,
            0,
            &[
                (b"k", Some(&purchase)),
                (b"k", Some(&old_view)),
                (b"k", Some(&stranger)),
            ],
        )
    });
    sc.wait_loaded(3).await;
    let s = sc.schema.name.clone();
    let row = blocking(move || {
        pg().query_one(
            &format!(
                "SELECT (SELECT gender FROM \"{s}\".dim_customer WHERE customer_id = 'C90'),
                        (SELECT birth_date::text FROM \"{s}\".dim_customer WHERE customer_id = 'C90'),
                        (SELECT gender FROM \"{s}\".dim_customer WHERE customer_id = 'C91'),
                        (SELECT d.device_type || '/' || c.channel FROM \"{s}\".fact_sales f
                           JOIN \"{s}\".dim_device d USING (device_key) JOIN \"{s}\".dim_channel c USING (channel_key)),
                        (SELECT count(*) FROM \"{s}\".fact_activity WHERE device_key = 0 AND channel_key = 0),
                        (SELECT count(*) FROM \"{s}\".dim_time WHERE am_pm = 'AM'),
                        (SELECT count(*) FROM \"{s}\".dead_letter)"
            ),
            &[],
        )
        .unwrap()
    })
    .await;
    assert_eq!(row.get::<_, Option<&str>>(0), Some("female"));
    assert_eq!(row.get::<_, Option<&str>>(1), Some("1990-05-17"));
    assert_eq!(row.get::<_, Option<&str>>(2), None, "unknown from version 1");
    assert_eq!(row.get::<_, &str>(3), "smart_tv/email");
    assert_eq!(row.get::<_, i64>(4), 2, "version 1 activity points at unknown");
    assert_eq!(row.get::<_, i64>(5), 720, "AM is the first half of the day");
    assert_eq!(row.get::<_, i64>(6), 0);

    // The dimensions are the model's values, with 0 for unknown.
    let s = sc.schema.name.clone();
    let (devices, channels) = blocking(move || {
        let mut c = pg();
        let read = |c: &mut postgres::Client, sql: String| -> Vec<(i16, String)> {
            c.query(&sql, &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        };
        (
            read(
                &mut c,
                format!("SELECT device_key, device_type FROM \"{s}\".dim_device ORDER BY 1"),
            ),
            read(
                &mut c,
                format!("SELECT channel_key, channel FROM \"{s}\".dim_channel ORDER BY 1"),
            ),
        )
    })
    .await;
    let expect = |all: Vec<(i16, &str)>| {
        let mut v: Vec<(i16, String)> = vec![(0, "unknown".to_string())];
        v.extend(all.into_iter().map(|(k, t)| (k, t.to_string())));
        v.sort();
        v
    };
    assert_eq!(
        devices,
        expect(Device::ALL.iter().map(|d| (d.key(), d.as_str())).collect())
    );
    assert_eq!(
        channels,
        expect(Channel::ALL.iter().map(|c| (c.key(), c.as_str())).collect())
    );

    // The generator's events carry all of it.
    let summary = sc.produce(3_000, 0, &[]).await;
    sc.wait_loaded(3 + summary.messages_total).await;
    let s = sc.schema.name.clone();
    let unknown = blocking(move || {
        pg().query_one(
            &format!(
                "SELECT (SELECT count(*) FROM \"{s}\".fact_activity WHERE device_key = 0 OR channel_key = 0),
                        (SELECT count(*) FROM \"{s}\".fact_sales WHERE device_key = 0 OR channel_key = 0),
                        (SELECT count(*) FROM \"{s}\".dim_customer WHERE gender IS NULL OR birth_date IS NULL)"
            ),
            &[],
        )
        .unwrap()
    })
    .await;
    assert_eq!(unknown.get::<_, i64>(0), 2, "only the version 1 views");
    assert_eq!(unknown.get::<_, i64>(1), 0);
    assert_eq!(unknown.get::<_, i64>(2), 1, "only C91, seen in version 1 alone");
    assert_rollups_match_facts(&sc.schema.name).await;
    assert_shopper_views_agree(&sc.schema.name).await;
}

/// Every view over who shops and how adds up to the facts it splits, and
/// splits them by the dimension it names.
async fn assert_shopper_views_agree(schema: &str) {
    let s = schema.to_string();
    let row = blocking(move || {
        pg().query_one(
            &format!(
                "WITH facts AS (SELECT count(DISTINCT order_id) AS orders, sum(quantity)::bigint AS units,
                                       sum(net_amount) AS revenue FROM \"{s}\".fact_sales)
                 SELECT (SELECT (sum(orders), sum(units), sum(net_revenue))::text FROM \"{s}\".v_sales_by_device),
                        (SELECT (sum(orders), sum(units), sum(net_revenue))::text FROM \"{s}\".v_sales_by_channel),
                        (SELECT (sum(units), sum(net_revenue))::text FROM \"{s}\".v_sales_by_hour_of_day),
                        (SELECT (sum(units), sum(net_revenue))::text FROM \"{s}\".v_sales_by_weekday),
                        (SELECT (orders, units, revenue)::text FROM facts),
                        (SELECT (units, revenue)::text FROM facts),
                        (SELECT sum(customers)::bigint FROM \"{s}\".v_customers_by_gender_age),
                        (SELECT count(*) FROM \"{s}\".dim_customer),
                        (SELECT sum(net_revenue)::text FROM \"{s}\".v_sales_by_device WHERE device_type = 'mobile'),
                        (SELECT coalesce(sum(net_amount), 0)::text FROM \"{s}\".fact_sales WHERE device_key = 1),
                        (SELECT sum(units)::bigint FROM \"{s}\".v_sales_by_hour_of_day WHERE am_pm = 'AM'),
                        (SELECT coalesce(sum(quantity), 0)::bigint FROM \"{s}\".fact_sales
                           WHERE extract(hour FROM event_time AT TIME ZONE 'UTC') < 12),
                        (SELECT count(*) FROM \"{s}\".v_customers_by_gender_age WHERE age_band = '18-24')"
            ),
            &[],
        )
        .unwrap()
    })
    .await;
    let text = |i: usize| row.get::<_, String>(i);
    assert_eq!(text(0), text(4), "by device adds up");
    assert_eq!(text(1), text(4), "by channel adds up");
    assert_eq!(text(2), text(5), "by hour adds up");
    assert_eq!(text(3), text(5), "by weekday adds up");
    assert_eq!(
        row.get::<_, i64>(6),
        row.get::<_, i64>(7),
        "every customer in one band"
    );
    assert_eq!(text(8), text(9), "mobile is device key 1");
    assert_eq!(
        row.get::<_, i64>(10),
        row.get::<_, i64>(11),
        "AM is before noon UTC"
    );
    assert!(row.get::<_, i64>(12) > 0, "the generator's young shoppers");
}

/// Edit a JSON payload in place.
trait PipeJson {
    fn pipe_json(self, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8>;
}

impl PipeJson for Vec<u8> {
    fn pipe_json(self, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(&self).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }
}

/// A status change (schema version 2) of order `order` of customer `C{customer}`.
fn order_update(
    customer: u32,
    order: uuid::Uuid,
    kind: &str,
    time: &str,
    update: serde_json::Value,
) -> Vec<u8> {
    valid_page_view(customer).pipe_json(|v| {
        let fields = v.as_object_mut().unwrap();
        fields.remove("product");
        v["schema_version"] = 2.into();
        v["event_type"] = kind.into();
        v["event_time"] = format!("2026-11-30T{time}Z").into();
        v["customer"]["gender"] = "male".into();
        v["customer"]["birth_date"] = "1985-02-03".into();
        v["device"] = "laptop".into();
        v["channel"] = "direct".into();
        let mut update = update;
        update["order_id"] = order.to_string().into();
        v["order_update"] = update;
    })
}

/// Issue 16: `fact_order` holds each order's status exactly once whatever
/// the arrival order: a status event twice changes nothing, an older one
/// after a newer changes nothing, one that arrives before its order (another
/// partition) is applied when the order arrives, a cancellation before the
/// completion wins, and the revenue views split booked, completed, canceled,
/// refunded and net realised revenue.
#[tokio::test(flavor = "multi_thread")]
async fn order_status_changes_apply_exactly_once_whatever_their_order() {
    let sc = Scenario::new("w_orders", 2).await;
    let _w = sc.worker("w1");
    let order = |n: u128| uuid::Uuid::from_u128(0x0a0b_0000_0000_4000_8000_0000_0000_0000 + n);
    // Each purchase: one line, 2 units at 5.00 (10.00 booked).
    let purchase = |n: u128| {
        patched(
            &valid_purchase(60 + n as u32, 2, "5.00"),
            &[("/order/order_id", order(n).to_string().into())],
        )
    };
    let completed = |n: u128, t: &str| {
        order_update(
            60 + n as u32,
            order(n),
            "order_completed",
            t,
            serde_json::json!({}),
        )
    };
    let canceled = |n: u128, t: &str| {
        order_update(
            60 + n as u32,
            order(n),
            "order_canceled",
            t,
            serde_json::json!({"reason": "changed mind"}),
        )
    };
    let refund = order_update(
        61,
        order(1),
        "order_refunded",
        "10:40:00",
        serde_json::json!({"reason": "damaged", "refunds": [{"line_number": 1, "quantity": 1, "amount": "5.00"}]}),
    );
    let completed_3 = completed(3, "10:20:00");
    // Order 2's cancellation arrives on partition 1 before its purchase exists.
    tokio::task::block_in_place(|| produce_raw(&sc.topic, 1, &[(b"k", Some(&canceled(2, "10:10:00")))]));
    sc.wait_loaded(1).await;
    let p0: Vec<Vec<u8>> = vec![
        // 1: placed, refunded (arriving before its completion), completed; the refund again.
        purchase(1),
        refund.clone(),
        completed(1, "10:20:00"),
        refund.clone(),
        // 2: the purchase after its cancellation.
        purchase(2),
        // 3: completed, and the same completion again.
        purchase(3),
        completed_3.clone(),
        completed_3,
        // 4: placed only.
        purchase(4),
        // 5: canceled, then a stray completion after it: canceled stays.
        purchase(5),
        canceled(5, "10:10:00"),
        completed(5, "10:30:00"),
    ];
    let records: Vec<(&[u8], Option<&[u8]>)> = p0.iter().map(|r| (&b"k"[..], Some(r.as_slice()))).collect();
    tokio::task::block_in_place(|| produce_raw(&sc.topic, 0, &records));
    sc.wait_loaded(1 + p0.len() as u64).await;

    let s = sc.schema.name.clone();
    let (statuses, money, events, dead) = blocking(move || {
        let mut c = pg();
        let statuses: Vec<(String, String, String)> = c
            .query(
                &format!(
                    "SELECT order_id::text, status, refunded_amount::text FROM \"{s}\".fact_order ORDER BY order_id"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let money = c
            .query_one(
                &format!(
                    "SELECT (orders, pending_orders, completed_orders, canceled_orders, refunded_orders,
                             booked_revenue, completed_revenue, canceled_revenue, refunded_revenue,
                             net_realised_revenue)::text FROM \"{s}\".v_revenue_by_status"
                ),
                &[],
            )
            .unwrap()
            .get::<_, String>(0);
        let events = c
            .query_one(&format!("SELECT count(*) FROM \"{s}\".order_status_event"), &[])
            .unwrap()
            .get::<_, i64>(0);
        let dead = c
            .query_one(&format!("SELECT count(*) FROM \"{s}\".dead_letter"), &[])
            .unwrap()
            .get::<_, i64>(0);
        (statuses, money, events, dead)
    })
    .await;
    assert_eq!(dead, 0);
    let want: Vec<(String, String, String)> = [
        (1, "refunded", "5.00"),
        (2, "canceled", "0.00"),
        (3, "completed", "0.00"),
        (4, "pending", "0.00"),
        (5, "canceled", "0.00"),
    ]
    .iter()
    .map(|(n, st, amount)| (order(*n).to_string(), st.to_string(), amount.to_string()))
    .collect();
    assert_eq!(statuses, want);
    assert_eq!(
        events, 6,
        "each status event once: 2 cancels, 3 completions (one sent twice), 1 refund (sent twice)"
    );
    // 5 orders of 10.00: 1 pending, 2 completed (one refunded 5.00), 2 canceled.
    assert_eq!(money, "(5,1,2,2,1,50.00,20.00,20.00,5.00,15.00)");
}

/// Two workers, an order's purchase on one partition and its completion on
/// the other, loaded at the same time: the order ends completed. The test
/// holds the purchase's transaction open (it locks that partition's offset
/// row, which the batch updates last) while the completion is loaded: a
/// recomputation that cannot see the purchase's uncommitted lines must wait
/// for them rather than commit without them (without the per-order turns
/// the order stays pending for good).
#[tokio::test(flavor = "multi_thread")]
async fn an_order_and_its_completion_loaded_at_once_by_two_workers_end_completed() {
    let sc = Scenario::new("w_orders_race", 2).await;
    let _w1 = sc.worker("w1");
    let _w2 = sc.worker("w2");
    // Both workers hold a partition: a page view on each, until two owners
    // have advanced the offsets. The views are the customer's, as the
    // completion will tell it: both workers know it, and loading the
    // completion needs no customer upsert (which would wait on the
    // purchase's row lock and hide the race).
    let customer_view = || {
        valid_page_view(7).pipe_json(|v| {
            v["schema_version"] = 2.into();
            v["customer"]["gender"] = "male".into();
            v["customer"]["birth_date"] = "1985-02-03".into();
            v["device"] = "laptop".into();
            v["channel"] = "direct".into();
        })
    };
    let (topic, s) = (sc.topic.clone(), sc.schema.name.clone());
    let warmed = tokio::task::spawn_blocking(move || {
        let mut sent = 0_i64;
        let mut c = pg();
        let sql = format!(
            "SELECT count(DISTINCT owner), coalesce(sum(next_offset), 0)::bigint FROM \"{s}\".ingest_offsets"
        );
        wait_until(LOAD_TIMEOUT, || {
            let row = c.query_one(&sql, &[]).ok();
            let (owners, loaded) = row.map_or((0, 0), |r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
            if loaded < sent {
                return false;
            }
            if owners == 2 {
                return true; // and nothing left to load
            }
            for p in 0..2 {
                produce_raw(&topic, p, &[(b"k", Some(&customer_view()))]);
            }
            sent += 2;
            false
        });
        sent as u64
    })
    .await
    .unwrap();
    let order = uuid::Uuid::from_u128(0x0c0d_0000_0000_4000_8000_0000_0000_0001);
    let purchase = patched(
        &valid_purchase(7, 1, "3.00"),
        &[("/order/order_id", order.to_string().into())],
    );
    let completion = order_update(7, order, "order_completed", "10:20:00", serde_json::json!({}));
    let (topic, s) = (sc.topic.clone(), sc.schema.name.clone());
    tokio::task::spawn_blocking(move || {
        let mut holder = pg();
        let mut watch = pg();
        let mut tx = holder.transaction().unwrap();
        tx.execute(
            &format!("SELECT 1 FROM \"{s}\".ingest_offsets WHERE kafka_partition = 0 FOR UPDATE"),
            &[],
        )
        .unwrap();
        // A backend of this schema's workers waiting on a lock, running `like`.
        let waiting = |c: &mut postgres::Client, like: &str| -> bool {
            c.query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                &[&like],
            )
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
        };
        let offset_update = format!("%UPDATE \"{s}\".\"ingest_offsets\"%");
        produce_raw(&topic, 0, &[(b"k", Some(&purchase))]);
        // The purchase's batch is written and waits to advance its offset.
        wait_until(LOAD_TIMEOUT, || waiting(&mut watch, &offset_update));
        produce_raw(&topic, 1, &[(b"k", Some(&completion))]);
        // The completion's batch either committed (partition 1 advanced) or
        // waits for the purchase's transaction.
        let p1 = format!("SELECT next_offset FROM \"{s}\".ingest_offsets WHERE kafka_partition = 1");
        let before: i64 = watch.query_one(&p1, &[]).unwrap().get(0);
        wait_until(LOAD_TIMEOUT, || {
            waiting(&mut watch, "%pg_advisory_xact_lock%")
                || watch
                    .query_one(&p1, &[])
                    .map(|r| r.get::<_, i64>(0) > before)
                    .unwrap_or(false)
        });
        tx.rollback().unwrap();
    })
    .await
    .unwrap();
    sc.wait_loaded(warmed + 2).await;
    let s = sc.schema.name.clone();
    let status: String = blocking(move || {
        pg().query_one(&format!("SELECT status FROM \"{s}\".fact_order"), &[])
            .unwrap()
            .get(0)
    })
    .await;
    assert_eq!(status, "completed");
}

/// Run `statements` as the role of `url`; each must be refused for want of
/// privilege (SQLSTATE 42501), not for any other reason.
fn assert_refused(url: &str, statements: &[String]) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    for sql in statements {
        let err = c.batch_execute(sql).expect_err(sql);
        assert_eq!(
            err.code(),
            Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err:?}"
        );
    }
}

/// Least privilege: the schema's owner migrates and grants in one
/// `--migrate-only` run (the worker pods' init container); the workers then
/// load as a role with DML only, exactly as the superuser would, and can
/// neither change the schema nor forge a migration; the reader only reads.
#[tokio::test(flavor = "multi_thread")]
async fn workers_load_exactly_as_a_role_with_only_the_loader_grants() {
    let sc = Scenario::new("w_roles", 2).await;
    let s = sc.schema.name.clone();
    let roles = WarehouseRoles::create(&s);
    let url = |role: &str| database_url_as(role, &WarehouseRoles::password(role), "127.0.0.1", "");
    let (migrator_url, loader_url, reader_url) =
        (url(&roles.migrator), url(&roles.loader), url(&roles.reader));
    let worker = env!("CARGO_BIN_EXE_shopstream-worker");
    let run = move |args: Vec<String>| {
        blocking(move || {
            Command::new(worker)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("RUST_LOG", "info")
                .args(args)
                .output()
                .unwrap()
        })
    };

    // The loader cannot create the schema: it is told who must.
    let out = run(vec![
        "--database-url".into(),
        loader_url.clone(),
        "--schema".into(),
        s.clone(),
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("may not migrate schema")
            && err.contains("--migrate-only")
            && err.contains("permission denied"),
        "{err}"
    );

    // The owner migrates and grants; then, as every worker pod's init
    // container does at once, four more runs find the schema current and
    // grant again side by side.
    let migrate_only = vec![
        "--migrate-only".to_string(),
        "--database-url".into(),
        migrator_url.clone(),
        "--schema".into(),
        s.clone(),
        "--grant-loader".into(),
        loader_url.clone(),
        "--grant-reader".into(),
        roles.reader.clone(),
    ];
    let mut outs = vec![run(migrate_only.clone()).await];
    let together: Vec<_> = (0..4).map(|_| tokio::spawn(run(migrate_only.clone()))).collect();
    for handle in together {
        outs.push(handle.await.unwrap());
    }
    for out in outs {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("schema current"), "{err}");
        for role in [&roles.loader, &roles.migrator] {
            assert!(
                !err.contains(&WarehouseRoles::password(role)),
                "no password in the log: {err}"
            );
        }
    }

    let summary = sc.produce(20_000, 0, LIFECYCLE).await;
    let _w1 = sc.worker_with("w1", &["--database-url", &loader_url]);
    let _w2 = sc.worker_with("w2", &["--database-url", &loader_url]);
    sc.wait_loaded(summary.messages_total).await;
    assert_eq!(sc.totals().await, expected(&summary, 1));
    assert_rollups_match_facts(&s).await;

    let (loader, reader, owner) = (loader_url.clone(), reader_url.clone(), roles.migrator.clone());
    let facts: i64 = blocking(move || {
        assert_refused(
            &loader,
            &[
                format!("CREATE TABLE \"{s}\".intruder (a int)"),
                format!("ALTER TABLE \"{s}\".fact_sales ADD COLUMN intruder int"),
                format!("DROP TABLE \"{s}\".dead_letter"),
                format!("TRUNCATE \"{s}\".fact_sales"),
                format!("INSERT INTO \"{s}\".schema_migrations (version, name, checksum) VALUES (99, 'forged', 'x')"),
                format!("DELETE FROM \"{s}\".schema_migrations"),
                format!("SELECT \"{s}\".grant_reader('{owner}')"),
                format!("CREATE SCHEMA \"{s}_intruder\""),
            ],
        );
        assert_refused(
            &reader,
            &[
                format!("INSERT INTO \"{s}\".dead_letter (topic) VALUES ('x')"),
                format!("DELETE FROM \"{s}\".fact_sales"),
                format!("UPDATE \"{s}\".ingest_offsets SET next_offset = 0"),
                format!("CREATE TABLE \"{s}\".intruder (a int)"),
            ],
        );
        postgres::Client::connect(&reader, postgres::NoTls)
            .unwrap()
            .query_one(&format!("SELECT count(*) FROM \"{s}\".fact_sales"), &[])
            .unwrap()
            .get(0)
    })
    .await;
    assert_eq!(facts, summary.order_lines as i64, "the reader sees every fact");
    drop((_w1, _w2));
    drop(roles);
}
