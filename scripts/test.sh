#!/usr/bin/env bash
# Runs every check and test jobfleet has, starting the services the suite needs when they
# are not already running: Redis on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672, and
# installing what the dashboard and deployment tests use when missing: Debian's chromium,
# chromium-driver, prometheus and docker-compose, and kubernetes-validate from PyPI. A
# Kafka-compatible server (tansu, in memory) is always started for this run on a free
# port, exported as TEST_KAFKA_BROKERS, and stopped on exit; TEST_KAFKA_BROKERS already
# set (e.g. to a `docker compose up -d kafka`) is used instead.
#
# The Redis it starts keeps nothing on disk (`--appendonly no`): the tests that use it set
# redis.require_persistence = false; tests/tests/redis_durability.rs starts its own
# redis-server with an append-only file.
#
# Steps: services, kafka, rustfmt, clippy, cargo-deny, deployment files, nextest (profile `ci` when CI=true),
# the backend-feature checks, then the tests that stop a shared service, alone.
# Safe to run again and from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
RABBIT_PORT=5672

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs "$@" as a named step and prints how long it took.
step() {
  local name="$1"
  shift
  log "$name"
  local started=$SECONDS
  "$@"
  log "$name: done in $((SECONDS - started))s"
}

port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

redis_up() {
  command -v redis-cli >/dev/null 2>&1 &&
    [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

ensure_redis() {
  if redis_up; then
    log "redis: already running on $REDIS_HOST:$REDIS_PORT"
    return
  fi
  command -v redis-server >/dev/null 2>&1 ||
    die "Redis is not running on $REDIS_HOST:$REDIS_PORT and redis-server is not installed.
  Install it (apt-get install redis-server) or start one: docker compose up -d redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do
    redis_up && { log "redis: started"; return; }
    sleep 0.2
  done
  die "Redis did not answer PING within 10s; see /var/log/redis/ci.log.
  Start it by hand: redis-server --port $REDIS_PORT --daemonize yes"
}

rabbit_up() {
  port_open 127.0.0.1 "$RABBIT_PORT" && rabbitmqctl status >/dev/null 2>&1
}

ensure_rabbitmq() {
  if port_open 127.0.0.1 "$RABBIT_PORT"; then
    log "rabbitmq: already listening on 127.0.0.1:$RABBIT_PORT"
    return
  fi
  command -v rabbitmq-server >/dev/null 2>&1 ||
    die "RabbitMQ is not running on 127.0.0.1:$RABBIT_PORT and rabbitmq-server is not installed.
  Install it (apt-get install rabbitmq-server) or start one: docker compose up -d rabbitmq"
  rabbitmq-server -detached
  if ! timeout 60 rabbitmqctl await_startup >/dev/null 2>&1; then
    die "RabbitMQ did not start within 60s; see /var/log/rabbitmq/.
  Start it by hand: rabbitmq-server -detached && rabbitmqctl await_startup"
  fi
  for _ in $(seq 1 50); do
    rabbit_up && { log "rabbitmq: started"; return; }
    sleep 0.2
  done
  die "RabbitMQ started but 127.0.0.1:$RABBIT_PORT does not accept connections"
}

# Headless Chromium and ChromeDriver for the dashboard's browser test
# (tests/tests/dashboard.rs), from Debian's packages.
ensure_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    log "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
    return
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "the dashboard test needs /usr/bin/chromium and /usr/bin/chromedriver; install
  Debian's chromium and chromium-driver (or your system's equivalents at those paths)"
  log "installing chromium and chromium-driver (the dashboard's browser test)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y chromium chromium-driver >/dev/null ||
    { $sudo apt-get update >/dev/null && $sudo apt-get install -y chromium chromium-driver >/dev/null; } ||
    die "could not install chromium and chromium-driver with apt-get"
}

