//! Polling micro-batches and positioning partitions: where the next batch
//! of each held partition starts (its cursor, ahead of the stored position
//! by the batch in flight), which polled records belong in a batch, and
//! seeking partitions that wait to be positioned to their stored offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::Offset;
use shopstream_common::error::chain;
use shopstream_common::shutdown::StopFlag;

use crate::consumer::{self, Shared, WorkerContext};
use crate::loader::Polled;
use crate::retry::Retry;
use crate::transform::{Batch, OwnedRecord};

/// How long an idle poll blocks before the loop looks around again.
const IDLE_POLL: Duration = Duration::from_millis(100);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// Log at most one consumer error per this interval (a down broker repeats).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct Limits {
    pub max_records: usize,
    pub max_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    lease: u64,
    next: i64,
}

/// The consuming thread's view of its partitions between polls.
pub struct Poller {
    /// Where the next batch starts, per held partition, with the partition's
    /// lease: ahead of the stored position by whatever batch is in flight.
    cursor: HashMap<i32, Cursor>,
    /// The assignment epoch the cursors follow.
    epoch: u64,
    last_error_log: Option<Instant>,
}

impl Default for Poller {
    fn default() -> Self {
        Self {
            cursor: HashMap::new(),
            epoch: u64::MAX,
            last_error_log: None,
        }
    }
}

impl Poller {
    /// Forget the cursors: positions are re-read from the warehouse.
    pub fn clear(&mut self) {
        self.cursor.clear();
    }

    /// The assignment changed: partitions kept under the same lease keep
    /// their cursor (a batch may be in flight), new ones start from the
    /// positions read from the warehouse, revoked ones are dropped.
    fn refresh(&mut self, shared: &Shared) {
        let epoch = shared.epoch();
        if epoch == self.epoch {
            return;
        }
        let previous = std::mem::take(&mut self.cursor);
        self.cursor = shared
            .partitions()
            .iter()
            .filter(|(_, p)| p.synced)
            .map(|(id, p)| {
                let kept = previous.get(id).filter(|c| c.lease == p.lease);
                let next = kept.map_or(p.next, |c| c.next);
                (*id, Cursor { lease: p.lease, next })
            })
            .collect();
        self.epoch = epoch;
    }

    /// Poll one micro-batch, with the stored offset each of its partitions
    /// builds on and the lease it was polled under. Records are kept as
    /// polled until the batch is complete, so a partition revoked meanwhile
    /// only loses its own records (its new owner starts from the stored
    /// offset) and the kept partitions go on without a pause or a seek.
    pub fn poll_batch(
        &mut self,
        consumer: &BaseConsumer<WorkerContext>,
        shared: &Shared,
        limits: &Limits,
        stop: &StopFlag,
    ) -> Polled {
        self.refresh(shared);
        let mut polled = Polled::default();
        let mut deadline: Option<Instant> = None;
        while polled.records.len() < limits.max_records {
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                None => IDLE_POLL,
            };
            let message = consumer.poll(timeout);
            self.follow_rebalance(shared, &mut polled);
            match message {
                None => {
                    if deadline.is_none() {
                        break; // idle: let the loop check stop, reconnects, lag
                    }
                }
                Some(Err(e)) => {
                    let last = &mut self.last_error_log;
                    if last.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL) {
                        tracing::warn!(error = %e, "Kafka consumer error (retrying)");
                        *last = Some(Instant::now());
                    }
                    if deadline.is_none() {
                        break;
                    }
                }
                Some(Ok(m)) => {
                    if self.take(&m, &mut polled) {
                        deadline.get_or_insert_with(|| Instant::now() + limits.max_wait);
                    }
                }
            }
            if stop.is_set() {
                break; // finish the batch in hand, then stop
            }
        }
        polled.batch = Batch::from_records(&polled.records);
        shared
            .metrics
            .records_consumed
            .inc_by(polled.batch.records as u64);
        polled
    }

    /// After a poll: if the assignment changed, drop the records of revoked
    /// partitions from the batch being built and refresh the cursors.
    /// Returns whether it changed.
    pub fn follow_rebalance(&mut self, shared: &Shared, polled: &mut Polled) -> bool {
        if shared.epoch() == self.epoch {
            return false;
        }
        let lost = consumer::lost_partitions(&shared.partitions(), &polled.leases);
        if !lost.is_empty() {
            tracing::debug!(partitions = ?lost, "dropping the records of revoked partitions from the batch");
            polled.without(&lost);
        }
        self.refresh(shared);
        true
    }

    /// Add a polled record to the batch if it is the next one of a held,
    /// positioned partition; otherwise (unsynced, foreign, or a stale
    /// prefetch from before a seek) it is not ours to load.
    pub fn take(&mut self, m: &BorrowedMessage<'_>, polled: &mut Polled) -> bool {
        let p = m.partition();
        let Some(cursor) = self.cursor.get_mut(&p) else {
            return false;
        };
        if m.offset() < cursor.next {
            return false;
        }
        polled.expected.entry(p).or_insert(cursor.next);
        polled.leases.entry(p).or_insert(cursor.lease);
        cursor.next = m.offset() + 1;
        polled.records.push(OwnedRecord {
            partition: p,
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
        });
        true
    }

    /// Position unsynced partitions at their stored offsets (when the
    /// warehouse's backoff allows).
    pub fn resync(&mut self, consumer: &BaseConsumer<WorkerContext>, shared: &Shared, retry: &mut Retry) {
        if !retry.due() {
            return;
        }
        let unsynced: Vec<i32> = shared
            .partitions()
            .iter()
            .filter(|(_, p)| !p.synced)
            .map(|(id, _)| *id)
            .collect();
        if unsynced.is_empty() {
            return;
        }
        let stored = {
            let mut db = shared.db();
            let Some(conn) = db.as_mut() else { return };
            match consumer::checked_positions(consumer, conn, shared, &unsynced) {
                Ok(s) => s,
                Err(e) => {
                    shared.metrics.db_errors.inc();
                    if conn.is_closed() {
                        shared.set_db(&mut db, None);
                    }
                    drop(db);
                    let wait = retry.failed();
                    tracing::warn!(error = %chain(&e), retry_in = ?wait, "cannot read stored offsets");
                    return;
                }
            }
        };
        let topic = &shared.stream.topic;
        let mut partitions = shared.partitions();
        let mut seek_failed = false;
        for p in &unsynced {
            let Some(pos) = partitions.get_mut(p) else {
                continue; // revoked meanwhile
            };
            let next = stored.get(p).copied().unwrap_or(0);
            // Seeking a partition whose fetcher has not started yet fails
            // ("erroneous state"); it stays unsynced and is tried again.
            if let Err(e) = consumer.seek(topic, *p, Offset::Offset(next), SEEK_TIMEOUT) {
                tracing::debug!(partition = p, error = %e, "seek failed; retrying");
                seek_failed = true;
                continue;
            }
            pos.next = next;
            pos.synced = true;
            self.cursor.insert(
                *p,
                Cursor {
                    lease: pos.lease,
                    next,
                },
            );
        }
        if seek_failed {
            // Not the warehouse's backoff: the next loop (within IDLE_POLL) tries again.
            tracing::debug!("some partitions could not be positioned yet");
        }
        tracing::info!(partitions = ?*partitions, "positions re-read from the warehouse");
    }
}
