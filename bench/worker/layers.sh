#!/usr/bin/env bash
# Layer creation throughput: farm's worker pipeline (tar + SHA-256 + gzip/zstd + SHA-256, one
# pass) against the reference tools on the same tree: GNU tar alone, then gzip -1/-6, pigz -6
# and zstd -3 -T0 compressing the tar it wrote (their time excludes making the tar).
#   bench/worker/layers.sh [TREE_DIR] [SIZE_MIB]
# With FARM_BENCH_NO_BUILD=1 the (already built) binary is used as is, so the script can run
# under the machine's Bazel lock (flock -o /tmp/farm-bazel-v2.lock bench/worker/layers.sh) and
# not share the cores with somebody's build.
# Prints two tables: farm's (and unpacking) and the references'. Results go to
# docs/benchmarks.md, section "Worker layers".
set -euo pipefail
cd "$(dirname "$0")/../.."
TREE=${1:-/tmp/farm-bench-tree}
SIZE=${2:-512}
if [ "${FARM_BENCH_NO_BUILD:-0}" != 1 ]; then
  tools/bazel-locked build -c opt //bench/worker:layers_bench >/dev/null 2>&1
fi
BIN=bazel-bin/bench/worker/layers_bench
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
"$BIN" --dir "$TREE" --size_mib "$SIZE" --generate --runs 3

TAR=/tmp/farm-bench.tar
mib() { echo "scale=1; $(stat -c %s "$TAR") / 1000000 / $1" | bc; }
timed() {  # prints seconds of "$@" (best of 2)
  local best=999999
  for _ in 1 2; do
    local s e
    s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N)
    best=$(echo "if ($e - $s < $best) $e - $s else $best" | bc)
  done
  echo "$best"
}
t=$(timed tar --sort=name --owner=0 --group=0 --numeric-owner -C "$TREE" -cf "$TAR" .)
echo
printf "%-22s %10s\n" "reference" "MB/s"
printf "%-22s %10s\n" "tar (to a file)" "$(mib "$t")"
for c in "gzip -1" "gzip -6" "pigz -6 -p $(nproc)" "zstd -3 -T0 -q"; do
  tool=${c%% *}
  command -v "$tool" >/dev/null || { printf "%-22s %10s\n" "$c" "absent"; continue; }
  t=$(timed sh -c "$c -c < $TAR")
  printf "%-22s %10s\n" "$c" "$(mib "$t")"
done
t=$(timed sh -c "sha256sum < $TAR")
printf "%-22s %10s\n" "sha256sum" "$(mib "$t")"
rm -f "$TAR"
