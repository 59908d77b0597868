//! Phase 7, Events: published on real transitions only (a new topic, a
//! changed worker count, a condition turning bad), never on every pass.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use shopstream_common::topics::TopicChange;
use shopstream_model::{Pipeline, PipelineStatus};

use super::Ctx;
use crate::control::WorkerCount;
use crate::kafka_ops::KafkaOps;
use crate::scaler::Decision;
use crate::status::{self, Kind, Reason};

/// The Event for a changed worker count, if it changed since `previous`.
pub(super) async fn workers_scaled<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    previous: Option<&PipelineStatus>,
    workers: &WorkerCount,
) {
    let before = previous
        .and_then(|s| s.workers.as_ref())
        .map(|w| w.desired_replicas);
    let after = workers.replicas as i32;
    if let Some(before) = before.filter(|b| *b != after) {
        let (reason, note) = scale_event(before, after, workers.decision.as_ref());
        publish(&ctx.recorder, p, EventType::Normal, reason, note).await;
    }
}

pub(super) async fn publish(recorder: &Recorder, p: &Pipeline, type_: EventType, reason: &str, note: String) {
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

pub(super) async fn topic_changed<K: KafkaOps>(
    ctx: &Ctx<K>,
    p: &Pipeline,
    topic: &str,
    change: &TopicChange,
) {
    let note = change.describe(topic);
    match change {
        TopicChange::Created { .. } => {
            publish(&ctx.recorder, p, EventType::Normal, "TopicCreated", note).await;
        }
        TopicChange::Grown { .. } => {
            publish(&ctx.recorder, p, EventType::Normal, "TopicGrown", note).await;
        }
        TopicChange::CannotShrink { .. } if !topic_reason_was(p, Reason::CannotShrink) => {
            publish(&ctx.recorder, p, EventType::Warning, "CannotShrinkTopic", note).await;
        }
        TopicChange::CannotGrow { .. } if !topic_reason_was(p, Reason::CannotGrow) => {
            publish(&ctx.recorder, p, EventType::Warning, "CannotGrowTopic", note).await;
        }
        _ => {}
    }
}

/// Whether the Pipeline's TopicReady already says `reason` (then its Event
/// was published when it first did).
fn topic_reason_was(p: &Pipeline, reason: Reason) -> bool {
    status::find(p.status.as_ref(), Kind::TopicReady).is_some_and(|c| c.reason == reason.as_str())
}

/// The Event for a change of the worker count (pure).
pub(super) fn scale_event(before: i32, after: i32, decision: Option<&Decision>) -> (&'static str, String) {
    match decision {
        Some(d) if after > before => ("ScaledUp", d.reason.clone()),
        Some(d) => ("ScaledDown", d.reason.clone()),
        None => (
            "Scaled",
            format!("workers {before} -> {after} (spec.workers.replicas)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::Direction;

    #[test]
    fn a_changed_count_is_announced_with_the_decisions_reason() {
        let decision = |desired: u32| Decision {
            desired,
            recommendation: desired,
            direction: Direction::Up,
            reason: format!("lag asks for {desired}"),
        };
        // (before, after, decision, event reason)
        let cases = [
            (3, 5, Some(decision(5)), "ScaledUp"),
            (5, 3, Some(decision(3)), "ScaledDown"),
            (1, 2, None, "Scaled"),
        ];
        for (b, a, d, reason) in cases {
            assert_eq!(scale_event(b, a, d.as_ref()).0, reason, "{b} -> {a}");
        }
        assert_eq!(
            scale_event(1, 2, None).1,
            "workers 1 -> 2 (spec.workers.replicas)"
        );
    }
}
