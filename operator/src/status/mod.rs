//! The Pipeline's status as a pure function of what the reconciler saw:
//! phase, the standard conditions (Ready, TopicReady, GeneratorReady,
//! WorkersReady, Scaling, LeastPrivilege) with reasons and messages, and per-component
//! figures. A condition keeps its lastTransitionTime until its status flips.

use chrono::{DateTime, Utc};
mod conditions;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use shopstream_model::pipeline::{GeneratorStatus, Phase, PipelineStatus, TopicStatus, WorkersStatus};

pub use conditions::{Kind, Reason, Verdict, find};

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

impl TopicState {
    /// Partitions the topic has (`None`: it cannot be reached).
    pub fn partitions(&self) -> Option<i32> {
        match self {
            TopicState::Ready { partitions, .. } => Some(*partitions),
            TopicState::CannotShrink { current, .. } | TopicState::CannotGrow { current, .. } => {
                Some(*current)
            }
            TopicState::Unavailable { .. } => None,
        }
    }
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
    /// Messages the topic gained since the profile started (all pods').
    pub produced: Option<i64>,
    /// Messages the profile asked for by now (its integral).
    pub due: Option<i64>,
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

/// Which warehouse credentials the Pipeline keeps apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    /// The dashboard runs, so it needs credentials of its own.
    pub dashboard: bool,
    pub reader: bool,
    pub migrator: bool,
}

impl Roles {
    pub fn of(spec: &shopstream_model::pipeline::PipelineSpec) -> Self {
        Roles {
            dashboard: spec.dashboard.enabled,
            reader: spec.warehouse.reader_secret_ref.is_some(),
            migrator: spec.warehouse.migrator_secret_ref.is_some(),
        }
    }
}

pub struct Seen {
    pub roles: Roles,
    pub dashboard: Option<shopstream_model::pipeline::DashboardStatus>,
    pub generation: Option<i64>,
    pub paused: bool,
    pub topic: TopicState,
    pub generator: GeneratorView,
    pub workers: WorkersView,
}

/// Status of a valid Pipeline after a reconcile.
pub fn compute(previous: Option<&PipelineStatus>, seen: &Seen, now: &Time) -> PipelineStatus {
    let g = seen.generation;
    let verdicts = verdicts(seen);
    let all_ok = verdicts[1..4].iter().all(|v| v.ok);
    PipelineStatus {
        observed_generation: g,
        phase: Some(phase(previous, seen.paused, all_ok)),
        conditions: verdicts
            .into_iter()
            .map(|v| v.condition(previous, g, now))
            .collect(),
        topic: topic_status(previous, &seen.topic),
        generator: Some(generator_status(&seen.generator)),
        workers: Some(workers_status(&seen.workers)),
        dashboard: seen.dashboard.clone(),
    }
}

/// The status while the topic cannot be reached: the conditions say why;
/// nothing of this generation was applied, so the figures and
/// observedGeneration stay as they were, and a running Pipeline is Degraded.
pub fn unreachable(previous: Option<&PipelineStatus>, seen: &Seen, now: &Time) -> PipelineStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.conditions = verdicts(seen)
        .into_iter()
        .map(|v| v.condition(previous, seen.generation, now))
        .collect();
    status.phase = Some(phase(previous, seen.paused, false));
    status
}

/// Ready, TopicReady, GeneratorReady, WorkersReady, Scaling, LeastPrivilege,
/// in that order.
fn verdicts(seen: &Seen) -> [Verdict; 6] {
    let topic = topic_verdict(&seen.topic);
    let generator = generator_verdict(&seen.generator);
    let w = &seen.workers;
    let workers = rollout_verdict(Kind::WorkersReady, "workers", w.desired, w.rollout);
    let ready = ready_verdict(seen.paused, [&topic, &generator, &workers]);
    [
        ready,
        topic,
        generator,
        workers,
        scaling_verdict(w),
        privilege_verdict(seen.roles),
    ]
}

