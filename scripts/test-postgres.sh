#!/bin/bash
# npm run test:postgres — the whole suite on PostgreSQL, with Redis pub/sub. Extra arguments go to Vitest.
#   TEST_DATABASE_URL=postgresql://…  use that server (each test file gets a fresh database beside the one named)
#   REDIS_URL=redis://…               use that Redis
# Either one unset: a throw-away server is started on loopback for the run and stopped after it (Debian's
# postgresql / redis-server packages): PostgreSQL in a fresh temporary folder (mktemp) on a free port, Redis on
# a free port. PGDATA, PGPORT and REDIS_PORT choose the folder and ports instead; PGDATA must then be missing,
# empty or an earlier throw-away cluster (scripts/pg-start.sh refuses anything else). Only what the run created
# is deleted.
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() { # a port the kernel just handed out on loopback, free again once printed
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

scratch="" pg_started="" redis_started=""
cleanup() { # newest first; each step only when this run began it
  if [ -n "$redis_started" ]; then REDIS_PORT=$REDIS_PORT bash scripts/redis-stop.sh || true; fi
  if [ -n "$pg_started" ]; then PGDATA=$PGDATA bash scripts/pg-stop.sh || true; fi
  if [ -n "$scratch" ]; then rmdir "$scratch" 2>/dev/null || true; fi
}
trap cleanup EXIT

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "test:postgres: set TEST_DATABASE_URL=postgresql://… or install PostgreSQL (apt-get install postgresql)" >&2
    exit 2
  fi
  if [ -z "${PGDATA:-}" ]; then
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/credits-test-pg.XXXXXX")
    chmod 755 "$scratch" # initdb runs as the postgres user when we are root
    PGDATA=$scratch/data
  fi
  PGPORT=${PGPORT:-$(free_port)}
  export PGDATA PGPORT
  pg_started=1 # pg-stop.sh deletes only a cluster pg-start.sh made, so a refused start is safe to "stop"
  TEST_DATABASE_URL=$(bash scripts/pg-start.sh credits_test)
  echo "test:postgres: PostgreSQL in $PGDATA"
fi
if [ -z "${REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null; then
    echo "test:postgres: set REDIS_URL=redis://… or install Redis (apt-get install redis-server)" >&2
    exit 2
  fi
  REDIS_PORT=${REDIS_PORT:-$(free_port)}
  export REDIS_PORT
  redis_started=1
  REDIS_URL=$(bash scripts/redis-start.sh)
fi
export TEST_DATABASE_URL REDIS_URL
echo "test:postgres: database $TEST_DATABASE_URL, pub/sub $REDIS_URL"
npx graphql-codegen --config codegen.ts --silent
npx vitest run "$@"
