//! Wiring: flags -> schedule, catalog, producer, metrics endpoint, progress
//! log, signal handling, and the audit at the end.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use shopstream_common::http;
use shopstream_common::shutdown::{self, StopFlag};
use shopstream_model::LoadProfile;
use thiserror::Error;

use crate::catalog::Catalog;
use crate::cli::Cli;
use crate::group;
use crate::invalid::{self, InvalidKind};
use crate::metrics::Metrics;
use crate::pacing::{self, Pace, ProfileClock, Schedule};
use crate::producer::{ProducerError, ShopProducer};
use crate::summary::{self, Contribution, RunInfo, SummaryError};
use crate::traffic::{Next, Traffic};
use shopstream_model::summary::{StopReason, Summary};

/// Longest a shutdown on a signal waits for acknowledgements: Kubernetes
/// kills the pod 30 s after SIGTERM by default.
const SIGNAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum GeneratorError {
    #[error("cannot read load profile {path}: {source}")]
    ProfileRead { path: String, source: std::io::Error },
    #[error("invalid load profile {path}: {detail}")]
    ProfileInvalid { path: String, detail: String },
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(transparent)]
    Summary(#[from] SummaryError),
    #[error("the producing thread panicked")]
    Panicked,
}

/// How a run ended; `main` turns it into an exit code.
pub struct Outcome {
    pub summary: Summary,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.summary.delivery_failures == 0 && self.summary.stopped_by != StopReason::Error
    }
}

pub fn load_schedule(cli: &Cli) -> Result<Schedule, GeneratorError> {
    let profile = match (&cli.profile, &cli.profile_inline) {
        (Some(path), _) => Some(read_profile(path)?),
        (None, Some(text)) => Some(parse_profile(text, "--profile-inline")?),
        (None, None) => None,
    };
    if let Some(profile) = profile {
        // Joining a profile that started earlier (a pod of a Pipeline) starts
        // from where the profile is now, not from its beginning.
        return Ok(Schedule::Profile(ProfileClock::new(
            profile,
            profile_offset(cli, Utc::now()),
            cli.rate_per_replica,
        )));
    }
    Ok(match (cli.rate, cli.rate_per_replica) {
        (r, _) if r <= 0.0 => Schedule::Unlimited,
        // One of ceil(rate / per-replica) identical pods: produce a share.
        (r, Some(per_replica)) => Schedule::Constant(shopstream_model::profile::share_of(r, per_replica)),
        (r, None) => Schedule::Constant(r),
    })
}

/// Seconds into the profile at `now` (0 for a producer starting it).
fn profile_offset(cli: &Cli, now: chrono::DateTime<Utc>) -> f64 {
    cli.profile_start
        .map(|start| (now - start).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0)
}

fn read_profile(path: &Path) -> Result<LoadProfile, GeneratorError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| GeneratorError::ProfileRead {
        path: shown.clone(),
        source,
    })?;
    parse_profile(&text, &shown)
}

fn parse_profile(text: &str, source: &str) -> Result<LoadProfile, GeneratorError> {
    let invalid = |detail: String| GeneratorError::ProfileInvalid {
        path: source.to_string(),
        detail,
    };
    let profile: LoadProfile = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    profile.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(profile)
}

