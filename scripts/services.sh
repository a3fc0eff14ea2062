#!/usr/bin/env bash
# The services jobfleet's tests, benchmarks and examples run against, each installed when
# missing and started when not answering, on loopback only:
#
#   redis     Redis on 127.0.0.1:6379, keeping nothing on disk (Debian's redis-server)
#   rabbitmq  RabbitMQ on 127.0.0.1:5672 (Debian's rabbitmq-server)
#   kafka     Apache Kafka (version in scripts/kafka/pom.xml) in KRaft mode, one node that
#             is broker and controller, on free loopback ports; its jars come from Maven
#             Central into ~/.cache/jobfleet/kafka-VERSION, its data and log live in
#             $JOBFLEET_SERVICES_DIR/kafka (default ~/.cache/jobfleet/services/kafka)
#   gcs       fake-gcs-server (a GCS emulator, `go install` at a pinned version into
#             ~/.cache/jobfleet/bin); tests start their own on a free port, so `up`
#             installs it and exports where it is
#
# Usage:
#   scripts/services.sh up [NAME...]      install and start what is missing (all by
#                                         default), then print `export` lines for them:
#                                         eval "$(scripts/services.sh up)"
#   scripts/services.sh down [NAME...]    stop them (all by default)
#   scripts/services.sh status            each service's address and whether it answers
#   scripts/services.sh env               the `export` lines alone
#
# Everything but the export lines goes to stderr, with each step's time. Safe to run
# again: a service that answers is reused. Needs root or sudo for apt-get, Java 17+ and
# Maven for Kafka, Go for fake-gcs-server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/jobfleet"
SERVICES_DIR="${JOBFLEET_SERVICES_DIR:-$CACHE/services}"
ALL=(redis rabbitmq kafka gcs)

REDIS_PORT=6379
RABBIT_PORT=5672
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")"
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
KAFKA_DIR="$SERVICES_DIR/kafka"
FAKE_GCS_MODULE=github.com/fsouza/fake-gcs-server
FAKE_GCS_VERSION=v1.56.1
FAKE_GCS_BIN="$CACHE/bin/fake-gcs-server"

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

# --- Redis ------------------------------------------------------------------------

redis_up() {
  command -v redis-cli >/dev/null 2>&1 &&
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

redis_start() {
  if redis_up; then
    log "redis: already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  # Debian's package enables a service where systemd runs; here the script owns it.
  mkdir -p "$SERVICES_DIR/redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir "$SERVICES_DIR/redis" \
    --logfile "$SERVICES_DIR/redis/redis.log" >&2
  await_redis "$REDIS_PORT" "$SERVICES_DIR/redis/redis.log"
  log "redis: started on 127.0.0.1:$REDIS_PORT (log: $SERVICES_DIR/redis/redis.log)"
}

redis_stop() {
  redis_up || return 0
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  log "redis: stopped"
}

redis_env() { echo "export TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/"; }
redis_status() { redis_up && echo "redis     up    redis://127.0.0.1:$REDIS_PORT/" || echo "redis     down"; }

# --- RabbitMQ ---------------------------------------------------------------------

rabbit_up() { port_open 127.0.0.1 "$RABBIT_PORT"; }

rabbitmq_start() {
  if rabbit_up; then
    log "rabbitmq: already listening on 127.0.0.1:$RABBIT_PORT"
    return
  fi
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  # Loopback only; the package's default would listen on every interface.
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >&2
  # `await_startup` fails at once ("node not running at all") until the detached
  # Erlang node has registered with epmd, so it is asked again until the deadline.
  local deadline=$((SECONDS + 90))
  until rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] ||
      die "RabbitMQ did not start within 90s; see /var/log/rabbitmq/"
    sleep 1
  done
  for _ in $(seq 1 50); do
    rabbit_up && {
      log "rabbitmq: started on 127.0.0.1:$RABBIT_PORT (logs: /var/log/rabbitmq/)"
      return
    }
    sleep 0.2
  done
  die "RabbitMQ started but 127.0.0.1:$RABBIT_PORT does not accept connections"
}

rabbitmq_stop() {
  rabbit_up || return 0
  rabbitmqctl stop >/dev/null 2>&1 || true
  log "rabbitmq: stopped"
}

rabbitmq_env() { echo "export TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f"; }
rabbitmq_status() { rabbit_up && echo "rabbitmq  up    amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f" || echo "rabbitmq  down"; }

# --- Apache Kafka -----------------------------------------------------------------

kafka_port() { cat "$KAFKA_DIR/port" 2>/dev/null || true; }

kafka_up() {
  local pid port
  pid="$(cat "$KAFKA_DIR/pid" 2>/dev/null || true)"
  port="$(kafka_port)"
  [ -n "$pid" ] && [ -n "$port" ] && kill -0 "$pid" 2>/dev/null && port_open 127.0.0.1 "$port"
}

# Kafka's jars and everything they need at run time, resolved by Maven from Maven
# Central into a cached directory (once per version).
kafka_install() {
  [ -f "$KAFKA_LIBS/.complete" ] && return
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "kafka: fetching Apache Kafka $KAFKA_VERSION's jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"
  mvn -q -B -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >&2 ||
    die "mvn could not fetch Apache Kafka $KAFKA_VERSION (Maven Central must be reachable)"
  touch "$KAFKA_LIBS/.complete"
}

