#!/usr/bin/env bash
# A real Schema Registry on loopback, for the Avro tests and for trying kappa's
# Avro input: Apicurio Registry 2.4.2 (Apache-2.0) with in-memory storage and
# its Confluent-compatible API (the Confluent Schema Registry REST API that
# Avro producers use) under /apis/ccompat/v7.
#   scripts/schema_registry.sh start [--dir DIR]   prints the registry's URL (last line)
#   scripts/schema_registry.sh stop [--dir DIR]
# The URL (http://127.0.0.1:PORT/apis/ccompat/v7) is also written to DIR/url;
# it is what kappa's `schema.registry.url` takes. DIR (default
# build/schemaregistry) holds the pid file and the log (DIR/registry.log).
# Central publishes the registry only as a library jar, so the runnable
# registry is built once with Maven (scripts/schema_registry/pom.xml: the
# Quarkus build step over apicurio-registry-app) into
# ${KAPPA_CACHE:-~/.cache/kappa}/apicurio-registry-<version>/app and reused.
# The first build downloads ~260 MB of jars into ~/.m2 and takes about 3
# minutes on 2 cores (1.5 with the jars already in ~/.m2); a start
# afterwards takes 10-20 s (Quarkus boot on 2 cores), about 250 MB of memory.
# Storage is in memory: a stop forgets every schema. `start` is idempotent (a
# running registry in DIR is reused); `stop` ends exactly the process this
# script started there (DIR/pid) and waits for it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION=2.4.2.Final
CACHE="${KAPPA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kappa}/apicurio-registry-$VERSION"
APP="$CACHE/app"
JAR="$APP/schema-registry-$VERSION-runner.jar"

die() { echo "schema_registry.sh: $*" >&2; exit 1; }
usage() { echo "usage: scripts/schema_registry.sh start|stop [--dir DIR]" >&2; exit 2; }

cmd="${1:-}"; shift || true
dir="$ROOT/build/schemaregistry"
while (($#)); do
  case "$1" in
    --dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
    *) usage ;;
  esac
done
case "$cmd" in start|stop) ;; *) usage ;; esac
mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"

# The pid in DIR/pid if it is still the registry this script started there
# (its command line names DIR).
registry_pid() {
  local pid
  [ -f "$dir/pid" ] || return 1
  pid="$(cat "$dir/pid")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-Dkappa.registry.dir=$dir " || return 1
  echo "$pid"
}

stop_registry() {
  local pid
  if pid="$(registry_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do  # 10 s for a clean shutdown, then SIGKILL
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  rm -f "$dir/pid" "$dir/url"
}

answers() { curl -sf -m 2 -o /dev/null "$1/subjects"; }

if [ "$cmd" = stop ]; then
  stop_registry
  exit 0
fi

# Already running here: same answer again.
if [ -f "$dir/url" ] && registry_pid >/dev/null && answers "$(cat "$dir/url")"; then
  cat "$dir/url"
  exit 0
fi
stop_registry

command -v java >/dev/null 2>&1 || die "no java on PATH (scripts/setup.sh installs default-jre-headless)"
command -v python3 >/dev/null 2>&1 || die "no python3 on PATH (needed to pick a free port)"
command -v curl >/dev/null 2>&1 || die "no curl on PATH (scripts/setup.sh installs it)"

# The runnable registry, built once per version; the lock keeps parallel
# starts from building into each other.
if [ ! -f "$APP/.complete" ]; then
  command -v mvn >/dev/null 2>&1 || die "no mvn on PATH (scripts/setup.sh installs maven)"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
  if [ ! -f "$APP/.complete" ]; then
    echo "schema_registry.sh: building Apicurio Registry $VERSION with Maven into $APP" >&2
    build="$CACHE/build"
    rm -rf "$build" "$APP"
    mkdir -p "$build/src/main/resources"
    cp "$ROOT/scripts/schema_registry/pom.xml" "$build/pom.xml"
    mvn_flags=(-B -f "$build/pom.xml" -DskipTests -Dcheckstyle.skip -Denforcer.skip -Dlicense.skip
      -Djacoco.skip -Dmaven.source.skip -Dmaven.javadoc.skip)
    # The registry's own configuration (application.properties in its jar) is
    # the application's here, plus an index of its jar so that Quarkus finds
    # its beans (the published jar carries no index).
    if ! mvn -q "${mvn_flags[@]}" dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$VERSION" \
        -DoutputDirectory="$build/app-jar" >"$CACHE/mvn.log" 2>&1; then
      die "downloading Apicurio Registry $VERSION with Maven failed (see $CACHE/mvn.log)"
    fi
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("application.properties"))' \
      "$build/app-jar/apicurio-registry-app-$VERSION.jar" >"$build/src/main/resources/application.properties" \
      || die "no application.properties in the registry's jar $build/app-jar"
    printf '\nquarkus.index-dependency.registryapp.group-id=io.apicurio\nquarkus.index-dependency.registryapp.artifact-id=apicurio-registry-app\n' \
      >>"$build/src/main/resources/application.properties"
    if ! mvn "${mvn_flags[@]}" package >>"$CACHE/mvn.log" 2>&1; then
      die "building Apicurio Registry $VERSION with Maven failed (see $CACHE/mvn.log)"
    fi
    mkdir -p "$APP.tmp"
    cp -r "$build/target/lib" "$build/target/schema-registry-$VERSION-runner.jar" "$APP.tmp/"
    touch "$APP.tmp/.complete"
    rm -rf "$APP" && mv "$APP.tmp" "$APP"
    rm -rf "$build"
  fi
  exec 9>&-
fi

port="$(python3 "$ROOT/scripts/free_ports.py")"
url="http://127.0.0.1:$port/apis/ccompat/v7"
# Detached: its own session, no terminal, every stream to a file, so a caller
# waiting on our stdout (CTest) is not held open by the registry.
REGISTRY_LOG_LEVEL=WARN LOG_LEVEL=WARN setsid java -Xmx256m -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Djava.awt.headless=true -Dkappa.registry.dir="$dir" \
  -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
  -jar "$JAR" </dev/null >"$dir/registry.log" 2>&1 &
started=$!
echo "$started" >"$dir/pid"

for _ in $(seq 1 1200); do  # 120 s: the first boot on a busy 2-core machine
  # Alive is kill -0 here: until the child has exec'd java, its command line
  # is still this script's (registry_pid would call it gone).
  kill -0 "$started" 2>/dev/null || { tail -n 5 "$dir/registry.log" >&2 || true; \
    die "the registry exited while starting (see $dir/registry.log)"; }
  if answers "$url"; then
    # Ready means ready for writes: the first registration after a boot
    # initialises the registry's storage and compiles its write path, and
    # on a loaded machine (CTest running tests beside a starting Kafka) it
    # outlasted the 5 s a client waits. One throwaway schema takes that
    # cost here, then is removed (soft, then permanently).
    warm="$url/subjects/kappa-registry-warmup-value"
    curl -sf -m 120 -o /dev/null -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
      --data '{"schema": "\"string\""}' "$warm/versions" || true
    curl -sf -m 60 -o /dev/null -X DELETE "$warm" || true
    curl -sf -m 60 -o /dev/null -X DELETE "$warm?permanent=true" || true
    echo "$url" >"$dir/url"
    echo "$url"
    exit 0
  fi
  sleep 0.1
done
stop_registry
die "the registry did not answer at $url within 120 s (see $dir/registry.log)"
