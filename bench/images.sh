#!/usr/bin/env bash
# Image transfer speed: farm against skopeo (the reference tool for moving images) on this
# machine, same image, same loopback docker-registry, alternating in one run (hyperfine).
#   bench/images.sh [SOURCE_DIR] [RUNS]
# The image: busybox plus SOURCE_DIR (default /usr/bin: real binaries, ~2.5x compressible),
# committed by buildah as one gzip layer. Operations (median of RUNS, state reset before each):
#   load  farm load -i img.tar              | skopeo copy oci-archive:img.tar oci:DIR
#   push  farm push REG/f (empty registry)  | skopeo copy oci:DIR docker://REG/s
#   pull  farm pull into an empty home     | skopeo copy docker://REG/s oci:DIR
#   save  farm save -o out.tar (docker)     | skopeo copy oci:DIR docker-archive:out.tar
# farm verifies more than skopeo on the way in: every layer's diff_id is recomputed
# (decompression) on pull and load; skopeo checks the compressed digest only.
# Prints a table of medians and ratios farm/skopeo. Needs: buildah skopeo hyperfine docker-registry.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-/usr/bin}
runs=${2:-5}
tools/bazel-locked build -c opt //cli:farm >/dev/null 2>&1
FARM=$(realpath bazel-bin/cli/farm)
W=$(mktemp -d /tmp/farm-bench-images.XXXXXX)
regpid=""
cleanup() { [ -n "$regpid" ] && kill "$regpid" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

# Source image.
mkdir -p "$W/b/tmp" "$W/rootfs/bin" "$W/rootfs/payload"
cp /bin/busybox "$W/rootfs/bin/"
cp -a "$src/." "$W/rootfs/payload/"
B() { env -u DOCKER_CONFIG TMPDIR=$W/b/tmp HOME=$W/b buildah --root "$W/b/root" --runroot "$W/b/run" --storage-driver vfs "$@"; }
c=$(B from scratch)
B copy "$c" "$W/rootfs/" / >/dev/null
B commit -q --disable-compression=false "$c" oci-archive:"$W/img.tar" >/dev/null
B rm "$c" >/dev/null
size=$(stat -c %s "$W/img.tar")

# Registry on loopback.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/reg"
printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/reg}, delete: {enabled: true}}\nhttp: {addr: "127.0.0.1:%s", secret: b}\n' "$W" "$port" >"$W/reg.yml"
/usr/bin/docker-registry serve "$W/reg.yml" >"$W/reg.log" 2>&1 &
regpid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.05; done
REG=127.0.0.1:$port
S="skopeo --insecure-policy"

# Seed: a farm home with the image tagged for the registry, and an OCI directory.
export FARM_HOME=$W/home
"$FARM" load -q -i "$W/img.tar"
"$FARM" tag "$("$FARM" images -q | head -1)" "$REG/f:1"
$S copy -q oci-archive:"$W/img.tar" oci:"$W/oci:1"
unset FARM_HOME

# bench NAME FARM_CMD FARM_PREPARE SKOPEO_CMD SKOPEO_PREPARE: one table row.
bench() {
  hyperfine --style none --runs "$runs" --export-json "$W/$1.json" \
    --prepare "$3" -n farm "$2" --prepare "$5" -n skopeo "$4" >/dev/null
  python3 - "$W/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
f, s = r[0]["median"], r[1]["median"]
print(f"| {sys.argv[2]:5} | {f:8.3f} | {s:10.3f} | {f/s:11.2f} |")
PY
}

echo "image: $src + busybox, $(numfmt --to=iec "$size") compressed, one gzip layer; median of $runs runs"
echo "| op    | farm (s) | skopeo (s) | farm/skopeo |"
echo "|-------|----------|------------|-------------|"
bench load "FARM_HOME=$W/lh $FARM load -q -i $W/img.tar" "rm -rf $W/lh" \
  "$S copy -q oci-archive:$W/img.tar oci:$W/lo:1" "rm -rf $W/lo"
bench push "FARM_HOME=$W/home $FARM push -q $REG/f:1" "rm -rf $W/reg/docker" \
  "$S copy -q --dest-tls-verify=false oci:$W/oci:1 docker://$REG/s:1" "rm -rf $W/reg/docker"
$S copy -q --dest-tls-verify=false oci:"$W/oci:1" "docker://$REG/s:1"
bench pull "FARM_HOME=$W/ph $FARM pull -q $REG/s:1" "rm -rf $W/ph" \
  "$S copy -q --src-tls-verify=false docker://$REG/s:1 oci:$W/po:1" "rm -rf $W/po"
bench save "FARM_HOME=$W/home $FARM save -o $W/fs.tar $REG/f:1" "rm -f $W/fs.tar" \
  "$S copy -q oci:$W/oci:1 docker-archive:$W/ss.tar:x:1" "rm -f $W/ss.tar"
