//! Least privilege end to end with the local runtime: a Pipeline whose
//! workers load as a DML-only role, whose migrations run as the schema's
//! owner in the workers' init container, whose dashboard reads as a
//! SELECT-only role behind a token, all over TLS verified with
//! `sslmode=verify-full` and the CA from a Secret, and Kafka over
//! SCRAM-SHA-512. The audit matches, each component holds the role it should,
//! and no secret value shows anywhere the run wrote: its output, every
//! child's log, the status file, or the metrics of the worker and the
//! dashboard.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shopstream_testkit::{
    ChildGuard, TestSchema, WarehouseRoles, database_ca_file, database_url_as, http_get, operator_local, pg,
    secured_broker, unique, wait_until,
};

/// Sessions of `role` that use TLS, now.
fn tls_sessions(role: &str) -> i64 {
    pg().query_one(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1 AND s.ssl",
        &[&role],
    )
    .map(|r| r.get(0))
    .unwrap_or(0)
}

#[test]
fn a_pipeline_with_separate_roles_over_tls_loads_exactly_and_leaks_no_secret() {
    let broker = secured_broker();
    let schema = TestSchema::new("lp");
    let roles = WarehouseRoles::create(&schema.name);
    let topic = unique("lp");
    let token = format!("tok-{}", unique("dash"));
    let url = |role: &str| {
        database_url_as(
            role,
            &WarehouseRoles::password(role),
            "localhost",
            "sslmode=verify-full",
        )
    };
    let ca =
        std::fs::read_to_string(database_ca_file()).expect("the test PostgreSQL's CA (scripts/dev-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pipeline.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {{name: lp}}
spec:
  kafka: {{bootstrapServers: \"{sasl}\", topic: {topic}, partitions: 2,
          sasl: {{mechanism: SCRAM-SHA-512}}, credentialsSecretRef: {{name: kafka-user}}}}
  warehouse:
    connectionSecretRef: {{name: wh-loader, key: url}}
    readerSecretRef: {{name: wh-reader, key: url}}
    migratorSecretRef: {{name: wh-owner, key: url}}
    caSecretRef: {{name: wh-ca, key: ca.crt}}
    schema: {schema}
  dashboard: {{enabled: true, authTokenSecretRef: {{name: dash, key: token}}}}
  generator: {{eventsPerSecond: 400, invalidRatio: 0.02}}
  workers: {{replicas: 1, batch: {{maxRecords: 1000, maxWaitMs: 200}}}}
",
            sasl = broker.sasl,
            schema = schema.name
        ),
    )
    .unwrap();
    let operator = env!("CARGO_BIN_EXE_shopstream-operator");
    // The dashboard's binary must sit beside the others.
    shopstream_testkit::bin_dir(operator, &["shopstream-dashboard"]);
    let run_dir = dir.path().join("run");
    let status = dir.path().join("status.json");
    let mut child = ChildGuard::spawn(
        "operator local",
        operator_local(operator, &manifest, &run_dir)
            .env_remove("SHOPSTREAM_SECRET_WAREHOUSE_URL")
            .env("SHOPSTREAM_SECRET_KAFKA_USER_USERNAME", &broker.username)
            .env("SHOPSTREAM_SECRET_KAFKA_USER_PASSWORD", &broker.password)
            .env("SHOPSTREAM_SECRET_WH_LOADER_URL", url(&roles.loader))
            .env("SHOPSTREAM_SECRET_WH_READER_URL", url(&roles.reader))
            .env("SHOPSTREAM_SECRET_WH_OWNER_URL", url(&roles.migrator))
            .env("SHOPSTREAM_SECRET_WH_CA_CA_CRT", &ca)
            .env("SHOPSTREAM_SECRET_DASH_TOKEN", &token)
            .args(["--status-file"])
            .arg(&status)
            .args([
                "--duration",
                "8s",
                "--report-interval",
                "1s",
                "--drain-timeout",
                "90s",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let collect = |pipe: Box<dyn std::io::Read + Send>, into: Arc<Mutex<Vec<String>>>| {
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                println!("{line}");
                into.lock().unwrap().push(line);
            }
        })
    };
    let (out, err) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let readers = [
        collect(Box::new(child.child.stdout.take().unwrap()), out.clone()),
        collect(Box::new(child.child.stderr.take().unwrap()), err.clone()),
    ];

    // While it runs: the page asks for the token, the metrics do not; the
    // worker loads and the dashboard reads over TLS, each as its own role.
    let mut scraped = String::new();
    let dashboard = {
        let out = out.clone();
        let mut addr = None;
        wait_until(Duration::from_secs(60), || {
            if let Ok(Some(exit)) = child.child.try_wait() {
                panic!("the run ended early ({exit}): {}", err.lock().unwrap().join("\n"));
            }
            addr = out.lock().unwrap().iter().find_map(|l| {
                l.split("dashboard: http://")
                    .nth(1)
                    .map(|a| a.trim_end_matches('/').to_string())
            });
            addr.is_some()
        });
        addr.unwrap()
    };
    wait_until(Duration::from_secs(30), || {
        http_get(&dashboard, "/metrics").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    let page = http_get(&dashboard, "/").unwrap_or_default();
    assert!(
        page.starts_with("HTTP/1.1 401"),
        "the page asks for the token: {page}"
    );
    // The readiness probe reads the schema through the dashboard's pool.
    wait_until(Duration::from_secs(30), || {
        tls_sessions(&roles.loader) > 0
            && http_get(&dashboard, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(
        tls_sessions(&roles.reader) > 0,
        "the dashboard reads as the reader, over TLS"
    );
    scraped.push_str(&http_get(&dashboard, "/metrics").unwrap_or_default());
    let mut worker_metrics = String::new();
    wait_until(Duration::from_secs(30), || {
        let doc: Option<serde_json::Value> = std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(addr) = doc
            .as_ref()
            .and_then(|d| d["workers"][0]["metrics_addr"].as_str())
        {
            worker_metrics = addr.to_string();
        }
        !worker_metrics.is_empty()
    });
    scraped.push_str(&http_get(&worker_metrics, "/metrics").unwrap_or_default());
    assert!(
        scraped.contains("shopstream_worker"),
        "the worker's metrics were read"
    );

    let exit = child.wait_timeout(Duration::from_secs(180));
    for r in readers {
        r.join().unwrap();
    }
    let stdout = out.lock().unwrap().join("\n");
    if !exit.success() {
        shopstream_testkit::print_log_tails(&run_dir.join("logs"));
    }
    assert!(exit.success(), "the run failed:\n{stdout}");
    assert!(stdout.contains("\nMATCH"), "the audit matched:\n{stdout}");

    // The schema belongs to the migrator; the loader may not change it.
    let (owner, loader_creates): (String, bool) = {
        let row = pg()
            .query_one(
                "SELECT nspowner::regrole::text, has_schema_privilege($2, nspname, 'CREATE')
                 FROM pg_namespace WHERE nspname = $1",
                &[&schema.name, &roles.loader],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(owner, roles.migrator);
    assert!(!loader_creates, "the loader cannot create in the schema");

    let mut everything = stdout;
    everything.push_str(&err.lock().unwrap().join("\n"));
    everything.push_str(&std::fs::read_to_string(&status).unwrap_or_default());
    everything.push_str(&scraped);
    for entry in std::fs::read_dir(run_dir.join("logs")).unwrap().flatten() {
        everything.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    assert!(
        everything.contains("schema current"),
        "the init container's log is there"
    );
    assert!(
        everything.contains(&format!("{}@localhost", roles.loader)),
        "the workers' logs name their warehouse (without the password)"
    );
    let secrets = [
        ("the SCRAM password", broker.password.clone()),
        ("the loader's password", WarehouseRoles::password(&roles.loader)),
        ("the reader's password", WarehouseRoles::password(&roles.reader)),
        (
            "the migrator's password",
            WarehouseRoles::password(&roles.migrator),
        ),
        ("the dashboard token", token.clone()),
    ];
    for (what, value) in secrets {
        assert!(!everything.contains(&value), "{what} reached the output");
    }
    drop(roles);
}
