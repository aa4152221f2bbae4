#!/usr/bin/env bash
# A PostgreSQL 15 server of its own (Debian's postgresql-15, which
# scripts/setup.sh installs) in a fresh data directory, on a free loopback
# port, with password authentication (scram-sha-256) for the user kappa, and
# no Unix socket (a test's directory path is too long for one).
#   scripts/postgres.sh start [--dir DIR] [--owner PID]   prints the DSN (last line), also in DIR/dsn
#   scripts/postgres.sh stop [--dir DIR]
#   scripts/postgres.sh down|up [--dir DIR]   stop the server keeping its data / start it again
#                                             on the same port (tests of a database that goes away)
# start runs initdb into DIR/data (a leftover data directory is removed
# first), starts the server with pg_ctl and waits until it accepts
# connections. stop stops only the server this script started in DIR and
# removes its data. PostgreSQL refuses to run as root: as root the server
# runs as the user postgres (the package creates it). With --owner PID (a
# test process) a watcher stops the server once PID has exited, so a test
# that crashes leaves no server behind.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${KAPPA_PG_BIN:-/usr/lib/postgresql/15/bin}"

die() { echo "postgres.sh: $*" >&2; exit 1; }
usage() { die "usage: postgres.sh start|stop|down|up [--dir DIR] [--owner PID]"; }

[ $# -ge 1 ] || usage
cmd="$1"; shift
dir="$ROOT/build/postgres"; owner=""
while (($#)); do
  case "$1" in
    --dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
    --owner) [ $# -ge 2 ] || usage; owner="$2"; shift 2 ;;
    *) usage ;;
  esac
done
mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"
[ -x "$BIN/pg_ctl" ] || die "no PostgreSQL 15 server in $BIN: install postgresql-15 (scripts/setup.sh does)"

# Server commands run as postgres when we are root.
as_server() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_server "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
      as_server "$BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir/data" "$dir/dsn" "$dir/pwfile" "$dir/port"
}

case "$cmd" in
  stop)
    stop
    exit 0
    ;;
  down)
    [ -f "$dir/data/postmaster.pid" ] || die "no server running in $dir"
    as_server "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    ;;
  up)
    [ -f "$dir/port" ] && [ -d "$dir/data" ] || die "no server data in $dir (start one first)"
    as_server "$BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-p $(cat "$dir/port") -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null ||
      die "the server did not start (see $dir/postgres.log)"
    ;;
  start)
    stop
    # The server (user postgres) must reach DIR: each parent must be searchable.
    p="$dir"
    while [ "$p" != / ]; do
      [ -x "$p" ] && [ "$(stat -c %A "$p" | cut -c10)" = x ] || chmod o+x "$p" 2>/dev/null || true
      p="$(dirname "$p")"
    done
    mkdir -p "$dir/data"
    password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    umask 077
    printf '%s\n' "$password" >"$dir/pwfile"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/data" "$dir/pwfile"; fi
    as_server "$BIN/initdb" -D "$dir/data" -U kappa --pwfile="$dir/pwfile" -A scram-sha-256 -E UTF8 --no-locale \
      >"$dir/initdb.log" 2>&1 || die "initdb failed (see $dir/initdb.log)"
    rm -f "$dir/pwfile"
    port=$(python3 "$ROOT/scripts/free_ports.py")
    touch "$dir/postgres.log"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/postgres.log"; fi
    as_server "$BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null ||
      die "the server did not start (see $dir/postgres.log)"
    printf '%s\n' "$port" >"$dir/port"
    dsn="host=127.0.0.1 port=$port dbname=postgres user=kappa password=$password"
    printf '%s\n' "$dsn" >"$dir/dsn"
    if [ -n "$owner" ]; then
      setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -f "$3/dsn" ]; do sleep 1; done
        [ -f "$3/dsn" ] && exec "$2" stop --dir "$3"' watcher "$owner" "$ROOT/scripts/postgres.sh" "$dir" \
        </dev/null >/dev/null 2>&1 &
    fi
    echo "$dsn"
    ;;
  *) usage ;;
esac
