//! Apply: the examples, as a user applies them (only the broker address and
//! topic point at the test broker), become topics with the partitions asked
//! for, generator and worker Deployments with the replicas asked for, pods
//! Ready on kwok nodes and `Ready=True`; `kubectl get spl` and
//! `kubectl explain` show what a user needs.

use std::time::Duration;

use crate::harness::*;

/// An example manifest pointed at the test broker and a topic of its own.
fn example(file: &str, topic: &str) -> (String, serde_yaml::Value) {
    let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("example")).expect("YAML");
    let kafka = &mut doc["spec"]["kafka"];
    kafka["bootstrapServers"] = shopstream_testkit::brokers().into();
    kafka["topic"] = topic.into();
    kafka["deleteTopicOnDelete"] = true.into();
    let name = doc["metadata"]["name"].as_str().expect("name").to_string();
    (name, doc)
}

#[test]
fn e2e_apply_the_examples() {
    let ns = Namespace::new("e2e-apply").with_warehouse_secret();
    let release = shared_release();
    // load-profile.yaml schedules onto a dedicated, tainted pool.
    let _pool = Nodes::add(
        &[("workload", "shopstream-burst")],
        2,
        "4",
        Some("dedicated=shopstream:NoSchedule"),
    );
    let op = Operator::start(&OperatorArgs::scoped(release, &ns.name));
    let shop_topic = dns_unique("e2e-apply-shop");
    let burst_topic = dns_unique("e2e-apply-burst");
    let (shop, shop_doc) = example("pipeline.yaml", &shop_topic);
    let (burst, burst_doc) = example("load-profile.yaml", &burst_topic);
    for doc in [&shop_doc, &burst_doc] {
        apply_ok(&ns.name, &serde_yaml::to_string(doc).unwrap());
    }

    let p = wait_ready(&ns.name, &shop, &op);
    let b = wait_ready(&ns.name, &burst, &op);
    // The topics, on the real broker, with the partitions the examples ask for.
    assert_eq!(topic_partitions(&shop_topic), Some(6));
    assert_eq!(topic_partitions(&burst_topic), Some(12));
    assert_eq!(p["status"]["topic"]["partitions"], 6);
    // pipeline.yaml: 2000 events/s at 1000 per generator -> 2 generators;
    // workers autoscaled from minReplicas 1 (nothing to load yet).
    assert_eq!(replicas(&ns.name, &format!("{shop}-generator")), Some((2, 2)));
    assert_eq!(replicas(&ns.name, &format!("{shop}-worker")), Some((1, 1)));
    // load-profile.yaml: stage 1 is 2000/s at 5000 per generator -> 1; minReplicas 2.
    assert_eq!(replicas(&ns.name, &format!("{burst}-generator")), Some((1, 1)));
    assert_eq!(replicas(&ns.name, &format!("{burst}-worker")), Some((2, 2)));
    assert_eq!(b["status"]["generator"]["stage"], 0);
    // The burst pods sit on the dedicated pool, as nodeSelector and tolerations say.
    let pods = kubectl_json(&[
        "get",
        "pods",
        "-n",
        &ns.name,
        "-l",
        &format!("app.kubernetes.io/instance={burst}"),
    ]);
    for pod in pods["items"].as_array().unwrap() {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        assert!(
            _pool.names.iter().any(|n| n == node),
            "{} on {node}",
            pod["metadata"]["name"]
        );
    }

    // `kubectl get spl`: every column has a value.
    let table = kubectl_ok(&["get", "spl", "-n", &ns.name]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "WORKERS", "LAG", "RATE", "AGE"],
        "{table}"
    );
    for row in lines {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.len(), header.len(), "{table}");
        assert!(!cells.contains(&"<none>"), "{table}");
        assert_eq!(cells[1], "Running", "{table}");
    }
    // `kubectl explain` documents the fields from the CRD's schema.
    let explained = kubectl_ok(&["explain", "pipeline.spec.workers"]);
    for words in ["autoscaling", "replicas", "DESCRIPTION"] {
        assert!(explained.contains(words), "{explained}");
    }
    let explained = kubectl_ok(&["explain", "pipeline.spec.workers.autoscaling.targetLagPerReplica"]);
    assert!(explained.len() > 80, "{explained}");

    // Deleting them runs the finalizer: topics deleted, Deployments collected.
    kubectl_ok(&[
        "delete",
        "pipeline",
        &shop,
        &burst,
        "-n",
        &ns.name,
        "--timeout=60s",
    ]);
    wait_for(Duration::from_secs(60), "topics deleted", || {
        match (topic_partitions(&shop_topic), topic_partitions(&burst_topic)) {
            (None, None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    op.assert_clean_log();
}
