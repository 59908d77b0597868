//! The worker autoscaler: one pure decision shared by every runtime
//! (Kubernetes and local), plus the rate estimator that feeds it.
//!
//! - With rates known: desired = ceil((incoming + lag / catchUpSeconds) / perReplicaRate);
//!   otherwise desired = ceil(lag / targetLagPerReplica).
//! - Clamped to `[minReplicas, min(maxReplicas, partitions)]` (a worker beyond
//!   the partition count would sit idle).
//! - Up at once, at most doubling per step; down only to the highest
//!   recommendation seen within the stabilization window, so a flapping load
//!   does not flap the workers.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub target_lag_per_replica: u64,
    pub catch_up_seconds: f64,
    pub scale_down_stabilization: Duration,
}

/// What the runtime measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Per partition: high watermark minus committed offset, clamped at 0.
    pub partition_lag: Vec<u64>,
    /// Events/s arriving in the topic, when measured.
    pub incoming_rate: Option<f64>,
    /// Events/s one worker processes when it has a backlog, when measured.
    pub per_replica_rate: Option<f64>,
    pub current_replicas: u32,
    /// Partitions of the topic, when known.
    pub partitions: Option<u32>,
}

impl Observation {
    pub fn total_lag(&self) -> u64 {
        self.partition_lag.iter().sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Hold,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: u32,
    /// What the load alone asks for (clamped), before rate limiting and
    /// stabilization; record it in the history.
    pub recommendation: u32,
    pub direction: Direction,
    pub reason: String,
}

/// Past recommendations, newest last; only the stabilization window matters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    entries: VecDeque<(Duration, u32)>,
}

impl History {
    /// Remember a recommendation made at `now` (a monotonic clock reading)
    /// and forget what fell out of the window.
    pub fn record(&mut self, now: Duration, recommendation: u32, window: Duration) {
        self.entries.push_back((now, recommendation));
        while let Some(&(t, _)) = self.entries.front() {
            if now.saturating_sub(t) > window {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// The history of a runtime that (re)starts while `current` workers run:
    /// the stabilization window starts now, so a restarted operator does not
    /// drop scaled-up workers at once for lack of remembered recommendations.
    pub fn resumed(now: Duration, current: u32) -> Self {
        let mut h = Self::default();
        h.entries.push_back((now, current));
        h
    }

    fn highest_within(&self, now: Duration, window: Duration) -> Option<u32> {
        self.entries
            .iter()
            .filter(|(t, _)| now.saturating_sub(*t) <= window)
            .map(|(_, r)| *r)
            .max()
    }
}

struct Rate(f64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.0}/s", self.0)
    }
}

/// How many workers the lag and rates ask for, within the bounds.
struct Recommendation {
    count: u32,
    /// The floor (minReplicas, itself capped by the ceiling).
    lower: u32,
    /// The figures behind it and any bound that applied.
    why: String,
}

fn recommend(obs: &Observation, policy: &Policy) -> Recommendation {
    let lag = obs.total_lag();
    let upper = obs
        .partitions
        .map_or(policy.max_replicas, |p| policy.max_replicas.min(p))
        .max(1);
    let lower = policy.min_replicas.min(upper);

    let (raw, basis) = match (obs.incoming_rate, obs.per_replica_rate) {
        (Some(incoming), Some(per_replica)) if per_replica > 0.0 => {
            let need = incoming + lag as f64 / policy.catch_up_seconds.max(1.0);
            (
                (need / per_replica).ceil() as u32,
                format!(
                    "lag {lag}, incoming {}, {} per worker",
                    Rate(incoming),
                    Rate(per_replica)
                ),
            )
        }
        _ => (
            lag.div_ceil(policy.target_lag_per_replica.max(1)) as u32,
            format!("lag {lag} (target {} per worker)", policy.target_lag_per_replica),
        ),
    };
    let recommendation = raw.clamp(lower, upper);
    let limit = if raw > upper {
        match obs.partitions {
            Some(p) if p < policy.max_replicas => format!(", capped at {p} partitions"),
            _ => format!(", capped at maxReplicas {}", policy.max_replicas),
        }
    } else if raw < lower {
        format!(", floored at minReplicas {}", policy.min_replicas)
    } else {
        String::new()
    };
    Recommendation {
        count: recommendation,
        lower,
        why: format!("{basis}{limit}"),
    }
}

/// Decide the worker count. Pure: same inputs, same decision.
pub fn decide(obs: &Observation, policy: &Policy, history: &History, now: Duration) -> Decision {
    let Recommendation {
        count: recommendation,
        lower,
        why,
    } = recommend(obs, policy);
    let current = obs.current_replicas;

    if recommendation > current {
        // At most double per step, but never stay below the floor.
        let desired = recommendation.min((current * 2).max(1)).max(lower);
        let doubling = if desired < recommendation {
            format!(" (wants {recommendation}; at most doubling per step)")
        } else {
            String::new()
        };
        return Decision {
            desired,
            recommendation,
            direction: Direction::Up,
            reason: format!("{why}: scaling up {current} -> {desired}{doubling}"),
        };
    }
    if recommendation < current {
        let window = policy.scale_down_stabilization;
        let stabilized = history
            .highest_within(now, window)
            .unwrap_or(recommendation)
            .max(recommendation)
            .min(current);
        if stabilized < current {
            return Decision {
                desired: stabilized,
                recommendation,
                direction: Direction::Down,
                reason: format!(
                    "{why}: scaling down {current} -> {stabilized} (highest recommendation in the last {}s)",
                    window.as_secs()
                ),
            };
        }
        return Decision {
            desired: current,
            recommendation,
            direction: Direction::Hold,
            reason: format!(
                "{why}: {recommendation} would do, holding {current} for the {}s stabilization window",
                window.as_secs()
            ),
        };
    }
    Decision {
        desired: current,
        recommendation,
        direction: Direction::Hold,
        reason: format!("{why}: {current} workers are right"),
    }
}

/// Turns successive offset readings into the rates `decide` needs.
///
/// The incoming rate is the growth of the high watermarks. A worker's
/// capacity is only visible while it has a backlog (otherwise it processes
/// what arrives, not what it could): it is estimated from readings with lag
/// above `backlog` and above two seconds of arrivals, smoothed, and kept
/// when the backlog is gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateEstimator {
    last: Option<Reading>,
    incoming: Option<f64>,
    per_replica: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub at: Duration,
    /// Sum of the partitions' high watermarks.
    pub produced: u64,
    /// Sum of the group's committed offsets.
    pub committed: u64,
    pub replicas: u32,
}

