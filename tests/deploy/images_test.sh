#!/usr/bin/env bash
# The server images, built by farm itself: deploy/images/build.sh makes the debootstrap base
# (its tarball cached in ~/.cache/farm, so only the first run downloads from the apt mirror)
# and builds farm-cache, farm-scheduler and farm-worker from deploy/images/*.Dockerfile; then
# `farm run` runs each image's binary with --help (it must print what the binary prints
# outside the image: every shared library resolved in the image) and checks what each image
# carries: users, nft for the worker, make-certs.sh for the worker's enrollment.
set -uo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
R="$TEST_SRCDIR/farm"
FARM="$R/cli/farm"
T="$TEST_TMPDIR"
export FARM_HOME="$T/home"
home=$(getent passwd "$(id -u)" | cut -d: -f6)
cache=${FARM_IMAGE_CACHE:-${home:-$T}/.cache/farm}
declare -A bin=(
  [farm-cache]="$R/cache/server/farm-cache"
  [farm-scheduler]="$R/scheduler/server/farm-scheduler"
  [farm-worker]="$R/worker/agent/farm-worker"
)
failures=0
checks=0
check() {
  local what=$1
  shift
  checks=$((checks + 1))
  if ! "$@"; then echo "FAIL: $what" >&2; failures=$((failures + 1)); fi
}

start=$(date +%s)
if ! "$R/deploy/images/build.sh" --farm "$FARM" --tag test --cache "$cache" \
  --farm-cache "${bin[farm-cache]}" --farm-scheduler "${bin[farm-scheduler]}" \
  --farm-worker "${bin[farm-worker]}" >"$T/build.log" 2>&1; then
  tail -40 "$T/build.log" >&2
  echo "FATAL: deploy/images/build.sh failed" >&2
  exit 1
fi
echo "images built in $(($(date +%s) - start)) s"
"$FARM" images

for name in farm-cache farm-scheduler farm-worker; do
  "${bin[$name]}" --help >"$T/$name.want" 2>&1
  check "$name: farm run $name:test --help exits 0" \
    "$FARM" run "$name:test" --help >"$T/$name.got" 2>&1
  check "$name: the image's --help is the binary's" diff -u "$T/$name.want" "$T/$name.got"
  check "$name: its help starts with its usage" grep -q "^Usage:  $name " "$T/$name.got"
  # Every shared library the binary needs is in the image (not only those --help touches).
  "$FARM" run --entrypoint ldd "$name:test" "/usr/local/bin/$name" >"$T/$name.ldd" 2>&1
  check "$name: ldd in the image resolves every library" \
    bash -c "grep -q libc.so.6 '$T/$name.ldd' && ! grep 'not found' '$T/$name.ldd'"
  check "$name: is Debian 12" test \
    "$("$FARM" run --entrypoint cat "$name:test" /etc/debian_version | cut -d. -f1)" = 12
done
check "farm-cache runs as uid 10001" test "$("$FARM" run --entrypoint id "farm-cache:test" -u)" = 10001
check "farm-scheduler runs as uid 10001" \
  test "$("$FARM" run --entrypoint id "farm-scheduler:test" -u)" = 10001
check "farm-cache's --dir is the farm user's" test \
  "$("$FARM" run --entrypoint stat farm-cache:test -c %U:%a /var/lib/farm-cache)" = farm:700
check "farm-worker runs as root" test "$("$FARM" run --entrypoint id "farm-worker:test" -u)" = 0
check "farm-worker has farm-sandbox (its RUN steps' runner) next to it" \
  "$FARM" run --entrypoint /bin/sh farm-worker:test -c 'test -x /usr/local/bin/farm-sandbox'
check "farm-worker has nft (step networks)" \
  "$FARM" run --entrypoint nft farm-worker:test --version
# The init container of deploy/k8s/farm-worker.yaml: a worker certificate from the worker CA.
"$R/deploy/make-certs.sh" --dir "$T/tls" >/dev/null
"$FARM" run --entrypoint /bin/sh -e POD_NAME=farm-worker-5d8f-x2x9q farm-worker:test -ec "
  d=\$(mktemp -d)
  echo '$(base64 -w0 "$T/tls/worker-ca.crt")' | base64 -d > \$d/worker-ca.crt
  echo '$(base64 -w0 "$T/tls/worker-ca.key")' | base64 -d > \$d/worker-ca.key
  farm-make-certs --dir \$d --worker \$POD_NAME --days 30 >/dev/null
  cat \$d/workers/\$POD_NAME.crt" >"$T/enrolled.crt" 2>"$T/enroll.log"
check "the worker image enrolls a pod (certificate CN = pod name, from the worker CA)" \
  bash -c "openssl verify -CAfile '$T/tls/worker-ca.crt' '$T/enrolled.crt' >/dev/null &&
    openssl x509 -in '$T/enrolled.crt' -noout -subject | grep -q 'CN *= *farm-worker-5d8f-x2x9q'" ||
  cat "$T/enroll.log" >&2
# Again: every Dockerfile step of the three images (and the base's ADD) is a cache hit.
"$R/deploy/images/build.sh" --farm "$FARM" --tag test --cache "$cache" \
  --farm-cache "${bin[farm-cache]}" --farm-scheduler "${bin[farm-scheduler]}" \
  --farm-worker "${bin[farm-worker]}" >"$T/build2.log" 2>&1
steps=$(grep -cE '^#[0-9]+ \[[0-9]+/[0-9]+\] ' "$T/build2.log")
cached=$(grep -cE '^#[0-9]+ CACHED$' "$T/build2.log")
check "a second build is all cached ($cached of $steps steps)" test "$steps" -gt 0 -a "$cached" = "$steps"
echo "$checks checks, $failures failed ($(($(date +%s) - start)) s)"
[ "$failures" -eq 0 ] && [ "$checks" -gt 0 ]
