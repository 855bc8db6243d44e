#!/bin/bash
# Stop the Redis that scripts/redis-start.sh started on $REDIS_PORT and delete its pid and log files.
REDIS_PORT=${REDIS_PORT:-6390}
PIDFILE=/tmp/credits-redis-$REDIS_PORT.pid
if [ -f "$PIDFILE" ]; then
  pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$PIDFILE"
fi
rm -f /tmp/credits-redis-$REDIS_PORT.log
