#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the test suite and print its URL on stdout.
# Installs Debian's postgresql package when it is missing and we are root (as on CI).
# Usage: eval "$(scripts/postgres.sh start)"  ->  exports LABQ_TEST_PG_URL
#        scripts/postgres.sh stop
set -euo pipefail
PORT=${LABQ_PG_PORT:-54329}
DIR=${LABQ_PG_DIR:-/tmp/labq-pg-$PORT}

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_pg() {  # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
start)
  BIN=$(find_bin)
  if [ -z "$BIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing postgresql from the system's packages..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    BIN=$(find_bin)
  fi
  if [ -z "$BIN" ]; then echo "postgresql is not installed and cannot be installed here" >&2; exit 1; fi
  if ! as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
    rm -rf "$DIR"; mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    as_pg "$BIN/initdb" -D "$DIR" -U labq --auth=trust >/dev/null
    as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/log" -w \
      -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U labq labq
  fi
  echo "export LABQ_TEST_PG_URL=postgresql+psycopg://labq@127.0.0.1:$PORT/labq"
  ;;
stop)
  BIN=$(find_bin)
  [ -n "$BIN" ] && as_pg "$BIN/pg_ctl" -D "$DIR" -m fast stop >&2 || true
  ;;
esac
