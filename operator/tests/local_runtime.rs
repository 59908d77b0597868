//! End-to-end: `shopstream-operator local` runs a Pipeline with a two-stage
//! profile (low, then a burst) against the real broker and PostgreSQL. The
//! audit must MATCH, workers must scale above 1 in the burst and back down
//! after the stabilization window, and a worker killed with SIGKILL must be
//! restarted without breaking the audit.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shopstream_testkit::{ChildGuard, TestSchema, brokers, operator_local, unique, wait_until};

#[test]
fn a_burst_scales_workers_up_and_down_survives_a_killed_worker_and_the_audit_matches() {
    let schema = TestSchema::new("local_e2e");
    let topic = unique("local_e2e");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pipeline.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {{name: e2e}}
spec:
  kafka: {{bootstrapServers: "{brokers}", topic: {topic}, partitions: 4}}
  warehouse: {{connectionSecretRef: {{name: warehouse, key: url}}, schema: {schema}}}
  generator:
    ratePerReplica: 5000
    invalidRatio: 0.02
    profile:
      stages:
        - {{durationSeconds: 8, eventsPerSecond: 300}}
        - {{durationSeconds: 14, eventsPerSecond: 3000}}
        - {{durationSeconds: 40, eventsPerSecond: 100}}
  workers:
    autoscaling: {{enabled: true, minReplicas: 1, maxReplicas: 4, targetLagPerReplica: 1000,
                  catchUpSeconds: 5, scaleDownStabilizationSeconds: 6}}
    batch: {{maxRecords: 2000, maxWaitMs: 300}}
"#,
            brokers = brokers(),
            schema = schema.name,
        ),
    )
    .unwrap();
    let status = dir.path().join("status.json");
    let mut child = ChildGuard::spawn(
        "operator local",
        operator_local(
            env!("CARGO_BIN_EXE_shopstream-operator"),
            &manifest,
            &dir.path().join("run"),
        )
        .arg("--status-file")
        .arg(&status)
        .args([
            "--report-interval",
            "1s",
            "--scale-interval",
            "1s",
            "--drain-timeout",
            "150s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null()),
    );
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let out = child.child.stdout.take().unwrap();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{line}");
                lines.lock().unwrap().push(line);
            }
        })
    };
    let seen = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));

    // In the burst (stage 2): kill a worker outright.
    wait_until(Duration::from_secs(60), || {
        lines.lock().unwrap().iter().any(|l| l.contains("3000/"))
    });
    let victim = {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
        let w = &doc["workers"][0];
        (
            w["name"].as_str().unwrap().to_string(),
            w["pid"].as_u64().expect("worker 0 runs") as i32,
        )
    };
    // SAFETY: kill(2) on a pid the runtime reported as its running child.
    assert_eq!(unsafe { libc::kill(victim.1, libc::SIGKILL) }, 0);
    wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|doc| {
                doc["workers"].as_array().into_iter().flatten().any(|w| {
                    w["name"] == victim.0.as_str() && w["restarts"].as_u64() >= Some(1) && !w["pid"].is_null()
                })
            })
    });

    let exit = child.wait_timeout(Duration::from_secs(240));
    reader.join().unwrap();
    let out = lines.lock().unwrap().join("\n");
    if !exit.success() {
        shopstream_testkit::print_log_tails(&dir.path().join("run").join("logs"));
    }
    assert!(exit.success(), "local runtime failed:\n{out}");
    assert!(
        seen("rate tgt/actual") && seen("lag") && seen("warn/err"),
        "the live table was printed"
    );
    // Readable off a terminal: no colour codes, no child's log line in between.
    assert!(!out.contains('\x1b'), "ANSI escape codes in the output:\n{out}");
    let interleaved: Vec<&str> = out
        .lines()
        .filter(|l| {
            shopstream_operator::local::logwatch::level_of(l).is_some()
                || l.split_whitespace()
                    .nth(1)
                    .is_some_and(|t| t == "INFO" || t == "DEBUG")
        })
        .collect();
    assert!(
        interleaved.is_empty(),
        "log lines in the live table: {interleaved:?}"
    );
    // Workers went above 1 in the burst, then back down to 1 after the window.
    let ups: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("workers 1 -> ") || l.contains("scaling up"))
        .collect();
    assert!(!ups.is_empty(), "workers never scaled up:\n{out}");
    let down = out
        .lines()
        .position(|l| l.contains("scaling down") && l.contains("-> 1 "))
        .expect("workers came back down to 1");
    let first_up = out.lines().position(|l| l.contains("scaling up")).unwrap();
    assert!(down > first_up);
    assert!(out.contains("\nMATCH"), "the audit matched:\n{out}");
    assert!(!out.contains("MISMATCH"));
}
