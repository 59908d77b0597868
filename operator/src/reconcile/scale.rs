//! Phase 3, the control step on the cluster: the [`Observer`] (the offsets,
//! the worker Deployment's ready pods as the watch sees them, the count the
//! status records) and the [`Applier`] (the [`Desired`] objects, applied
//! server-side) of [`crate::control::step`]; and the last scaling the status
//! records.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use shopstream_model::{Pipeline, PipelineStatus};

use super::apply::{self, Applied};
use super::dereference::{self, Clock};
use super::desired::Desired;
use super::{Ctx, Error};
use crate::builders::{self, Component};
use crate::control::{self, Applier, Counts, Observed, Observer, WorkerCount};
use crate::kafka_ops::{KafkaAccess, KafkaOps};

/// What the cluster shows of a Pipeline's workers and its topic.
pub(super) struct ClusterView<'a, K: KafkaOps> {
    pub ctx: &'a Ctx<K>,
    pub p: &'a Pipeline,
    pub access: &'a Result<KafkaAccess, Error>,
    pub clock: &'a Clock,
    pub partitions: i32,
}

impl<K: KafkaOps> Observer for ClusterView<'_, K> {
    async fn observe(&mut self) -> Observed {
        let (ctx, p) = (self.ctx, self.p);
        let partitions = Some(self.partitions.max(0) as u32);
        let current = p
            .status
            .as_ref()
            .and_then(|s| s.workers.as_ref())
            .map(|w| w.desired_replicas.max(0) as u32)
            .unwrap_or_else(|| control::starting_workers(&p.spec, partitions));
        // Capacity per worker is what the workers that actually run achieve:
        // right after a scale-up the new ones are not consuming yet.
        let running = ctx
            .deployments
            .get(
                &ObjectRef::new(&builders::deployment_name(p, Component::Worker))
                    .within(&p.namespace().unwrap_or_default()),
            )
            .and_then(|d| d.status.as_ref().and_then(|s| s.ready_replicas))
            .map_or(current, |ready| ready.max(0) as u32);
        Observed {
            offsets: dereference::offsets(ctx, p, self.access, self.clock)
                .await
                .flatten(),
            workers: control::Workers {
                current,
                running,
                partitions,
            },
        }
    }
}

/// Server-side apply of the Pipeline's objects for the counts of a step.
pub(super) struct ClusterApply<'a, K: KafkaOps> {
    pub ctx: &'a Ctx<K>,
    pub p: &'a Pipeline,
    pub image: &'a str,
    pub profile_start: Option<DateTime<Utc>>,
}

impl<K: KafkaOps> Applier for ClusterApply<'_, K> {
    type Applied = (Desired, Applied);
    type Error = Error;

    async fn apply(&mut self, counts: &Counts) -> Result<(Desired, Applied), Error> {
        let desired = Desired::new(self.p, self.image, counts, self.profile_start);
        let applied = apply::apply(self.ctx, self.p, &desired).await?;
        Ok((desired, applied))
    }
}

/// The last scaling for the status: now when the count changed (or is
/// first set), else the one recorded (pure).
pub(super) fn last_scale(
    previous: Option<&PipelineStatus>,
    workers: &WorkerCount,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, String)> {
    let previous_workers = previous.and_then(|s| s.workers.as_ref());
    match previous_workers {
        Some(w) if w.desired_replicas == workers.replicas as i32 => {
            w.last_scale_time.zip(w.last_scale_reason.clone())
        }
        _ => Some((now, workers.why.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::{Decision, Direction};

    #[test]
    fn scaling_is_recorded_only_when_the_count_changes() {
        let now = Utc::now();
        let before = now - chrono::Duration::minutes(5);
        let scaled = |desired: u32| WorkerCount {
            replicas: desired,
            decision: Some(Decision {
                desired,
                recommendation: desired,
                direction: Direction::Up,
                reason: format!("lag asks for {desired}"),
            }),
            lag: 0,
            why: format!("lag asks for {desired}"),
        };
        let fixed = WorkerCount {
            replicas: 2,
            decision: None,
            lag: 0,
            why: "2 workers from spec.workers.replicas".into(),
        };
        let status = |desired: i32| PipelineStatus {
            workers: Some(shopstream_model::pipeline::WorkersStatus {
                desired_replicas: desired,
                last_scale_time: Some(before),
                last_scale_reason: Some("earlier".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Same count: the recorded scaling stays.
        assert_eq!(
            last_scale(Some(&status(3)), &scaled(3), now),
            Some((before, "earlier".to_string()))
        );
        // A new count, or the first: now, with the step's reason.
        assert_eq!(
            last_scale(Some(&status(3)), &scaled(5), now),
            Some((now, "lag asks for 5".to_string()))
        );
        assert_eq!(
            last_scale(None, &fixed, now),
            Some((now, "2 workers from spec.workers.replicas".to_string()))
        );
    }
}
