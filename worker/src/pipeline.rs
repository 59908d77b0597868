//! The consumer thread: poll micro-batches and hand them to the loading
//! thread, which commits each in one transaction; then tell Kafka. Any
//! failure re-positions the partitions at the offsets stored in the
//! warehouse, so nothing is lost or loaded twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use shopstream_common::error::chain;
use shopstream_common::shutdown::StopFlag;

use crate::consumer::{Position, Shared, WorkerContext};
use crate::db::{Db, DbSettings};
use crate::dims::DimCache;
use crate::load::{idle_positions, stored_positions};
use crate::loader::{self, Done, Job, Loader};
use crate::transform::{Batch, OffsetRange, RawRecord};

/// How long an idle poll blocks before the loop looks around again.
const IDLE_POLL: Duration = Duration::from_millis(100);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// Log at most one consumer error per this interval (a down broker repeats).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct Limits {
    pub max_records: usize,
    pub max_wait: Duration,
    /// How long to hold no partitions before checking the group is healthy.
    pub empty_assignment_check: Duration,
}

pub struct Pipeline {
    pub shared: Arc<Shared>,
    pub consumer: BaseConsumer<WorkerContext>,
    /// Connection settings (no group) for checking on the group from outside.
    pub probe_config: rdkafka::ClientConfig,
    pub db_settings: DbSettings,
    pub schema: shopstream_model::SchemaName,
    pub cache: DimCache,
    pub limits: Limits,
    pub stop: StopFlag,
}

/// Backoff for reconnecting and for retrying after a failed batch.
struct Retry {
    backoff: Box<dyn Iterator<Item = Duration> + Send>,
    not_before: Instant,
}

impl Retry {
    fn new() -> Self {
        Self {
            backoff: Box::new(Self::builder().build()),
            not_before: Instant::now(),
        }
    }

    fn builder() -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times()
    }

    fn failed(&mut self) -> Duration {
        let wait = self.backoff.next().unwrap_or(Duration::from_secs(10));
        self.not_before = Instant::now() + wait;
        wait
    }

    fn succeeded(&mut self) {
        self.backoff = Box::new(Self::builder().build());
        self.not_before = Instant::now();
    }

    fn due(&self) -> bool {
        Instant::now() >= self.not_before
    }
}

/// Consumer-thread state between batches.
struct State {
    retry: Retry,
    /// Where the next batch starts, per partition: ahead of the stored
    /// position by whatever batch is in flight.
    cursor: HashMap<i32, i64>,
    cursor_epoch: u64,
    generation: u64,
    in_flight: usize,
    /// Since when this worker has been in the group without partitions.
    empty_since: Option<Instant>,
    last_lag: Instant,
    last_error_log: Option<Instant>,
}

impl Pipeline {
    /// Run until the stop flag is set, then finish the batch in flight and
    /// leave the group cleanly.
    pub fn run(self) {
        let Pipeline {
            shared,
            consumer,
            probe_config,
            db_settings,
            schema,
            cache,
            limits,
            stop,
        } = self;
        let loader = match loader::spawn(shared.clone(), cache) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the loading thread");
                return;
            }
        };
        let consumer_loop = ConsumerLoop {
            shared,
            consumer,
            probe_config,
            db_settings,
            schema,
            limits,
            stop,
            loader,
            state: State {
                retry: Retry::new(),
                cursor: HashMap::new(),
                cursor_epoch: u64::MAX,
                generation: 0,
                in_flight: 0,
                empty_since: None,
                last_lag: Instant::now(),
                last_error_log: None,
            },
        };
        consumer_loop.run();
    }
}

struct ConsumerLoop {
    shared: Arc<Shared>,
    consumer: BaseConsumer<WorkerContext>,
    probe_config: rdkafka::ClientConfig,
    db_settings: DbSettings,
    schema: shopstream_model::SchemaName,
    limits: Limits,
    stop: StopFlag,
    loader: Loader,
    state: State,
}

