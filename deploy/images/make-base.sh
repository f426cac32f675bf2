#!/usr/bin/env bash
# Makes farm-base:bookworm, the Debian 12 base of the server images (deploy/images/*.Dockerfile):
# a `debootstrap --variant=minbase` root filesystem with the shared libraries farm-cache,
# farm-scheduler and farm-worker link against (from Debian's packages, the same versions
# Bazel linked them with), nft (farm-worker's step networks), openssl (farm-worker's
# enrollment in deploy/k8s) and the CA certificates (registries over HTTPS). The tarball is
# cached, so later runs only import it: farm builds the image itself (FROM scratch, ADD).
#   deploy/images/make-base.sh [--farm PATH] [--tag NAME:TAG] [--cache DIR] [--mirror URL]
# The only network it uses is the Debian mirror apt is configured with (debootstrap fetches
# the .debs from it), and only when the tarball is not cached yet.
set -euo pipefail

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "$0"
  cat <<'TXT'
Options:
  --farm PATH     the farm binary (default: farm in PATH, else bazel-bin/cli/farm)
  --tag NAME:TAG  the image to make (default farm-base:bookworm)
  --cache DIR     where the root filesystem tarball is kept (default ~/.cache/farm)
  --mirror URL    Debian mirror (default: the one in /etc/apt/sources.list(.d))
  --tar-only      make (or find) the tarball and print its path; do not import it
TXT
}

# Runtime packages of the three servers: every library in third_party/BUILD.bazel's linkopts
# (their dependencies come with them), plus the tools the servers run.
packages=(
  libabsl20220623 libarchive13 libc-ares2 libcivetweb1 libcurl4 libdeflate0 libgrpc++1.51
  libgrpc29 libisal2 libprotobuf32 libre2-9 librocksdb7.8 libseccomp2 libssl3 libstdc++6
  libzstd1 zlib1g
  nftables openssl ca-certificates
)
suite=bookworm

die() { echo "make-base.sh: $*" >&2; exit 1; }

farm=""
tag=farm-base:bookworm
home=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
cache="$home/.cache/farm"
mirror=""
tar_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --farm) [ $# -ge 2 ] || die "--farm needs a value"; farm=$2; shift 2 ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag=$2; shift 2 ;;
    --cache) [ $# -ge 2 ] || die "--cache needs a value"; cache=$2; shift 2 ;;
    --mirror) [ $# -ge 2 ] || die "--mirror needs a value"; mirror=$2; shift 2 ;;
    --tar-only) tar_only=1; shift ;;
    *) die "unknown argument \"$1\" (see --help)" ;;
  esac
done

# Bazel's test environment has no sbin directories in PATH (debootstrap lives there).
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [ -z "$mirror" ]; then
  mirror=$( (sed -n 's/^URIs: *\(http[^ ]*\/debian\/\{0,1\}\)$/\1/p' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\/debian\/\{0,1\}\) .*/\2/p' \
      /etc/apt/sources.list 2>/dev/null || true) | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

# The tarball's name carries a digest of what goes into it: change the list, get a new one.
key=$(printf '%s\n' "$suite" minbase "${packages[@]}" | sha256sum | cut -c1-12)
tarball="$cache/debian-$suite-farm-base-$key.tar"
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  work=$(mktemp -d "$cache/.make-base.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "make-base.sh: debootstrap --variant=minbase $suite from $mirror (cached afterwards in $tarball)" >&2
  include=$(IFS=,; echo "${packages[*]}")
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$mirror" \
    >"$work/debootstrap.log" 2>&1; then
    tail -20 "$work/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  fi
  root="$work/root"
  # An image has empty /dev, /proc, /sys (the runtime mounts them); no package archives,
  # apt lists, logs or documentation beyond the copyright files.
  rm -rf "$root"/dev/* "$root"/proc/* "$root"/sys/* "$root"/run/* "$root"/tmp/* \
    "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/var/log/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  find "$root/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
  # Sorted entries, numeric owners, times clamped: the same packages give the same bytes.
  epoch=$(stat -c %Y "$root/var/lib/dpkg/status")
  tar --sort=name --numeric-owner --mtime="@$epoch" --clamp-mtime --xattrs \
    -C "$root" -cf "$work/rootfs.tar" . || die "could not write the tarball"
  mv "$work/rootfs.tar" "$tarball"
  echo "make-base.sh: $(du -h "$tarball" | cut -f1) in $tarball" >&2
fi

if [ "$tar_only" = 1 ]; then
  echo "$tarball"
  exit 0
fi

if [ -z "$farm" ]; then
  farm=$(command -v farm || true)
  [ -n "$farm" ] || farm="$(dirname "$0")/../../bazel-bin/cli/farm"
fi
[ -x "$farm" ] || die "no farm binary at $farm (build //cli:farm, or pass --farm)"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx" ${work:+"$work"}' EXIT
ln "$tarball" "$ctx/rootfs.tar" 2>/dev/null || cp "$tarball" "$ctx/rootfs.tar"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["bash"]
DOCKERFILE
SOURCE_DATE_EPOCH=0 "$farm" build --progress=plain -t "$tag" "$ctx"
