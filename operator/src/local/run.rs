//! One local run of a Pipeline: `start` (manifest, secrets, topic, run
//! directory, the dashboard), `tick` (the control step of
//! [`crate::control`] with this runtime's observer, [`LocalView`], and
//! applier, [`Processes`]; and the live table), `finish` (stop the
//! generators, drain, audit). What differs from the Kubernetes runtime is
//! only how counts are applied (child processes) and observed (the process
//! table).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use shopstream_common::pg::DbSettings;
use shopstream_model::{LoadProfile, Pipeline, SchemaName};

use super::secrets::SecretStore;
use super::supervisor::{self, Supervisor};
use super::translate::{self, Placement, ProcessSpec};
use super::{LocalError, LocalSettings, Outcome, audit, clock, logwatch, say, table};
use crate::builders::{self, Component};
use crate::control::{self, Applier, Autoscaler, Counts, Observed, Observer};
use crate::generator_plan::GeneratorPlan;
use crate::kafka_ops::{KafkaAccess, KafkaOps, Offsets, RdKafkaOps};

/// How a Deployment of the Pipeline becomes a child process here.
struct Launcher {
    p: Pipeline,
    secrets: SecretStore,
    bin_dir: PathBuf,
    run_dir: PathBuf,
    run_id: String,
    started_at: DateTime<Utc>,
    dashboard_port: Option<u16>,
}

impl Launcher {
    fn deployment(&self, kind: Component) -> Deployment {
        match kind {
            Component::Generator => {
                builders::generator_deployment(&self.p, 1, "local", Some(self.started_at))
            }
            Component::Worker => builders::worker_deployment(&self.p, 1, "local"),
            Component::Dashboard => builders::dashboard_deployment(&self.p, "local"),
        }
    }

    fn init_processes(&self, kind: Component) -> Result<Vec<ProcessSpec>, LocalError> {
        translate::init_processes(
            &self.deployment(kind),
            &self.secrets,
            &Placement {
                bin_dir: &self.bin_dir,
                run_dir: &self.run_dir,
                run_id: &self.run_id,
                slot: 0,
                metrics_port: 0,
            },
        )
    }

    fn process(&self, kind: Component, slot: usize) -> Result<ProcessSpec, LocalError> {
        let d = self.deployment(kind);
        // The dashboard gets the port people will open; the rest any free one.
        let port = match kind {
            Component::Dashboard => self
                .dashboard_port
                .filter(|p| super::port_free(*p))
                .unwrap_or_else(super::free_port),
            _ => super::free_port(),
        };
        translate::translate(
            &d,
            &self.secrets,
            &Placement {
                bin_dir: &self.bin_dir,
                run_dir: &self.run_dir,
                run_id: &self.run_id,
                slot,
                metrics_port: port,
            },
        )
    }
}

/// Where the run reads Kafka and the warehouse.
struct Sources {
    access: KafkaAccess,
    kafka: RdKafkaOps,
    topic: String,
    group: String,
    partitions: i32,
    /// The topic's end when the run started: the audit covers what follows.
    start_offsets: Vec<i64>,
    db: DbSettings,
    schema: SchemaName,
}

pub(super) struct LocalRun {
    settings: LocalSettings,
    launcher: Launcher,
    src: Sources,
    summaries: PathBuf,
    generators: Supervisor,
    workers: Supervisor,
    dashboards: Supervisor,
    log_watch: logwatch::LogWatch,
    started: Instant,
    autoscaler: Option<Autoscaler>,
    desired_workers: u32,
    why: String,
    last_offsets: Offsets,
    last_scale: Instant,
    last_report: Instant,
    plan: Option<GeneratorPlan>,
}

