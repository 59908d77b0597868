//! The dashboard's flags (each also a `SHOPSTREAM_*` env var).

use shopstream_model::envvar;
use std::net::SocketAddr;

use clap::Parser;
use shopstream_common::logging::LogFormat;
use shopstream_common::pg::DatabaseArgs;
use shopstream_model::SchemaName;

#[derive(Clone, Parser)]
#[command(
    name = "shopstream-dashboard",
    version,
    about = "Live e-commerce analytics over a Shopstream warehouse",
    after_help = "Every flag can also be set with the SHOPSTREAM_* environment variable shown."
)]
pub struct Cli {
    /// Address to serve the page, the API and /metrics on.
    #[arg(long, env = envvar::LISTEN, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Warehouse schema of the pipeline.
    #[arg(long, env = envvar::SCHEMA, default_value = "shopstream", value_parser = shopstream_common::cli::parse_schema)]
    pub schema: SchemaName,

    /// How often the page refreshes itself.
    #[arg(long, env = envvar::REFRESH_SECONDS, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub refresh_seconds: u64,

    /// Longest an API request waits for the warehouse before answering 504
    /// (the server stops the statement too).
    #[arg(long, env = envvar::QUERY_TIMEOUT_SECONDS, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub query_timeout_seconds: u64,

    /// File holding a shared token (e.g. a mounted Secret key): the page and
    /// the API then answer only requests that carry it, as `Authorization:
    /// Bearer TOKEN` or as the password of HTTP Basic. `/metrics`, `/healthz`
    /// and `/readyz` stay open. Without it, put the dashboard behind an
    /// authenticating proxy (README "Security").
    #[arg(long, env = envvar::AUTH_TOKEN_FILE)]
    pub auth_token_file: Option<std::path::PathBuf>,

    /// Log format.
    #[arg(long, env = envvar::LOG_FORMAT, value_enum, default_value_t)]
    pub log_format: LogFormat,
}
