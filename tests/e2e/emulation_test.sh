#!/usr/bin/env bash
# Another architecture under QEMU user emulation (issue 15): an arm64 busybox image built with
# `farm build --platform linux/arm64` whose RUN step runs emulated (`uname -m` = aarch64 inside
# the sandbox), run with `farm run --platform linux/arm64`; the image config says arm64; a
# platform with no emulator registered is a clear error naming what to install.
# Needs root. Installs what it needs with apt-get (qemu-user-static; the arm64 busybox-static
# package, downloaded once into ~/.cache/farm-tests) and registers QEMU's aarch64 handler with
# binfmt_misc if it is not (it stays registered: it is the host's configuration).
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
[ "$(id -u)" = 0 ] || { echo "FATAL: needs root" >&2; exit 1; }

# QEMU and its binfmt_misc registration.
if [ ! -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] && ! command -v qemu-aarch64-static >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static >"$T/apt.log" 2>&1 ||
    { cat "$T/apt.log" >&2; echo "FATAL: apt-get install qemu-user-static failed" >&2; exit 1; }
fi
[ -e /proc/sys/fs/binfmt_misc/register ] ||
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
  { echo "FATAL: cannot mount binfmt_misc" >&2; exit 1; }
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register ||
    { echo "FATAL: cannot register qemu-aarch64 with binfmt_misc" >&2; exit 1; }
fi

# Debian's static busybox for arm64 (a package download through apt-get, cached).
home=$(getent passwd "$(id -u)" | cut -d: -f6)
cache=${FARM_TEST_CACHE:-$home/.cache/farm-tests}
bb=$cache/busybox-static-arm64
if [ ! -s "$bb" ]; then
  mkdir -p "$cache" "$T/deb"
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -q >"$T/apt.log" 2>&1
  (cd "$T/deb" && apt-get download busybox-static:arm64 >>"$T/apt.log" 2>&1) ||
    { cat "$T/apt.log" >&2; echo "FATAL: apt-get download busybox-static:arm64 failed" >&2; exit 1; }
  dpkg-deb -x "$T"/deb/busybox-static_*_arm64.deb "$T/deb/x"
  cp "$T/deb/x/bin/busybox" "$bb.tmp" && mv "$bb.tmp" "$bb"
fi

ctx=$T/ctx
mkdir -p "$ctx"
cp "$bb" "$ctx/busybox"
cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /arch"]
CMD ["/bin/busybox", "cat", "/arch"]
DF
check "farm build --platform linux/arm64 runs its RUN step emulated" \
  sh -c "'$FARM' build -q --platform linux/arm64 -t arm:1 '$ctx' >'$T/build.log' 2>&1"
check "the RUN step saw aarch64" sh -c "[ \"\$('$FARM' run --rm --platform linux/arm64 arm:1)\" = aarch64 ]"
check "farm run of an arm64 command answers aarch64" \
  sh -c "[ \"\$('$FARM' run --rm --platform linux/arm64 arm:1 /bin/busybox uname -m)\" = aarch64 ]"
check "the image config says arm64" \
  sh -c "'$FARM' inspect arm:1 | grep -q '\"Architecture\": \"arm64\"'"
check "farm run without --platform refuses the arm64 image" \
  sh -c "! '$FARM' run --rm arm:1 >'$T/mismatch.log' 2>&1 && grep -q 'does not match the specified platform' '$T/mismatch.log'"
"$FARM" build -q --platform linux/s390x-bogus "$ctx" >"$T/bad.log" 2>&1
rc=$?
check "an unknown platform is refused" [ "$rc" -ne 0 ]
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-sparc64 ]; then
  printf 'FROM scratch\nCOPY busybox /bin/busybox\n' >"$ctx/Dockerfile.sparc"
  "$FARM" build -q --platform linux/sparc64 -f "$ctx/Dockerfile.sparc" "$ctx" >"$T/sparc.log" 2>&1
  check "a platform without an emulator names the problem" grep -q "no emulator is known" "$T/sparc.log"
fi
finish
