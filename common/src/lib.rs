//! Plumbing every Shopstream binary shares, so each one stays a thin `main.rs`
//! over its own library: logging setup, the metrics/health HTTP endpoint,
//! shutdown signals and Kafka client settings (including TLS/SASL).

pub mod cli;
pub mod error;
pub mod hash;
pub mod http;
pub mod kafka;
pub mod logging;
pub mod pg;
pub mod produced;
pub mod shutdown;
pub mod topics;