/// Weight of a new measurement in the smoothed rates.
const SMOOTHING: f64 = 0.5;
/// A backlog must exceed this many seconds of arrivals to show capacity:
/// records in flight in normal batches are not a backlog.
const BACKLOG_SECONDS: f64 = 2.0;

impl RateEstimator {
    pub fn observe(&mut self, reading: Reading, backlog: u64) {
        if let Some(prev) = self.last {
            let dt = reading.at.saturating_sub(prev.at).as_secs_f64();
            if dt >= 1.0 {
                let incoming = reading.produced.saturating_sub(prev.produced) as f64 / dt;
                self.incoming = Some(smooth(self.incoming, incoming));
                let lag = reading.produced.saturating_sub(reading.committed);
                let replicas = prev.replicas.min(reading.replicas);
                let threshold = backlog.max((incoming * BACKLOG_SECONDS) as u64);
                if lag > threshold && replicas > 0 {
                    let processed = reading.committed.saturating_sub(prev.committed) as f64 / dt;
                    if processed > 0.0 {
                        self.per_replica = Some(smooth(self.per_replica, processed / f64::from(replicas)));
                    }
                }
            } else {
                return; // too close to the last reading to measure anything
            }
        }
        self.last = Some(reading);
    }

    pub fn incoming_rate(&self) -> Option<f64> {
        self.incoming
    }

    pub fn per_replica_rate(&self) -> Option<f64> {
        self.per_replica
    }
}

