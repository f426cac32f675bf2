#!/usr/bin/env bash
# Remote rebuild latency on the farm: farm-cache, farm-scheduler and one farm-worker each on its
# own "host" (a network namespace on a private bridge, as tests/farm does), and two client hosts
# running `farm submit`. Times, as the client sees them (wall clock of the farm process, measured
# inside the client's namespace):
#   cold          first build of the workload (c1)
#   warm          the same build again from c1: fully cached, the context's stat cache warm
#   other host    the same build from c2: fully cached in the farm, but c2 hashes the context
#   one change    c1 after one source file changed (one blob uploaded, the COPY and RUN rerun)
# and, for reference on the same machine in the same run, the same workload with the embedded
# `farm build` (fully cached) and with buildah (bud --layers --isolation chroot, fully cached).
#   bench/farm/remote_rebuild.sh [RUNS=10] [BIN=bazel-bin]   (BIN from bazel build -c opt)
# EDIT_RUNS (default 5): how many one-file edits, farm and embedded alternately; FIRST_RUNS
# (default 5): how many first builds on the second host (its home removed before each).
# Needs root (ip netns), buildah and busybox-static (tools/setup.sh). Plaintext (--insecure
# everywhere): the private /24 exists only inside the namespaces; TLS costs are not measured.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
runs=${1:-10}
bin=$(realpath "${2:-bazel-bin}")
FARM=$bin/cli/farm
for b in "$FARM" "$bin/cache/server/farm-cache" "$bin/scheduler/server/farm-scheduler" \
  "$bin/worker/agent/farm-worker"; do
  [ -x "$b" ] || { echo "missing $b: bazel build -c opt //cli:farm //cache/server:farm-cache //scheduler/server:farm-scheduler //worker/agent:farm-worker" >&2; exit 2; }
