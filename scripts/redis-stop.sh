#!/bin/bash
# Stop the Redis that scripts/redis-start.sh started.
REDIS_PORT=${REDIS_PORT:-6390}
PIDFILE=/tmp/credits-redis-$REDIS_PORT.pid
if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi
