# Sourced by the stack's scripts (deploy/redis.sh, deploy/redis-cluster.sh,
# deploy/kafka/broker.sh).

# Whether pid file $1 names a live process whose command line holds $2: after a crash or a
# reboot its number may belong to another process, which must never be waited for or signalled.
pid_of() {
  local pid cmd
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmd=$(ps -o args= -p "$pid" 2>/dev/null || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *"$2"* ]]
}
