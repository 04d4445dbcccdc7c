#!/usr/bin/env bash
# The local stack: a real Kafka broker and a real redis-server, started without Docker.
#
#   deploy/stack.sh up                    start both (no-op for what already runs)
#   deploy/stack.sh down                  stop both
#   deploy/stack.sh with-services CMD..   start what is not running, run CMD, then stop only
#                                         what this call started; exits with CMD's status
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kafka=$here/kafka/broker.sh
redis=$here/redis.sh

case "${1:-}" in
  up) "$kafka" start; "$redis" start ;;
  down) "$kafka" stop; "$redis" stop ;;
  with-services)
    shift
    started=()
    if ! "$kafka" status; then "$kafka" start; started+=("$kafka"); fi
    if ! "$redis" status; then "$redis" start; started+=("$redis"); fi
    cleanup() { for s in "${started[@]}"; do "$s" stop || true; done; }
    trap cleanup EXIT
    set +e
    "$@"
    exit $?
    ;;
  *) echo "usage: $0 up|down|with-services CMD [ARGS...]" >&2; exit 2 ;;
esac
