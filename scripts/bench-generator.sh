#!/usr/bin/env bash
# Generator throughput and rate accuracy.
#  1. events/s at --rate 0 into a local broker, and events per CPU-second of
#     the generator process (user + system time, librdkafka threads included);
#  2. achieved vs target rate at 1k, 10k and 50k events/s.
# Against the dev broker (Apache Kafka on 127.0.0.1:9092); the broker's CPU
# over the unlimited run is reported too (both share the 2 cores).
# Usage: scripts/bench-generator.sh [TOTAL_EVENTS] [RATE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-1000000}"
SECONDS_PER_RATE="${2:-10}"
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/lib/bench.sh

bench_setup generator
GEN="$BIN/shopstream-generator"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

new_topic() {
  local t="bench-gen-$1-$(date +%s%N)"
  create_topic "$t" 8
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

echo "== unlimited rate: $TOTAL events, 8 partitions, broker $BENCH_BROKERS (Apache Kafka)"
topic=$(new_topic max)
k0=$(broker_ticks)
read -r wall cpu < <(timed "$GEN" --brokers "$BENCH_BROKERS" --topic "$topic" --rate 0 \
  --total "$TOTAL" --instance bench --summary-file "$work/max.json")
kcpu=$(secs $(( $(broker_ticks) - k0 )))
delivered=$(field "$work/max.json" messages_total)
python3 - "$delivered" "$wall" "$cpu" "$kcpu" <<'PY'
import sys
n, wall, cpu, kcpu = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"delivered {n} in {wall:.2f} s wall; CPU: generator {cpu:.2f} s, broker {kcpu:.2f} s")
print(f"throughput: {n / wall:,.0f} events/s; {n / cpu:,.0f} events per generator CPU-second")
PY

echo "== rate accuracy ($SECONDS_PER_RATE s each)"
printf '%10s %12s %10s\n' target achieved error
for rate in 1000 10000 50000; do
  topic=$(new_topic "r$rate")
  "$GEN" --brokers "$BENCH_BROKERS" --topic "$topic" --rate "$rate" --duration "${SECONDS_PER_RATE}s" \
    --instance bench --summary-file "$work/r$rate.json" 2>/dev/null
  python3 - "$rate" "$work/r$rate.json" <<'PY'
import json, sys
target = float(sys.argv[1])
s = json.load(open(sys.argv[2]))
achieved = s["events_per_second"]
print(f"{target:10,.0f} {achieved:12,.0f} {100 * (achieved - target) / target:+9.2f}%")
PY
done
