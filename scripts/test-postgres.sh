#!/bin/bash
# npm run test:postgres — the whole suite on PostgreSQL, with Redis pub/sub.
#   TEST_DATABASE_URL=postgresql://…  use that server (each test file gets a fresh database beside the one named)
#   REDIS_URL=redis://…               use that Redis
# Either one unset: a throw-away server is started on loopback (scripts/pg-start.sh, scripts/redis-start.sh) and
# stopped afterwards; that needs Debian's postgresql / redis-server packages. Extra arguments go to Vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
stops=()
cleanup() { for s in "${stops[@]}"; do bash "$s" || true; done; }
trap cleanup EXIT

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "test:postgres: set TEST_DATABASE_URL=postgresql://… or install PostgreSQL (apt-get install postgresql)" >&2
    exit 2
  fi
  TEST_DATABASE_URL=$(bash scripts/pg-start.sh credits_test)
  stops+=(scripts/pg-stop.sh)
fi
if [ -z "${REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null; then
    echo "test:postgres: set REDIS_URL=redis://… or install Redis (apt-get install redis-server)" >&2
    exit 2
  fi
  REDIS_URL=$(bash scripts/redis-start.sh)
  stops+=(scripts/redis-stop.sh)
fi
export TEST_DATABASE_URL REDIS_URL
echo "test:postgres: database $TEST_DATABASE_URL, pub/sub $REDIS_URL"
npx graphql-codegen --config codegen.ts --silent
npx vitest run "$@"
