#!/usr/bin/env bash
# Start a single-node Apache Kafka (KRaft: broker and controller in one JVM) on
# loopback, unless ours already runs there. Listeners, from the base port P:
#   P    PLAINTEXT
#   P+1  SASL_PLAINTEXT, SCRAM-SHA-512 (user created when the log dir is formatted)
#   P+2  SSL (server certificate signed by a CA made here with openssl)
#   P+3  the KRaft controller
# Usage: scripts/start-broker.sh [--port P] [--fresh] [--stop]
#   --port P  base port (default 9092, the development broker)
#   --fresh   stop the broker this script started on P and wipe its data
#             (the test run uses a throw-away broker so data never piles up)
#   --stop    stop it and exit
# Progress goes to stderr; stdout gets only `export BROKER_...=...` lines
# (bootstrap servers per listener, CA file, SCRAM user and password, log), so
# `eval "$(scripts/start-broker.sh)"` configures a shell. The same lines are
# kept in DIR/broker.env.
#   SHOPSTREAM_DEV_DIR      where broker directories live (default /var/tmp/shopstream-dev)
#   SHOPSTREAM_BROKER_HEAP  max JVM heap (default 768m)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PORT=9092
FRESH=0
STOP=0
usage() { echo "usage: $0 [--port P] [--fresh] [--stop]" >&2; exit 2; }
while (( $# )); do
  case "$1" in
    --port) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; PORT=$2; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    --stop) STOP=1; shift ;;
    *) usage ;;
  esac
done
SASL_PORT=$((PORT + 1))
SSL_PORT=$((PORT + 2))
CONTROLLER_PORT=$((PORT + 3))
DEV_DIR="${SHOPSTREAM_DEV_DIR:-/var/tmp/shopstream-dev}"
HEAP="${SHOPSTREAM_BROKER_HEAP:-768m}"
dir="$DEV_DIR/kafka-$PORT"
SCRAM_USER=shopstream

say() { printf 'broker: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ours: the recorded pid is alive and is this broker (a stale pid may be reused).
ours_running() {
  [[ -f "$dir/broker.pid" ]] && grep -qa "$dir/server.properties" "/proc/$(cat "$dir/broker.pid")/cmdline" 2>/dev/null
}
stop_ours() {
  local pid deadline
  pid=$(cat "$dir/broker.pid")
  kill "$pid" 2>/dev/null || true
  # A controlled shutdown takes a few seconds; a broker that hangs is killed.
  deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/broker.pid"
  say "stopped the broker on port $PORT ($1)"
}

if (( STOP )); then
  if ours_running; then stop_ours "--stop"; else say "no broker of ours runs on port $PORT"; fi
  exit 0
fi
if (( FRESH )); then
  if ours_running; then stop_ours "fresh start"; fi
  rm -rf "$dir"
fi

LIBS=$("$here/install-kafka.sh")
kafka_java() { java -Xshare:auto -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$LIBS/*" "$@"; }

if ours_running; then
  say "already running on 127.0.0.1:$PORT (log $dir/broker.log)"
  cat "$dir/broker.env"
  exit 0
fi
for p in "$PORT" "$SASL_PORT" "$SSL_PORT" "$CONTROLLER_PORT"; do
  if port_open "$p"; then
    say "ERROR: port $p is taken by a process this script did not start; pick another --port"
    exit 1
  fi
done

mkdir -p "$dir"
# --- TLS material: a CA and a server certificate for 127.0.0.1/localhost ---------
if [[ ! -f "$dir/tls/server.p12" ]]; then
  say "making a CA and a server certificate in $dir/tls"
  rm -rf "$dir/tls"
  mkdir -p "$dir/tls"
  (
    cd "$dir/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shopstream-dev-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
    openssl rand -hex 16 >keystore.password
    openssl pkcs12 -export -in server.crt -inkey server.key -certfile ca.crt -name broker \
      -passout "file:keystore.password" -out server.p12
    chmod 600 ca.key server.key keystore.password
  )
fi
keystore_password=$(cat "$dir/tls/keystore.password")

# --- server.properties -------------------------------------------------------------
cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.ssl.ssl.keystore.type=PKCS12
listener.name.ssl.ssl.keystore.location=$dir/tls/server.p12
listener.name.ssl.ssl.keystore.password=$keystore_password
listener.name.ssl.ssl.key.password=$keystore_password
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
# Consumer protocol (KIP-848): a departed consumer's partitions move after its
# session times out (default 45 s; tests kill workers on purpose and wait for
# it), and each step of a reassignment reaches the members on their next
# heartbeat, while librdkafka 2.12 fetches nothing for the partitions a member
# keeps (measured: one heartbeat interval per step, scripts/bench-rebalance.sh).
# Hence 500 ms heartbeats instead of the default 5 s; the same advice holds
# for production clusters that scale consumers often.
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=500
EOF

# --- format once, with the SCRAM user ----------------------------------------------
if [[ ! -f "$dir/data/meta.properties" ]]; then
  openssl rand -hex 16 >"$dir/scram.password"
  chmod 600 "$dir/scram.password"
  cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid)
  say "formatting $dir/data (cluster $cluster_id, SCRAM-SHA-512 user $SCRAM_USER)"
  kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$dir/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$(cat "$dir/scram.password")]" >"$dir/format.log" 2>&1 \
    || { say "ERROR: formatting failed:"; cat "$dir/format.log" >&2; exit 1; }
fi

kafka_version=$(basename "$(dirname "$LIBS")")
say "starting Apache ${kafka_version/kafka-/Kafka } on 127.0.0.1:$PORT (SASL $SASL_PORT, SSL $SSL_PORT); log $dir/broker.log"
(
  cd "$dir"
  # setsid: the broker outlives this script and the CI step that ran it.
  setsid nohup java -Xms256m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -Djava.awt.headless=true \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" >broker.log 2>&1 </dev/null &
  echo $! >broker.pid
)

# Ready when a real metadata request answers, not when the port opens.
deadline=$((SECONDS + 90))
until port_open "$PORT" && kafka_java org.apache.kafka.tools.ClusterTool cluster-id \
    --bootstrap-server "127.0.0.1:$PORT" >/dev/null 2>&1; do
  if ! ours_running || (( SECONDS >= deadline )); then
    say "ERROR: the broker did not answer on 127.0.0.1:$PORT; last log lines:"
    tail -n 30 "$dir/broker.log" >&2
    exit 1
  fi
  sleep 0.5
done

cat >"$dir/broker.env" <<EOF
export BROKER_BOOTSTRAP=127.0.0.1:$PORT
export BROKER_SASL_BOOTSTRAP=127.0.0.1:$SASL_PORT
export BROKER_SSL_BOOTSTRAP=127.0.0.1:$SSL_PORT
export BROKER_CA_FILE=$dir/tls/ca.crt
export BROKER_SCRAM_USERNAME=$SCRAM_USER
export BROKER_SCRAM_PASSWORD=$(cat "$dir/scram.password")
export BROKER_LOG=$dir/broker.log
EOF
chmod 600 "$dir/broker.env"
say "ready on 127.0.0.1:$PORT; log $dir/broker.log"
cat "$dir/broker.env"
