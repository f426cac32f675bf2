#!/bin/bash
# farm-scheduler's status page (on --metrics-listen) seen by Debian's headless Chromium: farm-cache,
# farm-scheduler and one farm-worker on loopback, two builds of one Dockerfile (the second
# changes a build arg, so its COPY is a hit and its RUN a miss). Chromium loads the overview,
# the second build's page and the workers page; their DOM after the script ran must show the
# builds, the steps (cached / run, on which worker), the live log and the worker; why-miss must
# name the earlier build. Screenshots go to $TEST_UNDECLARED_OUTPUTS_DIR, and with
# --test_env=STATUS_SCREENSHOTS=DIR also to DIR (how docs/screenshots/ is refreshed).
set -uo pipefail
R="$TEST_SRCDIR/farm"
T="$TEST_TMPDIR"
OUT="${TEST_UNDECLARED_OUTPUTS_DIR:-$T/out}"
mkdir -p "$OUT"
failures=0
check() {
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; failures=$((failures + 1)); fi
}
[ "$(id -u)" = 0 ] || { echo "FATAL: this test needs root (the worker runs steps)" >&2; exit 1; }
for tool in chromium curl python3; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool is not installed (tools/setup.sh)" >&2; exit 1; }
done

# wait_for_line FILE REGEX: the first match of REGEX (grep -oE) in FILE within 30 s.
wait_for_line() {
  local m
  for _ in $(seq 300); do
    m=$(grep -oE "$2" "$1" 2>/dev/null | head -1)
    [ -n "$m" ] && { echo "$m"; return 0; }
    sleep 0.1
  done
  return 1
}
farm_down() {
  local p
  for p in ${WORKER_PID:-} ${SCHED_PID:-} ${CACHE_PID:-}; do kill -TERM "$p" 2>/dev/null; done
  for p in ${WORKER_PID:-} ${SCHED_PID:-} ${CACHE_PID:-}; do wait "$p" 2>/dev/null; done
  grep " $T/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  true
}
trap farm_down EXIT
fatal() {
  tail -20 "$T"/*.err >&2
  echo "FATAL: $*" >&2
  exit 1
}

"$R/cache/server/farm-cache" --listen 127.0.0.1:0 --dir "$T/cache" >"$T/cache.out" 2>"$T/cache.err" &
CACHE_PID=$!
CACHE=$(wait_for_line "$T/cache.out" "listening on [0-9.:]+" | awk '{print $NF}') ||
  fatal "farm-cache did not start"
"$R/scheduler/server/farm-scheduler" --listen 127.0.0.1:0 --cache "$CACHE" --dir "$T/sched" \
  --metrics-listen 127.0.0.1:0 --heartbeat-interval 1 --lease-timeout 5 \
  >"$T/sched.out" 2>"$T/sched.err" &
SCHED_PID=$!
SCHED=$(wait_for_line "$T/sched.out" "listening on [0-9.:]+" | awk '{print $NF}') ||
  fatal "farm-scheduler did not start"
STATUS=$(wait_for_line "$T/sched.out" "metrics on [0-9.:]+" | awk '{print $NF}') ||
  fatal "farm-scheduler printed no metrics (and status page) address"
"$R/worker/agent/farm-worker" --scheduler "$SCHED" --cache "$CACHE" --dir "$T/worker" --slots 2 \
  >"$T/worker.out" 2>"$T/worker.err" &
WORKER_PID=$!
WORKER=$(wait_for_line "$T/worker.err" "worker [^ :]+:" | awk '{print $2}' | tr -d :) ||
  WORKER=$(wait_for_line "$T/worker.out" "worker [^ :]+:" | awk '{print $2}' | tr -d :) ||
  fatal "farm-worker printed no id"
wait_for_line "$T/worker.err" "connected to scheduler" >/dev/null ||
  wait_for_line "$T/worker.out" "connected to scheduler" >/dev/null ||
  fatal "the worker did not connect"
echo "farm up: cache $CACHE, scheduler $SCHED, status page $STATUS, worker $WORKER"

mkdir -p "$T/ctx"
cp /bin/busybox "$T/ctx/busybox"
cat >"$T/ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
ARG RELEASE
RUN ["/bin/busybox", "sh", "-c", "echo building release $RELEASE; echo a warning >&2; echo $RELEASE > /release"]
DOCKERFILE
export FARM_HOME="$T/home"
for n in 1 2; do
  "$R/cli/farm" submit --insecure --scheduler "$SCHED" --progress=plain --build-arg RELEASE=$n \
    -t "demo/app:$n" "$T/ctx" >"$T/build$n.out" 2>"$T/build$n.log" ||
    { tail -20 "$T/build$n.log" >&2; fatal "build $n failed"; }
done
# Build ids, newest first, from the JSON the pages read.
mapfile -t IDS < <(curl -sf "http://$STATUS/api/overview" |
  python3 -c 'import json,sys; [print(b["id"]) for b in json.load(sys.stdin)["builds"]]')
[ "${#IDS[@]}" = 2 ] || fatal "the overview lists ${#IDS[@]} builds, not 2"
B2=${IDS[0]}
B1=${IDS[1]}

# chromium_dom URL FILE / chromium_shot URL PNG: the page after its script ran (virtual time
# lets the fetches finish before the dump).
chromium_args=(--headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$T/chrome"
  --virtual-time-budget=5000 --window-size=1280,900)
chromium_dom() { HOME="$T" timeout 120 chromium "${chromium_args[@]}" --dump-dom "$1" >"$2" 2>>"$T/chromium.err"; }
chromium_shot() { HOME="$T" timeout 120 chromium "${chromium_args[@]}" --screenshot="$2" "$1" >>"$T/chromium.err" 2>&1; }
has() { grep -qF -- "$2" "$1" || { echo "  '$2' is not in $1" >&2; return 1; }; }
lacks() { ! grep -qF -- "$2" "$1" || { echo "  '$2' is in $1" >&2; return 1; }; }

# --- the overview ----------------------------------------------------------------------------
chromium_dom "http://$STATUS/" "$T/overview.html" || fatal "chromium failed: $(tail -5 "$T/chromium.err")"
check "the overview links both builds" has "$T/overview.html" "href=\"/builds/$B2\""
check "the overview lists the first build" has "$T/overview.html" ">$B1</a>"
check "the overview shows the tags" has "$T/overview.html" "docker.io/demo/app:2"
check "the overview shows the states" has "$T/overview.html" ">succeeded</span>"
check "the overview shows the hit rate (1 of 4 keyed steps)" has "$T/overview.html" ">1 / 4<"
check "the overview shows the slots" has "$T/overview.html" ">0 / 2<"
check "the overview says the page is open" has "$T/overview.html" "open (no authentication)"
check "the overview shows no error" has "$T/overview.html" 'id="error" class="error" hidden'
# Filters: a tenant without builds.
chromium_dom "http://$STATUS/?state=succeeded&tenant=nobody" "$T/filtered.html"
check "a tenant filter leaves no builds" has "$T/filtered.html" "No builds."

# --- the second build's page -------------------------------------------------------------------
chromium_dom "http://$STATUS/builds/$B2" "$T/build.html"
check "the build page names the build" has "$T/build.html" "$B2"
check "the build page lists the COPY as cached" \
  python3 - "$T/build.html" <<'PY'
import re, sys
html = open(sys.argv[1]).read()
rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
copy = [r for r in rows if "COPY" in r]
sys.exit(0 if copy and "state-cached" in copy[0] else 1)
PY
check "the build page lists the RUN as run on the worker, with why-miss" \
  python3 - "$T/build.html" "$WORKER" <<'PY'
import re, sys
html = open(sys.argv[1]).read()
rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
run = [r for r in rows if "RUN" in r]
sys.exit(0 if run and "state-run" in run[0] and sys.argv[2] in run[0] and "why-miss" in run[0] else 1)
PY
check "the build page shows the log" has "$T/build.html" "building release 2"
check "the build page marks stderr" has "$T/build.html" '<span class="stderr">#'
check "the build page shows the image" has "$T/build.html" "sha256:"
# why-miss, as the button asks it.
RUN_VERTEX=$(curl -sf "http://$STATUS/api/builds/$B2" |
  python3 -c 'import json,sys; print([s["vertex"] for s in json.load(sys.stdin)["steps"] if s["missed"]][0])')
curl -sf "http://$STATUS/api/builds/$B2/why-miss?vertex=$RUN_VERTEX" >"$T/why.json"
check "why-miss names the earlier build" has "$T/why.json" "build $B1"
check "why-miss says the step's own inputs changed" has "$T/why.json" "own inputs changed"

# --- workers -----------------------------------------------------------------------------------
chromium_dom "http://$STATUS/workers" "$T/workers.html"
check "the workers page lists the worker" has "$T/workers.html" ">$WORKER<"
check "the workers page shows its platform" has "$T/workers.html" ">linux/amd64<"
check "the workers page shows it connected" has "$T/workers.html" ">connected</span>"

# --- escaping: markup in a build id from the URL stays text ------------------------------------
chromium_dom "http://$STATUS/builds/%3Cimg%20src%3Dx%20id%3Dinjected%3E" "$T/evil.html"
check "a build id with markup is escaped" lacks "$T/evil.html" 'id="injected"'
check "an unknown build is reported" has "$T/evil.html" "no build"

# --- screenshots -------------------------------------------------------------------------------
chromium_shot "http://$STATUS/" "$OUT/status-overview.png"
chromium_shot "http://$STATUS/builds/$B2" "$OUT/status-build.png"
chromium_shot "http://$STATUS/workers" "$OUT/status-workers.png"
for png in status-overview status-build status-workers; do
  check "screenshot $png.png is a PNG of some size" python3 - "$OUT/$png.png" <<'PY'
import os, sys
p = sys.argv[1]
ok = os.path.exists(p) and os.path.getsize(p) > 10000 and open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
sys.exit(0 if ok else 1)
PY
done
if [ -n "${STATUS_SCREENSHOTS:-}" ]; then
  mkdir -p "$STATUS_SCREENSHOTS" && cp "$OUT"/status-{overview,build}.png "$STATUS_SCREENSHOTS"/
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures checks failed; the pages are in $T" >&2
  exit 1
fi
echo "all checks passed"
