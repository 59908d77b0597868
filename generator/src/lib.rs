//! Shopstream's synthetic shop-traffic generator.
//!
//! A seeded world ([`catalog`]) of customers and products, shoppers moving
//! through a funnel ([`traffic`]), optional bad input ([`invalid`]), a pacer
//! that follows a rate or load profile ([`pacing`]), as one of a group of
//! pods ([`group`]), an idempotent Kafka
//! producer ([`producer`]) and an audit of what was delivered ([`summary`]).

pub mod catalog;
pub mod cli;
pub mod group;
pub mod invalid;
pub mod lifecycle;
pub mod metrics;
pub mod pacing;
pub mod producer;
pub mod run;
pub mod summary;
pub mod traffic;

pub use cli::Cli;
pub use run::{GeneratorError, Outcome, run};
