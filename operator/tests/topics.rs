//! Topic management against the real broker: create, grow, refuse to
//! shrink, delete; and the offsets the autoscaler reads.

use std::time::Duration;

use shopstream_common::topics::TopicChange;
use shopstream_operator::kafka_ops::{KafkaAccess, KafkaOps, RdKafkaOps};
use shopstream_testkit::{brokers, produce_raw, unique};

#[tokio::test(flavor = "multi_thread")]
async fn create_grow_and_refuse_to_shrink() {
    let ops = RdKafkaOps::new(Duration::from_secs(10));
    let access = KafkaAccess::plaintext(brokers());
    let topic = unique("op_topic");

    let steps: [(i32, TopicChange); 3] = [
        (4, TopicChange::Created { partitions: 4 }),
        (4, TopicChange::Unchanged { partitions: 4 }),
        (
            2,
            TopicChange::CannotShrink {
                current: 4,
                requested: 2,
            },
        ),
    ];
    for (partitions, want) in steps {
        let got = ops
            .ensure_topic(&access, &topic, partitions, None)
            .await
            .expect("ensure");
        assert_eq!(got, want, "asking for {partitions} partitions");
    }
    // Growing adds partitions (CreatePartitions); the offsets follow once the
    // broker's metadata has caught up (it is updated asynchronously).
    let grown = ops.ensure_topic(&access, &topic, 6, None).await.expect("ensure");
    assert_eq!(grown, TopicChange::Grown { from: 4, to: 6 });
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let offsets = ops.offsets(&access, &topic, "op-test-group", None).await.unwrap();
        if offsets.high_watermarks.len() == 6 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the grown topic still shows {} partitions",
            offsets.high_watermarks.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ops.ensure_topic(&access, &topic, 6, None).await.unwrap(),
        TopicChange::Unchanged { partitions: 6 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_topic_removes_that_topic_only_and_twice_is_fine() {
    let ops = RdKafkaOps::new(Duration::from_secs(10));
    let access = KafkaAccess::plaintext(brokers());
    let (doomed, neighbour) = (unique("op_delete"), unique("op_keep"));
    ops.ensure_topic(&access, &doomed, 2, None).await.unwrap();
    ops.ensure_topic(&access, &neighbour, 2, None).await.unwrap();
    ops.delete_topic(&access, &doomed).await.expect("delete");
    let admin = shopstream_common::topics::TopicAdmin::new(
        &shopstream_common::kafka::KafkaArgs::plaintext(brokers()),
        Duration::from_secs(10),
    )
    .unwrap();
    shopstream_testkit::wait_until(Duration::from_secs(20), || {
        admin.partitions(&doomed).ok() == Some(None)
    });
    assert_eq!(
        admin.partitions(&neighbour).unwrap(),
        Some(2),
        "the other topic stays"
    );
    ops.delete_topic(&access, &doomed)
        .await
        .expect("deleting a deleted topic is not an error");
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_report_high_watermarks_and_lag_for_a_group() {
    let ops = RdKafkaOps::new(Duration::from_secs(10));
    let access = KafkaAccess::plaintext(brokers());
    let topic = unique("op_offsets");
    ops.ensure_topic(&access, &topic, 2, None).await.unwrap();
    let records: Vec<(&[u8], Option<&[u8]>)> = (0..7).map(|_| (&b"k"[..], Some(&b"v"[..]))).collect();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || produce_raw(&t, 1, &records))
        .await
        .unwrap();
    let offsets = ops
        .offsets(&access, &topic, &unique("nobody"), None)
        .await
        .unwrap();
    assert_eq!(offsets.high_watermarks, vec![0, 7]);
    assert_eq!(offsets.committed, vec![None, None], "nothing committed yet");
    assert_eq!(offsets.lag(), vec![0, 7]);
    assert_eq!(offsets.produced_since, None, "not asked for");

    // Messages since a moment, by their timestamps: the 7 above are before it.
    let moment = chrono::Utc::now() + chrono::Duration::milliseconds(2);
    shopstream_testkit::wait_until(Duration::from_secs(1), || chrono::Utc::now() > moment);
    let later: Vec<(&[u8], Option<&[u8]>)> = (0..5).map(|_| (&b"k"[..], Some(&b"v"[..]))).collect();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        produce_raw(&t, 0, &later[..2]);
        produce_raw(&t, 1, &later[2..]);
    })
    .await
    .unwrap();
    let offsets = ops
        .offsets(&access, &topic, &unique("nobody"), Some(moment))
        .await
        .unwrap();
    assert_eq!(offsets.high_watermarks, vec![2, 10]);
    assert_eq!(offsets.produced_since, Some(5));
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    let offsets = ops
        .offsets(&access, &topic, &unique("nobody"), Some(future))
        .await
        .unwrap();
    assert_eq!(offsets.produced_since, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_cluster_is_an_error_not_a_hang() {
    let ops = RdKafkaOps::new(Duration::from_secs(2));
    let access = KafkaAccess::plaintext("127.0.0.1:1");
    let started = std::time::Instant::now();
    let err = ops.ensure_topic(&access, "t", 1, None).await.unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
