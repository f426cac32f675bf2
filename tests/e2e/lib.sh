# Shared by the end-to-end shell tests of `farm build` (sourced). Each test gets its own
# FARM_HOME in $TEST_TMPDIR, builds the busybox base image with farm itself, and reports every
# failed check (the test fails if any did).
set -uo pipefail

# Bazel's strict test environment has no sbin directories in PATH (debootstrap lives there).
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
FARM="$TEST_SRCDIR/farm/cli/farm"
T="$TEST_TMPDIR"
export FARM_HOME="$T/home"
failures=0
checks=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# check DESCRIPTION CMD...: runs CMD; a non-zero status is a failed check.
check() {
  local what=$1
  shift
  checks=$((checks + 1))
  if ! "$@"; then fail "$what"; fi
}

finish() {
  echo "$checks checks, $failures failed"
  [ "$failures" -eq 0 ] || exit 1
  [ "$checks" -gt 0 ] || { echo "no checks ran" >&2; exit 1; }
}

# json FILE PYTHON_EXPR: evaluates EXPR with `j` bound to the parsed JSON of FILE.
json() {
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

# busybox_base: builds busybox:farm-example (FROM scratch + Debian's static busybox).
busybox_base() {
  "$TEST_SRCDIR/farm/tests/examples/busybox-base.sh" "$FARM" >"$T/base.log" 2>&1 ||
    { cat "$T/base.log" >&2; echo "FATAL: could not build the busybox base" >&2; exit 1; }
}

# start_registry: Debian's docker-registry on a random loopback port, its data in $T/registry;
# sets port and reg_pid (the caller's EXIT trap kills it) and returns once it answers.
start_registry() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$T/registry/data"
  cat >"$T/registry/config.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $T/registry/data}}
http: {addr: 127.0.0.1:$port}
YML
  /usr/bin/docker-registry serve "$T/registry/config.yml" >"$T/registry/log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "FATAL: the registry did not start: $(cat "$T/registry/log")" >&2
  exit 1
}

# build NAME CONTEXT [FLAGS...]: farm build with plain progress into $T/NAME.log.
build() {
  local name=$1 ctx=$2
  shift 2
  if ! "$FARM" build --progress=plain "$@" "$ctx" >"$T/$name.out" 2>"$T/$name.log"; then
    echo "--- farm build $* $ctx failed; the end of its output:" >&2
    tail -25 "$T/$name.log" >&2
    return 1
  fi
}

# cached_steps LOG / run_steps LOG: how many steps were cache hits / were executed.
cached_steps() { grep -c '^#[0-9]* CACHED$' "$1" || true; }
run_steps() {
  # A vertex that reached DONE and is a Dockerfile step ("[i/n]"), not an [internal] one.
  local log=$1
  grep -E '^#[0-9]+ \[([a-z0-9._-]+ )?[0-9]+/[0-9]+\] ' "$log" | awk '{print $1}' | sort -u |
    while read -r id; do grep -q "^$id DONE" "$log" && echo "$id"; done | wc -l
}
