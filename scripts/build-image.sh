#!/usr/bin/env bash
# Build the Shopstream image without a Docker engine: the release binaries and
# the runtime files from Debian packages (scripts/stage-rootfs.sh) in one
# layer, with the user, entrypoint, ports and labels of image/spec.env, as an
# OCI layout (umoci) and a `docker load`-able archive (skopeo). Reproducible:
# the same commit and packages give the same digests (files and history are
# dated the commit's time, SOURCE_DATE_EPOCH).
#
#   scripts/build-image.sh [--out DIR] [--tag TAG]
#
# Prints the digest and sizes, and as its last two lines
# `oci-layout: PATH` and `archive: PATH`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
# shellcheck source=../image/spec.env
source image/spec.env
target="${CARGO_TARGET_DIR:-/var/cache/shopstream/target}"
out="$target/image"
tag="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--out DIR] [--tag TAG]" >&2; exit 2 ;;
  esac
done
say() { echo "build-image: $*" >&2; }

missing=()
for tool in umoci skopeo; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# stage-rootfs.sh downloads the runtime packages: the archive's index must be there.
if ! apt-cache policy libc6 | grep -q 'Candidate: [0-9]'; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
fi

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

say "building the release binaries"
packages=()
for b in $IMAGE_BINARIES; do packages+=(-p "$b"); done
CARGO_TARGET_DIR="$target" cargo build --release --locked "${packages[@]}" >&2

work="$target/image-work"
rm -rf "$work" "$out"
mkdir -p "$work" "$out"
say "staging the root filesystem"
scripts/stage-rootfs.sh "$target/release" "$work/rootfs"

layout="$out/oci"
ref="$layout:$tag"
umoci init --layout "$layout"
umoci new --image "$ref"
umoci unpack --image "$ref" "$work/bundle" >/dev/null
rm -rf "$work/bundle/rootfs"
mv "$work/rootfs" "$work/bundle/rootfs"
umoci repack --image "$ref" --history.created "$created" \
  --history.created_by "scripts/stage-rootfs.sh (Shopstream $tag, $revision)" "$work/bundle"
config=(--config.user "$IMAGE_UID:$IMAGE_GID" --config.entrypoint "$IMAGE_ENTRYPOINT" --config.cmd "$IMAGE_CMD"
  --config.workingdir / --config.env PATH=/usr/local/bin:/usr/bin:/bin
  --os linux --architecture amd64 --created "$created" --no-history
  --config.label "org.opencontainers.image.title=shopstream"
  --config.label "org.opencontainers.image.version=$tag"
  --config.label "org.opencontainers.image.revision=$revision"
  --config.label "org.opencontainers.image.created=$created"
  --config.label "org.opencontainers.image.licenses=Apache-2.0")
for port in $IMAGE_PORTS; do config+=(--config.exposedports "$port"); done
umoci config --image "$ref" "${config[@]}"
umoci gc --layout "$layout"
rm -rf "$work"

archive="$out/shopstream-$tag.tar"
skopeo --insecure-policy copy -q "oci:$ref" "docker-archive:$archive:$IMAGE_REPOSITORY:$tag"

manifest_digest="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")"
python3 - "$layout" "$manifest_digest" <<'PY'
import json, sys
layout, digest = sys.argv[1], sys.argv[2]
blob = lambda d: f"{layout}/blobs/{d.replace(':', '/')}"
manifest = json.load(open(blob(digest)))
layers = manifest["layers"]
compressed = sum(l["size"] for l in layers) + manifest["config"]["size"]
config = json.load(open(blob(manifest["config"]["digest"])))
print(f"image digest: {digest}")
for l in layers:
    print(f"layer: {l['digest']} ({l['size'] / 1e6:.1f} MB compressed)")
print(f"compressed size: {compressed / 1e6:.1f} MB; user {config['config'].get('User')}, "
      f"entrypoint {config['config'].get('Entrypoint')} {config['config'].get('Cmd')}")
PY
echo "oci-layout: $layout"
echo "archive: $archive"
