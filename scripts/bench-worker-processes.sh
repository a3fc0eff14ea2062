#!/usr/bin/env bash
# Scale-out with separate worker processes (docs/benchmarks.md, "Scale out"): for each
# count K (default 1 2 4), JOBS `echo` jobs are enqueued from a file with `jobfleet
# enqueue --file`, then K `jobfleet worker` processes start at once, and the time from
# their start until the fleet's completed count (`jobfleet queues --json`, from worker
# heartbeats every 200 ms) reaches JOBS gives jobs/s. One JSON line per count.
#
# Usage: scripts/bench-worker-processes.sh [JOBS] [K...]
# Runs on JOBFLEET_BROKER and JOBFLEET_STORE; unset, the local RabbitMQ and Redis, which
# scripts/services.sh starts when they are not running. On Kafka:
#   eval "$(scripts/services.sh up kafka)"
#   JOBFLEET_BROKER=kafka://$TEST_KAFKA_BROKERS JOBFLEET_KAFKA__PARTITIONS=6 \
#     scripts/bench-worker-processes.sh 100000 1 2 4
# Needs redis-cli (and rabbitmqctl on RabbitMQ) to delete each run's keys and queues
# (Kafka topics are left to the broker), python3, and a release build (`cargo build
# --release -p jobfleet`; BENCH_BIN names another binary, as the suite's small run of
# this script does).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs=${1:-100000}
shift || true
counts=("${@:-1 2 4}")
bin=${BENCH_BIN:-target/release/jobfleet}
[[ -x $bin ]] || { echo "no $bin: run cargo build --release -p jobfleet" >&2; exit 2; }

if [[ -z ${JOBFLEET_BROKER:-} ]]; then
  scripts/services.sh up rabbitmq > /dev/null
  export JOBFLEET_BROKER=amqp://guest:guest@127.0.0.1:5672/%2f
fi
if [[ -z ${JOBFLEET_STORE:-} ]]; then
  scripts/services.sh up redis > /dev/null
  export JOBFLEET_STORE=redis://127.0.0.1:6379/
fi
export JOBFLEET_REDIS__REQUIRE_PERSISTENCE=${JOBFLEET_REDIS__REQUIRE_PERSISTENCE:-false}
export JOBFLEET_WORKER__HEARTBEAT=200ms
export JOBFLEET_WORKER__CONCURRENCY=${JOBFLEET_WORKER__CONCURRENCY:-64}
export JOBFLEET_LOG__LEVEL=warn

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 - "$jobs" > "$work/jobs.jsonl" <<'EOF'
import json, sys, uuid
for _ in range(int(sys.argv[1])):
    print(json.dumps({"v": 1, "id": str(uuid.uuid4()), "queue": "scale", "kind": "echo",
                      "payload": {"n": 1}}))
EOF

completed() {
  "$bin" queues --json 2>/dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["completed"])' 2>/dev/null \
    || echo 0
}

for k in ${counts[*]}; do
  export JOBFLEET_NAMESPACE="scale-$k-$$"
  export JOBFLEET_WORKER__QUEUES='["scale"]'
  "$bin" enqueue --file "$work/jobs.jsonl" > /dev/null 2> "$work/enqueue.log" \
    || { cat "$work/enqueue.log" >&2; exit 1; }
  pids=()
  began=$(date +%s.%N)
  for i in $(seq "$k"); do
    "$bin" worker > "$work/worker-$i.log" 2>&1 &
    pids+=($!)
  done
  while (( $(completed) < jobs )); do
    sleep 0.1
    if awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { exit !(b - a > 600) }'; then
      echo "{\"workers\":$k,\"error\":\"not drained within 600 s\"}"
      exit 1
    fi
  done
  ended=$(date +%s.%N)
  for pid in "${pids[@]}"; do kill "$pid"; done
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
  # The run's keys and queues go; nothing else of the services is touched.
  redis-cli -u "$JOBFLEET_STORE" --scan --pattern "$JOBFLEET_NAMESPACE:*" \
    | xargs -r redis-cli -u "$JOBFLEET_STORE" del > /dev/null
  if [[ $JOBFLEET_BROKER == amqp* ]]; then
    rabbitmqctl -q list_queues name 2>/dev/null | grep "^$JOBFLEET_NAMESPACE\." \
      | xargs -r -n1 rabbitmqctl -q delete_queue > /dev/null 2>&1 || true
  fi
  awk -v k="$k" -v ns="$JOBFLEET_NAMESPACE" -v n="$jobs" -v a="$began" -v b="$ended" \
    'BEGIN { printf "{\"workers\":%d,\"namespace\":\"%s\",\"jobs\":%d,\"seconds\":%.3f,\"jobs_per_sec\":%.0f}\n", k, ns, n, b - a, n / (b - a) }'
done
