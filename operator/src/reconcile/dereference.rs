//! Phase 2, dereference: everything a pass reads from outside before it
//! decides: the Secrets, the topic (created or grown as the spec asks), the
//! profile clock and the topic's offsets.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use shopstream_common::hash::fnv1a64;
use shopstream_common::topics::TopicChange;
use shopstream_model::pipeline::KafkaSpec;
use shopstream_model::{Pipeline, PipelineStatus};

use super::{Ctx, Error, events};
use crate::builders;
use crate::kafka_ops::{KafkaAccess, KafkaOps, Offsets};
use crate::status::TopicState;

/// The load profile's clock for this pass.
pub(super) struct Clock {
    /// Fingerprint of the profile (`None`: no profile).
    pub hash: Option<String>,
    pub started_at: DateTime<Utc>,
    /// Seconds since `started_at`.
    pub elapsed: f64,
}

impl Clock {
    /// The start the generators pace against (only with a profile).
    pub fn profile_start(&self) -> Option<DateTime<Utc>> {
        self.hash.as_ref().map(|_| self.started_at)
    }
}

/// The profile clock: kept while the profile stays the same.
pub(super) async fn clock(api: &Api<Pipeline>, p: &Pipeline, now: DateTime<Utc>) -> Result<Clock, Error> {
    let hash = profile_hash(p);
    let started_at = profile_start(api, &p.name_any(), p.status.as_ref(), &hash, now).await?;
    Ok(Clock {
        elapsed: (now - started_at).num_milliseconds() as f64 / 1000.0,
        hash,
        started_at,
    })
}

/// One read of the offsets: the workers' lag, and what the generators
/// produced since the profile started. `None`: no access to Kafka;
/// `Some(None)`: the read failed.
pub(super) async fn offsets<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    access: &Result<KafkaAccess, Error>,
    clock: &Clock,
) -> Option<Option<Offsets>> {
    let access = access.as_ref().ok()?;
    Some(
        ctx.kafka
            .offsets(
                access,
                &p.topic(),
                &builders::worker_group(p),
                clock.profile_start(),
            )
            .await
            .ok(),
    )
}

/// Ensure the Pipeline's topic (Events on changes) and say what it is now.
pub(super) async fn ensure_topic<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    access: &Result<KafkaAccess, Error>,
) -> TopicState {
    let name = p.topic();
    let k = &p.spec.kafka;
    let unavailable = |error: String| TopicState::Unavailable {
        name: name.clone(),
        error,
    };
    let access = match access {
        Ok(access) => access,
        Err(e) => return unavailable(shopstream_common::error::chain(e)),
    };
    match ctx
        .kafka
        .ensure_topic(access, &name, k.partitions, k.replication_factor)
        .await
    {
        Ok(change) => {
            events::topic_changed(ctx, p, &name, &change).await;
            topic_state(name, change)
        }
        Err(e) => unavailable(shopstream_common::error::chain(&e)),
    }
}

/// The topic's state for the status, from what ensuring it did (pure).
pub(super) fn topic_state(name: String, change: TopicChange) -> TopicState {
    match change {
        TopicChange::CannotShrink { current, requested } => TopicState::CannotShrink {
            name,
            current,
            requested,
        },
        TopicChange::CannotGrow {
            current,
            requested,
            reason,
        } => TopicState::CannotGrow {
            name,
            current,
            requested,
            reason,
        },
        ready => TopicState::Ready {
            partitions: ready.partitions(),
            name,
        },
    }
}

/// When the profile clock started: kept from the status while the profile
/// stays the same. The cached object can predate the status the previous
/// pass wrote (a reconcile woken by the Deployments it just created): the
/// API server is asked before the clock restarts, or the generators would
/// roll out a second time with a new start.
async fn profile_start(
    api: &Api<Pipeline>,
    name: &str,
    previous: Option<&PipelineStatus>,
    hash: &Option<String>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Error> {
    if let Some(start) = kept_clock(previous, hash) {
        return Ok(start);
    }
    Ok(kept_clock(api.get(name).await?.status.as_ref(), hash).unwrap_or(now))
}

/// The profile clock recorded in `status`, if it belongs to the profile
/// fingerprinted `hash`: kept while the profile stays the same, restarted
/// when it changes (or first appears).
fn kept_clock(status: Option<&PipelineStatus>, hash: &Option<String>) -> Option<DateTime<Utc>> {
    let g = status.and_then(|s| s.generator.as_ref())?;
    g.started_at.filter(|_| g.profile_hash == *hash)
}

/// Fingerprint of the load profile, which owns the profile clock.
fn profile_hash(p: &Pipeline) -> Option<String> {
    p.spec.generator.profile.as_ref().map(|profile| {
        format!(
            "{:016x}",
            fnv1a64(serde_json::to_string(profile).unwrap_or_default().as_bytes())
        )
    })
}

/// One key of a Secret, as text.
pub(super) async fn secret_value(secrets: &Api<Secret>, name: &str, key: &str) -> Result<String, Error> {
    let secret = secrets.get(name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => Error::SecretMissing {
            secret: name.to_string(),
        },
        e => Error::Secret {
            secret: name.to_string(),
            detail: e.to_string(),
        },
    })?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .ok_or_else(|| Error::Secret {
            secret: name.to_string(),
            detail: format!("has no key `{key}`"),
        })?;
    String::from_utf8(bytes).map_err(|_| Error::Secret {
        secret: name.to_string(),
        detail: format!("key `{key}` is not UTF-8"),
    })
}

/// Resolve the Kafka credentials Secret (and CA bundle) of a Pipeline.
pub async fn kafka_access(client: &Client, ns: &str, k: &KafkaSpec) -> Result<KafkaAccess, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let read = |name: String, key: String| {
        let secrets = secrets.clone();
        async move { secret_value(&secrets, &name, &key).await }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_state_follows_what_ensuring_it_did() {
        let t = || "shop-events".to_string();
        // (change, partitions the status shows, ready)
        let cases = [
            (TopicChange::Created { partitions: 6 }, Some(6), true),
            (TopicChange::Unchanged { partitions: 4 }, Some(4), true),
            (TopicChange::Grown { from: 4, to: 8 }, Some(8), true),
            (
                TopicChange::CannotShrink {
                    current: 8,
                    requested: 4,
                },
                Some(8),
                false,
            ),
            (
                TopicChange::CannotGrow {
                    current: 4,
                    requested: 8,
                    reason: "denied".into(),
                },
                Some(4),
                false,
            ),
        ];
        for (change, partitions, ready) in cases {
            let state = topic_state(t(), change.clone());
            assert_eq!(state.partitions(), partitions, "{change:?}");
            assert_eq!(matches!(state, TopicState::Ready { .. }), ready, "{change:?}");
        }
    }
}
