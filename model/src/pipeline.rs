//! The `Pipeline` custom resource (`shopstream.dev/v1alpha1`).
//!
//! The schema carries the validation Kubernetes can do on admission (ranges,
//! patterns, CEL rules across fields); [`PipelineSpec::problems`] repeats the
//! rules for runtimes without an API server (the local runtime) and adds the
//! few that need code.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::LoadProfile;
use crate::warehouse::SchemaName;

pub const GROUP: &str = "shopstream.dev";
pub const VERSION: &str = "v1alpha1";

/// A Shopstream pipeline: a Kafka topic fed by synthetic shop traffic and
/// loaded, exactly once, into a PostgreSQL star schema.
// The derive takes one `printcolumn(...)` per column; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "shopstream.dev",
    version = "v1alpha1",
    kind = "Pipeline",
    namespaced,
    shortname = "spl",
    category = "shopstream",
    status = "PipelineStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Workers", type_ = "integer", json_path = ".status.workers.replicas"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.workers.lag"),
    printcolumn(
        name = "Rate",
        type_ = "number",
        json_path = ".status.generator.targetRate",
        description = "Target events per second of the generators"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    scale(
        spec_replicas_path = ".spec.workers.replicas",
        status_replicas_path = ".status.workers.replicas",
        label_selector_path = ".status.workers.selector"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    pub kafka: KafkaSpec,
    pub warehouse: WarehouseSpec,
    #[serde(default)]
    pub generator: GeneratorSpec,
    #[serde(default)]
    pub workers: WorkersSpec,
    #[serde(default)]
    pub dashboard: DashboardSpec,
    /// Container image holding the Shopstream binaries; defaults to the
    /// operator's own `--default-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Scale generators and workers to zero; the topic and the data stay.
    #[serde(default)]
    pub paused: bool,
    /// Scheduling of every pod of the pipeline (e.g. onto an autoscaled node pool).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated host:port list.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// Topic name; defaults to `<pipeline name>-events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub topic: Option<String>,
    /// Partitions: the most workers that can share the load. Can grow, never shrink.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,
    /// Replicas of each partition; defaults to the brokers' default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: Option<i32>,
    /// Delete the topic when the Pipeline is deleted (default: keep it).
    #[serde(default)]
    pub delete_topic_on_delete: bool,
    /// TLS to the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTlsSpec>,
    /// SASL authentication; the username and password come from `credentialsSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSaslSpec>,
    /// Secret with the SASL credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,
}

fn default_partitions() -> i32 {
    6
}

impl KafkaSpec {
    /// The protocol this spec asks for (see [`crate::kafka`]).
    pub fn security_protocol(&self) -> crate::kafka::SecurityProtocol {
        crate::kafka::SecurityProtocol::of(self.sasl.is_some(), self.tls.as_ref().is_some_and(|t| t.enabled))
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTlsSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Secret key holding the PEM CA bundle to verify the brokers with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka clients (librdkafka, our CLIs) use.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSaslSpec {
    pub mechanism: SaslMechanism,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default = "username_key")]
    pub username_key: String,
    #[serde(default = "password_key")]
    pub password_key: String,
}

fn username_key() -> String {
    "username".into()
}

fn password_key() -> String {
    "password".into()
}

/// A key of a Secret in the Pipeline's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WarehouseSpec {
    /// Secret key holding the `postgres://` URL of the warehouse: the workers'
    /// (loading) role. Without `migratorSecretRef` it also runs the migrations,
    /// and without `readerSecretRef` the dashboard uses it too.
    pub connection_secret_ref: SecretKeyRef,
    /// The URL of a role that may only read the schema (`grant_reader`), for
    /// the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_secret_ref: Option<SecretKeyRef>,
    /// The URL of the schema's owner: an init container of the worker pods
    /// migrates with it and grants the loading and reading roles their
    /// rights, so the workers need no DDL rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrator_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the PEM CA bundle to verify the warehouse with
    /// (use `sslmode=verify-full` in the URLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// PostgreSQL schema of this pipeline (one schema per pipeline).
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    pub schema: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Steady rate when no profile is given.
    #[serde(default = "default_rate")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub events_per_second: u32,
    /// Most events/s one generator pod produces; pods = ceil(rate / this).
    #[serde(default = "default_rate_per_replica")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub rate_per_replica: u32,
    /// Stages of rates, held or ramped; overrides `eventsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<LoadProfile>,
    /// Seed of the customers, products and traffic.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_customers")]
    #[schemars(range(min = 1, max = 50_000_000))]
    pub customers: u32,
    #[serde(default = "default_products")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub products: u32,
    /// Share of deliberately invalid messages, 0 to 1.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub invalid_ratio: f64,
    /// How shoppers and orders behave (funnel, order lifecycle, late events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop: Option<ShopSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Shopper and order behaviour. Unset fields keep the generator's defaults,
/// calibrated to published e-commerce figures (`shopstream-generator --help`
/// lists them); the delays are means of exponential waits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShopSpec {
    /// Chance that a viewed product is added to the cart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub view_to_cart_ratio: Option<f64>,
    /// Share of carts left without checking out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub cart_abandonment_ratio: Option<f64>,
    /// Share of orders canceled before they complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub cancel_ratio: Option<f64>,
    /// Share of completed orders later refunded (in full or in part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub refund_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_after_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_after_seconds: Option<u32>,
    /// From completion to refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_after_seconds: Option<u32>,
    /// Share of sessions whose events arrive late (an offline phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub late_ratio: Option<f64>,
    /// The most a late event lags behind its event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_by_seconds: Option<u32>,
}

