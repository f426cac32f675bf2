#!/usr/bin/env bash
# farm submit --load and -o (issue 15): a farm on loopback (farm-cache, farm-scheduler, one
# farm-worker; no TLS: loopback only), a client with its own $FARM_HOME. Checks: the image comes
# back tagged and `farm run` runs it; a second --load of the same build fetches nothing; after
# a one-file edit only the changed layer moves; -o type=oci writes an OCI layout tar; --load
# with --detach is refused.
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
# (or, for the worker, for its first line), sets ADDR.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  PIDS+=($!)
  local pid=$! deadline=$((SECONDS + 30))
  until grep -qE "listening on|connected|registered|joined" "$log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "$name exited: $(cat "$log")"
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
start farm-worker "$T/worker.log" "$R/worker/agent/farm-worker" --scheduler "$SCHED" \
  --cache "$CACHE" --dir "$T/worker" --slots 2

export FARM_HOME="$T/client"
ctx="$T/ctx"
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox"
echo "v1" >"$ctx/app.txt"
cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && echo built > /built"]
COPY app.txt /app.txt
CMD ["/bin/cat", "/app.txt"]
DF
submit() { "$FARM" submit --scheduler "$SCHED" --progress=plain "$@"; }

check "farm submit --load builds and brings the image back" \
  sh -c "$(printf '%q ' "$FARM" submit --scheduler "$SCHED" --progress=plain --load -t app:1 \
    "$ctx") >'$T/load1.log' 2>&1"
check "it says what it fetched (3 layers)" grep -q "fetched 3 of 3 layers" "$T/load1.log"
check "the image is tagged locally" sh -c "'$FARM' images app:1 | grep -q '^app *1 '"
check "farm run runs it" sh -c "[ \"\$('$FARM' run --rm app:1)\" = v1 ]"
check "and sees the RUN step's file" sh -c "[ \"\$('$FARM' run --rm app:1 cat /built)\" = built ]"

check "a second --load fetches nothing" \
  sh -c "$(printf '%q ' "$FARM" submit --scheduler "$SCHED" --progress=plain --load -t app:1 \
    "$ctx") >'$T/load2.log' 2>&1"
check "it says all layers were local" grep -q "all 3 layers were local" "$T/load2.log"

echo "v2" >"$ctx/app.txt"
check "after a one-file edit --load works" \
  sh -c "$(printf '%q ' "$FARM" submit --scheduler "$SCHED" --progress=plain --load -t app:2 \
    "$ctx") >'$T/load3.log' 2>&1"
check "only the changed layer moved" grep -q "fetched 1 of 3 layers" "$T/load3.log"
check "the new image runs" sh -c "[ \"\$('$FARM' run --rm app:2)\" = v2 ]"

check "-o type=oci writes an OCI layout tar" \
  sh -c "$(printf '%q ' "$FARM" submit --scheduler "$SCHED" -q -o "type=oci,dest=$T/app.tar" \
    "$ctx") >'$T/oci.log' 2>&1 && tar -tf '$T/app.tar' | grep -qx index.json"
"$FARM" submit --scheduler "$SCHED" --load --detach "$ctx" >"$T/detach.log" 2>&1
rc=$?
check "--load with --detach is refused" [ "$rc" -ne 0 ]
check "naming why" grep -q "cannot be combined" "$T/detach.log"

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
