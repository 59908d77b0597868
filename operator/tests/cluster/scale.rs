//! Scale: `kubectl scale spl` moves the worker Deployment through the CRD's
//! scale subresource, and an autoscaling/v2 HPA aimed at the Pipeline is
//! accepted and reads that subresource.

use std::time::Duration;

use crate::harness::*;

#[test]
fn e2e_kubectl_scale_and_an_hpa_use_the_scale_subresource() {
    let ns = Namespace::new("e2e-scale").with_warehouse_secret();
    let op = Operator::start(&OperatorArgs::scoped(shared_release(), &ns.name));
    let topic = dns_unique("e2e-scale");
    apply_ok(
        &ns.name,
        &pipeline_yaml(
            "shop",
            &topic,
            "  generator: {eventsPerSecond: 100}\n  workers: {replicas: 1}\n",
        ),
    );
    wait_ready(&ns.name, "shop", &op);
    assert_eq!(replicas(&ns.name, "shop-worker"), Some((1, 1)));

    kubectl_ok(&["scale", "spl", "shop", "-n", &ns.name, "--replicas=3"]);
    wait_for(Duration::from_secs(60), "3 workers", || {
        let p = get("pipeline", &ns.name, "shop").ok_or("no Pipeline")?;
        match (
            replicas(&ns.name, "shop-worker"),
            p["status"]["workers"]["replicas"].as_i64(),
        ) {
            (Some((3, 3)), Some(3)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // What `kubectl scale` and an HPA read: the scale subresource.
    let path = format!(
        "/apis/shopstream.dev/v1alpha1/namespaces/{}/pipelines/shop/scale",
        ns.name
    );
    let scale: serde_json::Value = serde_json::from_str(&kubectl_ok(&["get", "--raw", &path])).expect("JSON");
    assert_eq!(scale["spec"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["replicas"], 3, "{scale}");
    assert!(
        scale["status"]["selector"]
            .as_str()
            .unwrap_or_default()
            .contains("app.kubernetes.io/component=worker"),
        "{scale}"
    );

    let hpa = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: shop-workers}
spec:
  scaleTargetRef: {apiVersion: shopstream.dev/v1alpha1, kind: Pipeline, name: shop}
  minReplicas: 1
  maxReplicas: 4
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}
"#;
    apply_ok(&ns.name, hpa);
    // The HPA controller found the Pipeline's scale subresource (there is no
    // metrics server here, so it cannot compute a utilization: that is all).
    let h = wait_for(Duration::from_secs(90), "HPA read the scale subresource", || {
        let h = get("hpa", &ns.name, "shop-workers").ok_or("no HPA")?;
        match condition(&h, "AbleToScale") {
            Some((s, r, _)) if s == "True" && r == "SucceededGetScale" => Ok(h),
            other => Err(format!("{other:?} {}", h["status"])),
        }
    });
    assert_eq!(h["status"]["currentReplicas"], 3, "{}", h["status"]);
    op.assert_clean_log();
}
