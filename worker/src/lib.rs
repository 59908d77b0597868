//! Shopstream's transform worker: consumes shop events from Kafka and loads
//! a star schema in PostgreSQL, exactly once.
//!
//! - [`transform`]: records -> deduplicated dimension rows, fact rows, dead letters (pure);
//! - [`dims`]: surrogate keys with an LRU cache, SCD type 1 upserts;
//! - [`load`]: one transaction per batch, with the fenced offset advance;
//! - [`copy_layout`]: each fact row's COPY columns, types and values in one place;
//! - [`orders`]: the order lifecycle (`fact_order`), exactly once whatever the arrival order;
//! - [`isolate`]: a batch the warehouse rejects is split to dead-letter the culprit;
//! - [`consumer`]: group membership, starting partitions at stored offsets,
//!   the state the threads share and the liveness watchdog's decision;
//! - [`consume`]: polling micro-batches, cursors, seeking to stored offsets;
//! - [`group`]: offsets committed to the Kafka group, lag metrics;
//! - [`ingest`]: the consuming thread's loop, with reconnects and
//!   re-positioning on failure; it hands batches to the [`loader`] thread;
//! - [`migrate`]: versioned schema migrations under an advisory lock;
//! - [`retry`]: the one backoff policy (start-up, reconnects, failed batches).

pub mod cli;
pub mod consume;
pub mod consumer;
pub mod copy_layout;
pub mod db;
pub mod dims;
pub mod group;
pub mod ingest;
pub mod isolate;
pub mod load;
pub mod loader;
pub mod metrics;
pub mod migrate;
pub mod orders;
pub mod retry;
pub mod run;
pub mod slices;
pub mod transform;

pub use cli::Cli;
pub use run::{WorkerError, run};
