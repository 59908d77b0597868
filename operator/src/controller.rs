//! `shopstream-operator run`: leader election, the metrics endpoint and the
//! kube-runtime Controller that drives [`crate::reconcile`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use shopstream_common::http;
use shopstream_common::shutdown::{self, StopFlag};
use shopstream_model::Pipeline;
use thiserror::Error;

use crate::builders::MANAGER;
use crate::kafka_ops::{KafkaOps, RdKafkaOps};
use crate::leader::{Claim, LeaseLock, renew_deadline};
use crate::metrics::Metrics;
use crate::reconcile::{Ctx, error_policy, reconcile};

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("lost the leader lease; exiting so a standby can take over")]
    LostLeadership,
}

pub struct RunSettings {
    pub metrics_addr: SocketAddr,
    pub watch_namespace: Option<String>,
    pub default_image: String,
    pub concurrency: u16,
    pub scale_interval: Duration,
    pub kafka_timeout: Duration,
    pub cleanup_timeout: Duration,
    /// Lease namespace and name when leader election is on.
    pub leader_election: Option<(String, String)>,
    pub lease_duration: Duration,
    pub identity: String,
}

pub async fn run(settings: RunSettings) -> Result<(), RunError> {
    let client = Client::try_default().await?;
    let metrics = Metrics::new();
    let stop = StopFlag::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let sig = shutdown::signalled().await;
            tracing::info!(signal = sig, "shutting down");
            stop.set();
        });
    }
    let leading = Arc::new(AtomicBool::new(settings.leader_election.is_none()));
    serve_probes(&settings, &metrics, &stop, leading.clone()).await?;

    let lost = Arc::new(AtomicBool::new(false));
    let lock = match &settings.leader_election {
        Some((ns, name)) => {
            let Some(lock) = lead(&client, ns, name, &settings, &stop, &lost).await else {
                return Ok(()); // stopped while standing by
            };
            leading.store(true, Ordering::SeqCst);
            Some(lock)
        }
        None => None,
    };

    let (deployments, deployments_writer) = reflector::store();
    let (services, services_writer) = reflector::store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        kafka: RdKafkaOps::new(settings.kafka_timeout),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(settings.identity.clone()),
            },
        ),
        default_image: settings.default_image.clone(),
        metrics,
        scale_interval: settings.scale_interval,
        memory: Mutex::new(HashMap::new()),
        started: Instant::now(),
        deployments,
        services,
        cleanup_timeout: settings.cleanup_timeout,
    });
    tracing::info!(
        namespace = settings.watch_namespace.as_deref().unwrap_or("(all)"),
        concurrency = settings.concurrency,
        "reconciling Pipelines"
    );
    let shutdown = {
        let stop = stop.clone();
        async move { stop.wait().await }
    };
    drive(
        client,
        settings.watch_namespace.as_deref(),
        ctx,
        Writers {
            deployments: deployments_writer,
            services: services_writer,
        },
        settings.concurrency,
        shutdown,
    )
    .await;
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        tracing::warn!(error = %e, "releasing the lease failed");
    }
    if lost.load(Ordering::SeqCst) {
        return Err(RunError::LostLeadership);
    }
    Ok(())
}

/// `/metrics` and readiness: ready only while leading (a standby is alive
/// but does not reconcile).
async fn serve_probes(
    settings: &RunSettings,
    metrics: &Metrics,
    stop: &StopFlag,
    leading: Arc<AtomicBool>,
) -> Result<(), RunError> {
    let ready = Arc::new(move || {
        if leading.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("standing by for the leader lease".to_string())
        }
    }) as http::ReadinessCheck;
    let stop = stop.clone();
    http::serve(
        settings.metrics_addr,
        metrics.registry.clone(),
        http::Checks::ready_only(ready),
        async move { stop.wait().await },
    )
    .await?;
    Ok(())
}

/// Wait for the lease, then keep renewing it in the background (`lost` is set
/// if it slips away). `None`: stopped while standing by.
async fn lead(
    client: &Client,
    ns: &str,
    name: &str,
    settings: &RunSettings,
    stop: &StopFlag,
    lost: &Arc<AtomicBool>,
) -> Option<Arc<LeaseLock>> {
    let lock = Arc::new(LeaseLock::new(
        client.clone(),
        ns,
        name,
        &settings.identity,
        settings.lease_duration,
    ));
    if !acquire(&lock, stop, settings.lease_duration / 4).await {
        return None;
    }
    tokio::spawn(keep_lease(
        lock.clone(),
        stop.clone(),
        lost.clone(),
        settings.lease_duration,
    ));
    Some(lock)
}

/// Where the watches of owned objects keep what they see (read by the
/// reconciler through the matching [`Store`]s in [`Ctx`]).
pub struct Writers {
    pub deployments: reflector::store::Writer<Deployment>,
    pub services: reflector::store::Writer<Service>,
}

/// Watch Pipelines (and the Deployments and Services they own) and reconcile
/// them until `shutdown` resolves.
///
/// A Pipeline is reconciled when its spec (generation) or finalizers change,
/// not on its own status writes: otherwise each status patch would wake the
/// watch and reconcile again. Owned objects wake their Pipeline on any change
/// (a Deployment's ready replicas feed the status).
pub async fn drive<K: KafkaOps>(
    client: Client,
    namespace: Option<&str>,
    ctx: Arc<Ctx<K>>,
    writers: Writers,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (pipelines, deployments, services): (Api<Pipeline>, Api<Deployment>, Api<Service>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let owned = || watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let (pipeline_store, pipeline_writer) = reflector::store();
    let triggers = watcher(pipelines, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(pipeline_writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    let deployments = watcher(deployments, owned())
        .default_backoff()
        .reflect(writers.deployments)
        .touched_objects();
    let services = watcher(services, owned())
        .default_backoff()
        .reflect(writers.services)
        .touched_objects();
    Controller::for_stream(triggers, pipeline_store)
        .owns_stream(deployments)
        .owns_stream(services)
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

/// Stand by until the lease is ours; `false` when stopped first.
async fn acquire(lock: &LeaseLock, stop: &StopFlag, retry: Duration) -> bool {
    let mut last_holder = None;
    loop {
        match lock.try_acquire().await {
            Ok(Claim::Held) => {
                tracing::info!("acquired the leader lease");
                return true;
            }
            Ok(Claim::HeldBy(holder)) => {
                if last_holder.as_ref() != Some(&holder) {
                    tracing::info!(%holder, "standing by: another replica leads");
                    last_holder = Some(holder);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the leader lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.wait() => return false,
        }
    }
}

/// Renew the lease; if it cannot be renewed within the renew deadline
/// (shorter than the term), stop before a standby may take over.
async fn keep_lease(lock: Arc<LeaseLock>, stop: StopFlag, lost: Arc<AtomicBool>, term: Duration) {
    let mut last_renewal = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(term / 3) => {}
            _ = stop.wait() => return,
        }
        match lock.try_acquire().await {
            Ok(Claim::Held) => last_renewal = Instant::now(),
            Ok(Claim::HeldBy(holder)) => {
                tracing::error!(%holder, "the leader lease was taken over");
                lost.store(true, Ordering::SeqCst);
                stop.set();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the leader lease failed");
                if last_renewal.elapsed() >= renew_deadline(term) {
                    lost.store(true, Ordering::SeqCst);
                    stop.set();
                    return;
                }
            }
        }
    }
}