done
work=$(mktemp -d /var/tmp/farm-remote-bench.XXXXXX)
# shellcheck source=tests/farm/netns.sh
source "$(dirname "$0")/../../tests/farm/netns.sh"
P="fb$$"
NET=$(netns_random_net)
declare -A NETNS_ADDR=([cache]=2 [sched]=3 [w1]=11 [c1]=21 [c2]=22)
HOSTS=(cache sched w1 c1 c2)
NETNS_PREFIX=$P NETNS_NET=$NET
cleanup() {
  netns_down "${HOSTS[@]}"
  grep " $work/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay \
    rmi -a -f >/dev/null 2>&1 || true
  umount -R "$work/buildah" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
netns_up "${HOSTS[@]}"
CACHE="$NET.2:9092"
SCHED="$NET.3:9091"
# In subshells, so that this shell does not report them killed at the end.
(ip netns exec "${P}cache" "$bin/cache/server/farm-cache" --listen "$CACHE" --dir "$work/cache" \
  --insecure >"$work/cache.log" 2>&1 &)
(ip netns exec "${P}sched" "$bin/scheduler/server/farm-scheduler" --listen "$SCHED" \
  --cache "$CACHE" --dir "$work/sched" --insecure >"$work/sched.log" 2>&1 &)
(ip netns exec "${P}w1" "$bin/worker/agent/farm-worker" --scheduler "$SCHED" --cache "$CACHE" \
  --dir "$work/w1" --slots 2 --insecure >"$work/w1.log" 2>&1 &)
for _ in $(seq 150); do
  n=$(ip netns exec "${P}c1" env FARM_HOME="$work/home-c1" "$FARM" workers --insecure --scheduler "$SCHED" \
    2>/dev/null | awk 'NR > 1' | wc -l || true)
  [ "$n" -ge 1 ] && break
  sleep 0.2
done
[ "$n" -ge 1 ] || { tail "$work"/*.log >&2; echo "the farm did not come up" >&2; exit 1; }

# The workload: the `app` case of bench/build/compare.sh on a busybox base made FROM scratch
# (no registry needed): 2 000 source files (12 MB), a RUN hashing them and making a tarball.
ctx=$work/ctx
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox"
python3 - "$ctx" <<'PY'
import os, random, sys
rng = random.Random(42)
for i in range(2000):
    d = os.path.join(sys.argv[1], "src", "pkg%02d" % (i % 40))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%04d.c" % i), "w") as f:
        for _ in range(6000 // 40):
            f.write("int v%d = %d; /* %s */\n" % (rng.randrange(1 << 20), rng.randrange(1 << 30), "x" * 8))
PY
cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
WORKDIR /app
COPY src/ ./src/
RUN find src -type f | sort | xargs cat | sha256sum > /app/digest && tar -czf /app/src.tgz src
ENV MODE=prod
CMD ["cat", "/app/digest"]
EOF
edit=$(find "$ctx/src" -type f | sort | sed -n 1p)

# time_in HOST CMD...: seconds the command took, measured inside HOST's namespace.
time_in() {
  local h=$1
  shift
  ip netns exec "$P$h" bash -c 't0=$(date +%s%N); "$@" >/dev/null 2>>'"$work/err.log"' || exit 1; t1=$(date +%s%N); echo "scale=4; ($t1 - $t0) / 1000000000" | bc' _ "$@"
}
submit_from() {
  local h=$1
  time_in "$h" env FARM_HOME="$work/home-$h" "$FARM" submit -q --insecure --scheduler "$SCHED" "$ctx"
}
results=$work/results.txt
: >"$results"
sync
echo "remote cold $(submit_from c1)" >>"$results"
for r in $(seq "$runs"); do echo "remote warm $(submit_from c1)" >>"$results"; done
# A first time on the second host, several times: its home (stat cache) removed before each.
for r in $(seq "${FIRST_RUNS:-5}"); do
  rm -rf "$work/home-c2"
  echo "remote other-host $(submit_from c2)" >>"$results"
done
for r in $(seq "$runs"); do echo "remote other-host-warm $(submit_from c2)" >>"$results"; done
# References on the client host: the embedded farm build, fully cached.
export FARM_HOME=$work/home-local
"$FARM" build -q -t bench:latest "$ctx" >/dev/null
for r in $(seq "$runs"); do
  echo "embedded warm $(time_in c1 env FARM_HOME="$FARM_HOME" "$FARM" build -q -t bench:latest "$ctx")" >>"$results"
done
# One file edited, on the farm and embedded alternately (the issue's target: the farm's within
# 1.3x of the embedded one), each followed by a build of the original back to the cached state.
for r in $(seq "${EDIT_RUNS:-5}"); do
  cp "$edit" "$work/orig"
  echo "// change $r $RANDOM" >>"$edit"
  echo "remote change $(submit_from c1)" >>"$results"
  echo "embedded change $(time_in c1 env FARM_HOME="$FARM_HOME" "$FARM" build -q -t bench:latest "$ctx")" >>"$results"
  cp "$work/orig" "$edit"
  submit_from c1 >/dev/null
  "$FARM" build -q -t bench:latest "$ctx" >/dev/null
done
bflags=(--root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay)
mkdir -p "$work/tmp"
buildah "${bflags[@]}" bud --layers --isolation chroot --format oci -q -t ref:latest "$ctx" \
  >/dev/null 2>>"$work/err.log"
for r in $(seq "$runs"); do
  echo "buildah warm $(time_in c1 env TMPDIR="$work/tmp" buildah "${bflags[@]}" bud --layers \
    --isolation chroot --format oci -q -t ref:latest "$ctx")" >>"$results"
done

python3 - "$results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tool, kind, secs = line.split()
    rows[(tool, kind)].append(float(secs) * 1000)
names = [("remote", "cold", "farm submit, cold (first build)"),
         ("remote", "warm", "farm submit, fully cached, same client (warm stat cache)"),
         ("remote", "other-host", "farm submit, fully cached, first time on a second client host"),
         ("remote", "other-host-warm", "farm submit, fully cached, second client host again"),
         ("remote", "change", "farm submit, one source file changed"),
         ("embedded", "warm", "farm build (embedded), fully cached"),
         ("embedded", "change", "farm build (embedded), one source file changed"),
         ("buildah", "warm", "buildah bud --layers, fully cached")]
buildah = statistics.median(rows[("buildah", "warm")])
print("| scenario | runs | median (ms) | min (ms) | max (ms) | / buildah cached |")
print("|---|---:|---:|---:|---:|---:|")
for tool, kind, label in names:
    v = rows[(tool, kind)]
    m = statistics.median(v)
    print("| %s | %d | %.0f | %.0f | %.0f | %.3f |" % (label, len(v), m, min(v), max(v), m / buildah))
PY
