//! Shopstream data contracts shared by every component.
//!
//! This crate does no I/O: it defines what travels on the wire ([`event`]),
//! the single validation entry point ([`validate`]), and the load profile
//! shape used by the generator and the `Pipeline` resource ([`profile`]), who
//! shops and how ([`shopper`]: gender, device, channel), and
//! the generator's summary file the local runtime's audit reads ([`summary`]).

pub mod envvar;
pub mod event;
pub mod kafka;
pub mod money;
pub mod pipeline;
pub mod profile;
pub mod shopper;
pub mod summary;
pub mod validate;
pub mod warehouse;

pub use event::{
    Customer, Event, EventType, LineItem, Order, OrderUpdate, Product, READABLE_SCHEMA_VERSIONS, RefundLine,
    SCHEMA_VERSION,
};
pub use pipeline::{Pipeline, PipelineSpec, PipelineStatus};
pub use profile::{LoadProfile, Stage};
pub use shopper::{Channel, Device, Gender};
pub use validate::{ErrorKind, ValidationError, parse_event};
pub use warehouse::SchemaName;
