//! The Kafka side: a throughput-tuned idempotent producer whose delivery
//! reports feed the audit. A message counts only once the broker acked it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings;
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
    /// Sent but never answered: the broker may or may not have stored them.
    in_doubt: Mutex<Tally>,
    acked: AtomicU64,
    failures: AtomicU64,
    metrics: Metrics,
}

impl DeliveryContext {
    fn new(metrics: Metrics) -> Self {
        Self {
            tally: Mutex::new(Tally::default()),
            in_doubt: Mutex::new(Tally::default()),
            acked: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            metrics,
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn in_doubt(&self) -> Tally {
        self.in_doubt.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Messages the broker acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn record_delivered(&self, contribution: &Contribution) {
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(contribution);
        self.acked.fetch_add(1, Ordering::Relaxed);
        self.metrics.delivered(contribution);
    }

    fn record_in_doubt(&self, reason: &dyn std::fmt::Display, contribution: &Contribution) {
        let mut in_doubt = self.in_doubt.lock().unwrap_or_else(|p| p.into_inner());
        in_doubt.add(contribution);
        self.metrics.delivery_in_doubt.inc();
        if in_doubt.messages() <= LOGGED_FAILURES {
            tracing::warn!(error = %reason, in_doubt = in_doubt.messages(), "message sent but never acknowledged; the broker may have stored it");
        }
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
            Ok(_) => self.record_delivered(&contribution),
            // SAFETY: the message of this delivery report, alive for the call.
            Err((err, msg)) => match outcome(unsafe { bindings::rd_kafka_message_status(msg.ptr()) }) {
                Delivery::Stored => self.record_delivered(&contribution),
                Delivery::InDoubt => self.record_in_doubt(err, &contribution),
                Delivery::Lost => self.record_failure(err),
            },
        }
    }
}

/// What a failed delivery report means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Stored,
    /// Sent, but no answer came (purged in flight at shutdown, or timed out):
    /// counted apart, so an audit can accept it present or absent.
    InDoubt,
    /// Never sent (purged from the queue) or refused: not in the topic.
    Lost,
}

/// librdkafka tracks whether a message may have reached the broker.
fn outcome(status: bindings::rd_kafka_msg_status_t) -> Delivery {
    match status {
        bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_PERSISTED => Delivery::Stored,
        bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED => Delivery::InDoubt,
        bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED => Delivery::Lost,
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
    /// unacknowledged then is purged: queued messages are reported lost,
    /// messages in flight in doubt (see [`Delivery`]).
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

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::rd_kafka_msg_status_t as S;

    #[test]
    fn a_failed_report_is_lost_only_when_the_message_never_left() {
        let cases = [
            (S::RD_KAFKA_MSG_STATUS_NOT_PERSISTED, Delivery::Lost),
            (S::RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED, Delivery::InDoubt),
            (S::RD_KAFKA_MSG_STATUS_PERSISTED, Delivery::Stored),
        ];
        for (status, expected) in cases {
            assert_eq!(outcome(status), expected, "{status:?}");
        }
    }
}
