//! `shopstream-operator local -f pipeline.yaml`: the Pipeline's desired state
//! as child processes on this machine — the same Deployments (translated,
//! see [`translate`]), the same generator plan and autoscaler, against a
//! local broker and PostgreSQL. Ends with an audit of the warehouse against
//! what the generators delivered.

pub mod audit;
pub mod logwatch;
pub mod secrets;
pub mod supervisor;
pub mod table;
pub mod translate;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use shopstream_common::pg::DbSettings;
use shopstream_common::shutdown;
use shopstream_common::topics::TopicChange;
use shopstream_model::pipeline::KafkaSpec;
use shopstream_model::{Pipeline, SchemaName};
use thiserror::Error;

use crate::builders;
use crate::generator_plan::{self, GeneratorInput};
use crate::kafka_ops::{KafkaAccess, KafkaOps, Offsets, RdKafkaOps};
use crate::scaler::{self, History, Observation, Policy, RateEstimator, Reading};
use secrets::SecretStore;
use supervisor::Supervisor;
use translate::{Placement, ProcessSpec};

#[derive(Debug, Error)]
pub enum LocalError {
    #[error("cannot read {path}: {detail}")]
    Manifest { path: String, detail: String },
    #[error("the Pipeline is invalid: {0}")]
    Invalid(String),
    #[error("secrets: {0}")]
    Secrets(String),
    #[error("cannot run the Deployment locally: {0}")]
    Translate(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] shopstream_common::kafka::KafkaError),
    #[error("warehouse: {0}")]
    Db(#[from] shopstream_common::pg::DbError),
    #[error("audit: {0}")]
    Audit(String),
    #[error("run directory {path}: {source}")]
    RunDir { path: String, source: std::io::Error },
}

pub struct LocalSettings {
    pub file: PathBuf,
    pub duration: Option<Duration>,
    pub secrets: Option<PathBuf>,
    pub bin_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub report_interval: Duration,
    pub scale_interval: Duration,
    pub drain_timeout: Duration,
    pub status_file: Option<PathBuf>,
    /// Port for the dashboard (when the Pipeline enables it), if free.
    pub dashboard_port: Option<u16>,
}

/// How the run ended.
pub struct Outcome {
    pub audit: audit::Audit,
}

fn load_pipeline(path: &Path) -> Result<Pipeline, LocalError> {
    let err = |detail: String| LocalError::Manifest {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut p: Pipeline = serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
    if p.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(err("metadata.name is required".into()));
    }
    p.metadata.namespace.get_or_insert_with(|| "local".into());
    let problems = p.spec.problems();
    if !problems.is_empty() {
        return Err(LocalError::Invalid(problems.join("; ")));
    }
    Ok(p)
}

