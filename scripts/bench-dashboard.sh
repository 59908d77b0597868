#!/usr/bin/env bash
# Dashboard API latency over a large warehouse: load EVENTS events (>= 10M
# fact rows by default) with the real generator and worker into a fresh
# schema, spread over the last 30 days (every session "late" by up to 720 h,
# so every range and every slice grain has history; orders take their next
# lifecycle step at once, so every status is there), then time every API
# endpoint under each filter set REQUESTS times and print p50/p95/max.
# Goal: p95 < 100 ms for every endpoint and filter set.
# Usage: scripts/bench-dashboard.sh [EVENTS] [REQUESTS]   (BENCH_KEEP_SCHEMA=1 keeps the schema)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-10300000}"
REQUESTS="${2:-60}"
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
  --invalid-ratio 0.01 --cancel-after 0s --complete-after 0s --refund-after 0s --late-ratio 1 --late-by 720h \
  --instance bench 2>/dev/null
"$bin/shopstream-worker" --brokers "$BENCH_BROKERS" --topic "$topic" --schema "$schema" \
  --database-url "$DB_URL" 2>/dev/null &
pids+=($!)
load_started=$(now)
deadline=$((SECONDS + 3600))
until [[ "$(psql "$DB_URL" -Atqc "SELECT coalesce(sum(next_offset),0) FROM $schema.ingest_offsets" 2>/dev/null)" == "$EVENTS" ]]; do
  kill -0 "${pids[0]}" 2>/dev/null || { echo "the worker exited before loading everything" >&2; exit 1; }
  (( SECONDS < deadline )) || { echo "loading took more than 60 minutes" >&2; exit 1; }
  sleep 0.5
done
kill "${pids[0]}"
echo "loaded in $(awk -v a="$load_started" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s"
facts=$(psql "$DB_URL" -Atqc "SELECT (SELECT count(*) FROM $schema.fact_sales) + (SELECT count(*) FROM $schema.fact_activity)")
echo "fact rows: $facts"
psql "$DB_URL" -Atqc "SELECT 'slice rows: ' || (SELECT count(*) FROM $schema.agg_slice) || ' (+ ' ||
  (SELECT count(*) FROM $schema.agg_order_slice) || ' order slices), orders: ' || (SELECT count(*) FROM $schema.fact_order)"
read -r country category < <(psql "$DB_URL" -AtF ' ' -qc "SELECT (SELECT country FROM $schema.agg_order_slice
  WHERE grain = 'day' GROUP BY 1 ORDER BY sum(orders) DESC LIMIT 1), (SELECT replace(category, ' ', '%20') FROM
  $schema.agg_slice WHERE grain = 'day' GROUP BY 1 ORDER BY sum(net) DESC LIMIT 1)")

"$bin/shopstream-dashboard" --listen 127.0.0.1:18181 --schema "$schema" --database-url "$DB_URL" 2>/dev/null &
pids+=($!)
deadline=$((SECONDS + 30))
until curl -fs http://127.0.0.1:18181/api/config >/dev/null; do
  (( SECONDS < deadline )) || { echo "the dashboard did not start" >&2; exit 1; }
  sleep 0.1
done

python3 - "$REQUESTS" "$country" "$category" <<'PY'
import sys, time, urllib.request
n, country, category = int(sys.argv[1]), sys.argv[2], sys.argv[3]
endpoints = ["/api/summary", "/api/sales/series", "/api/products/top?by=revenue&limit=10", "/api/categories",
             "/api/funnel", "/api/customers", "/api/customers/profile", "/api/devices", "/api/payments",
             "/api/calendar", "/api/activity/hours", "/api/orders/status", "/api/orders/lines?limit=25"]
unfiltered = ["/api/freshness", "/api/cohorts?months=12", "/api/dimensions"]
filter_sets = ["", "range=24h", f"country={country}", f"range=7d&segment=consumer&device=mobile",
               f"country={country}&category={category}&device=pc"]
print(f"filters: (none) | " + " | ".join(filter_sets[1:]))
print(f"{'endpoint':42} {'filters':48} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
worst = (0.0, "")
def timed(path):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen("http://127.0.0.1:18181" + path) as r:
            r.read()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2], times[max(0, int(len(times) * 0.95) - 1)], times[-1]
for e in endpoints + unfiltered:
    for f in (filter_sets if e in endpoints else [""]):
        path = e + (("&" if "?" in e else "?") + f if f else "")
        p50, p95, top = timed(path)
        if p95 > worst[0]:
            worst = (p95, path)
        print(f"{e:42} {f or '-':48} {p50:7.1f} {p95:7.1f} {top:7.1f}")
print(f"worst p95: {worst[0]:.1f} ms at {worst[1]} (goal < 100 ms)")
PY
if [[ -n "${BENCH_KEEP_SCHEMA:-}" ]]; then
  echo "kept schema $schema (BENCH_KEEP_SCHEMA)"
else
  psql "$DB_URL" -qc "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE"
fi
