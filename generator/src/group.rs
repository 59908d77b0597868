//! Pacing as one of a group of pods. Each pod paces its own share of the
//! profile, and twice a second it reads from the topic how many messages the
//! whole group delivered since the profile started; the shortfall (a pod that
//! started late, crashed or was restarted) is shared out by
//! [`pacing::group_extra`]. So the total follows the profile's integral
//! however the pods come and go, with no coordinator.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::BaseConsumer;
use shopstream_common::kafka::{self, KafkaArgs};
use shopstream_common::produced;
use shopstream_common::shutdown::StopFlag;

use crate::pacing::{self, GroupReading, ProfileClock};
use crate::producer::{ProducerError, ShopProducer};

const ROUND: Duration = Duration::from_millis(500);
/// Log a failing read once, then every this many rounds.
const LOG_EVERY: u64 = 20;

/// Events this pod sends beyond its share, as last decided.
#[derive(Clone, Default)]
pub struct Extra(Arc<AtomicI64>);

impl Extra {
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct GroupPacer {
    consumer: BaseConsumer,
    topic: String,
    partitions: usize,
    since_ms: i64,
    timeout: Duration,
}

impl GroupPacer {
    pub fn connect(
        kafka: &KafkaArgs,
        topic: &str,
        partitions: usize,
        since: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Self, ProducerError> {
        let consumer: BaseConsumer =
            kafka
                .client_config()?
                .create()
                .map_err(|source| kafka::KafkaError::Client {
                    brokers: kafka.brokers.clone(),
                    source,
                })?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            partitions,
            since_ms: since.timestamp_millis(),
            timeout,
        })
    }

    /// Correct `extra` every round until `stop`. The reads block, so this
    /// runs on its own thread.
    pub fn run(
        self,
        clock: ProfileClock,
        started: Instant,
        producer: Arc<ShopProducer>,
        extra: Extra,
        stop: StopFlag,
    ) {
        let mut failures = 0_u64;
        while !stop.is_set() {
            let round = Instant::now();
            // Acknowledged before the topic is read: a message acked is in the
            // topic, so none counts as this pod's and missing at once.
            let acked = producer.context().acked();
            match produced::produced_since(
                &self.consumer,
                &self.topic,
                self.partitions,
                self.since_ms,
                self.timeout,
            ) {
                Ok(produced) => {
                    let t = started.elapsed().as_secs_f64();
                    let reading = GroupReading {
                        group_due: clock.group_due(t),
                        produced,
                        pods: clock.group_pods(t),
                        acked,
                        own_due: clock.own_due(t),
                        limit: clock.catch_up_limit(),
                    };
                    let e = pacing::group_extra(&reading);
                    extra.0.store(e, Ordering::Relaxed);
                    tracing::debug!(?reading, extra = e, "group pacing");
                    failures = 0;
                }
                Err(error) => {
                    // Keep the last correction: the pod's own share still runs.
                    if failures.is_multiple_of(LOG_EVERY) {
                        tracing::warn!(%error, "cannot read the topic's offsets; pacing this pod's share only");
                    }
                    failures += 1;
                }
            }
            std::thread::sleep(ROUND.saturating_sub(round.elapsed()));
        }
    }
}