/// Kafka access with credentials from the local secret store.
fn kafka_access(k: &KafkaSpec, secrets: &SecretStore) -> Result<KafkaAccess, LocalError> {
    let needs = KafkaAccess::secrets_needed(k);
    let credentials = match needs.credentials {
        Some((name, user_key, password_key)) => {
            Some((secrets.get(name, user_key)?, secrets.get(name, password_key)?))
        }
        None => None,
    };
    let ca_pem = needs.ca.map(|(name, key)| secrets.get(name, key)).transpose()?;
    Ok(KafkaAccess::from_spec(k, credentials, ca_pem))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn say(line: &str) {
    // The live table and reports go to stdout; logs go to stderr.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn clock(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
    format!("[{:>3}:{:02}]", s / 60, s % 60)
}

pub async fn run(settings: LocalSettings) -> Result<Outcome, LocalError> {
    let p = load_pipeline(&settings.file)?;
    let name = p.metadata.name.clone().unwrap_or_default();
    let spec = &p.spec;
    let secrets = SecretStore::load(settings.secrets.as_deref())?;
    let access = kafka_access(&spec.kafka, &secrets)?;
    let schema = SchemaName::parse(&spec.warehouse.schema).map_err(|e| LocalError::Invalid(e.to_string()))?;
    let db = DbSettings::parse(
        &secrets.get(
            &spec.warehouse.connection_secret_ref.name,
            &spec.warehouse.connection_secret_ref.key,
        )?,
        "shopstream-local",
        None,
    )?;
    let topic = p.topic();
    let group = builders::worker_group(&p);
    let kafka = RdKafkaOps::new(Duration::from_secs(10));

    let partitions = match kafka
        .ensure_topic(
            &access,
            &topic,
            spec.kafka.partitions,
            spec.kafka.replication_factor,
        )
        .await?
    {
        TopicChange::Created { partitions } => {
            say(&format!("topic {topic}: created with {partitions} partitions"));
            partitions
        }
        TopicChange::Unchanged { partitions } => {
            say(&format!("topic {topic}: exists with {partitions} partitions"));
            partitions
        }
        TopicChange::Grown { from, to } => {
            say(&format!("topic {topic}: grown from {from} to {to} partitions"));
            to
        }
        TopicChange::CannotShrink { current, requested } => {
            say(&format!(
                "topic {topic}: has {current} partitions, the spec asks for {requested}; Kafka cannot shrink a topic"
            ));
            current
        }
        TopicChange::CannotGrow {
            current,
            requested,
            reason,
        } => {
            say(&format!(
                "topic {topic}: could not grow {current} -> {requested} partitions: {reason}"
            ));
            current
        }
    };
    // The audit covers the records of this run: from today's end of the topic.
    let baseline = kafka.offsets(&access, &topic, &group).await?;
    let start_offsets = baseline.high_watermarks.clone();

    let run_dir = match &settings.run_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "shopstream-local-{name}-{}",
            Utc::now().format("%Y%m%dT%H%M%S")
        )),
    };
    let logs = run_dir.join("logs");
    let summaries = run_dir.join("summaries");
    for dir in [&logs, &summaries] {
        std::fs::create_dir_all(dir).map_err(|source| LocalError::RunDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let bin_dir = settings.bin_dir.clone().unwrap_or_else(default_bin_dir);
    say(&format!(
        "pipeline {name}: schema {schema}, group {group}; binaries from {}; logs in {}",
        bin_dir.display(),
        logs.display()
    ));

    let mut generators = Supervisor::new(
        "generator",
        &logs,
        Some(summaries.clone()),
        Duration::from_secs(15),
    );
    let mut workers = Supervisor::new("worker", &logs, None, Duration::from_secs(10));
    let mut dashboards = Supervisor::new("dashboard", &logs, None, Duration::from_secs(5));
    let mut log_watch = logwatch::LogWatch::new(&logs);
    let started = Instant::now();
    let started_at = Utc::now();
    let run_id = format!("{:x}", started_at.timestamp() % 0x10_0000);
    let make = |kind: builders::Component, slot: usize| -> Result<ProcessSpec, LocalError> {
        let d = match kind {
            builders::Component::Generator => {
                builders::generator_deployment(&p, 1, "local", Some(started_at))
            }
            builders::Component::Worker => builders::worker_deployment(&p, 1, "local"),
            builders::Component::Dashboard => builders::dashboard_deployment(&p, "local"),
        };
        // The dashboard gets the port people will open; the rest any free one.
        let port = match kind {
            builders::Component::Dashboard => settings
                .dashboard_port
                .filter(|p| port_free(*p))
                .unwrap_or_else(free_port),
            _ => free_port(),
        };
        translate::translate(
            &d,
            &secrets,
            &Placement {
                bin_dir: &bin_dir,
                run_dir: &run_dir,
                run_id: &run_id,
                slot,
                metrics_port: port,
            },
        )
    };

    let a = &spec.workers.autoscaling;
    let policy = Policy {
        min_replicas: a.min_replicas.max(0) as u32,
        max_replicas: a.max_replicas.max(1) as u32,
        target_lag_per_replica: a.target_lag_per_replica.max(1) as u64,
        catch_up_seconds: f64::from(a.catch_up_seconds.max(1)),
        scale_down_stabilization: Duration::from_secs(a.scale_down_stabilization_seconds.max(0) as u64),
    };
    let fixed_workers = if spec.paused {
        0
    } else {
        spec.workers.replicas.max(0) as u32
    };
    let mut desired_workers = if a.enabled && !spec.paused {
        policy.min_replicas.min(partitions.max(1) as u32).max(1)
    } else {
        fixed_workers
    };
    let mut rates = RateEstimator::default();
    let mut history = History::default();
    let mut why = String::from("starting");
    let mut last_offsets = baseline.clone();
    let mut last_scale = Instant::now() - settings.scale_interval;
    let mut last_report = Instant::now();

    if spec.dashboard.enabled && !spec.paused {
        dashboards.scale(1, |slot| make(builders::Component::Dashboard, slot))?;
        if let Some(d) = dashboards.children().first() {
            say(&format!("dashboard: http://{}/", d.metrics_addr));
        }
    }
    let signal = shutdown::signalled();
    tokio::pin!(signal);
    say(&table::header());
    let reason = loop {
        let elapsed = started.elapsed();
        let plan = generator_plan::plan(&GeneratorInput {
            enabled: spec.generator.enabled,
            paused: spec.paused,
            events_per_second: spec.generator.events_per_second,
            rate_per_replica: spec.generator.rate_per_replica,
            profile: spec.generator.profile.as_ref(),
            elapsed: elapsed.as_secs_f64(),
        });
        if settings.duration.is_some_and(|d| elapsed >= d) {
            break "the run's --duration is over";
        }
        if plan.finished {
            break "the load profile has finished";
        }
        generators.scale(plan.replicas as usize, |slot| {
            make(builders::Component::Generator, slot)
        })?;

        if last_scale.elapsed() >= settings.scale_interval {
            last_scale = Instant::now();
            match kafka.offsets(&access, &topic, &group).await {
                Ok(offsets) => {
                    rates.observe(
                        Reading {
                            at: elapsed,
                            produced: offsets.produced(),
                            committed: offsets.committed_total(),
                            replicas: desired_workers,
                        },
                        policy.target_lag_per_replica,
                    );
                    if a.enabled && !spec.paused {
                        let d = scaler::decide(
                            &Observation {
                                partition_lag: offsets.lag(),
                                incoming_rate: rates.incoming_rate(),
                                per_replica_rate: rates.per_replica_rate(),
                                current_replicas: desired_workers,
                                partitions: Some(partitions.max(0) as u32),
                            },
                            &policy,
                            &history,
                            elapsed,
                        );
                        history.record(elapsed, d.recommendation, policy.scale_down_stabilization);
                        if d.desired != desired_workers {
                            say(&format!(
                                "{} workers {} -> {}: {}",
                                clock(elapsed),
                                desired_workers,
                                d.desired,
                                d.reason
                            ));
                        }
                        desired_workers = d.desired;
                        why = d.reason;
                    } else {
                        why = format!("{fixed_workers} workers from spec.workers.replicas");
                    }
                    last_offsets = offsets;
                }
                Err(e) => tracing::warn!(error = %e, "cannot read offsets"),
            }
        }
        workers.scale(desired_workers as usize, |slot| {
            make(builders::Component::Worker, slot)
        })?;
        generators.tick();
        workers.tick();
        dashboards.tick();

        if last_report.elapsed() >= settings.report_interval {
            last_report = Instant::now();
            log_watch.scan();
            report(
                &db,
                &schema,
                &topic,
                &started_at,
                &start_offsets,
                &last_offsets,
                &rates,
                &plan,
                &generators,
                &workers,
                elapsed,
                (log_watch.warnings, log_watch.errors),
                &why,
            )
            .await;
            write_status(
                &settings.status_file,
                &generators,
                &workers,
                desired_workers,
                &why,
            );
        }
        tokio::select! {
            sig = &mut signal => {
                say(&format!("{} {sig}: stopping", clock(started.elapsed())));
                break "stopped by a signal";
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    };

    say(&format!(
        "{} stopping the generators ({reason})",
        clock(started.elapsed())
    ));
    generators.stop_all().await;
    // Everything produced must be loaded before the audit.
    let end = kafka.offsets(&access, &topic, &group).await?;
    say(&format!(
        "{} waiting for the workers to load the last {} records",
        clock(started.elapsed()),
        lag_to(&end, &end.high_watermarks)
    ));
    let drain_deadline = Instant::now() + settings.drain_timeout;
    loop {
        let now = kafka.offsets(&access, &topic, &group).await?;
        let left = lag_to(&now, &end.high_watermarks);
        if left == 0 {
            break;
        }
        if Instant::now() >= drain_deadline {
            say(&format!(
                "workers did not catch up within {:?}: {left} records left",
                settings.drain_timeout
            ));
            break;
        }
        if workers.desired() == 0 {
            workers.scale(1, |slot| make(builders::Component::Worker, slot))?;
        }
        workers.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    workers.stop_all().await;
    dashboards.stop_all().await;
    write_status(&settings.status_file, &generators, &workers, 0, "stopped");

    let summaries = audit::read_summaries(&summaries)?;
    let failures: u64 = summaries.iter().map(|s| s.delivery_failures).sum();
    if failures > 0 {
        say(&format!(
            "warning: the generators report {failures} undelivered messages"
        ));
    }
    let expected = audit::expected(&summaries);
    let actual = {
        let (db, schema, topic, start) = (db.clone(), schema.clone(), topic.clone(), start_offsets.clone());
        // A little slack for clocks: event times come from the generators.
        let since = started_at - chrono::Duration::seconds(5);
        tokio::task::spawn_blocking(move || audit::warehouse_totals(&db, &schema, &topic, &start, since))
            .await
            .map_err(|e| LocalError::Audit(e.to_string()))??
    };
    let audit = audit::Audit::compare(&expected, &actual);
    let produced: u64 = summaries.iter().map(|s| s.messages_total).sum();
    say(&format!(
        "{} run finished after {:.0}s: {produced} messages from {} generator runs",
        clock(started.elapsed()),
        started.elapsed().as_secs_f64(),
        summaries.len()
    ));
    say(&audit.to_string());
    Ok(Outcome { audit })
}

/// Records committed below `target` (per partition), i.e. still to load.
fn lag_to(now: &Offsets, target: &[i64]) -> u64 {
    target
        .iter()
        .zip(&now.committed)
        .map(|(t, c)| (t - c.unwrap_or(0)).max(0) as u64)
        .sum()
}

#[allow(clippy::too_many_arguments)]
async fn report(
    db: &DbSettings,
    schema: &SchemaName,
    topic: &str,
    since: &chrono::DateTime<Utc>,
    start: &[i64],
    offsets: &Offsets,
    rates: &RateEstimator,
    plan: &generator_plan::GeneratorPlan,
    generators: &Supervisor,
    workers: &Supervisor,
    elapsed: Duration,
    problems: (u64, u64),
    why: &str,
) {
    let loaded: u64 = offsets
        .committed
        .iter()
        .zip(start)
        .map(|(c, s)| (c.unwrap_or(0) - s).max(0) as u64)
        .sum();
    let dead = {
        let (db, sql, topic, since) = (
            db.clone(),
            format!(
                "SELECT count(*) FROM {} WHERE topic = $1 AND received_at >= $2",
                schema.table("dead_letter")
            ),
            topic.to_string(),
            *since,
        );
        tokio::task::spawn_blocking(move || {
            db.connect()
                .ok()
                .and_then(|mut c| c.query_one(&sql, &[&topic, &since]).ok())
                .map(|r| r.get::<_, i64>(0))
        })
        .await
        .ok()
        .flatten()
    };
    say(&table::row(&table::Row {
        elapsed,
        stage: plan.stage,
        target_rate: plan.target_rate,
        achieved_rate: rates.incoming_rate(),
        generators: (generators.running(), generators.desired()),
        workers: (workers.running(), workers.desired()),
        lag: offsets.lag().iter().sum(),
        loaded,
        dead_letters: dead,
        problems,
        why,
    }));
}

/// Machine-readable state for scripts and tests: children, pids, ports.
fn write_status(
    path: &Option<PathBuf>,
    generators: &Supervisor,
    workers: &Supervisor,
    desired_workers: u32,
    why: &str,
) {
    let Some(path) = path else { return };
    let doc = json!({
        "generators": generators.children(),
        "workers": workers.children(),
        "desired_workers": desired_workers,
        "why": why,
    });
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, doc.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
