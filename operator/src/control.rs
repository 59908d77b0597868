//! The control core both runtimes share, so that "how many workers" and "how
//! many generators" are decided in one place whichever runtime applies the
//! result. One [`step`]: an [`Observer`] reads the offsets and the workers,
//! [`Autoscaler::decide`] turns that and the spec into [`Counts`] (the
//! generator plan and the [`WorkerCount`]), an [`Applier`] puts them in
//! place. The Kubernetes reconciler and the local runtime differ only in
//! their observer (API status, process table) and applier (server-side apply,
//! child processes).

use std::future::Future;
use std::time::Duration;

use shopstream_model::pipeline::{AutoscalingSpec, PipelineSpec};

use crate::generator_plan::{self, GeneratorInput, GeneratorPlan};
use crate::kafka_ops::Offsets;
use crate::scaler::{self, Decision, History, Observation, Policy, RateEstimator, Reading};

impl Policy {
    pub fn from_spec(a: &AutoscalingSpec) -> Self {
        Self {
            min_replicas: a.min_replicas.max(0) as u32,
            max_replicas: a.max_replicas.max(1) as u32,
            target_lag_per_replica: a.target_lag_per_replica.max(1) as u64,
            catch_up_seconds: f64::from(a.catch_up_seconds.max(1)),
            scale_down_stabilization: Duration::from_secs(a.scale_down_stabilization_seconds.max(0) as u64),
        }
    }
}

impl<'a> GeneratorInput<'a> {
    /// The generator plan's input at `elapsed` seconds on the profile clock.
    pub fn from_spec(spec: &'a PipelineSpec, elapsed: f64) -> Self {
        let g = &spec.generator;
        Self {
            enabled: g.enabled,
            paused: spec.paused,
            events_per_second: g.events_per_second,
            rate_per_replica: g.rate_per_replica,
            profile: g.profile.as_ref(),
            elapsed,
        }
    }
}

/// Whether the autoscaler decides the worker count (else `fixed_workers`).
pub fn autoscaled(spec: &PipelineSpec) -> bool {
    spec.workers.autoscaling.enabled && !spec.paused
}

/// Workers without autoscaling: `spec.workers.replicas`, none while paused.
pub fn fixed_workers(spec: &PipelineSpec) -> u32 {
    if spec.paused {
        0
    } else {
        spec.workers.replicas.max(0) as u32
    }
}

/// The count a runtime starts from when nothing is recorded: the spec's
/// fixed count, or the autoscaling minimum the topic can use.
pub fn starting_workers(spec: &PipelineSpec, partitions: Option<u32>) -> u32 {
    if autoscaled(spec) {
        let min = Policy::from_spec(&spec.workers.autoscaling).min_replicas;
        partitions.map_or(min, |n| min.min(n))
    } else {
        fixed_workers(spec)
    }
}

/// How many workers a step wants, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerCount {
    pub replicas: u32,
    /// The autoscaler's decision, when autoscaling is on and could measure.
    pub decision: Option<Decision>,
    /// Records behind the workers' committed offsets (0 without a reading).
    pub lag: u64,
    /// The reason, in a sentence (the status and the live table show it).
    pub why: String,
}

/// What one step decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    pub plan: GeneratorPlan,
    pub workers: WorkerCount,
}

/// What a runtime observed before a step.
#[derive(Debug, Clone)]
pub struct Observed {
    /// A new reading of the offsets (`None`: none this step, because it
    /// failed or is not due yet; the worker count then stays).
    pub offsets: Option<Offsets>,
    pub workers: Workers,
}

/// Where a step is on the runtime's clocks.
#[derive(Debug, Clone, Copy)]
pub struct At {
    /// Seconds on the profile clock (since the profile started).
    pub profile_elapsed: f64,
    /// The scaler's monotonic clock.
    pub now: Duration,
    /// How often the autoscaler may move.
    pub interval: Duration,
}

/// How a runtime reads what it runs: the offsets and its workers.
pub trait Observer {
    fn observe(&mut self) -> impl Future<Output = Observed> + Send;
}

/// How a runtime puts counts in place.
pub trait Applier {
    /// What applying leaves for the runtime to report on.
    type Applied;
    type Error;
    fn apply(&mut self, counts: &Counts) -> impl Future<Output = Result<Self::Applied, Self::Error>> + Send;
}

/// One step's result.
pub struct Stepped<A> {
    pub observed: Observed,
    pub counts: Counts,
    pub applied: A,
}

/// The one control step: observe, decide, apply. `autoscaler` is the
/// Pipeline's memory between steps (created on the first, from the count the
/// observer reports).
pub async fn step<O: Observer, A: Applier>(
    observer: &mut O,
    applier: &mut A,
    autoscaler: &mut Option<Autoscaler>,
    spec: &PipelineSpec,
    at: At,
) -> Result<Stepped<A::Applied>, A::Error> {
    let observed = observer.observe().await;
    let counts = autoscaler
        .get_or_insert_with(|| Autoscaler::resumed(at.now, observed.workers.current))
        .decide(spec, &observed, &at);
    let applied = applier.apply(&counts).await?;
    Ok(Stepped {
        observed,
        counts,
        applied,
    })
}

