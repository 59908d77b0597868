//! Command-line flags; each has a `SHOPSTREAM_*` environment equivalent so a
//! Kubernetes Deployment can configure the generator through env vars.

use shopstream_model::envvar;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shopstream_common::kafka::KafkaArgs;
use shopstream_common::logging::LogFormat;

use crate::traffic::Behaviour;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "shopstream-generator",
    version,
    about = "Produce realistic synthetic e-commerce traffic (page views, cart adds, purchases) to Kafka",
    after_help = "Every flag can also be set with the SHOPSTREAM_* environment variable shown."
)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic to produce to (it must exist).
    #[arg(long, env = envvar::TOPIC, default_value = "shopstream-events")]
    pub topic: String,

    /// Target events per second; 0 means as fast as possible.
    #[arg(long, env = envvar::RATE, default_value_t = 1000.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Load profile YAML (`stages: [{durationSeconds, eventsPerSecond, ramp}]`); overrides --rate.
    #[arg(long, env = envvar::PROFILE, conflicts_with = "rate")]
    pub profile: Option<PathBuf>,

    /// The load profile as YAML text (what the operator passes to its pods).
    #[arg(long, env = envvar::PROFILE_INLINE, conflicts_with_all = ["rate", "profile"])]
    pub profile_inline: Option<String>,

    /// When the profile started (RFC 3339); a producer starting later joins
    /// the profile where it is. Defaults to now.
    #[arg(long, env = envvar::PROFILE_START)]
    pub profile_start: Option<chrono::DateTime<chrono::Utc>>,

    /// This producer is one of ceil(rate / N) identical pods and produces its
    /// share of the rate or profile (N events/s at most).
    #[arg(long, env = envvar::RATE_PER_REPLICA, value_parser = parse_positive)]
    pub rate_per_replica: Option<f64>,

    /// After the run ends, keep serving /metrics until SIGTERM instead of
    /// exiting (a Deployment would restart an exited pod).
    #[arg(long, env = envvar::KEEP_ALIVE)]
    pub keep_alive: bool,

    /// Stop after this many messages (valid and invalid).
    #[arg(long, env = envvar::TOTAL)]
    pub total: Option<u64>,

    /// Stop after this long, e.g. `90s` or `10m`.
    #[arg(long, env = envvar::DURATION, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Seed of the customer population, catalog and traffic: same seed,
    /// instance and total give the same events (timestamps aside).
    #[arg(long, env = envvar::SEED, default_value_t = 1)]
    pub seed: u64,

    /// Name of this producer; instances with different names never share
    /// event or order ids. Defaults to the host name (the pod name in Kubernetes).
    #[arg(long, env = envvar::INSTANCE)]
    pub instance: Option<String>,

    /// Size of the customer population.
    #[arg(long, env = envvar::CUSTOMERS, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=50_000_000))]
    pub customers: u32,

    /// Size of the product catalog.
    #[arg(long, env = envvar::PRODUCTS, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub products: u32,

    #[command(flatten)]
    pub shop: ShopArgs,

    /// Share of messages that are deliberately invalid, 0 to 1.
    #[arg(long, env = envvar::INVALID_RATIO, default_value_t = 0.0, value_parser = parse_ratio)]
    pub invalid_ratio: f64,

    /// Write the JSON audit here at the end (and on SIGTERM/SIGINT).
    #[arg(long, env = envvar::SUMMARY_FILE)]
    pub summary_file: Option<PathBuf>,

    /// Serve Prometheus /metrics and /healthz on this address, e.g. 0.0.0.0:9100.
    #[arg(long, env = envvar::METRICS_ADDR)]
    pub metrics_addr: Option<SocketAddr>,

    /// Log format.
    #[arg(long, env = envvar::LOG_FORMAT, value_enum, default_value_t)]
    pub log_format: LogFormat,

    /// How often to log a progress line.
    #[arg(long, env = envvar::PROGRESS_INTERVAL, default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,

    /// How long Kafka may take to acknowledge a message before it counts as lost.
    #[arg(long, env = envvar::DELIVERY_TIMEOUT, default_value = "60s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,

    /// How long to wait for the brokers at start-up.
    #[arg(long, env = envvar::CONNECT_TIMEOUT, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
}

/// How shoppers and orders behave; each flag left out keeps the default in
/// `traffic::Behaviour` / `lifecycle::LifecycleRates` (shown in `--help`).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Shoppers and orders")]
pub struct ShopArgs {
    /// Chance that a viewed product is added to the cart [default: 0.026].
    #[arg(long, env = envvar::VIEW_TO_CART_RATIO, value_parser = parse_ratio)]
    pub view_to_cart_ratio: Option<f64>,
    /// Share of carts left without checking out [default: 0.7].
    #[arg(long, env = envvar::CART_ABANDONMENT_RATIO, value_parser = parse_ratio)]
    pub cart_abandonment_ratio: Option<f64>,
    /// Share of orders canceled before they complete [default: 0.03].
    #[arg(long, env = envvar::CANCEL_RATIO, value_parser = parse_ratio)]
    pub cancel_ratio: Option<f64>,
    /// Share of completed orders later refunded [default: 0.17].
    #[arg(long, env = envvar::REFUND_RATIO, value_parser = parse_ratio)]
    pub refund_ratio: Option<f64>,
    /// Mean time from placing an order to its cancellation [default: 5m].
    #[arg(long, env = envvar::CANCEL_AFTER, value_parser = humantime::parse_duration)]
    pub cancel_after: Option<Duration>,
    /// Mean time from placing an order to its completion [default: 15m].
    #[arg(long, env = envvar::COMPLETE_AFTER, value_parser = humantime::parse_duration)]
    pub complete_after: Option<Duration>,
    /// Mean time from completion to refund [default: 30m].
    #[arg(long, env = envvar::REFUND_AFTER, value_parser = humantime::parse_duration)]
    pub refund_after: Option<Duration>,
    /// Share of sessions whose events arrive late [default: 0.02].
    #[arg(long, env = envvar::LATE_RATIO, value_parser = parse_ratio)]
    pub late_ratio: Option<f64>,
    /// The most a late event lags behind its event time [default: 2h].
    #[arg(long, env = envvar::LATE_BY, value_parser = humantime::parse_duration)]
    pub late_by: Option<Duration>,
}

