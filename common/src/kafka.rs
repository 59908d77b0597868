//! Kafka client settings shared by producers, consumers and admin clients.
//!
//! Security settings come from flags or `SHOPSTREAM_KAFKA_*` env vars; in
//! Kubernetes the operator fills the env vars from the Pipeline's credentials
//! Secret, so secrets never appear in a pod spec or a log line.

use shopstream_model::envvar;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use thiserror::Error;

pub use shopstream_model::kafka::{SaslMechanism, SecurityProtocol};

fn parse_protocol(s: &str) -> Result<SecurityProtocol, String> {
    s.parse()
        .map_err(|e: shopstream_model::kafka::UnknownName| e.to_string())
}

fn parse_mechanism(s: &str) -> Result<SaslMechanism, String> {
    s.parse()
        .map_err(|e: shopstream_model::kafka::UnknownName| e.to_string())
}

#[derive(Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = envvar::BROKERS, default_value = "127.0.0.1:9092")]
    pub brokers: String,

    #[arg(long, env = envvar::KAFKA_SECURITY_PROTOCOL, default_value = "plaintext", value_parser = parse_protocol,
          help = "Kafka security protocol: plaintext, ssl, sasl-plaintext or sasl-ssl")]
    pub kafka_security_protocol: SecurityProtocol,

    #[arg(long, env = envvar::KAFKA_SASL_MECHANISM, value_parser = parse_mechanism,
          help = "SASL mechanism (with a sasl-* security protocol): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    /// SASL username.
    #[arg(long, env = envvar::KAFKA_SASL_USERNAME)]
    pub kafka_sasl_username: Option<String>,

    /// SASL password (prefer the env var: flags show up in process listings).
    #[arg(long, env = envvar::KAFKA_SASL_PASSWORD, hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,

    /// PEM file of CA certificates to verify the brokers with.
    #[arg(long, env = envvar::KAFKA_CA_FILE)]
    pub kafka_ca_file: Option<String>,

    /// PEM client certificate for mutual TLS.
    #[arg(long, env = envvar::KAFKA_CERT_FILE)]
    pub kafka_cert_file: Option<String>,

    /// PEM client key for mutual TLS.
    #[arg(long, env = envvar::KAFKA_KEY_FILE)]
    pub kafka_key_file: Option<String>,
}

// Hand-written so the password can never reach a log through `{:?}`.
impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaArgs")
            .field("brokers", &self.brokers)
            .field("security_protocol", &self.kafka_security_protocol)
            .field("sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("sasl_username", &self.kafka_sasl_username)
            .field(
                "sasl_password",
                &self.kafka_sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_file", &self.kafka_ca_file)
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum KafkaError {
    #[error("invalid Kafka settings: {0}")]
    Settings(String),
    #[error("cannot create the Kafka client for {brokers}: {source}")]
    Client {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot reach Kafka at {brokers} within {timeout:?}: {reason}")]
    Unreachable {
        brokers: String,
        timeout: Duration,
        /// The request's error, and the client's last connection error.
        reason: String,
    },
    /// The brokers answered but refused this client: wrong credentials or a
    /// certificate that does not verify. Retrying cannot help.
    #[error("cannot connect to Kafka at {brokers}: {cause}")]
    Refused { brokers: String, cause: String },
    #[error(
        "topic `{topic}` does not exist on {brokers}; create it first (the operator does this for a Pipeline)"
    )]
    NoSuchTopic { topic: String, brokers: String },
    #[error("topic `{topic}` reported an error: {detail}")]
    TopicError { topic: String, detail: String },
}

impl KafkaArgs {
    /// Plaintext settings for a broker list; used by tests and tools.
    pub fn plaintext(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            kafka_security_protocol: SecurityProtocol::Plaintext,
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ca_file: None,
            kafka_cert_file: None,
            kafka_key_file: None,
        }
    }

    /// The base librdkafka configuration: bootstrap servers and security.
    pub fn client_config(&self) -> Result<ClientConfig, KafkaError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            // IPv4 first: librdkafka may otherwise try ::1 for `localhost`.
            .set("broker.address.family", "v4")
            // Partitions added to a topic reach producers and consumers at the
            // next metadata refresh: seconds, not librdkafka's default 5 minutes.
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("security.protocol", self.kafka_security_protocol.librdkafka());
        if self.kafka_security_protocol.uses_sasl() {
            let mechanism = self.kafka_sasl_mechanism.ok_or_else(|| {
                KafkaError::Settings("a sasl_* security protocol needs --kafka-sasl-mechanism".into())
            })?;
            let (Some(user), Some(password)) = (&self.kafka_sasl_username, &self.kafka_sasl_password) else {
                return Err(KafkaError::Settings(
                    "SASL needs a username and password (SHOPSTREAM_KAFKA_SASL_USERNAME / _PASSWORD)".into(),
                ));
            };
            cfg.set("sasl.mechanism", mechanism.as_str())
                .set("sasl.username", user)
                .set("sasl.password", password);
        } else if self.kafka_sasl_mechanism.is_some() {
            return Err(KafkaError::Settings(
                "--kafka-sasl-mechanism needs --kafka-security-protocol sasl-plaintext or sasl-ssl".into(),
            ));
        }
        for (key, value) in [
            ("ssl.ca.location", &self.kafka_ca_file),
            ("ssl.certificate.location", &self.kafka_cert_file),
            ("ssl.key.location", &self.kafka_key_file),
        ] {
            if let Some(v) = value {
                cfg.set(key, v);
            }
        }
        Ok(cfg)
    }
}

