#!/usr/bin/env bash
# Debian's Bazel (4.2.3) as a client of a ServerAuth server the usual ways:
# --remote_header=Authorization=Bearer <token>, and grpcs:// with --tls_certificate (the farm
# CA) and --tls_client_certificate/--tls_client_key (mutual TLS). The server is
# //auth/testing:reapi_probe_server (an in-memory REAPI cache with farm-cache's intended rules,
# printing who made each call), so this proves the auth layer with Bazel before farm-cache is
# wired.
#
# Finding: Debian's Bazel cannot speak TLS to a remote cache at all. Its bundled netty
# (/usr/share/bazel/A-server.jar) has ALPN patched out, and grpcs:// crashes the Bazel server
# ("Failed to init TLS infrastructure: JDK provider does not support ALPN protocol"). So the
# token checks run over plaintext grpc:// on loopback (a ServerAuth server takes tokens there),
# and the TLS part runs only if this Bazel can do TLS, else it says so and is skipped.
#
# Asserts: remote cache hits after a clean; the calls carry the token's subject; a token that
# may read "main" but not write it gets its writes refused and its reads served; without a
# token nothing but GetCapabilities, and Bazel shows the server's reason. About a minute.
set -uo pipefail
R="$TEST_SRCDIR/farm"
T="$TEST_TMPDIR"
PROBE="$R/auth/testing/reapi_probe_server"
TOKEN_TOOL="$R/auth/farm-token"
failures=0
PID=""
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
die() { echo "FATAL: $*" >&2; exit 1; }

command -v bazel >/dev/null || die "bazel (Debian's bazel-bootstrap) is not installed"
SRC=$(cd "$(dirname "$(readlink -f "$R/deploy/make-certs.sh")")/.." && pwd)
[ -f "$SRC/third_party/rules_cc/WORKSPACE" ] || die "cannot find third_party/ from $SRC"

"$R/deploy/make-certs.sh" --dir "$T/tls" --server farm-cache=localhost,127.0.0.1 \
  --client bazel >"$T/certs.log" 2>&1 || die "make-certs.sh: $(cat "$T/certs.log")"
mint() { "$TOKEN_TOOL" mint --key "$T/tls/jwt/signing.key" --ttl 1h "$@"; }
TOKEN=$(mint --sub bazel-ci --read main --read 'pr/*' --write 'pr/1') || die "farm-token mint"

# start_probe LOG FLAGS...: the probe server on a free loopback port; sets PORT and PID.
start_probe() {
  local log=$1
  shift
  "$PROBE" --listen 127.0.0.1:0 --token-keys "$T/tls/jwt/signing.pub" "$@" >"$log" 2>&1 &
  PID=$!
  local deadline=$((SECONDS + 30))
  until grep -q "listening on port" "$log"; do
    kill -0 "$PID" 2>/dev/null || die "probe server exited: $(cat "$log")"
    [ $SECONDS -lt $deadline ] || die "probe server did not start"
    sleep 0.05
  done
  PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$log")
}
stop_probe() { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""; }

WS="$T/ws"
mkdir -p "$WS/third_party" "$T/home"
for repo in rules_cc rules_java remote_coverage_tools; do cp -r "$SRC/third_party/$repo" "$WS/third_party/"; done
cat >"$WS/WORKSPACE" <<'W'
workspace(name = "hello")
local_repository(name = "rules_cc", path = "third_party/rules_cc")
local_repository(name = "rules_java", path = "third_party/rules_java")
local_repository(name = "remote_coverage_tools", path = "third_party/remote_coverage_tools")
W
cat >"$WS/.bazelrc" <<'B'
build --nosandbox_debug
build --experimental_repository_disable_download
build --incompatible_strict_action_env
B
cat >"$WS/BUILD" <<'B'
genrule(name = "a", outs = ["a.txt"], cmd = "echo a > $@")
genrule(name = "b", srcs = [":a"], outs = ["b.txt"], cmd = "cat $< > $@; echo b >> $@")
B

