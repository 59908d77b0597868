//! Leader election on a Lease, against the fake API server: one leader, a
//! standby that waits, takeover on release or expiry.

mod support;

use std::time::Duration;

use serde_json::json;
use shopstream_operator::leader::{Claim, LeaseLock};
use support::{FakeApi, serve};

#[tokio::test]
async fn one_leads_the_other_waits_and_takes_over() {
    let (client, server) = serve(FakeApi::new(vec![]));
    let term = Duration::from_secs(15);
    let a = LeaseLock::new(client.clone(), "ops", "shopstream-operator", "replica-a", term);
    let b = LeaseLock::new(client.clone(), "ops", "shopstream-operator", "replica-b", term);

    assert_eq!(a.try_acquire().await.unwrap(), Claim::Held);
    assert_eq!(
        b.try_acquire().await.unwrap(),
        Claim::HeldBy("replica-a".into()),
        "standby waits"
    );
    assert_eq!(a.try_acquire().await.unwrap(), Claim::Held, "the leader renews");
    assert_eq!(b.try_acquire().await.unwrap(), Claim::HeldBy("replica-a".into()));

    a.release().await.unwrap();
    assert_eq!(
        b.try_acquire().await.unwrap(),
        Claim::Held,
        "released: the standby takes over"
    );
    assert_eq!(a.try_acquire().await.unwrap(), Claim::HeldBy("replica-b".into()));
    drop((a, b, client));
    let calls = server.await.unwrap();
    let takeover = calls
        .iter()
        .rev()
        .find(|c| c.method == "PUT" && c.body["spec"]["holderIdentity"] == "replica-b")
        .expect("the standby wrote the lease");
    assert_eq!(takeover.body["spec"]["leaseTransitions"], 1);
    assert_eq!(
        takeover.path,
        "/apis/coordination.k8s.io/v1/namespaces/ops/leases/shopstream-operator"
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let mut api = FakeApi::new(vec![]);
    api.leases.insert(
        "shopstream-operator".into(),
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "shopstream-operator", "namespace": "ops", "resourceVersion": "7"},
            "spec": {"holderIdentity": "crashed-replica", "leaseDurationSeconds": 15,
                     "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 3}
        }),
    );
    let (client, server) = serve(api);
    let b = LeaseLock::new(
        client.clone(),
        "ops",
        "shopstream-operator",
        "replica-b",
        Duration::from_secs(15),
    );
    assert_eq!(b.try_acquire().await.unwrap(), Claim::Held);
    drop((b, client));
    let calls = server.await.unwrap();
    let put = calls.iter().find(|c| c.method == "PUT").unwrap();
    assert_eq!(put.body["spec"]["leaseTransitions"], 4);
    assert_eq!(
        put.body["metadata"]["resourceVersion"], "7",
        "optimistic concurrency on the version read"
    );
}
