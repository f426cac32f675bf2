#!/usr/bin/env bash
# A Debian base made by `debootstrap --variant=minbase` (the rootfs tar is cached in
# $FARM_TEST_CACHE, default ~/.cache/farm-tests, between runs), loaded with ADD, and a RUN
# apt-get update && apt-get install from the apt mirror (on the step's isolated network: NAT
# through this host, DNS to its resolver).
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"

# Bazel runs tests without $HOME: take the user's home from the password database.
home=$(getent passwd "$(id -u)" | cut -d: -f6)
cache=${FARM_TEST_CACHE:-${home:-$T}/.cache/farm-tests}
mkdir -p "$cache"
rootfs_tar="$cache/debian-bookworm-minbase.tar"
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
if [ ! -s "$rootfs_tar" ]; then
  echo "debootstrap --variant=minbase bookworm from $mirror (cached afterwards in $rootfs_tar)"
  root="$T/rootfs"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$T/debootstrap.log" 2>&1 ||
    { tail -20 "$T/debootstrap.log" >&2; echo "FATAL: debootstrap failed" >&2; exit 1; }
  # An image has an empty /dev, /proc, /sys (the sandbox mounts them).
  rm -rf "$root"/dev/* "$root"/proc/* "$root"/sys/* "$root"/var/cache/apt/archives/*.deb
  tar --numeric-owner -C "$root" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
fi

mkdir -p "$T/base"
ln "$rootfs_tar" "$T/base/rootfs.tar" 2>/dev/null || cp "$rootfs_tar" "$T/base/rootfs.tar"
cat >"$T/base/Dockerfile" <<'DF'
FROM scratch
ADD rootfs.tar /
CMD ["bash"]
DF
check "debian base" build base "$T/base" -t debian:farm-minbase
check "debian base runs" test "$("$FARM" run debian:farm-minbase cat /etc/debian_version | cut -d. -f1)" = 12

mkdir -p "$T/app"
cat >"$T/app/Dockerfile" <<'DF'
FROM debian:farm-minbase
RUN apt-get update && apt-get install -y --no-install-recommends jq \
 && rm -rf /var/lib/apt/lists/*
RUN echo '{"built":"with farm"}' | jq -r .built > /result
CMD ["cat", "/result"]
DF
check "apt-get install in RUN" build app "$T/app" -t debian-jq:1
check "the installed tool works at build time" test "$("$FARM" run debian-jq:1)" = "with farm"
check "and at run time" test "$("$FARM" run debian-jq:1 jq -n 1+1)" = 2
check "second build is cached" build app2 "$T/app" -t debian-jq:1
check "second build: both RUNs CACHED" test "$(cached_steps "$T/app2.log")" = 3

finish
