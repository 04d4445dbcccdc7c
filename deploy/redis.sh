#!/usr/bin/env bash
# A real redis-server from Debian's package, run as a plain process (no systemd, no Docker).
#
#   deploy/redis.sh install   install the redis-server package when it is missing
#   deploy/redis.sh start     start it at TACT_REDIS_URL's host:port (default 127.0.0.1:6379)
#   deploy/redis.sh stop      stop the server this script started (no-op otherwise)
#   deploy/redis.sh status    exit 0 when a Redis answers there
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
url=${TACT_REDIS_URL:-redis://127.0.0.1:6379/0}
# redis://[user:password@]host:port[/db]
hostport=${url#*://}
hostport=${hostport##*@}
hostport=${hostport%%/*}
host=${hostport%:*}
port=${hostport##*:}
[[ "$host" == "$port" ]] && port=6379
run=${TACT_RUN_DIR:-$repo/.run}/redis-$port

log() { printf 'redis: %s\n' "$*" >&2; }

answers() {
  command -v redis-cli >/dev/null && [[ "$(redis-cli -h "$host" -p "$port" ping 2>/dev/null)" == PONG ]]
}

install() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return 0
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "redis-server is missing and sudo is not available"; exit 1; }
    sudo=(sudo)
  fi
  log "installing redis-server from Debian's packages"
  # Keep the package from starting its own service on the default port.
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  if ! "${sudo[@]}" apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y --no-install-recommends redis-server >/dev/null
  fi
}

start() {
  install
  if answers; then
    log "a Redis already answers at $host:$port"
    return 0
  fi
  mkdir -p "$run"
  redis-server --bind "$host" --port "$port" --daemonize yes \
    --pidfile "$run/redis.pid" --logfile "$run/redis.log" --dir "$run" \
    --appendonly yes --appendfsync everysec --save ""
  for _ in $(seq 1 100); do
    answers && { log "ready at $host:$port"; return 0; }
    sleep 0.1
  done
  log "redis-server did not answer at $host:$port; its log:"
  tail -n 20 "$run/redis.log" >&2 || true
  exit 1
}

stop() {
  if [[ -f "$run/redis.pid" ]] && kill -0 "$(cat "$run/redis.pid")" 2>/dev/null; then
    log "stopping redis-server (pid $(cat "$run/redis.pid"))"
    redis-cli -h "$host" -p "$port" shutdown >/dev/null 2>&1 || kill "$(cat "$run/redis.pid")"
    for _ in $(seq 1 50); do
      [[ -f "$run/redis.pid" ]] && kill -0 "$(cat "$run/redis.pid")" 2>/dev/null || break
      sleep 0.1
    done
  elif answers; then
    log "a Redis answers at $host:$port but was not started by this script; leaving it alone"
  fi
  rm -f "$run/redis.pid"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
