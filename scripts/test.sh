#!/usr/bin/env bash
# Runs every check and test jobfleet has, on a machine that has nothing but the toolchains
# (Rust, Java 17 with Maven, Go, Python): whatever is missing is installed and whatever is
# not running is started, each step printed with its time.
#
# - Services, through scripts/services.sh: Redis on 127.0.0.1:6379 (keeping nothing on
#   disk) and RabbitMQ on 127.0.0.1:5672 from Debian's packages, reused while they
#   answer; fake-gcs-server (go install, cached) for the data jobs' gs:// tests; and an
#   Apache Kafka of this run's own (KRaft, its jars from Maven Central, cached) on free
#   loopback ports, exported as TEST_KAFKA_BROKERS and stopped on exit, so no run sees
#   another's topics. TEST_KAFKA_BROKERS already set (another Kafka) is used instead.
# - Tools: cargo-nextest and cargo-deny (cargo install), Debian's chromium,
#   chromium-driver, faketime, prometheus and docker-compose, and kubernetes-validate from
#   PyPI.
#
# Tests that need a Redis or a RabbitMQ configured in a particular way start their own;
# tests/tests/redis_durability.rs, for one, starts redis-server with an append-only file.
#
# Steps: services, rustfmt, module layouts (every crate's `# Layout` docs name each of its
# modules: scripts/check-layout.py), import circles (no two modules of a crate need each
# other: scripts/check-imports.py), clippy, cargo-deny, deployment files, nextest (profile `ci`
# when CI=true), the README's data walkthrough run as written with the binary nextest
# built (scripts/check-walkthrough.sh), the backend-feature checks, the Redis persistence
# tests again on a Redis with an append-only file (scripts/test-persistent-redis.sh), then
# the tests that stop a shared service, alone. Safe to run again and from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

# Headless Chromium and ChromeDriver for the dashboard's browser test
# (tests/tests/dashboard.rs), from Debian's packages.
ensure_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    log "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
    return
  fi
  apt_install chromium chromium-driver
}

# Debian's libfaketime, under which cli/tests/clock_skew.rs runs a worker whose clock is
# shifted.
ensure_faketime() {
  compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || apt_install faketime
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
    apt_install "${missing[@]}"
    # The package starts a system Prometheus where it can; the tests start their own.
    $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
  fi
  if [ ! -x "$DEPLOY_VENV/bin/kubernetes-validate" ]; then
    log "installing kubernetes-validate into $DEPLOY_VENV"
    python3 -m venv "$DEPLOY_VENV"
    "$DEPLOY_VENV/bin/pip" install --quiet kubernetes-validate pyyaml ||
      die "could not install kubernetes-validate from PyPI"
  fi
}

# This run's Kafka lives in its own directory, removed on exit with the broker.
RUN_SERVICES=""
stop_run_services() {
  [ -n "$RUN_SERVICES" ] || return 0
  JOBFLEET_SERVICES_DIR="$RUN_SERVICES" scripts/services.sh down kafka || true
  rm -rf "$RUN_SERVICES"
}

ensure_services() {
  local exports
  # Redis and RabbitMQ at the addresses the tests default to (TEST_REDIS_URL and
  # TEST_AMQP_URL already set still win); fake-gcs-server's path is exported.
  scripts/services.sh up redis rabbitmq >/dev/null
  exports="$(scripts/services.sh up gcs)"
  eval "$exports"
  if [ -n "${TEST_KAFKA_BROKERS:-}" ]; then
    log "kafka: using TEST_KAFKA_BROKERS=$TEST_KAFKA_BROKERS"
  else
    RUN_SERVICES="$(mktemp -d "${TMPDIR:-/tmp}/jobfleet-test-services.XXXXXX")"
    trap stop_run_services EXIT
    exports="$(JOBFLEET_SERVICES_DIR="$RUN_SERVICES" scripts/services.sh up kafka)"
    eval "$exports"
  fi
  ensure_chromium
  ensure_faketime
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
# Every summary line of this run (nextest's, and the walkthroughs'), to total them at the
# end.
SUMMARIES="$(mktemp)"

# Runs nextest with "$@", keeping its summary line ("N tests run: N passed, ...").
run_nextest() {
  summarized cargo nextest run --profile "$NEXTEST_PROFILE" "$@"
}

# Runs "$@" (which runs nextest or the walkthroughs), keeping the summary lines it prints.
summarized() {
  local out status=0
  out="$(mktemp)"
  "$@" 2>&1 | tee "$out" || status=$?
  grep -E '^ *Summary \[|^walkthroughs: ' "$out" >>"$SUMMARIES" || true
  rm -f "$out"
  return "$status"
}

# The main suite: everything but the tests that stop shared services (the profile's
# default filter in .config/nextest.toml leaves them out).
nextest() {
  ensure_tool cargo-nextest cargo-nextest
  run_nextest --workspace
}

# The README's data walkthrough (and docs/data-jobs.md's), pasted as a reader would, in a
# directory whose path has a space, with the jobfleet the main suite just built; it needs
# no service. Each walkthrough counts as one test in the total.
walkthroughs() {
  summarized scripts/check-walkthrough.sh
}

# The backends are cargo features (docs/architecture.md, "Crates and features"): a
# producer built for RabbitMQ alone must not compile librdkafka, and a build without a
# backend must refuse its address naming the feature (jobfleet-connect' own tests, run
# here without its default features; the main suite runs them with every backend).
features() {
  local tree
  tree="$(cargo tree -p jobfleet-producer --no-default-features --features rabbitmq -e normal --prefix none)"
  if grep -E '^(rdkafka|rdkafka-sys|jobfleet-kafka) ' <<<"$tree"; then
    die "jobfleet-producer built with --features rabbitmq alone pulls in Kafka (above)"
  fi
  log "jobfleet-producer --features rabbitmq: $(sort -u <<<"$tree" | wc -l) packages, no rdkafka"
  run_nextest -p jobfleet-connect --no-default-features
}

# Tests that stop a shared service (RabbitMQ's stop_app) and so must run alone, after
# the main suite; see tests/tests/fault_broker_restart.rs.
# `--workspace`, like the main run, so cargo resolves the same features and rebuilds
# nothing (`-p jobfleet-tests` alone recompiled half the workspace: 198 s instead of 75).
nextest_alone() {
  run_nextest --workspace --ignore-default-filter -E 'binary(fault_broker_restart)'
}

# The tests that touch Redis persistence and data loss once more, with the shared test
# Redis keeping an append-only file (a Redis of the script's own): none may depend on the
# shared one being volatile.
persistent_redis() {
  NEXTEST_PROFILE="$NEXTEST_PROFILE" summarized scripts/test-persistent-redis.sh
}

# One closing line for every run: "tests: N passed, N failed".
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

# The import-circle check, after its own self-test (a synthetic crate with one circle).
imports() {
  python3 scripts/check-imports.py --self-test && python3 scripts/check-imports.py "$ROOT"
}

total_started=$SECONDS
disk
step "services" ensure_services
step "rustfmt" cargo fmt --all -- --check
step "module layouts" python3 scripts/check-layout.py "$ROOT"
step "import circles" imports
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo deny" deny
step "deployment files" deploy_checks
step "tests" nextest
step "README walkthrough" walkthroughs
step "backend features" features
step "tests on a persistent Redis" persistent_redis
step "tests that run alone" nextest_alone
disk
log "all checks passed in $((SECONDS - total_started))s"
total
