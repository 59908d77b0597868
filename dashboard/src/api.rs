//! The JSON API behind every panel, and the static page.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use deadpool_postgres::{Object, Pool, PoolError};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde::Deserialize;
use serde_json::json;
use shopstream_model::SchemaName;

use crate::queries;

pub struct App {
    pub pool: Pool,
    pub schema: SchemaName,
    pub refresh_seconds: u64,
    pub query_timeout: std::time::Duration,
    pub metrics: ApiMetrics,
}

#[derive(Clone)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl ApiMetrics {
    pub fn new(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "shopstream_dashboard_requests_total",
                "API requests, by endpoint and status",
            ),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("shopstream_dashboard_request_seconds", "API latency, by endpoint")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid buckets")),
            &["endpoint"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique metric");
        Self { requests, latency }
    }
}

/// An API failure, shown on the page as a banner and logged.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl App {
    async fn client(&self) -> Result<Object, ApiError> {
        self.pool.get().await.map_err(|e| {
            let detail = match &e {
                PoolError::Backend(b) => shopstream_common::error::chain(b),
                other => other.to_string(),
            };
            let message = match e {
                PoolError::Timeout(_) => format!(
                    "database busy: no free connection within {} s ({} in use)",
                    crate::POOL_WAIT.as_secs(),
                    self.pool.status().size
                ),
                _ => format!("database unreachable: {detail}"),
            };
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
            }
        })
    }

    /// A database that stops answering (a silently dropped network path)
    /// must not hold requests forever: give up, say so, and let the next
    /// refresh try again. The connection is then left out of the pool: its
    /// answer may never come, and a query queued behind it would hang too.
    /// The server cancels the statement itself (statement_timeout, see `pool`).
    async fn query<T, F>(&self, client: Object, f: F) -> Result<T, ApiError>
    where
        F: AsyncFnOnce(&tokio_postgres::Client, SchemaName) -> Result<T, tokio_postgres::Error>,
    {
        let outcome = tokio::time::timeout(self.query_timeout, f(&client, self.schema.clone())).await;
        match outcome {
            Ok(result) => result.map_err(|e| self.query_error(e)),
            Err(_) => {
                drop(Object::take(client));
                Err(ApiError {
                    status: StatusCode::GATEWAY_TIMEOUT,
                    message: format!(
                        "the database did not answer within {} s",
                        self.query_timeout.as_secs()
                    ),
                })
            }
        }
    }

    /// Readiness: the warehouse answers and the schema has the rollups.
    pub async fn check_warehouse(&self) -> Result<(), String> {
        let sql = format!(
            "SELECT 1 FROM {} LIMIT 1",
            self.schema.table(shopstream_model::warehouse::AGG_SALES_MINUTE)
        );
        let client = self.client().await.map_err(|e| e.message)?;
        self.query(client, async |c, _| c.query(&sql, &[]).await.map(|_| ()))
            .await
            .map_err(|e| e.message)
    }

    fn query_error(&self, e: tokio_postgres::Error) -> ApiError {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(code) if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME => {
                ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: format!(
                        "schema `{}` has no Shopstream tables yet: has a worker run with --schema {}?",
                        self.schema, self.schema
                    ),
                }
            }
            _ if e.is_closed() => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "database connection lost: {}",
                    shopstream_common::error::chain(&e)
                ),
            },
            _ => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("query failed: {}", shopstream_common::error::chain(&e)),
            },
        }
    }

    /// Run one endpoint's query with metrics and error mapping.
    async fn run<T, F>(self: &Arc<Self>, endpoint: &'static str, f: F) -> Result<Json<T>, ApiError>
    where
        F: AsyncFnOnce(&tokio_postgres::Client, SchemaName) -> Result<T, tokio_postgres::Error>,
    {
        let started = Instant::now();
        let result = match self.client().await {
            Ok(client) => self.query(client, f).await,
            Err(e) => Err(e),
        };
        self.metrics
            .latency
            .with_label_values(&[endpoint])
            .observe(started.elapsed().as_secs_f64());
        let status = match &result {
            Ok(_) => "200".to_string(),
            Err(e) => e.status.as_u16().to_string(),
        };
        self.metrics
            .requests
            .with_label_values(&[endpoint, &status])
            .inc();
        if let Err(e) = &result {
            tracing::warn!(endpoint, error = %e.message, "API request failed");
        }
        result.map(Json)
    }
}

#[derive(Deserialize)]
struct Window {
    window: Option<i64>,
}

#[derive(Deserialize)]
struct Cohorts {
    months: Option<i32>,
}

#[derive(Deserialize)]
struct Count {
    minutes: Option<i64>,
    hours: Option<i64>,
}

