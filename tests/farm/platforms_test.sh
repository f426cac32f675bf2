#!/usr/bin/env bash
# Multi-platform placement on the farm (issue 15, part 3): native first, emulation as fallback.
# A farm on loopback (farm-cache, farm-scheduler; no TLS: loopback only) with two workers:
#   A  --platform linux/arm64: announces arm64 as its native platform (on this amd64 host its
#      steps really run under QEMU: it stands in for an arm64 machine);
#   B  the host's linux/amd64, started with --emulate linux/arm64.
# Checks: farm workers shows B's emulated platform; an arm64 build's RUN (`uname -m`) runs on A,
# not B, and sees aarch64; with A stopped, another arm64 build's RUN runs on B and sees aarch64;
# a worker started with --emulate for a platform without an emulator refuses to start, naming
# it. Needs root; installs and registers qemu-user-static if missing (tests/e2e/qemu_arm64.sh).
set -uo pipefail
R="$TEST_SRCDIR/farm"
T="$TEST_TMPDIR"
FARM="$R/cli/farm"
source "$R/tests/e2e/qemu_arm64.sh"
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
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  grep " $T/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  true
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || die "this test needs root (the worker's sandbox)"
ensure_qemu_aarch64 "$T" || exit 1

# start NAME LOGFILE CMD...: runs CMD in the background, waits for "listening on HOST:PORT"
# (or, for a worker, for "connected"), sets ADDR and PID.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  PID=$!
  PIDS+=($PID)
  local deadline=$((SECONDS + 30))
  until grep -qE "listening on|connected to scheduler" "$log" 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || die "$name exited: $(cat "$log")"
    [ $SECONDS -lt $deadline ] || die "$name did not start: $(cat "$log")"
    sleep 0.05
  done
  ADDR=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -1)
}
start farm-cache "$T/cache.log" "$R/cache/server/farm-cache" --listen 127.0.0.1:0 --dir "$T/cache"
CACHE=$ADDR
start farm-scheduler "$T/sched.log" "$R/scheduler/server/farm-scheduler" --listen 127.0.0.1:0 \
  --cache "$CACHE" --dir "$T/sched"
SCHED=$ADDR
WORKER="$R/worker/agent/farm-worker"

# A worker asked to emulate what cannot run here does not start.
"$WORKER" --scheduler "$SCHED" --cache "$CACHE" --dir "$T/bad" --emulate linux/sparc64 \
  >"$T/bad.log" 2>&1
rc=$?
check "--emulate of a platform without an emulator is a startup error" [ "$rc" -eq 1 ]
check "naming the platform" grep -q "linux/sparc64" "$T/bad.log"

start worker-a "$T/a.log" "$WORKER" --scheduler "$SCHED" --cache "$CACHE" --dir "$T/a" \
  --platform linux/arm64 --slots 2
PID_A=$PID
start worker-b "$T/b.log" "$WORKER" --scheduler "$SCHED" --cache "$CACHE" --dir "$T/b" \
  --emulate linux/arm64 --slots 2
workers() { "$FARM" workers --scheduler "$SCHED"; }
workers >"$T/workers.log" 2>&1
check "farm workers shows B's emulated platform" \
  grep -q "linux/amd64 (+linux/arm64 emulated)" "$T/workers.log"
check "and A as native arm64" grep -qE "^[^ ]+ +linux/arm64 " "$T/workers.log"

export FARM_HOME="$T/client"
ctx="$T/ctx"
mkdir -p "$ctx"
arm64_busybox "$ctx/busybox" "$T" || exit 1
# build N: an arm64 image whose RUN (unique per N, so never a cache hit) prints `uname -m`.
build() {
  cat >"$ctx/Dockerfile" <<DF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "echo step-$1 \$(/bin/busybox uname -m)"]
DF
  "$FARM" submit --scheduler "$SCHED" --progress=plain --platform linux/arm64 "$ctx" \
    >"$T/build$1.log" 2>&1
}
ran_on() { grep -q "started: .*step-$1" "$2"; }

check "an arm64 build runs with both workers up" build 1
check "its RUN saw aarch64" grep -q "step-1 aarch64" "$T/build1.log"
check "its RUN ran on A, the native arm64 worker" ran_on 1 "$T/a.log"
check "not on B, which only emulates arm64" sh -c "! grep -q 'started: .*step-1' '$T/b.log'"

kill -TERM "$PID_A"
wait "$PID_A" 2>/dev/null
deadline=$((SECONDS + 30))
while workers 2>/dev/null | grep -qE "^[^ ]+ +linux/arm64 "; do
  [ $SECONDS -lt $deadline ] || break
  sleep 0.1
done
check "with A stopped, another arm64 build runs" build 2
check "its RUN saw aarch64" grep -q "step-2 aarch64" "$T/build2.log"
check "its RUN ran on B, under emulation" ran_on 2 "$T/b.log"
check "not on A" sh -c "! grep -q 'started: .*step-2' '$T/a.log'"

if [ "$failures" -ne 0 ]; then
  for f in sched a b build1 build2 workers; do echo "--- $f.log"; tail -40 "$T/$f.log"; done
fi
echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
