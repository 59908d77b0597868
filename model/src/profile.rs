//! Load profiles: a sequence of stages, each holding a rate or ramping to it.
//!
//! The same shape is a generator `--profile` file and the `Pipeline`'s
//! `spec.generator.profile`; the maths here drives both the generator's pacer
//! and the operator's generator scaling.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// How long the stage lasts, in seconds.
    #[schemars(range(min = 1))]
    pub duration_seconds: u64,
    /// The rate at the end of the stage (held for the whole stage unless `ramp`).
    pub events_per_second: u64,
    /// Ramp linearly from the previous stage's rate (0 before the first stage).
    #[serde(default)]
    pub ramp: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadProfile {
    /// Stages run in order; each holds its rate or ramps to it.
    #[schemars(length(min = 1))]
    pub stages: Vec<Stage>,
    /// Start over after the last stage instead of finishing.
    #[serde(default)]
    pub repeat: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProfileError {
    #[error("a load profile needs at least one stage")]
    NoStages,
    #[error("stages[{index}].durationSeconds must be greater than 0")]
    ZeroDuration { index: usize },
}

/// Where in the profile a moment falls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Index of the current stage.
    pub stage: usize,
    /// Seconds left in the current stage.
    pub remaining_seconds: f64,
    /// Instantaneous target rate (events/s).
    pub rate: f64,
}

/// Generator pods needed for `rate` events/s when one pod produces up to
/// `rate_per_replica`: the operator scales to this, and every pod divides
/// the rate by it to find its own share.
pub fn replicas_for(rate: f64, rate_per_replica: f64) -> u32 {
    if rate <= 0.0 || rate_per_replica <= 0.0 {
        return 0;
    }
    // A hair of tolerance so 1000.0000001 / 500 does not ask for a third pod.
    (rate / rate_per_replica - 1e-9).ceil().max(1.0) as u32
}

/// The rate one of `replicas_for(rate, rate_per_replica)` pods produces.
pub fn share_of(rate: f64, rate_per_replica: f64) -> f64 {
    match replicas_for(rate, rate_per_replica) {
        0 => 0.0,
        n => rate / f64::from(n),
    }
}

