//! The consumer thread: poll micro-batches and hand them to the loading
//! thread, which commits each in one transaction; then tell Kafka. Any
//! failure re-positions the partitions at the offsets stored in the
//! warehouse, so nothing is lost or loaded twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc::TrySendError;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use shopstream_common::error::chain;
use shopstream_common::shutdown::StopFlag;

use crate::consumer::{self, Shared, WorkerContext};
use crate::db::{Db, DbSettings};
use crate::dims::DimCache;
use crate::loader::{self, Done, Job, Loader, Polled};
use crate::transform::{Batch, OffsetRange, OwnedRecord};

/// How long an idle poll blocks before the loop looks around again.
const IDLE_POLL: Duration = Duration::from_millis(100);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// Every held position is committed to the group again this often.
const RECOMMIT_INTERVAL: Duration = Duration::from_secs(10);
/// How long one poll blocks while the loading thread is still busy.
const BUSY_POLL: Duration = Duration::from_millis(50);
/// A batch waits this long for the loading thread before the consumer
/// pauses its partitions and polls to stay in the group.
const PAUSE_AFTER: Duration = Duration::from_secs(2);
/// One wait for the loading thread to report a finished batch.
const HANDOVER_WAIT: Duration = Duration::from_millis(5);
/// Log at most one consumer error per this interval (a down broker repeats).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct Limits {
    pub max_records: usize,
    pub max_wait: Duration,
}

pub struct Pipeline {
    pub shared: Arc<Shared>,
    pub consumer: BaseConsumer<WorkerContext>,
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

/// What became of a batch handed to the loading thread.
enum Handed {
    Sent,
    /// Every partition in it was revoked while it waited.
    Nothing,
    LoaderGone,
}

/// Consumer-thread state between batches.
struct State {
    retry: Retry,
    /// Where the next batch starts, per held partition, with the partition's
    /// lease: ahead of the stored position by whatever batch is in flight.
    cursor: HashMap<i32, Cursor>,
    cursor_epoch: u64,
    generation: u64,
    in_flight: usize,
    last_lag: Instant,
    last_recommit: Instant,
    last_error_log: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    lease: u64,
    next: i64,
}

impl Pipeline {
    /// Run until the stop flag is set, then finish the batch in flight and
    /// leave the group cleanly.
    pub fn run(self) {
        let Pipeline {
            shared,
            consumer,
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
                last_lag: Instant::now(),
                last_recommit: Instant::now(),
                last_error_log: None,
            },
        };
        consumer_loop.run();
    }
}

