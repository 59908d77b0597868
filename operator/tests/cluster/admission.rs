//! Admission: what the CRD's OpenAPI schema and CEL rules can judge, the API
//! server itself rejects with their message; what only the operator can judge
//! (a reserved schema name, an empty load profile) gets `InvalidSpec`, a
//! Warning Event and no Deployments.

use std::time::Duration;

use crate::harness::*;

#[test]
fn e2e_admission_rejects_invalid_specs_and_the_operator_flags_the_rest() {
    // The chart installs the CRD: without it there is nothing to admit.
    let release = shared_release();
    let ns = Namespace::new("e2e-admission").with_warehouse_secret();
    let topic = dns_unique("e2e-admission");
    // (what is wrong, spec YAML, words the API server's answer must contain)
    let rejected = [
        (
            "min > max replicas (CEL)",
            "  workers: {autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}}\n",
            "minReplicas must not exceed maxReplicas",
        ),
        (
            "negative rate (minimum)",
            "  generator: {eventsPerSecond: -5}\n",
            "spec.generator.eventsPerSecond",
        ),
        (
            "unknown field (strict field validation)",
            "  workerz: {replicas: 2}\n",
            ".spec.workerz: field not declared in schema",
        ),
    ];
    for (what, spec, words) in rejected {
        let out = apply(&ns.name, &pipeline_yaml("bad", &topic, spec));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(err.contains(words), "{what}: {err}");
    }
    let bad_schema = pipeline_yaml("bad", &topic, "").replace("schema: shop", "schema: Bad-Schema");
    let out = apply(&ns.name, &bad_schema);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("spec.warehouse.schema"),
        "bad schema name: {err}"
    );
    assert!(get("pipeline", &ns.name, "bad").is_none());

    // Valid to the schema, invalid to the operator.
    let op = Operator::start(&OperatorArgs::scoped(release, &ns.name));
    let reserved = pipeline_yaml("reserved", &topic, "").replace("schema: shop", "schema: pg_shop");
    apply_ok(&ns.name, &reserved);
    let p = wait_for(Duration::from_secs(60), "InvalidSpec condition", || {
        let p = get("pipeline", &ns.name, "reserved").ok_or("no Pipeline")?;
        match condition(&p, "Ready") {
            Some((s, r, _)) if s == "False" && r == "InvalidSpec" => Ok(p),
            other => Err(format!("{other:?}")),
        }
    });
    let (_, _, message) = condition(&p, "Ready").unwrap();
    assert!(
        message.contains("warehouse.schema") && message.contains("reserved"),
        "{message}"
    );
    assert_eq!(p["status"]["phase"], "Failed");
    let events = wait_for(Duration::from_secs(30), "InvalidSpec Event", || {
        let e = kubectl_json(&["get", "events.events.k8s.io", "-n", &ns.name]);
        let found: Vec<_> = e["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["reason"] == "InvalidSpec" && e["type"] == "Warning")
            .cloned()
            .collect();
        if found.is_empty() {
            Err(e.to_string())
        } else {
            Ok(found)
        }
    });
    assert_eq!(events[0]["regarding"]["name"], "reserved");
    let deployments = kubectl_json(&["get", "deployments", "-n", &ns.name]);
    assert_eq!(deployments["items"].as_array().unwrap().len(), 0, "{deployments}");
    assert_eq!(topic_partitions(&topic), None, "no topic for an invalid spec");
    op.assert_clean_log_except(&[]);
}
