//! Prometheus metrics of the operator.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::scaler::{Decision, Direction};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    decisions: IntCounterVec,
    lag: IntGaugeVec,
    desired_workers: IntGaugeVec,
    desired_generators: IntGaugeVec,
    target_rate: GaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let pipeline = &["namespace", "pipeline"];
        let m = Self {
            registry: Registry::new(),
            reconciles: IntCounterVec::new(
                Opts::new("shopstream_operator_reconciles_total", "Reconciles, by result"),
                &["result"],
            )
            .expect("valid metric"),
            failures: IntCounterVec::new(
                Opts::new(
                    "shopstream_operator_reconcile_failures_total",
                    "Failed reconciles, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "shopstream_operator_reconcile_duration_seconds",
                    "Time per reconcile",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 12).expect("valid buckets")),
                &["result"],
            )
            .expect("valid metric"),
            decisions: IntCounterVec::new(
                Opts::new(
                    "shopstream_operator_scaling_decisions_total",
                    "Worker autoscaler decisions, by direction",
                ),
                &["direction"],
            )
            .expect("valid metric"),
            lag: IntGaugeVec::new(
                Opts::new("shopstream_operator_pipeline_lag", "Consumer lag per pipeline"),
                pipeline,
            )
            .expect("valid metric"),
            desired_workers: IntGaugeVec::new(
                Opts::new(
                    "shopstream_operator_desired_workers",
                    "Desired worker replicas per pipeline",
                ),
                pipeline,
            )
            .expect("valid metric"),
            desired_generators: IntGaugeVec::new(
                Opts::new(
                    "shopstream_operator_desired_generators",
                    "Desired generator replicas per pipeline",
                ),
                pipeline,
            )
            .expect("valid metric"),
            target_rate: GaugeVec::new(
                Opts::new(
                    "shopstream_operator_generator_target_rate",
                    "Target events/s per pipeline",
                ),
                pipeline,
            )
            .expect("valid metric"),
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.reconciles.clone()),
            Box::new(m.failures.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.decisions.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.desired_workers.clone()),
            Box::new(m.desired_generators.clone()),
            Box::new(m.target_rate.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    pub fn reconciled(&self, failure: Option<&str>, took: Duration) {
        let result = if failure.is_some() { "error" } else { "ok" };
        self.reconciles.with_label_values(&[result]).inc();
        self.duration
            .with_label_values(&[result])
            .observe(took.as_secs_f64());
        if let Some(reason) = failure {
            self.failures.with_label_values(&[reason]).inc();
        }
    }

    pub fn decided(&self, d: &Decision) {
        let direction = match d.direction {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Hold => "hold",
        };
        self.decisions.with_label_values(&[direction]).inc();
    }

    pub fn observe_pipeline(&self, ns: &str, name: &str, lag: u64, workers: i32, generators: i32, rate: f64) {
        let l = [ns, name];
        self.lag.with_label_values(&l).set(lag as i64);
        self.desired_workers.with_label_values(&l).set(i64::from(workers));
        self.desired_generators
            .with_label_values(&l)
            .set(i64::from(generators));
        self.target_rate.with_label_values(&l).set(rate);
    }

    pub fn forget_pipeline(&self, ns: &str, name: &str) {
        let l = [ns, name];
        let _ = self.lag.remove_label_values(&l);
        let _ = self.desired_workers.remove_label_values(&l);
        let _ = self.desired_generators.remove_label_values(&l);
        let _ = self.target_rate.remove_label_values(&l);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
