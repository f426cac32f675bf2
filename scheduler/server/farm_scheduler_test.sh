#!/bin/bash
# farm-scheduler's binary: flag errors, a port in use, a state directory in use, an unreachable
# farm-cache (logged, not fatal), and a clean SIGTERM.
set -uo pipefail
S="$TEST_SRCDIR/farm/scheduler/server/farm-scheduler"
T="$TEST_TMPDIR"
failures=0
checks=0
check() {
  local what=$1
  shift
  checks=$((checks + 1))
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; failures=$((failures + 1)); fi
}
# expect_error CODE TEXT ARGS...: exits CODE and says TEXT on stderr.
expect_error() {
  local code=$1 text=$2
  shift 2
  "$S" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  check "farm-scheduler $* exits $code (got $rc)" [ "$rc" -eq "$code" ]
  check "farm-scheduler $* says \"$text\"" grep -qF -- "$text" "$T/err"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$S" --help >"$T/help" 2>&1
check "--help lists --lease-timeout" grep -q -- "--lease-timeout" "$T/help"
expect_error 2 "unknown flag: --bogus" --bogus
expect_error 2 "--cache is required" --dir "$T/d"
expect_error 2 "--dir is required" --cache 127.0.0.1:1
expect_error 2 "--lease-timeout must be longer than --heartbeat-interval" --cache 127.0.0.1:1 \
  --dir "$T/d" --heartbeat-interval 5 --lease-timeout 2
expect_error 2 "want a duration" --cache 127.0.0.1:1 --dir "$T/d" --lease-timeout soon
expect_error 2 "the weight must be a positive number" --cache 127.0.0.1:1 --dir "$T/d" \
  --tenant-weight team=0
expect_error 2 "unexpected argument" --cache 127.0.0.1:1 --dir "$T/d" extra

# A port in use.
port=$(free_port)
python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen(); time.sleep(30)" &
holder=$!
sleep 0.5
"$S" --cache 127.0.0.1:1 --dir "$T/p" --listen "127.0.0.1:$port" >"$T/out" 2>"$T/err"
rc=$?
kill "$holder" 2>/dev/null
check "a port in use is an error (exit $rc)" [ "$rc" -ne 0 ]
check "a port in use names the address" grep -q "127.0.0.1:$port" "$T/err"

# Running: an unreachable farm-cache is logged, not fatal; a second scheduler on the same
# --dir is refused; SIGTERM stops it within seconds with status 0.
"$S" --cache 127.0.0.1:1 --dir "$T/run" --listen 127.0.0.1:0 >"$T/run.out" 2>"$T/run.err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$T/run.out" && break; sleep 0.1; done
check "it prints the bound address" grep -qE "listening on 127.0.0.1:[0-9]+" "$T/run.out"
for _ in $(seq 100); do grep -q "unreachable" "$T/run.err" && break; sleep 0.1; done
check "an unreachable farm-cache is logged" grep -q "farm-cache at 127.0.0.1:1 is unreachable" \
  "$T/run.err"
check "and it keeps running" kill -0 "$pid"
"$S" --cache 127.0.0.1:1 --dir "$T/run" --listen 127.0.0.1:0 >"$T/second.out" 2>"$T/second.err"
rc=$?
check "a second scheduler on the same --dir is refused (exit $rc)" [ "$rc" -ne 0 ]
check "the refusal names the directory" grep -qF "$T/run" "$T/second.err"
t0=$(date +%s%N)
kill -TERM "$pid"
wait "$pid"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "SIGTERM exits 0 (got $rc)" [ "$rc" -eq 0 ]
check "SIGTERM stops it within 3 s (${ms} ms)" [ "$ms" -lt 3000 ]

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ] && [ "$checks" -gt 0 ]
