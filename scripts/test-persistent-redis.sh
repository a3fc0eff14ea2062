#!/usr/bin/env bash
# Runs the tests that touch Redis persistence and data loss with the shared test Redis
# keeping an append-only file, to show that none of them depends on the shared Redis
# being volatile (issue #30): a redis-server of this run's own with `--appendonly yes`,
# on a free loopback port in a temporary directory, exported as TEST_REDIS_URL and
# stopped (its directory removed) on exit. RabbitMQ is the usual one (TEST_AMQP_URL).
#
# The tests: every test of jobfleet-redis (its own store checks, the persistence check and
# the data-loss sentinel), the store conformance suite on Redis (testkit/tests/stores.rs),
# cli/tests/data_loss.rs and tests/tests/redis_durability.rs. Tests that need a volatile
# Redis start one of their own (jobfleet_testkit::RedisServer).
#
# Usage: scripts/test-persistent-redis.sh [more cargo-nextest arguments]
#   NEXTEST_PROFILE   the nextest profile (default: default; scripts/test.sh uses ci in CI)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

FILTER='package(jobfleet-redis)
  | (package(jobfleet-testkit) & binary(stores) & test(/^redis::/))
  | (package(jobfleet) & binary(data_loss))
  | (package(jobfleet-tests) & binary(redis_durability))'

command -v redis-server >/dev/null 2>&1 ||
  die "redis-server is missing: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
command -v redis-cli >/dev/null 2>&1 ||
  die "redis-cli is missing: install it (Debian/Ubuntu: apt-get install redis-tools; macOS: brew install redis)"
command -v cargo-nextest >/dev/null 2>&1 ||
  die "cargo-nextest is missing: cargo install --locked cargo-nextest"

DIR="$(mktemp -d "${TMPDIR:-/tmp}/jobfleet-persistent-redis.XXXXXX")"
PORT="$(free_port)"
PID=""

stop_redis() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    log "redis (append-only file): stopped"
  fi
  rm -rf "$DIR"
}
trap stop_redis EXIT

start_redis() {
  redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DIR" --logfile "$DIR/redis.log" \
    --appendonly yes --appendfsync everysec >&2 &
  PID=$!
  await_redis "$PORT" "$DIR/redis.log" "$PID"
  local aof
  aof="$(redis-cli -h 127.0.0.1 -p "$PORT" info persistence | tr -d '\r' | sed -n 's/^aof_enabled://p')"
  [ "$aof" = "1" ] || die "the Redis on port $PORT answers but has no append-only file (aof_enabled:$aof)"
  log "redis (append-only file): 127.0.0.1:$PORT, files in $DIR"
}

run_tests() {
  TEST_REDIS_URL="redis://127.0.0.1:$PORT/" cargo nextest run \
    --profile "${NEXTEST_PROFILE:-default}" --workspace -E "$FILTER" "$@"
}

step "redis with an append-only file" start_redis
step "tests on a persistent Redis" run_tests "$@"
