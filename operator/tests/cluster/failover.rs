//! Failover and restart: of two operators with leader election one leads and
//! the other stands by without reconciling; after `kill -9` of the leader the
//! standby takes the Lease within its duration and carries on. A restarted
//! operator causes no Deployment churn and keeps scaled-up workers for the
//! stabilization window instead of dropping them at once.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::harness::*;

fn holder(ns: &str, lease: &str) -> Option<String> {
    get("lease", ns, lease)?["spec"]["holderIdentity"]
        .as_str()
        .map(String::from)
}

fn ready(op: &Operator) -> bool {
    shopstream_testkit::http_get(&op.metrics_addr, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

#[test]
fn e2e_the_standby_takes_over_within_the_lease_after_kill_9() {
    let ns = Namespace::new("e2e-failover").with_warehouse_secret();
    let release = shared_release();
    let lease = dns_unique("e2e-lease");
    let start = |identity| {
        Operator::start(&OperatorArgs {
            lease: Some(&lease),
            identity,
            ..OperatorArgs::scoped(release, &ns.name)
        })
    };
    let a = start("operator-a");
    let b = start("operator-b");
    let first = wait_for(Duration::from_secs(30), "a leader", || {
        holder(&release.namespace, &lease).ok_or_else(|| "no Lease".to_string())
    });
    let (leader, standby) = if first == "operator-a" { (a, b) } else { (b, a) };
    let topic = dns_unique("e2e-failover");
    apply_ok(
        &ns.name,
        &pipeline_yaml("shop", &topic, "  generator: {eventsPerSecond: 100}\n"),
    );
    wait_ready(&ns.name, "shop", &leader);
    // Never two writers: the standby has reconciled nothing and says it is not ready.
    assert!(ready(&leader));
    assert!(!ready(&standby));
    assert_eq!(standby.reconciles(), 0.0, "{}", standby.log_tail());
    assert!(leader.reconciles() > 0.0);

    leader.process.signal("KILL");
    let killed = chrono::Utc::now();
    let new = wait_for(Duration::from_secs(30), "the standby leads", || {
        match holder(&release.namespace, &lease) {
            Some(h) if h != first => Ok(h),
            other => Err(format!("{other:?}")),
        }
    });
    // When the standby took the Lease, by the Lease's own acquireTime (same
    // machine, same clock): how fast this test's polling noticed, on a
    // loaded machine, is not the operator's takeover time.
    let acquired: chrono::DateTime<chrono::Utc> = get("lease", &release.namespace, &lease)
        .and_then(|l| l["spec"]["acquireTime"].as_str().and_then(|t| t.parse().ok()))
        .expect("the Lease has an acquireTime");
    let took = (acquired - killed).to_std().unwrap_or_default();
    // Lease duration 6 s, the standby retries every 1.5 s.
    eprintln!("takeover took {took:?} after kill -9");
    assert!(took < Duration::from_secs(9), "takeover took {took:?}");
    assert_ne!(new, first);
    patch_pipeline(&ns.name, "shop", r#"{"spec":{"workers":{"replicas":2}}}"#);
    wait_for(
        Duration::from_secs(60),
        "the new leader reconciles",
        || match replicas(&ns.name, "shop-worker") {
            Some((2, 2)) => Ok(()),
            other => Err(format!("{other:?}; {}", standby.log_tail())),
        },
    );
    assert!(ready(&standby));
    standby.assert_clean_log();
}

/// What the workers would do once they caught up: commit the group's offsets
/// at the high watermarks.
fn commit_everything(topic: &str, group: &str, partitions: i32) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", shopstream_testkit::brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        tpl.add_partition_offset(topic, p, Offset::Offset(high))
            .expect("offset");
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

#[test]
fn e2e_a_restarted_operator_keeps_the_deployments_and_the_scaled_up_workers() {
    let ns = Namespace::new("e2e-restart").with_warehouse_secret();
    let release = shared_release();
    let fast = || OperatorArgs {
        scale_interval: "1s",
        ..OperatorArgs::scoped(release, &ns.name)
    };
    let topic = dns_unique("e2e-restart");
    let schema = topic.replace('-', "_");
    let spec = "  generator: {enabled: false}\n  workers: {autoscaling: {enabled: true, minReplicas: 1, maxReplicas: 4, \
                targetLagPerReplica: 10, scaleDownStabilizationSeconds: 300}}\n";
    let yaml = pipeline_yaml("shop", &topic, spec)
        .replace("partitions: 2", "partitions: 4")
        .replace("schema: shop", &format!("schema: {schema}"));
    let first = Operator::start(&fast());
    apply_ok(&ns.name, &yaml);
    wait_ready(&ns.name, "shop", &first);
    // A backlog nobody loads (kwok's workers do not consume): 1 -> 2 -> 4 workers.
    let records: Vec<(&[u8], Option<&[u8]>)> = (0..50).map(|_| (&b"k"[..], Some(&b"{}"[..]))).collect();
    for p in 0..4 {
        shopstream_testkit::produce_raw(&topic, p, &records);
    }
    wait_for(Duration::from_secs(60), "4 workers", || {
        match replicas(&ns.name, "shop-worker") {
            Some((4, 4)) => Ok(()),
            other => Err(format!("{other:?}; {}", first.log_tail())),
        }
    });
    // The workers caught up: the load alone now asks for 1.
    commit_everything(&topic, &format!("shopstream-{schema}"), 4);
    let generations =
        |name: &str| get("deployment", &ns.name, name).unwrap()["metadata"]["generation"].clone();
    let before = (generations("shop-generator"), generations("shop-worker"));

    drop(first);
    let second = Operator::start(&fast());
    // Several scale intervals of the new operator.
    wait_for(Duration::from_secs(60), "5 reconciles after the restart", || {
        let n = second.reconciles();
        if n >= 5.0 { Ok(()) } else { Err(format!("{n}")) }
    });
    assert_eq!(
        replicas(&ns.name, "shop-worker"),
        Some((4, 4)),
        "{}",
        second.log_tail()
    );
    assert_eq!(
        (generations("shop-generator"), generations("shop-worker")),
        before,
        "Deployment churn"
    );
    let p = get("pipeline", &ns.name, "shop").unwrap();
    let (_, reason, message) = condition(&p, "Scaling").unwrap();
    assert_eq!(reason, "Stable", "{message}");
    assert!(message.contains("stabilization window"), "{message}");
    second.assert_clean_log();
}
