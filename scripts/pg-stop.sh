#!/bin/bash
# Stop the PostgreSQL started by scripts/pg-start.sh with this PGDATA and delete what pg-start.sh made: the
# folder when it created it, its contents when the folder was there before. A folder without pg-start.sh's
# marker (or its earlier layout) is not touched.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PGDATA=${PGDATA:-/tmp/credits-pg}
MARKER=credits-throwaway-cluster
RUNAS=()
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u postgres --); fi
[ -d "$PGDATA" ] || exit 0
if [ ! -f "$PGDATA/$MARKER" ] && ! { [ -f "$PGDATA/PG_VERSION" ] && [ -f "$PGDATA/server.log" ]; }; then
  echo "pg-stop: $PGDATA is not a throw-away cluster of scripts/pg-start.sh; left alone" >&2
  exit 0
fi
[ -n "$PGBIN" ] && [ -f "$PGDATA/postmaster.pid" ] && "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" stop -m fast >/dev/null
if [ "$(cat "$PGDATA/$MARKER" 2>/dev/null)" = existing ]; then
  find "$PGDATA" -mindepth 1 -delete
else
  rm -rf "$PGDATA"
fi
