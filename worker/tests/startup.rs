//! Start-up behaviour: migrations under concurrency and drift, a warehouse
//! that is not there yet, and bad flags.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use shopstream_model::SchemaName;
use shopstream_testkit::{ChildGuard, TestSchema, free_addr, http_get, pg, wait_until};
use shopstream_worker::migrate::{MIGRATIONS, MigrateError, migrate};

#[test]
fn concurrent_workers_migrate_a_schema_once() {
    let schema = TestSchema::new("mig_race");
    let name = SchemaName::parse(&schema.name).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let name = name.clone();
            std::thread::spawn(move || migrate(&mut pg(), &name).expect("migrates"))
        })
        .collect();
    let applied: Vec<Vec<i32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        applied.iter().filter(|a| **a == all).count(),
        1,
        "exactly one applied them: {applied:?}"
    );
    assert!(applied.iter().filter(|a| a.is_empty()).count() == 3);

    let mut c = pg();
    let q = |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    let s = &schema.name;
    assert_eq!(
        q(&mut c, &format!("SELECT count(*) FROM \"{s}\".schema_migrations")),
        all.len() as i64
    );
    assert_eq!(q(&mut c, &format!("SELECT count(*) FROM \"{s}\".dim_time")), 1440);
    assert_eq!(
        q(&mut c, &format!("SELECT count(*) FROM \"{s}\".dim_date")),
        36_525
    );
    assert_eq!(
        q(
            &mut c,
            &format!("SELECT count(*) FROM \"{s}\".dim_date WHERE is_weekend AND day_of_week < 6")
        ),
        0
    );
    assert!(migrate(&mut c, &name).unwrap().is_empty(), "idempotent");
}

#[test]
fn an_edited_or_newer_migration_is_refused() {
    let schema = TestSchema::new("mig_drift");
    let name = SchemaName::parse(&schema.name).unwrap();
    let mut c = pg();
    migrate(&mut c, &name).unwrap();
    c.execute(
        &format!(
            "UPDATE \"{}\".schema_migrations SET checksum = 'edited' WHERE version = 1",
            schema.name
        ),
        &[],
    )
    .unwrap();
    let err = migrate(&mut c, &name).unwrap_err();
    assert!(matches!(err, MigrateError::Checksum { version: 1, .. }), "{err}");

    let schema2 = TestSchema::new("mig_new");
    let name2 = SchemaName::parse(&schema2.name).unwrap();
    migrate(&mut c, &name2).unwrap();
    c.execute(
        &format!(
            "INSERT INTO \"{}\".schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')",
            schema2.name
        ),
        &[],
    )
    .unwrap();
    let err = migrate(&mut c, &name2).unwrap_err();
    assert!(err.to_string().contains("upgrade the worker"), "{err}");
}

fn worker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopstream-worker"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn without_a_warehouse_it_waits_unready_and_still_stops_promptly() {
    let addr = free_addr();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut w = ChildGuard::spawn(
        "worker",
        worker()
            .env(
                "SHOPSTREAM_DATABASE_URL",
                "postgres://app:s3cret-pw@127.0.0.1:1/warehouse",
            )
            .args(["--metrics-addr", &addr, "--schema", "never_created"])
            .stderr(Stdio::from(log.reopen().unwrap())),
    );
    wait_until(Duration::from_secs(20), || {
        http_get(&addr, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 503") && r.contains("migrations"))
    });
    assert!(
        http_get(&addr, "/healthz").unwrap().starts_with("HTTP/1.1 200"),
        "alive while waiting"
    );
    w.signal("TERM");
    assert!(w.wait_timeout(Duration::from_secs(10)).success());
    let mut text = String::new();
    log.reopen().unwrap().read_to_string(&mut text).unwrap();
    assert!(text.contains("warehouse unreachable at start-up"), "{text}");
    assert!(
        text.contains("app@127.0.0.1:1/warehouse"),
        "the target is named: {text}"
    );
    assert!(!text.contains("s3cret-pw"), "credentials never reach the logs");
}

#[test]
fn bad_flags_are_usage_errors_without_echoing_secrets() {
    let out = worker()
        .env("SHOPSTREAM_DATABASE_URL", "postgres://x@h/db")
        .args(["--schema", "Robert'); DROP TABLE"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid schema name") && err.contains("Usage:"),
        "{err}"
    );

    let out = worker()
        .env("SHOPSTREAM_DATABASE_URL", "postgres://u:topsecret@h:notaport/db")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid database URL"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
}

/// TLS to the warehouse with `sslmode=verify-full` and the CA file: the
/// server's certificate (for `localhost`, from the CA dev-deps.sh made) is
/// accepted; a wrong CA or a host name the certificate does not name is
/// refused with the reason, before anything is sent.
#[test]
fn verify_full_accepts_the_warehouse_and_refuses_a_wrong_ca_or_host() {
    let schema = TestSchema::new("w_tls");
    let wrong_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong_ca.path(), shopstream_testkit::foreign_ca_pem()).unwrap();
    let ca = shopstream_testkit::database_ca_file();
    let wrong = wrong_ca.path().display().to_string();
    let run = |host: &str, ca: &str| {
        worker()
            .env("RUST_LOG", "info")
            .env(
                "SHOPSTREAM_DATABASE_URL",
                shopstream_testkit::database_url_via(host, "sslmode=verify-full"),
            )
            .args([
                "--migrate-only",
                "--schema",
                &schema.name,
                "--database-ca-file",
                ca,
            ])
            .output()
            .unwrap()
    };
    // (host, CA, succeeds, what the error says)
    let cases = [
        ("localhost", ca.as_str(), true, ""),
        ("localhost", wrong.as_str(), false, "certificate verify failed"),
        ("127.0.0.1", ca.as_str(), false, "ip address mismatch"),
    ];
    for (host, ca, ok, needle) in cases {
        let out = run(host, ca);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{host} with {ca}: {err}");
        assert!(
            err.to_lowercase().contains(needle) && (ok || err.contains("cannot connect to PostgreSQL")),
            "{host} with {ca}: {err}"
        );
    }
    // The connection that succeeded used TLS: the schema it migrated exists.
    let exists: bool = pg()
        .query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&schema.name])
        .unwrap()
        .get(0);
    assert!(exists);
}