/// What one step observed, beyond the offsets.
#[derive(Debug, Clone, Copy)]
pub struct Workers {
    /// The count the runtime runs for now (its last decision).
    pub current: u32,
    /// Workers actually consuming (ready pods, running processes): the
    /// capacity per worker is what these achieve, not the desired count.
    pub running: u32,
    pub partitions: Option<u32>,
}

/// The autoscaler of one Pipeline: rates and recommendations between steps.
pub struct Autoscaler {
    rates: RateEstimator,
    history: History,
    /// When it last decided, and what: steps sooner than the scale interval
    /// after it (a reconcile woken by a Deployment's status) reuse it, so it
    /// moves at most once per interval however often it is asked.
    last: Option<(Duration, Decision)>,
}

impl Autoscaler {
    /// Starting (or restarting after a failover) at `now` with `current`
    /// workers: holds them until a stabilization window of observations exists.
    pub fn resumed(now: Duration, current: u32) -> Self {
        Self {
            rates: RateEstimator::default(),
            history: History::resumed(now, current),
            last: None,
        }
    }

    /// The decision of one step (pure apart from the autoscaler's memory):
    /// the generator plan at the profile clock, and the worker count from
    /// the autoscaler when it is on and the offsets were read, the current
    /// count when they were not, else the spec's.
    pub fn decide(&mut self, spec: &PipelineSpec, observed: &Observed, at: &At) -> Counts {
        let plan = generator_plan::plan(&GeneratorInput::from_spec(spec, at.profile_elapsed));
        let current = observed.workers.current;
        let lag = observed
            .offsets
            .as_ref()
            .map(|o| o.lag().iter().sum())
            .unwrap_or_default();
        let policy = Policy::from_spec(&spec.workers.autoscaling);
        let workers = match &observed.offsets {
            _ if !autoscaled(spec) => {
                if let Some(offsets) = &observed.offsets {
                    self.observe(offsets, observed.workers, &policy, at.now);
                }
                let replicas = fixed_workers(spec);
                WorkerCount {
                    replicas,
                    decision: None,
                    lag,
                    why: format!("{replicas} workers from spec.workers.replicas"),
                }
            }
            None => WorkerCount {
                replicas: current,
                decision: None,
                lag,
                why: match &self.last {
                    Some((_, d)) if d.desired == current => d.reason.clone(),
                    _ => format!("keeping {current} workers until the offsets can be read"),
                },
            },
            Some(offsets) => {
                let decision = self.step(offsets, observed.workers, &policy, at.now, at.interval);
                WorkerCount {
                    replicas: decision.desired,
                    why: decision.reason.clone(),
                    decision: Some(decision),
                    lag,
                }
            }
        };
        Counts { plan, workers }
    }

    /// Observe the offsets, decide the worker count, record the
    /// recommendation. Pure apart from the autoscaler's own memory.
    fn step(
        &mut self,
        offsets: &Offsets,
        workers: Workers,
        policy: &Policy,
        now: Duration,
        interval: Duration,
    ) -> Decision {
        if let Some((at, decision)) = &self.last
            && now.saturating_sub(*at) < interval
            && decision.desired == workers.current
        {
            return decision.clone();
        }
        self.observe(offsets, workers, policy, now);
        let observation = Observation {
            partition_lag: offsets.lag(),
            incoming_rate: self.rates.incoming_rate(),
            per_replica_rate: self.rates.per_replica_rate(),
            current_replicas: workers.current,
            partitions: workers.partitions,
        };
        let decision = scaler::decide(&observation, policy, &self.history, now);
        self.history
            .record(now, decision.recommendation, policy.scale_down_stabilization);
        self.last = Some((now, decision.clone()));
        decision
    }

    /// Learn the rates from one reading of the offsets (a step does this
    /// itself; without autoscaling the rates are still shown).
    fn observe(&mut self, offsets: &Offsets, workers: Workers, policy: &Policy, now: Duration) {
        self.rates.observe(
            Reading {
                at: now,
                produced: offsets.produced(),
                committed: offsets.committed_total(),
                replicas: workers.running.min(workers.current),
            },
            policy.target_lag_per_replica,
        );
    }

