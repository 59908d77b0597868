//! Start-up and shutdown: metrics endpoint, warehouse connection and
//! migrations, consumer group, the loading thread, and signals.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use shopstream_common::error::chain;
use shopstream_common::http;
use shopstream_common::kafka::{self, KafkaError};
use shopstream_common::shutdown::{self, StopFlag};
use thiserror::Error;

use crate::cli::Cli;
use crate::consumer::{self, ConsumerSettings, Shared};
use crate::db::{Db, DbError, DbSettings};
use crate::dims::DimCache;
use crate::ingest::{Ingest, Limits};
use crate::load::Stream;
use crate::metrics::Metrics;
use crate::migrate::{self, MigrateError};
use crate::retry::Retry;

/// SIGTERM to exit must stay within Kubernetes' grace period and our 10 s promise.
/// How long startup waits for Kafka to answer before it goes on and lets the
/// client keep trying (a refusal ends the wait at once).
const KAFKA_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(9);

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("subscribing to topic {topic} failed: {source}")]
    Subscribe {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("the loading thread failed: {0}")]
    Thread(String),
    /// The value is not shown: it may be a connection URL with a password.
    #[error("--{flag}: {reason}")]
    Role { flag: &'static str, reason: String },
}

pub async fn run(cli: Cli) -> Result<(), WorkerError> {
    if cli.migrate_only {
        return migrate_only(cli).await;
    }
    let instance = cli.instance();
    let group = cli.group();
    let db_settings = cli
        .database
        .settings(&format!("shopstream-worker:{}", cli.schema))?;
    let metrics = Metrics::new();
    let stream = Stream {
        group: group.clone(),
        topic: cli.topic.clone(),
        owner: instance.clone(),
    };
    let shared = Arc::new(Shared::new(stream, metrics.clone()));
    let stop = StopFlag::new();

    if let Some(addr) = cli.metrics_addr {
        let ready = {
            let shared = shared.clone();
            Arc::new(move || shared.readiness()) as http::ReadinessCheck
        };
        let live = {
            let (shared, stall) = (shared.clone(), cli.stall_timeout);
            Arc::new(move || shared.liveness(stall)) as http::ReadinessCheck
        };
        let stop = stop.clone();
        http::serve(
            addr,
            metrics.registry.clone(),
            http::Checks { ready, live },
            async move { stop.wait().await },
        )
        .await?;
    }
    tracing::info!(
        brokers = %cli.kafka.brokers, topic = %cli.topic, group = %group, schema = %cli.schema,
        database = %db_settings.target(), instance = %instance,
        batch_max_records = cli.batch_max_records, batch_max_wait_ms = cli.batch_max_wait_ms,
        "worker starting"
    );

    let worker = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("consume".into())
            .spawn(move || start_and_load(&cli, &instance, &group, db_settings, shared, stop))
            .map_err(|e| WorkerError::Thread(e.to_string()))?
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(worker.join());
    });
    let mut done_rx = done_rx;
    let joined = tokio::select! {
        res = &mut done_rx => res,
        sig = shutdown::signalled() => {
            tracing::info!(signal = sig, "stopping: finishing the current batch");
            stop.set();
            match tokio::time::timeout(SHUTDOWN_BUDGET, &mut done_rx).await {
                Ok(res) => res,
                Err(_) => {
                    tracing::warn!("the current batch did not finish in time; exiting (it rolls back)");
                    return Ok(());
                }
            }
        }
    };
    stop.set();
    match joined {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(WorkerError::Thread("panicked".into())),
        Err(_) => Err(WorkerError::Thread("vanished".into())),
    }
}

/// On the loading thread: connect (retrying), migrate, join the group, load.
fn start_and_load(
    cli: &Cli,
    instance: &str,
    group: &str,
    db_settings: DbSettings,
    shared: Arc<Shared>,
    stop: StopFlag,
) -> Result<(), WorkerError> {
    let result = load(cli, instance, group, db_settings, &shared, stop);
    // The sync client must be dropped on this thread, not on the async runtime.
    drop(shared.take_db());
    result
}

