#!/usr/bin/env bash
# Smoke-test the image scripts/build-image.sh built, as Kubernetes would run
# it: its root filesystem unpacked from the OCI layout, mounted read-only,
# each binary run as the image's UID. Checks:
#   - the Dockerfile and the image's configuration agree with image/spec.env;
#   - every binary starts (`--help` exits 0): loader, libraries, no writes;
#   - `shopstream-operator local` from the image runs a generator and a worker
#     from the image against the test broker and PostgreSQL; the audit matches;
#   - TLS with the image's OpenSSL and CA bundle (plus the test CA): a
#     generator delivers over the broker's SSL listener, and a worker loads
#     into a PostgreSQL serving TLS, certificate and host name verified.
# Needs root (a mount namespace and chroot), the test broker (BROKER_* of
# scripts/start-broker.sh) and SHOPSTREAM_TEST_DATABASE_URL.
#
#   scripts/smoke-image.sh OCI_LAYOUT TAG
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 OCI_LAYOUT TAG" >&2
  exit 2
fi
layout=$1 tag=$2
here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../image/spec.env
source "$here/image/spec.env"
: "${BROKER_BOOTSTRAP:?start the test broker (scripts/start-broker.sh) and source its env}"
: "${SHOPSTREAM_TEST_DATABASE_URL:?set SHOPSTREAM_TEST_DATABASE_URL}"
say() { echo "smoke-image: $*"; }
fail() { echo "smoke-image: FAILED: $*" >&2; exit 1; }

# 1. One definition: the Dockerfile and the built configuration say the same.
dockerfile="$here/Dockerfile"
grep -qx "USER $IMAGE_UID:$IMAGE_GID" "$dockerfile" || fail "Dockerfile USER is not $IMAGE_UID:$IMAGE_GID"
grep -qx "EXPOSE $IMAGE_PORTS" "$dockerfile" || fail "Dockerfile EXPOSE is not $IMAGE_PORTS"
grep -qx "ENTRYPOINT \[\"$IMAGE_ENTRYPOINT\"\]" "$dockerfile" || fail "Dockerfile ENTRYPOINT is not $IMAGE_ENTRYPOINT"
grep -qx "CMD \[\"$IMAGE_CMD\"\]" "$dockerfile" || fail "Dockerfile CMD is not $IMAGE_CMD"
grep -q "scripts/stage-rootfs.sh /out /rootfs" "$dockerfile" || fail "the Dockerfile does not stage with scripts/stage-rootfs.sh"
python3 - "$layout" "$IMAGE_UID:$IMAGE_GID" "$IMAGE_ENTRYPOINT" "$IMAGE_CMD" "$IMAGE_PORTS" <<'PY' || fail "image configuration"
import json, sys
layout, user, entrypoint, cmd, ports = sys.argv[1:]
blob = lambda d: f"{layout}/blobs/{d.replace(':', '/')}"
manifest = json.load(open(blob(json.load(open(f"{layout}/index.json"))["manifests"][0]["digest"])))
c = json.load(open(blob(manifest["config"]["digest"])))["config"]
want = {"User": user, "Entrypoint": [entrypoint], "Cmd": [cmd], "ExposedPorts": sorted(ports.split())}
got = {"User": c.get("User"), "Entrypoint": c.get("Entrypoint"), "Cmd": c.get("Cmd"),
       "ExposedPorts": sorted(c.get("ExposedPorts", {}))}
if want != got:
    sys.exit(f"configuration {got} is not {want}")
compressed = sum(l["size"] for l in manifest["layers"])
if compressed > 60e6:
    sys.exit(f"{compressed / 1e6:.1f} MB compressed: over the 60 MB budget (README, The image)")
PY
# The docker-load archive beside the layout: the same image under its name.
python3 - "$layout" "$(dirname "$layout")/shopstream-$tag.tar" "$IMAGE_REPOSITORY:$tag" <<'PY' || fail "docker archive"
import json, sys, tarfile
layout, archive, name = sys.argv[1:]
blob = lambda d: f"{layout}/blobs/{d.replace(':', '/')}"
manifest = json.load(open(blob(json.load(open(f"{layout}/index.json"))["manifests"][0]["digest"])))
oci = json.load(open(blob(manifest["config"]["digest"])))
with tarfile.open(archive) as t:
    [entry] = json.load(t.extractfile("manifest.json"))
    docker = json.load(t.extractfile(entry["Config"]))
