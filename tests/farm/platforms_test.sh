#!/usr/bin/env bash
# Multi-platform placement on the farm (issue 15, part 3): native first, emulation as fallback.
# A farm on loopback (farm-cache, farm-scheduler; no TLS: loopback only) with two workers:
#   A  --platform linux/arm64: announces arm64 as its native platform (on this amd64 host its
#      steps really run under QEMU: it stands in for an arm64 machine);
#   B  the host's linux/amd64, started with --emulate linux/arm64.
# Checks: farm workers shows B's emulated platform; an arm64 build's RUN (`uname -m`) runs on A,
# not B, and sees aarch64; with A stopped, another arm64 build's RUN runs on B and sees aarch64;
# a worker started with --emulate for a platform without an emulator refuses to start, naming
# it; a multi-platform submit --load and bake --scheduler (amd64 + arm64) give an index; a platform
# no worker runs is refused at submission. Needs root;
# installs and registers qemu-user-static if missing, removing it at exit (tests/e2e/qemu.sh).
source "$TEST_SRCDIR/farm/tests/farm/loopback.sh"
source "$TEST_SRCDIR/farm/tests/e2e/qemu.sh"
qemu_aarch64_setup
trap 'cleanup; qemu_aarch64_release' EXIT
start_farm 0
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
bb_arm=$(arm64_busybox) || exit 1
cp "$bb_arm" "$ctx/busybox"
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

# Several platforms in one build: each platform's steps on a worker that runs it (B, for both
# now), one index back on the client.
cp /bin/busybox "$ctx/busybox-amd64"
cp "$bb_arm" "$ctx/busybox-arm64"
cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
ARG TARGETARCH
COPY busybox-$TARGETARCH /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /arch"]
CMD ["/bin/busybox", "cat", "/arch"]
DF
check "farm submit --platform linux/amd64,linux/arm64 --load" sh -c \
  "'$FARM' submit --scheduler '$SCHED' --progress=plain --platform linux/amd64,linux/arm64 --load -t mp:farm '$ctx' >'$T/mp.log' 2>&1"
check "the image that came back is an index of both" \
  test "$("$FARM" images --format '{{.Platforms}}' mp:farm)" = "linux/amd64,linux/arm64"
check "its arm64 image ran its RUN emulated" test "$("$FARM" run --rm --platform linux/arm64 mp:farm)" = aarch64
check "its amd64 image natively" test "$("$FARM" run --rm mp:farm)" = x86_64
cat >"$ctx/docker-bake.json" <<'JSON'
{"target": {"mp": {"context": ".", "platforms": ["linux/amd64", "linux/arm64"], "tags": ["mp:bake"]}}}
JSON
check "farm bake --scheduler --load of a target's platforms" sh -c \
  "cd '$ctx' && '$FARM' bake --scheduler '$SCHED' --load --progress plain mp >'$T/bake.log' 2>&1"
check "the baked image is an index of both" \
  test "$("$FARM" images --format '{{.Platforms}}' mp:bake)" = "linux/amd64,linux/arm64"

timeout 60 "$FARM" submit --scheduler "$SCHED" --progress=plain --platform linux/amd64,linux/s390x \
  "$ctx" >"$T/s390x.log" 2>&1
rc=$?
check "a platform no worker runs is refused at once (not queued forever)" test "$rc" -ne 0 -a "$rc" -ne 124
check "naming it and what the farm runs" grep -q "no worker of this farm runs linux/s390x (its workers run linux/.*--emulate linux/s390x" "$T/s390x.log"

if [ "$failures" -ne 0 ]; then
  for f in sched a b build1 build2 workers mp bake; do echo "--- $f.log"; tail -40 "$T/$f.log"; done
fi
finish
