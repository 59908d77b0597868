//! What the operator asks of Kafka: ensure or delete a pipeline's topic, and
//! read the offsets the autoscaler needs (high watermarks and the workers'
//! committed group offsets). Behind a trait so the reconciler can be tested
//! against the mock API server without a broker; [`RdKafkaOps`] is the real one.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::Offset;
use shopstream_common::kafka::{self, KafkaError};
use shopstream_common::produced;
use shopstream_common::topics::{TopicAdmin, TopicChange};
use shopstream_model::kafka::{SaslMechanism, SecurityProtocol};
use shopstream_model::pipeline::KafkaSpec;

/// How to reach a pipeline's brokers, with credentials resolved from Secrets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KafkaAccess {
    pub bootstrap_servers: String,
    pub security_protocol: SecurityProtocol,
    /// Mechanism, username, password.
    pub sasl: Option<(SaslMechanism, String, String)>,
    /// PEM CA bundle.
    pub ca_pem: Option<String>,
}

// Hand-written: the password must never reach a log.
impl fmt::Debug for KafkaAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaAccess")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security_protocol", &self.security_protocol)
            .field(
                "sasl_user",
                &self.sasl.as_ref().map(|(m, u, _)| format!("{m}:{u}")),
            )
            .finish()
    }
}

/// The Secret values a Kafka spec refers to, as (Secret, key) names.
#[derive(Debug, PartialEq, Eq)]
pub struct SecretNeeds<'a> {
    /// SASL username and password: (Secret, username key, password key).
    pub credentials: Option<(&'a str, &'a str, &'a str)>,
    /// The PEM CA bundle, when TLS is on and names one.
    pub ca: Option<(&'a str, &'a str)>,
}

impl KafkaAccess {
    /// What must be read from Secrets (by whichever store the caller has)
    /// before [`KafkaAccess::from_spec`] can assemble the access.
    pub fn secrets_needed(k: &KafkaSpec) -> SecretNeeds<'_> {
        let credentials = match (&k.sasl, &k.credentials_secret_ref) {
            (Some(_), Some(c)) => Some((c.name.as_str(), c.username_key.as_str(), c.password_key.as_str())),
            _ => None,
        };
        let ca = k
            .tls
            .as_ref()
            .filter(|t| t.enabled)
            .and_then(|t| t.ca_secret_ref.as_ref())
            .map(|r| (r.name.as_str(), r.key.as_str()));
        SecretNeeds { credentials, ca }
    }

    /// Access for `k`, given the values [`KafkaAccess::secrets_needed`] named:
    /// `credentials` as (username, password).
    pub fn from_spec(k: &KafkaSpec, credentials: Option<(String, String)>, ca_pem: Option<String>) -> Self {
        let sasl = match (&k.sasl, credentials) {
            (Some(s), Some((user, password))) => Some((s.mechanism, user, password)),
            _ => None,
        };
        Self {
            bootstrap_servers: k.bootstrap_servers.clone(),
            security_protocol: k.security_protocol(),
            sasl,
            ca_pem,
        }
    }

    pub fn plaintext(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl: None,
            ca_pem: None,
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap_servers)
            .set("broker.address.family", "v4")
            .set("security.protocol", self.security_protocol.librdkafka());
        if let Some((mechanism, user, password)) = &self.sasl {
            cfg.set("sasl.mechanism", mechanism.as_str())
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        if let Some(pem) = &self.ca_pem {
            cfg.set("ssl.ca.pem", pem);
        }
        cfg
    }
}

/// Per-partition offsets of a topic and a consumer group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offsets {
    pub high_watermarks: Vec<i64>,
    /// Messages stamped since the moment asked for (a load profile's start).
    pub produced_since: Option<u64>,
    /// The group's committed offsets (`None`: nothing committed yet).
    pub committed: Vec<Option<i64>>,
}

impl Offsets {
    /// Lag per partition: high watermark minus committed offset, never negative.
    pub fn lag(&self) -> Vec<u64> {
        self.high_watermarks
            .iter()
            .zip(&self.committed)
            .map(|(high, committed)| (high - committed.unwrap_or(0)).max(0) as u64)
            .collect()
    }

    pub fn produced(&self) -> u64 {
        self.high_watermarks.iter().map(|h| (*h).max(0) as u64).sum()
    }

    pub fn committed_total(&self) -> u64 {
        self.committed.iter().map(|c| c.unwrap_or(0).max(0) as u64).sum()
    }
}

