//! The JSON API behind every panel, and the static page.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use deadpool_postgres::{Object, Pool, PoolError};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shopstream_model::SchemaName;

use crate::filters::{FilterParams, Filters};
use crate::{customers, order_lines, queries, sales};

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

impl ApiError {
    fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
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
struct Cohorts {
    months: Option<i32>,
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
        .route("/assets/{name}", get(asset))
        .route("/api/config", get(config))
        .route("/api/summary", get(summary))
        .route("/api/sales/series", get(series))
        .route("/api/products/top", get(top_products))
        .route("/api/categories", get(categories))
        .route("/api/funnel", get(funnel))
        .route("/api/customers", get(customers))
        .route("/api/dimensions", get(dimensions))
        .route("/api/customers/profile", get(customer_profile))
        .route("/api/devices", get(devices))
        .route("/api/payments", get(payments))
        .route("/api/calendar", get(calendar))
        .route("/api/activity/hours", get(hours))
        .route("/api/orders/status", get(order_statuses))
        .route("/api/orders/lines", get(order_lines))
        .route("/api/orders/lines.csv", get(order_lines_csv))
        .route("/api/cohorts", get(cohorts))
        .route("/api/freshness", get(freshness))
        .with_state(app)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../assets/index.html"))
}

/// Everything the page loads, compiled into the binary: nothing comes from
/// a CDN or a tile server at run time. The third-party files are as npm
/// ships them (see dashboard/assets/vendor/), with their licences.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript", include_str!("../assets/app.js")),
    ("style.css", "text/css", include_str!("../assets/style.css")),
    (
        "chart.umd.min.js",
        "text/javascript",
        include_str!("../assets/vendor/chart.umd.min.js"),
    ),
    (
        "chartjs-chart-geo.umd.min.js",
        "text/javascript",
        include_str!("../assets/vendor/chartjs-chart-geo.umd.min.js"),
    ),
    (
        "world-countries-110m.json",
        "application/json",
        include_str!("../assets/vendor/world-countries-110m.json"),
    ),
    (
        "LICENSE.chart.js.md",
        "text/markdown",
        include_str!("../assets/vendor/LICENSE.chart.js.md"),
    ),
    (
        "LICENSE.chartjs-chart-geo.md",
        "text/markdown",
        include_str!("../assets/vendor/LICENSE.chartjs-chart-geo.md"),
    ),
    (
        "LICENSE.world-atlas.md",
        "text/markdown",
        include_str!("../assets/vendor/LICENSE.world-atlas.md"),
    ),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "max-age=300"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

async fn config(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({"schema": app.schema.as_str(), "refresh_seconds": app.refresh_seconds}))
}

