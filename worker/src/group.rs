//! What the Kafka group and the metrics see of the positions: the offsets
//! committed to the group after each warehouse commit (and again
//! periodically), and the lag per partition. The warehouse stays the source
//! of truth; these feed lag tools and the operator's scaler.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::consumer::{Shared, WorkerContext};
use crate::transform::OffsetRange;

/// Every held position is committed to the group again this often.
pub const RECOMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Records behind the high watermark, per held partition and in total.
pub fn update_lag(shared: &Shared) {
    let highs = shared
        .high_watermarks
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    let mut total = 0;
    for (p, pos) in shared.partitions().iter() {
        if let Some(&high) = highs.get(p) {
            let lag = (high - pos.next).max(0);
            total += lag;
            shared
                .metrics
                .partition_lag
                .with_label_values(&[&p.to_string()])
                .set(lag);
        }
    }
    shared.metrics.lag_total.set(total);
}

/// After a batch committed in the warehouse: advance the held positions and
/// commit the same offsets to the Kafka group (for lag tools and the
/// operator's scaler; the warehouse stays the source of truth). Only
/// partitions still held under the batch's lease: a worker that lost one
/// must not move the group's offset back under its new owner.
pub fn commit_to_kafka(
    shared: &Shared,
    consumer: &BaseConsumer<WorkerContext>,
    offsets: &BTreeMap<i32, OffsetRange>,
    leases: &BTreeMap<i32, u64>,
) {
    let mut tpl = TopicPartitionList::new();
    {
        let mut partitions = shared.partitions();
        for (p, range) in offsets {
            if let Some(pos) = partitions.get_mut(p)
                && leases.get(p) == Some(&pos.lease)
            {
                pos.next = pos.next.max(range.next());
                let _ = tpl.add_partition_offset(&shared.stream.topic, *p, Offset::Offset(pos.next));
            }
        }
    }
    commit_async(shared, consumer, &tpl);
}

/// Commit the positions of held partitions that the group has not
/// acknowledged (a failed commit, a partition just taken over), and all of
/// them every [`RECOMMIT_INTERVAL`] in case a former owner's late commit
/// landed after ours.
pub fn recommit(shared: &Shared, consumer: &BaseConsumer<WorkerContext>, all: bool) {
    let mut tpl = TopicPartitionList::new();
    {
        let acked = shared.acked.lock().map(|a| a.clone()).unwrap_or_default();
        for (p, pos) in shared.partitions().iter() {
            if pos.synced && (all || acked.get(p) != Some(&pos.next)) {
                let _ = tpl.add_partition_offset(&shared.stream.topic, *p, Offset::Offset(pos.next));
            }
        }
    }
    commit_async(shared, consumer, &tpl);
}

fn commit_async(shared: &Shared, consumer: &BaseConsumer<WorkerContext>, tpl: &TopicPartitionList) {
    if tpl.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(tpl, CommitMode::Async) {
        shared.metrics.kafka_commit_failures.inc();
        tracing::debug!(error = %e, "committing offsets to Kafka failed; retrying");
    }
}
