//! Shopstream's transform worker: consumes shop events from Kafka and loads
//! a star schema in PostgreSQL, exactly once.
//!
//! - [`transform`]: records -> deduplicated dimension rows, fact rows, dead letters (pure);
//! - [`dims`]: surrogate keys with an LRU cache, SCD type 1 upserts;
//! - [`load`]: one transaction per batch, with the fenced offset advance;
//! - [`isolate`]: a batch the warehouse rejects is split to dead-letter the culprit;
//! - [`consumer`]: group membership, starting partitions at stored offsets;
//! - [`pipeline`]: the loop, with reconnects and re-positioning on failure;
//! - [`migrate`]: versioned schema migrations under an advisory lock.

pub mod cli;
pub mod consumer;
pub mod db;
pub mod dims;
pub mod isolate;
pub mod load;
pub mod loader;
pub mod metrics;
pub mod migrate;
pub mod pipeline;
pub mod run;
pub mod transform;

pub use cli::Cli;
pub use run::{WorkerError, run};
