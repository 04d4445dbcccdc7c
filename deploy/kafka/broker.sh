#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft: broker and controller in one JVM), assembled from
# Kafka's own artifacts on Maven Central and started with the JDK on this machine. No Docker.
#
#   deploy/kafka/broker.sh fetch          resolve the pinned broker jars into the cache (once)
#   deploy/kafka/broker.sh start          start the broker and wait until it accepts clients
#   deploy/kafka/broker.sh stop           stop it (no-op when it is not running)
#   deploy/kafka/broker.sh status         exit 0 when a broker answers at the address
#   deploy/kafka/broker.sh tool CLASS ..  run a Kafka tool class (e.g. ConsumerGroupCommand)
#   deploy/kafka/broker.sh classpath      print the classpath
#
# Environment:
#   TACT_KAFKA_BOOTSTRAP   host:port clients use (default 127.0.0.1:9092); the broker listens there
#   TACT_KAFKA_CONTROLLER_PORT  KRaft controller port (default: client port + 1)
#   TACT_CACHE_DIR         where jars are cached (default ~/.cache/tact)
#   TACT_RUN_DIR           where data, logs and the pid file live (default <repo>/.run)
#   TACT_KAFKA_HEAP        JVM heap (default 512m)
#   TACT_KAFKA_SECURE      1: a secured broker instead (below); its data lives apart, in
#                          $TACT_RUN_DIR/kafka-secure-PORT, so both kinds can run side by side
#   TACT_KAFKA_CERTS       certificates of the secured broker (default $TACT_RUN_DIR/certs;
#                          made by deploy/certs.sh when missing)
#
# The secured broker (TACT_KAFKA_SECURE=1), for tests of clients that connect to a secured Kafka:
#   PORT      SASL_SSL, mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, each with user `tact`
#             and password `tact-secret`; clients trust ca.pem
#   PORT + 1  the KRaft controller, as in the plain broker
#   PORT + 2  SSL with a required client certificate signed by ca.pem (mutual TLS)
#   PORT + 3  PLAINTEXT on 127.0.0.1, only for the broker's own inter-broker traffic
# `start`, `stop` and `status` work as for the plain broker (status probes PORT); `tool` does not
# (the tools would need the client side of the security set up).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../pids.sh"
repo=$(cd "$here/../.." && pwd)
version=$(tr -d '[:space:]' <"$here/VERSION")

