//! Kafka security end to end, against the test broker's SCRAM-SHA-512 and TLS
//! listeners: a Pipeline whose `kafka.sasl` + `credentialsSecretRef` or
//! `kafka.tls.caSecretRef` point at them runs with the local runtime (the
//! operator's topic admin, then the generator and worker with exactly the env
//! and Secret files the Deployment builders produce) and its audit matches.
//! A wrong password or an unknown CA fails fast with a non-zero exit and an
//! error naming the listener and the cause; no credential reaches any output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shopstream_testkit::{TestSchema, database_url, operator_local, secured_broker, unique};

fn bin_dir() -> PathBuf {
    shopstream_testkit::bin_dir(
        env!("CARGO_BIN_EXE_shopstream-operator"),
        &["shopstream-worker", "shopstream-generator"],
    )
}

enum Access<'a> {
    Scram { password: &'a str },
    Tls { ca_pem: &'a str },
}

struct Run {
    output: Output,
    /// stdout, stderr and every child's log.
    everything: String,
    elapsed: Duration,
}

/// `shopstream-operator local` for a small steady Pipeline over `access`.
fn run_local(access: Access<'_>) -> Run {
    let broker = secured_broker();
    let schema = TestSchema::new("sec");
    let topic = unique("sec");
    let dir = tempfile::tempdir().unwrap();
    let (kafka, secret_env): (String, Vec<(String, String)>) = match access {
        Access::Scram { password } => (
            format!(
                "{{bootstrapServers: \"{}\", topic: {topic}, partitions: 2, sasl: {{mechanism: SCRAM-SHA-512}},
                  credentialsSecretRef: {{name: kafka-user}}}}",
                broker.sasl
            ),
            vec![
                ("SHOPSTREAM_SECRET_KAFKA_USER_USERNAME".into(), broker.username.clone()),
                ("SHOPSTREAM_SECRET_KAFKA_USER_PASSWORD".into(), password.into()),
            ],
        ),
        Access::Tls { ca_pem } => (
            format!(
                "{{bootstrapServers: \"{}\", topic: {topic}, partitions: 2,
                  tls: {{enabled: true, caSecretRef: {{name: kafka-ca, key: ca.crt}}}}}}",
                broker.ssl
            ),
            vec![("SHOPSTREAM_SECRET_KAFKA_CA_CA_CRT".into(), ca_pem.into())],
        ),
    };
    let manifest = shopstream_testkit::local_manifest(
        dir.path(),
        "secured",
        &kafka,
        &schema.name,
        "  generator: {eventsPerSecond: 400, invalidRatio: 0.02}\n  \
         workers: {replicas: 1, batch: {maxRecords: 1000, maxWaitMs: 200}}\n",
    );
    let run_dir = dir.path().join("run");
    let started = Instant::now();
    let output = operator_local(env!("CARGO_BIN_EXE_shopstream-operator"), &manifest, &run_dir)
        .envs(secret_env)
        .args([
            "--duration",
            "6s",
            "--report-interval",
            "1s",
            "--drain-timeout",
            "60s",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("the operator runs");
    let elapsed = started.elapsed();
    let mut everything = String::from_utf8_lossy(&output.stdout).into_owned();
    everything.push_str(&String::from_utf8_lossy(&output.stderr));
    everything.push_str(&read_logs(&run_dir.join("logs")));
    if !output.status.success() {
        println!("{everything}");
    }
    Run {
        output,
        everything,
        elapsed,
    }
}

fn read_logs(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    text
}

fn assert_no_secret(text: &str, secret: &str) {
    assert!(!text.contains(secret), "a credential reached the output:\n{text}");
}

#[test]
fn a_pipeline_over_scram_sha_512_loads_exactly_and_logs_no_password() {
    let broker = secured_broker();
    let run = run_local(Access::Scram {
        password: &broker.password,
    });
    let out = String::from_utf8_lossy(&run.output.stdout);
    assert!(run.output.status.success(), "the run failed");
    assert!(out.contains("\nMATCH"), "the audit matched:\n{out}");
    assert_no_secret(&run.everything, &broker.password);
}

#[test]
fn a_pipeline_over_tls_verifying_the_broker_with_its_ca_loads_exactly() {
    let broker = secured_broker();
    let ca = std::fs::read_to_string(&broker.ca_file).expect("the broker's CA file");
    let run = run_local(Access::Tls { ca_pem: &ca });
    let out = String::from_utf8_lossy(&run.output.stdout);
    assert!(run.output.status.success(), "the run failed");
    assert!(out.contains("\nMATCH"), "the audit matched:\n{out}");
}

#[test]
fn a_wrong_password_fails_fast_naming_the_listener_and_the_cause() {
    let broker = secured_broker();
    let wrong = format!("not-{}", unique("pw"));
    let run = run_local(Access::Scram { password: &wrong });
    assert!(!run.output.status.success(), "a refused login must fail the run");
    let err = String::from_utf8_lossy(&run.output.stderr);
    assert!(err.contains(&broker.sasl), "names the listener: {err}");
    assert!(err.contains("Authentication failed"), "names the cause: {err}");
    assert!(
        run.elapsed < Duration::from_secs(30),
        "fails fast, took {:?}",
        run.elapsed
    );
    assert_no_secret(&run.everything, &wrong);
}

#[test]
fn an_unknown_ca_fails_fast_naming_the_listener_and_the_cause() {
    let broker = secured_broker();
    let run = run_local(Access::Tls {
        ca_pem: &shopstream_testkit::foreign_ca_pem(),
    });
    assert!(
        !run.output.status.success(),
        "an unverifiable broker must fail the run"
    );
    let err = String::from_utf8_lossy(&run.output.stderr);
    assert!(err.contains(&broker.ssl), "names the listener: {err}");
    assert!(
        err.contains("certificate verify failed"),
        "names the cause: {err}"
    );
    assert!(
        run.elapsed < Duration::from_secs(30),
        "fails fast, took {:?}",
        run.elapsed
    );
}

/// The generator and the worker on their own (flags and env as a user would
/// set them) refuse a wrong password with a non-zero exit and the reason.
#[test]
fn the_generator_and_the_worker_exit_non_zero_on_a_refused_login() {
    let broker = secured_broker();
    let schema = TestSchema::new("sec_bin");
    let wrong = format!("not-{}", unique("pw"));
    let dir = bin_dir();
    let common = [
        "--brokers",
        broker.sasl.as_str(),
        "--kafka-security-protocol",
        "sasl-plaintext",
        "--kafka-sasl-mechanism",
        "SCRAM-SHA-512",
        "--kafka-sasl-username",
        broker.username.as_str(),
        "--topic",
        "no-matter",
    ];
    let generator = Command::new(dir.join("shopstream-generator"))
        .args(common)
        .args(["--rate", "10", "--total", "10"])
        .env("SHOPSTREAM_KAFKA_SASL_PASSWORD", &wrong)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let worker = Command::new(dir.join("shopstream-worker"))
        .args(common)
        .args(["--schema", &schema.name, "--database-url", &database_url()])
        .env("SHOPSTREAM_KAFKA_SASL_PASSWORD", &wrong)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    for (name, out) in [("generator", generator), ("worker", worker)] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} must fail: {err}");
        assert!(
            err.contains(&broker.sasl) && err.contains("Authentication failed"),
            "{name}: {err}"
        );
        assert_no_secret(&err, &wrong);
        assert_no_secret(&String::from_utf8_lossy(&out.stdout), &wrong);
    }
}
