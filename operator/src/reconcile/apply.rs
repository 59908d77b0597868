//! Phase 5, apply: server-side apply of what [`Desired`] holds, skipping
//! objects whose watched copy already has every field; the dashboard's
//! objects are deleted (once) when it gets disabled.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shopstream_model::Pipeline;
use shopstream_model::pipeline::DashboardStatus;

use super::desired::Desired;
use super::observe::rollout;
use super::{Ctx, Error};
use crate::builders::{self, Component, MANAGER};
use crate::drift;
use crate::kafka_ops::KafkaOps;
use crate::status::Rollout;

/// The workloads as the API server has them after the apply.
pub(super) struct Applied {
    pub generator: Rollout,
    pub worker: Rollout,
    pub dashboard: Option<DashboardStatus>,
}

pub(super) async fn apply<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    desired: &Desired,
) -> Result<Applied, Error> {
    let ns = p.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let generator = ensure(
        &api,
        &ctx.deployments,
        &builders::deployment_name(p, Component::Generator),
        &desired.generator,
    )
    .await?;
    let worker = ensure(
        &api,
        &ctx.deployments,
        &builders::deployment_name(p, Component::Worker),
        &desired.worker,
    )
    .await?;
    Ok(Applied {
        generator: rollout(&generator),
        worker: rollout(&worker),
        dashboard: apply_dashboard(ctx, p, &ns, desired.dashboard.as_ref()).await?,
    })
}

/// The dashboard when enabled; removed (once) when it gets disabled.
async fn apply_dashboard<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    ns: &str,
    desired: Option<&(Deployment, Service)>,
) -> Result<Option<DashboardStatus>, Error> {
    let name = builders::deployment_name(p, Component::Dashboard);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    if let Some((deployment, service)) = desired {
        let applied = ensure(&deployments, &ctx.deployments, &name, deployment).await?;
        ensure(&services, &ctx.services, &name, service).await?;
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
