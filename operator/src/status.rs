//! The Pipeline's status as a pure function of what the reconciler saw:
//! phase, the standard conditions (Ready, TopicReady, GeneratorReady,
//! WorkersReady, Scaling) with reasons and messages, and per-component
//! figures. A condition keeps its lastTransitionTime until its status flips.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use shopstream_model::pipeline::{GeneratorStatus, Phase, PipelineStatus, TopicStatus, WorkersStatus};

use crate::scaler::{Decision, Direction};

/// What happened to the topic in this reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum TopicState {
    Ready {
        name: String,
        partitions: i32,
    },
    CannotShrink {
        name: String,
        current: i32,
        requested: i32,
    },
    CannotGrow {
        name: String,
        current: i32,
        requested: i32,
        reason: String,
    },
    Unavailable {
        name: String,
        error: String,
    },
}

/// Replicas of a Deployment as its status reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollout {
    pub replicas: i32,
    pub ready: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorView {
    pub enabled: bool,
    pub desired: i32,
    pub rollout: Rollout,
    pub stage: Option<usize>,
    pub target_rate: f64,
    pub started_at: Option<DateTime<Utc>>,
    pub profile_hash: Option<String>,
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkersView {
    pub desired: i32,
    pub rollout: Rollout,
    pub lag: i64,
    pub selector: String,
    /// The autoscaler's decision, when autoscaling is on.
    pub decision: Option<Decision>,
    pub last_scale: Option<(DateTime<Utc>, String)>,
}

pub struct Seen {
    pub dashboard: Option<shopstream_model::pipeline::DashboardStatus>,
    pub generation: Option<i64>,
    pub paused: bool,
    pub topic: TopicState,
    pub generator: GeneratorView,
    pub workers: WorkersView,
}

fn condition(
    previous: Option<&PipelineStatus>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

fn rollout_condition(
    previous: Option<&PipelineStatus>,
    type_: &str,
    what: &str,
    desired: i32,
    rollout: Rollout,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let ready = rollout.ready >= desired && rollout.replicas == desired;
    let (reason, message) = if desired == 0 {
        ("ScaledToZero", format!("no {what} wanted"))
    } else if ready {
        ("Available", format!("{}/{desired} {what} ready", rollout.ready))
    } else {
        ("Progressing", format!("{}/{desired} {what} ready", rollout.ready))
    };
    condition(previous, type_, ready, reason, message, generation, now)
}

/// Status of a valid Pipeline after a reconcile.
pub fn compute(previous: Option<&PipelineStatus>, seen: &Seen, now: &Time) -> PipelineStatus {
    let g = seen.generation;
    let (topic_ok, topic_reason, topic_message, topic_status) = match &seen.topic {
        TopicState::Ready { name, partitions } => (
            true,
            "TopicReady",
            format!("topic {name} has {partitions} partitions"),
            Some(TopicStatus {
                name: name.clone(),
                partitions: *partitions,
            }),
        ),
        TopicState::CannotShrink {
            name,
            current,
            requested,
        } => (
            false,
            "CannotShrink",
            format!(
                "spec asks for {requested} partitions but topic {name} has {current}; Kafka cannot remove partitions, so it keeps {current}"
            ),
            Some(TopicStatus {
                name: name.clone(),
                partitions: *current,
            }),
        ),
        TopicState::CannotGrow {
            name,
            current,
            requested,
            reason,
        } => (
            false,
            "CannotGrow",
            format!(
                "the brokers refused to grow topic {name} from {current} to {requested} partitions: {reason}"
            ),
            Some(TopicStatus {
                name: name.clone(),
                partitions: *current,
            }),
        ),
        TopicState::Unavailable { name, error } => (
            false,
            "KafkaUnavailable",
            format!("cannot ensure topic {name}: {error}"),
            previous.and_then(|s| s.topic.clone()),
        ),
    };
    let topic = condition(
        previous,
        "TopicReady",
        topic_ok,
        topic_reason,
        topic_message,
        g,
        now,
    );

    let gen_view = &seen.generator;
    let generator = if !gen_view.enabled {
        condition(
            previous,
            "GeneratorReady",
            true,
            "Disabled",
            "generator disabled".into(),
            g,
            now,
        )
    } else if gen_view.finished {
        condition(
            previous,
            "GeneratorReady",
            true,
            "ProfileFinished",
            "the load profile has run to its end".into(),
            g,
            now,
        )
    } else {
        rollout_condition(
            previous,
            "GeneratorReady",
            "generators",
            gen_view.desired,
            gen_view.rollout,
            g,
            now,
        )
    };
    let w = &seen.workers;
    let workers = rollout_condition(previous, "WorkersReady", "workers", w.desired, w.rollout, g, now);

    let scaling = match &w.decision {
        Some(d) if d.direction != Direction::Hold => condition(
            previous,
            "Scaling",
            true,
            if d.direction == Direction::Up {
                "ScalingUp"
            } else {
                "ScalingDown"
            },
            d.reason.clone(),
            g,
            now,
        ),
        Some(d) => condition(previous, "Scaling", false, "Stable", d.reason.clone(), g, now),
        None => condition(
            previous,
            "Scaling",
            false,
            "AutoscalingDisabled",
            format!("{} workers from spec.workers.replicas", w.desired),
            g,
            now,
        ),
    };

    let all_ok = topic_ok && generator.status == "True" && workers.status == "True";
    let ready = if seen.paused {
        condition(
            previous,
            "Ready",
            all_ok,
            "Paused",
            "paused: scaled to zero, topic and data kept".into(),
            g,
            now,
        )
    } else if all_ok {
        condition(
            previous,
            "Ready",
            true,
            "Running",
            "topic, generators and workers are ready".into(),
            g,
            now,
        )
    } else {
        let first = [&topic, &generator, &workers]
            .into_iter()
            .find(|c| c.status != "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap_or_default();
        condition(previous, "Ready", false, &first.0, first.1, g, now)
    };

    let was_running = previous.and_then(|s| s.phase) == Some(Phase::Running)
        || previous.and_then(|s| s.phase) == Some(Phase::Degraded);
    let phase = if seen.paused {
        Phase::Paused
    } else if all_ok {
        Phase::Running
    } else if was_running {
        Phase::Degraded
    } else {
        Phase::Pending
    };

    PipelineStatus {
        observed_generation: g,
        phase: Some(phase),
        conditions: vec![ready, topic, generator, workers, scaling],
        topic: topic_status,
        generator: Some(GeneratorStatus {
            replicas: gen_view.rollout.replicas,
            ready_replicas: gen_view.rollout.ready,
            desired_replicas: gen_view.desired,
            stage: gen_view.stage.map(|s| s as i32),
            target_rate: gen_view.target_rate,
            started_at: gen_view.started_at,
            profile_hash: gen_view.profile_hash.clone(),
            profile_finished: gen_view.finished,
        }),
        workers: Some(WorkersStatus {
            replicas: w.rollout.replicas,
            ready_replicas: w.rollout.ready,
            desired_replicas: w.desired,
            lag: w.lag,
            selector: w.selector.clone(),
            last_scale_time: w.last_scale.as_ref().map(|(t, _)| *t),
            last_scale_reason: w.last_scale.as_ref().map(|(_, r)| r.clone()),
        }),
        dashboard: seen.dashboard.clone(),
    }
}

/// Status of a Pipeline whose spec is invalid: nothing is deployed.
pub fn invalid(
    previous: Option<&PipelineStatus>,
    generation: Option<i64>,
    problems: &[String],
    now: &Time,
) -> PipelineStatus {
    let message = problems.join("; ");
    let ready = condition(previous, "Ready", false, "InvalidSpec", message, generation, now);
    // The other conditions describe what is still deployed: keep them (and
    // their transition times) as they were.
    let others = previous
        .into_iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.type_ != "Ready")
        .cloned();
    PipelineStatus {
        observed_generation: generation,
        phase: Some(Phase::Failed),
        conditions: std::iter::once(ready).chain(others).collect(),
        ..previous.cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn seen(ready_workers: i32) -> Seen {
        Seen {
            dashboard: None,
            generation: Some(3),
            paused: false,
            topic: TopicState::Ready {
                name: "shop-events".into(),
                partitions: 6,
            },
            generator: GeneratorView {
                enabled: true,
                desired: 2,
                rollout: Rollout {
                    replicas: 2,
                    ready: 2,
                },
                stage: Some(1),
                target_rate: 2_000.0,
                started_at: None,
                profile_hash: None,
                finished: false,
            },
            workers: WorkersView {
                desired: 3,
                rollout: Rollout {
                    replicas: 3,
                    ready: ready_workers,
                },
                lag: 42,
                selector: "a=b".into(),
                decision: None,
                last_scale: None,
            },
        }
    }

    fn cond<'a>(s: &'a PipelineStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn phases_and_conditions() {
        let pending = compute(None, &seen(1), &time(100));
        assert_eq!(pending.phase, Some(Phase::Pending));
        assert_eq!(cond(&pending, "Ready").reason, "Progressing");
        assert_eq!(cond(&pending, "WorkersReady").message, "1/3 workers ready");

        let running = compute(Some(&pending), &seen(3), &time(200));
        assert_eq!(running.phase, Some(Phase::Running));
        assert_eq!(cond(&running, "Ready").status, "True");
        assert_eq!(
            cond(&running, "Ready").last_transition_time,
            time(200),
            "flipped: new time"
        );
        assert_eq!(
            cond(&running, "TopicReady").last_transition_time,
            time(100),
            "unchanged: kept"
        );
        assert_eq!(running.workers.as_ref().unwrap().lag, 42);
        assert_eq!(running.observed_generation, Some(3));

        let degraded = compute(Some(&running), &seen(2), &time(300));
        assert_eq!(degraded.phase, Some(Phase::Degraded));

        let mut shrink = seen(3);
        shrink.topic = TopicState::CannotShrink {
            name: "t".into(),
            current: 6,
            requested: 3,
        };
        let s = compute(Some(&running), &shrink, &time(400));
        assert_eq!(cond(&s, "TopicReady").reason, "CannotShrink");
        assert!(
            cond(&s, "TopicReady")
                .message
                .contains("cannot remove partitions")
        );
        assert_eq!(s.topic.as_ref().unwrap().partitions, 6);
        assert_eq!(cond(&s, "Ready").reason, "CannotShrink");

        let mut paused = seen(0);
        paused.paused = true;
        paused.generator.desired = 0;
        paused.generator.rollout = Rollout::default();
        paused.workers.desired = 0;
        paused.workers.rollout = Rollout::default();
        let s = compute(Some(&running), &paused, &time(500));
        assert_eq!(s.phase, Some(Phase::Paused));
        assert_eq!(cond(&s, "Ready").reason, "Paused");
        assert_eq!(cond(&s, "WorkersReady").reason, "ScaledToZero");
    }

    #[test]
    fn scaling_condition_carries_the_decision() {
        let mut s = seen(3);
        s.workers.decision = Some(Decision {
            desired: 6,
            recommendation: 6,
            direction: Direction::Up,
            reason: "lag 90000: scaling up 3 -> 6".into(),
        });
        let st = compute(None, &s, &time(1));
        let c = cond(&st, "Scaling");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "ScalingUp"));
        assert!(c.message.contains("3 -> 6"));
    }

    #[test]
    fn an_invalid_spec_fails_with_every_problem() {
        let s = invalid(
            None,
            Some(7),
            &["a is wrong".into(), "b is wrong".into()],
            &time(9),
        );
        assert_eq!(s.phase, Some(Phase::Failed));
        let c = cond(&s, "Ready");
        assert_eq!(c.reason, "InvalidSpec");
        assert_eq!(c.message, "a is wrong; b is wrong");
        assert_eq!(s.observed_generation, Some(7));
    }

    #[test]
    fn an_invalid_spec_keeps_the_other_conditions_and_their_times() {
        let before = compute(None, &seen(2), &time(1));
        let s = invalid(Some(&before), Some(8), &["bad".into()], &time(50));
        assert_eq!(cond(&s, "Ready").reason, "InvalidSpec");
        for type_ in ["TopicReady", "GeneratorReady", "WorkersReady", "Scaling"] {
            assert_eq!(cond(&s, type_), cond(&before, type_), "{type_}");
        }
        assert_eq!(s.conditions.len(), before.conditions.len());
    }
}
