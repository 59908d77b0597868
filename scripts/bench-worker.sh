#!/usr/bin/env bash
# Worker throughput, latency and memory against the dev broker (Apache Kafka on
# 127.0.0.1:9092) and PostgreSQL, with wall time AND CPU-seconds per process
# (worker, PostgreSQL, broker), since all of them share 2 cores.
#  1. Drain: pre-fill a topic with EVENTS events, then time one worker loading
#     it into an empty schema (events/s, fact rows/s, peak RSS).
#  2. The same fact rows through a plain binary COPY into an empty copy of
#     fact_sales (same indexes): the ratio drain/COPY, measured in this run.
#  3. Latency: generator at a steady RATE events/s for SECONDS s with a worker
#     following; p50/p99 of commit time minus event_time over the loaded rows.
# Goals: drain/COPY >= 0.8; p99 < 250 ms; RSS < 100 MB.
# Usage: scripts/bench-worker.sh [EVENTS] [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-500000}"
RATE="${2:-5000}"
SECONDS_STEADY="${3:-30}"
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/lib/bench.sh
DB_URL="$BENCH_DB_URL"

bench_setup generator worker
bin="$BIN"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
stamp=$(date +%s)

echo "== 1. drain $EVENTS events with one worker (broker $BENCH_BROKERS)"
topic="bench-worker-$stamp"
schema="bench_drain_$stamp"
create_topic "$topic" 4
"$bin/shopstream-generator" --brokers "$BENCH_BROKERS" --topic "$topic" --rate 0 --total "$EVENTS" \
  --instance bench --summary-file "$work/fill.json" 2>/dev/null
"$bin/shopstream-worker" --brokers "$BENCH_BROKERS" --topic "$topic" --schema "$schema" \
  --database-url "$DB_URL" --metrics-addr 127.0.0.1:19300 2>"$work/drain.log" &
wpid=$!; pids+=("$wpid")
wait_ready 127.0.0.1:19300
w0=$(ticks "$wpid"); pg0=$(pg_ticks); k0=$(broker_ticks)
t0=$(now)
wait_loaded "$schema" "$topic" "$EVENTS"
t1=$(now)
drain_cpu="$(secs $(( $(ticks "$wpid") - w0 ))) $(secs $(( $(pg_ticks) - pg0 ))) $(secs $(( $(broker_ticks) - k0 )))"
peak=$(awk '/VmHWM/ {print $2}' "/proc/$wpid/status")
kill -TERM "$wpid"; wait "$wpid" || true
facts=$(psql_q "SELECT (SELECT count(*) FROM $schema.fact_sales) + (SELECT count(*) FROM $schema.fact_activity)")

echo "== 2. plain binary COPY of $facts rows into an empty copy of fact_sales"
copy_schema="bench_copy_$stamp"
psql_q "CREATE SCHEMA $copy_schema; CREATE TABLE $copy_schema.fact_sales (LIKE $schema.fact_sales INCLUDING ALL);"
psql "$DB_URL" -Atqc "COPY (
    SELECT gen_random_uuid(), 1, event_id, session_id, customer_key, product_key, date_key, time_key,
           'USD', 'card', coalesce(quantity, 1), list_price, 0::numeric, list_price, list_price, false,
           event_time, now(), kafka_partition, kafka_offset, device_key, channel_key
    FROM $schema.fact_activity
    UNION ALL
    SELECT order_id, line_number, event_id, session_id, customer_key, product_key, date_key, time_key,
           currency, payment_method, quantity, unit_price, discount_amount, line_total, net_amount,
           is_first_order, event_time, loaded_at, kafka_partition, kafka_offset, device_key, channel_key
    FROM $schema.fact_sales) TO STDOUT (FORMAT binary)" >"$work/facts.bin"
# The COPY runs in one backend that exits with psql: read its CPU from inside
# the session, after the COPY and before the end.
c0=$(now)
copy_ticks=$(psql "$DB_URL" -Atq <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BACKEND :pid
\copy $copy_schema.fact_sales FROM '$work/facts.bin' (FORMAT binary)
\! awk '{print \$14 + \$15}' /proc/\$BACKEND/stat
SQL
)
c1=$(now)
copy_cpu=$(secs "$copy_ticks")