struct ConsumerLoop {
    shared: Arc<Shared>,
    consumer: BaseConsumer<WorkerContext>,
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
            self.beat();
            self.collect(false);
            if self.needs_repair() {
                // Re-reading positions while a batch is in flight would race it.
                self.collect(true);
                self.ensure_connected();
                self.resync();
            }
            let polled = self.accumulate();
            if !polled.batch.is_empty() && matches!(self.hand_over(polled), Handed::LoaderGone) {
                tracing::error!("the loading thread stopped unexpectedly");
                break;
            }
            if self.state.last_lag.elapsed() >= LAG_INTERVAL {
                self.update_lag();
                let all = self.state.last_recommit.elapsed() >= RECOMMIT_INTERVAL;
                recommit(&self.shared, &self.consumer, all);
                if all {
                    self.state.last_recommit = Instant::now();
                }
                self.state.last_lag = Instant::now();
            }
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
            if let Done::Committed { offsets, leases } = done {
                commit_to_kafka(&shared, &consumer, &offsets, &leases);
            }
        }
        let _ = loader.handle.join();
        consumer.unsubscribe();
        // Dropping the consumer closes it, which revokes and leaves the group.
        drop(consumer);
    }

    /// Tell the watchdog the loop turns, and whether partitions wait.
    fn beat(&self) {
        let unsynced = self.shared.any_unsynced();
        if let Ok(mut p) = self.shared.progress.lock() {
            p.beat(Instant::now(), unsynced);
        }
    }

    fn needs_repair(&self) -> bool {
        !self.shared.connected() || self.shared.any_unsynced()
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
            Done::Committed { offsets, leases } => {
                self.state.retry.succeeded();
                if let Ok(mut p) = self.shared.progress.lock() {
                    p.committed = Instant::now();
                }
                commit_to_kafka(&self.shared, &self.consumer, &offsets, &leases);
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
        if self.shared.connected() || !self.state.retry.due() {
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
                self.shared.set_db(&mut self.shared.db(), Some(db));
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
            match consumer::checked_positions(&self.consumer, conn, &self.shared, &unsynced) {
                Ok(s) => s,
                Err(e) => {
                    self.shared.metrics.db_errors.inc();
                    if conn.is_closed() {
                        self.shared.set_db(&mut db, None);
                    }
                    drop(db);
                    let wait = self.state.retry.failed();
                    tracing::warn!(error = %chain(&e), retry_in = ?wait, "cannot read stored offsets");
                    return;
                }
            }
        };
        let topic = self.shared.stream.topic.clone();
        let mut partitions = self.shared.partitions();
        let mut seek_failed = false;
        for p in &unsynced {
            let Some(pos) = partitions.get_mut(p) else {
                continue; // revoked meanwhile
            };
            let next = stored.get(p).copied().unwrap_or(0);
            // Seeking a partition whose fetcher has not started yet fails
            // ("erroneous state"); it stays unsynced and is tried again.
            if let Err(e) = self.consumer.seek(&topic, *p, Offset::Offset(next), SEEK_TIMEOUT) {
                tracing::debug!(partition = p, error = %e, "seek failed; retrying");
                seek_failed = true;
                continue;
            }
            pos.next = next;
            pos.synced = true;
            self.state.cursor.insert(
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

    /// The assignment changed: partitions kept under the same lease keep
    /// their cursor (a batch may be in flight), new ones start from the
    /// positions read from the warehouse, revoked ones are dropped.
    fn refresh_cursor(shared: &Shared, state: &mut State) {
        let epoch = shared.epoch();
        if epoch == state.cursor_epoch {
            return;
        }
        let previous = std::mem::take(&mut state.cursor);
        state.cursor = shared
            .partitions()
            .iter()
            .filter(|(_, p)| p.synced)
            .map(|(id, p)| {
                let kept = previous.get(id).filter(|c| c.lease == p.lease);
                let next = kept.map_or(p.next, |c| c.next);
                (*id, Cursor { lease: p.lease, next })
            })
            .collect();
        state.cursor_epoch = epoch;
    }

    /// Poll one micro-batch, with the stored offset each of its partitions
    /// builds on and the lease it was polled under. Records are kept as
    /// polled until the batch is complete, so a partition revoked meanwhile
    /// only loses its own records (its new owner starts from the stored
    /// offset) and the kept partitions go on without a pause or a seek.
    fn accumulate(&mut self) -> Polled {
        Self::refresh_cursor(&self.shared, &mut self.state);
        let mut polled = Polled::default();
        let mut deadline: Option<Instant> = None;
        while polled.records.len() < self.limits.max_records {
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                None => IDLE_POLL,
            };
            let message = self.consumer.poll(timeout);
            Self::follow_rebalance(&self.shared, &mut self.state, &mut polled);
            match message {
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
                    if Self::take(&mut self.state.cursor, &m, &mut polled) {
                        deadline.get_or_insert_with(|| Instant::now() + self.limits.max_wait);
                    }
                }
            }
            if self.stop.is_set() {
                break; // finish the batch in hand, then stop
            }
        }
        polled.batch = Batch::from_records(&polled.records);
        self.shared
            .metrics
            .records_consumed
            .inc_by(polled.batch.records as u64);
        polled
    }

    /// After a poll: if the assignment changed, drop the records of revoked
    /// partitions from the batch being built and refresh the cursors.
    /// Returns whether it changed.
    fn follow_rebalance(shared: &Shared, state: &mut State, polled: &mut Polled) -> bool {
        if shared.epoch() == state.cursor_epoch {
            return false;
        }
        let lost = consumer::lost_partitions(&shared.partitions(), &polled.leases);
        if !lost.is_empty() {
            tracing::debug!(partitions = ?lost, "dropping the records of revoked partitions from the batch");
            polled.without(&lost);
        }
        Self::refresh_cursor(shared, state);
        true
    }

    /// Add a polled record to the batch if it is the next one of a held,
    /// positioned partition; otherwise (unsynced, foreign, or a stale
    /// prefetch from before a seek) it is not ours to load.
    fn take(cursors: &mut HashMap<i32, Cursor>, m: &BorrowedMessage<'_>, polled: &mut Polled) -> bool {
        let p = m.partition();
        let Some(cursor) = cursors.get_mut(&p) else {
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

    /// Hand a batch to the loading thread. While it is still writing the
    /// previous one, wait for it to finish (the common case: a few ms, with
    /// the prefetch queue kept full). If the wait grows past [`PAUSE_AFTER`]
    /// (a lock wait, a slow disk), pause the partitions and keep polling: the
    /// member stays in the group (no eviction past `max.poll.interval.ms`, no
    /// rebalance storm) and rebalances are served. A record that was already
    /// fetched joins the waiting batch.
    fn hand_over(&mut self, mut polled: Polled) -> Handed {
        let mut paused = false;
        let mut grown = false;
        let generation = self.state.generation;
        let waiting = Instant::now();
        let handed = loop {
            if grown {
                polled.batch = Batch::from_records(&polled.records);
                grown = false;
            }
            if polled.batch.is_empty() {
                break Handed::Nothing; // its partitions were all revoked meanwhile
            }
            if self.state.generation != generation {
                // A batch failed meanwhile: positions are re-read from the
                // warehouse and these records polled again from there.
                break Handed::Nothing;
            }
            let job = Job { polled, generation };
            match self.loader.jobs.try_send(job) {
                Ok(()) => break Handed::Sent,
                Err(TrySendError::Disconnected(_)) => break Handed::LoaderGone,
                Err(TrySendError::Full(job)) => polled = job.polled,
            }
            if !paused && waiting.elapsed() < PAUSE_AFTER {
                // The loader reports each batch as it finishes, then takes the next job.
                if let Ok(done) = self.loader.done.recv_timeout(HANDOVER_WAIT) {
                    self.state.in_flight = self.state.in_flight.saturating_sub(1);
                    self.finished(done);
                }
                continue;
            }
            if !paused {
                self.set_paused(true);
                self.shared.metrics.waits_paused.inc();
                paused = true;
            }
            self.beat();
            let message = self.consumer.poll(BUSY_POLL);
            if Self::follow_rebalance(&self.shared, &mut self.state, &mut polled) {
                // Partitions assigned meanwhile start unpaused; pause them too.
                self.set_paused(true);
            }
            if let Some(Ok(m)) = message
                && Self::take(&mut self.state.cursor, &m, &mut polled)
            {
                self.shared.metrics.records_consumed.inc();
                grown = true;
            }
        };
        if paused {
            self.set_paused(false);
        }
        if matches!(handed, Handed::Sent) {
            self.state.in_flight += 1;
        }
        handed
    }

    /// Pause or resume every partition currently assigned.
    fn set_paused(&self, pause: bool) {
        let assignment = match self.consumer.assignment() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the assignment");
                return;
            }
        };
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, pause, "pausing or resuming partitions failed");
        }
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

/// After a batch committed in the warehouse: advance the held positions and
/// commit the same offsets to the Kafka group (for lag tools and the
/// operator's scaler; the warehouse stays the source of truth). Only
/// partitions still held under the batch's lease: a worker that lost one
/// must not move the group's offset back under its new owner.
fn commit_to_kafka(
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
fn recommit(shared: &Shared, consumer: &BaseConsumer<WorkerContext>, all: bool) {
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
