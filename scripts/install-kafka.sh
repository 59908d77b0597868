#!/usr/bin/env bash
# Install the development/test broker: Apache Kafka (the version pinned in
# scripts/kafka/pom.xml) from Maven Central, with Maven, into a version-keyed
# directory. Installs Java 17 and Maven from Debian when missing. Idempotent:
# a second run only checks the stamp. Prints the libs directory as its last line.
#   SHOPSTREAM_CACHE  cache root (default ~/.cache/shopstream)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
POM="$here/kafka/pom.xml"
KAFKA_VERSION=$(sed -n 's#.*<kafka.version>\(.*\)</kafka.version>.*#\1#p' "$POM")
CACHE="${SHOPSTREAM_CACHE:-$HOME/.cache/shopstream}"
DIR="$CACHE/kafka-$KAFKA_VERSION"
LIBS="$DIR/libs"
STAMP="$DIR/.installed"

say() { printf 'install-kafka: %s\n' "$*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null || (( $(java_major) < 17 )) || ! command -v mvn >/dev/null; then
  command -v apt-get >/dev/null || { say "ERROR: need Java 17+ and Maven; install them first"; exit 1; }
  say "installing Java 17 and Maven from Debian"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
fi

# The stamp records the pom it was resolved from: editing the pom reinstalls.
want=$(sha256sum "$POM" | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  say "Apache Kafka $KAFKA_VERSION already installed in $LIBS"
else
  say "resolving Apache Kafka $KAFKA_VERSION and its dependencies with Maven into $LIBS"
  tmp="$DIR/libs.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Maven 3.8 prints colour resets even in batch mode: strip them.
  mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { say "ERROR: Maven could not resolve the broker's jars"; exit 1; }
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { say "ERROR: kafka_2.13-$KAFKA_VERSION.jar missing after resolve"; exit 1; }
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  echo "$want" >"$STAMP"
  say "installed $(ls "$LIBS" | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) into $LIBS"
fi
echo "$LIBS"
