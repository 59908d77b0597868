//! The Kafka consumer side: group membership and where each partition resumes.
//!
//! On every assignment the worker reads the new partitions' next offsets from
//! PostgreSQL (the source of truth, committed with the data) and assigns them
//! at exactly those offsets. Rebalancing is incremental by default (the KIP-848
//! consumer protocol, or cooperative-sticky on the classic one): a revocation
//! names only the partitions that move, and the others keep loading.
//!
//! Fencing per partition: each held partition carries a lease (the assignment
//! epoch it was acquired in). A batch records the lease of every partition in
//! it; the loading thread checks the leases under the warehouse lock before it
//! writes, and the revocation callback takes the same lock before it gives the
//! partitions up, so a batch only ever writes partitions that are still ours
//! (a revoked one is left out of it, rebuilt from its records). The conditional offset advance in the warehouse (`db.rs`) is
//! the second guard, against another worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};
use shopstream_common::error::chain;
use shopstream_common::kafka::{self, KafkaArgs, KafkaError};

use crate::db::Db;
use crate::load::{Stream, reset_position, stored_positions};
use crate::metrics::Metrics;

/// Where a held partition resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Next offset to load; equals the stored offset in `ingest_offsets`.
    pub next: i64,
    /// False until `next` has been read from the warehouse and the consumer
    /// positioned there; records of unsynced partitions are not loaded.
    pub synced: bool,
    /// The assignment epoch this partition was acquired in: a batch polled
    /// under another lease of the partition must not be loaded.
    pub lease: u64,
}

/// How long reading a partition's watermarks may take at assignment.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);

/// How the worker takes part in the consumer group (`--group-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GroupProtocol {
    /// KIP-848 (`group.protocol=consumer`): incremental, assignment computed by
    /// the broker; a member's session timeout is the broker's setting.
    #[default]
    Consumer,
    /// Classic protocol with the cooperative-sticky assignor: incremental.
    Cooperative,
    /// Classic protocol with the range assignor: every rebalance revokes every
    /// partition of every member first (stop-the-world).
    Eager,
}

/// State shared by the loading loop and the rebalance callback (which runs
/// inside `poll`, on the loop's own thread).
pub struct Shared {
    pub stream: Stream,
    /// Held by the loading thread for a whole batch: health checks and the
    /// consumer thread read `connected` instead, never this lock.
    db: Mutex<Option<Db>>,
    /// Whether `db` holds a connection; kept in step by [`Shared::set_db`].
    connected: AtomicBool,
    pub partitions: Mutex<BTreeMap<i32, Position>>,
    /// Bumped on every assignment or revocation; new leases are drawn from it.
    pub epoch: AtomicU64,
    pub joined: AtomicBool,
    pub migrated: AtomicBool,
    /// Latest high watermark per partition, from librdkafka statistics.
    pub high_watermarks: Mutex<HashMap<i32, i64>>,
    /// When the consumer loop last ran, committed, and since when a held
    /// partition has waited to be positioned: the liveness watchdog's input.
    pub progress: Mutex<Progress>,
    /// Offsets the Kafka group acknowledged, per partition (from the commit callback).
    pub acked: Mutex<HashMap<i32, i64>>,
    pub metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(stream: Stream, metrics: Metrics) -> Self {
        Self {
            stream,
            db: Mutex::new(None),
            connected: AtomicBool::new(false),
            partitions: Mutex::new(BTreeMap::new()),
            epoch: AtomicU64::new(0),
            joined: AtomicBool::new(false),
            migrated: AtomicBool::new(false),
            high_watermarks: Mutex::new(HashMap::new()),
            acked: Mutex::new(HashMap::new()),
            progress: Mutex::new(Progress::new(Instant::now())),
            metrics,
        }
    }

