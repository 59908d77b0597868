//! The reconciler against a fake API server (kube-rs's tower-test mock
//! pattern) and an in-memory Kafka: every call's method, path and body.

mod support;

use std::sync::Arc;

use kube::runtime::controller::Action;
use serde_json::Value;
use shopstream_operator::reconcile::reconcile;
use support::{Call, FakeApi, FakeKafka, ctx, pipeline, serve};

const SHOP: &str = r#"
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {name: shop, namespace: demo, uid: 11111111-2222-3333-4444-555555555555, generation: 1}
spec:
  kafka: {bootstrapServers: "kafka:9092", partitions: 4}
  warehouse: {connectionSecretRef: {name: warehouse, key: url}, schema: shop}
  generator: {eventsPerSecond: 3000, ratePerReplica: 1000}
  workers: {replicas: 2}
"#;

fn with_finalizer(yaml: &str) -> String {
    yaml.replace(
        "generation: 1}",
        "generation: 1, finalizers: [shopstream.dev/cleanup]}",
    )
}

/// Reconcile once; return the action and every API call made.
async fn run(p: shopstream_model::Pipeline, kafka: FakeKafka, ready: bool) -> (Action, Vec<Call>) {
    let mut api = FakeApi::new(vec![p.clone()]);
    api.ready = ready;
    let (client, server) = serve(api);
    let c = ctx(client, kafka);
    let action = reconcile(Arc::new(p), c.clone()).await.expect("reconciles");
    drop(c);
    (action, server.await.unwrap())
}

fn lines(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::line).collect()
}

fn find<'a>(calls: &'a [Call], suffix: &str) -> &'a Call {
    calls
        .iter()
        .find(|c| c.path.ends_with(suffix))
        .unwrap_or_else(|| panic!("no call to …{suffix} in {:?}", lines(calls)))
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