impl LocalRun {
    pub(super) async fn start(settings: LocalSettings) -> Result<Self, LocalError> {
        let p = super::load_pipeline(&settings.file)?;
        let name = p.metadata.name.clone().unwrap_or_default();
        let secrets = SecretStore::load(settings.secrets.as_deref())?;
        let src = Sources::open(&p, &secrets).await?;
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
        let bin_dir = settings.bin_dir.clone().unwrap_or_else(super::default_bin_dir);
        say(&format!(
            "pipeline {name}: schema {}, group {}; binaries from {}; logs in {}",
            src.schema,
            src.group,
            bin_dir.display(),
            logs.display()
        ));
        let started_at = Utc::now();
        let desired_workers = control::starting_workers(&p.spec, Some(src.partitions.max(0) as u32));
        let baseline = Offsets {
            high_watermarks: src.start_offsets.clone(),
            produced_since: Some(0),
            committed: vec![None; src.start_offsets.len()],
        };
        let mut run = Self {
            generators: Supervisor::new(
                "generator",
                &logs,
                Some(summaries.clone()),
                Duration::from_secs(15),
            ),
            workers: Supervisor::new("worker", &logs, None, Duration::from_secs(10)),
            dashboards: Supervisor::new("dashboard", &logs, None, Duration::from_secs(5)),
            log_watch: logwatch::LogWatch::new(&logs),
            launcher: Launcher {
                p,
                secrets,
                bin_dir,
                run_dir,
                run_id: format!("{:x}", started_at.timestamp() % 0x10_0000),
                started_at,
                dashboard_port: settings.dashboard_port,
            },
            src,
            summaries,
            started: Instant::now(),
            autoscaler: None,
            desired_workers,
            why: String::from("starting"),
            last_offsets: baseline,
            last_scale: Instant::now() - settings.scale_interval,
            last_report: Instant::now(),
            plan: None,
            settings,
        };
        // The workers' init container (the migrator, when the Pipeline names
        // one) runs once before any worker or the dashboard starts.
        for init in run.launcher.init_processes(Component::Worker)? {
            say(&format!("{}: running", init.name));
            let logs = logs.clone();
            tokio::task::spawn_blocking(move || supervisor::run_to_end(&init, &logs))
                .await
                .map_err(|e| LocalError::Init(e.to_string()))??;
        }
        let spec = &run.launcher.p.spec;
        if spec.dashboard.enabled && !spec.paused {
            let launcher = &run.launcher;
            run.dashboards
                .scale(1, |slot| launcher.process(Component::Dashboard, slot))?;
            if let Some(d) = run.dashboards.children().first() {
                say(&format!("dashboard: http://{}/", d.metrics_addr));
            }
        }
        say(&table::header());
        Ok(run)
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// One pass of the control loop; `Some(reason)` once the run is over.
    pub(super) async fn tick(&mut self) -> Result<Option<&'static str>, LocalError> {
        let elapsed = self.started.elapsed();
        if self.settings.duration.is_some_and(|d| elapsed >= d) {
            return Ok(Some("the run's --duration is over"));
        }
        // The offsets are read once per scale interval; between readings the
        // step keeps the worker count and only the generator plan moves.
        let reading_due = self.last_scale.elapsed() >= self.settings.scale_interval;
        if reading_due {
            self.last_scale = Instant::now();
        }
        let stepped = control::step(
            &mut LocalView {
                src: &self.src,
                since: self.launcher.started_at,
                current: self.desired_workers,
                running: self.workers.running() as u32,
                reading_due,
            },
            &mut Processes {
                launcher: &self.launcher,
                generators: &mut self.generators,
                workers: &mut self.workers,
                elapsed,
            },
            &mut self.autoscaler,
            &self.launcher.p.spec,
            control::At {
                profile_elapsed: elapsed.as_secs_f64(),
                now: elapsed,
                interval: self.settings.scale_interval,
            },
        )
        .await?;
        if let Some(offsets) = stepped.observed.offsets {
            self.last_offsets = offsets;
        }
        let Counts { plan, workers } = stepped.counts;
        self.desired_workers = workers.replicas;
        self.why = workers.why;
        if plan.finished {
            return Ok(Some("the load profile has finished"));
        }
        self.plan = Some(plan);
        self.generators.tick();
        self.workers.tick();
        self.dashboards.tick();
        if self.last_report.elapsed() >= self.settings.report_interval {
            self.last_report = Instant::now();
            self.log_watch.scan();
            self.report(elapsed).await;
            self.write_status(
                self.desired_workers,
                &self.why,
                self.produced(&self.last_offsets, elapsed),
            );
        }
        Ok(None)
    }

    /// One row of the live table.
    async fn report(&self, elapsed: Duration) {
        let Some(plan) = &self.plan else { return };
        let offsets = &self.last_offsets;
        let loaded: u64 = offsets
            .committed
            .iter()
            .zip(&self.src.start_offsets)
            .map(|(c, s)| (c.unwrap_or(0) - s).max(0) as u64)
            .sum();
        say(&table::row(&table::Row {
            elapsed,
            stage: plan.stage,
            target_rate: plan.target_rate,
            achieved_rate: self.autoscaler.as_ref().and_then(Autoscaler::incoming_rate),
            generators: (self.generators.running(), self.generators.desired()),
            workers: (self.workers.running(), self.workers.desired()),
            lag: offsets.lag().iter().sum(),
            loaded,
            produced: self.produced(offsets, elapsed),
            dead_letters: self.src.dead_letters_since(self.launcher.started_at).await,
            problems: (self.log_watch.warnings, self.log_watch.errors),
            why: &self.why,
        }));
    }