/// Log a client-level error from `ClientContext::error` (librdkafka keeps
/// retrying; the reason names the listener and never carries a credential).
pub fn log_client_error(error: &rdkafka::error::KafkaError, reason: &str) {
    if is_refusal(error) {
        tracing::error!(%error, reason, "Kafka refused the connection");
    } else {
        tracing::warn!(%error, reason, "Kafka client error");
    }
}

/// Authentication and TLS failures: permanent until the settings change.
fn is_refusal(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(Code::Authentication | Code::SSL | Code::SaslAuthenticationFailed)
    )
}

/// Records what a diagnosing client reports: librdkafka retries a refused
/// login or an unverifiable certificate forever and says why only through
/// error events, which a metadata request does not return.
#[derive(Default)]
struct DiagnoseContext {
    refused: Mutex<Option<String>>,
    last: Mutex<Option<String>>,
}

impl ClientContext for DiagnoseContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let text = format!("{reason} ({error})");
        if is_refusal(&error) {
            self.refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| text.clone());
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
}

impl rdkafka::consumer::ConsumerContext for DiagnoseContext {}

/// Why a client with `config` cannot talk to the cluster: connect once more
/// with a group-less consumer (whose poll serves the error events) for at
/// most `within`. `Err(cause)` for a refusal, `Ok(last error)` otherwise.
fn diagnose(config: &ClientConfig, within: Duration) -> Result<Option<String>, String> {
    let mut cfg = config.clone();
    cfg.remove("group.id");
    // Producer settings in `config` would each log a warning on a consumer.
    cfg.set_log_level(rdkafka::config::RDKafkaLogLevel::Error);
    let Ok(probe) = cfg.create_with_context::<_, BaseConsumer<DiagnoseContext>>(DiagnoseContext::default())
    else {
        return Ok(None);
    };
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let ok = probe.fetch_metadata(None, Duration::from_millis(200)).is_ok();
        let _ = probe.poll(Duration::from_millis(50));
        if let Some(cause) = probe
            .context()
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(cause);
        }
        if ok {
            break;
        }
    }
    Ok(probe
        .context()
        .last
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone())
}

/// How long a failed request spends finding out why.
const DIAGNOSE_WITHIN: Duration = Duration::from_secs(3);

/// The error for a request to `brokers` that failed with `source`: a refusal
/// (wrong credentials, unknown CA) names the listener and the cause.
pub fn unreachable(
    config: &ClientConfig,
    brokers: &str,
    timeout: Duration,
    source: rdkafka::error::KafkaError,
) -> KafkaError {
    match diagnose(config, DIAGNOSE_WITHIN) {
        Err(cause) => KafkaError::Refused {
            brokers: brokers.to_string(),
            cause,
        },
        Ok(last) => KafkaError::Unreachable {
            brokers: brokers.to_string(),
            timeout,
            reason: match last {
                Some(last) => format!("{source} (last error: {last})"),
                None => source.to_string(),
            },
        },
    }
}

/// Ask the cluster for `topic`'s metadata: proves the brokers are reachable and
/// accept this client (`config`, for the diagnosis when they do not), and the
/// topic exists; returns its partition count.
pub fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    config: &ClientConfig,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<usize, KafkaError> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| unreachable(config, brokers, timeout, source))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(KafkaError::NoSuchTopic {
            topic: topic.to_string(),
            brokers: brokers.to_string(),
        });
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(t.partitions().len()),
        None => Err(KafkaError::NoSuchTopic {
            topic: topic.to_string(),
            brokers: brokers.to_string(),
        }),
        Some(code) => {
            let code = rdkafka::types::RDKafkaErrorCode::from(code);
            if code == rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                Err(KafkaError::NoSuchTopic {
                    topic: topic.to_string(),
                    brokers: brokers.to_string(),
                })
            } else {
                Err(KafkaError::TopicError {
                    topic: topic.to_string(),
                    detail: code.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(cfg: &ClientConfig, key: &str) -> Option<String> {
        cfg.get(key).map(str::to_string)
    }

    #[test]
    fn plaintext_sets_only_servers_and_protocol() {
        let cfg = KafkaArgs::plaintext("127.0.0.1:9092").client_config().unwrap();
        assert_eq!(get(&cfg, "bootstrap.servers").as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(get(&cfg, "security.protocol").as_deref(), Some("plaintext"));
        assert_eq!(get(&cfg, "sasl.username"), None);
    }

    #[test]
    fn sasl_needs_mechanism_and_credentials() {
        let mut args = KafkaArgs::plaintext("b:9093");
        args.kafka_security_protocol = SecurityProtocol::SaslSsl;
        assert!(
            args.client_config()
                .unwrap_err()
                .to_string()
                .contains("mechanism")
        );
        args.kafka_sasl_mechanism = Some(SaslMechanism::ScramSha512);
        assert!(
            args.client_config()
                .unwrap_err()
                .to_string()
                .contains("username and password")
        );
        args.kafka_sasl_username = Some("svc".into());
        args.kafka_sasl_password = Some("s3cret".into());
        args.kafka_ca_file = Some("/etc/ca.pem".into());
        let cfg = args.client_config().unwrap();
        assert_eq!(get(&cfg, "security.protocol").as_deref(), Some("sasl_ssl"));
        assert_eq!(get(&cfg, "sasl.mechanism").as_deref(), Some("SCRAM-SHA-512"));
        assert_eq!(get(&cfg, "ssl.ca.location").as_deref(), Some("/etc/ca.pem"));
        assert!(!format!("{args:?}").contains("s3cret"));
    }

    #[test]
    fn mechanism_without_sasl_protocol_is_rejected() {
        let mut args = KafkaArgs::plaintext("b:9092");
        args.kafka_sasl_mechanism = Some(SaslMechanism::Plain);
        assert!(matches!(args.client_config(), Err(KafkaError::Settings(_))));
    }
}