/// Seeds for the shared world and for this instance's traffic. The world
/// depends on the seed only; traffic also on the instance, so instances
/// never repeat each other's ids.
pub fn seeds(seed: u64, instance: &str) -> (u64, u64) {
    let h = shopstream_common::hash::fnv1a64(instance.as_bytes());
    (seed, splitmix(seed ^ splitmix(h)))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub async fn run(cli: Cli) -> Result<Outcome, GeneratorError> {
    let mut schedule = load_schedule(&cli)?;
    let instance = cli.instance();
    let metrics = Metrics::new();
    let stop = StopFlag::new();

    let (producer, partitions) = {
        let (kafka, topic, dt, ct, m) = (
            cli.kafka.clone(),
            cli.topic.clone(),
            cli.delivery_timeout,
            cli.connect_timeout,
            metrics.clone(),
        );
        tokio::task::spawn_blocking(move || ShopProducer::connect(&kafka, &topic, dt, ct, m))
            .await
            .map_err(|_| GeneratorError::Panicked)??
    };
    let producer = Arc::new(producer);
    tracing::info!(
        brokers = %cli.kafka.brokers, topic = %cli.topic, partitions, instance = %instance, seed = cli.seed,
        schedule = ?schedule, total = ?cli.total, duration = ?cli.duration, invalid_ratio = cli.invalid_ratio,
        "generator starting"
    );

    // The endpoint outlives production (it serves through --keep-alive).
    let exit = StopFlag::new();
    if let Some(addr) = cli.metrics_addr {
        let exit = exit.clone();
        http::serve(
            addr,
            metrics.registry.clone(),
            http::Checks::ready_only(http::always_ready()),
            async move { exit.wait().await },
        )
        .await?;
    }

    let (world_seed, traffic_seed) = seeds(cli.seed, &instance);
    let (customers, products) = (cli.customers as usize, cli.products as usize);
    // Built before the clock starts, so the pacer does not begin behind.
    let catalog = tokio::task::spawn_blocking(move || {
        Arc::new(Catalog::generate(
            &mut Xoshiro256PlusPlus::seed_from_u64(world_seed),
            customers,
            products,
        ))
    })
    .await
    .map_err(|_| GeneratorError::Panicked)?;

    let started_at = Utc::now();
    let started = Instant::now();
    let extra = group::Extra::default();
    if let Schedule::Profile(clock) = &schedule {
        // Joined where the profile is now, after connecting and building the catalog.
        let clock = clock.clone().joined_at(profile_offset(&cli, started_at));
        if let Some(since) = cli.profile_start {
            let pacer = {
                let (kafka, topic, timeout) = (cli.kafka.clone(), cli.topic.clone(), cli.connect_timeout);
                tokio::task::spawn_blocking(move || {
                    group::GroupPacer::connect(&kafka, &topic, partitions, since, timeout)
                })
                .await
                .map_err(|_| GeneratorError::Panicked)??
            };
            let (clock, producer, extra, stop) =
                (clock.clone(), producer.clone(), extra.clone(), stop.clone());
            std::thread::spawn(move || pacer.run(clock, started, producer, extra, stop));
        }
        schedule = Schedule::Profile(clock);
    }
    let loop_handle = {
        let (producer, stop, metrics, schedule, cli, extra) = (
            producer.clone(),
            stop.clone(),
            metrics.clone(),
            schedule.clone(),
            cli.clone(),
            extra.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(traffic_seed);
            let traffic = Traffic::new(&catalog, cli.shop.behaviour(), &mut rng);
            let pace = Pacing {
                schedule: &schedule,
                extra: &extra,
                started,
            };
            let stopped_by = produce(&cli, traffic, rng, &pace, &producer, &stop, &metrics);
            (stopped_by, started.elapsed())
        })
    };
    let progress = tokio::spawn(progress_loop(
        producer.clone(),
        metrics.clone(),
        schedule.clone(),
        started,
        cli.progress_interval,
        stop.clone(),
    ));

    let mut loop_handle = loop_handle;
    let mut by_signal = false;
    let (stopped_by, producing) = tokio::select! {
        res = &mut loop_handle => res.map_err(|_| GeneratorError::Panicked)?,
        sig = shutdown::signalled() => {
            tracing::info!(signal = sig, "stopping: finishing in-flight deliveries");
            by_signal = true;
            stop.set();
            let (_, producing) = loop_handle.await.map_err(|_| GeneratorError::Panicked)?;
            (StopReason::Signal, producing)
        }
    };
    let flush_timeout = if by_signal {
        SIGNAL_FLUSH_TIMEOUT.min(cli.delivery_timeout)
    } else {
        cli.delivery_timeout
    };
    {
        let producer = producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(flush_timeout))
            .await
            .map_err(|_| GeneratorError::Panicked)?;
    }
    stop.set();
    progress.abort();

    let ctx = producer.context();
    let summary = summary::build(
        &ctx.tally(),
        RunInfo {
            instance: &instance,
            seed: cli.seed,
            topic: &cli.topic,
            started_at,
            finished_at: Utc::now(),
            producing_seconds: producing.as_secs_f64(),
            stopped_by,
            delivery_failures: ctx.failures(),
            in_doubt: &ctx.in_doubt(),
        },
    );
    if let Some(path) = &cli.summary_file {
        summary::write(&summary, path)?;
    }
    tracing::info!(
        messages = summary.messages_total,
        events = summary.events_total,
        invalid = summary.invalid_total,
        order_lines = summary.order_lines,
        net_revenue = %summary.net_revenue,
        rate = format!("{:.0}", summary.events_per_second),
        delivery_failures = summary.delivery_failures,
        in_doubt = summary.in_doubt.messages,
        stopped_by = ?summary.stopped_by,
        "generator finished"
    );
    if cli.keep_alive && stopped_by != StopReason::Signal {
        tracing::info!("run complete; idling until SIGTERM (--keep-alive)");
        let sig = shutdown::signalled().await;
        tracing::info!(signal = sig, "exiting");
    }
    exit.set();
    Ok(Outcome { summary })
}

