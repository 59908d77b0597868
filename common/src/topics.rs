//! Topic administration through the standard Kafka admin API: create a topic,
//! grow its partitions, never shrink it. Used by the operator and by tests.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

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
}

pub struct TopicAdmin {
    admin: AdminClient<DefaultClientContext>,
    brokers: String,
    timeout: Duration,
}

impl TopicAdmin {
    pub fn new(kafka: &KafkaArgs, timeout: Duration) -> Result<Self, KafkaError> {
        let admin = kafka
            .client_config()?
            .create()
            .map_err(|source| KafkaError::Client {
                brokers: kafka.brokers.clone(),
                source,
            })?;
        Ok(Self {
            admin,
            brokers: kafka.brokers.clone(),
            timeout,
        })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout))
    }

    /// Current partition count, or `None` when the topic does not exist.
    pub fn partitions(&self, topic: &str) -> Result<Option<i32>, KafkaError> {
        match crate::kafka::topic_partitions(self.admin.inner(), &self.brokers, topic, self.timeout) {
            Ok(n) => Ok(Some(n as i32)),
            Err(KafkaError::NoSuchTopic { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Make `topic` exist with at least `partitions` partitions.
    pub async fn ensure(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<TopicChange, KafkaError> {
        match self.partitions(topic)? {
            None => self.create(topic, partitions, replication).await,
            Some(current) if current == partitions => Ok(TopicChange::Unchanged { partitions }),
            Some(current) if current > partitions => Ok(TopicChange::CannotShrink {
                current,
                requested: partitions,
            }),
            Some(current) => {
                let results = self
                    .admin
                    .create_partitions(&[NewPartitions::new(topic, partitions as usize)], &self.options())
                    .await
                    .map_err(|e| self.topic_error(topic, e.to_string()))?;
                for r in results {
                    if let Err((_, code)) = r {
                        return Err(self.topic_error(topic, format!("adding partitions failed: {code}")));
                    }
                }
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
                        partitions: self.partitions(topic)?.unwrap_or(partitions),
                    });
                }
                Err((_, code)) => return Err(self.topic_error(topic, format!("creating it failed: {code}"))),
            }
        }
        Ok(TopicChange::Created { partitions })
    }

    /// Delete `topic`; a topic that is already gone is not an error.
    pub async fn delete(&self, topic: &str) -> Result<(), KafkaError> {
        let results = self
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
