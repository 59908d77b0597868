#!/usr/bin/env bash
# Install (if absent) and start what Shopstream needs locally:
#   - build tools and headers for the Rust crates (Debian packages),
#   - PostgreSQL on 127.0.0.1:5432,
#   - Apache Kafka (scripts/install-kafka.sh: Java 17 and Maven from Debian when
#     missing, the broker's jars from Maven Central) on 127.0.0.1:9092, with its
#     SASL (9093) and TLS (9094) listeners (scripts/start-broker.sh);
#     --no-broker skips starting it (the test run starts a throw-away one),
#   - with --with-browser, Debian's headless-capable Chromium (the dashboard's
#     browser test needs it).
# Idempotent: safe to re-run; prints what it did.
set -euo pipefail

BROKER_PORT="${SHOPSTREAM_BROKER_PORT:-9092}"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'dev-deps: %s\n' "$*"; }

with_browser=0
with_broker=1
for arg in "$@"; do
  case "$arg" in
    --with-browser) with_browser=1 ;;
    --no-broker) with_broker=0 ;;
    *) echo "usage: $0 [--with-browser] [--no-broker]" >&2; exit 2 ;;
  esac
done

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    say "ERROR: missing $*; install them with your package manager"
    return 1
  fi
  say "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- build prerequisites (rdkafka builds librdkafka from source) ----------------
missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v make >/dev/null || missing+=(make)
command -v pkg-config >/dev/null || missing+=(pkg-config)
[[ -f /usr/include/openssl/ssl.h ]] || missing+=(libssl-dev)
[[ -f /usr/include/zlib.h ]] || missing+=(zlib1g-dev)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v python3 >/dev/null || missing+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if (( ${#missing[@]} )); then apt_install "${missing[@]}"; else say "build prerequisites present"; fi
if (( with_browser )); then "$(dirname "$0")/install-browser.sh"; fi

if ! command -v cargo >/dev/null; then
  say "ERROR: cargo not found; install Rust 1.95 with rustup first (https://rustup.rs)"
  exit 1
fi

# --- PostgreSQL -----------------------------------------------------------------
# Local development only: trust connections from this machine. Also applied to
# a PostgreSQL that came preinstalled (its Debian default asks for passwords).
trust_local() {
  local changed=1 hba
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    if ! grep -q 'shopstream-dev' "$hba"; then
      as_root sed -i '1i host all all 127.0.0.1/32 trust # shopstream-dev\nlocal all all trust # shopstream-dev' "$hba"
      say "PostgreSQL: trusting local connections ($hba)"
      changed=0
    fi
  done
  return $changed
}
ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_install postgresql
version=$(ls /etc/postgresql | sort -V | tail -n1)
if trust_local && pg_isready -q -h 127.0.0.1 -p 5432; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi
if pg_isready -q -h 127.0.0.1 -p 5432; then
  say "PostgreSQL already running on 127.0.0.1:5432"
else
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  deadline=$((SECONDS + 30))
  until pg_isready -q -h 127.0.0.1 -p 5432; do
    (( SECONDS < deadline )) || { say "ERROR: PostgreSQL did not become ready"; exit 1; }
    sleep 0.2
  done
  say "PostgreSQL is ready"
fi

# TLS with a certificate from a CA made here (for the tests' sslmode=verify-full):
# the server certificate names only DNS:localhost, so a client that dials
# 127.0.0.1 and verifies the host name is refused, as it should be.
# Made once; the CA is at $DEV_DIR/pg-tls/ca.crt for clients.
DEV_DIR="${SHOPSTREAM_DEV_DIR:-/var/tmp/shopstream-dev}"
pg_tls="$DEV_DIR/pg-tls"
pg_conf="/etc/postgresql/$version/main/conf.d/shopstream-tls.conf"
if [[ ! -f "$pg_tls/server.crt" || ! -f "$pg_conf" ]]; then
  as_root mkdir -p "$pg_tls"
  (
    cd "$pg_tls"
    as_root openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shopstream-dev-postgres-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    as_root openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\n' | as_root tee san.ext >/dev/null
    as_root openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out server.crt 2>/dev/null
    as_root chown postgres:postgres server.key server.crt
    as_root chmod 0600 server.key
    as_root chmod 0644 ca.crt server.crt
    as_root chmod 0755 .
  )
  printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" "$pg_tls/server.crt" "$pg_tls/server.key" \
    | as_root tee "$pg_conf" >/dev/null
  psql -w -h 127.0.0.1 -U postgres -qAtc "SELECT pg_reload_conf()" postgres >/dev/null
  say "PostgreSQL: TLS with a certificate for localhost from the CA $pg_tls/ca.crt"
fi

# Databases for the quickstart and the tests (one schema per pipeline/test inside).
for db in shopstream shopstream_test; do
  if psql -w -h 127.0.0.1 -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" postgres | grep -q 1; then
    :
  else
    createdb -w -h 127.0.0.1 -U postgres "$db"
    say "created database $db"
  fi
done

# --- the broker -----------------------------------------------------------------
"$(dirname "$0")/install-kafka.sh" >/dev/null
if (( with_broker )); then
  "$(dirname "$0")/start-broker.sh" --port "$BROKER_PORT" >/dev/null
fi
