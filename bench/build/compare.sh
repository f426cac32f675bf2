#!/usr/bin/env bash
# farm build vs BuildKit (the engine inside `docker build`: Debian's dockerd 20.10, private, with
# --iptables=false --bridge=none, builds with DOCKER_BUILDKIT=1 --network host) and buildah
# (bud --layers --isolation chroot) on realistic Dockerfiles, alternately in the same run: cold
# (empty storage, base image pulled from a loopback registry), fully cached, and after one
# source file changed. Every timed build starts after `sync`. Prints a table of medians and the
# farm/BuildKit and farm/buildah ratios.
#   bench/build/compare.sh [RUNS=3] [FARM=bazel-bin/cli/farm]   (build farm with -c opt)
# FARM_REF=/path/to/another/farm adds that binary as "farm-ref" (before/after comparisons of a
# change, in the same run, alternating); SKIP_BUILDAH=1 / SKIP_BUILDKIT=1 leave a reference
# out; BENCH_CASES picks workloads (default: app multistage debian churn monorepo);
# BENCH_RAW=1 prints every timing too.
# Workloads: app (busybox, 2,000 sources + 30 MB of assets, COPY then 3 RUNs), multistage (a
# C-like multi-stage build), debian (Debian base, useradd, COPY --chown), churn (Debian base, a
# RUN that unpacks 8,000 small files over /usr as apt-get does, then sources), monorepo (20,000
# files, 200 MB context, COPY . then a RUN on one service; the edit is one file).
# Each BuildKit run gets a fresh dockerd (new data root: cold means empty), stopped after it.
# Needs: docker.io, buildah, docker-registry, busybox-static (tools/setup.sh). The Debian cases
# use the debootstrap rootfs the e2e tests cache (~/.cache/farm-tests), made on first use.
set -euo pipefail
runs=${1:-3}
farm=$(realpath "${2:-bazel-bin/cli/farm}")
farm_ref=${FARM_REF:+$(realpath "$FARM_REF")}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /var/tmp/farm-bench.XXXXXX)
trap 'cleanup' EXIT
cleanup() {
  stop_dockerd
  [ -n "${reg_pid:-}" ] && kill "$reg_pid" 2>/dev/null || true
  for root in "$work"/buildah/*/; do
    [ -d "$root/root" ] && buildah --root "$root/root" --runroot "$root/run" --storage-driver overlay \
      rmi -a -f >/dev/null 2>&1 || true
  done
  umount -R "$work/buildah" 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || true
}
now() { date +%s.%N; }

# A private dockerd per BuildKit run (short socket path: unix sockets must fit in 108 bytes).
dockerd_pid=""
start_dockerd() {
  local d=$1
  mkdir -p "$d"
  export DOCKER_HOST="unix://$d/d.sock" DOCKER_BUILDKIT=1
  dockerd --data-root "$d/root" --exec-root "$d/exec" -H "$DOCKER_HOST" --iptables=false \
    --ip6tables=false --bridge=none --pidfile "$d/pid" >"$d/log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 600); do /usr/bin/docker version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "dockerd did not start: $(tail -5 "$d/log")" >&2
  return 1
}
stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  kill "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=""
  grep " $work/dk" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

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
def assets(root, total, count):
    d = os.path.join(root, "assets")
    os.makedirs(d, exist_ok=True)
    for i in range(count):
        with open(os.path.join(d, "a%03d.bin" % i), "wb") as f:
            f.write(rng.randbytes(total // count))
cases = {
 "app": ("FROM %s/bench/busybox:1\nWORKDIR /app\nCOPY src/ ./src/\nCOPY assets/ ./assets/\n"
         "RUN find src -type f | sort | xargs cat | sha256sum > /app/digest\n"
         "RUN tar -czf /app/src.tgz src\nRUN ls -R /app | wc -l > /app/count\n"
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
cases["churn"] = ("FROM %s/bench/debian:12\nCOPY pkgs.tar /tmp/pkgs.tar\n"
                  "RUN tar -xf /tmp/pkgs.tar -C / && rm /tmp/pkgs.tar && "
                  "cat /var/lib/dpkg/status.d/* >> /var/lib/dpkg/status && ldconfig\n"
                  "WORKDIR /srv\nCOPY src/ ./src/\nRUN find src -type f | wc -l > count\n"
                  "CMD [\"cat\", \"count\"]\n" % reg, 300, 4000)
cases["monorepo"] = ("FROM %s/bench/busybox:1\nWORKDIR /repo\nCOPY . .\n"
                     "RUN cat src/pkg00/*.c | sha256sum > /svc.digest\n"
                     "CMD [\"cat\", \"/svc.digest\"]\n" % reg, 20000, 10000)
import io, tarfile
for name, (df, files, size) in cases.items():
    if os.environ.get("BENCH_CASES") and name not in os.environ["BENCH_CASES"].split():
        continue
    root = os.path.join(work, "ctx-" + name)
    os.makedirs(root, exist_ok=True)
    tree(root, files, size)
    if name == "app":
        assets(root, 30 << 20, 30)
    if name == "churn":
        # 8,000 small files across package-like directories, as an apt-get install unpacks.
        with tarfile.open(os.path.join(root, "pkgs.tar"), "w") as t:
            for p in range(80):
                st = ("Package: pkg%02d\nStatus: install ok installed\nVersion: 1.%d\n\n" % (p, p)).encode()
                ti = tarfile.TarInfo("var/lib/dpkg/status.d/pkg%02d" % p); ti.size = len(st)
                t.addfile(ti, io.BytesIO(st))
                for i in range(100):
                    data = rng.randbytes(rng.randrange(200, 6000))
                    sub = ["usr/share/doc/pkg%02d" % p, "usr/lib/pkg%02d" % p, "usr/share/pkg%02d/data" % p][i % 3]
                    ti = tarfile.TarInfo("%s/file%03d" % (sub, i)); ti.size = len(data); ti.mode = 0o644
                    t.addfile(ti, io.BytesIO(data))
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
dkb() { /usr/bin/docker build -q --network host -t ref:latest "$1" >/dev/null; }
fb() { "$farm" build -q --insecure-registry "$reg" -t bench:latest "$1" >/dev/null; }
fbr() { "$farm_ref" build -q --insecure-registry "$reg" -t bench:latest "$1" >/dev/null; }
# Every timed build starts with no dirty pages pending: otherwise a tool that fsyncs (farm)
# pays, on its own clock, for the writeback of what the previous tool left unsynced.
timeit() { local t0 t1; sync; t0=$(now); "$@"; t1=$(now); echo "$t1 - $t0" | bc; }

results=$work/results.txt
: >"$results"
for case in ${BENCH_CASES:-app multistage debian churn monorepo}; do
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
    if [ "${SKIP_BUILDKIT:-0}" != 1 ]; then
      start_dockerd "$work/dk$r"
      echo "$case buildkit cold $(timeit dkb "$ctx")" >>"$results"
      echo "$case buildkit cached $(timeit dkb "$ctx")" >>"$results"
      echo "// change $r $RANDOM" >>"$edit"
      echo "$case buildkit change $(timeit dkb "$ctx")" >>"$results"
      cp "$work/orig" "$edit"
      stop_dockerd
      mv "$work/dk$r" "$work/dk-done-$case-$r"  # removed at the end, not now (see above)
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
cases = sorted({c for c, _, _ in rows}, key=["app", "multistage", "debian", "churn", "monorepo"].index)
others = [t for t in ["buildkit", "buildah", "farm-ref"] if any(k[1] == t for k in rows)]
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
