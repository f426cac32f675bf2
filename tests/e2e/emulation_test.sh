#!/usr/bin/env bash
# Another architecture under QEMU user emulation (issue 15): an arm64 busybox image built with
# `farm build --platform linux/arm64` whose RUN step runs emulated (`uname -m` = aarch64 inside
# the sandbox), run with `farm run --platform linux/arm64`; the image config says arm64; a
# platform with no emulator registered is a clear error naming what to install.
# Needs root. Installs what it needs with apt-get (qemu-user-static; the arm64 busybox-static
# package, downloaded once into ~/.cache/farm-tests) and registers QEMU's aarch64 handler with
# binfmt_misc if it is not (it stays registered: it is the host's configuration).
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
source "$TEST_SRCDIR/farm/tests/e2e/qemu_arm64.sh"
[ "$(id -u)" = 0 ] || { echo "FATAL: needs root" >&2; exit 1; }

ensure_qemu_aarch64 "$T" || exit 1

ctx=$T/ctx
mkdir -p "$ctx"
arm64_busybox "$ctx/busybox" "$T" || exit 1
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