    pub fn db(&self) -> MutexGuard<'_, Option<Db>> {
        lock(&self.db)
    }

    /// Install or drop the connection under a guard already held.
    pub fn set_db(&self, guard: &mut MutexGuard<'_, Option<Db>>, db: Option<Db>) {
        self.connected.store(db.is_some(), Ordering::SeqCst);
        **guard = db;
    }

    /// Take the connection out (to drop it on a plain thread).
    pub fn take_db(&self) -> Option<Db> {
        let mut guard = self.db();
        let db = guard.take();
        self.connected.store(false, Ordering::SeqCst);
        db
    }

    /// Lock-free: whether a warehouse connection is installed.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub fn partitions(&self) -> MutexGuard<'_, BTreeMap<i32, Position>> {
        lock(&self.partitions)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Readiness: warehouse reachable, migrations applied, group joined.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.migrated.load(Ordering::SeqCst) {
            return Err("warehouse migrations not applied yet".into());
        }
        // Never the warehouse lock: a batch can hold it for as long as a
        // lock wait lasts, and probes must answer at once.
        if !self.connected() {
            return Err("warehouse unreachable".into());
        }
        if !self.joined.load(Ordering::SeqCst) {
            return Err("consumer group not joined yet".into());
        }
        Ok(())
    }

    /// Liveness: `Err` when this worker cannot make progress by itself (a
    /// restart gives it a fresh consumer and connection).
    pub fn liveness(&self, stall: Duration) -> Result<(), String> {
        let progress = *lock(&self.progress);
        stalled(
            &progress,
            self.metrics.lag_total.get(),
            self.connected(),
            Instant::now(),
            stall,
        )
    }

    /// Whether some held partition waits to be positioned.
    pub fn any_unsynced(&self) -> bool {
        self.partitions().values().any(|p| !p.synced)
    }

    /// Forget positions: the loop re-reads them from the warehouse and seeks.
    pub fn mark_unsynced(&self) {
        for pos in self.partitions().values_mut() {
            pos.synced = false;
        }
    }
}

/// What the watchdog knows of the loop's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The consumer loop's last turn.
    pub beat: Instant,
    /// The last committed batch (start-up until the first one).
    pub committed: Instant,
    /// Since when some held partition has not been positioned.
    pub unsynced_since: Option<Instant>,
}

impl Progress {
    pub fn new(now: Instant) -> Self {
        Self {
            beat: now,
            committed: now,
            unsynced_since: None,
        }
    }

    /// One turn of the loop; `unsynced`: a held partition waits to be positioned.
    pub fn beat(&mut self, now: Instant, unsynced: bool) {
        self.beat = now;
        self.unsynced_since = if unsynced {
            self.unsynced_since.or(Some(now))
        } else {
            None
        };
    }
}

/// The liveness decision. A worker is stuck when its loop stopped turning,
/// when a held partition stayed unpositioned, or when it has lag and a
/// warehouse connection yet commits nothing, each for longer than `stall`.
/// (Without a connection the warehouse is down: a restart would not help,
/// and readiness already says so.)
pub fn stalled(p: &Progress, lag: i64, connected: bool, now: Instant, stall: Duration) -> Result<(), String> {
    let age = |t: Instant| now.saturating_duration_since(t);
    if age(p.beat) > stall {
        return Err(format!("the consumer loop has not run for {:?}", age(p.beat)));
    }
    if let Some(since) = p.unsynced_since
        && age(since) > stall
    {
        return Err(format!("partitions not positioned for {:?}", age(since)));
    }
    if connected && lag > 0 && age(p.committed) > stall {
        return Err(format!(
            "lag of {lag} records but nothing committed for {:?}",
            age(p.committed)
        ));
    }
    Ok(())
}

/// Where a partition must restart when its stored offset does not fit the
/// topic: beyond the end means the topic was deleted and created again under
/// the same name (its offsets start over), so loading resumes at the new
/// topic's start; `None` when the stored offset is a position in this topic.
pub fn restart_at(stored: i64, low: i64, high: i64) -> Option<i64> {
    (stored > high).then_some(low)
}

