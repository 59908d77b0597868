//! Topic management against the real broker: create, grow, refuse to
//! shrink; and the offsets the autoscaler reads.
//!
//! Deletion is tested against the mock API layer only: tansu 0.6's
//! DeleteTopics removes every topic of the cluster (its SQL filters on the
//! cluster alone), which would wreck the tests running beside this one.

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
    // Growing: Kafka adds partitions; a broker without CreatePartitions
    // (tansu 0.6, the development broker) refuses and says why.
    let grown = ops.ensure_topic(&access, &topic, 6, None).await.expect("ensure");
    let expected_partitions = match &grown {
        TopicChange::Grown { from: 4, to: 6 } => 6,
        TopicChange::CannotGrow {
            current: 4,
            requested: 6,
            reason,
        } => {
            assert!(reason.contains("not supported"), "{reason}");
            4
        }
        other => panic!("growing 4 -> 6 gave {other:?}"),
    };
    let offsets = ops.offsets(&access, &topic, "op-test-group").await.unwrap();
    assert_eq!(offsets.high_watermarks.len(), expected_partitions);
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
    let offsets = ops.offsets(&access, &topic, &unique("nobody")).await.unwrap();
    assert_eq!(offsets.high_watermarks, vec![0, 7]);
    assert_eq!(offsets.committed, vec![None, None], "nothing committed yet");
    assert_eq!(offsets.lag(), vec![0, 7]);
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
