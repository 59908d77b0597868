//! The Kafka consumer side: group membership and where each partition resumes.
//!
//! On every assignment the worker reads the partitions' next offsets from
//! PostgreSQL (the source of truth, committed with the data) and assigns the
//! partitions at exactly those offsets. The eager protocol revokes everything
//! before a new assignment, and the loading loop only polls between batches,
//! so a rebalance never lands in the middle of a transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use shopstream_common::error::chain;
use shopstream_common::kafka::{KafkaArgs, KafkaError};

use crate::db::Db;
use crate::load::{Stream, stored_positions};
use crate::metrics::Metrics;

/// Where a held partition resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Next offset to load; equals the stored offset in `ingest_offsets`.
    pub next: i64,
    /// False until `next` has been read from the warehouse and the consumer
    /// positioned there; records of unsynced partitions are not loaded.
    pub synced: bool,
}

/// State shared by the loading loop and the rebalance callback (which runs
/// inside `poll`, on the loop's own thread).
pub struct Shared {
    pub stream: Stream,
    pub db: Mutex<Option<Db>>,
    pub partitions: Mutex<BTreeMap<i32, Position>>,
    /// Bumped on every assignment or revocation; a batch started under an
    /// older epoch is discarded.
    pub epoch: AtomicU64,
    pub joined: AtomicBool,
    pub migrated: AtomicBool,
    /// Latest high watermark per partition, from librdkafka statistics.
    pub high_watermarks: Mutex<HashMap<i32, i64>>,
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
            partitions: Mutex::new(BTreeMap::new()),
            epoch: AtomicU64::new(0),
            joined: AtomicBool::new(false),
            migrated: AtomicBool::new(false),
            high_watermarks: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    pub fn db(&self) -> MutexGuard<'_, Option<Db>> {
        lock(&self.db)
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
        if self.db().is_none() {
            return Err("warehouse unreachable".into());
        }
        if !self.joined.load(Ordering::SeqCst) {
            return Err("consumer group not joined yet".into());
        }
        Ok(())
    }

    /// Forget positions: the loop re-reads them from the warehouse and seeks.
    pub fn mark_unsynced(&self) {
        for pos in self.partitions().values_mut() {
            pos.synced = false;
        }
    }
}

pub struct WorkerContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for WorkerContext {
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
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer),
            other => {
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                self.revoke(consumer);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        // Kafka offsets only feed lag tools; the warehouse holds the truth.
        if let Err(e) = result {
            tracing::debug!(error = %e, "committing offsets to the Kafka group failed");
        }
    }
}

impl WorkerContext {
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let shared = &self.shared;
        let topic = shared.stream.topic.clone();
        let ids: Vec<i32> = tpl
            .elements_for_topic(&topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let stored = match shared.db().as_mut() {
            Some(db) => stored_positions(db, &shared.stream, &ids).map_err(|e| {
                shared.metrics.db_errors.inc();
                chain(&e)
            }),
            None => Err("no warehouse connection".to_string()),
        };
        let mut positions = BTreeMap::new();
        match &stored {
            Ok(map) => {
                for p in &ids {
                    let next = map.get(p).copied().unwrap_or(0);
                    if let Err(e) = tpl.set_partition_offset(&topic, *p, Offset::Offset(next)) {
                        tracing::error!(partition = p, error = %e, "cannot set the start offset");
                    }
                    positions.insert(*p, Position { next, synced: true });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stored offsets; partitions wait until the warehouse is back");
                for p in &ids {
                    positions.insert(
                        *p,
                        Position {
                            next: 0,
                            synced: false,
                        },
                    );
                }
            }
        }
        tracing::info!(partitions = ?positions, "partitions assigned; resuming at the offsets stored in the warehouse");
        shared.metrics.assigned_partitions.set(ids.len() as i64);
        shared.metrics.rebalances.inc();
        *shared.partitions() = positions;
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        shared.joined.store(true, Ordering::SeqCst);
        if let Err(e) = consumer.assign(tpl) {
            tracing::error!(error = %e, "assigning partitions failed");
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>) {
        let shared = &self.shared;
        let held: Vec<i32> = shared.partitions().keys().copied().collect();
        tracing::info!(partitions = ?held, "partitions revoked");
        shared.partitions().clear();
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        shared.metrics.assigned_partitions.set(0);
        shared.metrics.rebalances.inc();
        for p in held {
            let _ = shared
                .metrics
                .partition_lag
                .remove_label_values(&[&p.to_string()]);
        }
        if let Err(e) = consumer.unassign() {
            tracing::error!(error = %e, "unassigning partitions failed");
        }
    }
}

pub struct ConsumerSettings<'a> {
    pub kafka: &'a KafkaArgs,
    pub group: &'a str,
    pub client_id: &'a str,
    pub session_timeout: Duration,
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
        // Eager: a rebalance revokes everything first (see the module docs).
        .set("partition.assignment.strategy", "range")
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (settings.session_timeout.as_millis() / 4).max(100).to_string(),
        )
        // A fetch otherwise waits up to 500 ms even when data is ready.
        .set("fetch.wait.max.ms", "20")
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