/// What the hot loop paces against.
struct Pacing<'a> {
    schedule: &'a Schedule,
    /// The group's correction (zero for a lone producer).
    extra: &'a group::Extra,
    started: Instant,
}

/// The hot loop, on a blocking thread: pace, generate, serialise, send.
fn produce(
    cli: &Cli,
    mut traffic: Traffic<'_>,
    mut rng: Xoshiro256PlusPlus,
    pace: &Pacing<'_>,
    producer: &ShopProducer,
    stop: &StopFlag,
    metrics: &Metrics,
) -> StopReason {
    let (schedule, started) = (pace.schedule, pace.started);
    let mut buf = Vec::with_capacity(4096);
    let mut sent: u64 = 0;
    loop {
        if stop.is_set() {
            return StopReason::Signal;
        }
        let elapsed = started.elapsed();
        if cli.duration.is_some_and(|d| elapsed >= d) {
            return StopReason::Duration;
        }
        let remaining = cli.total.map(|t| t.saturating_sub(sent));
        if remaining == Some(0) {
            return StopReason::Total;
        }
        let n = match pacing::next(schedule, elapsed, pacing::effective_sent(sent, pace.extra.get())) {
            Pace::Done => return StopReason::Profile,
            Pace::Wait(d) => {
                std::thread::sleep(d);
                continue;
            }
            Pace::Send(n) => remaining.map_or(n, |r| n.min(r)),
        };
        for _ in 0..n {
            let Next { event, contribution } = traffic.next(&mut rng, Utc::now().trunc_subsecs(3));
            let (payload, contribution): (&[u8], Contribution) =
                if cli.invalid_ratio > 0.0 && rng.random_bool(cli.invalid_ratio) {
                    let kind = InvalidKind::ALL[rng.random_range(0..InvalidKind::ALL.len())];
                    buf = invalid::corrupt(&mut rng, &event, kind);
                    traffic.discard(&event);
                    (&buf, Contribution::Invalid(kind))
                } else {
                    buf.clear();
                    serde_json::to_writer(&mut buf, &event).expect("events always serialise");
                    (&buf, contribution)
                };
            if let Err(e) = producer.send(&event.customer.customer_id, payload, contribution) {
                tracing::error!(error = %e, "stopping: the producer refused a message");
                return StopReason::Error;
            }
            sent += 1;
        }
        metrics.sent.inc_by(n);
    }
}

async fn progress_loop(
    producer: Arc<ShopProducer>,
    metrics: Metrics,
    schedule: Schedule,
    started: Instant,
    interval: Duration,
    stop: StopFlag,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (Instant::now(), 0_u64);
    loop {
        let elapsed = started.elapsed().as_secs_f64();
        let target = schedule.rate_at(elapsed).unwrap_or(0.0);
        metrics.target_rate.set(target);
        metrics
            .stage
            .set(schedule.stage_at(elapsed).map_or(-1, |s| s as i64));
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait() => return,
        }
        let ctx = producer.context();
        let delivered = ctx.tally().messages();
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64();
        if dt < 0.5 {
            continue; // the first tick fires at once
        }
        let rate = (delivered - last.1) as f64 / dt;
        last = (now, delivered);
        metrics.achieved_rate.set(rate);
        tracing::info!(
            delivered,
            sent = metrics.sent.get(),
            rate = format!("{rate:.0}"),
            target_rate = if target > 0.0 { format!("{target:.0}") } else { "unlimited".to_string() },
            stage = ?schedule.stage_at(elapsed),
            errors = ctx.failures(),
            "progress"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_get_distinct_traffic_seeds_and_share_the_world() {
        let (w1, t1) = seeds(7, "gen-a");
        let (w2, t2) = seeds(7, "gen-b");
        assert_eq!(w1, w2);
        assert_ne!(t1, t2);
        assert_eq!(seeds(7, "gen-a"), (w1, t1), "stable");
        assert_ne!(seeds(8, "gen-a").1, t1);
    }
}
