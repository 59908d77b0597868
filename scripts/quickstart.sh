#!/usr/bin/env bash
# Quickstart: install/start what is missing (PostgreSQL, the broker, build
# tools), build in release mode, and run examples/quickstart.yaml on this
# machine for about a minute with the local runtime: generators -> Kafka ->
# workers -> PostgreSQL star schema, the workers scaling up in the burst and
# back down after it, with the live dashboard on http://127.0.0.1:8080/.
# Ends with the audit and a KPI report, and leaves the dashboard running
# (stop it with `kill $(cat target/quickstart-dashboard.pid)`). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
DB_URL="${SHOPSTREAM_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shopstream}"
SCHEMA=quickstart
PORT="${SHOPSTREAM_DASHBOARD_PORT:-8080}"

scripts/dev-deps.sh
echo "== building (release)"
cargo build --release --locked -p shopstream-operator -p shopstream-worker -p shopstream-generator \
  -p shopstream-dashboard
bin="${CARGO_TARGET_DIR:-target}/release"
mkdir -p target
pidfile=target/quickstart-dashboard.pid
# A dashboard left by an earlier run would hold the port.
if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  kill "$(cat "$pidfile")" && echo "== stopped the dashboard of an earlier run"
fi
rm -f "$pidfile"

echo "== running examples/quickstart.yaml locally (about a minute; Ctrl-C stops it cleanly)"
SHOPSTREAM_SECRET_WAREHOUSE_URL="$DB_URL" \
  "$bin/shopstream-operator" local -f examples/quickstart.yaml --secrets examples/local-secrets.yaml \
  --dashboard-port "$PORT"

echo
echo "== KPIs from the warehouse views (schema $SCHEMA, all runs so far)"
q() { psql "$DB_URL" -P footer=off -c "$1"; }
q "SELECT orders, units, net_revenue, discounts, average_order_value, customers FROM $SCHEMA.v_financial_summary"
q "SELECT name, category, units, net_revenue, view_to_purchase_rate FROM $SCHEMA.v_product_performance ORDER BY net_revenue DESC LIMIT 5"
q "SELECT category, views, orders, units, net_revenue FROM $SCHEMA.v_category_performance ORDER BY net_revenue DESC"
q "SELECT sessions_with_view, sessions_with_cart, sessions_with_purchase, view_to_cart_rate, cart_to_purchase_rate, view_to_purchase_rate FROM $SCHEMA.v_customer_funnel"
q "SELECT customer_type, orders, customers, net_revenue FROM $SCHEMA.v_customer_new_vs_returning ORDER BY 1"
q "SELECT orders, pending_orders, completed_orders, canceled_orders, refunded_orders, booked_revenue, canceled_revenue, refunded_revenue, net_realised_revenue FROM $SCHEMA.v_revenue_by_status"
q "SELECT error_kind, count(*) AS dead_letters FROM $SCHEMA.dead_letter GROUP BY 1 ORDER BY 2 DESC"

# Keep the dashboard up after the run so the numbers can be explored.
SHOPSTREAM_DATABASE_URL="$DB_URL" SHOPSTREAM_SCHEMA="$SCHEMA" SHOPSTREAM_LISTEN="127.0.0.1:$PORT" \
  nohup "$bin/shopstream-dashboard" >target/quickstart-dashboard.log 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then
  echo "== dashboard: http://127.0.0.1:$PORT/ (log target/quickstart-dashboard.log; stop: kill \$(cat $pidfile))"
else
  echo "== the dashboard did not come up; see target/quickstart-dashboard.log" >&2
  exit 1
fi
