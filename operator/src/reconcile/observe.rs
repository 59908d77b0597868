//! Phase 6's input (pure): what this pass saw, gathered into the
//! [`Seen`] that [`status::compute`](crate::status::compute) turns into the
//! Pipeline's status.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use shopstream_model::Pipeline;

use super::apply::Applied;
use super::dereference::Clock;
use super::desired::Desired;
use super::scale;
use crate::builders::{self, Component};
use crate::status::{GeneratorView, Roles, Rollout, Seen, TopicState, WorkersView};

/// What a pass that applied `desired` saw.
pub(super) fn seen(
    p: &Pipeline,
    topic: TopicState,
    clock: &Clock,
    desired: &Desired,
    applied: Applied,
    produced: Option<u64>,
    now: DateTime<Utc>,
) -> Seen {
    let g = &p.spec.generator;
    let plan = &desired.plan;
    let workers = &desired.workers;
    Seen {
        roles: Roles::of(&p.spec),
        dashboard: applied.dashboard,
        generation: p.metadata.generation,
        paused: p.spec.paused,
        topic,
        generator: GeneratorView {
            enabled: g.enabled,
            desired: plan.replicas as i32,
            rollout: applied.generator,
            stage: plan.stage,
            target_rate: plan.target_rate,
            started_at: Some(clock.started_at),
            profile_hash: clock.hash.clone(),
            finished: plan.finished,
            produced: produced.map(|n| n as i64),
            due: g
                .profile
                .as_ref()
                .map(|profile| profile.events_until(clock.elapsed.max(0.0)).floor() as i64),
        },
        workers: WorkersView {
            desired: workers.replicas as i32,
            rollout: applied.worker,
            lag: workers.lag as i64,
            selector: builders::selector_string(p, Component::Worker),
            decision: workers.decision.clone(),
            last_scale: scale::last_scale(p.status.as_ref(), workers, now),
        },
    }
}

pub(super) fn rollout(d: &Deployment) -> Rollout {
    let s = d.status.as_ref();
    Rollout {
        replicas: s.and_then(|s| s.replicas).unwrap_or(0),
        ready: s.and_then(|s| s.ready_replicas).unwrap_or(0),
    }
}

/// What the status shows while the topic cannot be reached: the figures
/// as the previous status had them.
pub(super) fn unavailable_view(p: &Pipeline, topic: TopicState) -> Seen {
    let prev = p.status.as_ref();
    let g = prev.and_then(|s| s.generator.clone()).unwrap_or_default();
    let w = prev.and_then(|s| s.workers.clone()).unwrap_or_default();
    Seen {
        roles: Roles::of(&p.spec),
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
            produced: g.produced_total,
            due: g.expected_total,
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
