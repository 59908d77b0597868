//! Rate control. The pacer compares how many events the schedule asks for by
//! now (the integral of the target rate) with how many were sent, so errors
//! never accumulate: a slow moment is made up right after, and the achieved
//! rate over any window tracks the target. Pure: the caller owns the clock.

use std::time::Duration;

use shopstream_model::LoadProfile;

/// Most events sent in one go before the loop looks at the clock again.
pub const MAX_BURST: u64 = 1_024;
/// Longest sleep, so stop requests and stage changes are noticed promptly.
const MAX_WAIT: Duration = Duration::from_millis(20);
const MIN_WAIT: Duration = Duration::from_micros(200);

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// As fast as the producer can go.
    Unlimited,
    /// A steady rate, events per second.
    Constant(f64),
    /// Stages held or ramped (see [`LoadProfile`]).
    Profile(ProfileClock),
}

/// A load profile as seen by one producer: it may join after the profile
/// started (`offset`), and as one of several pods it may produce only its
/// share of the rate.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileClock {
    profile: LoadProfile,
    /// Seconds into the profile at this producer's start (negative: not yet started).
    offset: f64,
    share: Option<ShareTable>,
}

/// Cumulative events of one pod's share over one profile cycle, tabulated:
/// the share steps when the pod count changes, so it has no closed form.
#[derive(Debug, Clone, PartialEq)]
struct ShareTable {
    rate_per_replica: f64,
    step: f64,
    cumulative: Vec<f64>,
}

/// Table resolution: fine enough to be exact to a few events, coarse enough
/// that a day-long profile stays small.
const SHARE_STEP: f64 = 0.05;
const SHARE_MAX_POINTS: f64 = 200_000.0;

impl ShareTable {
    fn new(profile: &LoadProfile, rate_per_replica: f64) -> Self {
        let cycle = profile.cycle_seconds() as f64;
        let step = SHARE_STEP.max(cycle / SHARE_MAX_POINTS);
        let n = (cycle / step).ceil() as usize;
        let mut cumulative = Vec::with_capacity(n + 1);
        let mut total = 0.0;
        cumulative.push(0.0);
        for i in 0..n {
            let (a, b) = (i as f64 * step, ((i + 1) as f64 * step).min(cycle));
            // Midpoint rule; exact on held stages.
            let mid = profile.position((a + b) / 2.0).map_or(0.0, |p| p.rate);
            total += shopstream_model::profile::share_of(mid, rate_per_replica) * (b - a);
            cumulative.push(total);
        }
        Self {
            rate_per_replica,
            step,
            cumulative,
        }
    }

    /// Events of the share from the cycle start to `x` seconds (0 <= x <= cycle).
    fn within_cycle(&self, x: f64) -> f64 {
        let pos = x / self.step;
        let i = (pos.floor() as usize).min(self.cumulative.len() - 1);
        let next = self.cumulative.get(i + 1).copied().unwrap_or(self.cumulative[i]);
        self.cumulative[i] + (next - self.cumulative[i]) * (pos - i as f64).clamp(0.0, 1.0)
    }

    fn per_cycle(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }
}

impl ProfileClock {
    pub fn new(profile: LoadProfile, offset: f64, rate_per_replica: Option<f64>) -> Self {
        let share = rate_per_replica.map(|r| ShareTable::new(&profile, r));
        Self {
            profile,
            offset,
            share,
        }
    }

    /// The whole profile for a lone producer starting with it.
    pub fn whole(profile: LoadProfile) -> Self {
        Self::new(profile, 0.0, None)
    }

    /// The same clock joined `offset` seconds into the profile: set when the
    /// producing loop starts, so time spent connecting is not lost.
    pub fn joined_at(mut self, offset: f64) -> Self {
        self.offset = offset;
        self
    }

    /// Events the whole group owes from the profile's start up to `t`
    /// seconds after this producer joined.
    pub fn group_due(&self, t: f64) -> f64 {
        let x = self.offset + t;
        if x <= 0.0 {
            0.0
        } else {
            self.profile.events_until(x)
        }
    }

