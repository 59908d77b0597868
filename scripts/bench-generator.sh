#!/usr/bin/env bash
# Generator throughput and rate accuracy.
#  1. events/s at --rate 0 into a local broker, and events per CPU-second of
#     the generator process (user + system time, librdkafka threads included);
#  2. achieved vs target rate at 1k, 10k and 50k events/s.
# Uses a memory-engine broker on port 19092 (fast; fine for produce-only runs).
# Usage: scripts/bench-generator.sh [TOTAL_EVENTS] [RATE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-1000000}"
SECONDS_PER_RATE="${2:-10}"
PORT="${BENCH_BROKER_PORT:-19092}"
export PATH="$HOME/.cargo/bin:$PATH"

scripts/start-broker.sh "$PORT" memory >/dev/null
cargo build --release --locked -p shopstream-generator >/dev/null 2>&1 || cargo build --release --locked -p shopstream-generator
target_dir="${CARGO_TARGET_DIR:-target}"
GEN="$target_dir/release/shopstream-generator"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

new_topic() {
  local t="bench-gen-$1-$(date +%s%N)"
  tansu topic create "$t" --partitions 8 --broker "tcp://127.0.0.1:$PORT" >/dev/null
  echo "$t"
}

# Run the generator, then print "wall_seconds cpu_seconds" of that process.
timed() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t0 = time.monotonic()
rc = subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL).returncode
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
if rc != 0:
    sys.exit(f"generator exited with {rc}")
print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f}")
PY
}

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

echo "== unlimited rate: $TOTAL events, 8 partitions, broker 127.0.0.1:$PORT (memory engine)"
topic=$(new_topic max)
read -r wall cpu < <(timed "$GEN" --brokers "127.0.0.1:$PORT" --topic "$topic" --rate 0 \
  --total "$TOTAL" --instance bench --summary-file "$work/max.json")
delivered=$(field "$work/max.json" messages_total)
python3 - "$delivered" "$wall" "$cpu" <<'PY'
import sys
n, wall, cpu = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"delivered {n} in {wall:.2f} s wall, {cpu:.2f} s CPU")
print(f"throughput: {n / wall:,.0f} events/s; {n / cpu:,.0f} events per CPU-second (per core)")
PY

echo "== rate accuracy ($SECONDS_PER_RATE s each)"
printf '%10s %12s %10s\n' target achieved error
for rate in 1000 10000 50000; do
  topic=$(new_topic "r$rate")
  "$GEN" --brokers "127.0.0.1:$PORT" --topic "$topic" --rate "$rate" --duration "${SECONDS_PER_RATE}s" \
    --instance bench --summary-file "$work/r$rate.json" 2>/dev/null
  python3 - "$rate" "$work/r$rate.json" <<'PY'
import json, sys
target = float(sys.argv[1])
s = json.load(open(sys.argv[2]))
achieved = s["events_per_second"]
print(f"{target:10,.0f} {achieved:12,.0f} {100 * (achieved - target) / target:+9.2f}%")
PY
done
