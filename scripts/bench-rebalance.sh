#!/usr/bin/env bash
# Rebalance pauses per consumer-group protocol. For each protocol: a steady
# RATE events/s into an 8-partition topic with one worker; after 10 s three
# more workers join (1 -> 4), after 25 s they leave (4 -> 1); the generator
# stops at 45 s. Every commit of every partition is timed (fact rows'
# loaded_at) and the owner of each partition sampled every 100 ms, so the
# longest pause between two commits is reported separately for partitions
# that never changed owner and for those that moved. Goal: partitions that
# did not move never pause longer than 1 s.
# Usage: scripts/bench-rebalance.sh [RATE] [PROTOCOLS...]   (default: 5000 consumer cooperative eager)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
RATE="${1:-5000}"
shift || true
PROTOCOLS=("$@")
(( ${#PROTOCOLS[@]} )) || PROTOCOLS=(consumer cooperative eager)

bench_setup generator worker
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "${BENCH_KEEP:-}" ]]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

worker() { # protocol schema topic name port
  RUST_LOG="${BENCH_RUST_LOG:-info}" "$BIN/shopstream-worker" --brokers "$BENCH_BROKERS" --topic "$3" --schema "$2" --database-url "$BENCH_DB_URL" \
    --group-protocol "$1" --session-timeout 6s --instance "$4" --metrics-addr "127.0.0.1:$5" \
    >/dev/null 2>"$work/$2-$4.log" &
  echo $!
}

printf '%-12s %10s %10s %9s %9s %9s %9s\n' protocol stayed moved "w1 cpu" "all-w cpu" "pg cpu" "kafka cpu"
for protocol in "${PROTOCOLS[@]}"; do
  stamp=$(date +%s%N)
  topic="bench-rebalance-$protocol-$stamp"
  schema="bench_rebalance_${protocol}_$stamp"
  create_topic "$topic" 8
  w1=$(worker "$protocol" "$schema" "$topic" w1 19401); pids+=("$w1")
  wait_ready 127.0.0.1:19401
  pg0=$(pg_ticks); k0=$(broker_ticks)
  "$BIN/shopstream-generator" --brokers "$BENCH_BROKERS" --topic "$topic" --rate "$RATE" --duration 45s \
    --instance bench --summary-file "$work/$schema.json" 2>/dev/null &
  gen=$!; pids+=("$gen")
  # Owners of every partition, sampled every 100 ms.
  (
    while kill -0 "$gen" 2>/dev/null; do
      psql_q "SELECT extract(epoch FROM clock_timestamp()), kafka_partition, owner FROM $schema.ingest_offsets" 2>/dev/null || true
      sleep 0.1
    done
  ) >"$work/$schema.owners" &
  sampler=$!; pids+=("$sampler")
  t0=$SECONDS
  until (( SECONDS - t0 >= 10 )); do sleep 0.2; done
  extra=()
  for n in 2 3 4; do
    p=$(worker "$protocol" "$schema" "$topic" "w$n" $((19400 + n))); pids+=("$p"); extra+=("$p")
  done
  until (( SECONDS - t0 >= 25 )); do sleep 0.2; done
  extra_ticks=$(ticks "${extra[@]}")
  kill -TERM "${extra[@]}"
  for p in "${extra[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  wait "$gen"
  wait "$sampler" || true
  total=$(python3 -c "import json; print(json.load(open('$work/$schema.json'))['messages_total'])")
  wait_loaded "$schema" "$topic" "$total"
  w1_ticks=$(ticks "$w1"); pg1=$(pg_ticks); k1=$(broker_ticks)
  kill -TERM "$w1"; while kill -0 "$w1" 2>/dev/null; do sleep 0.1; done
  psql_q "SELECT kafka_partition, extract(epoch FROM loaded_at) FROM (
            SELECT DISTINCT kafka_partition, loaded_at FROM $schema.fact_activity
            UNION SELECT DISTINCT kafka_partition, loaded_at FROM $schema.fact_sales) c ORDER BY 1, 2" \
    >"$work/$schema.commits"
  python3 - "$protocol" "$work/$schema.commits" "$work/$schema.owners" \
    "$(secs "$w1_ticks")" "$(secs $((w1_ticks + extra_ticks)))" "$(secs $((pg1 - pg0)))" "$(secs $((k1 - k0)))" <<'PY'
import collections, sys
protocol, commits_file, owners_file = sys.argv[1:4]
commits = collections.defaultdict(list)
for line in open(commits_file):
    p, t = line.strip().split("|")
    commits[int(p)].append(float(t))
owners = collections.defaultdict(set)
for line in open(owners_file):
    parts = line.strip().split("|")
    if len(parts) == 3 and parts[2]:
        owners[int(parts[1])].add(parts[2])
def longest_gap(ts):
    # Ignore the first and last seconds (start-up and the generator's end).
    ts = sorted(ts)
    ts = [t for t in ts if ts[0] + 3 <= t <= ts[-1] - 1]
    return max((b - a for a, b in zip(ts, ts[1:])), default=0.0)
stayed = [longest_gap(commits[p]) for p in commits if owners[p] == {"w1"}]
moved = [longest_gap(commits[p]) for p in commits if owners[p] != {"w1"}]
fmt = lambda xs: f"{max(xs):.2f}s" if xs else "-"
print(f"{protocol:<12} {fmt(stayed):>10} {fmt(moved):>10} {sys.argv[4]:>8}s {sys.argv[5]:>8}s {sys.argv[6]:>8}s {sys.argv[7]:>8}s"
      f"   ({len(stayed)} stayed, {len(moved)} moved)")
PY
  psql "$BENCH_DB_URL" -qc "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE;"
done
echo "stayed/moved: longest pause between two commits of one partition; cpu: CPU-seconds over the run"