impl ConsumerLoop {
    fn run(mut self) {
        while !self.stop.is_set() {
            self.collect(false);
            if self.needs_repair() {
                // Re-reading positions while a batch is in flight would race it.
                self.collect(true);
                self.ensure_connected();
                self.resync();
            }
            if let Some((batch, expected)) = self.accumulate()
                && !batch.is_empty()
            {
                let job = Job {
                    batch,
                    expected,
                    epoch: self.state.cursor_epoch,
                    generation: self.state.generation,
                };
                self.state.in_flight += 1;
                if self.loader.jobs.send(job).is_err() {
                    tracing::error!("the loading thread stopped unexpectedly");
                    break;
                }
            }
            if self.state.last_lag.elapsed() >= LAG_INTERVAL {
                self.update_lag();
                self.state.last_lag = Instant::now();
            }
            self.check_empty_assignment();
        }
        tracing::info!("stopping: finishing the batch in flight, then leaving the consumer group");
        let ConsumerLoop {
            shared,
            consumer,
            loader,
            mut state,
            ..
        } = self;
        drop(loader.jobs);
        for done in loader.done.iter() {
            state.in_flight = state.in_flight.saturating_sub(1);
            if let Done::Committed { offsets, epoch } = done {
                commit_to_kafka(&shared, &consumer, &offsets, epoch);
            }
        }
        let _ = loader.handle.join();
        consumer.unsubscribe();
        // Dropping the consumer closes it, which revokes and leaves the group.
        drop(consumer);
    }

    /// Self-healing for a stuck group: if this worker holds no partitions
    /// while a partition with records waiting has not advanced for a while,
    /// nobody is consuming it, so re-join to make the group re-assign. Kafka
    /// itself re-assigns on its own; this is a last line of defence against a
    /// coordinator that forms the group with an empty assignment (seen with
    /// tansu before our fix, see scripts/install-broker.sh). On a healthy
    /// group this never fires.
    fn check_empty_assignment(&mut self) {
        let joined = self.shared.joined.load(std::sync::atomic::Ordering::SeqCst);
        if !joined || !self.shared.partitions().is_empty() {
            self.state.empty_since = None;
            return;
        }
        let window = self.limits.empty_assignment_check;
        let since = *self.state.empty_since.get_or_insert_with(Instant::now);
        if since.elapsed() < window {
            return;
        }
        self.state.empty_since = Some(Instant::now());
        let stalled = self.stalled_partitions(window);
        if !stalled.is_empty() {
            tracing::warn!(
                partitions = ?stalled,
                "records are waiting in partitions nobody has advanced while this worker holds none; re-joining"
            );
            self.consumer.unsubscribe();
            let topic = self.shared.stream.topic.clone();
            if let Err(e) = self.consumer.subscribe(&[&topic]) {
                tracing::error!(error = %e, "re-subscribing failed");
            }
        }
    }

