#!/bin/bash
# A farm on loopback for tests/ops: farm-cache, farm-scheduler and one farm-worker, each with
# --metrics-listen 127.0.0.1:0 and --log-format json, on ports they pick. Sets CACHE, SCHED,
# CACHE_METRICS, SCHED_METRICS, WORKER_METRICS (HOST:PORT) and the pids; farm_down stops them.
#
#   source "$R/tests/ops/lib.sh"
#   farm_up [farm-worker flags...] || exit 1
#   trap farm_down EXIT
R="$TEST_SRCDIR/farm"
FARM="$R/cli/farm"
CACHE_BIN="$R/cache/server/farm-cache"
SCHED_BIN="$R/scheduler/server/farm-scheduler"
WORKER_BIN="$R/worker/agent/farm-worker"
HEALTH="$R/tests/ops/grpc_health_check"
T="$TEST_TMPDIR"

# wait_for_line FILE REGEX: the first match of REGEX (grep -oE) in FILE within 30 s.
wait_for_line() {
  local file=$1 re=$2 m
  for _ in $(seq 300); do
    m=$(grep -oE "$re" "$file" 2>/dev/null | head -1)
    [ -n "$m" ] && { echo "$m"; return 0; }
    sleep 0.1
  done
  return 1
}
addr_of() { awk '{print $NF}'; }

farm_up() {
  "$CACHE_BIN" --listen 127.0.0.1:0 --dir "$T/cache" --metrics-listen 127.0.0.1:0 \
    --log-format json >"$T/cache.out" 2>"$T/cache.err" &
  CACHE_PID=$!
  CACHE=$(wait_for_line "$T/cache.out" "listening on [0-9.:]+" | addr_of) || return 1
  CACHE_METRICS=$(wait_for_line "$T/cache.out" "metrics on [0-9.:]+" | addr_of) || return 1
  "$SCHED_BIN" --listen 127.0.0.1:0 --cache "$CACHE" --dir "$T/sched" \
    --metrics-listen 127.0.0.1:0 --log-format json --heartbeat-interval 1 --lease-timeout 5 \
    --queue-unserved-platforms >"$T/sched.out" 2>"$T/sched.err" &
  SCHED_PID=$!
  SCHED=$(wait_for_line "$T/sched.out" "listening on [0-9.:]+" | addr_of) || return 1
  SCHED_METRICS=$(wait_for_line "$T/sched.out" "metrics on [0-9.:]+" | addr_of) || return 1
  "$WORKER_BIN" --scheduler "$SCHED" --cache "$CACHE" --dir "$T/worker" --slots 2 \
    --metrics-listen 127.0.0.1:0 --log-format json "$@" >"$T/worker.out" 2>"$T/worker.err" &
  WORKER_PID=$!
  WORKER_METRICS=$(wait_for_line "$T/worker.out" "metrics on [0-9.:]+" | addr_of) || return 1
  # Connected: the worker's /readyz says so.
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$WORKER_METRICS/readyz")" = 200 ] &&
      return 0
    sleep 0.1
  done
  echo "the worker did not connect" >&2
  return 1
}

farm_down() {
  local p
  for p in ${WORKER_PID:-} ${SCHED_PID:-} ${CACHE_PID:-}; do kill -TERM "$p" 2>/dev/null; done
  for p in ${WORKER_PID:-} ${SCHED_PID:-} ${CACHE_PID:-}; do wait "$p" 2>/dev/null; done
  # Overlay and bind mounts the worker's sandboxes may have left under $T.
  grep " $T/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  true
}

# metric FILE NAME{labels}: the value of the first sample whose line starts with the argument.
metric() {
  grep -F -- "$2" "$1" | grep -v '^#' | awk -v k="$2" 'index($0, k) == 1 {print $NF; exit}'
}
# A build context with busybox: a COPY, a RUN that makes a layer.
make_context() {
  mkdir -p "$1"
  cp /bin/busybox "$1/busybox"
  cat >"$1/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
ARG NONCE
RUN ["/bin/busybox", "sh", "-c", "echo $NONCE > /nonce.txt"]
DOCKERFILE
}
