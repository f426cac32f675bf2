#!/usr/bin/env bash
# farm build vs buildah (bud --layers --isolation chroot, the reference builder that runs here)
# on realistic Dockerfiles, alternately in the same run: cold (empty storage, base image pulled
# from a loopback registry), fully cached, and after one source file changed. Prints a table of
# medians and the farm/buildah ratios.
#   bench/build/compare.sh [RUNS=3] [FARM=bazel-bin/cli/farm]
# FARM_REF=/path/to/another/farm adds that binary as "farm-ref" (before/after comparisons of a
# change, in the same run, alternating); SKIP_BUILDAH=1 leaves buildah out; BENCH_CASES picks
# workloads (default: app multistage debian); BENCH_RAW=1 prints every timing too.
# Needs: buildah, docker-registry, busybox-static (tools/setup.sh). The debian case uses the
# debootstrap rootfs the e2e tests cache (~/.cache/farm-tests), made on first use.
set -euo pipefail
runs=${1:-3}
farm=$(realpath "${2:-bazel-bin/cli/farm}")
farm_ref=${FARM_REF:+$(realpath "$FARM_REF")}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /var/tmp/farm-bench.XXXXXX)
trap 'cleanup' EXIT
cleanup() {
  [ -n "${reg_pid:-}" ] && kill "$reg_pid" 2>/dev/null || true
  for root in "$work"/buildah/*/; do
    [ -d "$root/root" ] && buildah --root "$root/root" --runroot "$root/run" --storage-driver overlay \
      rmi -a -f >/dev/null 2>&1 || true
  done
  umount -R "$work/buildah" 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || true
}
now() { date +%s.%N; }

# A registry on loopback with the base images.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' \
  "$work/registry" "$port" >"$work/registry.yml"
/usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.05; done
reg=127.0.0.1:$port
export FARM_HOME=$work/seed
"$here/../../tests/examples/busybox-base.sh" "$farm" >/dev/null 2>&1
"$farm" tag busybox:farm-example "$reg/bench/busybox:1" && "$farm" push "$reg/bench/busybox:1" >/dev/null
home=$(getent passwd "$(id -u)" | cut -d: -f6)
rootfs=${FARM_TEST_CACHE:-$home/.cache/farm-tests}/debian-bookworm-minbase.tar
if [ ! -s "$rootfs" ]; then
  mkdir -p "$(dirname "$rootfs")"; debootstrap --variant=minbase bookworm "$work/deb" >/dev/null
  rm -rf "$work/deb"/dev/* "$work/deb"/proc/* "$work/deb"/sys/*
  tar --numeric-owner -C "$work/deb" -cf "$rootfs.tmp" . && mv "$rootfs.tmp" "$rootfs"
fi
mkdir -p "$work/debbase" && cp "$rootfs" "$work/debbase/rootfs.tar"
printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' >"$work/debbase/Dockerfile"
"$farm" build -q -t "$reg/bench/debian:12" "$work/debbase" >/dev/null
"$farm" push "$reg/bench/debian:12" >/dev/null

# The workloads: a context of sources, a Dockerfile, and the file the "one change" edits.
python3 - "$work" "$reg" <<'PY'
import os, random, sys
work, reg = sys.argv[1], sys.argv[2]
rng = random.Random(42)
def tree(root, files, size):
    for i in range(files):
        d = os.path.join(root, "src", "pkg%02d" % (i % 40))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%04d.c" % i), "w") as f:
            for _ in range(size // 40):
                f.write("int v%d = %d; /* %s */\n" % (rng.randrange(1 << 20), rng.randrange(1 << 30), "x" * 8))
cases = {
 "app": ("FROM %s/bench/busybox:1\nWORKDIR /app\nCOPY src/ ./src/\n"
         "RUN find src -type f | sort | xargs cat | sha256sum > /app/digest && tar -czf /app/src.tgz src\n"
         "ENV MODE=prod\nCMD [\"cat\", \"/app/digest\"]\n" % reg, 2000, 6000),
 "multistage": ("FROM %s/bench/busybox:1 AS build\nWORKDIR /src\nCOPY src/ ./\n"
                "RUN mkdir /out && for d in pkg*; do cat $d/*.c | gzip -1 > /out/$d.gz; done\n"
                "FROM %s/bench/busybox:1 AS test\nCOPY --from=build /out /out\nRUN ls /out | wc -l > /count\n"
                "FROM %s/bench/busybox:1\nCOPY --from=build /out /opt/out\nCOPY --from=test /count /opt/count\n"
                "CMD [\"cat\", \"/opt/count\"]\n" % (reg, reg, reg), 1500, 8000),
 "debian": ("FROM %s/bench/debian:12\nRUN dpkg -l > /packages.txt && useradd -m app\nWORKDIR /home/app\n"
            "COPY --chown=app:app src/ ./src/\nRUN find src -name '*.c' | wc -l > count\nUSER app\n"
            "CMD [\"cat\", \"count\"]\n" % reg, 500, 4000),
}
for name, (df, files, size) in cases.items():
    root = os.path.join(work, "ctx-" + name)
    os.makedirs(root, exist_ok=True)
    tree(root, files, size)
    open(os.path.join(root, "Dockerfile"), "w").write(df)
PY

cat >"$work/registries.conf" <<CONF
[[registry]]
location = "$reg"
insecure = true
CONF
export CONTAINERS_REGISTRIES_CONF=$work/registries.conf TMPDIR=$work/tmp
mkdir -p "$TMPDIR"
# Each run gets fresh storage (a new buildah --root, a new FARM_HOME) and nothing is deleted
# until the end: on this disk (ext4 without a journal) creating files right after thousands were
# deleted nearby is several times slower (ext4 scans for recently deleted inodes), which made
# whichever tool came next pay for the other's cleanup.
bflags=()
bud() { buildah "${bflags[@]}" bud --layers --isolation chroot --format oci --tls-verify=false -q -t ref:latest "$1" >/dev/null; }
fb() { "$farm" build -q --insecure-registry "$reg" -t bench:latest "$1" >/dev/null; }
fbr() { "$farm_ref" build -q --insecure-registry "$reg" -t bench:latest "$1" >/dev/null; }
# Every timed build starts with no dirty pages pending: otherwise a tool that fsyncs (farm)
# pays, on its own clock, for the writeback of what the previous tool left unsynced.
timeit() { local t0 t1; sync; t0=$(now); "$@"; t1=$(now); echo "$t1 - $t0" | bc; }

results=$work/results.txt
: >"$results"
for case in ${BENCH_CASES:-app multistage debian}; do
  ctx=$work/ctx-$case
  edit=$(find "$ctx/src" -type f | sort | sed -n 1p)
  for r in $(seq "$runs"); do
    # buildah
    bflags=(--root "$work/buildah/$case-$r/root" --runroot "$work/buildah/$case-$r/run" --storage-driver overlay)
    cp "$edit" "$work/orig"
    if [ "${SKIP_BUILDAH:-0}" != 1 ]; then
      echo "$case buildah cold $(timeit bud "$ctx")" >>"$results"
      echo "$case buildah cached $(timeit bud "$ctx")" >>"$results"
      echo "// change $r $RANDOM" >>"$edit"
      echo "$case buildah change $(timeit bud "$ctx")" >>"$results"
      cp "$work/orig" "$edit"
    fi
    if [ -n "$farm_ref" ]; then
      export FARM_HOME=$work/farmref-$case-$r
      echo "$case farm-ref cold $(timeit fbr "$ctx")" >>"$results"
      echo "$case farm-ref cached $(timeit fbr "$ctx")" >>"$results"
      echo "// change $r $RANDOM" >>"$edit"
      echo "$case farm-ref change $(timeit fbr "$ctx")" >>"$results"
      cp "$work/orig" "$edit"
    fi
    # farm (a fresh home: nothing local, the base image is pulled too)
    export FARM_HOME=$work/farm-$case-$r
    echo "$case farm cold $(timeit fb "$ctx")" >>"$results"
    echo "$case farm cached $(timeit fb "$ctx")" >>"$results"
    echo "// change $r $RANDOM" >>"$edit"
    echo "$case farm change $(timeit fb "$ctx")" >>"$results"
    cp "$work/orig" "$edit"
  done
done

[ "${BENCH_RAW:-0}" = 1 ] && cat "$results"
python3 - "$results" "$runs" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    case, tool, kind, secs = line.split()
    rows[(case, tool, kind)].append(float(secs))
cases = sorted({c for c, _, _ in rows}, key=["app", "multistage", "debian"].index)
others = [t for t in ["buildah", "farm-ref"] if any(k[1] == t for k in rows)]
print("| workload | scenario | farm (s) | " + " | ".join("%s (s) | farm/%s" % (o, o) for o in others) + " |")
print("|---|---|---:|" + "---:|---:|" * len(others))
for case in cases:
    for kind in ["cold", "cached", "change"]:
        f = statistics.median(rows[(case, "farm", kind)])
        cells = []
        for o in others:
            b = statistics.median(rows[(case, o, kind)])
            cells.append("%.3f | %.3f" % (b, f / b))
        print("| %s | %s | %.3f | %s |" % (case, {"cold": "cold", "cached": "fully cached", "change": "one file changed"}[kind], f, " | ".join(cells)))
print("\nmedians of %s runs each" % sys.argv[2])
PY