    /// Messages produced since the run started (read at the profile's clock
    /// when the offsets were asked for it), and what the profile asked for by now.
    fn produced(&self, offsets: &Offsets, elapsed: Duration) -> (u64, Option<u64>) {
        produced_so_far(offsets, self.launcher.p.spec.generator.profile.as_ref(), elapsed)
    }

    /// Machine-readable state for scripts and tests: children, pids, ports,
    /// and what was produced against what the profile asked for.
    fn write_status(&self, desired_workers: u32, why: &str, produced: (u64, Option<u64>)) {
        let Some(path) = &self.settings.status_file else {
            return;
        };
        let doc = json!({
            "generators": self.generators.children(),
            "workers": self.workers.children(),
            "desired_workers": desired_workers,
            "why": why,
            "produced_total": produced.0,
            "expected_total": produced.1,
        });
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, doc.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }

    /// Stop the generators, let the workers load everything, audit.
    pub(super) async fn finish(mut self, reason: &str) -> Result<Outcome, LocalError> {
        say(&format!(
            "{} stopping the generators ({reason})",
            clock(self.elapsed())
        ));
        let stopped_at = self.elapsed();
        self.generators.stop_all().await;
        let end = self.src.offsets(Some(self.launcher.started_at)).await?;
        let produced = self.produced(&end, stopped_at);
        self.drain(&end).await?;
        self.workers.stop_all().await;
        self.dashboards.stop_all().await;
        self.write_status(0, "stopped", produced);
        self.audit(produced).await
    }

    /// Everything produced must be loaded before the audit.
    async fn drain(&mut self, end: &Offsets) -> Result<(), LocalError> {
        say(&format!(
            "{} waiting for the workers to load the last {} records",
            clock(self.elapsed()),
            lag_to(end, &end.high_watermarks)
        ));
        let deadline = Instant::now() + self.settings.drain_timeout;
        loop {
            let left = lag_to(&self.src.offsets(None).await?, &end.high_watermarks);
            if left == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                say(&format!(
                    "workers did not catch up within {:?}: {left} records left",
                    self.settings.drain_timeout
                ));
                return Ok(());
            }
            if self.workers.desired() == 0 {
                let launcher = &self.launcher;
                self.workers
                    .scale(1, |slot| launcher.process(Component::Worker, slot))?;
            }
            self.workers.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn audit(&self, produced: (u64, Option<u64>)) -> Result<Outcome, LocalError> {
        let summaries = audit::read_summaries(&self.summaries)?;
        let failures: u64 = summaries.iter().map(|s| s.delivery_failures).sum();
        if failures > 0 {
            say(&format!(
                "warning: the generators report {failures} undelivered messages"
            ));
        }
        let expected = audit::expected(&summaries);
        let actual = {
            let src = &self.src;
            let (db, schema, topic, start) = (
                src.db.clone(),
                src.schema.clone(),
                src.topic.clone(),
                src.start_offsets.clone(),
            );
            // A little slack for clocks: event times come from the generators.
            let since = self.launcher.started_at - chrono::Duration::seconds(5);
            tokio::task::spawn_blocking(move || audit::warehouse_totals(&db, &schema, &topic, &start, since))
                .await
                .map_err(|e| LocalError::AuditTask(e.to_string()))??
        };
        let audit = audit::Audit::compare(&expected, &actual);
        let delivered: u64 = summaries.iter().map(|s| s.messages_total).sum();
        let asked = match produced.1 {
            Some(due) if due > 0 => format!(
                " (the load profile asked for {due}: {:+.2}%)",
                (delivered as f64 - due as f64) / due as f64 * 100.0
            ),
            _ => String::new(),
        };
        say(&format!(
            "{} run finished after {:.0}s: {delivered} messages from {} generator runs{asked}",
            clock(self.elapsed()),
            self.elapsed().as_secs_f64(),
            summaries.len()
        ));
        say(&audit.to_string());
        Ok(Outcome { audit })
    }
}

/// What this machine shows of the run: the offsets (once per scale
/// interval) and the worker processes.
struct LocalView<'a> {
    src: &'a Sources,
    since: DateTime<Utc>,
    current: u32,
    running: u32,
    reading_due: bool,
}

