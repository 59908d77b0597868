//! Least privilege in the cluster: a Pipeline over SCRAM-SHA-512 whose
//! warehouse has a loader, a reader and a migrator Secret (each URL with its
//! own password), a CA Secret and a dashboard token. The operator builds pods
//! that reference each Secret only in the container that needs it, reports
//! LeastPrivilege, and not one secret value appears in its log, the
//! Pipeline's status, any Event, any object it made, or its metrics — from
//! creation through deletion (the finalizer reads the SASL and warehouse
//! Secrets to delete the topic and its stored offsets).

use serde_json::Value;

use crate::harness::*;

fn secret(ns: &str, name: &str, pairs: &[(&str, &str)]) {
    let mut args = vec![
        "create".to_string(),
        "secret".into(),
        "generic".into(),
        name.into(),
        "-n".into(),
        ns.into(),
    ];
    args.extend(pairs.iter().map(|(k, v)| format!("--from-literal={k}={v}")));
    kubectl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Every object in `ns` but Secrets, and every Event, as JSON text.
fn everything_in(ns: &str) -> String {
    let kinds = "pipelines,deployments,replicasets,pods,services,configmaps,events";
    kubectl_ok(&["get", kinds, "-n", ns, "-o", "json"])
}

#[test]
fn e2e_secret_values_stay_out_of_logs_status_events_objects_and_metrics() {
    let ns = Namespace::new("e2e-secrets");
    let op = Operator::start(&OperatorArgs::scoped(shared_release(), &ns.name));
    let broker = shopstream_testkit::secured_broker();
    let mark = dns_unique("s");
    let (loader_pw, reader_pw, owner_pw, token) = (
        format!("loader-{mark}"),
        format!("reader-{mark}"),
        format!("owner-{mark}"),
        format!("token-{mark}"),
    );
    // Trust authentication takes any password: the operator's own warehouse
    // call (clearing the stored offsets on delete) works with the loader's URL.
    let url_as = |user: &str, pw: &str| shopstream_testkit::database_url_as(user, pw, "127.0.0.1", "");
    let loader = url_as("postgres", &loader_pw);
    secret(
        &ns.name,
        "kafka-user",
        &[("username", &broker.username), ("password", &broker.password)],
    );
    secret(&ns.name, "wh-loader", &[("url", &loader)]);
    secret(&ns.name, "wh-reader", &[("url", &url_as("reader", &reader_pw))]);
    secret(&ns.name, "wh-owner", &[("url", &url_as("owner", &owner_pw))]);
    secret(&ns.name, "dash", &[("token", &token)]);
    let topic = dns_unique("e2e-secrets");
    let schema = shopstream_testkit::TestSchema::new("e2e_secrets");
    let yaml = format!(
        "apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {{name: shop}}
spec:
  kafka: {{bootstrapServers: \"{sasl}\", topic: {topic}, partitions: 2, deleteTopicOnDelete: true,
          sasl: {{mechanism: SCRAM-SHA-512}}, credentialsSecretRef: {{name: kafka-user}}}}
  warehouse:
    connectionSecretRef: {{name: wh-loader, key: url}}
    readerSecretRef: {{name: wh-reader, key: url}}
    migratorSecretRef: {{name: wh-owner, key: url}}
    schema: {schema}
  dashboard: {{enabled: true, authTokenSecretRef: {{name: dash, key: token}}}}
  generator: {{eventsPerSecond: 100}}
",
        sasl = broker.sasl,
        schema = schema.name
    );
    apply_ok(&ns.name, &yaml);
    let p = wait_ready(&ns.name, "shop", &op);
    assert_eq!(topic_partitions(&topic), Some(2), "the topic was made over SASL");
    let (status, reason, message) = condition(&p, "LeastPrivilege").expect("a LeastPrivilege condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "SeparateRoles"),
        "{message}"
    );

    // The migrator's Secret reaches the init container alone.
    let worker: Value = kubectl_json(&["get", "deployment", "shop-worker", "-n", &ns.name]);
    let pod = &worker["spec"]["template"]["spec"];
    let refs = |c: &Value| -> Vec<String> {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e["valueFrom"]["secretKeyRef"]["name"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    assert_eq!(
        refs(&pod["initContainers"][0]),
        ["wh-owner", "wh-loader", "wh-reader"]
    );
    assert!(!refs(&pod["containers"][0]).contains(&"wh-owner".to_string()));

    // A spec change rolls the Deployments again.
    patch_pipeline(
        &ns.name,
        "shop",
        r#"{"spec":{"generator":{"eventsPerSecond":150}}}"#,
    );
    wait_ready(&ns.name, "shop", &op);
    let mut seen = everything_in(&ns.name);
    seen.push_str(&shopstream_testkit::http_get(&op.metrics_addr, "/metrics").unwrap_or_default());

    kubectl_ok(&["delete", "pipeline", "shop", "-n", &ns.name, "--timeout=60s"]);
    assert_eq!(
        topic_partitions(&topic),
        None,
        "the finalizer deleted the topic over SASL"
    );
    seen.push_str(&kubectl_ok(&["get", "events", "-n", &ns.name, "-o", "json"]));
    seen.push_str(&shopstream_testkit::http_get(&op.metrics_addr, "/metrics").unwrap_or_default());
    seen.push_str(&op.log());
    assert!(seen.contains("wh-owner"), "the objects were collected");
    for (what, value) in [
        ("the SCRAM password", broker.password.as_str()),
        ("the loader's password", &loader_pw),
        ("the reader's password", &reader_pw),
        ("the migrator's password", &owner_pw),
        ("the dashboard token", &token),
    ] {
        assert!(!seen.contains(value), "{what} appears in what the operator wrote");
    }
    op.assert_clean_log();
}
