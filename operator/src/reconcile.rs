//! Reconciling one Pipeline, in explicit phases:
//! validate -> topic -> desired Deployments -> server-side apply -> scaler
//! -> status -> Events. Deletion runs behind a finalizer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use shopstream_common::hash::fnv1a64;
use shopstream_common::topics::TopicChange;
use shopstream_model::pipeline::{DashboardStatus, KafkaSpec, Phase};
use shopstream_model::{Pipeline, PipelineStatus};
use thiserror::Error;

use crate::builders::{self, Component, MANAGER};
use crate::drift;
use crate::generator_plan::{self, GeneratorInput};
use crate::kafka_ops::{KafkaAccess, KafkaOps};
use crate::metrics::Metrics;
use crate::scaler::{self, Decision, History, Observation, Policy, RateEstimator, Reading};
use crate::status::{self, GeneratorView, Rollout, Seen, TopicState, WorkersView};

pub const FINALIZER: &str = "shopstream.dev/cleanup";
/// Look at every Pipeline at least this often (drift, missed events).
const RESYNC: Duration = Duration::from_secs(300);
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
        }
    }
}

/// What the operator remembers per Pipeline between reconciles (rates,
/// recommendations, the last decision); lost on restart, which only makes the
/// scaler cautious.
pub struct Memory {
    rates: RateEstimator,
    history: History,
    /// When the scaler last decided, and what: reconciles in between (a
    /// Deployment's status moved) reuse it, so the scaler steps once per
    /// scale interval however often the Pipeline is reconciled.
    last: Option<(Duration, Decision)>,
}

pub struct Ctx<K: KafkaOps> {
    pub client: Client,
    pub kafka: K,
    pub recorder: Recorder,
    pub default_image: String,
    pub metrics: Metrics,
    /// How often autoscaled Pipelines are looked at.
    pub scale_interval: Duration,
    pub memory: Mutex<HashMap<String, Memory>>,
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
            Finalizer::Cleanup(p) => cleanup(p, &ctx).await,
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

async fn publish(recorder: &Recorder, p: &Pipeline, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &p.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "publishing an event failed");
    }
}

fn condition_reason(status: Option<&PipelineStatus>, type_: &str) -> Option<(String, String)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.reason.clone(), c.message.clone()))
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

