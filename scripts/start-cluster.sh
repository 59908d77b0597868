#!/usr/bin/env bash
# Start a local Kubernetes control plane built from Kubernetes' own Go modules
# (scripts/install-cluster.sh): etcd, kube-apiserver (secure port on 127.0.0.1,
# RBAC, ServiceAccount token issuing, an audit log), kube-controller-manager,
# kube-scheduler and kwok, which plays N simulated nodes whose pods become
# Running/Ready without containers. A second call while it runs is a no-op
# (it only tops the nodes up to N).
# Usage: scripts/start-cluster.sh [--fresh] [--nodes N] [--stop]
#   --nodes N  simulated nodes in pool "default" (default 2; each 8 CPU, 32Gi, 110 pods)
#   --fresh    stop the cluster this script started and wipe its state
#   --stop     stop it and exit
# Progress goes to stderr; the last lines on stdout are
#   export KUBECONFIG=...            (cluster-admin, by a static token)
#   export PATH=<dir of kubectl>:$PATH
# so `eval "$(scripts/start-cluster.sh)"` gives a shell a kubectl that talks to it.
# Also kept in DIR/cluster.env.
#   SHOPSTREAM_DEV_DIR       parent of the cluster directory (default /var/tmp/shopstream-dev)
#   SHOPSTREAM_CLUSTER_PORT  API server port (default 6443); etcd uses PORT+5935/+5936
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
NODES=2
FRESH=0
STOP=0
usage() { echo "usage: $0 [--fresh] [--nodes N] [--stop]" >&2; exit 2; }
while (( $# )); do
  case "$1" in
    --nodes) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; NODES=$2; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    --stop) STOP=1; shift ;;
    *) usage ;;
  esac
done
PORT="${SHOPSTREAM_CLUSTER_PORT:-6443}"
ETCD_PORT=$((PORT + 5935))
ETCD_PEER_PORT=$((PORT + 5936))
DEV_DIR="${SHOPSTREAM_DEV_DIR:-/var/tmp/shopstream-dev}"
dir="$DEV_DIR/cluster-$PORT"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

say() { printf 'cluster: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A component is ours when its recorded pid is alive and runs from our directory
# (every command line names $dir; a stale pid may have been reused).
running() {
  [[ -f "$dir/$1.pid" ]] && grep -qa "$dir" "/proc/$(cat "$dir/$1.pid")/cmdline" 2>/dev/null
}
all_running() { local c; for c in "${COMPONENTS[@]}"; do running "$c" || return 1; done; }
stop_all() {
  local c pid deadline
  # Reverse order: nodes and controllers go before the API server and etcd.
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[i]}
    running "$c" || { rm -f "$dir/$c.pid"; continue; }
    pid=$(cat "$dir/$c.pid")
    kill "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$c.pid"
  done
  say "stopped the cluster on port $PORT ($1)"
}

if (( STOP )); then
  if [[ -d "$dir" ]]; then stop_all "--stop"; else say "no cluster of ours on port $PORT"; fi
  exit 0
fi
if (( FRESH )) && [[ -d "$dir" ]]; then
  stop_all "fresh start"
  rm -rf "$dir"
fi

BIN=$("$here/install-cluster.sh")
KC="$dir/kubeconfig"
kubectl() { "$BIN/kubectl" --kubeconfig "$KC" "$@"; }

