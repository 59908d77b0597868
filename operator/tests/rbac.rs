//! The operator's RBAC, derived from the API calls it really makes: every
//! reconcile path, leader election and the controller's watches run against
//! the fake API server, each call becomes (API group, resource, verb), and
//! the result must equal `charts/shopstream/rbac-rules.json` — the file the
//! Helm chart renders its Role/ClusterRole from. A new call without its rule
//! fails here; a rule the code no longer needs fails too.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shopstream_operator::controller::drive;
use shopstream_operator::leader::LeaseLock;
use shopstream_operator::reconcile::reconcile;
use support::{Call, FakeApi, FakeKafka, ctx, pipeline, serve};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/shopstream/rbac-rules.json"
);

const SECURE: &str = r#"
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {name: secure, namespace: team, uid: 11111111-2222-3333-4444-555555555555, generation: 1,
           finalizers: [shopstream.dev/cleanup]}
spec:
  kafka:
    bootstrapServers: "kafka:9093"
    partitions: 3
    deleteTopicOnDelete: true
    tls: {enabled: true, caSecretRef: {name: kafka-ca, key: ca.pem}}
    sasl: {mechanism: SCRAM-SHA-512}
    credentialsSecretRef: {name: kafka-user}
  warehouse: {connectionSecretRef: {name: warehouse, key: url}, schema: secure}
  workers: {autoscaling: {enabled: true}}
"#;

/// (API group, resource) -> verbs, for one call.
fn required(call: &Call) -> Vec<(String, String, &'static str)> {
    let parts: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        _ => panic!("unexpected path {}", call.path),
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] => tail,
        tail => tail,
    };
    let (resource, named) = match rest {
        [r] => (r.to_string(), false),
        [r, _name] => (r.to_string(), true),
        [r, _name, sub] => (format!("{r}/{sub}"), true),
        _ => panic!("unexpected path {}", call.path),
    };
    let mut verbs = vec![match (call.method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if call.query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        (m, _) => panic!("unexpected method {m}"),
    }];
    // Server-side apply of a whole object creates it when it is missing.
    if call.method == "PATCH" && call.content_type.contains("apply-patch") && !resource.contains('/') {
        verbs.push("create");
    }
    let mut out: Vec<_> = verbs
        .into_iter()
        .map(|v| (group.clone(), resource.clone(), v))
        .collect();
    // Owner references with blockOwnerDeletion need update on the owner's finalizers.
    let blocks = call.body["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["blockOwnerDeletion"] == true && r["kind"] == "Pipeline")
        });
    if blocks {
        out.push(("shopstream.dev".into(), "pipelines/finalizers".into(), "update"));
    }
    out
}

fn rules(calls: &[Call]) -> Value {
    let mut by_resource: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for call in calls {
        for (group, resource, verb) in required(call) {
            by_resource.entry((group, resource)).or_default().insert(verb);
        }
    }
    Value::Array(
        by_resource
            .into_iter()
            .map(
                |((group, resource), verbs)| json!({"apiGroup": group, "resource": resource, "verbs": verbs}),
            )
            .collect(),
    )
}

async fn reconcile_all() -> Vec<Call> {
    let secure = pipeline(SECURE);
    let mut new = secure.clone();
    new.metadata.finalizers = None;
    let mut invalid = secure.clone();
    invalid.spec.kafka.partitions = 0;
    let mut doomed = secure.clone();
    doomed.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let mut api = FakeApi::new(vec![secure.clone()]);
    for (name, keys) in [
        ("kafka-user", vec![("username", "svc"), ("password", "pw")]),
        ("kafka-ca", vec![("ca.pem", "-----BEGIN CERTIFICATE-----")]),
    ] {
        api.secrets.insert(
            name.into(),
            keys.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        );
    }
    let (client, server) = serve(api);
    let kafka = FakeKafka::default();
    let c = ctx(client.clone(), kafka);
    // The dashboard switched on, then off again (its objects are removed).
    let mut with_dashboard = secure.clone();
    with_dashboard.spec.dashboard.enabled = true;
    let mut without_dashboard = secure.clone();
    without_dashboard.status = Some(shopstream_model::PipelineStatus {
        dashboard: Some(shopstream_model::pipeline::DashboardStatus {
            service: "secure-dashboard".into(),
            ready_replicas: 1,
        }),
        ..Default::default()
    });
    // New (finalizer), deploy (secrets, topic event), again (scaling), invalid
    // twice (the same event again: the recorder's series), deleted.
    for p in [
        new,
        secure.clone(),
        secure,
        with_dashboard,
        without_dashboard,
        invalid.clone(),
        invalid,
        doomed,
    ] {
        let _ = reconcile(Arc::new(p), c.clone()).await;
    }
    // The controller's watches.
    drive(client.clone(), None, c.clone(), 2, async {
        tokio::time::sleep(Duration::from_millis(300)).await
    })
    .await;
    drop((c, client));
    server.await.unwrap()
}

async fn lead() -> Vec<Call> {
    let (client, server) = serve(FakeApi::new(vec![]));
    let lock = LeaseLock::new(client.clone(), "ops", "shopstream", "me", Duration::from_secs(15));
    lock.try_acquire().await.unwrap();
    lock.try_acquire().await.unwrap();
    lock.release().await.unwrap();
    drop((lock, client));
    server.await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_grants_exactly_the_calls_the_operator_makes() {
    let derived = json!({"operator": rules(&reconcile_all().await), "leaderElection": rules(&lead().await)});
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(RULES).unwrap()).unwrap();
    assert!(
        derived == committed,
        "charts/shopstream/rbac-rules.json differs from the calls the operator makes.\nderived:\n{}",
        serde_json::to_string_pretty(&derived).unwrap()
    );
}