bootstrap=${TACT_KAFKA_BOOTSTRAP:-127.0.0.1:9092}
bootstrap=${bootstrap%%,*}
host=${bootstrap%:*}
port=${bootstrap##*:}
controller_port=${TACT_KAFKA_CONTROLLER_PORT:-$((port + 1))}
cache=${TACT_CACHE_DIR:-$HOME/.cache/tact}/kafka-$version
heap=${TACT_KAFKA_HEAP:-512m}
secure=${TACT_KAFKA_SECURE:-0}
[[ "$secure" == 0 || "$secure" == 1 ]] || { echo "TACT_KAFKA_SECURE must be 0 or 1" >&2; exit 2; }
if ((secure)); then
  run=${TACT_RUN_DIR:-$repo/.run}/kafka-secure-$port
  certs=${TACT_KAFKA_CERTS:-${TACT_RUN_DIR:-$repo/.run}/certs}
else
  run=${TACT_RUN_DIR:-$repo/.run}/kafka-$port
fi

log() { printf 'kafka: %s\n' "$*" >&2; }

listening() {
  # The client listener opens only once the broker is ready, so a TCP connect is a readiness probe.
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

fetch() {
  if [[ -f "$cache/.complete" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch the broker"; exit 1; }
  command -v java >/dev/null || { log "a JDK 17+ is required to run the broker"; exit 1; }
  log "fetching Apache Kafka $version from Maven Central into $cache"
  rm -rf "$cache.partial"
  mkdir -p "$cache.partial"
  if ! mvn -B -Dstyle.color=never -f "$here/pom.xml" -Dkafka.version="$version" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache.partial/libs" \
    >"$cache.partial/mvn.log" 2>&1; then
    log "Maven could not resolve the broker; its output:"
    tail -n 40 "$cache.partial/mvn.log" >&2
    exit 1
  fi
  rm -rf "$cache"
  mv "$cache.partial" "$cache"
  touch "$cache/.complete"
}

classpath() {
  fetch
  local jars=("$cache"/libs/*.jar)
  local IFS=:
  printf '%s' "${jars[*]}"
}

listener_config() {
  if ((!secure)); then
    cat <<EOF
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port
advertised.listeners=PLAINTEXT://$host:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
    return 0
  fi
  "$repo/deploy/certs.sh" "$certs" >&2
  # Kafka reads a PEM key store as one file holding the (unencrypted PKCS#8) key and its chain.
  (umask 077 && cat "$certs/server.key" "$certs/server.pem" >"$run/server-keystore.pem")
  cat <<EOF
listeners=SASL_SSL://$host:$port,CONTROLLER://$host:$controller_port,SSL://$host:$((port + 2)),PLAINTEXT://127.0.0.1:$((port + 3))
advertised.listeners=SASL_SSL://$host:$port,SSL://$host:$((port + 2)),PLAINTEXT://127.0.0.1:$((port + 3))
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
ssl.keystore.type=PEM
ssl.keystore.location=$run/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$certs/ca.pem
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tact="tact-secret";
# SCRAM credentials live in the cluster metadata, written when the data dir is formatted.
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
}

write_config() {
  mkdir -p "$run/data" "$run/logs"
  {
    cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$host:$controller_port
EOF
    listener_config
    cat <<EOF
log.dirs=$run/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=8388608
# A local broker for development, demos and backtests: history ingested with its own event
# times (2010, 2019) must not be deleted by time retention minutes later (the default is 7
# days by record time, checked every 5 minutes).
log.retention.ms=-1
EOF
  } >"$run/server.properties"
  cat >"$run/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="server" fileName="$run/logs/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="kafka.request.logger" level="WARN"/>
  </Loggers>
</Configuration>
EOF
}

jvm() {
  # Sets the array `java` to the JVM command line; callers append the main class and arguments.
  java=(java -Xms"$heap" -Xmx"$heap" -XX:+UseSerialGC -Xss1m -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$run/log4j2.xml" -cp "$(classpath)")
}

pid_alive() {
  pid_of "$run/kafka.pid" "kafka.Kafka $run/server.properties"
}

start() {
  if listening; then
    log "a broker already answers at $host:$port"
    return 0
  fi
  fetch
  if pid_alive; then
    log "broker process $(cat "$run/kafka.pid") is starting; waiting for it"
  else
    write_config
    if [[ ! -f "$run/data/meta.properties" ]]; then
      local cluster_id
      # Never starting with "-", which the storage tool would take for an option (as Kafka's
      # own Uuid.randomUuid avoids): one data dir in 64 failed to format.
      cluster_id=$(python3 -c 'import base64, uuid
while True:
    c = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not c.startswith("-"):
        break
print(c)')
      local scram=()
      if ((secure)); then
        scram=(--add-scram 'SCRAM-SHA-256=[name=tact,password=tact-secret]'
          --add-scram 'SCRAM-SHA-512=[name=tact,password=tact-secret]')
      fi
      jvm
      "${java[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$run/server.properties" "${scram[@]}" \
        >"$run/logs/format.log" 2>&1 \
        || { log "formatting the data dir failed:"; cat "$run/logs/format.log" >&2; exit 1; }
    fi
    log "starting Apache Kafka $version at $host:$port (controller $controller_port, data in $run)"
    jvm
    nohup "${java[@]}" kafka.Kafka "$run/server.properties" </dev/null >"$run/logs/stdout.log" 2>&1 &
    echo $! >"$run/kafka.pid"
  fi
  local deadline=$((SECONDS + ${TACT_KAFKA_START_TIMEOUT:-120}))
  until listening; do
    if ! pid_alive; then
      log "the broker exited during start-up; last lines of its logs:"
      tail -n 40 "$run/logs/stdout.log" "$run/logs/server.log" >&2 2>/dev/null || true
      exit 1
    fi
    if ((SECONDS > deadline)); then
      log "the broker did not open $host:$port in time; last lines of its log:"
      tail -n 40 "$run/logs/server.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.5
  done
  log "ready at $host:$port (pid $(cat "$run/kafka.pid"))"
}

stop() {
  if ! pid_alive; then
    rm -f "$run/kafka.pid"
    if listening; then
      log "a broker answers at $host:$port but was not started by this script; leaving it alone"
    fi
    return 0
  fi
  local pid
  pid=$(cat "$run/kafka.pid")
  log "stopping broker (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    pid_alive || break
    sleep 0.5
  done
  if pid_alive; then
    log "broker did not stop in 30 s; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$run/kafka.pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) listening ;;
  classpath) classpath ;;
  tool) shift; write_config; jvm; exec "${java[@]}" "$@" ;;
  *) echo "usage: $0 fetch|start|stop|status|classpath|tool CLASS [ARGS...]" >&2; exit 2 ;;
esac
