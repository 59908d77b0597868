//! The Kafka side: a throughput-tuned idempotent producer whose delivery
//! reports feed the audit. A message counts only once the broker acked it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use shopstream_common::kafka::{self, KafkaArgs};
use thiserror::Error;

use crate::metrics::Metrics;
use crate::summary::{Contribution, Tally};

/// Log at most this many individual delivery failures; the rest are counted.
const LOGGED_FAILURES: u64 = 20;

#[derive(Debug, Error)]
pub enum ProducerError {
    #[error(transparent)]
    Setup(#[from] kafka::KafkaError),
    #[error("Kafka rejected a message for topic `{topic}`: {source}")]
    Send { topic: String, source: KafkaError },
}

pub struct DeliveryContext {
    tally: Mutex<Tally>,
    failures: AtomicU64,
    metrics: Metrics,
}

impl DeliveryContext {
    fn new(metrics: Metrics) -> Self {
        Self {
            tally: Mutex::new(Tally::default()),
            failures: AtomicU64::new(0),
            metrics,
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn record_failure(&self, reason: &dyn std::fmt::Display) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.delivery_errors.inc();
        if n <= LOGGED_FAILURES {
            tracing::error!(error = %reason, failures = n, "message delivery failed permanently");
        }
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        kafka::log_client_error(&error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Contribution>;

    fn delivery(&self, result: &DeliveryResult<'_>, contribution: Box<Contribution>) {
        match result {
            Ok(_) => {
                self.tally
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(&contribution);
                self.metrics.delivered(&contribution);
            }
            Err((err, _)) => self.record_failure(err),
        }
    }
}

pub struct ShopProducer {
    inner: ThreadedProducer<DeliveryContext>,
    topic: String,
}

/// Producer settings for high throughput with no loss or duplication on retry.
pub fn producer_config(
    kafka: &KafkaArgs,
    delivery_timeout: Duration,
) -> Result<rdkafka::ClientConfig, kafka::KafkaError> {
    let mut cfg = kafka.client_config()?;
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        // Java-compatible key hashing, so other producers agree on partitions.
        .set("partitioner", "murmur2_random")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", delivery_timeout.as_millis().to_string());
    Ok(cfg)
}

impl ShopProducer {
    /// Create the producer and check the brokers and topic are there, so a
    /// wrong address fails fast with a clear message instead of hanging.
    pub fn connect(
        kafka: &KafkaArgs,
        topic: &str,
        delivery_timeout: Duration,
        connect_timeout: Duration,
        metrics: Metrics,
    ) -> Result<(Self, usize), ProducerError> {
        let config = producer_config(kafka, delivery_timeout)?;
        let inner: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext::new(metrics))
            .map_err(|source| kafka::KafkaError::Client {
                brokers: kafka.brokers.clone(),
                source,
            })?;
        let partitions =
            kafka::topic_partitions(inner.client(), &config, &kafka.brokers, topic, connect_timeout)?;
        Ok((
            Self {
                inner,
                topic: topic.to_string(),
            },
            partitions,
        ))
    }

    pub fn context(&self) -> &DeliveryContext {
        self.inner.context()
    }

    /// Enqueue one message; waits while the local queue is full. An error
    /// means the message was refused outright (it is counted as a failure).
    pub fn send(&self, key: &str, payload: &[u8], contribution: Contribution) -> Result<(), ProducerError> {
        let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new(contribution))
            .key(key)
            .payload(payload);
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The background thread drains delivery reports; give it a moment.
                    record = back;
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err((source, _)) => {
                    self.context().record_failure(&source);
                    return Err(ProducerError::Send {
                        topic: self.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Wait up to `timeout` for outstanding deliveries. Whatever is still
    /// unacknowledged then is purged, which reports it as a delivery failure.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.inner.flush(timeout) {
            tracing::warn!(
                error = %e,
                in_flight = self.inner.in_flight_count(),
                "not every message was acknowledged in time; purging the rest"
            );
            self.inner.purge(PurgeConfig::default().queue().inflight());
            // Purged messages come back through the delivery callback as errors.
            let _ = self.inner.flush(Duration::from_secs(5));
        }
    }
}
