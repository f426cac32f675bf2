# QEMU user emulation for the tests that build or run another architecture (sourced after a
# test library that defines $T). Needs root.
#   qemu_aarch64_setup     installs qemu-user-static if missing, mounts binfmt_misc, registers
#                          qemu-aarch64 if it is not; remembers whether it registered it
#   qemu_aarch64_release   removes the registration if qemu_aarch64_setup made it (call it from
#                          the test's EXIT trap: a test leaves the host's binfmt_misc as it was)
#   arm64_busybox          prints the path of Debian's static busybox for arm64 (apt-get
#                          download, cached in ~/.cache/farm-tests)
# Tests that use it are tagged exclusive: another one releasing the registration mid-run would
# break them.
qemu_registered_here=0

qemu_aarch64_setup() {
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
    qemu_registered_here=1
  fi
}

qemu_aarch64_release() {
  if [ "$qemu_registered_here" = 1 ] && [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64 || echo "WARNING: could not remove qemu-aarch64" >&2
    qemu_registered_here=0
  fi
}

arm64_busybox() {
  local home cache bb
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
  echo "$bb"
}
