#!/usr/bin/env bash
# Start a tansu broker on 127.0.0.1:PORT unless one is listening there.
#   ENGINE=sqlite  durable, correct offsets: the default for development and tests
#   ENGINE=memory  much faster but unsafe for resuming consumers (see BROKER.md):
#                  only for throughput benchmarks that drain from offset 0
#   --fresh        stop the broker this script started on PORT and wipe its data
#                  (the test run uses a throw-away broker so data never piles up)
# Usage: scripts/start-broker.sh [PORT] [sqlite|memory] [--fresh]
set -euo pipefail
PORT="${1:-9092}"
ENGINE="${2:-sqlite}"
FRESH="${3:-}"
DEV_DIR="${SHOPSTREAM_DEV_DIR:-/var/tmp/shopstream-dev}"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'broker: %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "$ENGINE" in
  sqlite) storage="sqlite://tansu.db" ;;
  memory) storage="memory://tansu/" ;;
  *) echo "usage: $0 [PORT] [sqlite|memory]" >&2; exit 2 ;;
esac

dir="$DEV_DIR/broker-$PORT-$ENGINE"
ours_running() { [[ -f "$dir/broker.pid" ]] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; }
stop_ours() {
  local pid
  pid=$(cat "$dir/broker.pid")
  kill "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  say "stopped the previous broker on port $PORT ($1)"
}
if [[ "$FRESH" == "--fresh" ]]; then
  ours_running && stop_ours "fresh start"
  rm -rf "$dir"
elif ours_running && [[ "$(command -v tansu)" -nt "$dir/broker.pid" ]]; then
  # A rebuilt broker (e.g. with a new fix) replaces the old process; data is kept.
  stop_ours "tansu was reinstalled"
fi

if port_open "$PORT"; then
  say "already listening on 127.0.0.1:$PORT"
  exit 0
fi
command -v tansu >/dev/null || { say "ERROR: tansu is not installed; run scripts/dev-deps.sh"; exit 1; }

mkdir -p "$dir"
say "starting tansu ($ENGINE) on 127.0.0.1:$PORT; data and log in $dir"
(
  # tansu resolves the SQLite path relative to the working directory.
  cd "$dir"
  # setsid: the broker outlives this script and the CI step that ran it.
  setsid nohup tansu broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine "$storage" >broker.log 2>&1 </dev/null &
  echo $! >broker.pid
)
deadline=$((SECONDS + 30))
until port_open "$PORT"; do
  if (( SECONDS >= deadline )); then
    say "ERROR: tansu did not open port $PORT within 30 s; last log lines:"
    tail -n 20 "$dir/broker.log" >&2
    exit 1
  fi
  sleep 0.2
done
say "ready on 127.0.0.1:$PORT"
