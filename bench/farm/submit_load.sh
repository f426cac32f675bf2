#!/usr/bin/env bash
# farm submit --load (issue 15): a farm on loopback (farm-cache, farm-scheduler, one
# farm-worker) and a client with its own $FARM_HOME. The image: busybox, 300 MB of incompressible
# data in one layer, and a small app layer. Times, wall clock of the farm process:
#   cold        the first submit --load: build on the farm, fetch every layer (300 MB)
#   cached      submit --load again: fully cached on the farm, the image already local
#               (the issue's target: <= 150 ms)
#   one change  after one small file changed: only the changed layer moves
#   bench/farm/submit_load.sh [RUNS=10] [BIN=bazel-bin]   (BIN from bazel build -c opt)
# Needs root (the worker's sandbox) and busybox-static.
set -euo pipefail
runs=${1:-10}
bin=$(realpath "${2:-bazel-bin}")
FARM=$bin/cli/farm
for b in "$FARM" "$bin/cache/server/farm-cache" "$bin/scheduler/server/farm-scheduler" \
  "$bin/worker/agent/farm-worker"; do
  [ -x "$b" ] || { echo "missing $b: bazel build -c opt //cli:farm //cache/server:farm-cache //scheduler/server:farm-scheduler //worker/agent:farm-worker" >&2; exit 2; }
done
work=$(mktemp -d /var/tmp/farm-load-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  grep " $work/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
start() {  # start LOG CMD...: sets ADDR from "listening on HOST:PORT" (the worker: any line)
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do grep -q . "$log" 2>/dev/null && break; sleep 0.05; done
  ADDR=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -1)
}
start "$work/cache.log" "$bin/cache/server/farm-cache" --listen 127.0.0.1:0 --dir "$work/cache"
cache=$ADDR
start "$work/sched.log" "$bin/scheduler/server/farm-scheduler" --listen 127.0.0.1:0 \
  --cache "$cache" --dir "$work/sched"
sched=$ADDR
start "$work/worker.log" "$bin/worker/agent/farm-worker" --scheduler "$sched" --cache "$cache" \
  --dir "$work/worker"
sleep 1

ctx=$work/ctx
mkdir -p "$ctx/big"
cp /bin/busybox "$ctx/busybox"
for i in 1 2 3; do head -c 100M /dev/urandom >"$ctx/big/part$i"; done
echo v0 >"$ctx/app.txt"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY big/ /data/\nCOPY app.txt /app.txt\nCMD ["/bin/busybox", "cat", "/app.txt"]\n' >"$ctx/Dockerfile"
export FARM_HOME=$work/client SOURCE_DATE_EPOCH=0
now() { date +%s.%N; }
timed() {  # timed LABEL: one submit --load, prints LABEL SECONDS and what moved
  local t0 t1
  sync
  t0=$(now)
  "$FARM" submit --scheduler "$sched" --progress=plain --load -t bench:1 "$ctx" >"$work/last.log" 2>&1
  t1=$(now)
  echo "$1 $(echo "$t1 - $t0" | bc) $(grep -oE '(fetched [0-9]+ of [0-9]+ layers[^;]*|all [0-9]+ layers were local)' "$work/last.log" | tail -1)"
}
timed cold
for r in $(seq "$runs"); do timed cached; done
for r in $(seq "$runs"); do
  echo "v$r" >"$ctx/app.txt"
  timed change
done
"$FARM" run --rm bench:1 >/dev/null
