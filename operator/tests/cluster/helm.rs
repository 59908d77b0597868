//! Helm: the chart installs with the real Helm engine, its operator
//! Deployment becomes Ready on a kwok node, upgrades and uninstalls; with
//! `watchNamespace` its Role lets an operator run there and nowhere else.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[test]
fn e2e_helm_install_upgrade_uninstall_with_a_namespaced_role() {
    let team = Namespace::new("e2e-helm-team").with_warehouse_secret();
    let ops = dns_unique("e2e-helm-ops");
    let release = "ops";
    let fullname = "ops-shopstream";
    let values = json!({"watchNamespace": team.name, "image": {"tag": "e2e"}});

    let installed = helm("install", release, &ops, &values);
    assert_eq!(installed["status"], "deployed", "{installed}");
    // kwok plays the pod: scheduled on a simulated node, Ready.
    let pods = kubectl_json(&["get", "pods", "-n", &ops, "-l", "app.kubernetes.io/instance=ops"]);
    let pod = &pods["items"][0];
    assert!(
        pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("kwok-")),
        "{pod}"
    );
    assert_eq!(condition(pod, "Ready").map(|c| c.0).as_deref(), Some("True"));
    assert_eq!(replicas(&ops, fullname), Some((1, 1)));
    // watchNamespace: a Role in the team's namespace, no ClusterRole.
    assert!(get("role", &team.name, fullname).is_some());
    assert!(get("rolebinding", &team.name, fullname).is_some());
    let crs = kubectl(&["get", "clusterrole", fullname, "--ignore-not-found", "-o", "name"]);
    assert!(String::from_utf8_lossy(&crs.stdout).trim().is_empty());

    // The operator as the chart's ServiceAccount: works in the team's namespace…
    let rel = Release {
        name: release.into(),
        namespace: ops.clone(),
        service_account: fullname.into(),
    };
    let op = Operator::start(&OperatorArgs::scoped(&rel, &team.name));
    let topic = dns_unique("e2e-helm");
    apply_ok(
        &team.name,
        &pipeline_yaml("shop", &topic, "  generator: {eventsPerSecond: 100}\n"),
    );
    wait_ready(&team.name, "shop", &op);
    op.assert_clean_log();
    // …and may not touch Pipelines or Deployments anywhere else.
    let sa = format!("system:serviceaccount:{ops}:{fullname}");
    for (verb, what, ns) in [
        ("list", "pipelines.shopstream.dev", "default"),
        ("patch", "deployments.apps", "default"),
        ("get", "secrets", "default"),
        ("list", "pipelines.shopstream.dev", team.name.as_str()),
    ] {
        let out = kubectl(&["auth", "can-i", verb, what, "-n", ns, "--as", &sa]);
        let allowed = String::from_utf8_lossy(&out.stdout).trim() == "yes";
        assert_eq!(allowed, ns == team.name, "{sa} {verb} {what} in {ns}");
    }
    drop(op);

    // Upgrade: two replicas turn leader election on (its Role appears).
    let upgraded = helm(
        "upgrade",
        release,
        &ops,
        &json!({"watchNamespace": team.name, "image": {"tag": "e2e"}, "replicaCount": 2}),
    );
    assert_eq!(upgraded["revision"], 2, "{upgraded}");
    wait_for(
        Duration::from_secs(60),
        "two operator replicas ready",
        || match replicas(&ops, fullname) {
            Some((2, 2)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(get("role", &ops, &format!("{fullname}-leader")).is_some());
    let d = get("deployment", &ops, fullname).expect("Deployment");
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("SHOPSTREAM_LEADER_ELECTION"), "{env}");

    // Uninstall: the release's objects go; the CRD (and so the Pipelines) stay.
    helm("uninstall", release, &ops, &json!({}));
    wait_for(Duration::from_secs(60), "release objects removed", || {
        let left: Vec<String> = [
            get("deployment", &ops, fullname).map(|_| "deployment"),
            get("serviceaccount", &ops, fullname).map(|_| "serviceaccount"),
            get("role", &team.name, fullname).map(|_| "role"),
        ]
        .into_iter()
        .flatten()
        .map(String::from)
        .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(left.join(", "))
        }
    });
    assert!(get("pipeline", &team.name, "shop").is_some());
    kubectl_ok(&["get", "crd", "pipelines.shopstream.dev"]);
    let _ = kubectl(&["delete", "namespace", &ops, "--wait=false"]);
    // Nobody runs the finalizer now: let the namespace go.
    patch_pipeline(&team.name, "shop", r#"{"metadata":{"finalizers":null}}"#);
}
