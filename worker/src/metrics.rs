//! Prometheus metrics of the worker.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use shopstream_model::ErrorKind;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records_consumed: IntCounter,
    pub rows_loaded: IntCounterVec,
    pub duplicates: IntCounter,
    pub dead_letters: IntCounterVec,
    pub batches: IntCounter,
    pub batch_records: Histogram,
    pub batch_seconds: Histogram,
    pub commit_latency: Histogram,
    pub partition_lag: IntGaugeVec,
    pub lag_total: IntGauge,
    pub assigned_partitions: IntGauge,
    pub rebalances: IntCounter,
    pub fenced: IntCounter,
    pub db_errors: IntCounter,
    pub db_reconnects: IntCounter,
    pub kafka_commit_failures: IntCounter,
    pub offsets_reset: IntCounter,
    pub isolations: IntCounter,
    pub waits_paused: IntCounter,
    pub slice_rows_folded: IntCounter,
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric")
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric")
}

impl Metrics {
    /// Every metric and its registration: long, but only a list.
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::new(),
            records_consumed: counter(
                "shopstream_worker_records_consumed_total",
                "Kafka records consumed",
            ),
            rows_loaded: IntCounterVec::new(
                Opts::new(
                    "shopstream_worker_rows_loaded_total",
                    "Fact rows committed to the warehouse, by table",
                ),
                &["table"],
            )
            .expect("valid metric"),
            duplicates: counter(
                "shopstream_worker_duplicate_rows_total",
                "Fact rows skipped because they were already loaded (duplicates on the wire)",
            ),
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "shopstream_worker_dead_letters_total",
                    "Invalid records stored in dead_letter, by kind",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            batches: counter("shopstream_worker_batches_total", "Micro-batches committed"),
            batch_records: histogram(
                "shopstream_worker_batch_records",
                "Records per committed micro-batch",
                prometheus::exponential_buckets(1.0, 4.0, 8).expect("valid buckets"),
            ),
            batch_seconds: histogram(
                "shopstream_worker_batch_duration_seconds",
                "Time to load and commit one micro-batch",
                prometheus::exponential_buckets(0.002, 2.0, 13).expect("valid buckets"),
            ),
            commit_latency: histogram(
                "shopstream_worker_event_to_commit_seconds",
                "From an event's event_time to the commit of its rows",
                vec![
                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            ),
            partition_lag: IntGaugeVec::new(
                Opts::new(
                    "shopstream_worker_partition_lag",
                    "High watermark minus the next offset to load",
                ),
                &["partition"],
            )
            .expect("valid metric"),
            lag_total: gauge(
                "shopstream_worker_lag",
                "Sum of the lag of the partitions this worker holds",
            ),
            assigned_partitions: gauge(
                "shopstream_worker_assigned_partitions",
                "Partitions assigned to this worker",
            ),
            rebalances: counter(
                "shopstream_worker_rebalances_total",
                "Partition assignments and revocations",
            ),
            fenced: counter(
                "shopstream_worker_fenced_batches_total",
                "Batches rolled back because another worker had moved the offsets",
            ),
            db_errors: counter("shopstream_worker_db_errors_total", "Failed warehouse operations"),
            db_reconnects: counter("shopstream_worker_db_reconnects_total", "Warehouse reconnections"),
            kafka_commit_failures: counter(
                "shopstream_worker_kafka_commit_failures_total",
                "Offset commits to the Kafka group that failed (sent again)",
            ),
            offsets_reset: counter(
                "shopstream_worker_offsets_reset_total",
                "Partitions whose stored offset was beyond the topic's end (topic recreated) and restarted from its start",
            ),
            isolations: counter(
                "shopstream_worker_batch_isolations_total",
                "Batches the warehouse rejected, split to find and dead-letter the offending records",
            ),
            waits_paused: counter(
                "shopstream_worker_paused_waits_total",
                "Times the consumer paused its partitions and kept polling while the warehouse was busy",
            ),
            slice_rows_folded: counter(
                "shopstream_worker_slice_rows_folded_total",
                "Queued filter-slice rows this worker folded into the rollups",
            ),
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.records_consumed.clone()),
            Box::new(m.rows_loaded.clone()),
            Box::new(m.duplicates.clone()),
            Box::new(m.dead_letters.clone()),
            Box::new(m.batches.clone()),
            Box::new(m.batch_records.clone()),
            Box::new(m.batch_seconds.clone()),
            Box::new(m.commit_latency.clone()),
            Box::new(m.partition_lag.clone()),
            Box::new(m.lag_total.clone()),
            Box::new(m.assigned_partitions.clone()),
            Box::new(m.rebalances.clone()),
            Box::new(m.fenced.clone()),
            Box::new(m.db_errors.clone()),
            Box::new(m.db_reconnects.clone()),
            Box::new(m.kafka_commit_failures.clone()),
            Box::new(m.offsets_reset.clone()),
            Box::new(m.isolations.clone()),
            Box::new(m.waits_paused.clone()),
            Box::new(m.slice_rows_folded.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        for table in ["fact_sales", "fact_activity"] {
            m.rows_loaded.with_label_values(&[table]);
        }
        for kind in ErrorKind::ALL {
            m.dead_letters.with_label_values(&[kind.as_str()]);
        }
        m
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
