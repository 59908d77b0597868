//! Pause and delete: pausing scales everything to zero and back; deleting
//! runs the finalizer (the topic goes, and its offsets stored in the
//! warehouse) and the controller-manager's garbage
//! collector removes the owned Deployments; a Pipeline whose Kafka Secret is
//! already gone (its namespace being deleted) still finishes deleting.

use std::time::Duration;

use crate::harness::*;

/// Offsets as the workers store them, in a schema of the test database
/// migrated as they would: this topic's two partitions and another topic's.
fn stored_offsets(schema: &str, group: &str, topic: &str) -> postgres::Client {
    let mut db = postgres::Client::connect(&shopstream_testkit::database_url(), postgres::NoTls).unwrap();
    let name = shopstream_model::SchemaName::parse(schema).unwrap();
    shopstream_worker::migrate::migrate(&mut db, &name).unwrap();
    db.execute(
        &format!(
            "INSERT INTO {} (consumer_group, topic, kafka_partition, next_offset) \
             VALUES ($1, $2, 0, 100), ($1, $2, 1, 50), ($1, 'another-topic', 0, 7)",
            name.table(shopstream_model::warehouse::INGEST_OFFSETS)
        ),
        &[&group, &topic],
    )
    .unwrap();
    db
}

fn offsets_of(db: &mut postgres::Client, schema: &str, topic: &str) -> i64 {
    let table = shopstream_model::SchemaName::parse(schema)
        .unwrap()
        .table(shopstream_model::warehouse::INGEST_OFFSETS);
    db.query_one(
        &format!("SELECT count(*) FROM {table} WHERE topic = $1"),
        &[&topic],
    )
    .unwrap()
    .get(0)
}

