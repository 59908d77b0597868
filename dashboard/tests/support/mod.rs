//! A warehouse filled by the real generator and worker, and a dashboard on it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use shopstream_generator::summary::Summary;
use shopstream_testkit::{
    ChildGuard, TestSchema, brokers, create_topic, database_url, http_get, pg, unique, wait_until,
};

pub fn bin(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_shopstream-dashboard"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{name} is not built; run `cargo build --workspace` (scripts/test.sh does)"
    );
    path
}

pub struct Warehouse {
    pub schema: TestSchema,
    pub summary: Summary,
    _worker: ChildGuard,
}

/// Produce `events` events (1% invalid) and load them with a worker.
pub async fn filled(prefix: &str, events: u64) -> Warehouse {
    let topic = unique(prefix);
    create_topic(&topic, 3).await;
    let schema = TestSchema::new(prefix);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    let (b, total) = (brokers(), events.to_string());
    let cli = <shopstream_generator::Cli as clap::Parser>::try_parse_from([
        "shopstream-generator",
        "--brokers",
        &b,
        "--topic",
        &topic,
        "--rate",
        "0",
        "--total",
        &total,
        "--invalid-ratio",
        "0.01",
        // Every order takes its next step at once: all statuses appear.
        "--cancel-ratio",
        "0.2",
        "--refund-ratio",
        "0.4",
        "--cancel-after",
        "0s",
        "--complete-after",
        "0s",
        "--refund-after",
        "0s",
        // Every event inside the windows the tests read.
        "--late-ratio",
        "0",
        "--instance",
        "dash",
        "--progress-interval",
        "1h",
        "--summary-file",
        path.to_str().unwrap(),
    ])
    .unwrap();
    let outcome = shopstream_generator::run(cli).await.unwrap();
    assert!(outcome.succeeded());
    let summary = shopstream_generator::summary::read(&path).unwrap();
    let worker = ChildGuard::spawn(
        "worker",
        Command::new(bin("shopstream-worker"))
            .env("SHOPSTREAM_DATABASE_URL", database_url())
            .args(["--brokers", &b, "--topic", &topic, "--schema", &schema.name])
            .stderr(std::process::Stdio::null()),
    );
    let (sql, want) = (
        format!(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM \"{}\".ingest_offsets",
            schema.name
        ),
        summary.messages_total as i64,
    );
    tokio::task::spawn_blocking(move || {
        let mut c = pg();
        wait_until(Duration::from_secs(120), || {
            c.query_one(&sql, &[]).map(|r| r.get::<_, i64>(0)).unwrap_or(0) == want
        });
    })
    .await
    .unwrap();
    Warehouse {
        schema,
        summary,
        _worker: worker,
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A dashboard on `schema` via `database_url`; returns it and its base URL.
pub fn dashboard(schema: &str, database_url: &str) -> (ChildGuard, String) {
    dashboard_with(schema, database_url, &[])
}

/// The same with extra flags.
pub fn dashboard_with(schema: &str, database_url: &str, extra: &[&str]) -> (ChildGuard, String) {
    let port = free_port();
    let child = ChildGuard::spawn(
        "dashboard",
        Command::new(bin("shopstream-dashboard"))
            .env("SHOPSTREAM_DATABASE_URL", database_url)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--schema",
                schema,
                "--refresh-seconds",
                "2",
            ])
            .args(extra)
            .stderr(std::process::Stdio::null()),
    );
    let base = format!("http://127.0.0.1:{port}");
    let probe = format!("127.0.0.1:{port}");
    wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(&probe).is_ok()
    });
    (child, base)
}

/// GET a path; returns (status, body).
pub fn get(base: &str, path: &str) -> (u16, String) {
    let raw = http_get(base.trim_start_matches("http://"), path)
        .unwrap_or_else(|| panic!("the dashboard at {base} answers"));
    let status = raw[9..12].parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn get_json(base: &str, path: &str) -> serde_json::Value {
    let (status, body) = get(base, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}