if entry["RepoTags"] != [name]:
    sys.exit(f"archive tags {entry['RepoTags']}, not {name}")
if docker["rootfs"]["diff_ids"] != oci["rootfs"]["diff_ids"] or docker["config"] != oci["config"]:
    sys.exit("the archive's image differs from the OCI layout's")
PY
grep -A1 '^image:' "$here/charts/shopstream/values.yaml" | grep -q "repository: $IMAGE_REPOSITORY\$" ||
  fail "the chart's image.repository is not $IMAGE_REPOSITORY"
say "Dockerfile, image/spec.env, the chart and the image configuration agree"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umoci unpack --image "$layout:$tag" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$work/rw"
chmod 0777 "$work/rw"

# Run a command from the image: its root read-only, /proc and /dev as a
# container has them, one writable directory at /tmp, as the image's UID.
in_image() {
  unshare --mount --fork -- bash -s "$rootfs" "$work/rw" "$IMAGE_UID:$IMAGE_GID" "$@" <<'SH'
set -euo pipefail
root=$1 rw=$2 user=$3
shift 3
mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$rw" "$root/tmp"
# As a container runtime does: the host's name resolution.
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
mount -o remount,bind,ro "$root"
exec chroot --userspec="$user" "$root" "$@"
SH
}

# 2. Every binary starts from the read-only root as the non-root UID.
for b in $IMAGE_BINARIES; do
  in_image "/usr/local/bin/$b" --help >/dev/null || fail "$b --help"
done
in_image /usr/local/bin/shopstream-worker --no-such-flag >/dev/null 2>&1 && fail "a bad flag was accepted"
in_image /usr/local/bin/shopstream-operator run --help | grep -qF "[default: $IMAGE_REPOSITORY:$tag]" ||
  fail "the operator's --default-image is not $IMAGE_REPOSITORY:$tag"
if in_image /bin/sh -c true 2>/dev/null; then fail "the image has a shell"; fi
say "every binary starts read-only as UID $IMAGE_UID; no shell in the image"

# 3. A pipeline from the image: generator and worker load a topic; the audit matches.
suffix="$(date +%s)$$"
cat > "$work/rw/pipeline.yaml" <<YAML
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {name: image}
spec:
  kafka: {bootstrapServers: "$BROKER_BOOTSTRAP", topic: image_smoke_$suffix, partitions: 2}
  warehouse: {connectionSecretRef: {name: warehouse, key: url}, schema: image_smoke_$suffix}
  generator: {eventsPerSecond: 500, invalidRatio: 0.02}
  workers: {replicas: 1, batch: {maxRecords: 500, maxWaitMs: 200}}
YAML
out="$(SHOPSTREAM_SECRET_WAREHOUSE_URL="$SHOPSTREAM_TEST_DATABASE_URL" in_image /usr/local/bin/shopstream-operator \
  local -f /tmp/pipeline.yaml --bin-dir /usr/local/bin --run-dir /tmp/run --duration 5s --drain-timeout 60s 2>&1)" \
  || { echo "$out"; fail "operator local from the image"; }
grep -qx "MATCH" <<<"$out" || { echo "$out"; fail "the audit did not match"; }
grep "run finished" <<<"$out" | sed 's/^/smoke-image:   /'
psql -q "$SHOPSTREAM_TEST_DATABASE_URL" -c "DROP SCHEMA IF EXISTS image_smoke_$suffix CASCADE" 2>/dev/null || true
say "a generator and a worker from the image loaded a topic; the audit matched"

# 4. TLS with the image's OpenSSL and CA bundle plus the test CA.
if [[ -n "${BROKER_SSL_BOOTSTRAP:-}" && -n "${BROKER_CA_FILE:-}" ]]; then
  cat "$rootfs/etc/ssl/certs/ca-certificates.crt" "$BROKER_CA_FILE" > "$work/rw/bundle.pem"
  in_image /usr/local/bin/shopstream-generator --brokers "$BROKER_SSL_BOOTSTRAP" --kafka-security-protocol ssl \
    --kafka-ca-file /tmp/bundle.pem --topic "image_smoke_$suffix" --total 200 --summary-file /tmp/tls.json \
    --log-format json >"$work/tls.log" 2>&1 || true
  delivered="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages_total"])' "$work/rw/tls.json" 2>/dev/null || echo 0)"
  [[ "$delivered" == 200 ]] || { tail -5 "$work/tls.log"; fail "over TLS: $delivered of 200 delivered"; }
  # The image's bundle alone does not know the test CA: verification is real.
  if in_image /usr/local/bin/shopstream-generator --brokers "$BROKER_SSL_BOOTSTRAP" --kafka-security-protocol ssl \
    --topic "image_smoke_$suffix" --total 1 --connect-timeout 5s >/dev/null 2>&1; then
    fail "TLS to the test broker succeeded without its CA"
  fi
  say "TLS to the broker's SSL listener verified with the image's CA bundle plus the test CA (and refused without it)"