/// A `ShopSpec` ratio: its field name, the generator's env var, its value.
pub type ShopRatio = (&'static str, &'static str, Option<f64>);

impl ShopSpec {
    /// Every ratio, set or not.
    pub fn ratios(&self) -> [ShopRatio; 5] {
        use crate::envvar;
        [
            (
                "viewToCartRatio",
                envvar::VIEW_TO_CART_RATIO,
                self.view_to_cart_ratio,
            ),
            (
                "cartAbandonmentRatio",
                envvar::CART_ABANDONMENT_RATIO,
                self.cart_abandonment_ratio,
            ),
            ("cancelRatio", envvar::CANCEL_RATIO, self.cancel_ratio),
            ("refundRatio", envvar::REFUND_RATIO, self.refund_ratio),
            ("lateRatio", envvar::LATE_RATIO, self.late_ratio),
        ]
    }

    /// Every delay in seconds, set or not, by the generator's env var.
    pub fn delays(&self) -> [(&'static str, Option<u32>); 4] {
        use crate::envvar;
        [
            (envvar::CANCEL_AFTER, self.cancel_after_seconds),
            (envvar::COMPLETE_AFTER, self.complete_after_seconds),
            (envvar::REFUND_AFTER, self.refund_after_seconds),
            (envvar::LATE_BY, self.late_by_seconds),
        ]
    }
}

fn default_rate() -> u32 {
    100
}

fn default_rate_per_replica() -> u32 {
    5_000
}

fn default_seed() -> u64 {
    1
}

fn default_customers() -> u32 {
    10_000
}

fn default_products() -> u32 {
    1_000
}

impl Default for GeneratorSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            events_per_second: default_rate(),
            rate_per_replica: default_rate_per_replica(),
            profile: None,
            seed: default_seed(),
            customers: default_customers(),
            products: default_products(),
            invalid_ratio: 0.0,
            shop: None,
            resources: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkersSpec {
    /// Worker count when autoscaling is off (the scale subresource sets it).
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    #[serde(default)]
    pub batch: BatchSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn one() -> i32 {
    1
}

impl Default for WorkersSpec {
    fn default() -> Self {
        Self {
            replicas: 1,
            autoscaling: AutoscalingSpec::default(),
            batch: BatchSpec::default(),
            resources: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("minReplicas must not exceed maxReplicas")
    .reason(Reason::FieldValueInvalid)
    .field_path(".minReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Scale workers to the consumer lag (the operator's own scaler).
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Records of lag one worker may carry when rates are not yet measured.
    #[serde(default = "default_target_lag")]
    #[schemars(range(min = 1))]
    pub target_lag_per_replica: i64,
    /// How fast a backlog should be worked off, in seconds.
    #[serde(default = "default_catch_up")]
    #[schemars(range(min = 1, max = 86400))]
    pub catch_up_seconds: i32,
    /// Scale down only to the highest recommendation of this window.
    #[serde(default = "default_stabilization")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_stabilization_seconds: i32,
}

fn default_max_replicas() -> i32 {
    10
}

fn default_target_lag() -> i64 {
    10_000
}

fn default_catch_up() -> i32 {
    60
}

fn default_stabilization() -> i32 {
    300
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: 1,
            max_replicas: default_max_replicas(),
            target_lag_per_replica: default_target_lag(),
            catch_up_seconds: default_catch_up(),
            scale_down_stabilization_seconds: default_stabilization(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    #[serde(default = "default_batch_records")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_records: i32,
    #[serde(default = "default_batch_wait")]
    #[schemars(range(min = 1, max = 600_000))]
    pub max_wait_ms: i32,
}

fn default_batch_records() -> i32 {
    5_000
}

fn default_batch_wait() -> i32 {
    200
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_records: default_batch_records(),
            max_wait_ms: default_batch_wait(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardSpec {
    /// Run the live dashboard (a Deployment and a Service `<name>-dashboard`).
    #[serde(default)]
    pub enabled: bool,
    /// Secret key holding a token the page and the API ask for (as a Bearer
    /// token or a Basic password); `/metrics` and the probes stay open.
    /// Without it, put the Service behind an authenticating proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_secret_ref: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted, resources being created.
    Pending,
    /// Generators and workers running and ready.
    Running,
    /// `spec.paused`: scaled to zero.
    Paused,
    /// Running, but something needs attention (see conditions).
    Degraded,
    /// The spec is invalid; nothing is deployed until it is fixed.
    Failed,
    /// Being deleted.
    Terminating,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Ready, TopicReady, GeneratorReady, WorkersReady, Scaling, LeastPrivilege.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkersStatus>,
    /// Present while the dashboard is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<DashboardStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardStatus {
    /// Service of the dashboard (`http://<service>.<namespace>`).
    pub service: String,
    pub ready_replicas: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    pub name: String,
    pub partitions: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorStatus {
    pub replicas: i32,
    pub ready_replicas: i32,
    pub desired_replicas: i32,
    /// Current profile stage (0-based), when a profile runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<i32>,
    /// Events per second all generators produce together now.
    pub target_rate: f64,
    /// When the load profile clock started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// Fingerprint of the profile the clock belongs to (a new profile restarts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_hash: Option<String>,
    #[serde(default)]
    pub profile_finished: bool,
    /// Messages the generators delivered since the profile started, read from
    /// the topic (every pod's, including pods that have gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_total: Option<i64>,
    /// Messages the profile asked for by now: the integral of its rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_total: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkersStatus {
    pub replicas: i32,
    pub ready_replicas: i32,
    pub desired_replicas: i32,
    /// Records not yet loaded, summed over partitions.
    pub lag: i64,
    /// Label selector of the worker pods (for the scale subresource).
    pub selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
}

impl Pipeline {
    /// The topic name, explicit or `<name>-events`.
    pub fn topic(&self) -> String {
        self.spec
            .kafka
            .topic
            .clone()
            .unwrap_or_else(|| format!("{}-events", self.metadata.name.as_deref().unwrap_or("pipeline")))
    }
}

impl PipelineSpec {
    /// Everything wrong with the spec, each as a readable sentence. The API
    /// server enforces most of this on admission; the local runtime has none.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.kafka.bootstrap_servers.trim().is_empty() {
            out.push("kafka.bootstrapServers must not be empty".to_string());
        }
        if !(1..=10_000).contains(&self.kafka.partitions) {
            out.push(format!(
                "kafka.partitions must be 1 to 10000 (got {})",
                self.kafka.partitions
            ));
        }
        if let Some(topic) = &self.kafka.topic
            && (topic.is_empty()
                || topic.len() > 249
                || !topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            out.push(format!(
                "kafka.topic `{topic}` is not a legal Kafka topic name (letters, digits, `.`, `_`, `-`)"
            ));
        }
        if self.kafka.sasl.is_some() && self.kafka.credentials_secret_ref.is_none() {
            out.push("kafka.sasl needs kafka.credentialsSecretRef".to_string());
        }
        if let Err(e) = SchemaName::parse(&self.warehouse.schema) {
            out.push(format!("warehouse.schema: {e}"));
        }
        let g = &self.generator;
        if g.events_per_second == 0 {
            out.push("generator.eventsPerSecond must be at least 1".to_string());
        }
        if g.rate_per_replica == 0 {
            out.push("generator.ratePerReplica must be at least 1".to_string());
        }
        if !(0.0..=1.0).contains(&g.invalid_ratio) {
            out.push(format!(
                "generator.invalidRatio must be 0 to 1 (got {})",
                g.invalid_ratio
            ));
        }
        for (name, _, ratio) in g.shop.iter().flat_map(ShopSpec::ratios) {
            if let Some(r) = ratio
                && !(0.0..=1.0).contains(&r)
            {
                out.push(format!("generator.shop.{name} must be 0 to 1 (got {r})"));
            }
        }
        if let Some(p) = &g.profile
            && let Err(e) = p.validate()
        {
            out.push(format!("generator.profile: {e}"));
        }
        let w = &self.workers;
        if w.replicas < 0 {
            out.push(format!(
                "workers.replicas must not be negative (got {})",
                w.replicas
            ));
        }
        let a = &w.autoscaling;
        if a.min_replicas < 0 || a.max_replicas < 1 {
            out.push("workers.autoscaling needs minReplicas >= 0 and maxReplicas >= 1".to_string());
        }
        if a.min_replicas > a.max_replicas {
            out.push(format!(
                "workers.autoscaling.minReplicas ({}) must not exceed maxReplicas ({})",
                a.min_replicas, a.max_replicas
            ));
        }
        if a.target_lag_per_replica < 1 || a.catch_up_seconds < 1 || a.scale_down_stabilization_seconds < 0 {
            out.push(
                "workers.autoscaling needs targetLagPerReplica >= 1, catchUpSeconds >= 1, scaleDownStabilizationSeconds >= 0"
                    .to_string(),
            );
        }
        if w.batch.max_records < 1 || w.batch.max_wait_ms < 1 {
            out.push("workers.batch.maxRecords and maxWaitMs must be at least 1".to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn minimal() -> &'static str {
        r#"
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {name: shop, namespace: demo}
spec:
  kafka: {bootstrapServers: "kafka:9092"}
  warehouse:
    connectionSecretRef: {name: warehouse, key: url}
    schema: shop
"#
    }

    #[test]
    fn defaults_fill_a_minimal_pipeline() {
        let p: Pipeline = serde_yaml::from_str(minimal()).unwrap();
        assert_eq!(p.topic(), "shop-events");
        assert_eq!(p.spec.kafka.partitions, 6);
        assert!(p.spec.generator.enabled);
        assert_eq!(p.spec.generator.rate_per_replica, 5_000);
        assert_eq!(p.spec.workers.replicas, 1);
        assert_eq!(p.spec.workers.autoscaling.scale_down_stabilization_seconds, 300);
        assert_eq!(p.spec.workers.batch.max_records, 5_000);
        assert!(p.spec.problems().is_empty(), "{:?}", p.spec.problems());
    }

    #[test]
    fn problems_name_the_field() {
        let base: Pipeline = serde_yaml::from_str(minimal()).unwrap();
        type Breakage = (fn(&mut PipelineSpec), &'static str);
        let cases: Vec<Breakage> = vec![
            (|s| s.warehouse.schema = "Bad-Schema".into(), "warehouse.schema"),
            (|s| s.kafka.topic = Some("no spaces".into()), "kafka.topic"),
            (|s| s.kafka.partitions = 0, "kafka.partitions"),
            (
                |s| s.workers.autoscaling.min_replicas = 20,
                "minReplicas (20) must not exceed maxReplicas (10)",
            ),
            (|s| s.generator.invalid_ratio = 2.0, "generator.invalidRatio"),
            (
                |s| {
                    s.generator.shop = Some(ShopSpec {
                        refund_ratio: Some(1.5),
                        ..ShopSpec::default()
                    })
                },
                "generator.shop.refundRatio must be 0 to 1 (got 1.5)",
            ),
            (
                |s| {
                    s.generator.profile = Some(LoadProfile {
                        stages: vec![],
                        repeat: false,
                    })
                },
                "generator.profile",
            ),
            (
                |s| {
                    s.kafka.sasl = Some(KafkaSaslSpec {
                        mechanism: SaslMechanism::Plain,
                    })
                },
                "credentialsSecretRef",
            ),
        ];
        for (break_it, needle) in cases {
            let mut spec = base.spec.clone();
            break_it(&mut spec);
            let problems = spec.problems();
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle}: {problems:?}"
            );
        }
    }

    #[test]
    fn the_crd_has_the_subresources_and_columns() {
        let crd = serde_json::to_value(Pipeline::crd()).unwrap();
        let v = &crd["spec"]["versions"][0];
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "spl");
        assert_eq!(crd["spec"]["names"]["categories"][0], "shopstream");
        assert_eq!(
            v["subresources"]["scale"]["specReplicasPath"],
            ".spec.workers.replicas"
        );
        assert_eq!(
            v["subresources"]["scale"]["labelSelectorPath"],
            ".status.workers.selector"
        );
        let columns: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Phase", "Workers", "Lag", "Rate", "Age"]);
        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["warehouse"]["properties"]["schema"]["pattern"],
            crate::warehouse::SCHEMA_NAME_PATTERN
        );
        let autoscaling = &spec["properties"]["workers"]["properties"]["autoscaling"];
        assert_eq!(
            autoscaling["x-kubernetes-validations"][0]["rule"],
            "self.minReplicas <= self.maxReplicas"
        );
    }
}
