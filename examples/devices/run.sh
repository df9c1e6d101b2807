#!/usr/bin/env bash
# `make example`: the "your devices" app on a local redis-server with the module
# (started here, stopped on exit), or on REDIS_URL when it is set.
#   MODULE       the module .so (make passes it)      PY           the venv's python
#   REDIS_URL    use this Redis instead               EXAMPLE_PORT the app's port (8000)
#   REDIS_PORT   the local redis-server's port (6390)  REDIS_SERVER the server binary (redis-server)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PY="${PY:-$root/.venv/bin/python}"
MODULE="${MODULE:-$root/target/release/libredis_session.so}"
EXAMPLE_PORT="${EXAMPLE_PORT:-8000}"

if [ -z "${REDIS_URL:-}" ]; then
    port="${REDIS_PORT:-6390}"
    dir="$(mktemp -d -t example-redis-XXXXXX)"
    "${REDIS_SERVER:-redis-server}" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" --loadmodule "$MODULE" &
    redis_pid=$!
    trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$dir"' EXIT
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null || { echo "redis-server did not start:"; cat "$dir/redis.log"; exit 1; }
    export REDIS_URL="redis://127.0.0.1:$port/0"
    echo "redis-session example: redis-server with the module on 127.0.0.1:$port (stopped with the app)"
else
    echo "redis-session example: using $REDIS_URL (it must have the module loaded)"
fi

echo "open http://127.0.0.1:$EXAMPLE_PORT/ (any user name, password: demo); Ctrl-C stops"
PYTHONPATH="$root/python/src${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" -m uvicorn app:app --app-dir "$here" --host 127.0.0.1 --port "$EXAMPLE_PORT"
