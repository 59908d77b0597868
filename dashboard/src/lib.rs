//! Shopstream's live analytics dashboard: a web page with financial, product,
//! customer and freshness panels over the warehouse rollups, refreshed every
//! few seconds, and the small JSON API behind every panel (`/api/...`).

pub mod api;
pub mod cli;
pub mod customers;
pub mod filters;
pub mod guard;
pub mod order_lines;
pub mod queries;
pub mod sales;

pub use cli::Cli;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use shopstream_common::pg::{DbError, DbSettings};
use shopstream_common::{http, shutdown};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DashboardError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot create the connection pool: {0}")]
    Pool(String),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the token file {path}")]
    TokenFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {0} is empty")]
    EmptyToken(std::path::PathBuf),
    #[error("the HTTP server stopped")]
    Serve(#[source] std::io::Error),
}

/// Longest a request waits for a free pooled connection.
pub const POOL_WAIT: Duration = Duration::from_secs(3);
/// One page refresh sends 9 requests at once; leave room for a few viewers.
const POOL_SIZE: usize = 16;

/// A pool that reconnects on demand: a database that comes back is used again.
pub fn pool(settings: &DbSettings, query_timeout: Duration) -> Result<Pool, DashboardError> {
    let mut config = settings.async_config();
    // The server stops a statement the API has given up on, instead of
    // finishing work nobody will read. Sessions are read-only as a second guard
    // behind the reader role's grants: the dashboard never writes.
    let options = format!(
        "{} -c default_transaction_read_only=on -c statement_timeout={}",
        config.get_options().unwrap_or_default(),
        query_timeout.as_millis()
    );
    config.options(options.trim_start());
    let manager = Manager::from_config(
        config,
        settings.tls()?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|e| DashboardError::Pool(e.to_string()))
}

async fn watch_health(app: Arc<api::App>, health: Arc<std::sync::Mutex<Result<(), String>>>) {
    loop {
        let result = app.check_warehouse().await;
        if let Ok(mut h) = health.lock() {
            *h = result;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The shared token from its file (a mounted Secret), without the trailing newline.
pub fn read_token(path: &std::path::Path) -> Result<Arc<str>, DashboardError> {
    let text = std::fs::read_to_string(path).map_err(|source| DashboardError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim_end_matches(['\r', '\n']);
    if token.is_empty() {
        return Err(DashboardError::EmptyToken(path.to_path_buf()));
    }
    Ok(Arc::from(token))
}

pub async fn run(cli: Cli) -> Result<(), DashboardError> {
    let token = cli.auth_token_file.as_deref().map(read_token).transpose()?;
    let settings = cli
        .database
        .settings(&format!("shopstream-dashboard:{}", cli.schema))?;
    let registry = prometheus::Registry::new();
    let query_timeout = Duration::from_secs(cli.query_timeout_seconds);
    let app = Arc::new(api::App {
        pool: pool(&settings, query_timeout)?,
        schema: cli.schema.clone(),
        refresh_seconds: cli.refresh_seconds,
        query_timeout,
        metrics: api::ApiMetrics::new(&registry),
    });
    // Readiness follows a periodic check of the warehouse (and the schema).
    let health = Arc::new(std::sync::Mutex::new(Err::<(), String>("not checked yet".into())));
    tokio::spawn(watch_health(app.clone(), health.clone()));
    let ready = {
        let health = health.clone();
        Arc::new(move || {
            health
                .lock()
                .map(|h| h.clone())
                .unwrap_or_else(|_| Err("poisoned".into()))
        }) as http::ReadinessCheck
    };
    let guarded = token.is_some();
    let page = guard::protect(
        api::router(app.clone()),
        token,
        query_timeout + Duration::from_secs(5),
    );
    let router = page.merge(http::router(registry, http::Checks::ready_only(ready)));
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|source| DashboardError::Listen {
            addr: cli.listen,
            source,
        })?;
    tracing::info!(
        listen = %cli.listen, schema = %cli.schema, database = %settings.target(), token_required = guarded,
        "dashboard at http://{}/", cli.listen
    );
    let served = axum::serve(listener, router).with_graceful_shutdown(async {
        let sig = shutdown::signalled().await;
        tracing::info!(signal = sig, "shutting down");
    });
    served.await.map_err(DashboardError::Serve)?;
    Ok(())
}