/// Stored offsets of `partitions`, each checked against the topic's
/// watermarks and reset in the warehouse when the topic was recreated.
pub fn checked_positions(
    consumer: &BaseConsumer<WorkerContext>,
    db: &mut Db,
    shared: &Shared,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, postgres::Error> {
    let mut stored = stored_positions(db, &shared.stream, partitions)?;
    let topic = &shared.stream.topic;
    for (p, next) in stored.iter_mut() {
        if *next == 0 {
            continue;
        }
        let (low, high) = match consumer.fetch_watermarks(topic, *p, WATERMARK_TIMEOUT) {
            Ok(w) => w,
            Err(e) => {
                // Unknown: keep the stored offset; the next assignment checks again.
                tracing::debug!(partition = p, error = %e, "cannot read watermarks");
                continue;
            }
        };
        let Some(restart) = restart_at(*next, low, high) else {
            continue;
        };
        tracing::error!(
            topic = %topic, partition = p, stored = *next, high_watermark = high, restart_at = restart,
            "stored offset is beyond the end of the topic: it was deleted and created again; loading the new topic from its start"
        );
        if reset_position(db, &shared.stream, *p, *next, restart)? {
            shared.metrics.offsets_reset.inc();
            *next = restart;
        }
    }
    Ok(stored)
}

/// The partitions of a batch no longer held under the lease they were polled
/// with (revoked, or revoked and assigned again since).
pub fn lost_partitions(held: &BTreeMap<i32, Position>, batch: &BTreeMap<i32, u64>) -> Vec<i32> {
    batch
        .iter()
        .filter(|(p, lease)| held.get(p).is_none_or(|pos| pos.lease != **lease))
        .map(|(p, _)| *p)
        .collect()
}

pub struct WorkerContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for WorkerContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        kafka::log_client_error(&error, reason);
    }

    /// librdkafka's periodic statistics carry each partition's high
    /// watermark, which gives the lag without extra broker round trips.
    fn stats(&self, statistics: Statistics) {
        let topic = &self.shared.stream.topic;
        let Some(t) = statistics.topics.get(topic) else {
            return;
        };
        let mut highs = lock(&self.shared.high_watermarks);
        for (p, part) in &t.partitions {
            if *p >= 0 && part.hi_offset >= 0 {
                highs.insert(*p, part.hi_offset);
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                let mut all = TopicPartitionList::new();
                for p in self.shared.partitions().keys() {
                    all.add_partition(&self.shared.stream.topic, *p);
                }
                self.revoke(consumer, &all);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // Kafka offsets only feed lag tools and the scaler; the warehouse holds
        // the truth. A failed commit is sent again by the periodic re-commit.
        match result {
            Ok(()) => {
                let mut acked = lock(&self.shared.acked);
                for e in offsets.elements_for_topic(&self.shared.stream.topic) {
                    if let Offset::Offset(o) = e.offset() {
                        acked.insert(e.partition(), o);
                    }
                }
            }
            Err(e) => {
                self.shared.metrics.kafka_commit_failures.inc();
                tracing::debug!(error = %e, "committing offsets to the Kafka group failed; retrying");
            }
        }
    }
}

fn incremental(consumer: &BaseConsumer<WorkerContext>) -> bool {
    matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative)
}