async fn apply<K: KafkaOps>(p: Arc<Pipeline>, ctx: &Ctx<K>) -> Result<Action, Error> {
    let ns = p.namespace().ok_or(Error::NoNamespace)?;
    let name = p.name_any();
    let api: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = p.status.as_ref();
    let generation = p.metadata.generation;
    // Until the owned objects' watches have listed once, everything would look
    // missing and be applied again.
    let _ = ctx.deployments.wait_until_ready().await;
    let _ = ctx.services.wait_until_ready().await;

    // 1. Validate.
    let problems = p.spec.problems();
    if !problems.is_empty() {
        let status = status::invalid(previous, generation, &problems, &now_time());
        let message = status.conditions[0].message.clone();
        if condition_reason(previous, "Ready") != Some(("InvalidSpec".into(), message.clone())) {
            publish(&ctx.recorder, &p, EventType::Warning, "InvalidSpec", message).await;
        }
        patch_status(&api, &name, previous, &status).await?;
        return Ok(Action::await_change());
    }

    // 2. The topic.
    let topic = p.topic();
    let spec = &p.spec;
    let access = kafka_access(&ctx.client, &ns, &spec.kafka).await;
    let topic_state = match &access {
        Ok(access) => match ctx
            .kafka
            .ensure_topic(
                access,
                &topic,
                spec.kafka.partitions,
                spec.kafka.replication_factor,
            )
            .await
        {
            Ok(change) => {
                topic_events(ctx, &p, &topic, &change).await;
                match change {
                    TopicChange::CannotShrink { current, requested } => TopicState::CannotShrink {
                        name: topic.clone(),
                        current,
                        requested,
                    },
                    TopicChange::Created { partitions } | TopicChange::Unchanged { partitions } => {
                        TopicState::Ready {
                            name: topic.clone(),
                            partitions,
                        }
                    }
                    TopicChange::Grown { to, .. } => TopicState::Ready {
                        name: topic.clone(),
                        partitions: to,
                    },
                    TopicChange::CannotGrow {
                        current,
                        requested,
                        reason,
                    } => TopicState::CannotGrow {
                        name: topic.clone(),
                        current,
                        requested,
                        reason,
                    },
                }
            }
            Err(e) => TopicState::Unavailable {
                name: topic.clone(),
                error: shopstream_common::error::chain(&e),
            },
        },
        Err(e) => TopicState::Unavailable {
            name: topic.clone(),
            error: shopstream_common::error::chain(e),
        },
    };
    let partitions = match &topic_state {
        TopicState::Ready { partitions, .. } => Some(*partitions),
        TopicState::CannotShrink { current, .. } | TopicState::CannotGrow { current, .. } => Some(*current),
        TopicState::Unavailable { .. } => None,
    };
    if partitions.is_none() {
        // Without the topic, generators would crash-loop: leave the
        // Deployments as they are and try again soon.
        let mut status = previous.cloned().unwrap_or_default();
        let fresh = status::compute(previous, &unavailable_view(&p, topic_state.clone()), &now_time());
        status.conditions = fresh.conditions;
        // Nothing of this generation was applied: observedGeneration stays.
        status.phase = Some(if previous.and_then(|s| s.phase) == Some(Phase::Running) {
            Phase::Degraded
        } else {
            Phase::Pending
        });
        patch_status(&api, &name, previous, &status).await?;
        return Ok(Action::requeue(KAFKA_RETRY));
    }

    // 3. Generator plan and 4. worker count.
    let now = Utc::now();
    let (started_at, profile_hash) = profile_clock(&p, previous, now);
    let elapsed = (now - started_at).num_milliseconds() as f64 / 1000.0;
    let g = &spec.generator;
    let plan = generator_plan::plan(&GeneratorInput {
        enabled: g.enabled,
        paused: spec.paused,
        events_per_second: g.events_per_second,
        rate_per_replica: g.rate_per_replica,
        profile: g.profile.as_ref(),
        elapsed,
    });
    let (worker_replicas, decision, lag) = match &access {
        Ok(access) => workers_wanted(ctx, &p, access, partitions).await,
        Err(_) => (fixed_workers(&p), None, 0),
    };

    // 5. Server-side apply of the desired Deployments.
    let image = spec.image.clone().unwrap_or_else(|| ctx.default_image.clone());
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let generator = builders::generator_deployment(
        &p,
        plan.replicas as i32,
        &image,
        g.profile.as_ref().map(|_| started_at),
    );
    let worker = builders::worker_deployment(&p, worker_replicas, &image);
    let applied_generator = ensure(
        &deployments,
        &ctx.deployments,
        &builders::deployment_name(&p, Component::Generator),
        &generator,
    )
    .await?;
    let applied_worker = ensure(
        &deployments,
        &ctx.deployments,
        &builders::deployment_name(&p, Component::Worker),
        &worker,
    )
    .await?;
    let dashboard = apply_dashboard(ctx, &p, &image).await?;

    // 6. Status.
    let previous_desired = previous
        .and_then(|s| s.workers.as_ref())
        .map(|w| w.desired_replicas);
    let scaled = previous_desired.is_some_and(|d| d != worker_replicas);
    let last_scale = if scaled || previous_desired.is_none() {
        let reason = decision
            .as_ref()
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| format!("spec.workers.replicas is {worker_replicas}"));
        Some((now, reason))
    } else {
        previous
            .and_then(|s| s.workers.as_ref())
            .and_then(|w| w.last_scale_time.zip(w.last_scale_reason.clone()))
    };
    let seen = Seen {
        dashboard,
        generation,
        paused: spec.paused,
        topic: topic_state,
        generator: GeneratorView {
            enabled: g.enabled,
            desired: plan.replicas as i32,
            rollout: rollout(&applied_generator),
            stage: plan.stage,
            target_rate: plan.target_rate,
            started_at: Some(started_at),
            profile_hash,
            finished: plan.finished,
        },
        workers: WorkersView {
            desired: worker_replicas,
            rollout: rollout(&applied_worker),
            lag: lag as i64,
            selector: builders::selector_string(&p, Component::Worker),
            decision: decision.clone(),
            last_scale,
        },
    };
    let status = status::compute(previous, &seen, &now_time());
    patch_status(&api, &name, previous, &status).await?;

    // 7. Events on real transitions.
    if scaled && let Some(before) = previous_desired {
        let (reason, note) = match &decision {
            Some(d) => (
                if worker_replicas > before {
                    "ScaledUp"
                } else {
                    "ScaledDown"
                },
                d.reason.clone(),
            ),
            None => (
                "Scaled",
                format!("workers {before} -> {worker_replicas} (spec.workers.replicas)"),
            ),
        };
        publish(&ctx.recorder, &p, EventType::Normal, reason, note).await;
    }
    if let Some(d) = &decision {
        ctx.metrics.decided(d);
    }
    ctx.metrics.observe_pipeline(
        &ns,
        &name,
        lag,
        worker_replicas,
        plan.replicas as i32,
        plan.target_rate,
    );

    // Look again at the next stage boundary, scaler tick or resync.
    let mut next = RESYNC;
    if let Some(recheck) = plan.recheck_after {
        next = next.min(recheck);
    }
    if spec.workers.autoscaling.enabled && !spec.paused {
        next = next.min(ctx.scale_interval);
    }
    Ok(Action::requeue(next))
}