    /// Pods the group has at `t` (what the runtimes run for the rate then).
    pub fn group_pods(&self, t: f64) -> u32 {
        let x = (self.offset + t).max(0.0);
        let rate = match self.profile.position(x) {
            Some(p) => p.rate,
            // Finished: the pods of the last stage settle the last deficit.
            None => self
                .profile
                .stages
                .last()
                .map_or(0.0, |s| s.events_per_second as f64),
        };
        match &self.share {
            Some(s) => shopstream_model::profile::replicas_for(rate, s.rate_per_replica),
            None => u32::from(rate > 0.0),
        }
    }

    /// Most one pod catches up (or holds back) beyond its share: a wrong
    /// count (a second producer, retention) must not turn into a flood.
    pub fn catch_up_limit(&self) -> f64 {
        let per_pod = match &self.share {
            Some(s) => s.rate_per_replica,
            None => self
                .profile
                .stages
                .iter()
                .map(|s| s.events_per_second)
                .max()
                .unwrap_or(0) as f64,
        };
        per_pod * CATCH_UP_SECONDS
    }

    /// Events this producer's own share owes `t` seconds after it joined.
    pub fn own_due(&self, t: f64) -> f64 {
        self.events_until(t)
    }

    fn rate(&self, t: f64) -> Option<f64> {
        let x = self.offset + t;
        if x < 0.0 {
            return Some(0.0);
        }
        let full = self.profile.position(x)?.rate;
        Some(match &self.share {
            Some(s) => shopstream_model::profile::share_of(full, s.rate_per_replica),
            None => full,
        })
    }

    /// Events due from the profile's start up to `x` seconds into it.
    fn cumulative(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        let Some(table) = &self.share else {
            return self.profile.events_until(x);
        };
        let cycle = self.profile.cycle_seconds() as f64;
        if !self.profile.repeat {
            return table.within_cycle(x.min(cycle));
        }
        let cycles = (x / cycle).floor();
        cycles * table.per_cycle() + table.within_cycle(x - cycles * cycle)
    }

    fn events_until(&self, t: f64) -> f64 {
        self.cumulative(self.offset + t) - self.cumulative(self.offset)
    }

    fn finished(&self, t: f64) -> bool {
        self.profile
            .total_seconds()
            .is_some_and(|total| self.offset + t >= total as f64)
    }

    fn stage(&self, t: f64) -> Option<usize> {
        self.profile.position(self.offset + t).map(|p| p.stage)
    }
}

impl Schedule {
    /// Target rate at `elapsed` seconds; `None` when unlimited or finished.
    pub fn rate_at(&self, elapsed: f64) -> Option<f64> {
        match self {
            Schedule::Unlimited => None,
            Schedule::Constant(r) => Some(*r),
            Schedule::Profile(p) => p.rate(elapsed),
        }
    }

    /// Current profile stage index, if any.
    pub fn stage_at(&self, elapsed: f64) -> Option<usize> {
        match self {
            Schedule::Profile(p) => p.stage(elapsed),
            _ => None,
        }
    }

    fn events_until(&self, elapsed: f64) -> Option<f64> {
        match self {
            Schedule::Unlimited => None,
            Schedule::Constant(r) => Some(r * elapsed),
            Schedule::Profile(p) => Some(p.events_until(elapsed)),
        }
    }

    fn finished(&self, elapsed: f64) -> bool {
        match self {
            Schedule::Profile(p) => p.finished(elapsed),
            _ => false,
        }
    }
}

/// Seconds of one pod's rate it may add or hold back to correct the group.
const CATCH_UP_SECONDS: f64 = 30.0;

/// One look at how the whole group of pods is doing against the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReading {
    /// Events the profile asks of the group since its start.
    pub group_due: f64,
    /// Events the topic gained since the profile's start (every pod's).
    pub produced: u64,
    /// Pods sharing the rate now.
    pub pods: u32,
    /// This pod's messages acknowledged by the broker so far.
    pub acked: u64,
    /// What this pod's own share owes so far.
    pub own_due: f64,
    pub limit: f64,
}

/// Events this pod should send beyond its own share (negative: hold back),
/// so that the group's total follows the profile's integral although pods
/// start late, crash or restart. Each of `pods` takes an equal part of the
/// group's shortfall; the result is absolute, not accumulated, so a pod that
/// could not keep up does not build a backlog that floods later. Its own
/// unacknowledged messages are missing from `produced` and from `acked`
/// alike, so they are not asked for twice.
pub fn group_extra(r: &GroupReading) -> i64 {
    if r.pods == 0 {
        return 0;
    }
    let part = ((r.group_due - r.produced as f64) / f64::from(r.pods)).clamp(-r.limit, r.limit);
    (r.acked as f64 + part - r.own_due).round() as i64
}

