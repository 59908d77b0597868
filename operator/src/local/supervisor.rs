//! Keeps N replicas of one component running as child processes, like a
//! ReplicaSet: scale up and down, restart crashed children with exponential
//! backoff, stop gracefully (SIGTERM, then SIGKILL after a grace period).

use shopstream_model::envvar;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::LocalError;
use super::translate::ProcessSpec;

/// A child that ran this long before dying starts its backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

struct Slot {
    spec: ProcessSpec,
    child: Option<Child>,
    started: Instant,
    next_start: Instant,
    backoff: Box<dyn Iterator<Item = Duration> + Send>,
    incarnation: u32,
    restarts: u32,
}

pub struct Supervisor {
    component: &'static str,
    log_dir: PathBuf,
    /// Where generators write their audit (one file per process incarnation).
    summary_dir: Option<PathBuf>,
    slots: Vec<Slot>,
    stopping: Vec<(String, Child, Instant)>,
    grace: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChildInfo {
    pub name: String,
    pub pid: Option<u32>,
    pub metrics_addr: SocketAddr,
    pub restarts: u32,
}

fn backoff() -> Box<dyn Iterator<Item = Duration> + Send> {
    Box::new(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .without_max_times()
            .build(),
    )
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

impl Supervisor {
    pub fn new(
        component: &'static str,
        log_dir: &Path,
        summary_dir: Option<PathBuf>,
        grace: Duration,
    ) -> Self {
        Self {
            component,
            log_dir: log_dir.to_path_buf(),
            summary_dir,
            slots: Vec::new(),
            stopping: Vec::new(),
            grace,
        }
    }

    pub fn desired(&self) -> usize {
        self.slots.len()
    }

    pub fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.child.is_some()).count()
    }

    pub fn children(&self) -> Vec<ChildInfo> {
        self.slots
            .iter()
            .map(|s| ChildInfo {
                name: s.spec.name.clone(),
                pid: s.child.as_ref().map(Child::id),
                metrics_addr: s.spec.metrics_addr,
                restarts: s.restarts,
            })
            .collect()
    }

    /// Run `desired` replicas; `make(slot)` describes replica `slot`.
    pub fn scale(
        &mut self,
        desired: usize,
        make: impl Fn(usize) -> Result<ProcessSpec, LocalError>,
    ) -> Result<(), LocalError> {
        while self.slots.len() > desired {
            if let Some(mut slot) = self.slots.pop()
                && let Some(child) = slot.child.take()
            {
                signal(&child, libc::SIGTERM);
                self.stopping
                    .push((slot.spec.name.clone(), child, Instant::now() + self.grace));
            }
        }
        while self.slots.len() < desired {
            let spec = make(self.slots.len())?;
            self.slots.push(Slot {
                spec,
                child: None,
                started: Instant::now(),
                next_start: Instant::now(),
                backoff: backoff(),
                incarnation: 0,
                restarts: 0,
            });
        }
        self.tick();
        Ok(())
    }

    /// Start what should run, notice crashes, finish stopping what should not.
    pub fn tick(&mut self) {
        let now = Instant::now();
        for slot in &mut self.slots {
            if let Some(child) = &mut slot.child
                && let Ok(Some(status)) = child.try_wait()
            {
                slot.child = None;
                if slot.started.elapsed() >= HEALTHY_RUN {
                    slot.backoff = backoff();
                }
                let wait = slot.backoff.next().unwrap_or(Duration::from_secs(30));
                slot.next_start = now + wait;
                slot.restarts += 1;
                tracing::warn!(process = %slot.spec.name, %status, restart_in = ?wait, "child exited; restarting");
            }
            if slot.child.is_none() && now >= slot.next_start {
                match start(
                    &slot.spec,
                    slot.incarnation,
                    &self.log_dir,
                    self.summary_dir.as_deref(),
                ) {
                    Ok(child) => {
                        tracing::info!(process = %slot.spec.name, pid = child.id(), component = self.component, "started");
                        slot.child = Some(child);
                        slot.started = now;
                        slot.incarnation += 1;
                    }
                    Err(e) => {
                        let wait = slot.backoff.next().unwrap_or(Duration::from_secs(30));
                        slot.next_start = now + wait;
                        tracing::error!(process = %slot.spec.name, error = %e, retry_in = ?wait, "cannot start");
                    }
                }
            }
        }
        self.stopping
            .retain_mut(|(name, child, deadline)| match child.try_wait() {
                Ok(Some(_)) | Err(_) => false,
                Ok(None) if now >= *deadline => {
                    tracing::warn!(process = %name, "did not stop in time; killing");
                    signal(child, libc::SIGKILL);
                    let _ = child.wait();
                    false
                }
                Ok(None) => true,
            });
    }

    /// Stop every replica and wait for them (up to the grace period each).
    pub async fn stop_all(&mut self) {
        let _ = self.scale(0, |_| Err(LocalError::Translate("scaling to zero".into())));
        while !self.stopping.is_empty() {
            self.tick();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Run an init container's process to its end (its output in its log);
/// a failure names the process and its last log lines.
pub fn run_to_end(spec: &ProcessSpec, log_dir: &Path) -> Result<(), LocalError> {
    let log = log_dir.join(format!("{}.log", spec.name));
    let status = command(spec, log_dir)
        .and_then(|mut cmd| cmd.status())
        .map_err(|e| {
            LocalError::Init(format!(
                "{}: cannot run {}: {e}",
                spec.name,
                spec.program.display()
            ))
        })?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    Err(LocalError::Init(format!(
        "{} failed ({status}); see {}: {}",
        spec.name,
        log.display(),
        lines[lines.len().saturating_sub(5)..].join(" | ")
    )))
}

fn start(
    spec: &ProcessSpec,
    incarnation: u32,
    log_dir: &Path,
    summary_dir: Option<&Path>,
) -> Result<Child, std::io::Error> {
    let mut cmd = command(spec, log_dir)?;
    if incarnation > 0 {
        // A restarted process is a new pod: a new name, so a generator does
        // not replay the event ids of the run that crashed.
        cmd.env(envvar::INSTANCE, format!("{}.{incarnation}", spec.name));
    }
    if let Some(dir) = summary_dir {
        std::fs::create_dir_all(dir)?;
        cmd.env(
            envvar::SUMMARY_FILE,
            dir.join(format!("{}-{incarnation}.json", spec.name)),
        );
    }
    cmd.spawn()
}

/// The process of `spec`: its files written, its environment alone, its
/// output appended to its log.
fn command(spec: &ProcessSpec, log_dir: &Path) -> Result<Command, std::io::Error> {
    for (path, content) in &spec.files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, content)?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(format!("{}.log", spec.name)))?;
    let mut cmd = Command::new(&spec.program);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Own process group: a Ctrl-C in the terminal reaches only the
        // runtime, which then stops the children in order.
        .process_group(0);
    if let Ok(filter) = std::env::var("RUST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    Ok(cmd)
}