# What the deployment checks need: Debian's prometheus (promtool, and the server that
# tests/tests/prometheus.rs starts) and docker-compose (to check the compose file; no
# image is pulled), and kubernetes-validate in a virtualenv kept under ~/.cache.
DEPLOY_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/jobfleet/deploy-venv"
ensure_deploy_tools() {
  local missing=()
  [ -x /usr/bin/prometheus ] && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 ||
      die "the deployment checks need ${missing[*]}; install them (Debian: apt-get install ${missing[*]})"
    log "installing ${missing[*]} (deployment checks)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y "${missing[@]}" >/dev/null ||
      die "could not install ${missing[*]} with apt-get"
    # The package starts a system Prometheus where it can; the tests start their own.
    $sudo systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
  fi
  if [ ! -x "$DEPLOY_VENV/bin/kubernetes-validate" ]; then
    log "installing kubernetes-validate into $DEPLOY_VENV"
    python3 -m venv "$DEPLOY_VENV"
    "$DEPLOY_VENV/bin/pip" install --quiet kubernetes-validate pyyaml ||
      die "could not install kubernetes-validate from PyPI"
  fi
}

ensure_services() {
  ensure_redis
  ensure_rabbitmq
  ensure_chromium
  ensure_deploy_tools
}

# The deployment files: no container engine can pull images here, so the compose file is
# checked by docker-compose, the Prometheus config by promtool, and the Kubernetes
# manifests, the KEDA ScaledObject and every metric the dashboards and autoscalers query
# by scripts/check-deploy.py. A real Prometheus scraping real processes is a test
# (tests/tests/prometheus.rs).
deploy_checks() {
  JOBFLEET_HTTP_TOKEN=compose-config-check-token docker-compose -f docker-compose.yml config -q
  log "docker-compose.yml: valid"
  promtool check config deploy/prometheus/prometheus.yml
  "$DEPLOY_VENV/bin/python" scripts/check-deploy.py "$ROOT" "$DEPLOY_VENV/bin/kubernetes-validate"
}

TANSU_LOG="${TMPDIR:-/tmp}/jobfleet-tansu.log"
TANSU_PID=""

