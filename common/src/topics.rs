//! Topic administration through the standard Kafka admin API: create a topic,
//! grow its partitions, never shrink it. Used by the operator and by tests.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use rdkafka::client::DefaultClientContext;

use crate::kafka::{KafkaArgs, KafkaError};

/// What `ensure_topic` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    Created {
        partitions: i32,
    },
    Grown {
        from: i32,
        to: i32,
    },
    Unchanged {
        partitions: i32,
    },
    /// Kafka cannot remove partitions; the topic keeps `current`.
    CannotShrink {
        current: i32,
        requested: i32,
    },
    /// The brokers refused to add partitions (e.g. ACLs or a policy deny CreatePartitions).
    CannotGrow {
        current: i32,
        requested: i32,
        reason: String,
    },
}

impl TopicChange {
    /// What ensuring `topic` did, in a sentence (the local runtime prints it,
    /// the operator's Events carry it).
    pub fn describe(&self, topic: &str) -> String {
        match self {
            TopicChange::Created { partitions } => {
                format!("created topic {topic} with {partitions} partitions")
            }
            TopicChange::Unchanged { partitions } => {
                format!("topic {topic} exists with {partitions} partitions")
            }
            TopicChange::Grown { from, to } => format!("grew topic {topic} from {from} to {to} partitions"),
            TopicChange::CannotShrink { current, requested } => format!(
                "spec asks for {requested} partitions but topic {topic} has {current}; Kafka cannot remove partitions"
            ),
            TopicChange::CannotGrow {
                current,
                requested,
                reason,
            } => format!("could not grow topic {topic} from {current} to {requested} partitions: {reason}"),
        }
    }

    /// Partitions the topic has now.
    pub fn partitions(&self) -> i32 {
        match self {
            TopicChange::Created { partitions } | TopicChange::Unchanged { partitions } => *partitions,
            TopicChange::Grown { to, .. } => *to,
            TopicChange::CannotShrink { current, .. } | TopicChange::CannotGrow { current, .. } => *current,
        }
    }
}

/// The admin client and what a metadata lookup needs, shared with the
/// blocking pool.
struct Client {
    admin: AdminClient<DefaultClientContext>,
    /// Kept to diagnose a failed request (see `kafka::unreachable`).
    config: ClientConfig,
    brokers: String,
    timeout: Duration,
}

impl Client {
    fn lookup(&self, topic: &str) -> Result<Option<i32>, KafkaError> {
        match crate::kafka::topic_partitions(
            self.admin.inner(),
            &self.config,
            &self.brokers,
            topic,
            self.timeout,
        ) {
            Ok(n) => Ok(Some(n as i32)),
            Err(KafkaError::NoSuchTopic { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub struct TopicAdmin {
    client: Arc<Client>,
}

impl TopicAdmin {
    pub fn new(kafka: &KafkaArgs, timeout: Duration) -> Result<Self, KafkaError> {
        Self::from_config(&kafka.client_config()?, &kafka.brokers, timeout)
    }

    /// From a ready client configuration (bootstrap servers and security set).
    pub fn from_config(config: &ClientConfig, brokers: &str, timeout: Duration) -> Result<Self, KafkaError> {
        let admin = config.create().map_err(|source| KafkaError::Client {
            brokers: brokers.to_string(),
            source,
        })?;
        Ok(Self {
            client: Arc::new(Client {
                admin,
                config: config.clone(),
                brokers: brokers.to_string(),
                timeout,
            }),
        })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .operation_timeout(Some(self.client.timeout))
            .request_timeout(Some(self.client.timeout))
    }

    /// Current partition count, or `None` when the topic does not exist.
    /// Blocks on a metadata request (see [`TopicAdmin::partitions_async`]).
    pub fn partitions(&self, topic: &str) -> Result<Option<i32>, KafkaError> {
        self.client.lookup(topic)
    }

    /// [`TopicAdmin::partitions`] on the blocking pool.
    pub async fn partitions_async(&self, topic: &str) -> Result<Option<i32>, KafkaError> {
        let (client, topic) = (self.client.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || client.lookup(&topic))
            .await
            .map_err(|e| KafkaError::Settings(format!("metadata lookup failed: {e}")))?
    }

    /// Make `topic` exist with at least `partitions` partitions.
    pub async fn ensure(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<TopicChange, KafkaError> {
        // On the blocking pool: an unreachable broker must not stall the runtime
        // (the operator's lease renewal runs on it).
        match self.partitions_async(topic).await? {
            None => self.create(topic, partitions, replication).await,
            Some(current) if current == partitions => Ok(TopicChange::Unchanged { partitions }),
            Some(current) if current > partitions => Ok(TopicChange::CannotShrink {
                current,
                requested: partitions,
            }),
            Some(current) => {
                let refused = |reason: String| TopicChange::CannotGrow {
                    current,
                    requested: partitions,
                    reason,
                };
                let results = match self
                    .client
                    .admin
                    .create_partitions(&[NewPartitions::new(topic, partitions as usize)], &self.options())
                    .await
                {
                    Ok(r) => r,
                    Err(e) => return Ok(refused(e.to_string())),
                };
                for r in results {
                    if let Err((_, code)) = r {
                        return Ok(refused(code.to_string()));
                    }
                }
                self.settled(topic, partitions).await?;
                Ok(TopicChange::Grown {
                    from: current,
                    to: partitions,
                })
            }
        }
    }

    async fn create(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<TopicChange, KafkaError> {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        let results = self
            .client
            .admin
            .create_topics(&[new], &self.options())
            .await
            .map_err(|e| self.topic_error(topic, e.to_string()))?;
        for r in results {
            match r {
                Ok(_) => {}
                // Someone else (another reconcile, a test) won the race: fine.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    return Ok(TopicChange::Unchanged {
                        partitions: self.partitions_async(topic).await?.unwrap_or(partitions),
                    });
                }
                Err((_, code)) => return Err(self.topic_error(topic, format!("creating it failed: {code}"))),
            }
        }
        self.settled(topic, partitions).await?;
        Ok(TopicChange::Created { partitions })
    }

    /// Wait until the brokers' metadata shows `topic` with `partitions`
    /// partitions and their leaders: it is updated asynchronously after a
    /// create or a grow, and until then clients get errors such as
    /// NotLeaderForPartition (seen on a fresh broker right after creating).
    async fn settled(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        let deadline = tokio::time::Instant::now() + self.client.timeout;
        loop {
            let seen = self.partitions_async(topic).await;
            match seen {
                Ok(Some(n)) if n >= partitions => return Ok(()),
                _ if tokio::time::Instant::now() >= deadline => {
                    let detail = match seen {
                        Err(e) => format!("its metadata is not ready: {e}"),
                        Ok(n) => format!("its metadata shows {n:?} partitions, not {partitions}"),
                    };
                    return Err(self.topic_error(topic, detail));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Delete `topic`; a topic that is already gone is not an error.
    pub async fn delete(&self, topic: &str) -> Result<(), KafkaError> {
        let results = self
            .client
            .admin
            .delete_topics(&[topic], &self.options())
            .await
            .map_err(|e| self.topic_error(topic, e.to_string()))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((_, code)) => return Err(self.topic_error(topic, format!("deleting it failed: {code}"))),
            }
        }
        Ok(())
    }

    fn topic_error(&self, topic: &str, detail: String) -> KafkaError {
        KafkaError::TopicError {
            topic: topic.to_string(),
            detail,
        }
    }
}
