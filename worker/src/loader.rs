//! The loading thread. The consumer thread hands it one micro-batch at a time
//! and polls the next batch while this one is written, so Kafka, the
//! transform and PostgreSQL work in parallel. Results go back to the consumer
//! thread, which owns the Kafka side (positions, commits, rebalances).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

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
    for job in jobs {
        let generation = job.generation;
        let stale = failed_generation.is_some_and(|g| generation <= g);
        let outcome = if stale {
            Done::Skipped
        } else {
            load(&shared, &mut cache, job)
        };
        if matches!(outcome, Done::Fenced { .. } | Done::Failed { .. }) {
            failed_generation = Some(generation);
        }
        if done.send(outcome).is_err() {
            break;
        }
    }
    // The sync client must be dropped on a plain thread, not the async runtime.
    drop(shared.take_db());
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
