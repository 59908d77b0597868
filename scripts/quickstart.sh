#!/usr/bin/env bash
# Quickstart: install/start what is missing, build in release mode, and run
# the pipeline locally. (Today: the traffic generator into the local broker;
# the warehouse loader, operator and dashboard join as they land.)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/dev-deps.sh
echo "== building (release)"
cargo build --release --locked -p shopstream-generator
target_dir="${CARGO_TARGET_DIR:-target}"

topic="quickstart-events"
# Already there on a re-run: that is fine.
tansu topic create "$topic" --partitions 4 --broker tcp://127.0.0.1:9092 >/dev/null 2>&1 || true

summary=$(mktemp --suffix=.json)
echo "== producing shop traffic for 20 s at 2,000 events/s (1% deliberately invalid)"
"$target_dir/release/shopstream-generator" --topic "$topic" --rate 2000 --duration 20s \
  --invalid-ratio 0.01 --progress-interval 5s --summary-file "$summary"
echo "== audit of what the broker acknowledged"
cat "$summary"
rm -f "$summary"
