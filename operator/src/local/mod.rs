//! `shopstream-operator local -f pipeline.yaml`: the Pipeline's desired state
//! as child processes on this machine — the same Deployments (translated,
//! see [`translate`]), the same generator plan and autoscaler, against a
//! local broker and PostgreSQL. Ends with an audit of the warehouse against
//! what the generators delivered.

pub mod audit;
pub mod logwatch;
mod run;
pub mod secrets;
pub mod supervisor;
pub mod table;
pub mod translate;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shopstream_common::shutdown;
use shopstream_model::Pipeline;
use shopstream_model::pipeline::KafkaSpec;
use thiserror::Error;

use crate::kafka_ops::KafkaAccess;
use run::LocalRun;
use secrets::SecretStore;

#[derive(Debug, Error)]
pub enum LocalError {
    #[error("cannot read {path}: {detail}")]
    Manifest { path: String, detail: String },
    #[error("the Pipeline is invalid: {0}")]
    Invalid(String),
    #[error("cannot read the secrets file {path}: {source}")]
    SecretsRead { path: String, source: std::io::Error },
    #[error("the secrets file {path} is not valid YAML: {source}")]
    SecretsParse { path: String, source: serde_yaml::Error },
    #[error("secret `{name}` key `{key}` is not set: put it in the --secrets file or set {var}")]
    SecretMissing { name: String, key: String, var: String },
    #[error("cannot run the Deployment locally: {0}")]
    Translate(String),
    #[error("an init container did not succeed: {0}")]
    Init(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] shopstream_common::kafka::KafkaError),
    #[error("warehouse: {0}")]
    Db(#[from] shopstream_common::pg::DbError),
    #[error("cannot read the generator summary {path}: {source}")]
    SummaryRead { path: String, source: std::io::Error },
    #[error("the generator summary {path} is not valid: {source}")]
    SummaryParse { path: String, source: serde_json::Error },
    #[error("the audit query failed: {}", shopstream_common::error::chain(.0))]
    AuditQuery(#[source] postgres::Error),
    #[error("the audit stopped: {0}")]
    AuditTask(String),
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

impl From<crate::cli::LocalArgs> for LocalSettings {
    fn from(args: crate::cli::LocalArgs) -> Self {
        Self {
            file: args.file,
            duration: args.duration,
            secrets: args.secrets,
            bin_dir: args.bin_dir,
            run_dir: args.run_dir,
            report_interval: args.report_interval,
            scale_interval: args.scale_interval,
            drain_timeout: args.drain_timeout,
            status_file: args.status_file,
            dashboard_port: Some(args.dashboard_port),
        }
    }
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

/// Run the Pipeline of `settings.file` until its profile or `--duration`
/// ends (or a signal), drain, and audit.
pub async fn run(settings: LocalSettings) -> Result<Outcome, LocalError> {
    let mut run = LocalRun::start(settings).await?;
    let signal = shutdown::signalled();
    tokio::pin!(signal);
    let reason = loop {
        if let Some(reason) = run.tick().await? {
            break reason;
        }
        tokio::select! {
            sig = &mut signal => {
                say(&format!("{} {sig}: stopping", clock(run.elapsed())));
                break "stopped by a signal";
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    };
    run.finish(reason).await
}
