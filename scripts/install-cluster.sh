#!/usr/bin/env bash
# Build the local Kubernetes control plane from Go modules: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and kwok, pinned by the wrapper
# modules under scripts/cluster/ (go.mod + go.sum checked in), into a
# version-keyed cache. Nothing is downloaded but Go modules from the proxy.
# Idempotent: a second run only checks the stamps. Prints the bin directory
# (every binary in one place) as its last line.
#   SHOPSTREAM_CACHE  cache root (default ~/.cache/shopstream)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
MODS="$here/cluster"
CACHE="${SHOPSTREAM_CACHE:-$HOME/.cache/shopstream}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

say() { printf 'install-cluster: %s\n' "$*" >&2; }
command -v go >/dev/null || { say "ERROR: Go is required (go1.26+)"; exit 1; }

# The version each wrapper module pins, read from its go.mod (one source of truth).
pinned() { (cd "$MODS/$1" && go list -m -f '{{.Version}}' "$2"); }
K8S=$(pinned k8s k8s.io/kubernetes)
ETCD=$(pinned etcd go.etcd.io/etcd/server/v3)
KWOK=$(pinned kwok sigs.k8s.io/kwok)
BIN="$CACHE/cluster-k8s-$K8S-etcd-$ETCD-kwok-$KWOK/bin"
mkdir -p "$BIN"

# build NAME MODULE_DIR LDFLAGS PACKAGE... : rebuilds when the module's go.mod/go.sum
# (its whole dependency graph) changed since the stamp was written, or a binary is
# missing. Each binary is named after its package's last element, except etcd,
# whose main package is the module root ".../server/v3".
build() {
  local name=$1 dir=$2 ldflags=$3; shift 3
  local stamp="$BIN/.$name.stamp" want p out missing=0
  want=$(cat "$MODS/$dir/go.mod" "$MODS/$dir/go.sum" | sha256sum | cut -d' ' -f1)
  for p in "$@"; do [[ -x "$BIN/$(binary "$p")" ]] || missing=1; done
  if [[ $missing == 0 && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    say "$name already built in $BIN"
    return
  fi
  say "building $name ($*); a cold build takes minutes on 2 cores"
  local t0=$SECONDS
  for p in "$@"; do
    out="$BIN/$(binary "$p")"
    (cd "$MODS/$dir" && go build -trimpath -pgo=off -ldflags "$ldflags" -o "$out.tmp" "$p")
    mv -f "$out.tmp" "$out"
  done
  echo "$want" >"$stamp"
  say "built $name in $((SECONDS - t0)) s"
}
binary() { case $1 in go.etcd.io/etcd/server/v3) echo etcd ;; *) basename "$1" ;; esac; }

# Unstamped Kubernetes binaries report v0.0.0; kubectl and kwok read the version.
minor=$(cut -d. -f2 <<<"$K8S")
ldf="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldf+=" -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

build etcd etcd "-s -w" go.etcd.io/etcd/server/v3
build kwok kwok "-s -w" sigs.k8s.io/kwok/cmd/kwok
build kubernetes k8s "$ldf" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl

# kwok refuses to start without stages: the ones we need, from its module source.
src=$(cd "$MODS/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
stages="$BIN/../kwok-stages.yaml"
{
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$src/kustomize/stage/$f"
  done
} >"$stages.tmp"
mv "$stages.tmp" "$stages"

say "Kubernetes $K8S, etcd $ETCD, kwok $KWOK in $BIN"
echo "$BIN"