pub trait KafkaOps: Send + Sync + 'static {
    fn ensure_topic(
        &self,
        access: &KafkaAccess,
        topic: &str,
        partitions: i32,
        replication: Option<i32>,
    ) -> impl Future<Output = Result<TopicChange, KafkaError>> + Send;

    fn delete_topic(
        &self,
        access: &KafkaAccess,
        topic: &str,
    ) -> impl Future<Output = Result<(), KafkaError>> + Send;

    /// The topic's high watermarks and `group`'s committed offsets; with
    /// `since`, also how many messages were produced since then.
    fn offsets(
        &self,
        access: &KafkaAccess,
        topic: &str,
        group: &str,
        since: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Offsets, KafkaError>> + Send;

    /// Drop what is kept for a group (its offsets client) once its Pipeline is gone.
    fn forget(&self, _access: &KafkaAccess, _group: &str) {}
}

/// The real thing, over rdkafka. Admin clients are cached per cluster and
/// offsets clients per cluster and group: a reconcile reuses their
/// connections instead of opening new ones (librdkafka threads, TLS and SASL
/// handshakes) every time.
pub struct RdKafkaOps {
    timeout: Duration,
    admins: IdleCache<KafkaAccess, TopicAdmin>,
    consumers: IdleCache<(KafkaAccess, String), BaseConsumer>,
}

/// Clients not used for this long are closed (a deleted Pipeline's, or a
/// cluster no Pipeline names any more).
const CLIENT_IDLE: Duration = Duration::from_secs(600);

/// Shared clients by key, each closed once unused for [`CLIENT_IDLE`].
struct IdleCache<K, V> {
    entries: Mutex<HashMap<K, (Arc<V>, Instant)>>,
}

impl<K: std::hash::Hash + Eq + Clone, V> IdleCache<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get_or_try_insert<E>(&self, key: &K, make: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|k, (_, used)| k == key || now.duration_since(*used) < CLIENT_IDLE);
        if let Some((v, used)) = entries.get_mut(key) {
            *used = now;
            return Ok(v.clone());
        }
        let v = Arc::new(make()?);
        entries.insert(key.clone(), (v.clone(), now));
        Ok(v)
    }

    fn remove(&self, key: &K) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

impl RdKafkaOps {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            admins: IdleCache::new(),
            consumers: IdleCache::new(),
        }
    }

    fn consumer(
        &self,
        access: &KafkaAccess,
        group: &str,
        cfg: &ClientConfig,
    ) -> Result<Arc<BaseConsumer>, KafkaError> {
        self.consumers
            .get_or_try_insert(&(access.clone(), group.to_string()), || {
                cfg.create().map_err(|source| KafkaError::Client {
                    brokers: access.bootstrap_servers.clone(),
                    source,
                })
            })
    }

    fn admin(&self, access: &KafkaAccess) -> Result<Arc<TopicAdmin>, KafkaError> {
        self.admins.get_or_try_insert(access, || {
            TopicAdmin::from_config(&access.client_config(), &access.bootstrap_servers, self.timeout)
        })
    }
}

impl KafkaOps for RdKafkaOps {
    async fn ensure_topic(
        &self,
        access: &KafkaAccess,
        topic: &str,
        partitions: i32,
        replication: Option<i32>,
    ) -> Result<TopicChange, KafkaError> {
        let admin = self.admin(access)?;
        admin.ensure(topic, partitions, replication.unwrap_or(-1)).await
    }

    async fn delete_topic(&self, access: &KafkaAccess, topic: &str) -> Result<(), KafkaError> {
        self.admin(access)?.delete(topic).await
    }

