#!/usr/bin/env bash
# A real redis-server from Debian's package, run as a plain process (no systemd, no Docker).
#
#   deploy/redis.sh install   install the redis-server package when it is missing
#   deploy/redis.sh start     start it at TACT_REDIS_URL's host:port (default 127.0.0.1:6379)
#   deploy/redis.sh stop      stop the server this script started (no-op otherwise)
#   deploy/redis.sh status    exit 0 when a Redis answers there
#
# Environment:
#   TACT_REDIS_URL        redis[s]://[user:password@]host:port[/db] (default redis://127.0.0.1:6379/0)
#   TACT_RUN_DIR          where data, the log and the pid file live (default <repo>/.run)
#   TACT_REDIS_CERTS      certificates for rediss:// (default $TACT_RUN_DIR/certs; made by
#                         deploy/certs.sh when missing)
#   TACT_REDIS_ACL_EXTRA  ACL lines added verbatim (e.g. `user reader on >reader-secret ~* +@read`)
#
# Secured, for tests of clients that connect to a secured Redis:
# - rediss:// serves TLS only, on the URL's port, with server.pem from the certificates.
#   Clients trust ca.pem; a client certificate is optional (tls-auth-clients optional), so a
#   client without one gets in with the password, and one with a certificate that ca.pem did
#   not sign is refused.
# - user:password in the URL makes that user, with every right, and turns the default user off
#   (":password" with no user sets the default user's password instead). The ACL lines go in
#   a config file in the run dir (mode 600), so no password shows in `ps`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/pids.sh"
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
certs=${TACT_REDIS_CERTS:-${TACT_RUN_DIR:-$repo/.run}/certs}
tls=0
[[ "$url" == rediss://* ]] && tls=1
user='' password=''
userinfo=${url#*://}
userinfo=${userinfo%%/*}
if [[ "$userinfo" == *@* ]]; then
  userinfo=${userinfo%@*}
  user=${userinfo%%:*}
  [[ "$userinfo" == *:* ]] && password=${userinfo#*:}
  # Percent-decoded, as clients read the URL.
  user=$(printf '%b' "${user//%/\\x}")
  password=$(printf '%b' "${password//%/\\x}")
fi

log() { printf 'redis: %s\n' "$*" >&2; }

cli() {
  local args=(-h "$host" -p "$port")
  ((tls)) && args+=(--tls --cacert "$certs/ca.pem")
  [[ -n "$user" ]] && args+=(--user "$user")
  if [[ -z "$password" ]]; then
    redis-cli "${args[@]}" "$@"
  else
    # Through the environment, so the password does not show in `ps`.
    REDISCLI_AUTH=$password redis-cli "${args[@]}" "$@"
  fi
}

# What the server says to PING: PONG, LOADING (still reading its data), or an error.
reply() {
  command -v redis-cli >/dev/null && cli ping 2>&1 || true
}

answers() {
  [[ "$(reply)" == PONG ]]
}

write_acl() {
  # In a file (mode 600), not on the command line, so no password shows in `ps`.
  (
    umask 077
    {
      if [[ -n "$user" && "$user" != default ]]; then
        printf 'user %s on >%s ~* &* +@all\nuser default off\n' "$user" "$password"
      elif [[ -n "$password" ]]; then
        printf 'user default on >%s ~* &* +@all\n' "$password"
      fi
      [[ -z "${TACT_REDIS_ACL_EXTRA:-}" ]] || printf '%s\n' "$TACT_REDIS_ACL_EXTRA"
    } >"$run/acl.conf"
  )
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
  local args=(--bind "$host" --port "$port")
  if ((tls)); then
    "$here/certs.sh" "$certs"
    args=(--bind "$host" --port 0 --tls-port "$port" --tls-cert-file "$certs/server.pem"
      --tls-key-file "$certs/server.key" --tls-ca-cert-file "$certs/ca.pem" --tls-auth-clients optional)
  fi
  if [[ -n "$password${TACT_REDIS_ACL_EXTRA:-}" ]]; then
    write_acl
    # A config file must come first; the options after it are read as if appended to it.
    args=("$run/acl.conf" "${args[@]}")
  fi
  redis-server "${args[@]}" --daemonize yes \
    --pidfile "$run/redis.pid" --logfile "$run/redis.log" --dir "$run" \
    --appendonly yes --appendfsync everysec --save ""
  # With much data it loads its append-only file first, answering LOADING meanwhile (seconds
  # per GB): waited for as long as it is alive and loading, with a word every 10 s.
  local tries=0 loading=0 said
  while ((tries < 100)); do
    said=$(reply)
    if [[ "$said" == PONG ]]; then
      log "ready at $host:$port"
      return 0
    fi
    if [[ "$said" == *LOADING* ]] && ours; then
      ((loading++ % 100)) || log "loading its data ($(du -sh "$run" | cut -f1) in $run); waiting"
    else
      tries=$((tries + 1))
    fi
    sleep 0.1
  done
  log "redis-server did not answer at $host:$port; its log:"
  tail -n 20 "$run/redis.log" >&2 || true
  exit 1
}

ours() {
  pid_of "$run/redis.pid" redis-server
}

stop() {
  if ours; then
    log "stopping redis-server (pid $(cat "$run/redis.pid"))"
    cli shutdown >/dev/null 2>&1 || kill "$(cat "$run/redis.pid")"
    for _ in $(seq 1 50); do
      ours || break
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
