# Shared by the tests that run arm64 steps under QEMU user emulation (sourced; needs root):
#   ensure_qemu_aarch64 LOGDIR   installs qemu-user-static if missing and registers QEMU's
#                                aarch64 handler with binfmt_misc if it is not (it stays
#                                registered: it is the host's configuration, as Debian leaves it)
#   arm64_busybox DEST LOGDIR    copies Debian's static busybox for arm64 to DEST (downloaded once
#                                with apt-get into ~/.cache/farm-tests, or $FARM_TEST_CACHE)
# Both print what failed and return non-zero.

ensure_qemu_aarch64() {
  local logdir=$1
  if [ ! -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] && ! command -v qemu-aarch64-static >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static >"$logdir/apt.log" 2>&1 ||
      { cat "$logdir/apt.log" >&2; echo "FATAL: apt-get install qemu-user-static failed" >&2; return 1; }
  fi
  [ -e /proc/sys/fs/binfmt_misc/register ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
    { echo "FATAL: cannot mount binfmt_misc" >&2; return 1; }
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register ||
      { echo "FATAL: cannot register qemu-aarch64 with binfmt_misc" >&2; return 1; }
  fi
}

arm64_busybox() {
  local dest=$1 logdir=$2
  local home cache bb
  home=$(getent passwd "$(id -u)" | cut -d: -f6)
  cache=${FARM_TEST_CACHE:-$home/.cache/farm-tests}
  bb=$cache/busybox-static-arm64
  if [ ! -s "$bb" ]; then
    mkdir -p "$cache" "$logdir/deb"
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -q >"$logdir/apt.log" 2>&1
    (cd "$logdir/deb" && apt-get download busybox-static:arm64 >>"$logdir/apt.log" 2>&1) ||
      { cat "$logdir/apt.log" >&2; echo "FATAL: apt-get download busybox-static:arm64 failed" >&2; return 1; }
    dpkg-deb -x "$logdir"/deb/busybox-static_*_arm64.deb "$logdir/deb/x" || return 1
    cp "$logdir/deb/x/bin/busybox" "$bb.tmp" && mv "$bb.tmp" "$bb" || return 1
  fi
  cp "$bb" "$dest"
}
