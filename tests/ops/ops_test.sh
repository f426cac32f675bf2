#!/bin/bash
# Issue 16 end to end: farm-cache, farm-scheduler and a farm-worker on loopback, each with
# --metrics-listen and --log-format json. Checks /healthz and /readyz, grpc.health.v1 on both
# gRPC servers, runs two identical builds (the second all cache hits), then scrapes every
# /metrics: promtool accepts each, and the key series are present with the values the builds
# imply. Every log line must parse as JSON and carry the ids it is about. Finally farm-cache
# stops: the scheduler's /readyz and gRPC health turn NOT ready. Root: the worker runs steps.
set -uo pipefail
# shellcheck source=tests/ops/lib.sh
source "$TEST_SRCDIR/farm/tests/ops/lib.sh"
failures=0
checks=0
check() {
  local what=$1
  shift
  checks=$((checks + 1))
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; failures=$((failures + 1)); fi
}
# at_least FILE SERIES N: the series is present with a value >= N.
at_least() {
  local v
  v=$(metric "$1" "$2")
  [ -n "$v" ] && awk -v v="$v" -v n="$3" 'BEGIN { exit !(v + 0 >= n + 0) }' || {
    echo "  $2 = '${v}' in $1 (want >= $3)" >&2
    return 1
  }
}
http_code() { curl -s -o /dev/null -w '%{http_code}' "$1"; }

