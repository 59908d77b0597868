#!/usr/bin/env bash
# Run every test: formatting, lints, unit tests and the integration tests
# against the real broker and PostgreSQL (started by dev-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/dev-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