/// Sent count as the pacer should see it, after the group's correction.
pub fn effective_sent(sent: u64, extra: i64) -> u64 {
    (sent as i64).saturating_sub(extra).max(0) as u64
}

/// What the producing loop should do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Send this many events now.
    Send(u64),
    /// Nothing is due; check again after this long.
    Wait(Duration),
    /// The schedule has ended and everything due was sent.
    Done,
}

/// Decide the next step given the time since the start and the events sent.
pub fn next(schedule: &Schedule, elapsed: Duration, sent: u64) -> Pace {
    let t = elapsed.as_secs_f64();
    let Some(due_total) = schedule.events_until(t) else {
        return Pace::Send(MAX_BURST);
    };
    let due = (due_total.floor() as u64).saturating_sub(sent);
    if due > 0 {
        return Pace::Send(due.min(MAX_BURST));
    }
    if schedule.finished(t) {
        return Pace::Done;
    }
    let rate = schedule.rate_at(t).unwrap_or(0.0);
    let wait = if rate > 0.0 {
        // Time until the next whole event is due at the current rate.
        let missing = (sent as f64 + 1.0 - due_total).max(0.0);
        Duration::from_secs_f64(missing / rate)
    } else {
        MAX_WAIT
    };
    Pace::Wait(wait.clamp(MIN_WAIT, MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopstream_model::Stage;

    /// Drive the pacer on a simulated clock. Sending costs `cost_per_event`
    /// and every wait oversleeps by `jitter`, like a real OS. Returns the
    /// number sent at each whole second.
    fn simulate(schedule: &Schedule, seconds: u64, cost_per_event: Duration, jitter: Duration) -> Vec<u64> {
        let mut now = Duration::ZERO;
        let mut sent = 0_u64;
        let mut checkpoints = Vec::new();
        let mut next_checkpoint = Duration::from_secs(1);
        let end = Duration::from_secs(seconds);
        while now < end {
            match next(schedule, now, sent) {
                Pace::Send(n) => {
                    sent += n;
                    now += cost_per_event * n as u32;
                }
                Pace::Wait(d) => now += d + jitter,
                Pace::Done => break,
            }
            while now >= next_checkpoint && next_checkpoint <= end {
                checkpoints.push(sent);
                next_checkpoint += Duration::from_secs(1);
            }
        }
        while checkpoints.len() < seconds as usize {
            checkpoints.push(sent);
        }
        checkpoints
    }

    fn profile(stages: &[(u64, u64, bool)]) -> Schedule {
        Schedule::Profile(ProfileClock::whole(load_profile(stages)))
    }

    fn load_profile(stages: &[(u64, u64, bool)]) -> LoadProfile {
        LoadProfile {
            stages: stages
                .iter()
                .map(|&(duration_seconds, events_per_second, ramp)| Stage {
                    duration_seconds,
                    events_per_second,
                    ramp,
                })
                .collect(),
            repeat: false,
        }
    }

    #[test]
    fn tracks_constant_step_and_ramp_profiles() {
        let cost = Duration::from_micros(2);
        let jitter = Duration::from_micros(80);
        // (schedule, seconds, expected cumulative count at each second)
        let cases: Vec<(&str, Schedule, u64, Vec<f64>)> = vec![
            (
                "constant 1k",
                Schedule::Constant(1_000.0),
                5,
                (1..=5).map(|s| 1_000.0 * s as f64).collect(),
            ),
            (
                "constant 50k",
                Schedule::Constant(50_000.0),
                3,
                (1..=3).map(|s| 50_000.0 * s as f64).collect(),
            ),
            (
                "step 200 -> 5000",
                profile(&[(2, 200, false), (2, 5_000, false)]),
                4,
                vec![200.0, 400.0, 5_400.0, 10_400.0],
            ),
            (
                "ramp 0 -> 10000 over 4 s",
                profile(&[(4, 10_000, true)]),
                4,
                // integral of 2500 t: 1250 t^2
                vec![1_250.0, 5_000.0, 11_250.0, 20_000.0],
            ),
        ];
        for (name, schedule, seconds, expected) in cases {
            let got = simulate(&schedule, seconds, cost, jitter);
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                // Within 1% (or a handful of events at low counts) of the integral.
                let tolerance = (e * 0.01).max(5.0);
                assert!(
                    (*g as f64 - e).abs() <= tolerance,
                    "{name} at {}s: sent {g}, expected {e}",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn a_pod_produces_its_share_from_where_the_profile_is() {
        // 1000/s for 10 s, then 300/s for 10 s; 300/s per pod: 4 pods, then 1.
        let p = load_profile(&[(10, 1000, false), (10, 300, false)]);
        let pod = ProfileClock::new(p.clone(), 0.0, Some(300.0));
        assert!(
            (pod.events_until(10.0) - 2_500.0).abs() < 1e-6,
            "{}",
            pod.events_until(10.0)
        );
        assert!((pod.events_until(20.0) - 5_500.0).abs() < 1e-6);
        assert_eq!(pod.rate(5.0), Some(250.0));
        // A pod started 15 s into the profile: 5 s of the second stage left.
        let late = Schedule::Profile(ProfileClock::new(p.clone(), 15.0, Some(300.0)));
        assert!((late.events_until(5.0).unwrap() - 1_500.0).abs() < 1e-6);
        assert!(late.finished(5.0) && !late.finished(4.9));
        assert_eq!(late.stage_at(0.0), Some(1));
        // Before the profile starts nothing is due.
        let early = ProfileClock::new(p.clone(), -2.0, None);
        assert_eq!(early.events_until(2.0), 0.0);
        assert!((early.events_until(3.0) - 1_000.0).abs() < 1e-6);
        // A ramp split across pods still sums to the ramp's integral.
        let ramp = load_profile(&[(10, 2000, true)]);
        let one = ProfileClock::new(ramp.clone(), 0.0, Some(500.0));
        let pods = |t: f64| {
            let rate = ramp.position(t).unwrap().rate;
            shopstream_model::profile::replicas_for(rate, 500.0) as f64
        };
        // Summing share × pods over small slices approximates the whole.
        let mut total = 0.0;
        let mut t = 0.0;
        while t < 10.0 {
            total += (one.events_until(t + 0.05) - one.events_until(t)) * pods(t + 0.025);
            t += 0.05;
        }
        assert!((total - 10_000.0).abs() < 60.0, "{total}");
    }

    #[test]
    fn the_group_shares_its_shortfall_and_never_asks_twice() {
        let reading = |group_due: f64, produced: u64, pods: u32, acked: u64, own_due: f64| GroupReading {
            group_due,
            produced,
            pods,
            acked,
            own_due,
            limit: 30_000.0,
        };
        // (case, reading, extra events for this pod)
        let cases = [
            // Everyone on schedule: nothing to add.
            ("on schedule", reading(10_000.0, 10_000, 2, 5_000, 5_000.0), 0),
            // A pod started 4 s late at 1000/s: the two running split 4000.
            ("late pod", reading(12_000.0, 8_000, 3, 4_000, 4_000.0), 1_333),
            // This pod joined late: its own share is small but the group is whole.
            ("late joiner", reading(12_000.0, 12_000, 3, 500, 500.0), 0),
            // 300 of this pod's messages await acks: not asked for again.
            ("in flight", reading(10_000.0, 9_700, 1, 9_700, 10_000.0), 0),
            // A pod already sent its part of an earlier shortfall: not again.
            (
                "already made up",
                reading(12_000.0, 12_000, 3, 5_333, 4_000.0),
                1_333,
            ),
            // Ahead (a pod of the previous revision still sending): hold back.
            ("ahead", reading(10_000.0, 12_000, 2, 5_000, 5_000.0), -1_000),
            // A wildly wrong count is capped.
            ("capped", reading(1e9, 0, 1, 0, 0.0), 30_000),
            ("no pods", reading(10.0, 0, 0, 0, 0.0), 0),
        ];
        for (name, r, expected) in cases {
            assert_eq!(group_extra(&r), expected, "{name}");
        }
        assert_eq!(effective_sent(100, 30), 70);
        assert_eq!(effective_sent(100, -30), 130);
        assert_eq!(effective_sent(10, 30), 0);
    }

    #[test]
    fn late_pods_are_made_up_by_the_group() {
        // Ramp 1000 -> 10000/s over 60 s at 1000/s per pod. Each new pod starts
        // 3 s after the profile asks for it; the others correct every 0.5 s.
        let profile = load_profile(&[(1, 1_000, false), (60, 10_000, true)]);
        let rpr = 1_000.0;
        let group = ProfileClock::new(profile.clone(), 0.0, Some(rpr));
        let dt = 0.01;
        let mut pods: Vec<(ProfileClock, u64, i64)> = Vec::new(); // clock, sent, extra
        let mut t = 0.0;
        let mut produced = 0_u64;
        let mut next_round = 0.0;
        while t < 61.0 {
            // Pods start late: the k-th pod only 3 s after it is due.
            let wanted = group.group_pods((t - 3.0_f64).max(0.0)) as usize;
            while pods.len() < wanted.max(1) {
                pods.push((ProfileClock::new(profile.clone(), t, Some(rpr)), 0, 0));
            }
            let round = t >= next_round;
            if round {
                next_round += 0.5;
            }
            for (clock, sent, extra) in pods.iter_mut() {
                let joined = clock.offset;
                let local = t - joined;
                if round {
                    *extra = group_extra(&GroupReading {
                        group_due: group.group_due(t),
                        produced,
                        pods: group.group_pods(t),
                        acked: *sent,
                        own_due: clock.own_due(local),
                        limit: clock.catch_up_limit(),
                    });
                }
                if let Pace::Send(n) = next(
                    &Schedule::Profile(clock.clone()),
                    Duration::from_secs_f64(local),
                    effective_sent(*sent, *extra),
                ) {
                    *sent += n;
                    produced += n;
                }
            }
            t += dt;
        }
        let expected = group.group_due(61.0);
        assert!((expected - 331_000.0).abs() < 1.0, "{expected}");
        let error = (produced as f64 - expected).abs() / expected;
        assert!(error < 0.005, "produced {produced} of {expected}");
        // Without the correction the same late starts fall short by more than 1%.
        let mut alone = 0.0;
        let mut t = 0.0;
        while t < 61.0 {
            let running = group.group_pods((t - 3.0_f64).max(0.0)).max(1);
            let share = group.group_pods(t).max(1);
            let rate = profile.position(t).map_or(0.0, |p| p.rate);
            alone += rate / f64::from(share) * f64::from(running.min(share)) * dt;
            t += dt;
        }
        assert!(
            (expected - alone) / expected > 0.01,
            "uncorrected {alone} of {expected}"
        );
    }

    #[test]
    fn a_slow_producer_catches_up_without_drift() {
        // Sending takes 30 µs per event (max ~33k/s); ask for 20k/s.
        let got = simulate(
            &Schedule::Constant(20_000.0),
            5,
            Duration::from_micros(30),
            Duration::from_micros(100),
        );
        let last = *got.last().unwrap() as f64;
        assert!((last - 100_000.0).abs() / 100_000.0 < 0.01, "sent {last}");
    }

    #[test]
    fn a_finished_profile_is_done_after_its_last_event() {
        let s = profile(&[(1, 10, false)]);
        assert_eq!(next(&s, Duration::from_secs(2), 10), Pace::Done);
        assert_eq!(next(&s, Duration::from_secs(2), 7), Pace::Send(3));
    }

    #[test]
    fn unlimited_always_sends_a_burst_and_zero_rate_waits() {
        assert_eq!(
            next(&Schedule::Unlimited, Duration::from_secs(9), 1 << 40),
            Pace::Send(MAX_BURST)
        );
        let idle = profile(&[(10, 0, false)]);
        assert_eq!(next(&idle, Duration::from_secs(1), 0), Pace::Wait(MAX_WAIT));
    }

    #[test]
    fn waits_until_the_next_event_is_due() {
        // 10/s, one sent at t=0.05: the next is due at 0.1 s.
        let pace = next(&Schedule::Constant(10.0), Duration::from_millis(50), 0);
        assert_eq!(pace, Pace::Wait(MAX_WAIT)); // 50 ms > MAX_WAIT, clamped
        let pace = next(&Schedule::Constant(100.0), Duration::from_millis(5), 0);
        assert_eq!(pace, Pace::Wait(Duration::from_millis(5)));
    }
}