[ "$(id -u)" = 0 ] || { echo "FATAL: this test needs root (the worker runs steps)" >&2; exit 1; }
for tool in curl jq /usr/bin/promtool; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool is not installed" >&2; exit 1; }
done
trap farm_down EXIT
if ! farm_up; then
  tail -20 "$T"/*.err >&2
  echo "FATAL: the farm did not come up" >&2
  exit 1
fi
echo "farm up: cache $CACHE ($CACHE_METRICS), scheduler $SCHED ($SCHED_METRICS), worker metrics $WORKER_METRICS"

# --- health --------------------------------------------------------------------------------
for m in "$CACHE_METRICS" "$SCHED_METRICS" "$WORKER_METRICS"; do
  check "/healthz on $m is 200" [ "$(http_code "http://$m/healthz")" = 200 ]
done
wait_ready() {
  for _ in $(seq 200); do
    [ "$(http_code "http://$1/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
for m in "$CACHE_METRICS" "$SCHED_METRICS" "$WORKER_METRICS"; do
  check "/readyz on $m becomes 200" wait_ready "$m"
done
wait_serving() {
  for _ in $(seq 100); do
    "$HEALTH" "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  "$HEALTH" "$@"
  return 1
}
check "farm-cache's gRPC health is SERVING" wait_serving "$CACHE"
check "farm-cache's gRPC health for the CAS service is SERVING" \
  wait_serving "$CACHE" build.bazel.remote.execution.v2.ContentAddressableStorage
check "farm-scheduler's gRPC health is SERVING" wait_serving "$SCHED"
check "farm-scheduler's gRPC health for farm.v1.WorkerHub is SERVING" \
  wait_serving "$SCHED" farm.v1.WorkerHub

# --- two builds ----------------------------------------------------------------------------
make_context "$T/ctx"
export FARM_HOME="$T/home"
for n in first second; do
  if SOURCE_DATE_EPOCH=0 "$FARM" submit --insecure --scheduler "$SCHED" --progress=plain \
    --build-arg NONCE=$$ "$T/ctx" >"$T/$n.out" 2>"$T/$n.log"; then
    check "the $n build succeeded" true
  else
    tail -20 "$T/$n.log" >&2
    check "the $n build succeeded" false
  fi
done

# --- scrapes -------------------------------------------------------------------------------
for s in cache:"$CACHE_METRICS" sched:"$SCHED_METRICS" worker:"$WORKER_METRICS"; do
  name=${s%%:*}
  addr=${s#*:}
  curl -sf "http://$addr/metrics" >"$T/$name.prom"
  check "$name: /metrics answers" [ -s "$T/$name.prom" ]
  check "$name: promtool check metrics accepts the scrape" \
    sh -c "/usr/bin/promtool check metrics <'$T/$name.prom' >'$T/$name.lint' 2>&1"
done
C="$T/cache.prom" S="$T/sched.prom" W="$T/worker.prom"

check "scheduler: 2 builds succeeded" at_least "$S" 'farm_scheduler_builds_total{outcome="succeeded"}' 2
check "scheduler: their durations" at_least "$S" \
  'farm_scheduler_build_duration_seconds_count{outcome="succeeded"}' 2
check "scheduler: steps dispatched (COPY, RUN)" at_least "$S" farm_scheduler_tasks_dispatched_total 2
check "scheduler: dispatch latency observed" at_least "$S" \
  'farm_scheduler_dispatch_latency_seconds_count{platform="linux/amd64"}' 2
check "scheduler: 2 slots" at_least "$S" 'farm_scheduler_slots ' 2
check "scheduler: slots busy present" at_least "$S" 'farm_scheduler_slots_busy ' 0
check "scheduler: one idle amd64 worker" at_least "$S" \
  'farm_scheduler_workers{platform="linux/amd64",state="idle"}' 1
check "scheduler: lease losses present (0)" at_least "$S" 'farm_scheduler_lease_losses_total ' 0
check "scheduler: requeues present (0)" at_least "$S" 'farm_scheduler_requeues_total ' 0
check "scheduler: SubmitBuild RPCs counted" at_least "$S" \
  'farm_grpc_server_handled_total{method="/farm.v1.Scheduler/SubmitBuild",code="OK"}' 2
check "scheduler: WorkerHub/Connect latency histogram present" \
  grep -q '^farm_grpc_server_handling_seconds_bucket{method="/farm.v1.WorkerHub/Connect"' "$S"
check "scheduler: cache reachable in /readyz" [ "$(curl -s "http://$SCHED_METRICS/readyz")" = ok ]

check "cache: bytes stored" at_least "$C" 'farm_cache_stored_bytes ' 1000
check "cache: blobs stored" at_least "$C" 'farm_cache_blobs ' 2
check "cache: retention present" at_least "$C" 'farm_cache_oldest_blob_age_seconds ' 0
check "cache: evicted bytes present" at_least "$C" 'farm_cache_evicted_bytes_total ' 0
check "cache: action-cache misses in scope main (first build)" at_least "$C" \
  'farm_cache_action_cache_requests_total{scope="main",result="miss"}' 2
check "cache: action-cache hits in scope main (second build)" at_least "$C" \
  'farm_cache_action_cache_requests_total{scope="main",result="hit"}' 2
check "cache: FindMissingBlobs RPCs counted" at_least "$C" \
  'farm_grpc_server_handled_total{method="/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",code="OK"}' 1
check "cache: written bytes" at_least "$C" 'farm_cache_written_bytes_total ' 1000

check "worker: connected" at_least "$W" 'farm_worker_connected ' 1
check "worker: 2 slots" at_least "$W" 'farm_worker_slots ' 2
check "worker: one RUN step succeeded" at_least "$W" \
  'farm_worker_steps_total{op="run",outcome="succeeded"}' 1
check "worker: one COPY step succeeded" at_least "$W" \
  'farm_worker_steps_total{op="copy",outcome="succeeded"}' 1
for phase in parents run make_layer upload; do
  check "worker: phase $phase observed" at_least "$W" \
    "farm_worker_step_phase_seconds_count{phase=\"$phase\"}" 1
done

# --- logs ----------------------------------------------------------------------------------
for name in cache sched worker; do
  check "$name: every log line is a JSON object" \
    sh -c "[ -s '$T/$name.err' ] && jq -e -c 'select(type != \"object\" or (.ts | not) or (.msg | not))' \
      '$T/$name.err' | (! grep -q .)"
done
check "scheduler: build lines carry the build id" \
  sh -c "jq -e -c 'select(.build != null and (.msg | startswith(\"build \")))' '$T/sched.err' | grep -q ."
check "scheduler: the worker's connection line carries the worker id" \
  sh -c "jq -e -c 'select(.worker != null)' '$T/sched.err' | grep -q ."
# (A line logged while the worker reads its state directory cannot name it yet.)
check "worker: its task lines carry the worker id" \
  sh -c "jq -e -c 'select(.task != null and .worker == null)' '$T/worker.err' | (! grep -q .)"
check "worker: task lines carry the task id" \
  sh -c "jq -e -c 'select(.task != null)' '$T/worker.err' | grep -q ."

# --- readiness follows farm-cache ---------------------------------------------------------
kill -TERM "$CACHE_PID"
wait "$CACHE_PID"
CACHE_PID=
not_ready() {
  for _ in $(seq 400); do
    [ "$(http_code "http://$SCHED_METRICS/readyz")" = 503 ] && return 0
    sleep 0.1
  done
  return 1
}
check "scheduler: /readyz turns 503 without farm-cache" not_ready
check "scheduler: /readyz names the cache" sh -c "curl -s 'http://$SCHED_METRICS/readyz' | grep -q cache"
check "scheduler: gRPC health follows (NOT_SERVING)" \
  sh -c "for i in \$(seq 50); do '$HEALTH' '$SCHED' >/dev/null 2>&1; [ \$? = 1 ] && exit 0; sleep 0.1; done; exit 1"

echo "$checks checks, $failures failures"
[ "$failures" -eq 0 ]