    /// Partitions with records beyond their stored offset and no commit for `window`.
    fn stalled_partitions(&self, window: Duration) -> Vec<i32> {
        let stream = &self.shared.stream;
        let stored: HashMap<i32, (i64, f64)> = {
            let mut db = self.shared.db();
            let Some(conn) = db.as_mut() else {
                return Vec::new();
            };
            match idle_positions(conn, stream) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::debug!(error = %chain(&e), "cannot read positions for the group check");
                    return Vec::new();
                }
            }
        };
        // A separate, group-less client, so the member's own session is untouched.
        let Ok(probe) = self.probe_config.create::<BaseConsumer>() else {
            return Vec::new();
        };
        let Ok(metadata) = probe.fetch_metadata(Some(&stream.topic), SEEK_TIMEOUT) else {
            return Vec::new();
        };
        let ids: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        ids.into_iter()
            .filter(|p| {
                let Ok((_, high)) = probe.fetch_watermarks(&stream.topic, *p, SEEK_TIMEOUT) else {
                    return false;
                };
                is_stalled(high, stored.get(p).copied(), window)
            })
            .collect()
    }

    fn needs_repair(&self) -> bool {
        self.shared.db().is_none() || self.shared.partitions().values().any(|p| !p.synced)
    }

    /// Handle finished batches; with `wait`, until none is in flight.
    fn collect(&mut self, wait: bool) {
        loop {
            let done = if wait && self.state.in_flight > 0 {
                match self.loader.done.recv() {
                    Ok(d) => d,
                    Err(_) => return,
                }
            } else {
                match self.loader.done.try_recv() {
                    Ok(d) => d,
                    Err(_) => return,
                }
            };
            self.state.in_flight = self.state.in_flight.saturating_sub(1);
            self.finished(done);
        }
    }

    fn finished(&mut self, done: Done) {
        match done {
            Done::Committed { offsets, epoch } => {
                self.state.retry.succeeded();
                commit_to_kafka(&self.shared, &self.consumer, &offsets, epoch);
            }
            Done::Fenced { partitions } => {
                tracing::warn!(
                    ?partitions,
                    "offsets moved under this worker; re-reading positions"
                );
                self.restart_from_stored();
            }
            Done::Failed {
                error,
                connection_lost,
            } => {
                let wait = self.state.retry.failed();
                if connection_lost {
                    tracing::error!(%error, retry_in = ?wait, "warehouse connection lost; batch rolled back");
                } else {
                    tracing::error!(%error, retry_in = ?wait, "batch failed and was rolled back; retrying");
                }
                self.restart_from_stored();
            }
            Done::Skipped => {}
        }
    }

    fn restart_from_stored(&mut self) {
        self.shared.mark_unsynced();
        self.state.cursor.clear();
        self.state.generation += 1;
    }

    fn ensure_connected(&mut self) {
        if self.shared.db().is_some() || !self.state.retry.due() {
            return;
        }
        match self
            .db_settings
            .connect()
            .and_then(|client| Db::prepare(client, &self.schema))
        {
            Ok(db) => {
                tracing::info!(database = %self.db_settings.target(), "warehouse connection restored");
                self.shared.metrics.db_reconnects.inc();
                *self.shared.db() = Some(db);
                // Positions may have moved while we were away: re-read them.
                self.restart_from_stored();
            }
            Err(e) => {
                let wait = self.state.retry.failed();
                tracing::warn!(error = %chain(&e), retry_in = ?wait, "warehouse unreachable");
            }
        }
    }

    /// Position unsynced partitions at their stored offsets.
    fn resync(&mut self) {
        if !self.state.retry.due() {
            return;
        }
        let unsynced: Vec<i32> = self
            .shared
            .partitions()
            .iter()
            .filter(|(_, p)| !p.synced)
            .map(|(id, _)| *id)
            .collect();
        if unsynced.is_empty() {
            return;
        }
        let stored = {
            let mut db = self.shared.db();
            let Some(conn) = db.as_mut() else { return };
            match stored_positions(conn, &self.shared.stream, &unsynced) {
                Ok(s) => s,
                Err(e) => {
                    self.shared.metrics.db_errors.inc();
                    if conn.is_closed() {
                        *db = None;
                    }
                    drop(db);
                    let wait = self.state.retry.failed();
                    tracing::warn!(error = %chain(&e), retry_in = ?wait, "cannot read stored offsets");
                    return;
                }
            }
        };
        let topic = self.shared.stream.topic.clone();
        let mut seek_failed = false;
        for p in &unsynced {
            let next = stored.get(p).copied().unwrap_or(0);
            if let Err(e) = self.consumer.seek(&topic, *p, Offset::Offset(next), SEEK_TIMEOUT) {
                tracing::debug!(partition = p, error = %e, "seek failed; re-assigning instead");
                seek_failed = true;
            }
        }
        let mut partitions = self.shared.partitions();
        for p in &unsynced {
            if let Some(pos) = partitions.get_mut(p) {
                let next = stored.get(p).copied().unwrap_or(0);
                *pos = Position { next, synced: true };
                self.state.cursor.insert(*p, next);
            }
        }
        if seek_failed {
            // Seeking right after an assignment can fail ("erroneous state");
            // assigning with explicit offsets always positions the partitions.
            let mut tpl = TopicPartitionList::new();
            for (p, pos) in partitions.iter() {
                let _ = tpl.add_partition_offset(&topic, *p, Offset::Offset(pos.next));
            }
            if let Err(e) = self.consumer.assign(&tpl) {
                tracing::error!(error = %e, "re-assigning partitions failed");
                for pos in partitions.values_mut() {
                    pos.synced = false;
                }
            }
        }
        tracing::info!(partitions = ?*partitions, "positions re-read from the warehouse");
    }

    /// Poll one micro-batch. `None` when a rebalance happened meanwhile (the
    /// records are discarded; the new owners start from stored offsets).
    fn accumulate(&mut self) -> Option<(Batch, BTreeMap<i32, i64>)> {
        let epoch = self.shared.epoch();
        if epoch != self.state.cursor_epoch {
            // A new assignment: start from the positions read from the warehouse.
            self.state.cursor = self
                .shared
                .partitions()
                .iter()
                .filter(|(_, p)| p.synced)
                .map(|(id, p)| (*id, p.next))
                .collect();
            self.state.cursor_epoch = epoch;
        }
        let expected: BTreeMap<i32, i64> = self.state.cursor.iter().map(|(p, n)| (*p, *n)).collect();
        let mut batch = Batch::default();
        let mut deadline: Option<Instant> = None;
        while batch.records < self.limits.max_records {
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                None => IDLE_POLL,
            };
            let polled = self.consumer.poll(timeout);
            if self.shared.epoch() != epoch {
                return None;
            }
            match polled {
                None => {
                    if deadline.is_none() {
                        break; // idle: let the loop check stop, reconnects, lag
                    }
                }
                Some(Err(e)) => {
                    let last = &mut self.state.last_error_log;
                    if last.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL) {
                        tracing::warn!(error = %e, "Kafka consumer error (retrying)");
                        *last = Some(Instant::now());
                    }
                    if deadline.is_none() {
                        break;
                    }
                }
                Some(Ok(m)) => {
                    let p = m.partition();
                    // Unsynced or foreign partition, or a record from before the
                    // position (a stale prefetch after a seek): not ours to load.
                    let Some(next) = self.state.cursor.get_mut(&p) else {
                        continue;
                    };
                    if m.offset() < *next {
                        continue;
                    }
                    *next = m.offset() + 1;
                    batch.add(RawRecord {
                        partition: p,
                        offset: m.offset(),
                        key: m.key(),
                        payload: m.payload(),
                        timestamp_ms: m.timestamp().to_millis(),
                    });
                    deadline.get_or_insert_with(|| Instant::now() + self.limits.max_wait);
                }
            }
            if self.stop.is_set() {
                break; // finish the batch in hand, then stop
            }
        }
        self.shared.metrics.records_consumed.inc_by(batch.records as u64);
        Some((batch, expected))
    }

    fn update_lag(&self) {
        let highs = self
            .shared
            .high_watermarks
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        let mut total = 0;
        for (p, pos) in self.shared.partitions().iter() {
            if let Some(&high) = highs.get(p) {
                let lag = (high - pos.next).max(0);
                total += lag;
                self.shared
                    .metrics
                    .partition_lag
                    .with_label_values(&[&p.to_string()])
                    .set(lag);
            }
        }
        self.shared.metrics.lag_total.set(total);
    }
}

