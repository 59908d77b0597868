//! Command-line flags; each has a `SHOPSTREAM_*` environment equivalent.

use shopstream_model::envvar;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use shopstream_common::kafka::KafkaArgs;
use shopstream_common::logging::LogFormat;
use shopstream_common::pg::DatabaseArgs;
use shopstream_model::SchemaName;

use crate::consumer::GroupProtocol;

#[derive(Clone, Parser)]
#[command(
    name = "shopstream-worker",
    version,
    about = "Load Kafka shop events into a PostgreSQL star schema, exactly once",
    after_help = "Every flag can also be set with the SHOPSTREAM_* environment variable shown."
)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic to consume.
    #[arg(long, env = envvar::TOPIC, default_value = "shopstream-events")]
    pub topic: String,

    /// Consumer group; defaults to `shopstream-<schema>`.
    #[arg(long, env = envvar::GROUP)]
    pub group: Option<String>,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Warehouse schema (one per pipeline): lower-case letters, digits, `_`.
    #[arg(long, env = envvar::SCHEMA, default_value = "shopstream", value_parser = shopstream_common::cli::parse_schema)]
    pub schema: SchemaName,

    /// Most records in one micro-batch (one transaction).
    #[arg(long, env = envvar::BATCH_MAX_RECORDS, default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_max_records: u32,

    /// Longest wait, after a batch's first record, before it is committed.
    #[arg(long, env = envvar::BATCH_MAX_WAIT_MS, default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub batch_max_wait_ms: u64,

    /// Consumer-group protocol: `consumer` (KIP-848) and `cooperative` move only
    /// the partitions that change owner; `eager` pauses every partition on
    /// every rebalance.
    #[arg(long, env = envvar::GROUP_PROTOCOL, value_enum, default_value_t)]
    pub group_protocol: GroupProtocol,

    /// Session timeout with the classic protocols (how soon a dead worker's
    /// partitions move); with `consumer` the broker's group setting applies.
    #[arg(long, env = envvar::SESSION_TIMEOUT, default_value = "10s", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,

    /// Longest gap between polls before Kafka evicts the member. The worker
    /// keeps polling (partitions paused) while the warehouse is slow, so
    /// only a stuck process reaches it.
    #[arg(long, env = envvar::MAX_POLL_INTERVAL, default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_poll_interval: Duration,

    /// Liveness (/healthz) fails when the worker makes no progress for this
    /// long although it could: its loop stopped, a partition stayed
    /// unpositioned, or it has lag and a warehouse yet commits nothing.
    #[arg(long, env = envvar::STALL_TIMEOUT, default_value = "2m", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,

    /// Dimension keys kept in memory per dimension.
    #[arg(long, env = envvar::DIM_CACHE_SIZE, default_value_t = 200_000)]
    pub dim_cache_size: usize,

    /// Name of this worker (Kafka client id, `ingest_offsets.owner`); defaults to the host name.
    #[arg(long, env = envvar::INSTANCE)]
    pub instance: Option<String>,

    /// Apply the schema's pending migrations (and the grants below), then
    /// exit: run with the schema owner's credentials, e.g. as the init
    /// container of the worker pods, so the loading role needs no DDL rights.
    #[arg(long, env = envvar::MIGRATE_ONLY)]
    pub migrate_only: bool,

    /// With --migrate-only: the role that loads (the workers' own
    /// credentials) gets DML on the schema. A role name, or a postgres:// URL
    /// whose user name is taken (nothing else of it is used).
    #[arg(long, env = envvar::GRANT_LOADER, hide_env_values = true, requires = "migrate_only")]
    pub grant_loader: Option<String>,

    /// With --migrate-only: the role that reads (the dashboard, Grafana) gets
    /// SELECT on the schema. A role name or a URL, as for --grant-loader.
    #[arg(long, env = envvar::GRANT_READER, hide_env_values = true, requires = "migrate_only")]
    pub grant_reader: Option<String>,

    /// Serve Prometheus /metrics, /healthz and /readyz on this address.
    #[arg(long, env = envvar::METRICS_ADDR)]
    pub metrics_addr: Option<SocketAddr>,

    /// Log format.
    #[arg(long, env = envvar::LOG_FORMAT, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// A role name as given, or the user name of a `postgres://` URL (the
/// operator passes the loader's and reader's connection Secrets as they are).
/// Not a clap value parser: clap's error would echo the value, password and all.
pub fn role_of(value: &str) -> Result<String, String> {
    let role = if value.contains("://") {
        shopstream_common::pg::user_of(value)
            .map_err(|_| "not a valid postgres:// URL".to_string())?
            .ok_or_else(|| "the URL names no user".to_string())?
    } else {
        value.to_string()
    };
    if role.is_empty() || role.len() > 63 {
        return Err("a role name has 1 to 63 bytes".into());
    }
    Ok(role)
}

impl Cli {
    pub fn group(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| shopstream_model::warehouse::default_group(self.schema.as_str()))
    }

    pub fn instance(&self) -> String {
        self.instance
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("worker-{}", std::process::id()))
    }

    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent_and_defaults_follow_the_schema() {
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["w", "--database-url", "postgres://x@h/db", "--schema", "shop_a"]).unwrap();
        assert_eq!(cli.group(), "shopstream-shop_a");
        assert_eq!(cli.batch_max_records, 5000);
        assert_eq!(cli.batch_max_wait(), Duration::from_millis(200));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["w", "--database-url", "u", "--schema", "Bad-Name"],
                "invalid schema name",
            ),
            (
                &["w", "--database-url", "u", "--batch-max-records", "0"],
                "--batch-max-records",
            ),
            (&["w"], "--database-url"),
            (
                &["w", "--database-url", "u", "--grant-loader", "shop_loader"],
                "--migrate-only",
            ),
        ];
        for (args, needle) in cases {
            let err = Cli::try_parse_from(*args).err().expect("must fail").to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn roles_come_from_names_or_the_user_of_a_url() {
        let long = "x".repeat(64);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("shop_loader", Ok("shop_loader")),
            ("Mixed Case", Ok("Mixed Case")),
            (
                "postgres://loader:s3cret@db:5432/shop?sslmode=require",
                Ok("loader"),
            ),
            ("postgresql://reader@db/shop", Ok("reader")),
            ("postgres://owner:s3cret@db/shop?sslmode=verify-full", Ok("owner")),
            ("postgres://db/shop", Err("names no user")),
            ("postgres://loader:s3cret@db:notaport/shop", Err("not a valid")),
            ("", Err("1 to 63 bytes")),
            (long.as_str(), Err("1 to 63 bytes")),
        ];
        for (value, want) in cases {
            let got = role_of(value);
            match (want, &got) {
                (Ok(role), Ok(r)) => assert_eq!(r, role, "{value}"),
                (Err(needle), Err(e)) => {
                    assert!(e.contains(needle), "{value}: {e}");
                    assert!(!e.contains("s3cret"), "the error must not echo the value: {e}");
                }
                _ => panic!("{value}: got {got:?}"),
            }
        }
    }
}
