//! Generator scaling: how many generator pods a pipeline needs now, the rate
//! they produce together, and when to look again. Pure.
//!
//! Replicas = ceil(rate / ratePerReplica). Every pod receives the same
//! profile, its start time and `ratePerReplica`, and produces rate / replicas
//! itself (`shopstream_model::profile::share_of`), so pods need no
//! coordination.

use std::time::Duration;

use shopstream_model::LoadProfile;
use shopstream_model::profile::replicas_for;

/// Longest time between looks while a ramp changes the pod count continuously.
const RAMP_RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorPlan {
    pub replicas: u32,
    /// Events/s all pods produce together.
    pub target_rate: f64,
    /// Current profile stage (0-based), when a profile runs.
    pub stage: Option<usize>,
    /// When the plan changes next (a stage boundary, or a ramp step).
    pub recheck_after: Option<Duration>,
    /// A non-repeating profile has run to its end.
    pub finished: bool,
}

pub struct GeneratorInput<'a> {
    pub enabled: bool,
    pub paused: bool,
    pub events_per_second: u32,
    pub rate_per_replica: u32,
    pub profile: Option<&'a LoadProfile>,
    /// Seconds since the profile clock started (`status.generator.startedAt`).
    pub elapsed: f64,
}

pub fn plan(input: &GeneratorInput<'_>) -> GeneratorPlan {
    let off = |finished| GeneratorPlan {
        replicas: 0,
        target_rate: 0.0,
        stage: None,
        recheck_after: None,
        finished,
    };
    if !input.enabled || input.paused {
        return off(false);
    }
    let per_replica = f64::from(input.rate_per_replica);
    let Some(profile) = input.profile else {
        let rate = f64::from(input.events_per_second);
        return GeneratorPlan {
            replicas: replicas_for(rate, per_replica),
            target_rate: rate,
            stage: None,
            recheck_after: None,
            finished: false,
        };
    };
    let Some(pos) = profile.position(input.elapsed.max(0.0)) else {
        return off(true);
    };
    let stage = &profile.stages[pos.stage];
    let remaining = Duration::from_secs_f64(pos.remaining_seconds.max(0.0));
    let recheck = if stage.ramp {
        remaining.min(RAMP_RECHECK)
    } else {
        remaining
    };
    GeneratorPlan {
        replicas: replicas_for(pos.rate, per_replica),
        target_rate: pos.rate,
        stage: Some(pos.stage),
        recheck_after: Some(recheck.max(Duration::from_millis(100))),
        finished: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopstream_model::Stage;

    fn profile(repeat: bool) -> LoadProfile {
        LoadProfile {
            stages: vec![
                Stage {
                    duration_seconds: 60,
                    events_per_second: 1_000,
                    ramp: false,
                },
                Stage {
                    duration_seconds: 60,
                    events_per_second: 10_000,
                    ramp: true,
                },
                Stage {
                    duration_seconds: 30,
                    events_per_second: 0,
                    ramp: false,
                },
            ],
            repeat,
        }
    }

    fn input(profile: Option<&LoadProfile>, elapsed: f64) -> GeneratorInput<'_> {
        GeneratorInput {
            enabled: true,
            paused: false,
            events_per_second: 2_500,
            rate_per_replica: 1_000,
            profile,
            elapsed,
        }
    }

    #[test]
    fn plans() {
        let once = profile(false);
        let looping = profile(true);
        // (name, input, replicas, target rate, stage, recheck seconds, finished)
        type Case<'a> = (
            &'a str,
            GeneratorInput<'a>,
            u32,
            f64,
            Option<usize>,
            Option<f64>,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("steady rate", input(None, 0.0), 3, 2_500.0, None, None, false),
            (
                "first stage",
                input(Some(&once), 10.0),
                1,
                1_000.0,
                Some(0),
                Some(50.0),
                false,
            ),
            (
                "ramp start",
                input(Some(&once), 60.0),
                1,
                1_000.0,
                Some(1),
                Some(5.0),
                false,
            ),
            (
                "mid ramp",
                input(Some(&once), 90.0),
                6,
                5_500.0,
                Some(1),
                Some(5.0),
                false,
            ),
            (
                "ramp end",
                input(Some(&once), 118.0),
                10,
                9_700.0,
                Some(1),
                Some(2.0),
                false,
            ),
            (
                "zero stage",
                input(Some(&once), 130.0),
                0,
                0.0,
                Some(2),
                Some(20.0),
                false,
            ),
            ("finished", input(Some(&once), 150.0), 0, 0.0, None, None, true),
            (
                "repeat wraps",
                input(Some(&looping), 160.0),
                1,
                1_000.0,
                Some(0),
                Some(50.0),
                false,
            ),
            (
                "paused",
                GeneratorInput {
                    paused: true,
                    ..input(None, 0.0)
                },
                0,
                0.0,
                None,
                None,
                false,
            ),
            (
                "disabled",
                GeneratorInput {
                    enabled: false,
                    ..input(Some(&once), 10.0)
                },
                0,
                0.0,
                None,
                None,
                false,
            ),
        ];
        for (name, inp, replicas, rate, stage, recheck, finished) in cases {
            let p = plan(&inp);
            assert_eq!(p.replicas, replicas, "{name}");
            assert!((p.target_rate - rate).abs() < 1e-6, "{name}: {}", p.target_rate);
            assert_eq!(p.stage, stage, "{name}");
            assert_eq!(
                p.recheck_after
                    .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
                recheck,
                "{name}"
            );
            assert_eq!(p.finished, finished, "{name}");
        }
    }
}
