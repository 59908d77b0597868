#!/usr/bin/env bash
# Run every test: formatting, lints, unit tests and the integration tests
# against the real broker and PostgreSQL (started by dev-deps.sh).
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

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast || status=$?
else
  cargo test --workspace --locked --no-fail-fast || status=$?
fi

echo "== chart checks (Helm engine via helm-python-sdk, kubernetes-validate)"
venv="${SHOPSTREAM_VENV:-${CARGO_TARGET_DIR:-target}/venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r charts/tests/requirements.txt
"$venv/bin/python" -m pytest -q charts/tests || status=$?
exit "$status"