impl Observer for LocalView<'_> {
    async fn observe(&mut self) -> Observed {
        let offsets = if self.reading_due {
            // Since the run's start: the profile clock the generators pace against.
            match self.src.offsets(Some(self.since)).await {
                Ok(offsets) => Some(offsets),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read offsets");
                    None
                }
            }
        } else {
            None
        };
        Observed {
            offsets,
            workers: control::Workers {
                current: self.current,
                running: self.running,
                partitions: Some(self.src.partitions.max(0) as u32),
            },
        }
    }
}

/// The counts of a step as child processes.
struct Processes<'a> {
    launcher: &'a Launcher,
    generators: &'a mut Supervisor,
    workers: &'a mut Supervisor,
    elapsed: Duration,
}

impl Applier for Processes<'_> {
    type Applied = ();
    type Error = LocalError;

    async fn apply(&mut self, counts: &Counts) -> Result<(), LocalError> {
        let launcher = self.launcher;
        self.generators.scale(counts.plan.replicas as usize, |slot| {
            launcher.process(Component::Generator, slot)
        })?;
        let (before, after) = (self.workers.desired(), counts.workers.replicas as usize);
        if before != after {
            say(&format!(
                "{} workers {before} -> {after}: {}",
                clock(self.elapsed),
                counts.workers.why
            ));
        }
        self.workers
            .scale(after, |slot| launcher.process(Component::Worker, slot))?;
        Ok(())
    }
}

impl Sources {
    /// Connect, ensure the topic, and note where it ends now.
    async fn open(p: &Pipeline, secrets: &SecretStore) -> Result<Self, LocalError> {
        let spec = &p.spec;
        let access = super::kafka_access(&spec.kafka, secrets)?;
        let schema =
            SchemaName::parse(&spec.warehouse.schema).map_err(|e| LocalError::Invalid(e.to_string()))?;
        // The runtime reads offsets and audits as the workers' role, verifying
        // the server as they do.
        let ca = match &spec.warehouse.ca_secret_ref {
            Some(ca) => Some(secrets.get(&ca.name, &ca.key)?),
            None => None,
        };
        let w = &spec.warehouse.connection_secret_ref;
        let db = DbSettings::parse_with_ca_pem(&secrets.get(&w.name, &w.key)?, "shopstream-local", ca)?;
        let topic = p.topic();
        let kafka = RdKafkaOps::new(Duration::from_secs(10));
        let change = kafka
            .ensure_topic(
                &access,
                &topic,
                spec.kafka.partitions,
                spec.kafka.replication_factor,
            )
            .await?;
        say(&change.describe(&topic));
        let mut src = Self {
            access,
            kafka,
            group: builders::worker_group(p),
            partitions: change.partitions(),
            start_offsets: Vec::new(),
            topic,
            db,
            schema,
        };
        src.start_offsets = src.offsets(None).await?.high_watermarks;
        Ok(src)
    }

    /// The offsets; with `since`, also what was produced since then.
    async fn offsets(&self, since: Option<DateTime<Utc>>) -> Result<Offsets, LocalError> {
        Ok(self
            .kafka
            .offsets(&self.access, &self.topic, &self.group, since)
            .await?)
    }

    /// Dead letters of this topic since `since` (`None` if the warehouse
    /// cannot say right now: the table shows `-`).
    async fn dead_letters_since(&self, since: DateTime<Utc>) -> Option<i64> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE topic = $1 AND received_at >= $2",
            self.schema.table(shopstream_model::warehouse::DEAD_LETTER)
        );
        let (db, topic) = (self.db.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            db.connect()
                .ok()
                .and_then(|mut c| c.query_one(&sql, &[&topic, &since]).ok())
                .map(|r| r.get::<_, i64>(0))
        })
        .await
        .ok()
        .flatten()
    }
}

/// Records committed below `target` (per partition), i.e. still to load.
fn lag_to(now: &Offsets, target: &[i64]) -> u64 {
    target
        .iter()
        .zip(&now.committed)
        .map(|(t, c)| (t - c.unwrap_or(0)).max(0) as u64)
        .sum()
}

/// Messages produced since the run started (as the offsets were read with
/// the run's start), and what the profile asked for by `elapsed`.
fn produced_so_far(
    offsets: &Offsets,
    profile: Option<&LoadProfile>,
    elapsed: Duration,
) -> (u64, Option<u64>) {
    let due = profile.map(|p| p.events_until(elapsed.as_secs_f64()).floor() as u64);
    (offsets.produced_since.unwrap_or(0), due)
}