fn load(
    cli: &Cli,
    instance: &str,
    group: &str,
    db_settings: DbSettings,
    shared: &Arc<Shared>,
    stop: StopFlag,
) -> Result<(), WorkerError> {
    let Some(db) = connect_and_migrate(&db_settings, cli, shared, &stop)? else {
        return Ok(()); // stopped while waiting for the warehouse
    };
    shared.set_db(&mut shared.db(), Some(db));
    let consumer = consumer::create(
        &ConsumerSettings {
            kafka: &cli.kafka,
            group,
            client_id: instance,
            protocol: cli.group_protocol,
            session_timeout: cli.session_timeout,
            max_poll_interval: cli.max_poll_interval,
        },
        shared.clone(),
    )?;
    // A refused login or certificate is a configuration error: fail now, with
    // the listener and the cause, instead of retrying in silence. An
    // unreachable cluster or a topic not created yet is waited for.
    let config = cli.kafka.client_config()?;
    match kafka::topic_partitions(
        consumer.client(),
        &config,
        &cli.kafka.brokers,
        &cli.topic,
        KAFKA_CHECK_TIMEOUT,
    ) {
        Err(e @ kafka::KafkaError::Refused { .. }) => return Err(e.into()),
        Err(e) => tracing::warn!(error = %e, "Kafka not ready yet; waiting for it"),
        Ok(_) => {}
    }
    consumer
        .subscribe(&[&cli.topic])
        .map_err(|source| WorkerError::Subscribe {
            topic: cli.topic.clone(),
            source,
        })?;
    Ingest {
        shared: shared.clone(),
        consumer,
        db_settings,
        schema: cli.schema.clone(),
        cache: DimCache::new(cli.dim_cache_size),
        limits: Limits {
            max_records: cli.batch_max_records as usize,
            max_wait: cli.batch_max_wait(),
        },
        stop,
    }
    .run();
    Ok(())
}

/// `--migrate-only`: migrate the schema and hand out the grants, then exit
/// (the init container of the worker pods, run as the schema's owner).
async fn migrate_only(cli: Cli) -> Result<(), WorkerError> {
    // Check the role flags before touching the warehouse.
    let grants = [
        ("grant-loader", &cli.grant_loader, migrate::Grant::Loader),
        ("grant-reader", &cli.grant_reader, migrate::Grant::Reader),
    ]
    .into_iter()
    .filter_map(|(flag, value, kind)| value.as_deref().map(|v| (flag, v, kind)))
    .map(|(flag, value, kind)| {
        crate::cli::role_of(value)
            .map(|role| (role, kind))
            .map_err(|reason| WorkerError::Role { flag, reason })
    })
    .collect::<Result<Vec<_>, _>>()?;
    let settings = cli
        .database
        .settings(&format!("shopstream-migrate:{}", cli.schema))?;
    let stop = StopFlag::new();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let stop = stop.clone();
        // The sync PostgreSQL client runs (and is dropped) on its own thread,
        // not on the async runtime.
        let work = move || -> Result<(), WorkerError> {
            let Some(mut client) = connect(&settings, &stop)? else {
                return Ok(());
            };
            let applied = migrate::migrate(&mut client, &cli.schema)?;
            migrate::grant(&mut client, &cli.schema, &grants)?;
            tracing::info!(
                schema = %cli.schema, versions = ?applied,
                grants = ?grants.iter().map(|(r, k)| format!("{k:?}:{r}")).collect::<Vec<_>>(),
                "schema current"
            );
            Ok(())
        };
        std::thread::Builder::new()
            .name("migrate".into())
            .spawn(move || {
                let _ = done_tx.send(work());
            })
            .map_err(|e| WorkerError::Thread(e.to_string()))?;
    }
    tokio::select! {
        res = done_rx => res.map_err(|_| WorkerError::Thread("panicked".into()))?,
        sig = shutdown::signalled() => {
            // A migration in flight rolls back with its transaction.
            tracing::info!(signal = sig, "stopping before the schema is current");
            stop.set();
            Ok(())
        }
    }
}

/// Keep trying to reach the warehouse (it may start after us); `None` once
/// asked to stop. A refused certificate or login is fatal.
fn connect(settings: &DbSettings, stop: &StopFlag) -> Result<Option<postgres::Client>, WorkerError> {
    let mut retry = Retry::new();
    loop {
        if stop.is_set() {
            return Ok(None);
        }
        match settings.connect() {
            Ok(client) => return Ok(Some(client)),
            Err(e) if e.is_refusal() => return Err(e.into()),
            Err(e) => {
                let wait = retry.failed();
                tracing::warn!(error = %chain(&e), retry_in = ?wait, "warehouse unreachable at start-up");
                while !stop.is_set() && !retry.due() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Connect (retrying) and migrate; a migration that fails for a reason other
/// than connectivity is fatal.
fn connect_and_migrate(
    settings: &DbSettings,
    cli: &Cli,
    shared: &Shared,
    stop: &StopFlag,
) -> Result<Option<Db>, WorkerError> {
    let Some(mut client) = connect(settings, stop)? else {
        return Ok(None);
    };
    let applied = migrate::migrate(&mut client, &cli.schema)?;
    if !applied.is_empty() {
        tracing::info!(schema = %cli.schema, versions = ?applied, "migrations applied");
    }
    shared.migrated.store(true, Ordering::SeqCst);
    Ok(Some(Db::prepare(client, &cli.schema)?))
}