fn smooth(old: Option<f64>, new: f64) -> f64 {
    match old {
        Some(o) => o + SMOOTHING * (new - o),
        None => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_replicas: 1,
            max_replicas: 10,
            target_lag_per_replica: 1_000,
            catch_up_seconds: 30.0,
            scale_down_stabilization: Duration::from_secs(60),
        }
    }

    fn obs(lag: u64, current: u32, partitions: u32, rates: Option<(f64, f64)>) -> Observation {
        Observation {
            partition_lag: vec![lag],
            incoming_rate: rates.map(|r| r.0),
            per_replica_rate: rates.map(|r| r.1),
            current_replicas: current,
            partitions: Some(partitions),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn decisions_without_history() {
        // (name, observation, policy tweak, desired, direction, words in the reason)
        type Case = (
            &'static str,
            Observation,
            fn(&mut Policy),
            u32,
            Direction,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "idle stays at min",
                obs(0, 1, 8, None),
                |_| {},
                1,
                Direction::Hold,
                "are right",
            ),
            (
                "lag-based up",
                obs(3_500, 1, 8, None),
                |_| {},
                2,
                Direction::Up,
                "at most doubling",
            ),
            (
                "lag-based exact",
                obs(3_500, 2, 8, None),
                |_| {},
                4,
                Direction::Up,
                "scaling up 2 -> 4",
            ),
            (
                "rate-based: (5000 + 30000/30) / 1500 = 4",
                obs(30_000, 4, 8, Some((5_000.0, 1_500.0))),
                |_| {},
                4,
                Direction::Hold,
                "incoming 5000/s",
            ),
            (
                "rate-based up",
                obs(60_000, 3, 8, Some((5_000.0, 1_000.0))),
                |_| {},
                6,
                Direction::Up,
                "scaling up 3 -> 6",
            ),
            (
                "capped by partitions",
                obs(50_000, 4, 4, None),
                |_| {},
                4,
                Direction::Hold,
                "capped at 4 partitions",
            ),
            (
                "capped by max",
                obs(50_000, 8, 16, None),
                |p| p.max_replicas = 9,
                9,
                Direction::Up,
                "maxReplicas 9",
            ),
            (
                "floored at min",
                obs(0, 1, 8, None),
                |p| p.min_replicas = 3,
                3,
                Direction::Up,
                "minReplicas 3",
            ),
            (
                "from zero to the floor at once",
                obs(0, 0, 8, None),
                |p| p.min_replicas = 2,
                2,
                Direction::Up,
                "0 -> 2",
            ),
            (
                "min above partitions is capped",
                obs(0, 2, 2, None),
                |p| p.min_replicas = 5,
                2,
                Direction::Hold,
                "are right",
            ),
            (
                "down with no history",
                obs(0, 6, 8, Some((100.0, 1_000.0))),
                |_| {},
                1,
                Direction::Down,
                "scaling down 6 -> 1",
            ),
        ];
        for (name, o, tweak, desired, direction, needle) in cases {
            let mut p = policy();
            tweak(&mut p);
            let d = decide(&o, &p, &History::default(), secs(1_000));
            assert_eq!(
                (d.desired, d.direction),
                (desired, direction),
                "{name}: {}",
                d.reason
            );
            assert!(
                d.reason.contains(needle),
                "{name}: `{}` lacks `{needle}`",
                d.reason
            );
        }
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let p = policy();
        let mut h = History::default();
        // A burst asked for 6 at t=100.
        h.record(secs(100), 6, p.scale_down_stabilization);
        let quiet = obs(0, 6, 8, None);
        let inside = decide(&quiet, &p, &h, secs(150));
        assert_eq!(
            (inside.desired, inside.direction),
            (6, Direction::Hold),
            "{}",
            inside.reason
        );
        assert!(inside.reason.contains("stabilization window"));
        let after = decide(&quiet, &p, &h, secs(161));
        assert_eq!(
            (after.desired, after.direction),
            (1, Direction::Down),
            "{}",
            after.reason
        );
        // Partially: the highest in the window wins.
        h.record(secs(170), 3, p.scale_down_stabilization);
        let partial = decide(&quiet, &p, &h, secs(200));
        assert_eq!(partial.desired, 3);
    }

    #[test]
    fn a_resumed_history_holds_the_running_workers_for_one_window() {
        let p = policy();
        let quiet = obs(0, 6, 8, None);
        // (seconds after the restart, desired): hold inside the window, then down.
        for (after, desired) in [(0, 6), (30, 6), (60, 6), (61, 1)] {
            let h = History::resumed(secs(500), 6);
            let d = decide(&quiet, &p, &h, secs(500 + after));
            assert_eq!(d.desired, desired, "{after}s after the restart: {}", d.reason);
        }
        // Without it, the restart would drop them at once.
        assert_eq!(decide(&quiet, &p, &History::default(), secs(500)).desired, 1);
    }

    /// Run a load through decide() as a runtime would: every 15 s.
    fn simulate(lags: &[u64], p: &Policy, partitions: u32) -> Vec<u32> {
        let mut h = History::default();
        let mut current = p.min_replicas;
        let mut out = Vec::new();
        for (i, lag) in lags.iter().enumerate() {
            let now = secs(15 * i as u64);
            let d = decide(&obs(*lag, current, partitions, None), p, &h, now);
            h.record(now, d.recommendation, p.scale_down_stabilization);
            current = d.desired;
            out.push(current);
        }
        out
    }

    #[test]
    fn a_flapping_load_does_not_flap_the_workers() {
        let mut p = policy();
        p.scale_down_stabilization = Duration::from_secs(120);
        // Lag alternates high/low every 15 s for 10 minutes.
        let lags: Vec<u64> = (0..40).map(|i| if i % 2 == 0 { 8_000 } else { 200 }).collect();
        let replicas = simulate(&lags, &p, 8);
        let changes = replicas.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes <= 3, "flapped: {replicas:?}");
        assert_eq!(
            *replicas.last().unwrap(),
            8,
            "holds the peak while the bursts keep coming"
        );
        // Once the bursts stop, it comes down after the window, not before.
        let mut calm = lags.clone();
        calm.extend(std::iter::repeat_n(0, 12));
        let replicas = simulate(&calm, &p, 8);
        let stop = lags.len();
        assert_eq!(replicas[stop + 6], 8, "inside the window after the last burst");
        assert_eq!(
            *replicas.last().unwrap(),
            1,
            "down after the window: {replicas:?}"
        );
    }

    #[test]
    fn properties_hold_for_arbitrary_loads() {
        // Deterministic pseudo-random loads (xorshift), many policies.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let partitions = 1 + (next() % 12) as u32;
            let min = (next() % 4) as u32;
            let max = min + (next() % 10) as u32;
            let p = Policy {
                min_replicas: min,
                max_replicas: max.max(1),
                target_lag_per_replica: 1 + next() % 5_000,
                catch_up_seconds: 10.0,
                scale_down_stabilization: Duration::from_secs(30 + next() % 300),
            };
            let lags: Vec<u64> = (0..60).map(|_| next() % 50_000).collect();
            let replicas = simulate(&lags, &p, partitions);
            let upper = p.max_replicas.min(partitions).max(1);
            let lower = p.min_replicas.min(upper);
            for (i, r) in replicas.iter().enumerate() {
                assert!(*r <= upper, "above partitions/max at {i}: {replicas:?}");
                assert!(*r >= lower, "below min at {i}: {replicas:?}");
            }
            // No scale-down while a recommendation at least as high is inside the window.
            let mut h = History::default();
            let mut current = lower;
            for (i, lag) in lags.iter().enumerate() {
                let now = secs(15 * i as u64);
                let d = decide(&obs(*lag, current, partitions, None), &p, &h, now);
                if d.direction == Direction::Down {
                    let high = h.highest_within(now, p.scale_down_stabilization).unwrap_or(0);
                    assert!(d.desired >= high.min(current), "scaled below the window's peak");
                }
                h.record(now, d.recommendation, p.scale_down_stabilization);
                current = d.desired;
            }
        }
    }

    #[test]
    fn rates_come_from_readings_and_capacity_only_under_backlog() {
        let mut r = RateEstimator::default();
        let reading = |at: u64, produced: u64, committed: u64| Reading {
            at: secs(at),
            produced,
            committed,
            replicas: 2,
        };
        r.observe(reading(0, 0, 0), 1_000);
        assert_eq!(r.incoming_rate(), None);
        // 10 s: 50k produced, 20k processed with a 30k backlog: capacity 1000/s per worker.
        r.observe(reading(10, 50_000, 20_000), 1_000);
        assert_eq!(r.incoming_rate(), Some(5_000.0));
        assert_eq!(r.per_replica_rate(), Some(1_000.0));
        // Caught up: processing equals arrivals, which says nothing about capacity.
        r.observe(reading(20, 60_000, 60_000), 1_000);
        assert_eq!(r.per_replica_rate(), Some(1_000.0), "capacity kept");
        assert_eq!(r.incoming_rate(), Some(3_000.0), "smoothed: 5000 -> 1000");
        // Readings too close together are ignored.
        r.observe(reading(20, 70_000, 60_000), 1_000);
        assert_eq!(r.incoming_rate(), Some(3_000.0));
    }
}
