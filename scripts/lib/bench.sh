# Shared by the bench-*.sh scripts (sourced): the dev broker, topic creation,
# and CPU accounting per process, so figures on 2 shared cores can be compared.

BENCH_DB_URL="${SHOPSTREAM_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shopstream}"
BENCH_BROKERS=127.0.0.1:9092
CLK_TCK=$(getconf CLK_TCK)

# Start (if needed) PostgreSQL and the dev broker; build the release binaries named.
bench_setup() {
  scripts/dev-deps.sh >/dev/null
  BROKER_PID=$(cat "${SHOPSTREAM_DEV_DIR:-/var/tmp/shopstream-dev}/kafka-9092/broker.pid")
  KAFKA_LIBS=$(scripts/install-kafka.sh 2>/dev/null)
  local pkgs=()
  for p in "$@"; do pkgs+=(-p "shopstream-$p"); done
  cargo build --release --locked "${pkgs[@]}" 2>&1 | tail -n 1
  BIN="${CARGO_TARGET_DIR:-target}/release"
}

# create_topic NAME PARTITIONS: Kafka's own topic tool against the dev broker.
create_topic() {
  java -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$KAFKA_LIBS/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$BENCH_BROKERS" --create --topic "$1" \
    --partitions "$2" --replication-factor 1 >/dev/null
}

# CPU ticks (user + system) used so far by the given pids (0 for gone ones).
ticks() {
  local total=0 p f
  for p in "$@"; do
    if [[ -r /proc/$p/stat ]]; then
      f=$(sed 's/^.*) //' "/proc/$p/stat")
      read -r -a a <<<"$f"
      total=$((total + a[11] + a[12]))
    fi
  done
  echo "$total"
}
# CPU ticks of every PostgreSQL server process alive now (backends included).
pg_ticks() { ticks $(pgrep -x postgres || true); }
broker_ticks() { ticks "$BROKER_PID"; }
# seconds TICKS
secs() { awk -v t="$1" -v c="$CLK_TCK" 'BEGIN { printf "%.1f", t / c }'; }
now() { date +%s.%N; }
psql_q() { psql "$BENCH_DB_URL" -Atqc "$1"; }

wait_loaded() { # schema topic total [timeout_s]
  local deadline=$((SECONDS + ${4:-900}))
  until [[ "$(psql_q "SELECT coalesce(sum(next_offset),0) FROM $1.ingest_offsets WHERE topic = '$2'" 2>/dev/null)" == "$3" ]]; do
    (( SECONDS < deadline )) || { echo "timed out waiting for $1 to load $3 records" >&2; exit 1; }
    sleep 0.05
  done
}

wait_ready() { # metrics addr
  local deadline=$((SECONDS + 60))
  until curl -fs "http://$1/readyz" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { echo "worker at $1 never became ready" >&2; exit 1; }
    sleep 0.02
  done
}
