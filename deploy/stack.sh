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
    # What already answers at the configured address is used as it is, and left running.
    reusing() { echo "stack: a $1 already answers at $2: using it (TACT_$3 sets another)" >&2; }
    if ! "$kafka" status; then "$kafka" start; started+=("$kafka")
    else reusing "Kafka broker" "${TACT_KAFKA_BOOTSTRAP:-127.0.0.1:9092}" KAFKA_BOOTSTRAP; fi
    if ! "$redis" status; then "$redis" start; started+=("$redis")
    else
      address=${TACT_REDIS_URL:-redis://127.0.0.1:6379/0}
      address=${address#*://}; address=${address##*@}; address=${address%%/*}  # no password
      reusing Redis "$address" REDIS_URL
    fi
    cleanup() { for s in "${started[@]}"; do "$s" stop || true; done; }
    trap cleanup EXIT
    set +e
    "$@"
    exit $?
    ;;
  *) echo "usage: $0 up|down|with-services CMD [ARGS...]" >&2; exit 2 ;;
esac