/// The dashboard when enabled; removed (once) when it gets disabled.
async fn apply_dashboard<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    image: &str,
) -> Result<Option<DashboardStatus>, Error> {
    let ns = p.namespace().ok_or(Error::NoNamespace)?;
    let name = builders::deployment_name(p, Component::Dashboard);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    if p.spec.dashboard.enabled {
        let applied = ensure(
            &deployments,
            &ctx.deployments,
            &name,
            &builders::dashboard_deployment(p, image),
        )
        .await?;
        ensure(&services, &ctx.services, &name, &builders::dashboard_service(p)).await?;
        return Ok(Some(DashboardStatus {
            service: name,
            ready_replicas: rollout(&applied).ready,
        }));
    }
    let was_deployed = p.status.as_ref().and_then(|s| s.dashboard.as_ref()).is_some();
    if was_deployed {
        for result in [
            deployments
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
            services.delete(&name, &DeleteParams::default()).await.map(|_| ()),
        ] {
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(None)
}

/// Server-side apply `desired` unless the watched copy already holds every
/// field of it (see [`drift::in_place`]); returns the live object.
async fn ensure<K>(api: &Api<K>, store: &Store<K>, name: &str, desired: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let key = ObjectRef::new(name).within(desired.meta().namespace.as_deref().unwrap_or_default());
    if let Some(live) = store.get(&key)
        && let (Ok(want), Ok(have)) = (serde_json::to_value(desired), serde_json::to_value(&*live))
        && drift::in_place(&want, &have)
    {
        return Ok((*live).clone());
    }
    let params = PatchParams::apply(MANAGER).force();
    Ok(api.patch(name, &params, &Patch::Apply(desired)).await?)
}

async fn cleanup<K: KafkaOps>(p: Arc<Pipeline>, ctx: &Ctx<K>) -> Result<Action, Error> {
    let ns = p.namespace().ok_or(Error::NoNamespace)?;
    if let Some(uid) = p.uid() {
        ctx.memory.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
    }
    ctx.metrics.forget_pipeline(&ns, &p.name_any());
    let access = kafka_access(&ctx.client, &ns, &p.spec.kafka).await;
    if let Ok(access) = &access {
        ctx.kafka.forget(access, &builders::worker_group(&p));
    }
    if p.spec.kafka.delete_topic_on_delete {
        let topic = p.topic();
        let deleted = match access {
            Ok(access) => ctx.kafka.delete_topic(&access, &topic).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        match deleted {
            Ok(()) => {
                publish(
                    &ctx.recorder,
                    &p,
                    EventType::Normal,
                    "TopicDeleted",
                    format!("deleted topic {topic}"),
                )
                .await;
            }
            Err(e) => {
                let pending = deletion_pending(&p);
                // A Secret that is gone (typically the namespace is being deleted
                // and took it first) never comes back; a broker that stays
                // unreachable is given `cleanup_timeout`. Waiting longer would
                // block the deletion (and its namespace) forever.
                let give_up = matches!(e, Error::SecretMissing { .. }) || pending >= ctx.cleanup_timeout;
                if !give_up {
                    return Err(e);
                }
                let note = format!(
                    "kept topic {topic}: could not delete it ({}), deleting the Pipeline anyway after {}s",
                    shopstream_common::error::chain(&e),
                    pending.as_secs()
                );
                tracing::warn!(pipeline = %p.name_any(), namespace = %ns, "{note}");
                publish(&ctx.recorder, &p, EventType::Warning, "TopicKept", note).await;
            }
        }
    }
    // The Deployments go with the Pipeline through their owner references.
    Ok(Action::await_change())
}

/// How long ago the Pipeline was marked for deletion (zero if it was not).
fn deletion_pending(p: &Pipeline) -> Duration {
    p.metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default()
}

async fn topic_events<K: KafkaOps>(ctx: &Ctx<K>, p: &Pipeline, topic: &str, change: &TopicChange) {
    match change {
        TopicChange::Created { partitions } => {
            let note = format!("created topic {topic} with {partitions} partitions");
            publish(&ctx.recorder, p, EventType::Normal, "TopicCreated", note).await;
        }
        TopicChange::Grown { from, to } => {
            let note = format!("grew topic {topic} from {from} to {to} partitions");
            publish(&ctx.recorder, p, EventType::Normal, "TopicGrown", note).await;
        }
        TopicChange::CannotShrink { current, requested } => {
            let was = condition_reason(p.status.as_ref(), "TopicReady").map(|(r, _)| r);
            if was.as_deref() != Some("CannotShrink") {
                let note = format!(
                    "spec asks for {requested} partitions but topic {topic} has {current}; Kafka cannot remove partitions"
                );
                publish(&ctx.recorder, p, EventType::Warning, "CannotShrinkTopic", note).await;
            }
        }
        TopicChange::CannotGrow {
            current,
            requested,
            reason,
        } => {
            let was = condition_reason(p.status.as_ref(), "TopicReady").map(|(r, _)| r);
            if was.as_deref() != Some("CannotGrow") {
                let note = format!(
                    "could not grow topic {topic} from {current} to {requested} partitions: {reason}"
                );
                publish(&ctx.recorder, p, EventType::Warning, "CannotGrowTopic", note).await;
            }
        }
        TopicChange::Unchanged { .. } => {}
    }
}

/// The profile clock: kept while the profile stays the same, restarted when
/// the profile changes (or first appears).
fn profile_clock(
    p: &Pipeline,
    previous: Option<&PipelineStatus>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Option<String>) {
    let hash = p.spec.generator.profile.as_ref().map(|profile| {
        format!(
            "{:016x}",
            fnv1a64(serde_json::to_string(profile).unwrap_or_default().as_bytes())
        )
    });
    let prev = previous.and_then(|s| s.generator.as_ref());
    match prev.and_then(|g| g.started_at) {
        Some(start) if prev.and_then(|g| g.profile_hash.clone()) == hash => (start, hash),
        _ => (now, hash),
    }
}

fn fixed_workers(p: &Pipeline) -> i32 {
    if p.spec.paused { 0 } else { p.spec.workers.replicas }
}

/// Worker count: from the autoscaler when enabled, else from the spec.
async fn workers_wanted<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    access: &KafkaAccess,
    partitions: Option<i32>,
) -> (i32, Option<Decision>, u64) {
    let spec = &p.spec;
    let offsets = ctx
        .kafka
        .offsets(access, &p.topic(), &builders::worker_group(p))
        .await;
    let lag_per_partition = offsets.as_ref().map(|o| o.lag()).unwrap_or_default();
    let lag: u64 = lag_per_partition.iter().sum();
    let a = &spec.workers.autoscaling;
    if spec.paused || !a.enabled {
        return (fixed_workers(p), None, lag);
    }
    let current = p
        .status
        .as_ref()
        .and_then(|s| s.workers.as_ref())
        .map(|w| w.desired_replicas)
        .unwrap_or(a.min_replicas)
        .max(0) as u32;
    let Ok(offsets) = offsets else {
        // No measurement: keep what we have.
        return (current as i32, None, lag);
    };
    let policy = Policy {
        min_replicas: a.min_replicas.max(0) as u32,
        max_replicas: a.max_replicas.max(1) as u32,
        target_lag_per_replica: a.target_lag_per_replica.max(1) as u64,
        catch_up_seconds: f64::from(a.catch_up_seconds.max(1)),
        scale_down_stabilization: Duration::from_secs(a.scale_down_stabilization_seconds.max(0) as u64),
    };
    let now = ctx.started.elapsed();
    let key = p.uid().unwrap_or_else(|| p.name_any());
    let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
    let m = memory.entry(key).or_insert_with(|| Memory {
        rates: RateEstimator::default(),
        history: History::resumed(now, current),
        last: None,
    });
    if let Some((at, decision)) = &m.last
        && now.saturating_sub(*at) < ctx.scale_interval
        && decision.desired == current
    {
        return (current as i32, Some(decision.clone()), lag);
    }
    // Capacity per worker is what the workers that actually run achieve: right
    // after a scale-up the new ones are not consuming yet.
    let running = ctx
        .deployments
        .get(
            &ObjectRef::new(&builders::deployment_name(p, Component::Worker))
                .within(&p.namespace().unwrap_or_default()),
        )
        .and_then(|d| d.status.as_ref().and_then(|s| s.ready_replicas))
        .map_or(current, |ready| (ready.max(0) as u32).min(current));
    m.rates.observe(
        Reading {
            at: now,
            produced: offsets.produced(),
            committed: offsets.committed_total(),
            replicas: running,
        },
        policy.target_lag_per_replica,
    );
    let observation = Observation {
        partition_lag: lag_per_partition,
        incoming_rate: m.rates.incoming_rate(),
        per_replica_rate: m.rates.per_replica_rate(),
        current_replicas: current,
        partitions: partitions.map(|n| n.max(0) as u32),
    };
    let decision = scaler::decide(&observation, &policy, &m.history, now);
    m.history
        .record(now, decision.recommendation, policy.scale_down_stabilization);
    m.last = Some((now, decision.clone()));
    (decision.desired as i32, Some(decision), lag)
}

fn rollout(d: &Deployment) -> Rollout {
    let s = d.status.as_ref();
    Rollout {
        replicas: s.and_then(|s| s.replicas).unwrap_or(0),
        ready: s.and_then(|s| s.ready_replicas).unwrap_or(0),
    }
}

fn unavailable_view(p: &Pipeline, topic: TopicState) -> Seen {
    let prev = p.status.as_ref();
    let g = prev.and_then(|s| s.generator.clone()).unwrap_or_default();
    let w = prev.and_then(|s| s.workers.clone()).unwrap_or_default();
    Seen {
        dashboard: prev.and_then(|s| s.dashboard.clone()),
        generation: p.metadata.generation,
        paused: p.spec.paused,
        topic,
        generator: GeneratorView {
            enabled: p.spec.generator.enabled,
            desired: g.desired_replicas,
            rollout: Rollout {
                replicas: g.replicas,
                ready: g.ready_replicas,
            },
            stage: g.stage.map(|s| s as usize),
            target_rate: g.target_rate,
            started_at: g.started_at,
            profile_hash: g.profile_hash,
            finished: g.profile_finished,
        },
        workers: WorkersView {
            desired: w.desired_replicas,
            rollout: Rollout {
                replicas: w.replicas,
                ready: w.ready_replicas,
            },
            lag: w.lag,
            selector: builders::selector_string(p, Component::Worker),
            decision: None,
            last_scale: None,
        },
    }
}

/// Resolve the Kafka credentials Secret (and CA bundle) of a Pipeline.
pub async fn kafka_access(client: &Client, ns: &str, k: &KafkaSpec) -> Result<KafkaAccess, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let read = |name: String, key: String| {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get(&name).await.map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => Error::SecretMissing { secret: name.clone() },
                e => Error::Secret {
                    secret: name.clone(),
                    detail: e.to_string(),
                },
            })?;
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&key))
                .map(|b| b.0.clone())
                .ok_or_else(|| Error::Secret {
                    secret: name.clone(),
                    detail: format!("has no key `{key}`"),
                })?;
            String::from_utf8(bytes).map_err(|_| Error::Secret {
                secret: name.clone(),
                detail: format!("key `{key}` is not UTF-8"),
            })
        }
    };
    let needs = KafkaAccess::secrets_needed(k);
    let credentials = match needs.credentials {
        Some((name, user_key, password_key)) => Some((
            read(name.to_string(), user_key.to_string()).await?,
            read(name.to_string(), password_key.to_string()).await?,
        )),
        None => None,
    };
    let ca_pem = match needs.ca {
        Some((name, key)) => Some(read(name.to_string(), key.to_string()).await?),
        None => None,
    };
    Ok(KafkaAccess::from_spec(k, credentials, ca_pem))
}
