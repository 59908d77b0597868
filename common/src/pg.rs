//! PostgreSQL connection settings shared by the binaries: TLS as libpq does
//! it (`sslmode=verify-full` or `verify-ca` with a CA file; otherwise
//! certificates are verified only when a CA is given), an application name,
//! keepalives, and a printable target that never shows the password.

use shopstream_model::envvar;
use std::fmt;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
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
    #[error(
        "sslmode={0} verifies the server against a CA: give the CA bundle with --database-ca-file (SHOPSTREAM_DATABASE_CA_FILE)"
    )]
    NoCa(&'static str),
    #[error("cannot read the PostgreSQL CA file {path}: {source}")]
    CaFile {
        path: String,
        source: openssl::error::ErrorStack,
    },
}

impl DbError {
    /// A refusal that waiting cannot fix: the server's certificate failed
    /// verification (wrong CA, wrong host name) or the login was refused
    /// (SQLSTATE class 28). Start-up fails on these at once, with the reason,
    /// instead of retrying in silence.
    pub fn is_refusal(&self) -> bool {
        let DbError::Connect { source, .. } = self else {
            return false;
        };
        if source.code().is_some_and(|c| c.code().starts_with("28")) {
            return true;
        }
        let mut cause = std::error::Error::source(source);
        while let Some(e) = cause {
            if let Some(tls) = e.downcast_ref::<openssl::ssl::Error>() {
                // An I/O error mid-handshake is a network problem; an
                // OpenSSL error stack is the certificate or the protocol.
                return tls.ssl_error().is_some();
            }
            cause = e.source();
        }
        false
    }
}

/// The user name of a connection URL (or `key=value` string), parsed as
/// [`DbSettings::parse`] would; `None` when it names none.
pub fn user_of(url: &str) -> Result<Option<String>, DbError> {
    let config: postgres::Config = verification(url)
        .0
        .parse()
        .map_err(|e: postgres::Error| DbError::Url(e.to_string()))?;
    Ok(config.get_user().map(str::to_string))
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// `disable`, `prefer` or `require`: chain and host name when a CA file
    /// is given, nothing otherwise.
    IfCaGiven,
    /// `verify-ca`: the chain, not the host name.
    Chain,
    /// `verify-full`: the chain and the host name.
    Full,
}

/// The URL with `sslmode=verify-ca|verify-full` turned into `require` (the
/// PostgreSQL client library parses only disable, prefer and require; the
/// verification is ours), and which verification was asked for. Handles URLs
/// (`?a=b&sslmode=...`) and `key=value` strings; nothing else is touched.
fn verification(url: &str) -> (String, Verify) {
    let mode = |token: &str| match token {
        "sslmode=verify-full" => Some(Verify::Full),
        "sslmode=verify-ca" => Some(Verify::Chain),
        _ => None,
    };
    let mut verify = Verify::IfCaGiven;
    let mut rewrite = |token: &str| match mode(token) {
        Some(v) => {
            verify = v;
            "sslmode=require".to_string()
        }
        None => token.to_string(),
    };
    let out = if url.contains("://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let query: Vec<String> = query.split('&').map(&mut rewrite).collect();
                format!("{base}?{}", query.join("&"))
            }
            None => url.to_string(),
        }
    } else {
        url.split(' ').map(&mut rewrite).collect::<Vec<_>>().join(" ")
    };
    (out, verify)
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
    ca: Option<Ca>,
    verify: Verify,
}

/// Where the CA bundle comes from.
#[derive(Clone)]
enum Ca {
    File(String),
    /// PEM text, as the operator reads it from a Secret.
    Pem(String),
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
        Self::build(url, application_name, ca_file.map(Ca::File))
    }

    /// The same with the CA bundle as PEM text instead of a file.
    pub fn parse_with_ca_pem(
        url: &str,
        application_name: &str,
        ca_pem: Option<String>,
    ) -> Result<Self, DbError> {
        Self::build(url, application_name, ca_pem.map(Ca::Pem))
    }

    fn build(url: &str, application_name: &str, ca: Option<Ca>) -> Result<Self, DbError> {
        let (url, verify) = verification(url);
        let url = url.as_str();
        if ca.is_none() {
            match verify {
                Verify::Full => return Err(DbError::NoCa("verify-full")),
                Verify::Chain => return Err(DbError::NoCa("verify-ca")),
                Verify::IfCaGiven => {}
            }
        }
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
            ca,
            verify,
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
        // As with libpq, without a CA file TLS encrypts but does not
        // authenticate the server (and verify-* refuse to start, in `parse`).
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        match &self.ca {
            Some(Ca::File(path)) => builder.set_ca_file(path).map_err(|source| DbError::CaFile {
                path: path.clone(),
                source,
            })?,
            Some(Ca::Pem(pem)) => {
                let certs = X509::stack_from_pem(pem.as_bytes()).map_err(|source| DbError::CaFile {
                    path: "(from the Secret)".into(),
                    source,
                })?;
                for cert in certs {
                    builder.cert_store_mut().add_cert(cert)?;
                }
            }
            None => builder.set_verify(SslVerifyMode::NONE),
        }
        let hostname = self.ca.is_some() && self.verify != Verify::Chain;
        let mut tls = MakeTlsConnector::new(builder.build());
        tls.set_callback(move |config, _host| {
            config.set_verify_hostname(hostname);
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
    fn verify_modes_become_require_and_say_what_to_check() {
        let cases = [
            ("postgres://u@h/db", "postgres://u@h/db", Verify::IfCaGiven),
            (
                "postgres://u@h/db?sslmode=verify-full",
                "postgres://u@h/db?sslmode=require",
                Verify::Full,
            ),
            (
                "postgres://u:p@h/db?application_name=x&sslmode=verify-ca&connect_timeout=3",
                "postgres://u:p@h/db?application_name=x&sslmode=require&connect_timeout=3",
                Verify::Chain,
            ),
            (
                "postgres://u@h/db?sslmode=require",
                "postgres://u@h/db?sslmode=require",
                Verify::IfCaGiven,
            ),
            (
                "host=h user=u sslmode=verify-full dbname=db",
                "host=h user=u sslmode=require dbname=db",
                Verify::Full,
            ),
            // A password that merely contains the words is left alone.
            (
                "postgres://u:sslmode=verify-full@h/db",
                "postgres://u:sslmode=verify-full@h/db",
                Verify::IfCaGiven,
            ),
        ];
        for (url, rewritten, verify) in cases {
            assert_eq!(verification(url), (rewritten.to_string(), verify), "{url}");
        }
        let err = DbSettings::parse("postgres://u@h/db?sslmode=verify-full", "w", None).unwrap_err();
        assert!(err.to_string().contains("--database-ca-file"), "{err}");
        assert!(
            DbSettings::parse(
                "postgres://u@h/db?sslmode=verify-full",
                "w",
                Some("/ca.pem".into())
            )
            .is_ok()
        );
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