impl LoadProfile {
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.stages.is_empty() {
            return Err(ProfileError::NoStages);
        }
        if let Some(index) = self.stages.iter().position(|s| s.duration_seconds == 0) {
            return Err(ProfileError::ZeroDuration { index });
        }
        Ok(())
    }

    /// Length of one pass through the stages, in seconds.
    pub fn cycle_seconds(&self) -> u64 {
        self.stages.iter().map(|s| s.duration_seconds).sum()
    }

    /// Total length; `None` when the profile repeats forever.
    pub fn total_seconds(&self) -> Option<u64> {
        (!self.repeat).then(|| self.cycle_seconds())
    }

    /// Stage, time left in it and instantaneous rate at `elapsed` seconds since
    /// the start; `None` once a non-repeating profile has finished.
    pub fn position(&self, elapsed: f64) -> Option<Position> {
        let t = self.cycle_time(elapsed)?;
        let mut start = 0.0;
        for (index, stage) in self.stages.iter().enumerate() {
            let d = stage.duration_seconds as f64;
            if t < start + d {
                let into = t - start;
                return Some(Position {
                    stage: index,
                    remaining_seconds: d - into,
                    rate: self.rate_within(index, into),
                });
            }
            start += d;
        }
        None
    }

    /// Events the profile asks for from its start up to `elapsed` seconds: the
    /// integral of the rate, so a pacer following it never drifts.
    pub fn events_until(&self, elapsed: f64) -> f64 {
        let elapsed = elapsed.max(0.0);
        let cycle = self.cycle_seconds() as f64;
        if cycle <= 0.0 {
            return 0.0;
        }
        let per_cycle = self.events_in_cycle_until(cycle);
        if !self.repeat {
            return self.events_in_cycle_until(elapsed.min(cycle));
        }
        let cycles = (elapsed / cycle).floor();
        cycles * per_cycle + self.events_in_cycle_until(elapsed - cycles * cycle)
    }

    fn cycle_time(&self, elapsed: f64) -> Option<f64> {
        let cycle = self.cycle_seconds() as f64;
        if cycle <= 0.0 || elapsed < 0.0 {
            return None;
        }
        if self.repeat {
            Some(elapsed % cycle)
        } else if elapsed < cycle {
            Some(elapsed)
        } else {
            None
        }
    }

    fn start_rate(&self, index: usize) -> f64 {
        match index.checked_sub(1) {
            Some(prev) => self.stages[prev].events_per_second as f64,
            None => 0.0,
        }
    }

    fn rate_within(&self, index: usize, into: f64) -> f64 {
        let stage = &self.stages[index];
        let end = stage.events_per_second as f64;
        if !stage.ramp {
            return end;
        }
        let start = self.start_rate(index);
        start + (end - start) * (into / stage.duration_seconds as f64)
    }

    /// Integral of the rate over `[0, t]` within one cycle.
    fn events_in_cycle_until(&self, t: f64) -> f64 {
        let mut total = 0.0;
        let mut start = 0.0;
        for (index, stage) in self.stages.iter().enumerate() {
            let d = stage.duration_seconds as f64;
            let span = (t - start).clamp(0.0, d);
            if span <= 0.0 {
                break;
            }
            let end_rate = stage.events_per_second as f64;
            total += if stage.ramp {
                let r0 = self.start_rate(index);
                r0 * span + (end_rate - r0) * span * span / (2.0 * d)
            } else {
                end_rate * span
            };
            start += d;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(duration_seconds: u64, events_per_second: u64, ramp: bool) -> Stage {
        Stage {
            duration_seconds,
            events_per_second,
            ramp,
        }
    }

    fn profile(stages: Vec<Stage>, repeat: bool) -> LoadProfile {
        LoadProfile { stages, repeat }
    }

    #[test]
    fn integral_and_rate_follow_hold_step_and_ramp() {
        // hold 100/s for 10 s, step to 1000/s for 5 s, ramp down to 0 over 10 s
        let p = profile(
            vec![stage(10, 100, false), stage(5, 1000, false), stage(10, 0, true)],
            false,
        );
        // (seconds since start, events due by then, (stage, rate) at that moment)
        type Case = (f64, f64, Option<(usize, f64)>);
        let cases: &[Case] = &[
            (0.0, 0.0, Some((0, 100.0))),
            (5.0, 500.0, Some((0, 100.0))),
            (10.0, 1000.0, Some((1, 1000.0))),
            (12.0, 3000.0, Some((1, 1000.0))),
            (15.0, 6000.0, Some((2, 1000.0))),
            (20.0, 6000.0 + 3750.0, Some((2, 500.0))),
            (25.0, 6000.0 + 5000.0, None),
            (99.0, 11000.0, None),
        ];
        for &(t, events, pos) in cases {
            assert!(
                (p.events_until(t) - events).abs() < 1e-6,
                "events_until({t}) = {}",
                p.events_until(t)
            );
            let got = p.position(t).map(|x| (x.stage, x.rate));
            match (got, pos) {
                (Some((gs, gr)), Some((s, r))) => {
                    assert_eq!(gs, s, "stage at {t}");
                    assert!((gr - r).abs() < 1e-6, "rate at {t}: {gr}");
                }
                (None, None) => {}
                other => panic!("position at {t}: {other:?}"),
            }
        }
        assert_eq!(p.total_seconds(), Some(25));
    }

    #[test]
    fn first_ramp_starts_from_zero_and_repeat_wraps() {
        let p = profile(vec![stage(10, 1000, true), stage(10, 1000, false)], true);
        assert!((p.events_until(10.0) - 5000.0).abs() < 1e-6);
        assert!((p.events_until(20.0) - 15000.0).abs() < 1e-6);
        assert!((p.events_until(30.0) - 20000.0).abs() < 1e-6);
        let pos = p.position(25.0).unwrap();
        assert_eq!(pos.stage, 0);
        assert!((pos.rate - 500.0).abs() < 1e-6);
        assert!((pos.remaining_seconds - 5.0).abs() < 1e-6);
        assert_eq!(p.total_seconds(), None);
    }

    #[test]
    fn replicas_and_shares() {
        // (rate, per replica, replicas, share)
        let cases = [
            (0.0, 500.0, 0, 0.0),
            (1.0, 500.0, 1, 1.0),
            (500.0, 500.0, 1, 500.0),
            (500.5, 500.0, 2, 250.25),
            (1000.0, 500.0, 2, 500.0),
            (4200.0, 1000.0, 5, 840.0),
            (100.0, 0.0, 0, 0.0),
        ];
        for (rate, per, n, share) in cases {
            assert_eq!(replicas_for(rate, per), n, "{rate}/{per}");
            assert!((share_of(rate, per) - share).abs() < 1e-9, "{rate}/{per}");
        }
    }

    #[test]
    fn validation_names_the_bad_stage() {
        assert_eq!(profile(vec![], false).validate(), Err(ProfileError::NoStages));
        assert_eq!(
            profile(vec![stage(5, 10, false), stage(0, 10, false)], false).validate(),
            Err(ProfileError::ZeroDuration { index: 1 })
        );
    }

    #[test]
    fn yaml_uses_the_documented_field_names() {
        let p: LoadProfile = serde_json::from_str(
            r#"{"stages":[{"durationSeconds":30,"eventsPerSecond":200},{"durationSeconds":5,"eventsPerSecond":900,"ramp":true}]}"#,
        )
        .unwrap();
        assert_eq!(p.stages[1], stage(5, 900, true));
        assert!(!p.repeat);
    }
}
