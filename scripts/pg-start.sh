#!/bin/bash
# Start a throw-away PostgreSQL on 127.0.0.1:$PGPORT for tests and benchmarks and print its URL.
# initdb and postgres refuse to run as root, so they run as the 'postgres' OS user when we are root.
# Usage: PGPORT=54329 PGDATA=/tmp/credits-pg scripts/pg-start.sh [dbname...]   (stop: scripts/pg-stop.sh)
set -euo pipefail
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=${PGPORT:-54329}
PGDATA=${PGDATA:-/tmp/credits-pg}
RUNAS=()
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u postgres --); fi
if [ -f "$PGDATA/postmaster.pid" ]; then "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" stop -m immediate >/dev/null 2>&1 || true; fi
rm -rf "$PGDATA"; mkdir -p "$PGDATA"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDATA"; fi
"${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync -E UTF8 >/dev/null
# Durability is traded for speed: this server only ever holds test data.
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
  -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PGDATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null
for db in "${@:-app}"; do "${RUNAS[@]}" "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$db"; done
echo "postgresql://postgres@127.0.0.1:$PGPORT/${1:-app}"
