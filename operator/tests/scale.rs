//! 200 Pipelines reconciled through the mock API layer: API calls per
//! Pipeline stay constant and the whole fleet reconciles quickly. Prints
//! the figures (`cargo test -p shopstream-operator --test scale -- --nocapture`).

mod support;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use shopstream_operator::reconcile::reconcile;
use support::{FakeApi, FakeKafka, ctx, pipeline, serve};

const PIPELINES: usize = 200;

fn manifest(i: usize) -> String {
    format!(
        r#"
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {{name: p{i}, namespace: fleet, uid: 00000000-0000-0000-0000-{i:012}, generation: 1}}
spec:
  kafka: {{bootstrapServers: "kafka:9092", partitions: 3}}
  warehouse: {{connectionSecretRef: {{name: warehouse, key: url}}, schema: s{i}}}
  generator: {{eventsPerSecond: 1000}}
  workers: {{autoscaling: {{enabled: true, maxReplicas: 3}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_pipelines_reconcile_with_constant_calls_each() {
    let pipelines: Vec<_> = (0..PIPELINES).map(|i| pipeline(&manifest(i))).collect();
    let (client, server) = serve(FakeApi::new(pipelines.clone()));
    let c = ctx(client, FakeKafka::default());
    let started = Instant::now();
    // Round 1 adds finalizers; round 2 (the watch event that follows) deploys.
    for round in 0..2 {
        let objects: Vec<_> = pipelines
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if round == 1 {
                    p.metadata.finalizers = Some(vec!["shopstream.dev/cleanup".into()]);
                }
                Arc::new(p)
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(objects)
            .map(|p| reconcile(p, c.clone()))
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(results.iter().all(Result::is_ok));
    }
    let took = started.elapsed();
    drop(c);
    let calls = server.await.unwrap();
    let per_pipeline = calls.len() as f64 / PIPELINES as f64;
    eprintln!(
        "{PIPELINES} pipelines: {} API calls ({per_pipeline:.1} per pipeline), {:.0} ms in total ({:.2} ms per pipeline)",
        calls.len(),
        took.as_secs_f64() * 1000.0,
        took.as_secs_f64() * 1000.0 / PIPELINES as f64,
    );
    // finalizer, TopicCreated event, 2 Deployments, status.
    assert_eq!(calls.len(), PIPELINES * 5);
    for i in [0, PIPELINES / 2, PIPELINES - 1] {
        let mine = calls
            .iter()
            .filter(|c| c.path.contains(&format!("/p{i}")))
            .count();
        assert_eq!(mine, 4, "calls naming p{i} (plus its event)");
    }
}
