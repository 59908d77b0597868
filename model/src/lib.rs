//! Shopstream data contracts shared by every component.
//!
//! This crate does no I/O: it defines what travels on the wire ([`event`]),
//! the single validation entry point ([`validate`]), and the load profile
//! shape used by the generator and the `Pipeline` resource ([`profile`]).

pub mod event;
pub mod money;
pub mod pipeline;
pub mod profile;
pub mod validate;
pub mod warehouse;

pub use event::{Customer, Event, EventType, LineItem, Order, Product, SCHEMA_VERSION};
pub use pipeline::{Pipeline, PipelineSpec, PipelineStatus};
pub use profile::{LoadProfile, Stage};
pub use validate::{ErrorKind, ValidationError, parse_event};
pub use warehouse::SchemaName;
