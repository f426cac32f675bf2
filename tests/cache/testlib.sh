# Shared by the cache's shell tests: locating binaries, starting farm-cache, failing clearly.
# Sourced; expects TEST_SRCDIR and TEST_TMPDIR (set by `bazel test`).

FARM_CACHE="$TEST_SRCDIR/farm/cache/server/farm-cache"
FARM="$TEST_SRCDIR/farm/cli/farm"
T="$TEST_TMPDIR"
failures=0
SERVER_PID=""

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

die() {
  echo "FATAL: $*" >&2
  exit 1
}

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
}
trap cleanup EXIT

# start_server DIR [FLAGS...]: starts farm-cache on a free loopback port; sets ADDR and
# SERVER_PID. Waits (with a deadline) for the line that names the bound address.
start_server() {
  local dir=$1
  shift
  # Remove the previous server's output first: the redirection below happens in the child, so
  # without this the loop could read the old "listening on" line and connect to a dead port.
  rm -f "$T/server.out" "$T/server.err"
  "$FARM_CACHE" --listen 127.0.0.1:0 --dir "$dir" "$@" >"$T/server.out" 2>"$T/server.err" &
  SERVER_PID=$!
  local deadline=$((SECONDS + 30))
  until grep -q "listening on" "$T/server.out" 2>/dev/null; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "farm-cache exited: $(cat "$T/server.err")"
    [ $SECONDS -lt $deadline ] || die "farm-cache did not start within 30s"
    sleep 0.05
  done
  ADDR=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$T/server.out")
  [ -n "$ADDR" ] || die "no address in: $(cat "$T/server.out")"
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID"
  local rc=$?
  SERVER_PID=""
  return $rc
}

# expect_error NAME RC SUBSTRING CMD...: CMD must exit with RC and print exactly one line on
# stderr containing SUBSTRING.
expect_error() {
  local name=$1 want_rc=$2 want=$3
  shift 3
  "$@" >"$T/cmd.out" 2>"$T/cmd.err"
  local rc=$?
  [ "$rc" -eq "$want_rc" ] || fail "$name: exit status $rc, want $want_rc ($(cat "$T/cmd.err"))"
  [ "$(wc -l <"$T/cmd.err")" -eq 1 ] || fail "$name: stderr is not one line: $(cat "$T/cmd.err")"
  grep -qF -- "$want" "$T/cmd.err" || fail "$name: stderr lacks \"$want\": $(cat "$T/cmd.err")"
}

# json_field FILE KEY: the integer value of "KEY": N in FILE (first match).
json_field() {
  sed -n "s/.*\"$2\": \([0-9-]*\).*/\1/p" "$1" | head -1
}

# bazel_workspace DIR: an offline Bazel workspace in DIR with the stub repositories of this
# source tree (third_party/rules_cc, rules_java, remote_coverage_tools), a WORKSPACE naming them
# and a .bazelrc that keeps Bazel offline and quiet (callers append to it); $T/home is created
# for the inner Bazel's HOME.
bazel_workspace() {
  local ws=$1 src repo
  # The source tree (runfiles are symlinks into it): the offline stub repositories come from it.
  src=$(cd "$(dirname "$(readlink -f "$TEST_SRCDIR/farm/tests/cache/testlib.sh")")/../.." && pwd)
  [ -f "$src/third_party/rules_cc/WORKSPACE" ] || die "cannot find third_party/ from $src"
  mkdir -p "$ws/third_party" "$T/home"
  for repo in rules_cc rules_java remote_coverage_tools; do
    cp -r "$src/third_party/$repo" "$ws/third_party/"
  done
  cat >"$ws/WORKSPACE" <<'WORKSPACE'
workspace(name = "hello")
local_repository(name = "rules_cc", path = "third_party/rules_cc")
local_repository(name = "rules_java", path = "third_party/rules_java")
local_repository(name = "remote_coverage_tools", path = "third_party/remote_coverage_tools")
WORKSPACE
  cat >"$ws/.bazelrc" <<'BAZELRC'
build --nosandbox_debug
build --experimental_repository_disable_download
build --incompatible_strict_action_env
BAZELRC
}

finish() {
  if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
  fi
  echo "PASS"
}
