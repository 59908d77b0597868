//! The consuming thread's loop: poll micro-batches ([`crate::consume`]) and
//! hand them to the loading thread, which commits each in one transaction;
//! then tell the group ([`crate::group`]). Any failure re-positions the
//! partitions at the offsets stored in the warehouse, so nothing is lost or
//! loaded twice.

use std::sync::Arc;
use std::sync::mpsc::TrySendError;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use shopstream_common::error::chain;
use shopstream_common::shutdown::StopFlag;

pub use crate::consume::Limits;
use crate::consume::Poller;
use crate::consumer::{Shared, WorkerContext};
use crate::db::{Db, DbSettings};
use crate::dims::DimCache;
use crate::group::{self, RECOMMIT_INTERVAL, commit_to_kafka, recommit};
use crate::loader::{self, Done, Job, Loader, Polled};
use crate::retry::Retry;
use crate::transform::Batch;

const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// How long one poll blocks while the loading thread is still busy.
const BUSY_POLL: Duration = Duration::from_millis(50);
/// A batch waits this long for the loading thread before the consumer
/// pauses its partitions and polls to stay in the group.
const PAUSE_AFTER: Duration = Duration::from_secs(2);
/// One wait for the loading thread to report a finished batch.
const HANDOVER_WAIT: Duration = Duration::from_millis(5);

/// The consuming side of a worker: the group membership, the batch limits
/// and what it needs to reconnect; [`Ingest::run`] drives the loop.
pub struct Ingest {
    pub shared: Arc<Shared>,
    pub consumer: BaseConsumer<WorkerContext>,
    pub db_settings: DbSettings,
    pub schema: shopstream_model::SchemaName,
    pub cache: DimCache,
    pub limits: Limits,
    pub stop: StopFlag,
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
    poller: Poller,
    generation: u64,
    in_flight: usize,
    last_lag: Instant,
    last_recommit: Instant,
}

impl Ingest {
    /// Run until the stop flag is set, then finish the batch in flight and
    /// leave the group cleanly.
    pub fn run(self) {
        let Ingest {
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
                poller: Poller::default(),
                generation: 0,
                in_flight: 0,
                last_lag: Instant::now(),
                last_recommit: Instant::now(),
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
                let state = &mut self.state;
                state
                    .poller
                    .resync(&self.consumer, &self.shared, &mut state.retry);
            }
            let polled = self
                .state
                .poller
                .poll_batch(&self.consumer, &self.shared, &self.limits, &self.stop);
            if !polled.batch.is_empty() && matches!(self.hand_over(polled), Handed::LoaderGone) {
                tracing::error!("the loading thread stopped unexpectedly");
                break;
            }
            if self.state.last_lag.elapsed() >= LAG_INTERVAL {
                group::update_lag(&self.shared);
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
        self.state.poller.clear();
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
            if self.state.poller.follow_rebalance(&self.shared, &mut polled) {
                // Partitions assigned meanwhile start unpaused; pause them too.
                self.set_paused(true);
            }
            if let Some(Ok(m)) = message
                && self.state.poller.take(&m, &mut polled)
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
}
