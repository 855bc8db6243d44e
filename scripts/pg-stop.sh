#!/bin/bash
# Stop the PostgreSQL started by scripts/pg-start.sh and remove its data.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PGDATA=${PGDATA:-/tmp/credits-pg}
RUNAS=()
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u postgres --); fi
[ -n "$PGBIN" ] && [ -f "$PGDATA/postmaster.pid" ] && "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" stop -m fast >/dev/null
rm -rf "$PGDATA"
