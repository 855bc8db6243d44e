#!/bin/bash
# Start a throw-away Redis on 127.0.0.1:$REDIS_PORT (no persistence) for tests and benchmarks and print its URL.
# Usage: REDIS_PORT=6390 scripts/redis-start.sh   (stop: scripts/redis-stop.sh)
set -euo pipefail
REDIS_PORT=${REDIS_PORT:-6390}
PIDFILE=/tmp/credits-redis-$REDIS_PORT.pid
stop_old() { # and wait until it has let go of the port
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$PIDFILE"
}
stop_old
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --pidfile "$PIDFILE" --save '' --appendonly no \
  --logfile /tmp/credits-redis-$REDIS_PORT.log >/dev/null
for _ in $(seq 1 50); do
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
    echo "redis://127.0.0.1:$REDIS_PORT"
    exit 0
  fi
  sleep 0.1
done
echo "redis-server did not answer on port $REDIS_PORT" >&2
exit 1
