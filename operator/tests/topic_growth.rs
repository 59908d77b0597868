//! Growing `spec.kafka.partitions` with the real broker behind the
//! reconciler (the API server is still the fake of `support`): the topic
//! really gains partitions (CreatePartitions), `TopicReady` and the status
//! report the new count, and the workers' ceiling follows it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shopstream_operator::kafka_ops::RdKafkaOps;
use shopstream_operator::reconcile::reconcile;
use shopstream_testkit::{brokers, produce_raw, unique};
use support::{Call, FakeApi, ctx, pipeline, serve};

fn manifest(topic: &str, partitions: i32, generation: i64) -> String {
    format!(
        r#"
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {{name: shop, namespace: demo, uid: 11111111-2222-3333-4444-555555555555, generation: {generation},
           finalizers: [shopstream.dev/cleanup]}}
spec:
  kafka: {{bootstrapServers: "{brokers}", topic: {topic}, partitions: {partitions}}}
  warehouse: {{connectionSecretRef: {{name: warehouse, key: url}}, schema: shop}}
  generator: {{eventsPerSecond: 100}}
  workers: {{autoscaling: {{enabled: true, minReplicas: 1, maxReplicas: 10, targetLagPerReplica: 10}}}}
status:
  workers: {{replicas: 4, readyReplicas: 4, desiredReplicas: 4, lag: 0, selector: x}}
"#,
        brokers = brokers()
    )
}

async fn reconcile_once(yaml: &str) -> Vec<Call> {
    let p = pipeline(yaml);
    let mut api = FakeApi::new(vec![p.clone()]);
    api.ready = true;
    let (client, server) = serve(api);
    let c = ctx(client, RdKafkaOps::new(Duration::from_secs(10)));
    reconcile(Arc::new(p), c.clone()).await.expect("reconciles");
    drop(c);
    server.await.unwrap()
}

fn body<'a>(calls: &'a [Call], suffix: &str) -> &'a Value {
    &calls
        .iter()
        .find(|c| c.path.ends_with(suffix))
        .unwrap_or_else(|| panic!("no call to …{suffix}"))
        .body
}

fn topic_ready(calls: &[Call]) -> Value {
    body(calls, "/pipelines/shop/status")["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "TopicReady")
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn growing_the_spec_grows_the_topic_and_lifts_the_workers_ceiling() {
    let topic = unique("op_grow");
    // First reconcile creates the topic with 3 partitions.
    reconcile_once(&manifest(&topic, 3, 1)).await;
    // 100 records waiting in each partition: lag 300, 30 workers wanted.
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let records: Vec<(&[u8], Option<&[u8]>)> = (0..100).map(|_| (&b"k"[..], Some(&b"v"[..]))).collect();
        for p in 0..3 {
            produce_raw(&t, p, &records);
        }
    })
    .await
    .unwrap();

    let calls = reconcile_once(&manifest(&topic, 3, 1)).await;
    assert_eq!(
        body(&calls, "/deployments/shop-worker")["spec"]["replicas"],
        3,
        "capped at the topic's 3 partitions"
    );

    let calls = reconcile_once(&manifest(&topic, 6, 2)).await;
    let status = &body(&calls, "/pipelines/shop/status")["status"];
    assert_eq!(status["topic"]["partitions"], 6);
    let ready = topic_ready(&calls);
    assert_eq!(ready["status"], "True");
    assert!(
        ready["message"].as_str().unwrap().contains("6 partitions"),
        "{ready}"
    );
    let event = calls
        .iter()
        .find(|c| c.path.ends_with("/events") && c.body["reason"] == "TopicGrown")
        .expect("a TopicGrown event");
    assert!(
        event.body["note"].as_str().unwrap().contains("from 3 to 6"),
        "{}",
        event.body
    );
    assert_eq!(
        body(&calls, "/deployments/shop-worker")["spec"]["replicas"],
        6,
        "the ceiling follows the grown topic (4 doubling to 8, capped at 6)"
    );
    // Shrinking back is refused, and says why.
    let calls = reconcile_once(&manifest(&topic, 4, 3)).await;
    let ready = topic_ready(&calls);
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("CannotShrink"))
    );
}