impl ShopArgs {
    /// The defaults with the flags given applied.
    pub fn behaviour(&self) -> Behaviour {
        let mut b = Behaviour::default();
        let l = &mut b.lifecycle;
        let set = |to: &mut f64, v: Option<f64>| *to = v.unwrap_or(*to);
        set(&mut b.cart_probability, self.view_to_cart_ratio);
        set(
            &mut b.purchase_probability,
            self.cart_abandonment_ratio.map(|a| 1.0 - a),
        );
        set(&mut l.cancel_ratio, self.cancel_ratio);
        set(&mut l.refund_ratio, self.refund_ratio);
        set(&mut b.late_ratio, self.late_ratio);
        let set = |to: &mut Duration, v: Option<Duration>| *to = v.unwrap_or(*to);
        set(&mut l.cancel_after, self.cancel_after);
        set(&mut l.complete_after, self.complete_after);
        set(&mut l.refund_after, self.refund_after);
        set(&mut b.late_by, self.late_by);
        b
    }
}

impl Cli {
    pub fn instance(&self) -> String {
        self.instance.clone().unwrap_or_else(host_name)
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "generator".to_string())
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!(
            "must be 0 (unlimited) or a positive number of events per second, got {s}"
        ))
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("must be a positive number, got {s}")),
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be between 0 and 1, got {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The defaults `--help` names are the ones `Behaviour::default` uses.
    #[test]
    fn the_shop_flags_help_states_the_real_defaults() {
        let d = Behaviour::default();
        let l = &d.lifecycle;
        let ratio = |v: f64| format!("{v}");
        let time = |v: Duration| humantime::format_duration(v).to_string();
        let cases = [
            ("view-to-cart-ratio", ratio(d.cart_probability)),
            ("cart-abandonment-ratio", ratio(1.0 - d.purchase_probability)),
            ("cancel-ratio", ratio(l.cancel_ratio)),
            ("refund-ratio", ratio(l.refund_ratio)),
            ("cancel-after", time(l.cancel_after)),
            ("complete-after", time(l.complete_after)),
            ("refund-after", time(l.refund_after)),
            ("late-ratio", ratio(d.late_ratio)),
            ("late-by", time(d.late_by)),
        ];
        let cmd = Cli::command();
        for (flag, default) in cases {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .expect(flag);
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                help.contains(&format!("[default: {default}]")),
                "--{flag}: {help}"
            );
        }
    }

    #[test]
    fn flags_parse_and_bad_values_are_usage_errors() {
        let ok = Cli::try_parse_from([
            "g",
            "--rate",
            "0",
            "--total",
            "5",
            "--duration",
            "1m",
            "--invalid-ratio",
            "0.02",
            "--instance",
            "a",
        ])
        .unwrap();
        assert_eq!(ok.rate, 0.0);
        assert_eq!(ok.duration, Some(Duration::from_secs(60)));
        assert_eq!(ok.instance(), "a");
        let d = Behaviour::default();
        let b = ok.shop.behaviour();
        assert_eq!(
            (b.cart_probability, b.lifecycle.clone(), b.late_by),
            (d.cart_probability, d.lifecycle.clone(), d.late_by),
            "no flag: the defaults"
        );
        let shop = Cli::try_parse_from([
            "g",
            "--cart-abandonment-ratio",
            "0.6",
            "--cancel-ratio",
            "0.1",
            "--complete-after",
            "40s",
            "--late-by",
            "10m",
        ])
        .unwrap()
        .shop
        .behaviour();
        assert!((shop.purchase_probability - 0.4).abs() < 1e-9);
        assert_eq!(shop.lifecycle.cancel_ratio, 0.1);
        assert_eq!(shop.lifecycle.complete_after, Duration::from_secs(40));
        assert_eq!(shop.lifecycle.refund_after, d.lifecycle.refund_after);
        assert_eq!(shop.late_by, Duration::from_secs(600));

        let cases: &[(&[&str], &str)] = &[
            (&["g", "--rate=-5"], "positive number"),
            (&["g", "--invalid-ratio", "1.5"], "between 0 and 1"),
            (&["g", "--refund-ratio=-0.1"], "between 0 and 1"),
            (&["g", "--cancel-after", "soon"], "--cancel-after"),
            (&["g", "--duration", "soon"], "--duration"),
            (&["g", "--customers", "0"], "--customers"),
            (
                &["g", "--rate", "10", "--profile", "p.yaml"],
                "cannot be used with",
            ),
            (&["g", "--no-such-flag"], "unexpected argument"),
        ];
        for (args, needle) in cases {
            let err = Cli::try_parse_from(*args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
