#!/usr/bin/env bash
# Quickstart: install/start what is missing, build in release mode, and run
# the pipeline locally: generator -> Kafka -> worker -> PostgreSQL star schema,
# then print KPIs from the reporting views. Safe to re-run (each run uses a
# fresh topic; the warehouse schema `quickstart` accumulates).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
DB_URL="${SHOPSTREAM_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shopstream}"
SCHEMA=quickstart
TOPIC="quickstart-$(date +%s)"

scripts/dev-deps.sh
echo "== building (release)"
cargo build --release --locked -p shopstream-generator -p shopstream-worker
bin="${CARGO_TARGET_DIR:-target}/release"
tansu topic create "$TOPIC" --partitions 4 --broker tcp://127.0.0.1:9092 >/dev/null

log=$(mktemp)
summary=$(mktemp --suffix=.json)
"$bin/shopstream-worker" --topic "$TOPIC" --schema "$SCHEMA" --database-url "$DB_URL" 2>"$log" &
worker=$!
trap 'kill $worker 2>/dev/null || true; rm -f "$log" "$summary"' EXIT

echo "== producing shop traffic to $TOPIC for 20 s at 2,000 events/s (1% deliberately invalid)"
"$bin/shopstream-generator" --topic "$TOPIC" --rate 2000 --duration 20s \
  --invalid-ratio 0.01 --progress-interval 5s --summary-file "$summary"
total=$(python3 -c "import json; print(json.load(open('$summary'))['messages_total'])")

echo "== waiting for the worker to load all $total messages"
psql_q() { psql "$DB_URL" -Atqc "$1"; }
deadline=$((SECONDS + 120))
until [[ "$(psql_q "SELECT coalesce(sum(next_offset), 0) FROM $SCHEMA.ingest_offsets WHERE topic = '$TOPIC'" 2>/dev/null)" == "$total" ]]; do
  (( SECONDS < deadline )) || { echo "the worker did not finish in time; its log:"; tail -n 20 "$log"; exit 1; }
  sleep 0.2
done
kill -TERM "$worker"; wait "$worker" || true

python3 - "$summary" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"generator audit: {s['events_total']} events ({s['events_by_type']}), {s['order_lines']} order lines, "
      f"net revenue {s['net_revenue']}, {s['invalid_total']} invalid")
PY
echo
echo "== KPIs (schema $SCHEMA, all runs so far)"
psql "$DB_URL" -P footer=off -c "SELECT orders, units, net_revenue, discounts, average_order_value, customers FROM $SCHEMA.v_financial_summary"
psql "$DB_URL" -P footer=off -c "SELECT name, category, units, net_revenue, view_to_purchase_rate FROM $SCHEMA.v_product_performance ORDER BY net_revenue DESC LIMIT 5"
psql "$DB_URL" -P footer=off -c "SELECT category, views, orders, units, net_revenue FROM $SCHEMA.v_category_performance ORDER BY net_revenue DESC"
psql "$DB_URL" -P footer=off -c "SELECT sessions_with_view, sessions_with_cart, sessions_with_purchase, view_to_cart_rate, cart_to_purchase_rate FROM $SCHEMA.v_customer_funnel"
psql "$DB_URL" -P footer=off -c "SELECT customer_type, orders, customers, net_revenue FROM $SCHEMA.v_customer_new_vs_returning ORDER BY 1"
psql "$DB_URL" -P footer=off -c "SELECT error_kind, count(*) FROM $SCHEMA.dead_letter GROUP BY 1 ORDER BY 2 DESC"
