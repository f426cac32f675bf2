#!/usr/bin/env bash
# Multi-platform images (issue 15, part 3): `farm build --platform linux/amd64,linux/arm64`
# builds each platform (arm64 under QEMU user emulation) and assembles one OCI image index (a
# Docker manifest list with --format docker). A `FROM --platform=$BUILDPLATFORM` stage runs on
# the build platform, and its steps that do not depend on the target run once for both; the
# TARGET*/BUILD* ARGs are BuildKit's. farm run/inspect/images pick and show the platforms; the
# index pushed to a registry is read by skopeo (inspect --raw, a copy of each platform) and
# buildah; -o type=oci/local export every platform; farm bake builds a target's platforms.
# Needs root; registers qemu-aarch64 if missing and removes it at exit (tests/e2e/qemu.sh).
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
source "$TEST_SRCDIR/farm/tests/e2e/qemu.sh"
[ "$(id -u)" = 0 ] || { echo "FATAL: needs root" >&2; exit 1; }
qemu_aarch64_setup
reg_pid=
trap 'qemu_aarch64_release; [ -n "$reg_pid" ] && kill $reg_pid 2>/dev/null' EXIT
bb_arm=$(arm64_busybox) || exit 1

ctx=$T/ctx
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox-amd64"
cp "$bb_arm" "$ctx/busybox-arm64"
cat >"$ctx/Dockerfile" <<'DF'
FROM --platform=$BUILDPLATFORM scratch AS tools
COPY busybox-amd64 /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /built-on"]
ARG TARGETPLATFORM
ARG BUILDPLATFORM
ARG TARGETARCH
RUN ["/bin/busybox", "sh", "-c", "echo $BUILDPLATFORM for $TARGETPLATFORM $TARGETARCH > /cross"]

FROM scratch
ARG TARGETARCH
COPY busybox-$TARGETARCH /bin/busybox
COPY --from=tools /built-on /cross /
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /arch"]
CMD ["/bin/busybox", "cat", "/arch", "/built-on", "/cross"]
DF

export SOURCE_DATE_EPOCH=0
check "farm build --platform linux/amd64,linux/arm64" \
  build mp "$ctx" --platform linux/amd64,linux/arm64 -t mp:1 --iidfile "$T/iid"
check "vertices name their platform" grep -q '^#[0-9]* \[linux/arm64 stage-1 3/3\] RUN' "$T/mp.log"
check "an index was assembled" grep -q 'exporting manifest list sha256:' "$T/mp.log"
# The build-platform step that ignores the target ran once: one of its two vertices is CACHED.
shared_ids=$(grep -E '^#[0-9]+ \[linux/(amd64|arm64) tools 2/3\] RUN' "$T/mp.log" | awk '{print $1}' | sort -u)
check "the shared build-platform step has a vertex per platform" test "$(echo "$shared_ids" | wc -l)" = 2
cached_shared=0
for id in $shared_ids; do grep -qx "$id CACHED" "$T/mp.log" && cached_shared=$((cached_shared + 1)); done
check "the shared build-platform step ran once" test "$cached_shared" = 1

check "the arm64 image ran its RUN emulated, the tools stage natively" \
  test "$("$FARM" run --rm --platform linux/arm64 mp:1 | tr '\n' ' ')" = \
  "aarch64 x86_64 linux/amd64 for linux/arm64 arm64 "
check "farm run picks the host's platform from the index" \
  test "$("$FARM" run --rm mp:1 | tr '\n' ' ')" = "x86_64 x86_64 linux/amd64 for linux/amd64 amd64 "
"$FARM" inspect mp:1 >"$T/inspect.json"
check "inspect: the image ID is the index digest" test "$(json "$T/inspect.json" 'j[0]["Id"]')" = "$(cat "$T/iid")"
check "inspect: an OCI index" test "$(json "$T/inspect.json" 'j[0]["Descriptor"]["mediaType"]')" = \
  application/vnd.oci.image.index.v1+json
check "inspect: Manifests lists both platforms" test \
  "$(json "$T/inspect.json" '" ".join(m["Descriptor"]["platform"]["architecture"] for m in j[0]["Manifests"])')" = "amd64 arm64"
check "inspect --platform linux/arm64 shows the arm64 config" \
  sh -c "'$FARM' inspect --platform linux/arm64 mp:1 | grep -q '\"Architecture\": \"arm64\"'"
"$FARM" images --tree >"$T/tree.txt"
check "images --tree shows the platforms" \
  sh -c "grep -q '^├─ linux/amd64' '$T/tree.txt' && grep -q '^└─ linux/arm64' '$T/tree.txt'"
check "images --format {{.Platforms}}" \
  test "$("$FARM" images --format '{{.Platforms}}' mp:1)" = "linux/amd64,linux/arm64"

check "a rebuild is fully cached" build again "$ctx" --platform linux/amd64,linux/arm64 -t mp:1 --iidfile "$T/iid2"
check "the rebuild ran no step" test "$(run_steps "$T/again.log")" = 0
check "the rebuild gives the same index (reproducible)" cmp -s "$T/iid" "$T/iid2"

