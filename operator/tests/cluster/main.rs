//! End to end against a real Kubernetes control plane: kube-apiserver, etcd,
//! kube-controller-manager, kube-scheduler and kwok's simulated nodes, built
//! from Kubernetes' Go modules and started by `scripts/start-cluster.sh`
//! (`scripts/test.sh` does both), with the real broker behind the Pipelines.
//!
//! The chart is installed with the real Helm engine, and every operator here
//! is a `shopstream-operator run` process authenticated with the chart's
//! ServiceAccount token, so the RBAC authorizer judges each call it makes.
//! Each scenario has its own namespace; scenario names start with `e2e_`.
//!
//! ```text
//! eval "$(scripts/start-cluster.sh)"; eval "$(scripts/start-broker.sh --port 9192)"
//! SHOPSTREAM_TEST_BROKERS=$BROKER_BOOTSTRAP SHOPSTREAM_TEST_PYTHON=<chart venv>/bin/python \
//!   cargo test -p shopstream-operator --test cluster -- --test-threads 8
//! ```

mod admission;
mod apply;
mod autoscaling;
mod change;
mod failover;
mod harness;
mod helm;
mod lifecycle;
mod scale;
mod secrets;
