//! End-to-end against a real cluster. Ignored unless you opt in:
//!
//! ```text
//! kind create cluster            # or: k3d cluster create
//! # a Kafka reachable from the cluster, and a PostgreSQL URL for the Secret:
//! export SHOPSTREAM_E2E_KAFKA=kafka.kafka:9092
//! export SHOPSTREAM_E2E_DATABASE_URL=postgres://loader:…@postgres.db:5432/shop
//! export SHOPSTREAM_E2E_IMAGE=ghcr.io/shopstream/shopstream:0.1.0   # loaded into the cluster
//! KUBECONFIG=~/.kube/config cargo test -p shopstream-operator --test e2e_cluster -- --ignored
//! ```
//!
//! It installs the CRD, runs the operator in-process against the cluster,
//! applies `examples/pipeline.yaml` in a fresh namespace and waits for the
//! Pipeline to be Ready with its topic, generators and workers.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use shopstream_model::Pipeline;
use shopstream_operator::controller::{self, RunSettings};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set for the cluster test"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and SHOPSTREAM_E2E_* and pass --ignored"]
async fn a_pipeline_becomes_ready_on_a_real_cluster() {
    env("KUBECONFIG");
    let client = Client::try_default().await.expect("cluster reachable");
    let ns = format!("shopstream-e2e-{}", std::process::id());
    let apply = PatchParams::apply("shopstream-e2e").force();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("pipelines.shopstream.dev", &apply, &Patch::Apply(Pipeline::crd()))
        .await
        .expect("CRD installed");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "warehouse"},
                "stringData": {"url": env("SHOPSTREAM_E2E_DATABASE_URL")}
            }))
            .unwrap(),
        )
        .await
        .expect("secret");

    let operator = tokio::spawn(controller::run(RunSettings {
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        watch_namespace: Some(ns.clone()),
        default_image: env("SHOPSTREAM_E2E_IMAGE"),
        concurrency: 4,
        scale_interval: Duration::from_secs(10),
        kafka_timeout: Duration::from_secs(10),
        leader_election: None,
        lease_duration: Duration::from_secs(15),
        identity: "e2e".into(),
    }));

    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pipeline.yaml")).unwrap();
    let mut p: Pipeline = serde_yaml::from_str(&text).unwrap();
    p.spec.kafka.bootstrap_servers = env("SHOPSTREAM_E2E_KAFKA");
    p.spec.kafka.topic = Some(format!("{ns}-events"));
    p.spec.kafka.delete_topic_on_delete = true;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns);
    pipelines
        .create(&PostParams::default(), &p)
        .await
        .expect("pipeline created");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let current = pipelines.get("shop").await.unwrap();
        let ready = current.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            let s = current.status.unwrap();
            assert!(s.workers.unwrap().ready_replicas >= 1);
            assert!(s.generator.unwrap().ready_replicas >= 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not Ready in time: {:?}",
            current.status
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    pipelines.delete("shop", &DeleteParams::default()).await.unwrap();
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    operator.abort();
}