    async fn offsets(
        &self,
        access: &KafkaAccess,
        topic: &str,
        group: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Offsets, KafkaError> {
        let mut cfg = access.client_config();
        cfg.set("group.id", group).set("enable.auto.commit", "false");
        let (topic, brokers, timeout) = (topic.to_string(), access.bootstrap_servers.clone(), self.timeout);
        // Transient answers (a fresh broker electing the leaders of the group
        // coordinator's topic: NotLeaderForPartition, CoordinatorNotAvailable)
        // are retried within the timeout; a refusal or a missing topic is not.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let consumer = self.consumer(access, group, &cfg)?;
            let (cfg, brokers, topic) = (cfg.clone(), brokers.clone(), topic.clone());
            let read = tokio::task::spawn_blocking(move || {
                read_offsets(&consumer, &cfg, &brokers, &topic, since, timeout)
            })
            .await
            .map_err(|e| KafkaError::Settings(e.to_string()))?;
            if matches!(read, Err(KafkaError::Unreachable { .. })) {
                // Start over with a new client next time, in case this one is wedged.
                self.forget(access, group);
            }
            match read {
                Err(e @ (KafkaError::Unreachable { .. } | KafkaError::TopicError { .. }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "reading offsets failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    fn forget(&self, access: &KafkaAccess, group: &str) {
        self.consumers.remove(&(access.clone(), group.to_string()));
    }
}

fn read_offsets(
    consumer: &BaseConsumer,
    cfg: &ClientConfig,
    brokers: &str,
    topic: &str,
    since: Option<DateTime<Utc>>,
    timeout: Duration,
) -> Result<Offsets, KafkaError> {
    let partitions = kafka::topic_partitions(consumer.client(), cfg, brokers, topic, timeout)?;
    let unreachable = |source| kafka::unreachable(cfg, brokers, timeout, source);
    let mut tpl = TopicPartitionList::new();
    let mut high_watermarks = Vec::with_capacity(partitions);
    for p in 0..partitions as i32 {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(unreachable)?;
        high_watermarks.push(high);
        tpl.add_partition(topic, p);
    }
    let produced_since = match since {
        Some(since) => {
            let firsts =
                produced::first_offsets_since(consumer, topic, partitions, since.timestamp_millis(), timeout)
                    .map_err(unreachable)?;
            Some(produced::count(&high_watermarks, &firsts))
        }
        None => None,
    };
    let committed_tpl = consumer.committed_offsets(tpl, timeout).map_err(unreachable)?;
    let committed = (0..partitions as i32)
        .map(
            |p| match committed_tpl.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect();
    Ok(Offsets {
        high_watermarks,
        produced_since,
        committed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_the_spec_and_the_secrets_it_names() {
        let spec = |v: serde_json::Value| -> KafkaSpec { serde_json::from_value(v).expect("valid spec") };
        let creds = || Some(("u".to_string(), "p".to_string()));
        let sasl = serde_json::json!({"mechanism": "SCRAM-SHA-512"});
        let ca = serde_json::json!({"enabled": true, "caSecretRef": {"name": "ca", "key": "ca.crt"}});
        // (spec, credentials read, CA read) -> (needed credentials, needed CA, protocol, mechanism)
        for (k, credentials, ca_pem, needed_creds, needed_ca, protocol, mechanism) in [
            (
                spec(serde_json::json!({"bootstrapServers": "b:9092"})),
                None,
                None,
                None,
                None,
                "plaintext",
                None,
            ),
            (
                spec(serde_json::json!({"bootstrapServers": "b:9092", "tls": ca})),
                None,
                Some("PEM".to_string()),
                None,
                Some(("ca", "ca.crt")),
                "ssl",
                None,
            ),
            (
                spec(serde_json::json!({"bootstrapServers": "b:9092", "sasl": sasl,
                    "credentialsSecretRef": {"name": "kc"}})),
                creds(),
                None,
                Some(("kc", "username", "password")),
                None,
                "sasl_plaintext",
                Some("SCRAM-SHA-512"),
            ),
            (
                spec(
                    serde_json::json!({"bootstrapServers": "b:9092", "sasl": sasl, "tls": ca,
                    "credentialsSecretRef": {"name": "kc", "usernameKey": "user", "passwordKey": "pass"}}),
                ),
                creds(),
                Some("PEM".to_string()),
                Some(("kc", "user", "pass")),
                Some(("ca", "ca.crt")),
                "sasl_ssl",
                Some("SCRAM-SHA-512"),
            ),
            // TLS switched off: its CA is not needed.
            (
                spec(serde_json::json!({"bootstrapServers": "b:9092",
                    "tls": {"enabled": false, "caSecretRef": {"name": "ca", "key": "ca.crt"}}})),
                None,
                None,
                None,
                None,
                "plaintext",
                None,
            ),
        ] {
            let needs = KafkaAccess::secrets_needed(&k);
            assert_eq!((needs.credentials, needs.ca), (needed_creds, needed_ca), "{k:?}");
            let access = KafkaAccess::from_spec(&k, credentials, ca_pem.clone());
            assert_eq!(access.security_protocol.librdkafka(), protocol, "{k:?}");
            assert_eq!(access.sasl.as_ref().map(|(m, _, _)| m.as_str()), mechanism);
            assert_eq!(access.ca_pem, ca_pem);
            assert_eq!(access.bootstrap_servers, "b:9092");
        }
    }

    #[test]
    fn lag_is_clamped_and_uncommitted_counts_from_zero() {
        let o = Offsets {
            high_watermarks: vec![100, 50, 7],
            produced_since: None,
            committed: vec![Some(40), Some(60), None],
        };
        assert_eq!(o.lag(), vec![60, 0, 7]);
        assert_eq!(o.produced(), 157);
        assert_eq!(o.committed_total(), 100);
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let a = KafkaAccess {
            sasl: Some((SaslMechanism::Plain, "svc".into(), "hunter2".into())),
            ..KafkaAccess::plaintext("b:9092")
        };
        let shown = format!("{a:?}");
        assert!(shown.contains("svc") && !shown.contains("hunter2"), "{shown}");
        assert_eq!(a.client_config().get("sasl.password"), Some("hunter2"));
    }
}