kafka_java() {
  java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_DIR" "$@"
}

kafka_start() {
  if kafka_up; then
    log "kafka: already running on 127.0.0.1:$(kafka_port)"
    return
  fi
  kafka_install
  local started=$SECONDS port controller
  port="$(free_port)"
  controller="$(free_port)"
  while [ "$controller" = "$port" ]; do controller="$(free_port)"; done
  # A fresh data directory each start: a broker that is not running has nothing the
  # tests need, and a new cluster id keeps an old log from confusing the new node.
  rm -rf "$KAFKA_DIR"
  mkdir -p "$KAFKA_DIR/data"
  {
    cat "$ROOT/scripts/kafka/server.properties"
    echo "node.id=1"
    echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
    echo "controller.quorum.bootstrap.servers=127.0.0.1:$controller"
    echo "log.dirs=$KAFKA_DIR/data"
  } >"$KAFKA_DIR/server.properties"
  kafka_java kafka.tools.StorageTool format --standalone \
    --cluster-id "$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null)" \
    --config "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1 ||
    die "formatting Kafka's data directory failed; see $KAFKA_DIR/format.log"
  # Its own session: a Ctrl-C in the shell that started it does not stop it.
  setsid java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_DIR" kafka.Kafka "$KAFKA_DIR/server.properties" \
    </dev/null >"$KAFKA_DIR/stdout.log" 2>&1 &
  echo $! >"$KAFKA_DIR/pid"
  echo "$port" >"$KAFKA_DIR/port"
  for _ in $(seq 1 600); do
    if grep -q "Kafka Server started" "$KAFKA_DIR/server.log" 2>/dev/null && port_open 127.0.0.1 "$port"; then
      log "kafka: Apache Kafka $KAFKA_VERSION started on 127.0.0.1:$port in $((SECONDS - started))s (log: $KAFKA_DIR/server.log)"
      return
    fi
    kill -0 "$(cat "$KAFKA_DIR/pid")" 2>/dev/null || break
    sleep 0.1
  done
  die "Kafka did not start within 60s; see $KAFKA_DIR/server.log and $KAFKA_DIR/stdout.log"
}

kafka_stop() {
  local pid
  pid="$(cat "$KAFKA_DIR/pid" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$KAFKA_DIR/pid"
  log "kafka: stopped"
}

kafka_env() { kafka_up && echo "export TEST_KAFKA_BROKERS=127.0.0.1:$(kafka_port)" || true; }
kafka_status() { kafka_up && echo "kafka     up    127.0.0.1:$(kafka_port) (Apache Kafka $KAFKA_VERSION, $KAFKA_DIR)" || echo "kafka     down"; }

# --- fake-gcs-server ----------------------------------------------------------------

gcs_installed() { [ -x "$FAKE_GCS_BIN" ] && [ "$(cat "$FAKE_GCS_BIN.version" 2>/dev/null)" = "$FAKE_GCS_VERSION" ]; }

gcs_start() {
  if gcs_installed; then
    log "gcs: fake-gcs-server $FAKE_GCS_VERSION at $FAKE_GCS_BIN"
    return
  fi
  command -v go >/dev/null 2>&1 || apt_install golang-go
  log "gcs: building fake-gcs-server $FAKE_GCS_VERSION (go install, once)"
  mkdir -p "$(dirname "$FAKE_GCS_BIN")"
  GOBIN="$(dirname "$FAKE_GCS_BIN")" go install "$FAKE_GCS_MODULE@$FAKE_GCS_VERSION" >&2 ||
    die "go install $FAKE_GCS_MODULE@$FAKE_GCS_VERSION failed (the Go module proxy must be reachable)"
  echo "$FAKE_GCS_VERSION" >"$FAKE_GCS_BIN.version"
}

gcs_stop() { :; }
gcs_env() { gcs_installed && echo "export TEST_FAKE_GCS_SERVER=$FAKE_GCS_BIN" || true; }
gcs_status() { gcs_installed && echo "gcs       ready $FAKE_GCS_BIN ($FAKE_GCS_VERSION; each test starts its own)" || echo "gcs       not installed"; }

# --- main ---------------------------------------------------------------------------

names() {
  local name
  for name in "$@"; do
    case "$name" in
      redis | rabbitmq | kafka | gcs) ;;
      *) die "unknown service '$name': one of ${ALL[*]}" ;;
    esac
  done
}

command="${1:-}"
[ $# -gt 0 ] && shift
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${ALL[@]}")
names "${selected[@]}"

case "$command" in
  up)
    for name in "${selected[@]}"; do step "$name" "${name}_start"; done
    for name in "${selected[@]}"; do "${name}_env"; done
    ;;
  down)
    for name in "${selected[@]}"; do "${name}_stop"; done
    ;;
  env)
    for name in "${selected[@]}"; do "${name}_env"; done
    ;;
  status)
    for name in "${selected[@]}"; do "${name}_status"; done
    ;;
  *)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
