//! The Shopstream operator.
//!
//! - [`builders`]: desired generator, worker and dashboard Deployments (pure);
//! - [`generator_plan`] and [`scaler`]: how many generators and workers (pure);
//! - [`control`]: the one control step both runtimes take (policy and
//!   generator input from the spec, the autoscaler's observe -> decide ->
//!   record): where "how many workers" is decided;
//! - [`status`]: phase and conditions (pure; condition types and reasons are enums);
//! - [`reconcile`]: one module per phase against the Kubernetes API and
//!   Kafka (dereference -> scale -> desired -> apply -> observe -> events);
//! - [`kafka_ops`] and [`warehouse_ops`]: what the operator asks of Kafka and
//!   of a Pipeline's warehouse;
//! - [`controller`], [`leader`], [`drift`], [`metrics`]: the kube-runtime
//!   Controller, leader election, applied-object drift, Prometheus metrics;
//! - [`local`]: the same control step applied as processes on one machine;
//! - [`cli`]: the flags.

pub mod builders;
pub mod cli;
pub mod control;
pub mod controller;
pub mod drift;
pub mod generator_plan;
pub mod kafka_ops;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod reconcile;
pub mod scaler;
pub mod status;
pub mod warehouse_ops;