/// A bad value is a 400 naming the allowed ones (axum's Query rejection).
#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum RankBy {
    #[default]
    Revenue,
    Units,
}

#[derive(Deserialize)]
struct Top {
    #[serde(default)]
    by: RankBy,
    limit: Option<i64>,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| asset("text/javascript", include_str!("../assets/app.js"))),
        )
        .route(
            "/assets/style.css",
            get(|| asset("text/css", include_str!("../assets/style.css"))),
        )
        .route(
            "/assets/chart.umd.min.js",
            get(|| {
                asset(
                    "text/javascript",
                    include_str!("../assets/vendor/chart.umd.min.js"),
                )
            }),
        )
        .route(
            "/assets/LICENSE.chart.js.md",
            get(|| {
                asset(
                    "text/markdown",
                    include_str!("../assets/vendor/LICENSE.chart.js.md"),
                )
            }),
        )
        .route("/api/config", get(config))
        .route("/api/summary", get(summary))
        .route("/api/sales/minute", get(sales_minute))
        .route("/api/sales/hour", get(sales_hour))
        .route("/api/products/top", get(top_products))
        .route("/api/categories", get(categories))
        .route("/api/funnel", get(funnel))
        .route("/api/customers", get(customers))
        .route("/api/activity/hours", get(hours))
        .route("/api/orders/status", get(order_statuses))
        .route("/api/cohorts", get(cohorts))
        .route("/api/freshness", get(freshness))
        .with_state(app)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../assets/index.html"))
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
}

async fn config(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({"schema": app.schema.as_str(), "refresh_seconds": app.refresh_seconds}))
}

async fn summary(
    State(app): State<Arc<App>>,
    Query(q): Query<Window>,
) -> Result<Json<queries::Summary>, ApiError> {
    let window = q.window.unwrap_or(60).clamp(1, 60 * 24 * 30);
    app.run("summary", async |c, s| {
        queries::summary(c, &s, window, chrono::Utc::now()).await
    })
    .await
}

async fn sales_minute(
    State(app): State<Arc<App>>,
    Query(q): Query<Count>,
) -> Result<Json<Vec<queries::Point>>, ApiError> {
    let n = q.minutes.unwrap_or(60).clamp(1, 24 * 60);
    app.run("sales_minute", async |c, s| {
        queries::series(c, &s, "minute", n).await
    })
    .await
}

async fn sales_hour(
    State(app): State<Arc<App>>,
    Query(q): Query<Count>,
) -> Result<Json<Vec<queries::Point>>, ApiError> {
    let n = q.hours.unwrap_or(48).clamp(1, 24 * 60);
    app.run("sales_hour", async |c, s| queries::series(c, &s, "hour", n).await)
        .await
}

async fn top_products(
    State(app): State<Arc<App>>,
    Query(q): Query<Top>,
) -> Result<Json<Vec<queries::ProductRow>>, ApiError> {
    let by_units = q.by == RankBy::Units;
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    app.run("products_top", async |c, s| {
        queries::top_products(c, &s, by_units, limit).await
    })
    .await
}

async fn categories(State(app): State<Arc<App>>) -> Result<Json<Vec<queries::CategoryRow>>, ApiError> {
    app.run("categories", async |c, s| queries::categories(c, &s).await)
        .await
}

async fn funnel(State(app): State<Arc<App>>) -> Result<Json<queries::Funnel>, ApiError> {
    app.run("funnel", async |c, s| queries::funnel(c, &s).await).await
}

async fn customers(State(app): State<Arc<App>>) -> Result<Json<queries::Customers>, ApiError> {
    app.run("customers", async |c, s| queries::customers(c, &s).await)
        .await
}

async fn hours(State(app): State<Arc<App>>) -> Result<Json<Vec<queries::HourOfDay>>, ApiError> {
    app.run("activity_hours", async |c, s| queries::hours(c, &s).await)
        .await
}

async fn order_statuses(State(app): State<Arc<App>>) -> Result<Json<queries::OrderStatuses>, ApiError> {
    app.run("orders_status", async |c, s| queries::order_statuses(c, &s).await)
        .await
}

async fn cohorts(
    State(app): State<Arc<App>>,
    Query(q): Query<Cohorts>,
) -> Result<Json<Vec<queries::Cohort>>, ApiError> {
    let months = q.months.unwrap_or(12).clamp(1, 120);
    app.run("cohorts", async |c, s| queries::cohorts(c, &s, months).await)
        .await
}

async fn freshness(State(app): State<Arc<App>>) -> Result<Json<queries::Freshness>, ApiError> {
    app.run("freshness", async |c, s| queries::freshness(c, &s).await)
        .await
}
