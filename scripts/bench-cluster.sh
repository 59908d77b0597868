#!/usr/bin/env bash
# The operator at scale against the real API server: N Pipelines (default 200)
# applied at once into one namespace of the local control plane
# (scripts/start-cluster.sh, kwok nodes), the operator a release binary running
# as the chart's ServiceAccount. Reports: time until all are Ready, API
# requests per Pipeline until then (from the API server's audit log), the
# operator's CPU-seconds and peak RSS, and requests and writes per minute at
# steady state.
# Usage: scripts/bench-cluster.sh [PIPELINES] [STEADY_SECONDS]
#   BENCH_KEEP=1  leave the namespace, release and operator log behind
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
STEADY=${2:-120}
[[ "$N" =~ ^[0-9]+$ && "$STEADY" =~ ^[0-9]+$ ]] || { echo "usage: $0 [PIPELINES] [STEADY_SECONDS]" >&2; exit 2; }
source scripts/lib/bench.sh

bench_setup operator
# Enough kwok capacity for N * (1 generator + 1 worker): their default
# requests are 500m + 250m CPU, nodes have 8 CPU (and 110 pods).
NODES=$(( (N * 750 + 7999) / 8000 + 1 ))
eval "$(scripts/start-cluster.sh --nodes "$NODES")"
AUDIT="$(dirname "$KUBECONFIG")/logs/audit.log"
venv="${SHOPSTREAM_VENV:-${CARGO_TARGET_DIR:-target}/venv}"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r charts/tests/requirements.txt

id=$(openssl rand -hex 3)
NS="bench-$id"
OPS="bench-ops-$id"
RELEASE="shopstream-bench"
work=$(mktemp -d)
cleanup() {
  [[ -n "${OP_PID:-}" ]] && kill "$OP_PID" 2>/dev/null || true
  if [[ -z "${BENCH_KEEP:-}" ]]; then
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    "$venv/bin/python" charts/tests/helm_release.py uninstall "$RELEASE" "$OPS" >/dev/null 2>&1 || true
    kubectl delete namespace "$OPS" --wait=false >/dev/null 2>&1 || true
    rm -rf "$work"
  else
    echo "kept namespace $NS, release $RELEASE in $OPS, files in $work" >&2
  fi
}
trap cleanup EXIT

echo "installing the chart (release $RELEASE in $OPS), namespace $NS, $NODES kwok nodes" >&2
"$venv/bin/python" charts/tests/helm_release.py install "$RELEASE" "$OPS" '{}' >/dev/null 2>&1
kubectl create namespace "$NS" >/dev/null
kubectl create secret generic warehouse -n "$NS" --from-literal=url=postgres://bench@warehouse.invalid/shop >/dev/null
# Topics for all N on the dev broker: what a fleet of teams would ask for.
for i in $(seq 1 "$N"); do
  cat <<EOF
---
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {name: p$i}
spec:
  kafka: {bootstrapServers: "$BENCH_BROKERS", topic: bench-$id-$i, partitions: 2, deleteTopicOnDelete: true}
  warehouse: {connectionSecretRef: {name: warehouse, key: url}, schema: p$i}
  generator: {eventsPerSecond: 100}
  workers: {autoscaling: {enabled: true, minReplicas: 1, maxReplicas: 2}}
EOF
done >"$work/pipelines.yaml"

token=$(kubectl create token "$RELEASE" -n "$OPS" --duration 2h)
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority: "$ca"}}]
users: [{name: u, user: {token: "$token"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
EOF
USER_NAME="system:serviceaccount:$OPS:$RELEASE"
KUBECONFIG="$work/kubeconfig" POD_NAMESPACE="$OPS" RUST_LOG=info,kube=warn SHOPSTREAM_LOG_FORMAT=json \
  "$BIN/shopstream-operator" run --watch-namespace "$NS" --metrics-addr 127.0.0.1:0 \
  >"$work/operator.log" 2>&1 &
OP_PID=$!

# requests USER_SINCE_EPOCH [writes]: requests of the operator in $NS since then.
requests() {
  python3 - "$AUDIT" "$USER_NAME" "$NS" "$1" "${2:-}" <<'EOF'
import json, sys, datetime
path, user, ns, since, writes = sys.argv[1:6]
since = float(since)
n = 0
for line in open(path):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("stage") != "ResponseComplete" or e["user"]["username"] != user:
        continue
    if (e.get("objectRef") or {}).get("namespace") != ns:
        continue
    t = datetime.datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
    if t < since:
        continue
    if writes and e["verb"] not in ("create", "update", "patch", "delete"):
        continue
    n += 1
print(n)
EOF
}

t0=$(now)
kubectl apply --server-side -n "$NS" -f "$work/pipelines.yaml" >/dev/null
applied=$(now)
deadline=$((SECONDS + 600))
while :; do
  ready=$(kubectl get spl -n "$NS" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)
  (( ready == N )) && break
  (( SECONDS < deadline )) || { echo "only $ready/$N Ready after 600 s; operator log: $work/operator.log" >&2; exit 1; }
  sleep 0.5
done
t_ready=$(now)
ready_s=$(awk -v a="$t0" -v b="$t_ready" 'BEGIN { printf "%.1f", b - a }')
reqs_ready=$(requests "$t0")
cpu_ready=$(ticks "$OP_PID")

echo "all $N Ready after ${ready_s} s; observing ${STEADY} s of steady state" >&2
t_steady=$(now)
cpu_steady0=$(ticks "$OP_PID")
# A measurement window, not a wait for a condition.
sleep "$STEADY"
reqs_steady=$(requests "$t_steady")
writes_steady=$(requests "$t_steady" writes)
cpu_end=$(ticks "$OP_PID")
rss_peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$OP_PID/status")

per_min() { awk -v n="$1" -v s="$STEADY" 'BEGIN { printf "%.1f", n * 60 / s }'; }
cat <<EOF

Pipelines applied at once            $N (kubectl apply took $(awk -v a="$t0" -v b="$applied" 'BEGIN { printf "%.1f", b - a }') s)
time until all Ready                 ${ready_s} s   (goal: 60 s)
API requests until Ready             $reqs_ready ($(awk -v r="$reqs_ready" -v n="$N" 'BEGIN { printf "%.1f", r / n }') per Pipeline)
operator CPU until Ready             $(secs "$cpu_ready") s
steady state: requests/min           $(per_min "$reqs_steady") over ${STEADY} s
steady state: writes/min             $(per_min "$writes_steady")   (goal: 0)
steady state: operator CPU           $(secs $((cpu_end - cpu_steady0))) s in ${STEADY} s
operator peak RSS                    $((rss_peak_kb / 1024)) MiB
EOF
