//! The generator against the real broker: what lands on the topic must
//! reproduce the audit exactly. Each test uses its own topic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
use shopstream_generator::invalid::InvalidKind;
use shopstream_generator::summary::{self, StopReason, Summary};
use shopstream_model::summary::Orders;
use shopstream_model::{EventType, parse_event};
use shopstream_testkit::{
    ChildGuard, Record, brokers, create_topic, drain_topic, http_get, unique, wait_until,
};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

fn generator() -> Command {
    generator_at(&brokers())
}

fn generator_at(brokers: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopstream-generator"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .args(["--brokers", brokers]);
    cmd
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run generator");
    assert!(
        out.status.success(),
        "generator failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Totals recomputed independently from the records on the topic.
#[derive(Debug, Default, PartialEq)]
struct Recount {
    by_type: BTreeMap<String, u64>,
    order_lines: u64,
    units: i64,
    gross: Decimal,
    discount: Decimal,
    invalid_by_kind: BTreeMap<String, u64>,
    event_ids: Vec<uuid::Uuid>,
    order_ids: Vec<uuid::Uuid>,
    orders: Orders,
}

fn recount(records: &[Record]) -> Recount {
    let by_error: HashMap<_, _> = InvalidKind::ALL
        .iter()
        .map(|k| (k.expected_error(), *k))
        .collect();
    let mut r = Recount::default();
    // Per order: its booked amount, then its status events in topic order.
    let mut lives: HashMap<uuid::Uuid, (Decimal, Vec<(EventType, Decimal)>)> = HashMap::new();
    let mut records: Vec<&Record> = records.iter().collect();
    records.sort_by_key(|r| (r.partition, r.offset));
    for rec in records {
        let payload = rec.payload.as_deref().expect("every message has a value");
        let key = rec.key.as_deref().expect("every message has a key");
        match parse_event(payload) {
            Ok(e) => {
                assert_eq!(key, e.customer.customer_id.as_bytes(), "key is the customer id");
                *r.by_type.entry(e.event_type.as_str().to_string()).or_default() += 1;
                r.event_ids.push(e.event_id);
                if let Some(o) = &e.order {
                    r.order_lines += o.lines.len() as u64;
                    r.units += o.units();
                    r.gross += o.gross();
                    r.discount += o.discount();
                    r.order_ids.push(o.order_id);
                    lives.insert(o.order_id, (o.gross() - o.discount(), Vec::new()));
                }
                if let Some(u) = &e.order_update {
                    let (_, steps) = lives
                        .get_mut(&u.order_id)
                        .expect("a status event comes after its purchase, on the same partition");
                    steps.push((e.event_type, u.refunded_amount()));
                }
            }
            Err(err) => {
                let kind = by_error[&err.kind()];
                *r.invalid_by_kind.entry(kind.as_str().to_string()).or_default() += 1;
            }
        }
    }
    for (booked, steps) in lives.values() {
        let o = &mut r.orders;
        o.placed += 1;
        match steps.as_slice() {
            [] => o.pending += 1,
            [(EventType::OrderCanceled, _)] => {
                o.canceled += 1;
                o.canceled_amount += booked;
            }
            [(EventType::OrderCompleted, _)] => o.completed += 1,
            [(EventType::OrderCompleted, _), (EventType::OrderRefunded, amount)] => {
                o.refunded += 1;
                o.refunded_amount += amount;
            }
            other => panic!("an order's events went {other:?}"),
        }
    }
    r
}

fn nonzero(m: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    m.iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn assert_matches_summary(r: &Recount, s: &Summary) {
    assert_eq!(nonzero(&r.by_type), nonzero(&s.events_by_type), "events by type");
    assert_eq!(r.by_type.values().sum::<u64>(), s.events_total);
    assert_eq!(r.order_lines, s.order_lines, "order lines");
    assert_eq!(r.units, s.units, "units");
    assert_eq!(r.gross, s.gross_revenue, "gross revenue");
    assert_eq!(r.discount, s.discount_total, "discounts");
    assert_eq!(r.gross - r.discount, s.net_revenue, "net revenue");
    assert_eq!(
        nonzero(&r.invalid_by_kind),
        nonzero(&s.invalid_by_kind),
        "invalid by kind"
    );
    assert_eq!(r.invalid_by_kind.values().sum::<u64>(), s.invalid_total);
    assert_eq!(
        r.orders, s.orders,
        "orders by final status, canceled and refunded amounts"
    );
    assert_eq!(s.delivery_failures, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_topic_reproduces_every_number_in_the_summary() {
    let topic = unique("gen_audit");
    create_topic(&topic, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    run_ok(
        generator()
            .args([
                "--topic",
                &topic,
                "--total",
                "20000",
                "--rate",
                "10000",
                "--invalid-ratio",
                "0.02",
            ])
            // Short lives, so orders reach every status within the run.
            .args(["--cancel-ratio", "0.2", "--refund-ratio", "0.5"])
            .args([
                "--cancel-after",
                "100ms",
                "--complete-after",
                "200ms",
                "--refund-after",
                "200ms",
            ])
            .args(["--seed", "7", "--instance", "audit"])
            .arg("--summary-file")
            .arg(&summary_path),
    );
    let summary = summary::read(&summary_path).unwrap();
    assert_eq!(summary.messages_total, 20_000);
    assert_eq!(summary.stopped_by, StopReason::Total);
    // 2% of 20k, give or take sampling noise.
    assert!(
        (250..=550).contains(&summary.invalid_total),
        "invalid {}",
        summary.invalid_total
    );
    assert!(
        InvalidKind::ALL
            .iter()
            .all(|k| summary.invalid_by_kind[k.as_str()] > 0)
    );
    assert!(summary.order_lines > 0 && summary.discount_total > Decimal::ZERO);
    let o = &summary.orders;
    assert!(
        o.pending > 0 && o.completed > 0 && o.canceled > 0 && o.refunded > 0,
        "every status: {o:?}"
    );
    assert!(o.canceled_amount > Decimal::ZERO && o.refunded_amount > Decimal::ZERO);

    let records = tokio::task::spawn_blocking(move || drain_topic(&topic, DRAIN_TIMEOUT))
        .await
        .unwrap();
    assert_eq!(records.len(), 20_000);
    let r = recount(&records);
    assert_matches_summary(&r, &summary);
    let ids: HashSet<_> = r.event_ids.iter().collect();
    assert_eq!(ids.len(), r.event_ids.len(), "event ids are unique");
    let orders: HashSet<_> = r.order_ids.iter().collect();
    assert_eq!(orders.len(), r.order_ids.len(), "order ids are unique");
    let partitions: HashSet<_> = records.iter().map(|r| r.partition).collect();
    assert_eq!(partitions.len(), 4, "keys spread over all partitions");
}

/// Valid events without their timestamps, sorted by id.
fn events_without_time_or_device(records: &[Record]) -> Vec<Value> {
    let mut out: Vec<Value> = records
        .iter()
        .filter_map(|r| {
            let p = r.payload.as_deref()?;
            parse_event(p).ok()?;
            let mut v: Value = serde_json::from_slice(p).ok()?;
            let fields = v.as_object_mut()?;
            fields.remove("event_time");
            // Drawn by the hour of the event time: two runs astride an hour may differ.
            fields.remove("device");
            Some(v)
        })
        .collect();
    out.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn same_seed_and_instance_give_the_same_events_and_instances_never_share_ids() {
    let (t1, t2, t3) = (unique("gen_seed_a"), unique("gen_seed_b"), unique("gen_seed_c"));
    for t in [&t1, &t2, &t3] {
        create_topic(t, 2).await;
    }
    let produce = |topic: &str, instance: &str| {
        run_ok(generator().args([
            "--topic",
            topic,
            "--total",
            "3000",
            "--rate",
            "0",
            "--seed",
            "11",
            "--instance",
            instance,
            "--invalid-ratio",
            "0.05",
        ]));
    };
    produce(&t1, "gen-0");
    produce(&t2, "gen-0");
    produce(&t3, "gen-1");
    let (a, b, c) = tokio::task::spawn_blocking(move || {
        (
            drain_topic(&t1, DRAIN_TIMEOUT),
            drain_topic(&t2, DRAIN_TIMEOUT),
            drain_topic(&t3, DRAIN_TIMEOUT),
        )
    })
    .await
    .unwrap();
    let (ea, eb, ec) = (
        events_without_time_or_device(&a),
        events_without_time_or_device(&b),
        events_without_time_or_device(&c),
    );
    assert!(ea.len() > 2_500);
    assert_eq!(ea, eb, "same seed and instance: same events");
    assert_eq!(recount(&a).invalid_by_kind, recount(&b).invalid_by_kind);

    let (ra, rc) = (recount(&a), recount(&c));
    let ids_a: HashSet<_> = ra.event_ids.iter().collect();
    assert!(
        rc.event_ids.iter().all(|id| !ids_a.contains(id)),
        "event ids disjoint"
    );
    let orders_a: HashSet<_> = ra.order_ids.iter().collect();
    assert!(
        rc.order_ids.iter().all(|id| !orders_a.contains(id)),
        "order ids disjoint"
    );
    // ...but they sell to the same customers: the world depends on the seed only.
    let customers = |events: &[Value]| -> HashMap<String, Value> {
        events
            .iter()
            .map(|e| {
                (
                    e["customer"]["customer_id"].as_str().unwrap().to_string(),
                    e["customer"].clone(),
                )
            })
            .collect()
    };
    let (ca, cc) = (customers(&ea), customers(&ec));
    let shared: Vec<_> = ca.keys().filter(|k| cc.contains_key(*k)).collect();
    assert!(!shared.is_empty());
    assert!(
        shared.iter().all(|k| ca[*k] == cc[*k]),
        "a customer looks the same to every instance"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_produces_its_integral_and_stops() {
    let topic = unique("gen_profile");
    create_topic(&topic, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.yaml");
    std::fs::write(
        &profile,
        "stages:\n  - {durationSeconds: 1, eventsPerSecond: 500}\n  - {durationSeconds: 1, eventsPerSecond: 1500, ramp: true}\n",
    )
    .unwrap();
    let summary_path = dir.path().join("summary.json");
    run_ok(
        generator()
            .args(["--topic", &topic])
            .arg("--profile")
            .arg(&profile)
            .arg("--summary-file")
            .arg(&summary_path),
    );
    let s = summary::read(&summary_path).unwrap();
    assert_eq!(s.stopped_by, StopReason::Profile);
    // 500 + (500 + 1500) / 2 = 1500 events; floor() may leave the last one.
    assert!(
        (1_499..=1_500).contains(&s.messages_total),
        "{}",
        s.messages_total
    );
}

fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_writes_a_summary_of_exactly_what_was_delivered_and_metrics_are_served() {
    let topic = unique("gen_sigterm");
    create_topic(&topic, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = ChildGuard::spawn(
        "generator",
        generator()
            .args([
                "--topic",
                &topic,
                "--rate",
                "3000",
                "--invalid-ratio",
                "0.01",
                "--metrics-addr",
                &addr,
            ])
            .arg("--summary-file")
            .arg(&summary_path)
            .stderr(Stdio::null()),
    );
    let series = "shopstream_generator_events_total{event_type=\"page_view\"}";
    let probe = addr.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), || {
            http_get(&probe, "/metrics").is_some_and(|m| counter(&m, series) >= 1_000.0)
        })
    })
    .await
    .unwrap();
    let health = http_get(&addr, "/healthz").unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = http_get(&addr, "/metrics").unwrap();
    assert_eq!(counter(&metrics, "shopstream_generator_target_rate"), 3000.0);

    child.signal("TERM");
    let status = child.wait_timeout(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let s = summary::read(&summary_path).unwrap();
    assert_eq!(s.stopped_by, StopReason::Signal);
    let records = tokio::task::spawn_blocking(move || drain_topic(&topic, DRAIN_TIMEOUT))
        .await
        .unwrap();
    assert_eq!(records.len() as u64, s.messages_total);
    assert_matches_summary(&recount(&records), &s);
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_flags_print_usage_and_exit_2() {
    let out = generator().args(["--rate", "fast"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("invalid value 'fast'") && err.contains("Usage:"),
        "{err}"
    );

    let out = generator().env("SHOPSTREAM_INVALID_RATIO", "2").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "env vars are validated like flags");
    assert!(stderr_of(&out).contains("between 0 and 1"));
}

#[test]
fn an_unreachable_broker_or_missing_topic_is_a_clear_error() {
    let out = generator_at("127.0.0.1:1")
        .args(["--connect-timeout", "2s", "--total", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("cannot reach Kafka at 127.0.0.1:1"),
        "{}",
        stderr_of(&out)
    );

    let missing = unique("gen_missing");
    let out = generator()
        .args(["--topic", &missing, "--total", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("does not exist"), "{}", stderr_of(&out));
}

#[test]
fn a_bad_profile_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, "stages:\n  - {durationSeconds: 0, eventsPerSecond: 5}\n").unwrap();
    let out = generator().arg("--profile").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("stages[0].durationSeconds"),
        "{}",
        stderr_of(&out)
    );
    let out = generator()
        .arg("--profile")
        .arg(Path::new("/nonexistent.yaml"))
        .output()
        .unwrap();
    assert!(stderr_of(&out).contains("cannot read load profile"));
}
