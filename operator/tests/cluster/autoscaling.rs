//! The shape cluster-autoscaler acts on: a step load profile with generator
//! CPU requests on a pool of small kwok nodes. The step up leaves generator
//! pods Pending (Unschedulable) for lack of capacity; added nodes take them;
//! stepping down frees them.

use std::time::Duration;

use crate::harness::*;

fn generator_pods(ns: &str) -> Vec<serde_json::Value> {
    let pods = kubectl_json(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/component=generator",
    ]);
    pods["items"].as_array().cloned().unwrap_or_default()
}

fn unschedulable(pod: &serde_json::Value) -> bool {
    condition(pod, "PodScheduled").is_some_and(|(s, r, _)| s == "False" && r == "Unschedulable")
}

#[test]
fn e2e_a_step_profile_fills_the_node_pool_and_waits_for_nodes() {
    let ns = Namespace::new("e2e-pool").with_warehouse_secret();
    let pool = [("shopstream.dev/node-pool", ns.name.as_str())];
    // Two 2-CPU nodes: room for 3 one-CPU generators beside the worker. Tainted,
    // as a dedicated pool is, so other scenarios' pods stay off them.
    let taint = format!("shopstream.dev/node-pool={}:NoSchedule", ns.name);
    let mut nodes = Nodes::add(&pool, 2, "2", Some(&taint));
    let op = Operator::start(&OperatorArgs::scoped(shared_release(), &ns.name));
    let topic = dns_unique("e2e-pool");
    let spec = format!(
        "  nodeSelector: {{shopstream.dev/node-pool: {0}}}\n  \
         tolerations: [{{key: shopstream.dev/node-pool, operator: Equal, value: {0}, effect: NoSchedule}}]\n  \
         generator:\n    ratePerReplica: 1000\n    resources: {{requests: {{cpu: \"1\", memory: 128Mi}}}}\n    \
         profile:\n      stages:\n        - {{durationSeconds: 30, eventsPerSecond: 1000}}\n        \
         - {{durationSeconds: 60, eventsPerSecond: 5000}}\n        - {{durationSeconds: 3600, eventsPerSecond: 1000}}\n  \
         workers: {{replicas: 1}}\n",
        ns.name
    );
    apply_ok(&ns.name, &pipeline_yaml("burst", &topic, &spec));
    wait_ready(&ns.name, "burst", &op);
    // Seen once in CI: 2 pods right after Ready (a second ReplicaSet during
    // the first seconds); the steady state before the step is one generator.
    wait_for(
        Duration::from_secs(30),
        "one generator before the step",
        || match generator_pods(&ns.name).len() {
            1 => Ok(()),
            n => Err(format!("{n} generator pods")),
        },
    );

    // kwok's pods produce nothing: what the status reports as produced since
    // the profile started is what the test writes to the topic itself.
    let records: Vec<(&[u8], Option<&[u8]>)> = (0..25).map(|_| (&b"k"[..], Some(&b"{}"[..]))).collect();
    shopstream_testkit::produce_raw(&topic, 0, &records);

    // The step: 5 generators wanted; 3 fit beside the 250m worker on 2x2 CPU,
    // 2 wait as Unschedulable.
    wait_for(Duration::from_secs(60), "generators Pending for capacity", || {
        let pods = generator_pods(&ns.name);
        let pending = pods.iter().filter(|p| unschedulable(p)).count();
        match replicas(&ns.name, "burst-generator") {
            Some((5, 3)) if pods.len() == 5 && pending == 2 => Ok(()),
            other => Err(format!("{other:?}, {} pods, {pending} unschedulable", pods.len())),
        }
    });
    let p = get("pipeline", &ns.name, "burst").unwrap();
    assert_eq!(p["status"]["generator"]["stage"], 1);
    assert_eq!(p["status"]["generator"]["desiredReplicas"], 5);
    // Reported in the step: the 25 records, against the profile's integral
    // (30 s x 1000/s, then 5000/s for part of the step's 60 s).
    assert_eq!(p["status"]["generator"]["producedTotal"], 25, "{}", p["status"]);
    let due = p["status"]["generator"]["expectedTotal"].as_i64().unwrap_or(0);
    assert!((30_000..330_000).contains(&due), "expectedTotal {due}");

    // What cluster-autoscaler would do: add nodes to the pool. They schedule.
    nodes.grow(&pool, 1, "2", Some(&taint));
    wait_for(
        Duration::from_secs(40),
        "all 5 generators Ready",
        || match replicas(&ns.name, "burst-generator") {
            Some((5, 5)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Stepping down frees the capacity again.
    wait_for(Duration::from_secs(90), "back to 1 generator", || {
        let pods = generator_pods(&ns.name);
        match replicas(&ns.name, "burst-generator") {
            Some((1, 1)) if pods.len() == 1 => Ok(()),
            other => Err(format!("{other:?}, {} pods", pods.len())),
        }
    });
    let g = &get("pipeline", &ns.name, "burst").unwrap()["status"]["generator"];
    assert!(g["expectedTotal"].as_i64() >= Some(330_000), "{g}");
    op.assert_clean_log();
}