fi
# 5. TLS to PostgreSQL with verification (the URL's sslmode plus a CA file:
#    the server certificate and its host name are checked): a worker from the
#    image loads the topic above into a PostgreSQL of our own serving TLS with
#    a certificate from a CA made here, and is refused with the image's CA
#    bundle alone.
pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
# Its own directory: the work directory is root's alone.
pg="$(mktemp -d)"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Shopstream smoke CA" \
  -keyout "$pg/ca.key" -out "$pg/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$pg/server.key" -out "$pg/server.csr" 2>/dev/null
openssl x509 -req -in "$pg/server.csr" -CA "$pg/ca.crt" -CAkey "$pg/ca.key" -CAcreateserial -days 2 \
  -extfile <(printf 'subjectAltName=DNS:localhost') -out "$pg/server.crt" 2>/dev/null
chown -R postgres "$pg"
chmod 0600 "$pg/server.key"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
runuser -u postgres -- "$pgbin/initdb" -A trust -D "$pg/data" >/dev/null
cat >> "$pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pg'
ssl = on
ssl_cert_file = '$pg/server.crt'
ssl_key_file = '$pg/server.key'
CONF
printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n' > "$pg/data/pg_hba.conf"
runuser -u postgres -- "$pgbin/pg_ctl" -w -s -D "$pg/data" -l "$pg/log" start
trap 'runuser -u postgres -- "$pgbin/pg_ctl" -s -D "$pg/data" -m immediate stop || true; rm -rf "$work" "$pg"' EXIT
cat "$rootfs/etc/ssl/certs/ca-certificates.crt" "$pg/ca.crt" > "$work/rw/pg-bundle.pem"
cp "$rootfs/etc/ssl/certs/ca-certificates.crt" "$work/rw/image-bundle.pem"
tls_url="postgres://postgres@localhost:$port/postgres?sslmode=require"
worker_from_image() {
  in_image /usr/local/bin/shopstream-worker --brokers "$BROKER_BOOTSTRAP" --topic "image_smoke_$suffix" \
    --schema tls_smoke --database-url "$tls_url" --database-ca-file "/tmp/$1" --log-format json
}
# The worker runs under unshare and chroot: stop it by its own command line.
stop_worker() {
  pkill -TERM -f -- "--schema tls_smoke" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
}
worker_from_image pg-bundle.pem >"$work/tls-worker.log" 2>&1 &
worker=$!
loaded=0
for _ in $(seq 1 150); do
  loaded="$(psql -qtA "postgres://postgres@127.0.0.1:$port/postgres?sslmode=require" \
    -c "SELECT coalesce(sum(next_offset), 0) FROM tls_smoke.ingest_offsets" 2>/dev/null || echo 0)"
  [[ "$loaded" -gt 0 ]] && break
  sleep 0.2
done
stop_worker
[[ "$loaded" -gt 0 ]] || { tail -5 "$work/tls-worker.log"; fail "the worker loaded nothing over verified TLS"; }
worker_from_image image-bundle.pem >"$work/tls-refused.log" 2>&1 &
worker=$!
for _ in $(seq 1 150); do
  grep -q "certificate verify failed" "$work/tls-refused.log" && break
  kill -0 "$worker" 2>/dev/null || break
  sleep 0.2
done
stop_worker
grep -q "certificate verify failed" "$work/tls-refused.log" ||
  { tail -5 "$work/tls-refused.log"; fail "a worker without the server's CA was not refused with a certificate error"; }
say "a worker from the image loaded over TLS to PostgreSQL (certificate and host name verified; $loaded records), and was refused with the image's CA bundle alone"
say "OK"
