#!/usr/bin/env bash
# Installs the peers scripts/bench-peers.sh compares Shopstream with, at the
# versions pinned in the poms beside this script, from PyPI and Maven Central:
#   - PySpark (spark/pom.xml's spark.version) in its own venv, plus Spark's Kafka
#     source and the PostgreSQL JDBC driver;
#   - the Debezium JDBC sink connector's plugin archive (Debezium's documented
#     install; Maven Central serves it, checked against the SHA-1 pinned here),
#     unpacked as a Kafka Connect plugin directory. The Connect runtime is the
#     broker's own (scripts/install-kafka.sh), the version the plugin is built on;
#   - the Kafka Streams flattener (flattener/Flatten.java), compiled with javac.
# Each part goes into a directory keyed by the hash of what defines it, so an
# edit reinstalls it and a re-run only checks. Writes and prints the path of an
# env file the benchmark sources.
#   SHOPSTREAM_PEERS_DIR  where to install (default /var/cache/shopstream/peers)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ROOT="${SHOPSTREAM_PEERS_DIR:-/var/cache/shopstream/peers}"
mkdir -p "$ROOT"

say() { printf 'install-peers: %s\n' "$*" >&2; }
key() { cat "$@" | sha256sum | cut -c1-12; }
prop() { sed -n "s#.*<$1>\(.*\)</$1>.*#\1#p" "$2"; }

KAFKA_LIBS=$("$repo/scripts/install-kafka.sh" 2>/dev/null | tail -n1)

# resolve NAME POM: the pom's runtime dependencies into ROOT/NAME-KEY; prints the dir.
resolve() {
  local dir="$ROOT/$1-$(key "$2")"
  if [[ ! -f "$dir/.installed" ]]; then
    say "resolving $1 with Maven into $dir"
    rm -rf "$dir" && mkdir -p "$dir/jars"
    # Maven 3.8 prints colour resets even in batch mode: strip them.
    mvn -B -q -Dstyle.color=never -s "$here/maven-settings.xml" -f "$2" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$dir/jars" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
    [[ ${PIPESTATUS[0]} -eq 0 ]] || { say "ERROR: Maven could not resolve $2"; exit 1; }
    touch "$dir/.installed"
  fi
  echo "$dir"
}

spark_jars=$(resolve spark-jars "$here/spark/pom.xml")
flat_jars=$(resolve flattener-jars "$here/flattener/pom.xml")

DEBEZIUM_VERSION=3.6.0.Final
DEBEZIUM_SHA1=1416566f8de357f2a45f91739f7bf13a2af3d3e1
debezium="$ROOT/debezium-jdbc-$DEBEZIUM_VERSION"
if [[ ! -f "$debezium/.installed" ]]; then
  say "downloading the Debezium JDBC sink $DEBEZIUM_VERSION from Maven Central into $debezium"
  rm -rf "$debezium" && mkdir -p "$debezium"
  archive="$debezium/plugin.tar.gz"
  curl -fsS -o "$archive" "https://repo.maven.apache.org/maven2/io/debezium/debezium-connector-jdbc/$DEBEZIUM_VERSION/debezium-connector-jdbc-$DEBEZIUM_VERSION-plugin.tar.gz"
  echo "$DEBEZIUM_SHA1  $archive" | sha1sum -c --quiet - >&2 || { say "ERROR: the Debezium archive's SHA-1 differs"; exit 1; }
  tar -xzf "$archive" -C "$debezium" && rm "$archive"
  touch "$debezium/.installed"
fi

SPARK_VERSION=$(prop spark.version "$here/spark/pom.xml")
venv="$ROOT/pyspark-$SPARK_VERSION"
if [[ ! -f "$venv/.installed" ]]; then
  say "installing PySpark $SPARK_VERSION from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "pyspark==$SPARK_VERSION" >&2
  touch "$venv/.installed"
fi

# Spark's Kafka source names jars PySpark already ships (Scala, Hadoop, SLF4J):
# pass only the ones it lacks, so nothing on the classpath is there twice.
pyspark_jars=$("$venv/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
extra_jars=()
for jar in "$spark_jars"/jars/*.jar; do
  artifact=$(basename "$jar" | sed 's/-[0-9][^-]*\.jar$//')
  compgen -G "$pyspark_jars/$artifact-[0-9]*.jar" >/dev/null || extra_jars+=("$jar")
done

flattener="$ROOT/flattener-$(key "$here/flattener/Flatten.java" "$here/flattener/pom.xml")"
if [[ ! -f "$flattener/.installed" ]]; then
  say "compiling the Kafka Streams flattener into $flattener"
  rm -rf "$flattener" && mkdir -p "$flattener/classes"
  javac -nowarn -d "$flattener/classes" -cp "$flat_jars/jars/*" "$here/flattener/Flatten.java" >&2
  touch "$flattener/.installed"
fi

env_file="$ROOT/peers.env"
cat >"$env_file" <<ENV
KAFKA_LIBS=$KAFKA_LIBS
PEERS_SPARK_VERSION=$SPARK_VERSION
PEERS_PYSPARK_PYTHON=$venv/bin/python
PEERS_SPARK_JARS=$(IFS=,; echo "${extra_jars[*]}")
PEERS_DEBEZIUM_VERSION=$DEBEZIUM_VERSION
PEERS_DEBEZIUM_PLUGIN_DIR=$debezium
PEERS_FLATTENER_CP=$flattener/classes:$flat_jars/jars/*
PEERS_POSTGRES_JDBC_JAR=$(ls "$spark_jars"/jars/postgresql-*.jar)
ENV
say "peers ready: $env_file"
echo "$env_file"