/// A partition is stalled when records wait beyond its stored position and
/// that position has not moved for `window` (or was never stored).
fn is_stalled(high_watermark: i64, stored: Option<(i64, f64)>, window: Duration) -> bool {
    match stored {
        Some((next, idle_seconds)) => high_watermark > next && idle_seconds > window.as_secs_f64(),
        None => high_watermark > 0,
    }
}

/// After a batch committed in the warehouse: advance the held positions and
/// commit the same offsets to the Kafka group (for lag tools and the
/// operator's scaler; the warehouse stays the source of truth).
fn commit_to_kafka(
    shared: &Shared,
    consumer: &BaseConsumer<WorkerContext>,
    offsets: &BTreeMap<i32, OffsetRange>,
    epoch: u64,
) {
    let mut tpl = TopicPartitionList::new();
    {
        let mut partitions = shared.partitions();
        let current = shared.epoch() == epoch;
        for (p, range) in offsets {
            if current && let Some(pos) = partitions.get_mut(p) {
                pos.next = pos.next.max(range.next());
            }
            let _ = tpl.add_partition_offset(&shared.stream.topic, *p, Offset::Offset(range.next()));
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "committing offsets to Kafka failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_partitions() {
        let window = Duration::from_secs(12);
        // (high watermark, stored (next, idle seconds), stalled?)
        let cases = [
            (100, Some((100, 60.0)), false), // caught up, however long ago
            (100, Some((40, 3.0)), false),   // behind but moving
            (100, Some((40, 30.0)), true),   // behind and idle: nobody consumes it
            (0, None, false),                // empty and never consumed
            (5, None, true),                 // records, never consumed
        ];
        for (high, stored, want) in cases {
            assert_eq!(is_stalled(high, stored, window), want, "{high} {stored:?}");
        }
    }
}