stop_kafka() {
  if [ -n "$TANSU_PID" ]; then
    kill "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
    TANSU_PID=""
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts tansu (installing it once into ~/.cargo/bin) with in-memory storage on a free
# loopback port, waits until it accepts connections and exports TEST_KAFKA_BROKERS.
ensure_kafka() {
  if [ -n "${TEST_KAFKA_BROKERS:-}" ]; then
    log "kafka: using TEST_KAFKA_BROKERS=$TEST_KAFKA_BROKERS"
    return
  fi
  if ! command -v tansu >/dev/null 2>&1; then
    log "installing tansu (a Kafka-compatible broker; takes a while, once)"
    cargo install tansu --locked --features dynostore
  fi
  local port
  port="$(free_port)"
  trap stop_kafka EXIT
  tansu broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$TANSU_LOG" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 1 100); do
    if port_open 127.0.0.1 "$port"; then
      export TEST_KAFKA_BROKERS="127.0.0.1:$port"
      log "kafka: tansu started on $TEST_KAFKA_BROKERS (log: $TANSU_LOG)"
      return
    fi
    kill -0 "$TANSU_PID" 2>/dev/null || break
    sleep 0.2
  done
  die "tansu did not accept connections on 127.0.0.1:$port within 20s; see $TANSU_LOG.
  Start a Kafka by hand (docker compose up -d kafka) and set TEST_KAFKA_BROKERS=127.0.0.1:9092"
}

# Installs a cargo subcommand from crates.io when it is missing (a new machine).
ensure_tool() {
  local bin="$1" crate="$2"
  if ! command -v "$bin" >/dev/null 2>&1; then
    log "installing $crate"
    cargo install --locked "$crate"
  fi
}

# Bans, licenses and sources need nothing but the lock file. Advisories need the RustSec
# database, cloned from GitHub: where GitHub cannot be reached the last fetched copy is
# used, and with no copy at all the advisories check is reported as skipped, loudly.
deny() {
  ensure_tool cargo-deny cargo-deny
  cargo deny check bans licenses sources
  local out
  if out="$(cargo deny check advisories 2>&1)"; then
    printf '%s\n' "$out" >&2
    return
  fi
  if ! grep -q "failed to fetch advisory database" <<<"$out"; then
    printf '%s\n' "$out" >&2
    return 1
  fi
  if compgen -G "$HOME/.cargo/advisory-dbs/*/crates" >/dev/null; then
    log "advisory database unreachable: checking against the last fetched copy"
    cargo deny --offline check advisories
  else
    log "WARNING: advisories NOT checked: the RustSec database could not be fetched and no"
    log "WARNING: local copy exists. Run 'cargo deny check advisories' where GitHub is reachable."
  fi
}

NEXTEST_PROFILE=default
[ "${CI:-}" = "true" ] && NEXTEST_PROFILE=ci
# Every nextest summary line of this run, to total them at the end.
SUMMARIES="$(mktemp)"

# Runs nextest with "$@", keeping its summary line ("N tests run: N passed, ...").
run_nextest() {
  local out status=0
  out="$(mktemp)"
  cargo nextest run --profile "$NEXTEST_PROFILE" "$@" 2>&1 | tee "$out" || status=$?
  grep -E '^ *Summary \[' "$out" >>"$SUMMARIES" || true
  rm -f "$out"
  return "$status"
}

# The main suite: everything but the tests that stop shared services (the profile's
# default filter in .config/nextest.toml leaves them out).
nextest() {
  ensure_tool cargo-nextest cargo-nextest
  run_nextest --workspace
}

# The backends are cargo features (docs/architecture.md, "Crates and features"): a
# producer built for RabbitMQ alone must not compile librdkafka, and a build without a
# backend must refuse its address naming the feature (jobfleet-backends' own tests, run
# here without its default features; the main suite runs them with every backend).
features() {
  local tree
  tree="$(cargo tree -p jobfleet-producer --no-default-features --features rabbitmq -e normal --prefix none)"
  if grep -E '^(rdkafka|rdkafka-sys|jobfleet-kafka) ' <<<"$tree"; then
    die "jobfleet-producer built with --features rabbitmq alone pulls in Kafka (above)"
  fi
  log "jobfleet-producer --features rabbitmq: $(sort -u <<<"$tree" | wc -l) packages, no rdkafka"
  run_nextest -p jobfleet-backends --no-default-features
}

# Tests that stop a shared service (RabbitMQ's stop_app) and so must run alone, after
# the main suite; see tests/tests/fault_broker_restart.rs.
# `--workspace`, like the main run, so cargo resolves the same features and rebuilds
# nothing (`-p jobfleet-tests` alone recompiled half the workspace: 198 s instead of 75).
nextest_alone() {
  run_nextest --workspace --ignore-default-filter -E 'binary(fault_broker_restart)'
}

# One closing line for both runs: "tests: N passed, N failed".
total() {
  local passed failed
  # grep finds nothing when no run failed: that is not an error here.
  passed="$({ grep -oE '[0-9]+ passed' "$SUMMARIES" || true; } | awk '{s += $1} END {print s + 0}')"
  failed="$({ grep -oE '[0-9]+ failed' "$SUMMARIES" || true; } | awk '{s += $1} END {print s + 0}')"
  printf 'tests: %s passed, %s failed\n' "$passed" "$failed"
}

# Free disk space and the size of the build: a full build needs several GB, and a CI run
# that ran out of space once failed in the middle of linking.
disk() {
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  log "disk: $(df -h --output=avail "$ROOT" | tail -1 | tr -d ' ') free; build directory $(du -sh "$target" 2>/dev/null | cut -f1 || echo none)"
}

total_started=$SECONDS
disk
step "services" ensure_services
step "kafka" ensure_kafka
step "rustfmt" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo deny" deny
step "deployment files" deploy_checks
step "tests" nextest
step "backend features" features
step "tests that run alone" nextest_alone
disk
log "all checks passed in $((SECONDS - total_started))s"
total