#[tokio::test]
async fn a_new_pipeline_first_gets_the_finalizer() {
    let (action, calls) = run(pipeline(SHOP), FakeKafka::default(), false).await;
    assert_eq!(
        lines(&calls),
        ["PATCH /apis/shopstream.dev/v1alpha1/namespaces/demo/pipelines/shop"]
    );
    let ops = calls[0].body.to_string();
    assert!(ops.contains("shopstream.dev/cleanup"), "{ops}");
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn then_topic_deployments_status_and_an_event() {
    let kafka = FakeKafka::default();
    let (action, calls) = run(pipeline(&with_finalizer(SHOP)), kafka.clone(), true).await;
    assert_eq!(
        lines(&calls),
        [
            "POST /apis/events.k8s.io/v1/namespaces/demo/events",
            "PATCH /apis/apps/v1/namespaces/demo/deployments/shop-generator",
            "PATCH /apis/apps/v1/namespaces/demo/deployments/shop-worker",
            "PATCH /apis/shopstream.dev/v1alpha1/namespaces/demo/pipelines/shop/status",
        ]
    );
    assert_eq!(
        kafka.topics.lock().unwrap()["shop-events"],
        4,
        "topic created with the spec's partitions"
    );
    let event = &calls[0].body;
    assert_eq!(event["reason"], "TopicCreated");
    assert_eq!(event["regarding"]["name"], "shop");

    let generator = find(&calls, "/deployments/shop-generator");
    assert!(
        generator.query.contains("fieldManager=shopstream-operator")
            && generator.query.contains("force=true")
    );
    assert_eq!(generator.body["spec"]["replicas"], 3, "ceil(3000 / 1000)");
    assert_eq!(
        generator.body["metadata"]["ownerReferences"][0]["kind"],
        "Pipeline"
    );
    let worker = find(&calls, "/deployments/shop-worker");
    assert_eq!(worker.body["spec"]["replicas"], 2);

    let status = &find(&calls, "/pipelines/shop/status").body["status"];
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(
        condition(status, "TopicReady")["message"],
        "topic shop-events has 4 partitions"
    );
    assert!(
        status["workers"]["selector"]
            .as_str()
            .unwrap()
            .contains("app.kubernetes.io/component=worker")
    );
    assert_eq!(status["generator"]["targetRate"], 3000.0);
    assert!(
        matches!(action, a if a != Action::await_change()),
        "requeues for the resync"
    );
}

#[tokio::test]
async fn a_spec_change_updates_the_deployments_and_says_why() {
    let kafka = FakeKafka::default();
    kafka.topics.lock().unwrap().insert("shop-events".into(), 4);
    // Last reconcile ran 2 workers; the spec now asks for 5.
    let mut p = pipeline(&with_finalizer(
        &SHOP.replace("workers: {replicas: 2}", "workers: {replicas: 5}"),
    ));
    p.status = Some(
        serde_json::from_value(serde_json::json!({
            "phase": "Running",
            "workers": {"replicas": 2, "readyReplicas": 2, "desiredReplicas": 2, "lag": 0, "selector": "x"}
        }))
        .unwrap(),
    );
    let (_, calls) = run(p, kafka, true).await;
    assert_eq!(
        find(&calls, "/deployments/shop-worker").body["spec"]["replicas"],
        5
    );
    let event = calls
        .iter()
        .find(|c| c.path.ends_with("/events"))
        .expect("a scaling event");
    assert_eq!(event.body["reason"], "Scaled");
    assert!(event.body["note"].as_str().unwrap().contains("2 -> 5"));
    let status = &find(&calls, "/pipelines/shop/status").body["status"];
    assert_eq!(status["workers"]["desiredReplicas"], 5);
    assert!(
        status["workers"]["lastScaleReason"]
            .as_str()
            .unwrap()
            .contains("spec.workers.replicas")
    );
}

#[tokio::test]
async fn an_invalid_spec_gets_a_condition_and_an_event_and_no_deployments() {
    let bad = with_finalizer(&SHOP.replace("schema: shop}", "schema: shop, extra: 1}"))
        .replace("partitions: 4", "partitions: 0");
    let kafka = FakeKafka::default();
    let (action, calls) = run(pipeline(&bad), kafka.clone(), true).await;
    assert_eq!(
        lines(&calls),
        [
            "POST /apis/events.k8s.io/v1/namespaces/demo/events",
            "PATCH /apis/shopstream.dev/v1alpha1/namespaces/demo/pipelines/shop/status",
        ]
    );
    assert_eq!(calls[0].body["type"], "Warning");
    assert_eq!(calls[0].body["reason"], "InvalidSpec");
    let status = &calls[1].body["status"];
    assert_eq!(status["phase"], "Failed");
    let ready = condition(status, "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(ready["message"].as_str().unwrap().contains("kafka.partitions"));
    assert!(
        kafka.topics.lock().unwrap().is_empty(),
        "no topic for an invalid spec"
    );
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn paused_scales_everything_to_zero_and_keeps_the_topic() {
    let kafka = FakeKafka::default();
    kafka.topics.lock().unwrap().insert("shop-events".into(), 4);
    let paused =
        with_finalizer(&SHOP.replace("workers: {replicas: 2}", "workers: {replicas: 2}\n  paused: true"));
    let (_, calls) = run(pipeline(&paused), kafka.clone(), true).await;
    assert_eq!(
        find(&calls, "/deployments/shop-generator").body["spec"]["replicas"],
        0
    );
    assert_eq!(
        find(&calls, "/deployments/shop-worker").body["spec"]["replicas"],
        0
    );
    let status = &find(&calls, "/pipelines/shop/status").body["status"];
    assert_eq!(status["phase"], "Paused");
    assert_eq!(condition(status, "Ready")["reason"], "Paused");
    assert!(kafka.deleted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn shrinking_partitions_is_refused_with_a_reason() {
    let kafka = FakeKafka::default();
    kafka.topics.lock().unwrap().insert("shop-events".into(), 8);
    let (_, calls) = run(pipeline(&with_finalizer(SHOP)), kafka.clone(), true).await;
    let event = find(&calls, "/events");
    assert_eq!(event.body["reason"], "CannotShrinkTopic");
    let status = &find(&calls, "/pipelines/shop/status").body["status"];
    let topic = condition(status, "TopicReady");
    assert_eq!(
        (topic["status"].as_str(), topic["reason"].as_str()),
        (Some("False"), Some("CannotShrink"))
    );
    assert_eq!(status["topic"]["partitions"], 8);
    assert_eq!(kafka.topics.lock().unwrap()["shop-events"], 8);
}

#[tokio::test]
async fn deletion_cleans_up_and_removes_the_finalizer() {
    let kafka = FakeKafka::default();
    kafka.topics.lock().unwrap().insert("shop-events".into(), 4);
    let doomed = with_finalizer(SHOP)
        .replace(
            "generation: 1,",
            "generation: 1, deletionTimestamp: \"2026-11-30T10:00:00Z\",",
        )
        .replace("partitions: 4}", "partitions: 4, deleteTopicOnDelete: true}");
    let (action, calls) = run(pipeline(&doomed), kafka.clone(), true).await;
    assert_eq!(
        lines(&calls),
        [
            "POST /apis/events.k8s.io/v1/namespaces/demo/events",
            "PATCH /apis/shopstream.dev/v1alpha1/namespaces/demo/pipelines/shop",
        ]
    );
    assert_eq!(calls[0].body["reason"], "TopicDeleted");
    assert!(
        calls[1].body.to_string().contains("remove"),
        "finalizer removed: {}",
        calls[1].body
    );
    assert_eq!(*kafka.deleted.lock().unwrap(), ["shop-events"]);
    assert_eq!(action, Action::await_change());

    // Without deleteTopicOnDelete the topic stays.
    let kafka = FakeKafka::default();
    kafka.topics.lock().unwrap().insert("shop-events".into(), 4);
    let keep = with_finalizer(SHOP).replace(
        "generation: 1,",
        "generation: 1, deletionTimestamp: \"2026-11-30T10:00:00Z\",",
    );
    let (_, calls) = run(pipeline(&keep), kafka.clone(), true).await;
    assert_eq!(
        lines(&calls),
        ["PATCH /apis/shopstream.dev/v1alpha1/namespaces/demo/pipelines/shop"]
    );
    assert!(kafka.deleted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn autoscaling_scales_workers_to_the_lag_and_explains() {
    let kafka = FakeKafka::default();
    kafka.topics.lock().unwrap().insert("shop-events".into(), 4);
    *kafka.offsets.lock().unwrap() = shopstream_operator::kafka_ops::Offsets {
        high_watermarks: vec![30_000, 30_000, 30_000, 30_000],
        committed: vec![Some(10_000), Some(10_000), Some(10_000), Some(10_000)],
    };
    let auto = with_finalizer(&SHOP.replace(
        "workers: {replicas: 2}",
        "workers: {autoscaling: {enabled: true, minReplicas: 1, maxReplicas: 10, targetLagPerReplica: 20000}}",
    ));
    let mut p = pipeline(&auto);
    p.status = Some(
        serde_json::from_value(serde_json::json!({
            "workers": {"replicas": 1, "readyReplicas": 1, "desiredReplicas": 1, "lag": 0, "selector": "x"}
        }))
        .unwrap(),
    );
    let (action, calls) = run(p, kafka, true).await;
    // lag 80000 / 20000 = 4, at most doubling from 1: 2.
    assert_eq!(
        find(&calls, "/deployments/shop-worker").body["spec"]["replicas"],
        2
    );
    let event = calls.iter().find(|c| c.path.ends_with("/events")).unwrap();
    assert_eq!(event.body["reason"], "ScaledUp");
    assert!(event.body["note"].as_str().unwrap().contains("lag 80000"));
    let status = &find(&calls, "/pipelines/shop/status").body["status"];
    assert_eq!(status["workers"]["lag"], 80_000);
    assert_eq!(condition(status, "Scaling")["reason"], "ScalingUp");
    assert_eq!(
        action,
        Action::requeue(std::time::Duration::from_secs(15)),
        "looks again at the scale interval"
    );
}

#[tokio::test]
async fn the_dashboard_is_deployed_with_a_service_and_removed_when_disabled() {
    let kafka = FakeKafka::default();
    kafka.topics.lock().unwrap().insert("shop-events".into(), 4);
    let enabled = SHOP.replace(
        "workers: {replicas: 2}",
        "workers: {replicas: 2}\n  dashboard: {enabled: true}",
    );
    let (_, calls) = run(pipeline(&with_finalizer(&enabled)), kafka.clone(), true).await;
    let deployment = find(&calls, "/deployments/shop-dashboard");
    assert_eq!(deployment.method, "PATCH");
    assert_eq!(deployment.body["spec"]["replicas"], 1);
    let service = find(&calls, "/services/shop-dashboard");
    assert_eq!(service.method, "PATCH");
    assert!(service.query.contains("fieldManager=shopstream-operator"));
    assert_eq!(service.body["spec"]["ports"][0]["port"], 80);
    let status = &find(&calls, "/pipelines/shop/status").body["status"];
    assert_eq!(status["dashboard"]["service"], "shop-dashboard");
    assert_eq!(status["dashboard"]["readyReplicas"], 1);

    // Switched off: both objects go, once, and the status forgets them.
    let mut disabled = pipeline(&with_finalizer(SHOP));
    disabled.status = Some(
        serde_json::from_value(serde_json::json!({
            "phase": "Running",
            "dashboard": {"service": "shop-dashboard", "readyReplicas": 1}
        }))
        .unwrap(),
    );
    let (_, calls) = run(disabled, kafka.clone(), true).await;
    let deletes: Vec<String> = lines(&calls)
        .into_iter()
        .filter(|l| l.starts_with("DELETE"))
        .collect();
    assert_eq!(
        deletes,
        [
            "DELETE /apis/apps/v1/namespaces/demo/deployments/shop-dashboard",
            "DELETE /api/v1/namespaces/demo/services/shop-dashboard",
        ]
    );
    let status = &find(&calls, "/pipelines/shop/status").body["status"];
    assert!(status["dashboard"].is_null(), "{status}");

    // Never enabled: nothing is touched.
    let (_, calls) = run(pipeline(&with_finalizer(SHOP)), kafka, true).await;
    assert!(
        calls.iter().all(|c| !c.path.contains("dashboard")),
        "{:?}",
        lines(&calls)
    );
}
