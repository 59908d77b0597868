//! Reconciling one Pipeline, one module per phase:
//! validate ([`PipelineSpec::problems`], pure) -> [`dereference`] (Secrets,
//! topic, profile clock) -> the control step of [`crate::control`], shared
//! with the local runtime, with this runtime's observer and applier
//! ([`scale`]): offsets and workers observed, counts decided, [`desired`]
//! (pure: every object in one value) put in place by [`apply`] (server-side
//! apply) -> status ([`observe`] + [`crate::status::compute`], pure) ->
//! [`events`].
//! Deletion runs behind a finalizer ([`cleanup`]).

mod apply;
mod cleanup;
mod dereference;
mod desired;
mod events;
mod observe;
mod scale;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use shopstream_model::{Pipeline, PipelineStatus};
use thiserror::Error;

pub use dereference::kafka_access;

use crate::builders::MANAGER;
use crate::control::{self, Autoscaler};
use crate::kafka_ops::KafkaOps;
use crate::metrics::Metrics;
use crate::status::{self, Kind, Reason};
use crate::warehouse_ops::WarehouseError;

pub const FINALIZER: &str = "shopstream.dev/cleanup";
/// Look at every Pipeline at least this often (drift, missed events).
const RESYNC: Duration = Duration::from_secs(300);
/// Longest a cleanup step in the warehouse may take.
const WAREHOUSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Retry sooner when Kafka is unreachable.
const KAFKA_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("Pipeline has no namespace")]
    NoNamespace,
    #[error("secret {secret}: {detail}")]
    Secret { secret: String, detail: String },
    #[error("secret {secret} does not exist")]
    SecretMissing { secret: String },
    #[error("Kafka: {0}")]
    Kafka(#[from] shopstream_common::kafka::KafkaError),
    #[error("warehouse: {0}")]
    Warehouse(#[from] WarehouseError),
    #[error("invalid spec: {0}")]
    Invalid(String),
}

impl Error {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace => "no_namespace",
            Error::Secret { .. } | Error::SecretMissing { .. } => "secret",
            Error::Kafka(_) => "kafka",
            Error::Warehouse(_) => "warehouse",
            Error::Invalid(_) => "invalid",
        }
    }
}

pub struct Ctx<K: KafkaOps> {
    pub client: Client,
    pub kafka: K,
    pub recorder: Recorder,
    pub default_image: String,
    pub metrics: Metrics,
    /// How often autoscaled Pipelines are looked at.
    pub scale_interval: Duration,
    /// Each Pipeline's autoscaler (rates, recommendations, last decision),
    /// by UID; lost on restart, which only makes the scaler cautious.
    pub memory: Mutex<HashMap<String, Autoscaler>>,
    /// Monotonic origin for the scaler's clock.
    pub started: Instant,
    /// The owned Deployments and Services as the controller's watches see them:
    /// what is already in place is not applied again.
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    /// How long a deletion keeps retrying to delete the topic before it
    /// gives up, keeps the topic and lets the Pipeline go.
    pub cleanup_timeout: Duration,
}