/// What still shares credentials, and the field that would separate it.
fn privilege_verdict(roles: Roles) -> Verdict {
    let mut shared = Vec::new();
    if roles.dashboard && !roles.reader {
        shared.push("the dashboard reads with the workers' credentials (set warehouse.readerSecretRef)");
    }
    if !roles.migrator {
        shared.push(
            "the workers run the migrations, so their role may change the schema (set warehouse.migratorSecretRef)",
        );
    }
    if shared.is_empty() {
        let reader = if roles.dashboard {
            "the dashboard only reads; "
        } else {
            ""
        };
        Verdict::new(
            Kind::LeastPrivilege,
            true,
            Reason::SeparateRoles,
            format!("{reader}the migrator owns the schema; the workers only load"),
        )
    } else {
        Verdict::new(
            Kind::LeastPrivilege,
            false,
            Reason::SharedCredentials,
            shared.join("; "),
        )
    }
}

/// The one place the phase is decided.
fn phase(previous: Option<&PipelineStatus>, paused: bool, all_ok: bool) -> Phase {
    let was_running = matches!(
        previous.and_then(|s| s.phase),
        Some(Phase::Running | Phase::Degraded)
    );
    if paused {
        Phase::Paused
    } else if all_ok {
        Phase::Running
    } else if was_running {
        Phase::Degraded
    } else {
        Phase::Pending
    }
}

fn topic_verdict(topic: &TopicState) -> Verdict {
    let v = |ok, reason, message| Verdict::new(Kind::TopicReady, ok, reason, message);
    match topic {
        TopicState::Ready { name, partitions } => v(
            true,
            Reason::TopicReady,
            format!("topic {name} has {partitions} partitions"),
        ),
        TopicState::CannotShrink {
            name,
            current,
            requested,
        } => v(
            false,
            Reason::CannotShrink,
            format!(
                "spec asks for {requested} partitions but topic {name} has {current}; Kafka cannot remove partitions, so it keeps {current}"
            ),
        ),
        TopicState::CannotGrow {
            name,
            current,
            requested,
            reason,
        } => v(
            false,
            Reason::CannotGrow,
            format!(
                "the brokers refused to grow topic {name} from {current} to {requested} partitions: {reason}"
            ),
        ),
        TopicState::Unavailable { name, error } => v(
            false,
            Reason::KafkaUnavailable,
            format!("cannot ensure topic {name}: {error}"),
        ),
    }
}

/// The topic as it is; while it cannot be reached, as it was last seen.
fn topic_status(previous: Option<&PipelineStatus>, topic: &TopicState) -> Option<TopicStatus> {
    match topic {
        TopicState::Ready { name, .. }
        | TopicState::CannotShrink { name, .. }
        | TopicState::CannotGrow { name, .. } => Some(TopicStatus {
            name: name.clone(),
            partitions: topic.partitions().unwrap_or_default(),
        }),
        TopicState::Unavailable { .. } => previous.and_then(|s| s.topic.clone()),
    }
}

fn generator_verdict(g: &GeneratorView) -> Verdict {
    if !g.enabled {
        Verdict::new(Kind::GeneratorReady, true, Reason::Disabled, "generator disabled")
    } else if g.finished {
        Verdict::new(
            Kind::GeneratorReady,
            true,
            Reason::ProfileFinished,
            "the load profile has run to its end",
        )
    } else {
        rollout_verdict(Kind::GeneratorReady, "generators", g.desired, g.rollout)
    }
}

fn rollout_verdict(kind: Kind, what: &str, desired: i32, rollout: Rollout) -> Verdict {
    let ready = rollout.ready >= desired && rollout.replicas == desired;
    let counted = format!("{}/{desired} {what} ready", rollout.ready);
    if desired == 0 {
        Verdict::new(kind, ready, Reason::ScaledToZero, format!("no {what} wanted"))
    } else if ready {
        Verdict::new(kind, true, Reason::Available, counted)
    } else {
        Verdict::new(kind, false, Reason::Progressing, counted)
    }
}

fn scaling_verdict(w: &WorkersView) -> Verdict {
    let v = |ok, reason, message| Verdict::new(Kind::Scaling, ok, reason, message);
    match &w.decision {
        Some(d) if d.direction == Direction::Up => v(true, Reason::ScalingUp, d.reason.clone()),
        Some(d) if d.direction == Direction::Down => v(true, Reason::ScalingDown, d.reason.clone()),
        Some(d) => v(false, Reason::Stable, d.reason.clone()),
        None => v(
            false,
            Reason::AutoscalingDisabled,
            format!("{} workers from spec.workers.replicas", w.desired),
        ),
    }
}