echo "== 3. latency at a steady $RATE events/s for ${SECONDS_STEADY}s"
ltopic="bench-latency-$stamp"
lschema="bench_latency_$stamp"
create_topic "$ltopic" 4
"$bin/shopstream-worker" --brokers "$BENCH_BROKERS" --topic "$ltopic" --schema "$lschema" --database-url "$DB_URL" \
  --metrics-addr 127.0.0.1:19301 2>"$work/latency.log" &
lpid=$!; pids+=("$lpid")
wait_ready 127.0.0.1:19301
w0=$(ticks "$lpid"); pg0=$(pg_ticks); k0=$(broker_ticks)
# No late sessions here: their event times lag by design (an offline phone),
# which would measure the phone, not the pipeline.
gen_cpu=$(python3 - "$bin/shopstream-generator" --brokers "$BENCH_BROKERS" --topic "$ltopic" --rate "$RATE" \
  --duration "${SECONDS_STEADY}s" --late-ratio 0 --instance bench --summary-file "$work/steady.json" <<'PY'
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL).returncode
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
if rc != 0:
    sys.exit(f"generator exited with {rc}")
print(f"{ru.ru_utime + ru.ru_stime:.1f}")
PY
)
ltotal=$(python3 -c "import json; print(json.load(open('$work/steady.json'))['messages_total'])")
wait_loaded "$lschema" "$ltopic" "$ltotal"
steady_cpu="$(secs $(( $(ticks "$lpid") - w0 ))) $(secs $(( $(pg_ticks) - pg0 ))) $(secs $(( $(broker_ticks) - k0 ))) $gen_cpu"
lat=$(psql_q "SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM loaded_at - event_time)))::int || ' ' ||
              round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM loaded_at - event_time)))::int
       FROM $lschema.fact_activity")
lrss=$(awk '/VmHWM/ {print $2}' "/proc/$lpid/status")
kill -TERM "$lpid"; wait "$lpid" || true

python3 - "$EVENTS" "$facts" "$t0" "$t1" "$c0" "$c1" "$peak" "$lat" "$RATE" "$drain_cpu" "$copy_cpu" "$steady_cpu" "$lrss" "$SECONDS_STEADY" <<'PY'
import sys
events, facts = int(sys.argv[1]), int(sys.argv[2])
t0, t1, c0, c1 = map(float, sys.argv[3:7])
peak_kb = int(sys.argv[7])
p50, p99 = map(int, sys.argv[8].split())
rate = sys.argv[9]
w_cpu, pg_cpu, k_cpu = map(float, sys.argv[10].split())
copy_cpu = float(sys.argv[11])
sw, spg, sk, sg = map(float, sys.argv[12].split())
lrss_kb, steady_s = int(sys.argv[13]), sys.argv[14]
drain, copy = t1 - t0, c1 - c0
print()
print(f"drain:   {events:,} events in {drain:.2f} s = {events / drain:,.0f} events/s, {facts / drain:,.0f} fact rows/s")
print(f"         CPU-s: worker {w_cpu:.1f}, PostgreSQL {pg_cpu:.1f}, broker {k_cpu:.1f} "
      f"(= {(w_cpu + pg_cpu + k_cpu) / drain:.2f} of 2 cores)")
print(f"COPY:    {facts:,} rows in {copy:.2f} s = {facts / copy:,.0f} rows/s; CPU-s: PostgreSQL {copy_cpu:.1f}")
print(f"ratio drain/COPY (rows/s): {copy / drain:.2f}   (goal >= 0.8)")
print(f"worker peak RSS: drain {peak_kb / 1024:.0f} MB, steady {lrss_kb / 1024:.0f} MB   (goal < 100 MB)")
print(f"event-to-commit latency at {rate} events/s: p50 {p50} ms, p99 {p99} ms   (goal p99 < 250 ms)")
print(f"         CPU-s over {steady_s} s: worker {sw:.1f}, generator {sg:.1f}, PostgreSQL {spg:.1f}, broker {sk:.1f}")
PY
psql "$DB_URL" -qc "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE; DROP SCHEMA $copy_schema CASCADE; DROP SCHEMA $lschema CASCADE;"
