#!/usr/bin/env bash
# Worker throughput, latency and memory.
#  1. Drain: pre-fill a topic with EVENTS events (memory-engine broker on port
#     19092: fine for one consumer draining from offset 0), then time one worker
#     loading it into an empty schema (events/s, fact rows/s, peak RSS).
#  2. The same number of fact rows through a plain binary COPY into an empty
#     copy of fact_sales (same indexes): the ratio drain/COPY.
#  3. Latency: generator at a steady RATE events/s for SECONDS s into the
#     durable (SQLite) dev broker with a worker following; p50/p99 of
#     commit time minus event_time, measured on the loaded rows.
# Usage: scripts/bench-worker.sh [EVENTS] [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-500000}"
RATE="${2:-5000}"
SECONDS_STEADY="${3:-30}"
FAST_PORT="${BENCH_BROKER_PORT:-19092}"
DB_URL="${SHOPSTREAM_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shopstream}"
export PATH="$HOME/.cargo/bin:$PATH"

scripts/dev-deps.sh >/dev/null
scripts/start-broker.sh "$FAST_PORT" memory >/dev/null
cargo build --release --locked -p shopstream-generator -p shopstream-worker 2>&1 | tail -n 1
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

psql_q() { psql "$DB_URL" -Atqc "$1"; }
now() { date +%s.%N; }
stamp=$(date +%s)

wait_loaded() { # schema topic total
  local deadline=$((SECONDS + 900))
  until [[ "$(psql_q "SELECT coalesce(sum(next_offset),0) FROM $1.ingest_offsets WHERE topic = '$2'" 2>/dev/null)" == "$3" ]]; do
    (( SECONDS < deadline )) || { echo "timed out waiting for $1 to load $3 records" >&2; exit 1; }
    sleep 0.05
  done
}

wait_ready() { # metrics addr
  local deadline=$((SECONDS + 60))
  until curl -fs "http://$1/readyz" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { echo "worker never became ready" >&2; exit 1; }
    sleep 0.02
  done
}

echo "== 1. drain $EVENTS events with one worker (broker 127.0.0.1:$FAST_PORT, memory engine)"
topic="bench-worker-$stamp"
schema="bench_drain_$stamp"
tansu topic create "$topic" --partitions 4 --broker "tcp://127.0.0.1:$FAST_PORT" >/dev/null
"$bin/shopstream-generator" --brokers "127.0.0.1:$FAST_PORT" --topic "$topic" --rate 0 --total "$EVENTS" \
  --instance bench --summary-file "$work/fill.json" 2>/dev/null
"$bin/shopstream-worker" --brokers "127.0.0.1:$FAST_PORT" --topic "$topic" --schema "$schema" \
  --database-url "$DB_URL" --metrics-addr 127.0.0.1:19300 2>"$work/drain.log" &
wpid=$!; pids+=("$wpid")
wait_ready 127.0.0.1:19300
t0=$(now)
peak=0
deadline=$((SECONDS + 900))
until [[ "$(psql_q "SELECT coalesce(sum(next_offset),0) FROM $schema.ingest_offsets")" == "$EVENTS" ]]; do
  (( SECONDS < deadline )) || { echo "drain timed out" >&2; exit 1; }
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$wpid/status")
  (( rss > peak )) && peak=$rss
  sleep 0.05
done
t1=$(now)
peak=$(awk '/VmHWM/ {print $2}' "/proc/$wpid/status")
kill -TERM "$wpid"; wait "$wpid" || true
facts=$(psql_q "SELECT (SELECT count(*) FROM $schema.fact_sales) + (SELECT count(*) FROM $schema.fact_activity)")

echo "== 2. plain binary COPY of $facts rows into an empty copy of fact_sales"
copy_schema="bench_copy_$stamp"
psql_q "CREATE SCHEMA $copy_schema; CREATE TABLE $copy_schema.fact_sales (LIKE $schema.fact_sales INCLUDING ALL);"
psql "$DB_URL" -Atqc "COPY (
    SELECT gen_random_uuid(), 1, event_id, session_id, customer_key, product_key, date_key, time_key,
           'USD', 'card', coalesce(quantity, 1), list_price, 0::numeric, list_price, list_price, false,
           event_time, now(), kafka_partition, kafka_offset
    FROM $schema.fact_activity
    UNION ALL
    SELECT order_id, line_number, event_id, session_id, customer_key, product_key, date_key, time_key,
           currency, payment_method, quantity, unit_price, discount_amount, line_total, net_amount,
           is_first_order, event_time, loaded_at, kafka_partition, kafka_offset
    FROM $schema.fact_sales) TO STDOUT (FORMAT binary)" >"$work/facts.bin"
c0=$(now)
psql "$DB_URL" -Atqc "COPY $copy_schema.fact_sales FROM STDIN (FORMAT binary)" <"$work/facts.bin"
c1=$(now)

echo "== 3. latency at a steady $RATE events/s for ${SECONDS_STEADY}s (durable broker 127.0.0.1:9092)"
ltopic="bench-latency-$stamp"
lschema="bench_latency_$stamp"
tansu topic create "$ltopic" --partitions 4 --broker tcp://127.0.0.1:9092 >/dev/null
"$bin/shopstream-worker" --topic "$ltopic" --schema "$lschema" --database-url "$DB_URL" \
  --metrics-addr 127.0.0.1:19301 2>"$work/latency.log" &
lpid=$!; pids+=("$lpid")
wait_ready 127.0.0.1:19301
"$bin/shopstream-generator" --topic "$ltopic" --rate "$RATE" --duration "${SECONDS_STEADY}s" \
  --instance bench --summary-file "$work/steady.json" 2>/dev/null
ltotal=$(python3 -c "import json; print(json.load(open('$work/steady.json'))['messages_total'])")
wait_loaded "$lschema" "$ltopic" "$ltotal"
lat=$(psql_q "SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM loaded_at - event_time)))::int || ' ' ||
              round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM loaded_at - event_time)))::int
       FROM $lschema.fact_activity")
kill -TERM "$lpid"; wait "$lpid" || true

python3 - "$EVENTS" "$facts" "$t0" "$t1" "$c0" "$c1" "$peak" "$lat" "$RATE" <<'PY'
import sys
events, facts = int(sys.argv[1]), int(sys.argv[2])
t0, t1, c0, c1 = map(float, sys.argv[3:7])
peak_kb = int(sys.argv[7])
p50, p99 = map(int, sys.argv[8].split())
drain, copy = t1 - t0, c1 - c0
print()
print(f"drain:   {events:,} events in {drain:.2f} s = {events / drain:,.0f} events/s, {facts / drain:,.0f} fact rows/s")
print(f"COPY:    {facts:,} rows in {copy:.2f} s = {facts / copy:,.0f} rows/s")
print(f"ratio drain/COPY (rows/s): {copy / drain:.2f}   (goal >= 0.5)")
print(f"worker peak RSS: {peak_kb / 1024:.0f} MB   (goal < 100 MB)")
print(f"event-to-commit latency at {sys.argv[9]} events/s: p50 {p50} ms, p99 {p99} ms   (goal p99 < 1000 ms)")
PY
psql "$DB_URL" -qc "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE; DROP SCHEMA $copy_schema CASCADE; DROP SCHEMA $lschema CASCADE;"
