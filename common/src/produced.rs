//! How many messages a topic gained since a moment, read from the broker:
//! the high watermark minus the first offset whose timestamp is at or after
//! the moment (Kafka's time index), summed over partitions. The generators
//! pace a load profile against it and the runtimes report it, so the figure
//! counts every pod's deliveries, including pods that have since gone.
//!
//! It assumes what Shopstream sets up: the Pipeline's generators are the
//! topic's only producers, messages carry their creation time, and retention
//! keeps everything since the moment.

use std::time::Duration;

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;

/// Messages in `topic` (its first `partitions` partitions) stamped at or after
/// `since_ms` (Unix milliseconds).
pub fn produced_since<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: usize,
    since_ms: i64,
    timeout: Duration,
) -> KafkaResult<u64> {
    // The high watermarks first: a message appended between the two reads
    // then cannot count without its offset being below the watermark read.
    let mut highs = Vec::with_capacity(partitions);
    for p in 0..partitions as i32 {
        highs.push(consumer.fetch_watermarks(topic, p, timeout)?.1);
    }
    let firsts = first_offsets_since(consumer, topic, partitions, since_ms, timeout)?;
    Ok(count(&highs, &firsts))
}

/// Per partition, the first offset stamped at or after `since_ms` (`None`:
/// nothing that recent yet). Read after the high watermarks it is counted
/// against (see [`count`]).
pub fn first_offsets_since<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: usize,
    since_ms: i64,
    timeout: Duration,
) -> KafkaResult<Vec<Option<i64>>> {
    let mut query = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        query.add_partition_offset(topic, p, Offset::Offset(since_ms))?;
    }
    let found = consumer.offsets_for_times(query, timeout)?;
    Ok((0..partitions as i32)
        .map(|p| match found.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            // End: no message that recent (yet).
            _ => None,
        })
        .collect())
}

/// Sum over partitions of `high - first`, where `first` is the first offset
/// at or after the moment (`None`: nothing since it).
pub fn count(highs: &[i64], firsts: &[Option<i64>]) -> u64 {
    highs
        .iter()
        .zip(firsts)
        .map(|(high, first)| match first {
            Some(first) => (high - first).max(0) as u64,
            None => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_was_appended_since_the_moment() {
        // (high watermarks, first offsets since, expected)
        type Case<'a> = (&'a [i64], &'a [Option<i64>], u64);
        let cases: &[Case<'_>] = &[
            (&[100, 50], &[Some(40), Some(50)], 60),
            (&[100, 50], &[None, None], 0),
            (&[100, 50], &[Some(0), None], 100),
            // The first recent message arrived after the watermark was read.
            (&[10], &[Some(12)], 0),
            (&[], &[], 0),
        ];
        for (highs, firsts, expected) in cases {
            assert_eq!(count(highs, firsts), *expected, "{highs:?} {firsts:?}");
        }
    }
}
