//! The Shopstream operator.
//!
//! - [`builders`]: desired generator and worker Deployments (pure);
//! - [`generator_plan`] and [`scaler`]: how many generators and workers (pure);
//! - [`status`]: phase and conditions (pure);
//! - [`reconcile`]: the phases against the Kubernetes API and Kafka;
//! - [`controller`]: leader election, metrics, the kube-runtime Controller;
//! - [`local`]: the same desired state as processes on one machine.

pub mod builders;
pub mod cli;
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