/// Ready is the conjunction of the others; when it is not, it carries the
/// first failing one's reason and message.
fn ready_verdict(paused: bool, parts: [&Verdict; 3]) -> Verdict {
    let all_ok = parts.iter().all(|v| v.ok);
    if paused {
        Verdict::new(
            Kind::Ready,
            all_ok,
            Reason::Paused,
            "paused: scaled to zero, topic and data kept",
        )
    } else if let Some(first) = parts.into_iter().find(|v| !v.ok) {
        Verdict::new(Kind::Ready, false, first.reason, first.message.clone())
    } else {
        Verdict::new(
            Kind::Ready,
            true,
            Reason::Running,
            "topic, generators and workers are ready",
        )
    }
}

fn generator_status(g: &GeneratorView) -> GeneratorStatus {
    GeneratorStatus {
        replicas: g.rollout.replicas,
        ready_replicas: g.rollout.ready,
        desired_replicas: g.desired,
        stage: g.stage.map(|s| s as i32),
        target_rate: g.target_rate,
        started_at: g.started_at,
        profile_hash: g.profile_hash.clone(),
        profile_finished: g.finished,
        produced_total: g.produced,
        expected_total: g.due,
    }
}

fn workers_status(w: &WorkersView) -> WorkersStatus {
    WorkersStatus {
        replicas: w.rollout.replicas,
        ready_replicas: w.rollout.ready,
        desired_replicas: w.desired,
        lag: w.lag,
        selector: w.selector.clone(),
        last_scale_time: w.last_scale.as_ref().map(|(t, _)| *t),
        last_scale_reason: w.last_scale.as_ref().map(|(_, r)| r.clone()),
    }
}

/// Status of a Pipeline whose spec is invalid: nothing is deployed.
pub fn invalid(
    previous: Option<&PipelineStatus>,
    generation: Option<i64>,
    problems: &[String],
    now: &Time,
) -> PipelineStatus {
    let ready = Verdict::new(Kind::Ready, false, Reason::InvalidSpec, problems.join("; "))
        .condition(previous, generation, now);
    // The other conditions describe what is still deployed: keep them (and
    // their transition times) as they were.
    let others = previous
        .into_iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.type_ != Kind::Ready.as_str())
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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    use super::*;

    fn time(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn seen(ready_workers: i32) -> Seen {
        Seen {
            roles: Roles::default(),
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
                produced: None,
                due: None,
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
        for type_ in [
            "TopicReady",
            "GeneratorReady",
            "WorkersReady",
            "Scaling",
            "LeastPrivilege",
        ] {
            assert_eq!(cond(&s, type_), cond(&before, type_), "{type_}");
        }
        assert_eq!(s.conditions.len(), before.conditions.len());
    }

    #[test]
    fn least_privilege_names_what_still_shares_credentials() {
        // (dashboard, reader, migrator) -> (ok, reason, message parts)
        type Case = ((bool, bool, bool), bool, &'static str, &'static [&'static str]);
        let cases: &[Case] = &[
            (
                (true, true, true),
                true,
                "SeparateRoles",
                &["the dashboard only reads"],
            ),
            (
                (false, false, true),
                true,
                "SeparateRoles",
                &["the workers only load"],
            ),
            (
                (true, false, true),
                false,
                "SharedCredentials",
                &["readerSecretRef"],
            ),
            (
                (false, false, false),
                false,
                "SharedCredentials",
                &["migratorSecretRef"],
            ),
            (
                (true, false, false),
                false,
                "SharedCredentials",
                &["readerSecretRef", "migratorSecretRef"],
            ),
        ];
        for &((dashboard, reader, migrator), ok, reason, parts) in cases {
            let mut s = seen(3);
            s.roles = Roles {
                dashboard,
                reader,
                migrator,
            };
            let st = compute(None, &s, &time(1));
            let c = cond(&st, "LeastPrivilege");
            assert_eq!(
                (c.status == "True", c.reason.as_str()),
                (ok, reason),
                "{:?}",
                s.roles
            );
            for part in parts {
                assert!(c.message.contains(part), "{:?}: {}", s.roles, c.message);
            }
            // Informational: it never makes the Pipeline less than Running.
            assert_eq!(st.phase, Some(Phase::Running), "{:?}", s.roles);
        }
    }
}
