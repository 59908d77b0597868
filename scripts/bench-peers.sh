#!/usr/bin/env bash
# Shopstream side by side with what users would pick instead, on the same
# events, broker, PostgreSQL and machine, one after another in one run:
#   - Spark Structured Streaming (PySpark, local[2]) into a star schema over JDBC,
#   - Kafka Connect standalone with the Debezium JDBC sink (upserts), behind a
#     Kafka Streams app that turns purchases into order lines,
#   - one Shopstream worker, as in scripts/bench-worker.sh.
# Each drains the same pre-filled topic, follows a steady generator, and is
# killed with SIGKILL mid-drain and restarted; see bench/peers/run.py for what is
# measured and bench/peers/README.md for how each peer is configured.
# The peers are installed by bench/peers/install.sh (PyPI, Maven Central).
# Usage: scripts/bench-peers.sh [EVENTS] [RATE] [SECONDS] [SYSTEMS]
#   SYSTEMS: comma-separated subset of shopstream,spark,connect (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-500000}"
RATE="${2:-5000}"
SECONDS_STEADY="${3:-30}"
SYSTEMS="${4:-shopstream,spark,connect}"
[[ "$EVENTS$RATE$SECONDS_STEADY" =~ ^[0-9]+$ ]] || { echo "usage: $0 [EVENTS] [RATE] [SECONDS] [SYSTEMS]" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/lib/bench.sh

bench_setup generator worker
set -a
source "$(bench/peers/install.sh | tail -n 1)"
set +a
work=$(mktemp -d)
# Kept when the run fails: each system's log is in it.
trap 'if [[ $? -eq 0 ]]; then rm -rf "$work"; else echo "bench-peers: logs kept in $work" >&2; fi' EXIT

# The run reads PostgreSQL's CPU off its postmaster, which reaps every backend.
export BIN BROKER_PID BENCH_BROKERS BENCH_DB_URL
export PG_POSTMASTER_PID_FILE="$(psql_q 'SHOW data_directory')/postmaster.pid"
read -r PGUSER PGHOSTPORT PGDATABASE < <(python3 -c '
import sys, urllib.parse as u
p = u.urlparse(sys.argv[1]); print(p.username or "postgres", f"{p.hostname}:{p.port or 5432}", p.path.lstrip("/"))' "$BENCH_DB_URL")
export PGUSER PGHOSTPORT PGDATABASE
results="${CARGO_TARGET_DIR:-target}/bench-peers.json"
python3 bench/peers/run.py --events "$EVENTS" --rate "$RATE" --seconds "$SECONDS_STEADY" --systems "$SYSTEMS" \
  --work "$work" --results "$results" ${BENCH_KEEP_SCHEMA:+--keep}
echo "(full figures: $results)"
