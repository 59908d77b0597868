#!/usr/bin/env bash
# Run every test: formatting, lints, unit tests, the integration tests against
# the real broker and PostgreSQL (started by dev-deps.sh), and the end-to-end
# suite against a real Kubernetes control plane (scripts/start-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/dev-deps.sh --with-browser --no-broker

# A throw-away broker and database for this run: every test creates its own
# topics and schemas, and nothing piles up between runs. The broker's SASL and
# TLS listeners serve the security tests.
TEST_BROKER_PORT="${SHOPSTREAM_TEST_BROKER_PORT:-9192}"
eval "$(scripts/start-broker.sh --port "$TEST_BROKER_PORT" --fresh)"
export SHOPSTREAM_TEST_BROKERS="$BROKER_BOOTSTRAP"
export SHOPSTREAM_TEST_BROKERS_SASL="$BROKER_SASL_BOOTSTRAP"
export SHOPSTREAM_TEST_BROKERS_SSL="$BROKER_SSL_BOOTSTRAP"
export SHOPSTREAM_TEST_KAFKA_CA_FILE="$BROKER_CA_FILE"
export SHOPSTREAM_TEST_SCRAM_USERNAME="$BROKER_SCRAM_USERNAME"
export SHOPSTREAM_TEST_SCRAM_PASSWORD="$BROKER_SCRAM_PASSWORD"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS shopstream_test WITH (FORCE)" postgres
createdb -h 127.0.0.1 -U postgres shopstream_test
export SHOPSTREAM_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/shopstream_test"
# dev-deps.sh serves TLS with a certificate for "localhost" from this CA.
export SHOPSTREAM_TEST_DATABASE_CA_FILE="${SHOPSTREAM_DEV_DIR:-/var/tmp/shopstream-dev}/pg-tls/ca.crt"

# A fresh control plane (etcd, kube-apiserver, controller-manager, scheduler,
# kwok nodes), built from Go modules on first use and cached by version.
eval "$(scripts/start-cluster.sh --fresh --nodes 2)"

# The Helm engine (helm-python-sdk) for the chart checks and the cluster suite.
venv="${SHOPSTREAM_VENV:-${CARGO_TARGET_DIR:-target}/venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r charts/tests/requirements.txt
export SHOPSTREAM_TEST_PYTHON="$(cd "$venv" && pwd)/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
status=0
# The cluster scenarios (named e2e_*) mostly wait on the control plane, so
# they run on their own afterwards, many at once.
cargo test --workspace --locked --no-fail-fast -- --skip e2e_ || status=$?
echo "== end-to-end against the Kubernetes control plane"
cargo test -p shopstream-operator --test cluster --locked --no-fail-fast -- --test-threads 10 || status=$?

echo "== chart checks (Helm engine via helm-python-sdk, kubernetes-validate)"
"$venv/bin/python" -m pytest -q charts/tests || status=$?

# The image, built without Docker, and run read-only as its UID from its own
# root filesystem (release build: cached in CARGO_TARGET_DIR between runs).
echo "== image: build (umoci, skopeo) and smoke test"
if image="$(scripts/build-image.sh)"; then
  echo "$image"
  layout="$(sed -n 's/^oci-layout: //p' <<<"$image")"
  tag="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
  scripts/smoke-image.sh "$layout" "$tag" || status=$?
else
  status=1
fi
exit "$status"
