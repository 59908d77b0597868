//! The loading thread. The consumer thread hands it one micro-batch at a time
//! and polls the next batch while this one is written, so Kafka, the
//! transform and PostgreSQL work in parallel. Results go back to the consumer
//! thread, which owns the Kafka side (positions, commits, rebalances).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shopstream_common::error::chain;

use crate::consumer::{self, Shared};
use crate::db::Db;
use crate::dims::DimCache;
use crate::isolate::load_isolating;
use crate::load::{LoadError, Loaded};
use crate::metrics::Metrics;
use crate::transform::{Batch, OffsetRange, OwnedRecord};

/// One micro-batch as polled: the records, the batch made of them, the
/// stored offset each partition builds on and the lease it was polled under.
#[derive(Default)]
pub struct Polled {
    pub records: Vec<OwnedRecord>,
    pub batch: Batch,
    /// Stored next offset of each partition when the batch was started
    /// (speculative: it includes batches still in flight).
    pub expected: BTreeMap<i32, i64>,
    pub leases: BTreeMap<i32, u64>,
}

impl Polled {
    /// Leave revoked partitions out: their records, offsets and leases, and
    /// the batch made of the records that remain.
    pub fn without(&mut self, lost: &[i32]) {
        self.records.retain(|r| !lost.contains(&r.partition));
        for p in lost {
            self.expected.remove(p);
            self.leases.remove(p);
        }
        self.batch = Batch::from_records(&self.records);
    }
}

pub struct Job {
    pub polled: Polled,
    /// Bumped by the consumer thread whenever positions are re-read; jobs of
    /// a generation at or before a failure are skipped (they build on it).
    pub generation: u64,
}

pub enum Done {
    Committed {
        offsets: BTreeMap<i32, OffsetRange>,
        leases: BTreeMap<i32, u64>,
    },
    Fenced {
        partitions: Vec<i32>,
    },
    Failed {
        error: String,
        connection_lost: bool,
    },
    Skipped,
}

pub struct Loader {
    pub jobs: SyncSender<Job>,
    pub done: Receiver<Done>,
    pub handle: JoinHandle<()>,
}

/// Start the loading thread. The job channel is a rendezvous: at most one
/// batch is being written while the next one is polled.
pub fn spawn(shared: Arc<Shared>, cache: DimCache) -> std::io::Result<Loader> {
    let (jobs, job_rx) = sync_channel::<Job>(0);
    let (done_tx, done) = channel();
    let handle = std::thread::Builder::new()
        .name("loader".into())
        .spawn(move || run(job_rx, done_tx, shared, cache))?;
    Ok(Loader { jobs, done, handle })
}