pub async fn reconcile<K: KafkaOps>(p: Arc<Pipeline>, ctx: Arc<Ctx<K>>) -> Result<Action, Error> {
    let timer = Instant::now();
    let ns = p.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, p, |event| async {
        match event {
            Finalizer::Apply(p) => apply(p, &ctx).await,
            Finalizer::Cleanup(p) => cleanup::cleanup(p, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconciled(result.as_ref().err().map(Error::reason), timer.elapsed());
    result
}

pub fn error_policy<K: KafkaOps>(p: Arc<Pipeline>, error: &Error, _ctx: Arc<Ctx<K>>) -> Action {
    tracing::warn!(pipeline = %p.name_any(), namespace = ?p.namespace(), error = %shopstream_common::error::chain(error), "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Write the status unless it is what the Pipeline already shows: an
/// unchanged status costs no write (and wakes no watcher).
async fn patch_status(
    api: &Api<Pipeline>,
    name: &str,
    previous: Option<&PipelineStatus>,
    status: &PipelineStatus,
) -> Result<(), Error> {
    if previous == Some(status) {
        return Ok(());
    }
    let body = json!({
        "apiVersion": Pipeline::api_version(&()),
        "kind": Pipeline::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
        .await?;
    Ok(())
}

/// One pass over a Pipeline: each phase is a module; what stays here is the
/// data handed from one to the next, in one place to read (hence its length:
/// a sequence of calls, no decisions of its own).
async fn apply<K: KafkaOps>(p: Arc<Pipeline>, ctx: &Ctx<K>) -> Result<Action, Error> {
    let ns = p.namespace().ok_or(Error::NoNamespace)?;
    let name = p.name_any();
    let api: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = p.status.as_ref();
    let spec = &p.spec;
    // Until the owned objects' watches have listed once, everything would look
    // missing and be applied again.
    let _ = ctx.deployments.wait_until_ready().await;
    let _ = ctx.services.wait_until_ready().await;

    // 1. Validate.
    let problems = spec.problems();
    if !problems.is_empty() {
        let status = status::invalid(previous, p.metadata.generation, &problems, &now_time());
        let message = status.conditions[0].message.clone();
        let told = status::find(previous, Kind::Ready)
            .is_some_and(|c| c.reason == Reason::InvalidSpec.as_str() && c.message == message);
        if !told {
            let reason = Reason::InvalidSpec.as_str();
            events::publish(&ctx.recorder, &p, EventType::Warning, reason, message).await;
        }
        patch_status(&api, &name, previous, &status).await?;
        return Ok(Action::await_change());
    }

    // 2. Dereference.
    let access = kafka_access(&ctx.client, &ns, &spec.kafka).await;
    let topic = dereference::ensure_topic(ctx, &p, &access).await;
    let Some(partitions) = topic.partitions() else {
        // Without the topic, generators would crash-loop: leave the
        // Deployments as they are and try again soon.
        let seen = observe::unavailable_view(&p, topic);
        patch_status(
            &api,
            &name,
            previous,
            &status::unreachable(previous, &seen, &now_time()),
        )
        .await?;
        return Ok(Action::requeue(KAFKA_RETRY));
    };
    let now = Utc::now();
    let clock = dereference::clock(&api, &p, now).await?;

    // 3. The control step (shared with the local runtime): observe, decide the
    // counts, 4. build the desired objects and 5. apply them.
    let image = spec.image.as_deref().unwrap_or(&ctx.default_image);
    let key = p.uid().unwrap_or_else(|| p.name_any());
    let mut autoscaler = ctx.memory.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    let stepped = control::step(
        &mut scale::ClusterView {
            ctx,
            p: &p,
            access: &access,
            clock: &clock,
            partitions,
        },
        &mut scale::ClusterApply {
            ctx,
            p: &p,
            image,
            profile_start: clock.profile_start(),
        },
        &mut autoscaler,
        spec,
        control::At {
            profile_elapsed: clock.elapsed,
            now: ctx.started.elapsed(),
            interval: ctx.scale_interval,
        },
    )
    .await;
    if let Some(autoscaler) = autoscaler {
        ctx.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, autoscaler);
    }
    let stepped = stepped?;
    let (desired, applied) = stepped.applied;
    let produced = stepped.observed.offsets.and_then(|o| o.produced_since);

    // 6. Status.
    let seen = observe::seen(&p, topic, &clock, &desired, applied, produced, now);
    patch_status(
        &api,
        &name,
        previous,
        &status::compute(previous, &seen, &now_time()),
    )
    .await?;

    // 7. Events and metrics.
    events::workers_scaled(ctx, &p, previous, &desired.workers).await;
    if let Some(d) = &desired.workers.decision {
        ctx.metrics.decided(d);
    }
    ctx.metrics.observe_pipeline(
        &ns,
        &name,
        desired.workers.lag,
        desired.workers.replicas as i32,
        desired.plan.replicas as i32,
        desired.plan.target_rate,
    );
    Ok(Action::requeue(desired.next_look(spec, ctx.scale_interval)))
}