    /// Messages per second arriving, once measured.
    pub fn incoming_rate(&self) -> Option<f64> {
        self.rates.incoming_rate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(high: &[i64], committed: &[i64]) -> Offsets {
        Offsets {
            high_watermarks: high.to_vec(),
            produced_since: None,
            committed: committed.iter().map(|c| Some(*c)).collect(),
        }
    }

    #[test]
    fn counts_without_autoscaling_follow_the_spec_and_pause() {
        let spec = |v: serde_json::Value| -> PipelineSpec { serde_json::from_value(v).expect("valid spec") };
        let base = serde_json::json!({
            "kafka": {"bootstrapServers": "b:9092"},
            "warehouse": {"connectionSecretRef": {"name": "w", "key": "url"}, "schema": "shop"},
        });
        let with = |workers: serde_json::Value, paused: bool| {
            let mut v = base.clone();
            v["workers"] = workers;
            v["paused"] = serde_json::json!(paused);
            spec(v)
        };
        // (workers spec, paused, fixed count, autoscaled)
        let cases = [
            (serde_json::json!({"replicas": 3}), false, 3, false),
            (serde_json::json!({"replicas": 3}), true, 0, false),
            (
                serde_json::json!({"replicas": 2, "autoscaling": {"enabled": true}}),
                false,
                2,
                true,
            ),
            (
                serde_json::json!({"replicas": 2, "autoscaling": {"enabled": true}}),
                true,
                0,
                false,
            ),
        ];
        for (workers, paused, fixed, auto) in cases {
            let s = with(workers.clone(), paused);
            assert_eq!(fixed_workers(&s), fixed, "{workers} paused={paused}");
            assert_eq!(autoscaled(&s), auto, "{workers} paused={paused}");
        }
    }

    #[test]
    fn one_decision_for_every_runtime_whatever_was_observed() {
        let spec = |workers: serde_json::Value, paused: bool| -> PipelineSpec {
            serde_json::from_value(serde_json::json!({
                "kafka": {"bootstrapServers": "b:9092"},
                "warehouse": {"connectionSecretRef": {"name": "w", "key": "url"}, "schema": "shop"},
                "workers": workers,
                "paused": paused,
            }))
            .expect("valid spec")
        };
        let fixed = spec(serde_json::json!({"replicas": 3}), false);
        let auto = spec(
            serde_json::json!({"replicas": 1, "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 8, "targetLagPerReplica": 1000}}),
            false,
        );
        let paused = spec(serde_json::json!({"replicas": 3}), true);
        let at = At {
            profile_elapsed: 0.0,
            now: Duration::from_secs(1),
            interval: Duration::from_secs(5),
        };
        let seen = |offsets: Option<Offsets>, current| Observed {
            offsets,
            workers: Workers {
                current,
                running: current,
                partitions: Some(6),
            },
        };
        let backlog = || Some(offsets(&[20_000, 20_000], &[0, 0]));
        // (spec, observed, replicas, decided by the autoscaler, lag)
        let cases = [
            (&fixed, seen(backlog(), 3), 3, false, 40_000),
            (&fixed, seen(None, 3), 3, false, 0),
            (&paused, seen(backlog(), 3), 0, false, 40_000),
            // No reading: the count stays, whatever it is.
            (&auto, seen(None, 5), 5, false, 0),
            // A backlog: up from 2, at most doubling.
            (&auto, seen(backlog(), 2), 4, true, 40_000),
        ];
        for (i, (spec, observed, replicas, decided, lag)) in cases.into_iter().enumerate() {
            let counts =
                Autoscaler::resumed(Duration::ZERO, observed.workers.current).decide(spec, &observed, &at);
            let w = &counts.workers;
            assert_eq!(w.replicas, replicas, "case {i}: {w:?}");
            assert_eq!(w.decision.is_some(), decided, "case {i}: {w:?}");
            assert_eq!(w.lag, lag, "case {i}");
            assert!(!w.why.is_empty(), "case {i}");
        }
        // Where runtimes start: the fixed count, or the minimum capped at the partitions.
        assert_eq!(starting_workers(&fixed, Some(2)), 3);
        assert_eq!(starting_workers(&auto, Some(6)), 2);
        assert_eq!(starting_workers(&auto, Some(1)), 1);
        assert_eq!(starting_workers(&paused, Some(6)), 0);
    }

    #[test]
    fn one_step_per_interval_and_capacity_from_the_running_workers() {
        let policy = Policy {
            min_replicas: 1,
            max_replicas: 8,
            target_lag_per_replica: 1_000,
            catch_up_seconds: 10.0,
            scale_down_stabilization: Duration::from_secs(30),
        };
        let interval = Duration::from_secs(5);
        let mut a = Autoscaler::resumed(Duration::ZERO, 1);
        let w = |current, running| Workers {
            current,
            running,
            partitions: Some(8),
        };
        // A backlog of 8000 with one worker: up (at most doubling).
        let up = a.step(
            &offsets(&[8_000], &[0]),
            w(1, 1),
            &policy,
            Duration::from_secs(1),
            interval,
        );
        assert_eq!(up.desired, 2, "{up:?}");
        // Asked again within the interval, at the count it chose: the same answer.
        let again = a.step(
            &offsets(&[9_000], &[0]),
            w(2, 1),
            &policy,
            Duration::from_secs(2),
            interval,
        );
        assert_eq!(again, up);
        // After the interval it steps again.
        let next = a.step(
            &offsets(&[10_000], &[0]),
            w(2, 2),
            &policy,
            Duration::from_secs(7),
            interval,
        );
        assert!(next.desired >= 2, "{next:?}");
    }
}