fn run(jobs: Receiver<Job>, done: Sender<Done>, shared: Arc<Shared>, mut cache: DimCache) {
    let mut failed_generation: Option<u64> = None;
    let mut folds = FoldClock::new(Instant::now());
    loop {
        match jobs.recv_timeout(folds.wait(Instant::now())) {
            Ok(job) => {
                let generation = job.generation;
                let stale = failed_generation.is_some_and(|g| generation <= g);
                let outcome = if stale {
                    Done::Skipped
                } else {
                    load(&shared, &mut cache, job)
                };
                match outcome {
                    Done::Fenced { .. } | Done::Failed { .. } => failed_generation = Some(generation),
                    Done::Committed { .. } => folds.loaded(),
                    Done::Skipped => {}
                }
                if done.send(outcome).is_err() {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if folds.due(Instant::now()) {
            fold(&shared, &mut folds);
        }
    }
    // What this worker queued last is folded before it goes (the next
    // worker to fold would take it anyway; readers count it either way).
    if folds.dirty {
        fold(&shared, &mut folds);
    }
    // The sync client must be dropped on a plain thread, not the async runtime.
    drop(shared.take_db());
}

/// Folding the filter-slice queue (migration 0011) soon after this worker
/// queued rows, and now and then anyway for rows other writers queued.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FoldClock {
    last: Instant,
    /// Rows queued since the last fold that succeeded.
    dirty: bool,
}

const FOLD_AFTER_LOAD: Duration = Duration::from_secs(2);
const FOLD_ANYWAY: Duration = Duration::from_secs(30);

impl FoldClock {
    fn new(now: Instant) -> Self {
        Self {
            last: now,
            dirty: false,
        }
    }

    fn loaded(&mut self) {
        self.dirty = true;
    }

    fn due(&self, now: Instant) -> bool {
        let since = now.saturating_duration_since(self.last);
        since >= FOLD_ANYWAY || (self.dirty && since >= FOLD_AFTER_LOAD)
    }

    /// How long to wait for a job before looking again.
    fn wait(&self, now: Instant) -> Duration {
        let since = now.saturating_duration_since(self.last);
        let next = if self.dirty { FOLD_AFTER_LOAD } else { FOLD_ANYWAY };
        next.saturating_sub(since).max(Duration::from_millis(10))
    }

    /// `folded`: whether the fold ran (false: another session held the
    /// lock, or it failed); either way the next one waits an interval.
    fn folded(&mut self, now: Instant, folded: bool) {
        self.last = now;
        if folded {
            self.dirty = false;
        }
    }
}

fn fold(shared: &Shared, folds: &mut FoldClock) {
    let outcome = {
        let mut db = shared.db();
        match db.as_mut() {
            Some(conn) => conn
                .client
                .query_one(&conn.stmts.fold_slices, &[])
                .map(|r| r.get::<_, i64>(0)),
            None => Ok(-1),
        }
    };
    match outcome {
        Ok(rows) if rows >= 0 => {
            shared.metrics.slice_rows_folded.inc_by(rows as u64);
            folds.folded(Instant::now(), true);
        }
        Ok(_) => folds.folded(Instant::now(), false),
        Err(e) => {
            // Queued rows stay queued (and counted by readers): try again later.
            tracing::warn!(error = %chain(&e), "folding the filter slices failed");
            folds.folded(Instant::now(), false);
        }
    }
}

fn load(shared: &Shared, cache: &mut DimCache, mut job: Job) -> Done {
    let started = Instant::now();
    let result = {
        let mut db = shared.db();
        let Some(conn) = db.as_mut() else {
            return Done::Failed {
                error: "no warehouse connection".into(),
                connection_lost: true,
            };
        };
        // Checked under the warehouse lock, which a revocation takes before it
        // lets partitions go: they stay ours until this batch is written. A
        // partition revoked since the batch was polled is left out of it (its
        // new owner starts from the stored offset); the others load as planned.
        let polled = &mut job.polled;
        let lost = consumer::lost_partitions(&shared.partitions(), &polled.leases);
        if !lost.is_empty() {
            tracing::debug!(partitions = ?lost, "leaving revoked partitions out of the batch");
            polled.without(&lost);
            if polled.batch.is_empty() {
                return Done::Skipped;
            }
        }
        load_isolating(
            conn,
            cache,
            &shared.stream,
            &polled.records,
            &polled.batch,
            &polled.expected,
            &shared.metrics,
        )
    };
    let m = &shared.metrics;
    match result {
        Ok(loaded) => {
            record(m, &job.polled.batch, &loaded, started);
            Done::Committed {
                offsets: job.polled.batch.offsets,
                leases: job.polled.leases,
            }
        }
        Err(LoadError::Fenced { partitions }) => {
            m.fenced.inc();
            Done::Fenced { partitions }
        }
        Err(LoadError::Db(e)) => {
            m.db_errors.inc();
            let mut db = shared.db();
            let connection_lost = db.as_ref().is_none_or(Db::is_closed);
            if connection_lost {
                shared.set_db(&mut db, None);
            }
            Done::Failed {
                error: chain(&e),
                connection_lost,
            }
        }
    }
}

/// The committed batch's figures in the metrics and the log.
fn record(m: &Metrics, batch: &Batch, loaded: &Loaded, started: Instant) {
    m.batches.inc();
    m.batch_records.observe(batch.records as f64);
    m.batch_seconds.observe(started.elapsed().as_secs_f64());
    m.rows_loaded
        .with_label_values(&["fact_sales"])
        .inc_by(loaded.sales_rows);
    m.rows_loaded
        .with_label_values(&["fact_activity"])
        .inc_by(loaded.activity_rows);
    m.rows_loaded
        .with_label_values(&["order_status_event"])
        .inc_by(loaded.order_updates);
    m.duplicates.inc_by(loaded.duplicates);
    for d in &batch.dead_letters {
        m.dead_letters.with_label_values(&[d.kind.as_str()]).inc();
    }
    for t in &batch.event_times {
        let latency = (loaded.committed_at - *t).num_milliseconds().max(0) as f64 / 1000.0;
        m.commit_latency.observe(latency);
    }
    tracing::debug!(
        records = batch.records,
        sales = loaded.sales_rows,
        activity = loaded.activity_rows,
        order_updates = loaded.order_updates,
        dead_letters = loaded.dead_letters,
        duplicates = loaded.duplicates,
        customers = loaded.upserted_customers,
        products = loaded.upserted_products,
        ms = started.elapsed().as_millis() as u64,
        "batch committed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_follow_loads_and_happen_now_and_then_anyway() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let clean = FoldClock::new(t0);
        let mut dirty = clean;
        dirty.loaded();
        // (clock, seconds since the last fold, due?)
        let cases = [
            (clean, 1, false),
            (clean, 29, false),
            (clean, 30, true),
            (dirty, 1, false),
            (dirty, 2, true),
        ];
        for (i, (clock, after, want)) in cases.iter().enumerate() {
            assert_eq!(clock.due(t0 + s(*after)), *want, "case {i}");
        }
        assert_eq!(dirty.wait(t0 + s(1)), s(1));
        assert_eq!(clean.wait(t0), s(30));
        // A fold that did not run (lock held elsewhere, an error) keeps the rows due.
        let mut missed = dirty;
        missed.folded(t0 + s(2), false);
        assert!(missed.dirty && !missed.due(t0 + s(3)) && missed.due(t0 + s(4)));
        let mut done = dirty;
        done.folded(t0 + s(2), true);
        assert!(!done.dirty && !done.due(t0 + s(4)));
    }
}