impl WorkerContext {
    /// Newly assigned partitions (all of them with the eager protocol) start at
    /// the offsets stored in the warehouse.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let shared = &self.shared;
        let topic = shared.stream.topic.clone();
        let ids: Vec<i32> = tpl
            .elements_for_topic(&topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let stored = match shared.db().as_mut() {
            Some(db) => checked_positions(consumer, db, shared, &ids).map_err(|e| {
                shared.metrics.db_errors.inc();
                chain(&e)
            }),
            None => Err("no warehouse connection".to_string()),
        };
        let lease = shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let mut added = BTreeMap::new();
        match &stored {
            Ok(map) => {
                for p in &ids {
                    let next = map.get(p).copied().unwrap_or(0);
                    if let Err(e) = tpl.set_partition_offset(&topic, *p, Offset::Offset(next)) {
                        tracing::error!(partition = p, error = %e, "cannot set the start offset");
                    }
                    added.insert(
                        *p,
                        Position {
                            next,
                            synced: true,
                            lease,
                        },
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stored offsets; partitions wait until the warehouse is back");
                for p in &ids {
                    added.insert(
                        *p,
                        Position {
                            next: 0,
                            synced: false,
                            lease,
                        },
                    );
                }
            }
        }
        let held = {
            let mut partitions = shared.partitions();
            partitions.extend(added.iter().map(|(p, pos)| (*p, *pos)));
            partitions.len()
        };
        tracing::info!(partitions = ?added, held, "partitions assigned; resuming at the offsets stored in the warehouse");
        shared.metrics.assigned_partitions.set(held as i64);
        shared.metrics.rebalances.inc();
        shared.joined.store(true, Ordering::SeqCst);
        let assigned = if incremental(consumer) {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        };
        if let Err(e) = assigned {
            tracing::error!(error = %e, "assigning partitions failed");
        }
    }

    /// Give up the listed partitions (all of them with the eager protocol).
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        let topic = &shared.stream.topic;
        let revoked: Vec<i32> = tpl
            .elements_for_topic(topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let held = {
            // The warehouse lock first: a batch being written finishes (its
            // partitions are still ours), and none starts with stale leases.
            let _db = shared.db();
            let mut partitions = shared.partitions();
            for p in &revoked {
                partitions.remove(p);
            }
            shared.epoch.fetch_add(1, Ordering::SeqCst);
            partitions.len()
        };
        tracing::info!(partitions = ?revoked, held, "partitions revoked");
        shared.metrics.assigned_partitions.set(held as i64);
        shared.metrics.rebalances.inc();
        for p in &revoked {
            let _ = shared
                .metrics
                .partition_lag
                .remove_label_values(&[&p.to_string()]);
        }
        let unassigned = if incremental(consumer) {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = unassigned {
            tracing::error!(error = %e, "unassigning partitions failed");
        }
    }
}

pub struct ConsumerSettings<'a> {
    pub kafka: &'a KafkaArgs,
    pub group: &'a str,
    pub client_id: &'a str,
    pub protocol: GroupProtocol,
    /// Classic protocol only: with `consumer` the broker sets it.
    pub session_timeout: Duration,
    pub max_poll_interval: Duration,
}

/// A group consumer tuned for low-latency micro-batches.
pub fn create(
    settings: &ConsumerSettings<'_>,
    shared: Arc<Shared>,
) -> Result<BaseConsumer<WorkerContext>, KafkaError> {
    let mut cfg = settings.kafka.client_config()?;
    cfg.set("group.id", settings.group)
        .set("client.id", settings.client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "max.poll.interval.ms",
            settings.max_poll_interval.as_millis().to_string(),
        );
    let classic = |cfg: &mut ClientConfig, assignor: &str| {
        cfg.set("group.protocol", "classic")
            .set("partition.assignment.strategy", assignor)
            .set(
                "session.timeout.ms",
                settings.session_timeout.as_millis().to_string(),
            )
            // Each step of a rebalance reaches the members on a heartbeat, and
            // the partitions being rebalanced wait for it: keep it short.
            .set(
                "heartbeat.interval.ms",
                (settings.session_timeout.as_millis() / 4)
                    .clamp(100, 500)
                    .to_string(),
            );
    };
    match settings.protocol {
        // Session timeout and heartbeats are the broker's group settings here.
        GroupProtocol::Consumer => {
            cfg.set("group.protocol", "consumer");
        }
        GroupProtocol::Cooperative => classic(&mut cfg, "cooperative-sticky"),
        GroupProtocol::Eager => classic(&mut cfg, "range"),
    }
    // A fetch otherwise waits up to 500 ms even when data is ready.
    cfg.set("fetch.wait.max.ms", "20")
        // Bound the prefetch buffer (memory), but when it is full back off only
        // briefly: the default 1 s stalls a fast consumer to ~50k records/s.
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.queue.backoff.ms", "10")
        .set("statistics.interval.ms", "1000");
    cfg.create_with_context(WorkerContext { shared })
        .map_err(|source| KafkaError::Client {
            brokers: settings.kafka.brokers.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_fails_liveness_only_when_the_worker_is_stuck() {
        let t0 = Instant::now();
        let stall = Duration::from_secs(120);
        let s = Duration::from_secs;
        let at = |beat: u64, committed: u64, unsynced: Option<u64>| Progress {
            beat: t0 + s(beat),
            committed: t0 + s(committed),
            unsynced_since: unsynced.map(|u| t0 + s(u)),
        };
        // (progress, lag, connected, now, alive?)
        let cases = [
            (at(299, 299, None), 0, true, 300, true),       // busy and current
            (at(299, 0, None), 0, true, 300, true),         // idle: nothing to commit
            (at(299, 0, None), 50, true, 300, false),       // lag, a connection, no commit
            (at(299, 0, None), 50, false, 300, true),       // the warehouse is down: not ours to fix
            (at(299, 250, None), 50, true, 300, true),      // committed recently
            (at(100, 299, None), 0, true, 300, false),      // the loop stopped turning
            (at(299, 299, Some(200)), 0, true, 300, true),  // unsynced, still within the bound
            (at(299, 299, Some(100)), 0, true, 300, false), // unsynced for good
        ];
        for (i, (p, lag, connected, now, alive)) in cases.into_iter().enumerate() {
            let got = stalled(&p, lag, connected, t0 + s(now), stall);
            assert_eq!(got.is_ok(), alive, "case {i}: {got:?}");
        }
        let mut p = Progress::new(t0);
        p.beat(t0 + s(5), true);
        p.beat(t0 + s(9), true);
        assert_eq!(
            p.unsynced_since,
            Some(t0 + s(5)),
            "the first unsynced turn counts"
        );
        p.beat(t0 + s(10), false);
        assert_eq!(p.unsynced_since, None);
    }

    #[test]
    fn a_stored_offset_beyond_the_end_restarts_at_the_new_topics_start() {
        // (stored, low, high, restart)
        let cases = [
            (0, 0, 0, None),          // new partition
            (500, 0, 500, None),      // caught up
            (400, 0, 500, None),      // behind
            (1000, 0, 500, Some(0)),  // topic recreated with fewer records
            (1000, 20, 30, Some(20)), // recreated, and retention already trimmed it
            (10, 20, 30, None),       // behind retention: Kafka's own reset applies
        ];
        for (stored, low, high, restart) in cases {
            assert_eq!(
                restart_at(stored, low, high),
                restart,
                "{stored} in [{low}, {high}]"
            );
        }
    }

    #[test]
    fn a_batch_loses_exactly_the_partitions_whose_lease_changed() {
        let pos = |lease| Position {
            next: 0,
            synced: true,
            lease,
        };
        let held: BTreeMap<i32, Position> = [(0, pos(3)), (1, pos(3)), (2, pos(7))].into();
        // (partition -> lease the batch was polled under, partitions lost)
        type Case = (&'static [(i32, u64)], &'static [i32]);
        let cases: [Case; 6] = [
            (&[], &[]),                        // nothing in the batch
            (&[(0, 3), (1, 3)], &[]),          // kept partitions, same leases
            (&[(0, 3), (2, 7)], &[]),          // one partition added later: its own lease
            (&[(0, 3), (5, 3)], &[5]),         // a partition revoked, the other kept
            (&[(2, 3)], &[2]),                 // revoked and re-assigned since
            (&[(0, 3), (1, 3), (2, 6)], &[2]), // mixed: one lease changed
        ];
        for (batch, lost) in cases {
            let batch: BTreeMap<i32, u64> = batch.iter().copied().collect();
            assert_eq!(lost_partitions(&held, &batch), lost, "{batch:?}");
        }
    }
}
