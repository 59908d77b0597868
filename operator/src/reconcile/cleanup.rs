//! Deletion, behind the finalizer: forget the Pipeline's scaler memory and
//! metrics, delete its topic when asked and then the stored offsets, and give
//! up (with a Warning) on steps that can never succeed or take too long.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use shopstream_model::{Pipeline, SchemaName};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::dereference::{kafka_access, secret_value};
use super::events::publish;
use super::{Ctx, Error, WAREHOUSE_TIMEOUT};
use crate::builders;
use crate::kafka_ops::KafkaOps;
use crate::warehouse_ops;

pub(super) async fn cleanup<K: KafkaOps>(p: Arc<Pipeline>, ctx: &Ctx<K>) -> Result<Action, Error> {
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
                // Only with the topic gone: a kept topic keeps its offsets.
                match forget_stored_offsets(ctx, &p, &ns, &topic).await {
                    Ok(note) => publish(&ctx.recorder, &p, EventType::Normal, "OffsetsCleared", note).await,
                    Err(e) => {
                        let Some(pending) = give_up_after(ctx, &p, &e) else {
                            return Err(e);
                        };
                        let note = format!(
                            "kept the warehouse's stored offsets of topic {topic}: could not clear them ({}), \
                             deleting the Pipeline anyway after {}s; a topic created again under this name is \
                             read from its start only once its offsets pass the old ones' (the workers reset \
                             offsets beyond a topic's end)",
                            shopstream_common::error::chain(&e),
                            pending.as_secs()
                        );
                        tracing::warn!(pipeline = %p.name_any(), namespace = %ns, "{note}");
                        publish(&ctx.recorder, &p, EventType::Warning, "OffsetsKept", note).await;
                    }
                }
            }
            Err(e) => {
                let Some(pending) = give_up_after(ctx, &p, &e) else {
                    return Err(e);
                };
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

/// Whether a failed cleanup step is abandoned: a Secret that is gone
/// (typically the namespace is being deleted and took it first) never comes
/// back; an unreachable broker or warehouse is given `cleanup_timeout`.
/// Waiting longer would block the deletion (and its namespace) forever.
/// `Some(pending)`: give up, after this long; `None`: retry later.
fn give_up_after<K: KafkaOps>(ctx: &Ctx<K>, p: &Pipeline, e: &Error) -> Option<Duration> {
    let pending = deletion_pending(p);
    (matches!(e, Error::SecretMissing { .. }) || pending >= ctx.cleanup_timeout).then_some(pending)
}

/// Clear the workers' stored offsets of the deleted topic in the warehouse.
async fn forget_stored_offsets<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    ns: &str,
    topic: &str,
) -> Result<String, Error> {
    let w = &p.spec.warehouse;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let url = secret_value(
        &secrets,
        &w.connection_secret_ref.name,
        &w.connection_secret_ref.key,
    )
    .await?;
    let ca = match &w.ca_secret_ref {
        Some(ca) => Some(secret_value(&secrets, &ca.name, &ca.key).await?),
        None => None,
    };
    let schema = SchemaName::parse(&w.schema).map_err(|e| Error::Invalid(e.to_string()))?;
    let cleared = warehouse_ops::forget_offsets(
        &url,
        ca,
        &schema,
        &builders::worker_group(p),
        topic,
        WAREHOUSE_TIMEOUT,
    )
    .await?;
    Ok(format!(
        "cleared the stored offsets of {cleared} partitions of topic {topic} in schema {}",
        w.schema
    ))
}

/// How long ago the Pipeline was marked for deletion (zero if it was not).
fn deletion_pending(p: &Pipeline) -> Duration {
    p.metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default()
}
