#!/usr/bin/env bash
# The Kafka figures of docs/benchmarks.md, on an Apache Kafka of this run's own (started
# by scripts/services.sh in a temporary directory and stopped on exit) and the local
# Redis: one JSON line per measurement.
#
#   1. `jobfleet bench` (full semantics) beside bare rdkafka on the same broker in the
#      same run (`ratio_e2e`), at 1, 3 and 6 partitions per topic, RUNS times each;
#   2. worker processes: scripts/bench-worker-processes.sh with 1, 2 and 4 `jobfleet
#      worker` processes on a queue of 6 partitions.
#
# Usage: scripts/bench-kafka.sh [JOBS] [RUNS]     (defaults 20000 and 3)
# Needs a release build (`cargo build --release -p jobfleet`; BENCH_BIN names another
# binary). TEST_KAFKA_BROKERS already set uses that Kafka instead of starting one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

jobs=${1:-20000}
runs=${2:-3}
bin=${BENCH_BIN:-target/release/jobfleet}
[[ -x $bin ]] || die "no $bin: run cargo build --release -p jobfleet"

eval "$(scripts/services.sh up redis)"
if [[ -z ${TEST_KAFKA_BROKERS:-} ]]; then
  services="$(mktemp -d "${TMPDIR:-/tmp}/jobfleet-bench-kafka.XXXXXX")"
  trap 'JOBFLEET_SERVICES_DIR="$services" scripts/services.sh down kafka; rm -rf "$services"' EXIT
  eval "$(JOBFLEET_SERVICES_DIR="$services" scripts/services.sh up kafka)"
fi
broker="kafka://$TEST_KAFKA_BROKERS"
log "kafka: $broker; $jobs jobs per run, $runs runs per setting"

export JOBFLEET_REDIS__REQUIRE_PERSISTENCE=false
export JOBFLEET_LOG__LEVEL=warn
for partitions in 1 3 6; do
  for _ in $(seq "$runs"); do
    JOBFLEET_KAFKA__PARTITIONS=$partitions "$bin" bench --broker "$broker" \
      --store "$TEST_REDIS_URL" --jobs "$jobs" |
      python3 -c 'import json, sys; r = json.loads(sys.stdin.readline()); r["partitions"] = int(sys.argv[1]); print(json.dumps(r))' "$partitions"
  done
done

JOBFLEET_BROKER="$broker" JOBFLEET_STORE="$TEST_REDIS_URL" JOBFLEET_KAFKA__PARTITIONS=6 \
  BENCH_BIN="$bin" scripts/bench-worker-processes.sh "$((jobs * 5))" 1 2 4