fn filters(q: FilterParams) -> Result<Filters, ApiError> {
    q.validate().map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn summary(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<sales::Summary>, ApiError> {
    let f = filters(q)?;
    app.run("summary", async |c, s| {
        sales::summary(c, &s, &f, Utc::now()).await
    })
    .await
}

async fn series(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<sales::Series>, ApiError> {
    let f = filters(q)?;
    app.run("sales_series", async |c, s| {
        sales::series(c, &s, &f, Utc::now()).await
    })
    .await
}

async fn top_products(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
    Query(top): Query<Top>,
) -> Result<Json<Vec<sales::ProductRow>>, ApiError> {
    let f = filters(q)?;
    let by_units = top.by == RankBy::Units;
    let limit = top.limit.unwrap_or(10).clamp(1, 100);
    app.run("products_top", async |c, s| {
        sales::top_products(c, &s, &f, by_units, limit, Utc::now()).await
    })
    .await
}

async fn categories(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<Vec<sales::CategoryRow>>, ApiError> {
    let f = filters(q)?;
    app.run("categories", async |c, s| {
        sales::categories(c, &s, &f, Utc::now()).await
    })
    .await
}

async fn funnel(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<sales::Funnel>, ApiError> {
    let f = filters(q)?;
    app.run("funnel", async |c, s| sales::funnel(c, &s, &f, Utc::now()).await)
        .await
}

#[derive(Serialize)]
struct Customers {
    /// `None` under dimension filters (see `sales::NewVsReturning`).
    new_vs_returning: Option<sales::NewVsReturning>,
    by_country_segment: Vec<sales::GeoRow>,
}

async fn customers(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<Customers>, ApiError> {
    let f = filters(q)?;
    app.run("customers", async |c, s| {
        let now = Utc::now();
        Ok(Customers {
            new_vs_returning: sales::new_vs_returning(c, &s, &f, now).await?,
            by_country_segment: sales::geo(c, &s, &f, now).await?,
        })
    })
    .await
}

async fn dimensions(State(app): State<Arc<App>>) -> Result<Json<sales::Dimensions>, ApiError> {
    app.run("dimensions", async |c, s| sales::dimensions(c, &s).await)
        .await
}

async fn customer_profile(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<customers::Profile>, ApiError> {
    let f = filters(q)?;
    app.run("customers_profile", async |c, s| {
        customers::profile(c, &s, &f, Utc::now()).await
    })
    .await
}

async fn devices(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<Vec<sales::Share>>, ApiError> {
    let f = filters(q)?;
    app.run("devices", async |c, s| {
        sales::devices(c, &s, &f, Utc::now()).await
    })
    .await
}

#[derive(Serialize)]
struct Payments {
    /// `None` with a category filter (see `sales::payments`).
    methods: Option<Vec<sales::Share>>,
}

async fn payments(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<Payments>, ApiError> {
    let f = filters(q)?;
    app.run("payments", async |c, s| {
        Ok(Payments {
            methods: sales::payments(c, &s, &f, Utc::now()).await?,
        })
    })
    .await
}

async fn calendar(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<sales::Calendar>, ApiError> {
    let f = filters(q)?;
    app.run("calendar", async |c, s| {
        sales::calendar(c, &s, &f, Utc::now()).await
    })
    .await
}

async fn hours(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<sales::Hours>, ApiError> {
    let f = filters(q)?;
    app.run("activity_hours", async |c, s| {
        sales::hours(c, &s, &f, Utc::now()).await
    })
    .await
}

#[derive(Deserialize)]
struct LinesQuery {
    after: Option<String>,
    search: Option<String>,
    limit: Option<i64>,
}

impl LinesQuery {
    fn parts(&self) -> Result<(Option<order_lines::Search>, Option<order_lines::Cursor>), ApiError> {
        let after = match self.after.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => {
                Some(order_lines::Cursor::decode(a).map_err(|e| ApiError::bad_request(e.to_string()))?)
            }
            None => None,
        };
        Ok((self.search.as_deref().and_then(order_lines::Search::parse), after))
    }
}

async fn order_lines(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
    Query(page): Query<LinesQuery>,
) -> Result<Json<order_lines::Page>, ApiError> {
    let f = filters(q)?;
    let (search, after) = page.parts()?;
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    app.run("orders_lines", async |c, s| {
        order_lines::lines(c, &s, &f, search.as_ref(), after, limit, Utc::now()).await
    })
    .await
}

/// Rows a CSV export holds at most: the newest, under the filters.
const CSV_EXPORT_ROWS: i64 = 100_000;

/// The order-line table as CSV: the newest CSV_EXPORT_ROWS lines under the
/// filters and search (an `X-Shopstream-Truncated` header says when more
/// matched).
async fn order_lines_csv(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
    Query(page): Query<LinesQuery>,
) -> Result<Response, ApiError> {
    let f = filters(q)?;
    let (search, _) = page.parts()?;
    let Json(page) = app
        .run("orders_lines_csv", async |c, s| {
            order_lines::lines(c, &s, &f, search.as_ref(), None, CSV_EXPORT_ROWS, Utc::now()).await
        })
        .await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let written = out
        .write_record(order_lines::CSV_HEADER)
        .and_then(|()| {
            page.lines
                .iter()
                .try_for_each(|l| out.write_record(l.csv_record()))
        })
        .map_err(|e| e.to_string())
        .and_then(|()| out.into_inner().map_err(|e| e.to_string()));
    let body = written.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("writing the CSV failed: {e}"),
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"shopstream-order-lines.csv\"",
            ),
            (
                header::HeaderName::from_static("x-shopstream-truncated"),
                if page.next.is_some() { "true" } else { "false" },
            ),
        ],
        body,
    )
        .into_response())
}

async fn order_statuses(
    State(app): State<Arc<App>>,
    Query(q): Query<FilterParams>,
) -> Result<Json<queries::OrderStatuses>, ApiError> {
    let f = filters(q)?;
    app.run("orders_status", async |c, s| {
        queries::order_statuses(c, &s, &f, Utc::now()).await
    })
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