check "--format docker" build docker "$ctx" --platform linux/amd64,linux/arm64 --format docker -t mp:docker
check "a Docker manifest list" sh -c "'$FARM' inspect mp:docker | grep -q 'application/vnd.docker.distribution.manifest.list.v2+json'"

"$FARM" build -q --platform linux/amd64,linux/arm64,linux/amd64 "$ctx" >/dev/null 2>"$T/twice.log"
check "a platform listed twice is refused" grep -q 'linux/amd64 is listed twice' "$T/twice.log"
"$FARM" build -q --platform linux/amd64,linux/sparc64 "$ctx" >/dev/null 2>"$T/sparc.log"
check "an unrunnable platform in the list is named" grep -q 'linux/sparc64' "$T/sparc.log"

# Outputs: every platform.
check "-o type=local,oci" build outs "$ctx" --platform linux/amd64,linux/arm64 \
  -o "type=local,dest=$T/local" -o "type=oci,dest=$T/mp.oci.tar"
check "type=local: one directory per platform" \
  test "$(cat "$T/local/linux_arm64/arch")-$(cat "$T/local/linux_amd64/arch")" = "aarch64-x86_64"
check "type=oci: skopeo copies the arm64 image out of the archive" \
  skopeo copy -q --override-arch arm64 "oci-archive:$T/mp.oci.tar" "oci:$T/oci-arm:x"
check "type=oci: it is the arm64 one" sh -c \
  "skopeo inspect --config oci:'$T/oci-arm:x' | grep -q '\"architecture\": \"arm64\"'"

"$FARM" build -q --platform linux/amd64,linux/arm64 -o "type=docker,dest=$T/mp.docker.tar" "$ctx" >/dev/null 2>"$T/docker-out.log"
check "-o type=docker of several platforms is refused, as buildx does" grep -q "cannot be exported as a docker archive" "$T/docker-out.log"
check "--metadata-file of an index has no config digest" sh -c \
  "'$FARM' build -q --platform linux/amd64,linux/arm64 --metadata-file '$T/meta.json' '$ctx' >/dev/null && ! grep -q containerimage.config.digest '$T/meta.json' && grep -q 'image.index' '$T/meta.json'"

# Push the index to a registry (random loopback port); skopeo and buildah read it.
start_registry
reg=127.0.0.1:$port
check "farm tag + push of the index" sh -c \
  "'$FARM' tag mp:1 $reg/farm/mp:1 && '$FARM' push --insecure-registry $reg $reg/farm/mp:1 >'$T/push.log' 2>&1"
skopeo inspect --tls-verify=false --raw "docker://$reg/farm/mp:1" >"$T/raw.json"
check "skopeo inspect --raw: an index of two platforms" test \
  "$(json "$T/raw.json" 'j["mediaType"] + " " + ",".join(m["platform"]["architecture"] for m in j["manifests"])')" = \
  "application/vnd.oci.image.index.v1+json amd64,arm64"
for arch in amd64 arm64; do
  check "skopeo copies the $arch image" skopeo copy -q --src-tls-verify=false --override-arch $arch \
    "docker://$reg/farm/mp:1" "oci:$T/sk-$arch:x"
  check "skopeo's $arch copy has the $arch config" sh -c \
    "skopeo inspect --config oci:'$T/sk-$arch:x' | grep -q '\"architecture\": \"$arch\"'"
done
bh=(buildah --root "$T/buildah/root" --runroot "$T/buildah/run" --storage-driver vfs)
check "buildah pulls the arm64 image from the index" \
  sh -c "$(printf "%q " "${bh[@]}") pull -q --tls-verify=false --platform linux/arm64 docker://$reg/farm/mp:1 >/dev/null"
check "buildah sees arm64" sh -c \
  "$(printf '%q ' "${bh[@]}") inspect --type image $reg/farm/mp:1 | grep -q '\"architecture\": \"arm64\"'"
check "push --format docker manifest list" sh -c \
  "'$FARM' tag mp:docker $reg/farm/mp:docker && '$FARM' push --insecure-registry $reg $reg/farm/mp:docker >'$T/push2.log' 2>&1"
check "the registry serves a Docker manifest list" sh -c \
  "skopeo inspect --tls-verify=false --raw docker://$reg/farm/mp:docker | grep -q 'manifest.list.v2+json'"

# farm bake: a target's platforms.
cat >"$ctx/docker-bake.json" <<'JSON'
{"target": {"mp": {"context": ".", "platforms": ["linux/amd64", "linux/arm64"], "tags": ["mp:bake"]}}}
JSON
check "farm bake builds a target's platforms" \
  sh -c "cd '$ctx' && '$FARM' bake --progress plain mp >'$T/bake.log' 2>&1"
check "the baked image is an index of both" \
  test "$("$FARM" images --format '{{.Platforms}}' mp:bake)" = "linux/amd64,linux/arm64"
finish