# Nodes 1..N of the default pool, as kwok's node template has them; `apply`
# makes this idempotent, so a second call tops the pool up.
ensure_nodes() {
  local i
  for ((i = 1; i <= NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-default-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-default-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
    shopstream.dev/node-pool: default
status:
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
  capacity: {cpu: "8", memory: 32Gi, pods: "110"}
EOF
  done | kubectl apply -f - >/dev/null
  # kwok marks managed nodes Ready; wait for it rather than assume it.
  if (( NODES > 0 )); then
    kubectl wait --for=condition=Ready node -l shopstream.dev/node-pool=default --timeout=60s >/dev/null
  fi
}

print_env() {
  cat >"$dir/cluster.env" <<EOF
export KUBECONFIG=$KC
export PATH=$BIN:\$PATH
EOF
  cat "$dir/cluster.env"
}

if all_running; then
  say "already running on https://127.0.0.1:$PORT ($dir)"
  ensure_nodes
  print_env
  exit 0
fi
if [[ -d "$dir" ]]; then stop_all "restart: some components were down"; fi
for p in "$PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"; do
  if port_open "$p"; then
    say "ERROR: port $p is taken by a process this script did not start; set SHOPSTREAM_CLUSTER_PORT"
    exit 1
  fi
done

mkdir -p "$dir/pki" "$dir/logs"
# --- PKI: a CA, the API server's serving certificate, the ServiceAccount key ---------
if [[ ! -f "$dir/pki/sa.key" ]]; then
  say "making a CA, a serving certificate and the ServiceAccount signing key in $dir/pki"
  (
    cd "$dir/pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shopstream-cluster-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    echo "$(openssl rand -hex 24),admin,admin,system:masters" >tokens.csv
    chmod 600 ./*.key tokens.csv
  )
fi
token=$(cut -d, -f1 "$dir/pki/tokens.csv")
cat >"$KC" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: shopstream-dev
  cluster:
    server: https://127.0.0.1:$PORT
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: shopstream-dev
  context: {cluster: shopstream-dev, user: admin}
current-context: shopstream-dev
EOF
chmod 600 "$KC"

# The audit log is how tests and benchmarks count what the operator asks of the
# API server (requests per verb and user); only ServiceAccounts outside
# kube-system are logged, at Metadata level (no bodies, so no Secret values).
cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
EOF

# start NAME ARGS... : run a component detached (setsid: it outlives this script
# and the CI step that ran it), its output in logs/NAME.log.
start() {
  local name=$1; shift
  (
    cd "$dir"
    setsid nohup "$@" >"logs/$name.log" 2>&1 </dev/null &
    echo $! >"$name.pid"
  )
}
# wait_for NAME SECONDS CHECK... : until CHECK succeeds, or NAME died / time ran out.
wait_for() {
  local name=$1 limit=$2 deadline; shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name" || (( SECONDS >= deadline )); then
      say "ERROR: $name did not become ready; last log lines ($dir/logs/$name.log):"
      tail -n 30 "$dir/logs/$name.log" >&2
      exit 1
    fi
    sleep 0.2
  done
}

say "starting etcd on 127.0.0.1:$ETCD_PORT"
start etcd "$BIN/etcd" --name shopstream-dev --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "shopstream-dev=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --quota-backend-bytes=4294967296 --log-level=warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

say "starting kube-apiserver on https://127.0.0.1:$PORT"
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --secure-port "$PORT" --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
  --client-ca-file "$dir/pki/ca.crt" --token-auth-file "$dir/pki/tokens.csv" \
  --authorization-mode Node,RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true --endpoint-reconciler-type none \
  --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/logs/audit.log" \
  --audit-log-maxsize 200 --audit-log-maxbackup 2 --audit-log-format json
wait_for kube-apiserver 90 curl -fsS --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $token" \
  "https://127.0.0.1:$PORT/readyz"

say "starting kube-controller-manager, kube-scheduler and kwok"
start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KC" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 0 --service-account-private-key-file "$dir/pki/sa.key" \
  --root-ca-file "$dir/pki/ca.crt" --use-service-account-credentials \
  --cluster-signing-cert-file "$dir/pki/ca.crt" --cluster-signing-key-file "$dir/pki/ca.key"
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KC" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 0
# kwok renews each node's Lease as a kubelet would: without it the node
# lifecycle controller marks the nodes NotReady after its grace period, and
# every pod on them unready.
start kwok "$BIN/kwok" --kubeconfig "$KC" --config "$BIN/../kwok-stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --cidr 10.244.0.0/16 --node-ip 10.0.0.1 --server-address "" --node-lease-duration-seconds 40

# The controller-manager is working once it has made the default ServiceAccount.
wait_for kube-controller-manager 60 kubectl get serviceaccount default -n default
ensure_nodes
say "ready on https://127.0.0.1:$PORT with $NODES kwok nodes; logs in $dir/logs"
print_env
