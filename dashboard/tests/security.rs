//! Least privilege on the reading side: the dashboard serves from a role that
//! may only read, its own sessions are read-only besides, and a token (when
//! set) guards the page and the API but not the probes.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use shopstream_common::pg::DbSettings;
use shopstream_testkit::{database_ca_file, database_url, database_url_via, foreign_ca_pem, pg, unique};
use support::{dashboard, dashboard_with, filled, get_json};

/// One GET with extra header lines; returns (status, head, body).
fn request(base: &str, path: &str, headers: &[String]) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: dashboard\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (
        raw[9..12].parse().unwrap(),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_role_serves_every_panel_and_can_neither_write_nor_change_the_schema() {
    let w = filled("dash_reader", 1_500).await;
    let s = w.schema.name.clone();
    let role = unique("reader").replace('-', "_");
    let url = database_url();
    let reader_url = url.replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(reader_url, url, "the test database URL names the postgres user");
    tokio::task::spawn_blocking({
        let (s, role) = (s.clone(), role.clone());
        move || {
            pg().batch_execute(&format!(
                "CREATE ROLE {role} LOGIN; SELECT {s}.grant_reader('{role}')"
            ))
            .unwrap()
        }
    })
    .await
    .unwrap();

    let (_owner, owner_base) = dashboard(&s, &url);
    // The reader's dashboard also verifies the server (TLS, verify-full).
    let reader_tls_url = database_url_via("localhost", "sslmode=verify-full").replacen(
        "://postgres@",
        &format!("://{role}@"),
        1,
    );
    let ca = database_ca_file();
    let (_reader, reader_base) = dashboard_with(&s, &reader_tls_url, &["--database-ca-file", &ca]);
    for path in [
        "/api/summary?range=all",
        "/api/products/top?range=all",
        "/api/customers/profile?range=all",
        "/api/orders/status?range=all&country=US",
        "/api/orders/lines?range=all",
        "/api/freshness",
    ] {
        let (mut a, mut b) = (get_json(&owner_base, path), get_json(&reader_base, path));
        // Freshness carries the time of the answer; everything else must match.
        for v in [&mut a, &mut b] {
            if let Some(o) = v.as_object_mut() {
                o.remove("now");
            }
        }
        assert_eq!(a, b, "{path}: the reader sees what the owner sees");
    }

    let (s2, role2) = (s.clone(), role.clone());
    tokio::task::spawn_blocking(move || {
        let mut reader = postgres::Client::connect(&reader_url, postgres::NoTls).unwrap();
        let n: i64 = reader
            .query_one(&format!("SELECT count(*) FROM {s2}.fact_sales"), &[])
            .unwrap()
            .get(0);
        assert!(n > 0);
        for (what, sql) in [
            ("insert", format!("INSERT INTO {s2}.dead_letter (payload, error, topic, kafka_partition, kafka_offset) VALUES ('x', 'x', 'x', 0, 0)")),
            ("delete", format!("DELETE FROM {s2}.fact_sales")),
            ("ddl", format!("CREATE TABLE {s2}.intruder (x int)")),
            ("grant", format!("SELECT {s2}.grant_reader('{role2}')")),
        ] {
            let e = reader.batch_execute(&sql).expect_err(what);
            assert_eq!(sqlstate(&e), "42501", "{what}: permission denied, got {e}");
        }
        pg().batch_execute(&format!("DROP OWNED BY {role2}; DROP ROLE {role2}")).unwrap();
    })
    .await
    .unwrap();
}

/// The dashboard's pool with `sslmode=verify-full`: TLS to the server its
/// CA vouches for under the name dialled; a wrong CA or host is refused with
/// the reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_pool_verifies_the_warehouse_certificate_and_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong, foreign_ca_pem()).unwrap();
    let wrong = wrong.display().to_string();
    let ca = database_ca_file();
    // (host, CA, what the error says; empty: it connects)
    let cases = [
        ("localhost", ca.as_str(), ""),
        ("localhost", wrong.as_str(), "certificate verify failed"),
        ("127.0.0.1", ca.as_str(), "ip address mismatch"),
    ];
    for (host, ca, needle) in cases {
        let url = database_url_via(host, "sslmode=verify-full");
        let settings = DbSettings::parse(&url, "tls-test", Some(ca.to_string())).unwrap();
        let pool = shopstream_dashboard::pool(&settings, Duration::from_secs(5)).unwrap();
        match pool.get().await {
            Ok(client) => {
                assert_eq!(needle, "", "{host} with {ca} connected");
                let row = client
                    .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
                    .await
                    .unwrap();
                assert!(row.get::<_, bool>(0), "the session is encrypted");
            }
            Err(e) => {
                let text = shopstream_common::error::chain(&e).to_lowercase();
                assert!(
                    !needle.is_empty() && text.contains(needle),
                    "{host} with {ca}: {text}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboards_own_sessions_are_read_only() {
    let settings = DbSettings::parse(&database_url(), "security-test", None).unwrap();
    let pool = shopstream_dashboard::pool(&settings, Duration::from_secs(5)).unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "on");
    let table = unique("ro_probe").replace('-', "_");
    let e = client
        .batch_execute(&format!("CREATE TABLE public.{table} (x int)"))
        .await
        .expect_err("a read-only session refuses DDL");
    assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_guards_the_page_and_the_api_but_not_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tok-3f9a\n").unwrap();
    let (_d, base) = dashboard_with(
        "no_such_schema",
        &database_url(),
        &["--auth-token-file", token_file.to_str().unwrap()],
    );
    use base64::Engine;
    let basic = |s: &str| {
        format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };

    let (status, head, body) = request(&base, "/", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(
        head.contains("www-authenticate: basic realm=\"shopstream\""),
        "{head}"
    );
    assert!(!body.contains("tok-3f9a"));
    for bad in ["Bearer tok-3f9", "Bearer tok-3f9a0", "Bearer", "tok-3f9a"] {
        let header = format!("Authorization: {bad}");
        assert_eq!(request(&base, "/api/config", &[header]).0, 401, "{bad}");
    }
    assert_eq!(request(&base, "/api/config", &[basic("me:wrong")]).0, 401);

    let (status, head, page) = request(&base, "/", &["Authorization: Bearer tok-3f9a".into()]);
    assert_eq!(status, 200);
    assert!(page.contains("<canvas"));
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    let (status, _, body) = request(&base, "/api/config", &[basic("anyone:tok-3f9a")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(request(&base, "/assets/app.js", &[basic(":tok-3f9a")]).0, 200);

    // Probes and scrapers carry no token.
    assert_eq!(request(&base, "/metrics", &[]).0, 200);
    assert_eq!(request(&base, "/healthz", &[]).0, 200);
    assert_eq!(
        request(&base, "/readyz", &[]).0,
        503,
        "not ready (no such schema), but not 401"
    );

    // An empty token file is refused at start, not taken as "no token".
    std::fs::write(&token_file, "\n").unwrap();
    let out = std::process::Command::new(support::bin("shopstream-dashboard"))
        .args([
            "--auth-token-file",
            token_file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("SHOPSTREAM_DATABASE_URL", database_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is empty"), "{stderr}");
}
