#!/usr/bin/env bash
# A local Redis Cluster of plain redis-server processes from Debian's package (no systemd,
# no Docker): one primary per port, no replicas, all on 127.0.0.1.
#
#   deploy/redis-cluster.sh start    start the nodes and make them a cluster (idempotent)
#   deploy/redis-cluster.sh stop     stop the nodes this script started (their data is kept)
#   deploy/redis-cluster.sh reset    stop, then delete the nodes' dirs (a fresh cluster next start)
#   deploy/redis-cluster.sh status   exit 0 when every node answers and the cluster is ok
#
# Environment:
#   TACT_REDIS_CLUSTER_PORTS  the nodes' ports, at least 3 (default "7101 7102 7103"); each
#                             node also uses port+10000 for the cluster bus
#   TACT_RUN_DIR              where the nodes' dirs live, one per node, redis-cluster-<port>,
#                             with data, nodes.conf, the log and the pid file (default <repo>/.run)
#
# Clients: redis://127.0.0.1:7101 (any node's address) with a cluster client, e.g.
# redis.asyncio.RedisCluster.from_url. Keys of one MULTI/EXEC, WATCH or multi-key command must
# share one hash slot, e.g. a {hash tag}.
#
# The cluster is made once, with `redis-cli --cluster create` on empty nodes. After `stop`, the
# nodes come back from their nodes.conf and AOF on `start`, the same cluster with the same data.
# Changing the ports of an existing cluster needs `reset`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/pids.sh"
repo=$(cd "$here/.." && pwd)
host=127.0.0.1
read -r -a ports <<<"${TACT_REDIS_CLUSTER_PORTS:-7101 7102 7103}"
base=${TACT_RUN_DIR:-$repo/.run}
slots=16384

log() { printf 'redis-cluster: %s\n' "$*" >&2; }

dir_of() { printf '%s/redis-cluster-%s' "$base" "$1"; }

cli() { local port=$1; shift; redis-cli -h "$host" -p "$port" "$@"; }

answers() { [[ "$(cli "$1" ping 2>/dev/null)" == PONG ]]; }

# A field of `cluster info` on one node, empty when the node does not answer or is no cluster node.
info_field() {
  cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# The pid in a node's pid file when that process is alive and a redis-server.
our_pid() {
  local pidfile
  pidfile=$(dir_of "$1")/redis.pid
  pid_of "$pidfile" redis-server || return 1
  cat "$pidfile"
}

# Every node answers and sees the whole cluster ok: all slots assigned and served, all nodes known.
cluster_ok() {
  local port
  command -v redis-cli >/dev/null || return 1
  for port in "${ports[@]}"; do
    [[ "$(info_field "$port" cluster_state)" == ok ]] || return 1
    [[ "$(info_field "$port" cluster_slots_assigned)" == "$slots" ]] || return 1
    [[ "$(info_field "$port" cluster_slots_ok)" == "$slots" ]] || return 1
    [[ "$(info_field "$port" cluster_known_nodes)" == "${#ports[@]}" ]] || return 1
  done
}

logs_tails() {
  local port
  for port in "${ports[@]}"; do
    log "log of the node at $host:$port:"
    tail -n 20 "$(dir_of "$port")/redis.log" >&2 2>/dev/null || true
  done
}

start_node() {
  local port=$1 dir
  dir=$(dir_of "$port")
  mkdir -p "$dir"
  # --dir comes first: redis-server moves into it, and nodes.conf is read relative to it.
  redis-server --dir "$dir" --bind "$host" --port "$port" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --appendonly yes --appendfsync everysec --save "" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000
}

start() {
  "$here/redis.sh" install
  if ((${#ports[@]} < 3)); then
    log "a cluster needs at least 3 ports, got: ${ports[*]}"
    exit 2
  fi
  if cluster_ok; then
    log "the cluster at $host:${ports[*]} already answers and is ok"
    return 0
  fi
  local port
  for port in "${ports[@]}"; do
    if answers "$port" && [[ -z "$(info_field "$port" cluster_state)" ]]; then
      log "a Redis that is no cluster node already answers at $host:$port"
      exit 1
    fi
  done
  for port in "${ports[@]}"; do
    answers "$port" || start_node "$port"
  done
  local waiting
  for _ in $(seq 1 100); do
    waiting=()
    for port in "${ports[@]}"; do
      answers "$port" || waiting+=("$port")
    done
    ((${#waiting[@]} == 0)) && break
    sleep 0.1
  done
  if ((${#waiting[@]})); then
    log "no answer at $host, port(s) ${waiting[*]}"
    logs_tails
    exit 1
  fi

  # Fresh nodes know only themselves and serve no slot; nodes that were a cluster before come
  # back from nodes.conf and find each other again.
  local fresh=0 known assigned
  for port in "${ports[@]}"; do
    known=$(info_field "$port" cluster_known_nodes)
    assigned=$(info_field "$port" cluster_slots_assigned)
    [[ "$known" == 1 && "$assigned" == 0 ]] && fresh=$((fresh + 1))
  done
  if ((fresh == ${#ports[@]})); then
    local addrs=()
    for port in "${ports[@]}"; do addrs+=("$host:$port"); done
    log "creating the cluster of ${addrs[*]}"
    if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$base/redis-cluster-create.log" 2>&1; then
      log "redis-cli --cluster create failed:"
      tail -n 20 "$base/redis-cluster-create.log" >&2 || true
      exit 1
    fi
  elif ((fresh > 0)); then
    log "some nodes are fresh and some already belong to a cluster; \`$0 reset\` makes a fresh one"
    exit 1
  fi

  for _ in $(seq 1 300); do
    if cluster_ok; then
      log "ready at $host:${ports[*]}"
      return 0
    fi
    sleep 0.1
  done
  log "the cluster is not ok after 30 s:"
  for port in "${ports[@]}"; do
    log "  $host:$port cluster_state=$(info_field "$port" cluster_state)" \
      "slots_assigned=$(info_field "$port" cluster_slots_assigned)" \
      "known_nodes=$(info_field "$port" cluster_known_nodes)"
  done
  logs_tails
  exit 1
}

stop() {
  local port pid pids=() left=()
  for port in "${ports[@]}"; do
    if pid=$(our_pid "$port"); then
      log "stopping the node at $host:$port (pid $pid)"
      command -v redis-cli >/dev/null && cli "$port" shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
      pids+=("$pid")
      continue
    fi
    rm -f "$(dir_of "$port")/redis.pid"  # (stale, if there: not a node of ours)
    if command -v redis-cli >/dev/null && answers "$port"; then
      log "a Redis answers at $host:$port but was not started by this script; leaving it alone"
    fi
  done
  for _ in $(seq 1 100); do
    left=()
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null && left+=("$pid")
    done
    ((${#left[@]} == 0)) && return 0
    sleep 0.1
  done
  log "node(s) still running after 10 s: pid ${left[*]}"
  exit 1
}

reset() {
  stop
  local port
  for port in "${ports[@]}"; do
    if our_pid "$port" >/dev/null; then
      log "the node at $host:$port still runs; not deleting its dir"
      exit 1
    fi
    rm -rf "$(dir_of "$port")"
  done
  rm -f "$base/redis-cluster-create.log"
  log "deleted the nodes' dirs"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reset) reset ;;
  status) cluster_ok ;;
  *) echo "usage: $0 start|stop|reset|status" >&2; exit 2 ;;
esac
