#!/bin/bash
# Start a throw-away PostgreSQL on 127.0.0.1:$PGPORT for tests and benchmarks and print its URL.
# initdb and postgres refuse to run as root, so they run as the 'postgres' OS user when we are root.
# Usage: PGPORT=54329 PGDATA=/tmp/credits-pg scripts/pg-start.sh [dbname...]   (stop: scripts/pg-stop.sh)
# PGDATA must be missing, empty, or a cluster this script made (it leaves a marker file in it, see MARKER); a
# cluster of its own is stopped and started afresh, anything else is refused and left alone. pg-stop.sh deletes
# only what this script made: the whole folder when it created it, otherwise the folder's contents.
set -euo pipefail
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=${PGPORT:-54329}
PGDATA=${PGDATA:-/tmp/credits-pg}
MARKER=credits-throwaway-cluster
RUNAS=()
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u postgres --); fi

# Ours: the marker, or the layout earlier versions of this script left (their log file beside PG_VERSION).
ours() { [ -f "$PGDATA/$MARKER" ] || { [ -f "$PGDATA/PG_VERSION" ] && [ -f "$PGDATA/server.log" ]; }; }

folder=existing
if [ ! -e "$PGDATA" ]; then
  mkdir -p "$PGDATA"
  folder=created
  # A start that fails before the cluster is marked takes the folder it created with it.
  trap '[ -f "$PGDATA/$MARKER" ] || rm -rf "$PGDATA"' EXIT
elif [ -n "$(ls -A "$PGDATA")" ]; then
  if ! ours; then
    echo "pg-start: $PGDATA is not empty and is not a throw-away cluster of this script; it is left alone. Choose another PGDATA." >&2
    exit 1
  fi
  if [ -f "$PGDATA/$MARKER" ]; then folder=$(cat "$PGDATA/$MARKER"); fi
  if [ -f "$PGDATA/postmaster.pid" ]; then "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" stop -m immediate >/dev/null 2>&1 || true; fi
  find "$PGDATA" -mindepth 1 -delete
fi
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$PGDATA"
  if ! runuser -u postgres -- test -w "$PGDATA"; then
    echo "pg-start: the postgres user cannot reach $PGDATA (a folder above it is private to $(id -un)); choose a PGDATA it can reach, e.g. under /tmp" >&2
    exit 1
  fi
fi
"${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync -E UTF8 >/dev/null
echo "$folder" > "$PGDATA/$MARKER"
# Durability is traded for speed: this server only ever holds test data.
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
  -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PGDATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null
for db in "${@:-app}"; do "${RUNAS[@]}" "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$db"; done
echo "postgresql://postgres@127.0.0.1:$PGPORT/${1:-app}"
