# A farm on loopback for the tests of its clients (sourced): farm-cache, farm-scheduler and
# farm-workers on 127.0.0.1 (no TLS: loopback only), a client $FARM_HOME, check/fail helpers
# and a cleanup trap that stops them all. Needs root (the workers' sandbox).
#   source "$TEST_SRCDIR/farm/tests/farm/loopback.sh"
#   start_farm 2 2            # 2 workers with 2 slots each; sets CACHE and SCHED
#   check "what" cmd...; finish
set -uo pipefail
R="$TEST_SRCDIR/farm"
T="$TEST_TMPDIR"
FARM="$R/cli/farm"
failures=0
checks=0
PIDS=()
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
die() { echo "FATAL: $*" >&2; exit 1; }
check() {
  local what=$1
  shift
  checks=$((checks + 1))
  if "$@"; then echo "ok: $what"; else fail "$what"; fi
}
finish() {
  echo "$checks checks, $failures failed"
  [ "$checks" -gt 0 ] || exit 1
  [ "$failures" -eq 0 ]
}
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  grep " $T/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  true
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || die "this test needs root (the worker's sandbox)"
[ -x /bin/busybox ] || die "busybox-static is not installed (tools/setup.sh)"

# start NAME LOGFILE CMD...: runs CMD in the background, waits for "listening on HOST:PORT"
# (or, for the worker, for its first line), sets ADDR and PID.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  PID=$!
  PIDS+=($PID)
  local pid=$PID deadline=$((SECONDS + 30))
  until grep -qE "listening on|connected|registered|joined" "$log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "$name exited: $(cat "$log")"
    [ $SECONDS -lt $deadline ] || die "$name did not start: $(cat "$log")"
    sleep 0.05
  done
  ADDR=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -1)
}

# start_farm [WORKERS] [SLOTS] [WORKER FLAGS...]: farm-cache, farm-scheduler, WORKERS workers
# (default 1, 2 slots each; worker i logs to $T/worker<i>.log, dir $T/worker<i>). Sets CACHE,
# SCHED and FARM_HOME ($T/client).
start_farm() {
  local workers=${1:-1} slots=${2:-2} i
  shift 2 2>/dev/null || shift $#
  start farm-cache "$T/cache.log" "$R/cache/server/farm-cache" --listen 127.0.0.1:0 --dir "$T/cache"
  CACHE=$ADDR
  start farm-scheduler "$T/sched.log" "$R/scheduler/server/farm-scheduler" --listen 127.0.0.1:0 \
    --cache "$CACHE" --dir "$T/sched"
  SCHED=$ADDR
  for i in $(seq 1 "$workers"); do
    start farm-worker "$T/worker$i.log" "$R/worker/agent/farm-worker" --scheduler "$SCHED" \
      --cache "$CACHE" --dir "$T/worker$i" --slots "$slots" "$@"
  done
  export FARM_HOME="$T/client"
}
