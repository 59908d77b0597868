#!/usr/bin/env bash
# Install the development broker: tansu 0.6.0 from crates.io with our fix for
# a consumer-group bug (scripts/tansu-forming-leader.patch), into ~/.cargo/bin.
#
# Why patched: in tansu 0.6.0, when the member chosen as leader of a forming
# group leaves (LeaveGroup), the group keeps it as leader; no remaining member
# may then sync, so the group never forms again, even across broker restarts
# (the state is persisted). Scaling workers down during a rebalance hits it.
# Real Kafka has no such bug; the fix only makes the test broker behave like it.
#
# Idempotent: a stamp next to the binary records which patch it was built
# with; an unpatched or differently patched tansu is rebuilt (~10-15 minutes).
set -euo pipefail

VERSION=0.6.0
# Checksums of the published crates (crates.io index / tansu's Cargo.lock).
TANSU_SHA256=4fdd85473ec265140488cf8d55e82b844f5c051c8916fabdd4a71156ac053f6d
BROKER_SHA256=93c1e91b40c2a706dfdbe9a795c08c70918c874ad23f6e0e87564cc0a180e720
PATCH="$(cd "$(dirname "$0")" && pwd)/tansu-forming-leader.patch"
BIN_DIR="$HOME/.cargo/bin"
STAMP="$BIN_DIR/.tansu.shopstream"
export PATH="$BIN_DIR:$PATH"

say() { printf 'install-broker: %s\n' "$*" >&2; }

want="tansu $VERSION $(sha256sum "$PATCH" | cut -d' ' -f1)"
if [[ -x "$BIN_DIR/tansu" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  say "patched tansu $VERSION already installed"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # crate sha256
  local file="$work/$1-$VERSION.crate"
  curl -sSfL --retry 3 -o "$file" "https://static.crates.io/crates/$1/$1-$VERSION.crate"
  echo "$2  $file" | sha256sum -c --quiet - || { say "ERROR: checksum mismatch for $1 $VERSION"; exit 1; }
  tar -xzf "$file" -C "$work"
}

say "building tansu $VERSION with the consumer-group fix (a one-off; about 10-15 minutes on 2 cores)"
fetch tansu "$TANSU_SHA256"
fetch tansu-broker "$BROKER_SHA256"
patch -s -d "$work" -p1 < "$PATCH"
cat >> "$work/tansu-$VERSION/Cargo.toml" <<EOF

[patch.crates-io]
tansu-broker = { path = "../tansu-broker-$VERSION" }
EOF
# Point the lock file at the patched crate only; everything else stays locked.
(cd "$work/tansu-$VERSION" && cargo update -q -p tansu-broker)
cargo install -q --locked --force --path "$work/tansu-$VERSION" \
  --features dynostore,libsql --root "$HOME/.cargo" --target-dir "$work/target"
echo "$want" > "$STAMP"
say "installed $(tansu --version 2>/dev/null || echo tansu) with the fix into $BIN_DIR"
