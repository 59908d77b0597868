//! Change and rest: a spec change reaches the Deployments and the topic,
//! `observedGeneration` follows, status writes never bump `generation`; and
//! with nothing changing, the operator writes nothing at all (counted in the
//! API server's audit log) and reconciles only at its scale interval: the
//! test for the hot loop where each status patch woke the watch again.

use std::time::Duration;

use chrono::Utc;

use crate::harness::*;

fn manifest(topic: &str, partitions: i32, rate: u32, min_workers: u32) -> String {
    let spec = format!(
        "  generator: {{eventsPerSecond: {rate}, ratePerReplica: 100}}\n  \
         workers: {{autoscaling: {{enabled: true, minReplicas: {min_workers}, maxReplicas: 4}}}}\n"
    );
    pipeline_yaml("shop", topic, &spec).replace("partitions: 2", &format!("partitions: {partitions}"))
}

#[test]
fn e2e_spec_changes_roll_out_and_a_pipeline_at_rest_costs_no_writes() {
    let ns = Namespace::new("e2e-change").with_warehouse_secret();
    let release = shared_release();
    let started = Utc::now();
    let op = Operator::start(&OperatorArgs::scoped(release, &ns.name));
    let topic = dns_unique("e2e-change");
    apply_ok(&ns.name, &manifest(&topic, 2, 100, 1));
    let p = wait_ready(&ns.name, "shop", &op);
    let generation = p["metadata"]["generation"].as_i64().unwrap();
    assert_eq!(p["status"]["observedGeneration"], generation);
    assert_eq!(replicas(&ns.name, "shop-generator"), Some((1, 1)));
    assert_eq!(replicas(&ns.name, "shop-worker"), Some((1, 1)));
    let generator_generation =
        get("deployment", &ns.name, "shop-generator").unwrap()["metadata"]["generation"].clone();

    // More partitions, a higher rate, a higher worker floor.
    apply_ok(&ns.name, &manifest(&topic, 4, 300, 2));
    let p = wait_for(Duration::from_secs(60), "the change rolled out", || {
        let p = get("pipeline", &ns.name, "shop").ok_or("no Pipeline")?;
        let seen = (
            p["status"]["observedGeneration"].as_i64(),
            p["status"]["topic"]["partitions"].as_i64(),
            replicas(&ns.name, "shop-generator"),
            replicas(&ns.name, "shop-worker"),
            condition(&p, "Ready").map(|c| c.0),
        );
        match seen {
            (Some(g), Some(4), Some((3, 3)), Some((2, 2)), Some(ready))
                if g == generation + 1 && ready == "True" =>
            {
                Ok(p)
            }
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(topic_partitions(&topic), Some(4), "the topic grew on the broker");
    // Many status writes later, the spec's generation is still one change on.
    assert_eq!(p["metadata"]["generation"], generation + 1);
    let d = get("deployment", &ns.name, "shop-generator").unwrap();
    assert_ne!(
        d["metadata"]["generation"], generator_generation,
        "the generator Deployment changed"
    );

    // The audit log sees the operator's writes (so its silence below means something).
    let rollout = audited(&release.user(), &ns.name, started);
    assert!(
        rollout
            .iter()
            .any(|a| a.verb == "patch" && a.resource == "deployments" && a.name == "shop-generator"),
        "no Deployment patches by {} in the audit log",
        release.user()
    );

    // At rest: no writes at all, and reconciles only at the scale interval (2 s).
    let quiet: u64 = std::env::var("SHOPSTREAM_E2E_QUIET_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let before = wait_settled(&ns.name, "shop", &op)["status"].clone();
    let since = Utc::now();
    let reconciles = op.reconciles();
    let deployment_versions = (
        get("deployment", &ns.name, "shop-generator").unwrap()["metadata"]["resourceVersion"].clone(),
        get("deployment", &ns.name, "shop-worker").unwrap()["metadata"]["resourceVersion"].clone(),
    );
    // An observation window, not a wait for a condition: nothing must happen in it.
    std::thread::sleep(Duration::from_secs(quiet));
    let requests = audited(&release.user(), &ns.name, since);
    let writes: Vec<String> = requests
        .iter()
        .filter(|a| a.is_write())
        .map(|a| format!("{} {} {}/{} {}", a.at, a.verb, a.resource, a.subresource, a.name))
        .collect();
    let after = get("pipeline", &ns.name, "shop").unwrap()["status"].clone();
    assert!(
        writes.is_empty(),
        "writes at rest in {quiet} s:\n{}\nstatus before: {before}\nstatus after: {after}",
        writes.join("\n")
    );
    let made = op.reconciles() - reconciles;
    assert!(
        made <= (quiet / 2 + 3) as f64,
        "{made} reconciles in {quiet} s at rest (scale interval 2 s): a reconcile loop"
    );
    assert_eq!(
        (
            get("deployment", &ns.name, "shop-generator").unwrap()["metadata"]["resourceVersion"].clone(),
            get("deployment", &ns.name, "shop-worker").unwrap()["metadata"]["resourceVersion"].clone(),
        ),
        deployment_versions
    );
    op.assert_clean_log();
}
