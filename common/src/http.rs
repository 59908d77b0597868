//! The operational HTTP endpoint every binary serves on `--metrics-addr`:
//! Prometheus `/metrics`, liveness `/healthz` and readiness `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Answers "can this process do useful work now?"; `Err` carries the reason.
/// Checks run on the HTTP runtime: they must not block (no locks held for long).
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the probes ask: readiness (`/readyz`: route traffic or work here) and
/// liveness (`/healthz`: `Err` means the process cannot recover by itself and
/// should be restarted).
#[derive(Clone)]
pub struct Checks {
    pub ready: ReadinessCheck,
    pub live: ReadinessCheck,
}

impl Checks {
    /// Readiness as given; alive as long as it answers.
    pub fn ready_only(ready: ReadinessCheck) -> Self {
        Self {
            ready,
            live: always_ready(),
        }
    }
}

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct AppState {
    registry: Registry,
    checks: Checks,
}

/// Always ready; for processes with no dependency worth reporting.
pub fn always_ready() -> ReadinessCheck {
    Arc::new(|| Ok(()))
}

/// Bind `addr` and serve until `shutdown` resolves. Binding happens before this
/// returns, so a port conflict is reported at start-up, not later in a log.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    checks: Checks,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<()>), HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    let app = router(registry, checks);
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(addr = %local, "serving /metrics, /healthz and /readyz");
    Ok((local, handle))
}

/// The operational routes alone, to merge into a binary's own router.
pub fn router(registry: Registry, checks: Checks) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, checks })
}

async fn metrics(State(state): State<AppState>) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type().to_string())], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match (state.checks.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    match (state.checks.live)() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_path(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let registry = Registry::new();
        let counter = prometheus::IntCounter::new("demo_total", "a demo counter").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc_by(7);
        let ready_flag = Arc::new(AtomicBool::new(false));
        let ready: ReadinessCheck = {
            let flag = ready_flag.clone();
            Arc::new(move || {
                if flag.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("database unreachable".into())
                }
            })
        };
        let (addr, _handle) = serve(
            "127.0.0.1:0".parse().unwrap(),
            registry,
            Checks::ready_only(ready),
            std::future::pending(),
        )
        .await
        .unwrap();

        assert!(get_path(addr, "/metrics").await.contains("demo_total 7"));
        assert!(get_path(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get_path(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.contains("database unreachable"));
        ready_flag.store(true, Ordering::SeqCst);
        assert!(get_path(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(
            addr,
            Registry::new(),
            Checks::ready_only(always_ready()),
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains(&format!("cannot listen on {addr}")),
            "{err}"
        );
    }
}
