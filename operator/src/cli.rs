//! Command line of `shopstream-operator`.

use shopstream_model::envvar;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shopstream_common::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "shopstream-operator",
    version,
    about = "Runs Shopstream Pipelines: on Kubernetes (run), or on this machine (local)",
    after_help = "Flags can also be set with the SHOPSTREAM_* environment variables shown."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format.
    #[arg(
        long,
        env = envvar::LOG_FORMAT,
        value_enum,
        default_value_t,
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Pipeline CustomResourceDefinition (YAML).
    Crd,
    /// Reconcile Pipelines in the cluster (in-cluster config or KUBECONFIG).
    Run(RunArgs),
    /// Run one Pipeline on this machine as child processes, then audit it.
    Local(LocalArgs),
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The Pipeline manifest.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,

    /// Stop after this long (default: when the profile ends, or on Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// YAML file of Secret values: `<secret name>: {<key>: <value>}`.
    /// `SHOPSTREAM_SECRET_<NAME>_<KEY>` env vars override it.
    #[arg(long, env = envvar::SECRETS_FILE)]
    pub secrets: Option<PathBuf>,

    /// Where shopstream-generator and shopstream-worker are (default: next to this binary).
    #[arg(long, env = envvar::BIN_DIR)]
    pub bin_dir: Option<PathBuf>,

    /// Logs, generator summaries and Secret files go here (default: a new temp dir).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,

    /// How often to print the live table.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub report_interval: Duration,

    /// How often the autoscaler looks at the lag.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub scale_interval: Duration,

    /// How long to wait at the end for the workers to load everything.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Keep a JSON file with the running children (names, pids, metrics ports).
    #[arg(long)]
    pub status_file: Option<PathBuf>,

    /// Serve the dashboard (when the Pipeline enables it) on this port if it is free.
    #[arg(long, default_value_t = 8080)]
    pub dashboard_port: u16,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long, env = envvar::LEADER_ELECTION)]
    pub leader_election: bool,

    /// Name of the leader Lease.
    #[arg(long, env = envvar::LEASE_NAME, default_value = "shopstream-operator")]
    pub lease_name: String,

    /// Namespace of the leader Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// How long a leader's lease lasts without renewal.
    #[arg(long, env = envvar::LEASE_DURATION, default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, env = envvar::METRICS_ADDR, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = envvar::WATCH_NAMESPACE)]
    pub watch_namespace: Option<String>,

    /// Image for generator and worker pods when a Pipeline sets none.
    #[arg(long, env = envvar::DEFAULT_IMAGE, default_value = concat!("ghcr.io/shopstream/shopstream:", env!("CARGO_PKG_VERSION")))]
    pub default_image: String,

    /// Pipelines reconciled at the same time.
    #[arg(long, env = envvar::CONCURRENCY, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// How often autoscaled Pipelines are looked at.
    #[arg(long, env = envvar::SCALE_INTERVAL, default_value = "15s", value_parser = humantime::parse_duration)]
    pub scale_interval: Duration,

    /// How long deleting a Pipeline retries deleting its topic (deleteTopicOnDelete)
    /// while the brokers are unreachable, before it keeps the topic and finishes.
    #[arg(long, env = envvar::CLEANUP_TIMEOUT, default_value = "5m", value_parser = humantime::parse_duration)]
    pub cleanup_timeout: Duration,

    /// Timeout of Kafka admin and offset requests.
    #[arg(long, env = envvar::KAFKA_TIMEOUT, default_value = "10s", value_parser = humantime::parse_duration)]
    pub kafka_timeout: Duration,
}
