#!/usr/bin/env bash
# Dashboard API latency over a large warehouse: load EVENTS events (>= 1M fact
# rows by default) with the real generator and worker into a fresh schema
# (orders take their next lifecycle step at once, so every status is there),
# then time every API endpoint REQUESTS times and print p50/p95/max.
# Goal: p95 < 100 ms for every endpoint.
# Usage: scripts/bench-dashboard.sh [EVENTS] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-1100000}"
REQUESTS="${2:-200}"
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/lib/bench.sh
DB_URL="$BENCH_DB_URL"

bench_setup generator worker dashboard
bin="$BIN"
stamp=$(date +%s)
topic="bench-dash-$stamp"
schema="bench_dash_$stamp"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

echo "== loading $EVENTS events into schema $schema"
create_topic "$topic" 4
"$bin/shopstream-generator" --brokers "$BENCH_BROKERS" --topic "$topic" --rate 0 --total "$EVENTS" \
  --invalid-ratio 0.01 --cancel-after 0s --complete-after 0s --refund-after 0s --instance bench 2>/dev/null
"$bin/shopstream-worker" --brokers "$BENCH_BROKERS" --topic "$topic" --schema "$schema" \
  --database-url "$DB_URL" 2>/dev/null &
pids+=($!)
deadline=$((SECONDS + 1800))
until [[ "$(psql "$DB_URL" -Atqc "SELECT coalesce(sum(next_offset),0) FROM $schema.ingest_offsets" 2>/dev/null)" == "$EVENTS" ]]; do
  kill -0 "${pids[0]}" 2>/dev/null || { echo "the worker exited before loading everything" >&2; exit 1; }
  (( SECONDS < deadline )) || { echo "loading took more than 30 minutes" >&2; exit 1; }
  sleep 0.5
done
kill "${pids[0]}"
facts=$(psql "$DB_URL" -Atqc "SELECT (SELECT count(*) FROM $schema.fact_sales) + (SELECT count(*) FROM $schema.fact_activity)")
echo "fact rows: $facts"

"$bin/shopstream-dashboard" --listen 127.0.0.1:18181 --schema "$schema" --database-url "$DB_URL" 2>/dev/null &
pids+=($!)
deadline=$((SECONDS + 30))
until curl -fs http://127.0.0.1:18181/api/config >/dev/null; do
  (( SECONDS < deadline )) || { echo "the dashboard did not start" >&2; exit 1; }
  sleep 0.1
done

python3 - "$REQUESTS" <<'PY'
import sys, time, urllib.request
n = int(sys.argv[1])
endpoints = ["/api/summary?window=60", "/api/sales/minute?minutes=60", "/api/sales/hour?hours=48",
             "/api/products/top?by=revenue&limit=10", "/api/products/top?by=units&limit=10",
             "/api/categories", "/api/funnel", "/api/customers", "/api/activity/hours", "/api/freshness",
             "/api/orders/status", "/api/cohorts?months=12"]
print(f"{'endpoint':42} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
worst = 0.0
for e in endpoints:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen("http://127.0.0.1:18181" + e) as r:
            r.read()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50, p95 = times[len(times) // 2], times[int(len(times) * 0.95) - 1]
    worst = max(worst, p95)
    print(f"{e:42} {p50:8.1f} {p95:8.1f} {times[-1]:8.1f}")
print(f"worst p95: {worst:.1f} ms (goal < 100 ms)")
PY
psql "$DB_URL" -qc "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE"
