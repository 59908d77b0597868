//! PostgreSQL connection settings shared by the binaries: TLS as libpq does
//! it (certificates verified only when a CA is given), an application name,
//! keepalives, and a printable target that never shows the password.

use shopstream_model::envvar;
use std::fmt;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::Client;
use postgres_openssl::MakeTlsConnector;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("TLS setup for PostgreSQL failed: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect { target: String, source: postgres::Error },
    #[error("preparing statements in schema {schema} failed: {source}")]
    Prepare { schema: String, source: postgres::Error },
}

/// The warehouse connection flags of every binary that talks to PostgreSQL.
#[derive(Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Warehouse connection URL, e.g. postgres://user:pass@host:5432/db?sslmode=require.
    /// Prefer the env var: flags show up in process listings.
    #[arg(long, env = envvar::DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// PEM CA bundle to verify the PostgreSQL server certificate with.
    #[arg(long, env = envvar::DATABASE_CA_FILE)]
    pub database_ca_file: Option<String>,
}

impl DatabaseArgs {
    /// Connection settings; `application_name` shows in pg_stat_activity.
    pub fn settings(&self, application_name: &str) -> Result<DbSettings, DbError> {
        DbSettings::parse(
            &self.database_url,
            application_name,
            self.database_ca_file.clone(),
        )
    }
}

/// How to reach the warehouse. The URL may hold a password, so it is only
/// ever shown through [`DbSettings::target`].
#[derive(Clone)]
pub struct DbSettings {
    config: postgres::Config,
    /// The same settings for async clients (the dashboard's pool).
    async_config: tokio_postgres::Config,
    ca_file: Option<String>,
}

impl fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target())
    }
}

/// Session settings every connection gets, after the URL's own `options`:
/// NOTICEs ("already exists, skipping") stay out of the logs unless the URL
/// asks for them, and time is always UTC (last, so it wins), so that
/// `date_trunc('hour', ...)` and `extract(hour ...)` mean the UTC hours the
/// dashboard labels, whatever the server's or role's default time zone is.
fn session_options(from_url: Option<&str>) -> String {
    let mut options: Vec<&str> = from_url.into_iter().filter(|o| !o.is_empty()).collect();
    if !options.iter().any(|o| o.contains("client_min_messages")) {
        options.push("-c client_min_messages=warning");
    }
    options.push("-c TimeZone=UTC");
    options.join(" ")
}

impl DbSettings {
    pub fn parse(url: &str, application_name: &str, ca_file: Option<String>) -> Result<Self, DbError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| DbError::Url(e.to_string()))?;
        let options = session_options(config.get_options());
        config.options(&options);
        config
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        let mut async_config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Url(e.to_string()))?;
        async_config.options(&options);
        async_config
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        Ok(Self {
            config,
            async_config,
            ca_file,
        })
    }

    pub fn async_config(&self) -> tokio_postgres::Config {
        self.async_config.clone()
    }

    /// `user@host:port/dbname`, without the password.
    pub fn target(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_string());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            self.config.get_user().unwrap_or("?"),
            host,
            port,
            self.config.get_dbname().unwrap_or("?")
        )
    }

    pub fn connect(&self) -> Result<Client, DbError> {
        self.config
            .connect(self.tls()?)
            .map_err(|source| DbError::Connect {
                target: self.target(),
                source,
            })
    }

    /// The TLS connector for sync and async clients alike.
    pub fn tls(&self) -> Result<MakeTlsConnector, DbError> {
        // `sslmode` in the URL decides whether TLS is used (prefer by default).
        // As with libpq, certificates are verified only when a CA is given;
        // otherwise TLS encrypts but does not authenticate the server.
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        let verify = self.ca_file.is_some();
        match &self.ca_file {
            Some(ca) => builder.set_ca_file(ca)?,
            None => builder.set_verify(SslVerifyMode::NONE),
        }
        let mut tls = MakeTlsConnector::new(builder.build());
        tls.set_callback(move |config, _host| {
            config.set_verify_hostname(verify);
            Ok(())
        });
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let s = DbSettings::parse("postgres://loader:hunter2@db.internal:6543/shop", "w", None).unwrap();
        assert_eq!(s.target(), "loader@db.internal:6543/shop");
        assert!(!format!("{s:?}").contains("hunter2"));
        let err = DbSettings::parse("postgres://x:y@h:notaport/db", "w", None).unwrap_err();
        assert!(err.to_string().starts_with("invalid database URL"));
    }

    #[test]
    fn sessions_are_always_utc_and_quiet_unless_the_url_says_otherwise() {
        let both = "-c client_min_messages=warning -c TimeZone=UTC";
        for (from_url, expected) in [
            (None, both),
            (Some(""), both),
            (
                Some("-c search_path=x"),
                "-c search_path=x -c client_min_messages=warning -c TimeZone=UTC",
            ),
            (
                Some("-c timezone=Europe/Paris"),
                "-c timezone=Europe/Paris -c client_min_messages=warning -c TimeZone=UTC",
            ),
            (
                Some("-c client_min_messages=notice"),
                "-c client_min_messages=notice -c TimeZone=UTC",
            ),
        ] {
            assert_eq!(session_options(from_url), expected, "{from_url:?}");
        }
    }
}