inner_bazel() { (cd "$WS" && HOME="$T/home" bazel --output_user_root="$T/bazel-root" --max_idle_secs=60 "$@"); }
cleanup() {
  inner_bazel shutdown >/dev/null 2>&1 || true
  [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
}
trap cleanup EXIT

start_probe "$T/server.log"
PLAIN=(--remote_cache="grpc://127.0.0.1:$PORT" --remote_timeout=30 --color=no --curses=no)
AUTH=(--remote_header="Authorization=Bearer $TOKEN")

# 1. A pr/1 build: written to the cache, then served from it after a clean.
inner_bazel build //:b "${PLAIN[@]}" "${AUTH[@]}" --remote_instance_name=pr/1 \
  >"$T/build1.log" 2>&1 || die "first build failed: $(tail -30 "$T/build1.log")"
inner_bazel clean >/dev/null 2>&1
inner_bazel build //:b "${PLAIN[@]}" "${AUTH[@]}" --remote_instance_name=pr/1 \
  >"$T/build2.log" 2>&1 || die "rebuild failed: $(tail -30 "$T/build2.log")"
grep -qE "[0-9]+ remote cache hit" "$T/build2.log" ||
  fail "no remote cache hits: $(grep processes "$T/build2.log")"
grep -q 'UpdateActionResult instance="pr/1" by token sub=bazel-ci' "$T/server.log" ||
  fail "no UpdateActionResult by the token's subject"
grep -q 'GetActionResult instance="pr/1" by token sub=bazel-ci' "$T/server.log" ||
  fail "no GetActionResult by the token's subject"

# 2. The same token may read main but not write it: Bazel builds, its writes are refused.
inner_bazel clean >/dev/null 2>&1
echo 'genrule(name = "c", outs = ["c.txt"], cmd = "echo c > $@")' >>"$WS/BUILD"
inner_bazel build //:c "${PLAIN[@]}" "${AUTH[@]}" --remote_instance_name=main \
  >"$T/build3.log" 2>&1 || die "main build failed: $(tail -30 "$T/build3.log")"
grep -q 'instance="main" refused: bazel-ci may not write scope "main"' "$T/server.log" ||
  fail "writing main was not refused"
grep -q 'GetActionResult instance="main" by token sub=bazel-ci' "$T/server.log" ||
  fail "reading main was not allowed"
# (Bazel sums up refused ByteStream uploads as "N errors during bulk transfer".)
grep -q "WARNING: Writing to Remote Cache" "$T/build3.log" || fail "Bazel reported no failed write"

# 3. No token: refused before any handler (so the probe logs nothing), Bazel says why.
inner_bazel clean >/dev/null 2>&1
inner_bazel build //:b "${PLAIN[@]}" --remote_instance_name=pr/1 >"$T/build4.log" 2>&1
grep -q "UNAUTHENTICATED: .* needs a bearer token" "$T/build4.log" ||
  fail "Bazel without a token did not show why it was refused"
grep -qE "[1-9][0-9]* remote cache hit" "$T/build4.log" && fail "a build without a token got hits"
stop_probe

# 4. TLS, if this Bazel can: grpcs:// with the farm CA, a client certificate and the token.
start_probe "$T/server-tls.log" --tls-cert "$T/tls/servers/farm-cache.crt" \
  --tls-key "$T/tls/servers/farm-cache.key" --tls-client-ca "$T/tls/client-cas.crt"
TLS=(--remote_cache="grpcs://localhost:$PORT" --remote_timeout=30 --color=no --curses=no
  --tls_certificate="$T/tls/ca.crt" --tls_client_certificate="$T/tls/clients/bazel.crt"
  --tls_client_key="$T/tls/clients/bazel.key")
inner_bazel clean >/dev/null 2>&1
inner_bazel build //:b "${TLS[@]}" "${AUTH[@]}" --remote_instance_name=pr/1 >"$T/build5.log" 2>&1
if grep -q "does not support ALPN" "$T/build5.log" "$T"/bazel-root/*/java.log 2>/dev/null; then
  echo "SKIPPED TLS: this Bazel cannot speak TLS to a remote cache (its netty has no ALPN):"
  grep -m1 -ho "Failed to init TLS infrastructure[^\"]*" "$T/build5.log" "$T"/bazel-root/*/java.log
  inner_bazel shutdown >/dev/null 2>&1  # it crashed; start afresh if anything follows
else
  grep -q 'UpdateActionResult instance="pr/1" by token sub=bazel-ci .*certificate CN=bazel' \
    "$T/server-tls.log" || fail "TLS: no UpdateActionResult by the token over the certificate"
fi
stop_probe

echo "--- calls the probe saw (plaintext)"
sed -n 's/^call //p' "$T/server.log" | sed 's/ by .*//; s/ refused.*/ refused/' | sort | uniq -c
echo "$failures failures"
[ "$failures" -eq 0 ]
