//! Prometheus metrics of the generator.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use shopstream_model::EventType;

use crate::invalid::InvalidKind;
use crate::summary::Contribution;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    events: IntCounterVec,
    invalid: IntCounterVec,
    pub delivery_errors: IntCounter,
    pub delivery_in_doubt: IntCounter,
    pub sent: IntCounter,
    pub target_rate: Gauge,
    pub achieved_rate: Gauge,
    pub stage: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new(
                "shopstream_generator_events_total",
                "Valid events delivered to Kafka, by type",
            ),
            &["event_type"],
        )
        .expect("valid metric");
        let invalid = IntCounterVec::new(
            Opts::new(
                "shopstream_generator_invalid_total",
                "Deliberately invalid messages delivered, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let delivery_errors = IntCounter::new(
            "shopstream_generator_delivery_errors_total",
            "Messages that permanently failed delivery",
        )
        .expect("valid metric");
        let delivery_in_doubt = IntCounter::new(
            "shopstream_generator_delivery_in_doubt_total",
            "Messages sent but never acknowledged (the broker may have stored them)",
        )
        .expect("valid metric");
        let sent = IntCounter::new(
            "shopstream_generator_sent_total",
            "Messages handed to the Kafka producer",
        )
        .expect("valid metric");
        let target_rate = Gauge::new(
            "shopstream_generator_target_rate",
            "Target rate, events per second (0 = unlimited)",
        )
        .expect("valid metric");
        let achieved_rate = Gauge::new(
            "shopstream_generator_achieved_rate",
            "Delivered messages per second over the last progress interval",
        )
        .expect("valid metric");
        let stage = IntGauge::new(
            "shopstream_generator_profile_stage",
            "Current load profile stage (-1 without a profile)",
        )
        .expect("valid metric");
        for c in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(invalid.clone()),
            Box::new(delivery_errors.clone()),
            Box::new(delivery_in_doubt.clone()),
            Box::new(sent.clone()),
            Box::new(target_rate.clone()),
            Box::new(achieved_rate.clone()),
            Box::new(stage.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Export zeros for every label up front, so dashboards see the series.
        for t in EventType::ALL {
            events.with_label_values(&[t.as_str()]);
        }
        for k in InvalidKind::ALL {
            invalid.with_label_values(&[k.as_str()]);
        }
        stage.set(-1);
        Self {
            registry,
            events,
            invalid,
            delivery_errors,
            delivery_in_doubt,
            sent,
            target_rate,
            achieved_rate,
            stage,
        }
    }

    pub fn delivered(&self, c: &Contribution) {
        match c {
            Contribution::Event { event_type, .. } => {
                self.events.with_label_values(&[event_type.as_str()]).inc()
            }
            Contribution::Invalid(kind) => self.invalid.with_label_values(&[kind.as_str()]).inc(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