#[test]
fn e2e_pause_resume_and_delete() {
    let ns = Namespace::new("e2e-pause").with_warehouse_secret();
    let op = Operator::start(&OperatorArgs::scoped(shared_release(), &ns.name));
    let topic = dns_unique("e2e-pause");
    let schema = shopstream_testkit::TestSchema::new("e2e_pause");
    let spec = "  generator: {eventsPerSecond: 200, ratePerReplica: 100}\n  workers: {replicas: 2}\n";
    let yaml =
        pipeline_yaml("shop", &topic, spec).replace("schema: shop", &format!("schema: {}", schema.name));
    apply_ok(&ns.name, &yaml);
    wait_ready(&ns.name, "shop", &op);
    let both = || {
        (
            replicas(&ns.name, "shop-generator"),
            replicas(&ns.name, "shop-worker"),
        )
    };
    assert_eq!(both(), (Some((2, 2)), Some((2, 2))));

    patch_pipeline(&ns.name, "shop", r#"{"spec":{"paused":true}}"#);
    wait_for(Duration::from_secs(60), "paused at zero", || {
        let p = get("pipeline", &ns.name, "shop").ok_or("no Pipeline")?;
        match (both(), p["status"]["phase"].as_str()) {
            ((Some((0, 0)), Some((0, 0))), Some("Paused")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(topic_partitions(&topic), Some(2), "the topic stays while paused");
    patch_pipeline(&ns.name, "shop", r#"{"spec":{"paused":false}}"#);
    wait_for(Duration::from_secs(60), "resumed", || match both() {
        (Some((2, 2)), Some((2, 2))) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    wait_ready(&ns.name, "shop", &op);

    let group = format!("shopstream-{}", schema.name);
    let mut db = stored_offsets(&schema.name, &group, &topic);
    kubectl_ok(&["delete", "spl", "shop", "-n", &ns.name, "--timeout=60s"]);
    // The finalizer deleted the topic, then its stored offsets: a topic
    // created again under this name is read from its start.
    assert_eq!(
        offsets_of(&mut db, &schema.name, &topic),
        0,
        "the deleted topic's offsets"
    );
    assert_eq!(
        offsets_of(&mut db, &schema.name, "another-topic"),
        1,
        "other topics' offsets stay"
    );
    // Kafka deletes asynchronously: metadata may list the topic for a moment.
    wait_for(
        Duration::from_secs(30),
        "the finalizer deleted the topic",
        || match topic_partitions(&topic) {
            None => Ok(()),
            Some(n) => Err(format!("topic {topic} still has {n} partitions")),
        },
    );
    // The garbage collector follows the owner references.
    wait_for(Duration::from_secs(60), "owned Deployments collected", || {
        let d = kubectl_json(&["get", "deployments", "-n", &ns.name]);
        let left = d["items"].as_array().map_or(0, Vec::len);
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} left"))
        }
    });
    op.assert_clean_log();
}

#[test]
fn e2e_a_namespace_deletion_that_took_the_kafka_secret_first_still_completes() {
    let ns = Namespace::new("e2e-nsdel").with_warehouse_secret();
    let op = Operator::start(&OperatorArgs::scoped(shared_release(), &ns.name));
    let broker = shopstream_testkit::secured_broker();
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "kafka-user",
        "-n",
        &ns.name,
        &format!("--from-literal=username={}", broker.username),
        &format!("--from-literal=password={}", broker.password),
    ]);
    let topic = dns_unique("e2e-nsdel");
    let yaml = pipeline_yaml("shop", &topic, "  generator: {eventsPerSecond: 100}\n")
        .replace(&shopstream_testkit::brokers(), &broker.sasl)
        .replace(
            "deleteTopicOnDelete: true}",
            "deleteTopicOnDelete: true, sasl: {mechanism: SCRAM-SHA-512}, credentialsSecretRef: {name: kafka-user}}",
        );
    apply_ok(&ns.name, &yaml);
    wait_ready(&ns.name, "shop", &op);
    assert_eq!(topic_partitions(&topic), Some(2));

    kubectl_ok(&["delete", "secret", "kafka-user", "-n", &ns.name]);
    kubectl_ok(&["delete", "namespace", &ns.name, "--timeout=90s"]);
    assert!(get("namespace", "default", &ns.name).is_none());
    assert!(
        op.log().contains("kept topic"),
        "the operator said why the topic stays:\n{}",
        op.log_tail()
    );
    // Without credentials the topic cannot go: it stays, nothing hangs.
    assert_eq!(topic_partitions(&topic), Some(2));
}

#[test]
fn e2e_deleting_a_pipeline_whose_broker_is_gone_finishes_after_the_cleanup_timeout() {
    let ns = Namespace::new("e2e-gone").with_warehouse_secret();
    let op = Operator::start(&OperatorArgs {
        cleanup_timeout: Some("10s"),
        ..OperatorArgs::scoped(shared_release(), &ns.name)
    });
    let topic = dns_unique("e2e-gone");
    // Nothing listens on port 1: every Kafka call fails, as with a broker gone for good.
    let yaml = pipeline_yaml("shop", &topic, "").replace(&shopstream_testkit::brokers(), "127.0.0.1:1");
    apply_ok(&ns.name, &yaml);
    wait_for(Duration::from_secs(60), "the finalizer", || {
        get("pipeline", &ns.name, "shop")
            .filter(|p| {
                p["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            })
            .map(|_| ())
            .ok_or_else(|| op.log_tail())
    });
    kubectl_ok(&["delete", "pipeline", "shop", "-n", &ns.name, "--timeout=90s"]);
    assert!(get("pipeline", &ns.name, "shop").is_none());
    let events = kubectl_json(&[
        "get",
        "events",
        "-n",
        &ns.name,
        "--field-selector",
        "reason=TopicKept",
    ]);
    let note = events["items"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // "... deleting the Pipeline anyway after Ns": it retried for the timeout first.
    let waited: u64 = note
        .rsplit("after ")
        .next()
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .unwrap_or(0);
    assert!(
        note.contains("kept topic") && waited >= 10,
        "a Warning Event says what was left behind, after the timeout: {note:?}\n{}",
        op.log_tail()
    );
}
