#!/usr/bin/env bash
# Builds the three server images with farm itself: the base (make-base.sh, cached), then
# farm-cache, farm-scheduler and farm-worker from deploy/images/*.Dockerfile on a context
# holding the Bazel-built binaries (build them with -c opt first).
#   bazel build -c opt //cli:farm //cache/server:farm-cache //scheduler/server:farm-scheduler \
#     //worker/agent:farm-worker
#   deploy/images/build.sh --registry registry.example.com/farm --tag 0.1 [--push]
# Images are named REGISTRY/farm-cache:TAG and so on (without --registry: farm-cache:TAG).
set -euo pipefail

die() { echo "build.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin="$repo/bazel-bin"
farm=""
registry=""
tag=dev
push=()
base=farm-base:bookworm
cache_dir=""
declare -A binary=(
  [farm-cache]="$bin/cache/server/farm-cache"
  [farm-scheduler]="$bin/scheduler/server/farm-scheduler"
  [farm-worker]="$bin/worker/agent/farm-worker"
)
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help)
      sed -n '2,8s/^# \{0,1\}//p' "$0"
      cat <<'TXT'
Options:
  --registry PREFIX      image name prefix, e.g. registry.example.com/farm
  --tag TAG              image tag (default dev)
  --push                 push each image after building it (farm build --push)
  --farm PATH            the farm binary (default bazel-bin/cli/farm)
  --base NAME:TAG        the base image (default farm-base:bookworm, made by make-base.sh)
  --cache DIR            make-base.sh's tarball cache (default ~/.cache/farm)
  --farm-cache PATH, --farm-scheduler PATH, --farm-worker PATH
                         the binaries (default: bazel-bin's)
TXT
      exit 0 ;;
    --registry) [ $# -ge 2 ] || die "--registry needs a value"; registry=${2%/}/; shift 2 ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag=$2; shift 2 ;;
    --push) push=(--push); shift ;;
    --farm) [ $# -ge 2 ] || die "--farm needs a value"; farm=$2; shift 2 ;;
    --base) [ $# -ge 2 ] || die "--base needs a value"; base=$2; shift 2 ;;
    --cache) [ $# -ge 2 ] || die "--cache needs a value"; cache_dir=$2; shift 2 ;;
    --farm-cache | --farm-scheduler | --farm-worker)
      [ $# -ge 2 ] || die "$1 needs a value"; binary[${1#--}]=$2; shift 2 ;;
    *) die "unknown argument \"$1\" (see --help)" ;;
  esac
done
farm=${farm:-$bin/cli/farm}
[ -x "$farm" ] || die "no farm binary at $farm (bazel build //cli:farm, or --farm)"
for name in farm-cache farm-scheduler farm-worker; do
  [ -x "${binary[$name]}" ] || die "no $name binary at ${binary[$name]} (build it, or --$name)"
done

"$here/make-base.sh" --farm "$farm" --tag "$base" ${cache_dir:+--cache "$cache_dir"}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
for name in farm-cache farm-scheduler farm-worker; do
  cp -L "${binary[$name]}" "$ctx/$name"
done
# The sandbox runner farm-worker starts for each RUN (built next to it by Bazel).
runner=$(dirname "${binary[farm-worker]}")/farm-sandbox
[ -x "$runner" ] || die "no farm-sandbox next to ${binary[farm-worker]} (bazel build //worker/agent:farm-worker makes it)"
cp -L "$runner" "$ctx/farm-sandbox"
cp "$repo/deploy/make-certs.sh" "$ctx/make-certs.sh"
for name in farm-cache farm-scheduler farm-worker; do
  image="$registry$name:$tag"
  echo "build.sh: $image" >&2
  SOURCE_DATE_EPOCH=0 "$farm" build --progress=plain --build-arg "BASE=$base" \
    ${push[@]+"${push[@]}"} -f "$here/$name.Dockerfile" -t "$image" "$ctx"
done
