#!/usr/bin/env bash
# The whole suite: unit tests, then integration tests against live stacks on SQLite and on
# PostgreSQL (started here from the system's packages; installed first when missing and root).
set -uo pipefail
cd "$(dirname "$0")/.."
if pg_env=$(bash scripts/postgres.sh start); then
  eval "$pg_env"
else
  echo "WARNING: PostgreSQL unavailable; the postgres leg will be skipped" >&2
fi
# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium from the system's packages..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2
fi
.venv/bin/python -m pytest "$@"
status=$?
bash scripts/postgres.sh stop || true
exit $status
