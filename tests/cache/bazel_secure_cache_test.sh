#!/usr/bin/env bash
# Debian's Bazel (4.2.3) against an authenticated farm-cache on another "host", the usual ways:
# grpcs:// with --tls_certificate (the farm CA), --tls_client_certificate/--tls_client_key
# (mutual TLS: farm-cache requires client certificates) and
# --remote_header=Authorization=Bearer <token>.
#
# farm-cache runs in its own network namespace (tests/farm/netns.sh), Bazel (client and its
# server JVM) in another; nothing leaves the private /24 the test makes.
#
# Debian's Bazel needs one thing for TLS: its bundled netty has no JDK ALPN support and falls
# back to OpenSSL through netty-tcnative, whose JNI library Debian ships in
# libnetty-tcnative-jni but under a name netty does not look for. deploy/bazel-tls-setup.sh
# (README, "Bazel against a secure farm-cache") copies it where netty looks and prints the
# --host_jvm_args line; without it grpcs:// crashes Bazel with "JDK provider does not support
# ALPN protocol".
#
# Asserts: a main token builds and writes; after `bazel clean` a pr/1 token that may read main
# gets every action from the cache (remote hits, nothing run locally) and its attempt to write
# main is refused while its own scope pr/1 takes writes; no token, an expired token, a token
# signed by another key and a missing client certificate are each refused with the reason shown
# by Bazel; farm-cache counted the hits. About a minute and a half.
set -uo pipefail
source "$TEST_SRCDIR/farm/tests/cache/testlib.sh"
R="$TEST_SRCDIR/farm"

[ "$(id -u)" = 0 ] || die "this test needs root (network namespaces)"
command -v ip >/dev/null || die "ip (iproute2) is not installed"
command -v bazel >/dev/null || die "bazel (Debian's bazel-bootstrap) is not installed"

# --- Bazel's TLS: the documented setup ------------------------------------------------------
JNI="$T/jni"
JVM_ARG=$("$R/deploy/bazel-tls-setup.sh" --dir "$JNI") || die "bazel-tls-setup.sh failed"
[[ "$JVM_ARG" == "startup --host_jvm_args=-Djava.library.path=$JNI" ]] ||
  die "bazel-tls-setup.sh printed \"$JVM_ARG\""

# --- two hosts: the cache and the Bazel client ---------------------------------------------
source "$R/tests/farm/netns.sh"
P="bz$$"
NET=$(netns_random_net)
declare -A NETNS_ADDR=([cache]=2 [dev]=10)
NETNS_PREFIX=$P NETNS_NET=$NET
inns() {
  local h=$1
  shift
  ip netns exec "$P$h" "$@"
}

WS="$T/ws"
# The inner Bazel is its own server (inside the dev namespace) under the test's temp dir.
inner_bazel() {
  (cd "$WS" && HOME="$T/home" inns dev bazel --output_user_root="$T/bazel-root" \
    --max_idle_secs=120 --host_jvm_args="-Djava.library.path=$JNI" "$@")
}
# A build against farm-cache with the client certificate (configs in the workspace's .bazelrc;
# not plain `build` options, which `bazel clean` would inherit and try).
bazel_build() { inner_bazel build --config=farm --config=mtls "$@"; }
all_down() {
  inner_bazel shutdown >/dev/null 2>&1 || true
  netns_down cache dev
}
trap all_down EXIT
netns_up cache dev || die "could not make the namespaces"

TLS="$T/tls"
"$R/deploy/make-certs.sh" --dir "$TLS" --server "farm-cache=$NET.2" --client bazel \
  --client admin >"$T/certs.log" 2>&1 || die "make-certs.sh: $(cat "$T/certs.log")"
mint() { "$FARM" token mint --key "$TLS/jwt/signing.key" --ttl 1h "$@"; }
MAIN_TOKEN=$(mint --sub ci-main --read main --write main) || die "token mint"
PR_TOKEN=$(mint --sub ci-pr-1 --read main --read 'pr/*' --write pr/1) || die "token mint"
EXPIRED=$(mint --sub ci-old --read main --ttl 1s) || die "token mint"
mint --sub ops --role admin >"$T/admin.token" || die "token mint"
"$R/deploy/make-certs.sh" --dir "$T/other" >/dev/null 2>&1 || die "make-certs.sh (other)"
FORGED=$("$FARM" token mint --key "$T/other/jwt/signing.key" --ttl 1h --sub ci-main \
  --read main --write main) || die "token mint (other key)"

ADDR="$NET.2:9092"
inns cache "$FARM_CACHE" --listen "$ADDR" --dir "$T/cache" --max-size 256M \
  --tls-cert "$TLS/servers/farm-cache.crt" --tls-key "$TLS/servers/farm-cache.key" \
  --tls-client-ca "$TLS/client-cas.crt" --token-keys "$TLS/jwt/signing.pub" \
  --token-clock-skew 0s >"$T/server.out" 2>"$T/server.err" &
cache_pid=$!
deadline=$((SECONDS + 30))
until grep -q "listening on" "$T/server.out" 2>/dev/null; do
  kill -0 "$cache_pid" 2>/dev/null || die "farm-cache exited: $(cat "$T/server.err")"
  [ $SECONDS -lt $deadline ] || die "farm-cache did not start within 30s"
  sleep 0.05
done

# `farm cache stats` from the dev host as the admin (mutual TLS + admin token).
stats() {
  inns dev "$FARM" cache stats --cache "$ADDR" --json --tls-ca "$TLS/ca.crt" \
    --tls-cert "$TLS/clients/admin.crt" --tls-key "$TLS/clients/admin.key" \
    --token-file "$T/admin.token"
}

# --- the workspace ---------------------------------------------------------------------------
bazel_workspace "$WS"
cat >>"$WS/.bazelrc" <<BAZELRC
build --color=no --curses=no
build:farm --remote_cache=grpcs://$ADDR --remote_timeout=60 --tls_certificate=$TLS/ca.crt
build:mtls --tls_client_certificate=$TLS/clients/bazel.crt
build:mtls --tls_client_key=$TLS/clients/bazel.key
BAZELRC
cat >"$WS/BUILD" <<'BUILD'
cc_library(name = "greet", srcs = ["greet.cc"], hdrs = ["greet.h"])
cc_binary(name = "hello", srcs = ["main.cc"], deps = [":greet"])
genrule(name = "banner", outs = ["banner.txt"], cmd = "echo farm > $@")
BUILD
cat >"$WS/greet.h" <<'CC'
#include <string>
std::string Greeting();
CC
cat >"$WS/greet.cc" <<'CC'
#include "greet.h"
std::string Greeting() { return "hello over TLS"; }
CC
cat >"$WS/main.cc" <<'CC'
#include <iostream>
#include "greet.h"
int main() { std::cout << Greeting() << std::endl; }
CC

hits_in() { sed -n 's/.* \([0-9][0-9]*\) remote cache hit.*/\1/p' "$1" | tail -1; }

# 1. The main token builds and fills main.
bazel_build //:hello //:banner --remote_instance_name=main \
  --remote_header="Authorization=Bearer $MAIN_TOKEN" >"$T/build1.log" 2>&1 ||
  die "first build failed: $(tail -30 "$T/build1.log")"
echo "main build:"; grep -E "processes" "$T/build1.log"
stats >"$T/stats1.json" || fail "admin stats after build 1: $(cat "$T/stats1.json")"
updates1=$(json_field "$T/stats1.json" ac_updates)
[ "${updates1:-0}" -ge 3 ] || fail "main stored fewer than 3 action results: $(cat "$T/stats1.json")"

# 2. After a clean, the pr/1 token reads main: everything from the cache, nothing local.
inner_bazel clean >>"$T/clean.log" 2>&1 || fail "bazel clean: $(tail -5 "$T/clean.log")"
bazel_build //:hello //:banner --remote_instance_name=main \
  --remote_header="Authorization=Bearer $PR_TOKEN" >"$T/build2.log" 2>&1 ||
  die "pr/1 build of main failed: $(tail -30 "$T/build2.log")"
echo "pr/1 reading main:"; grep -E "processes" "$T/build2.log"
hits=$(hits_in "$T/build2.log")
[ -n "$hits" ] && [ "$hits" -ge 3 ] || fail "no (or too few) remote cache hits over TLS: $hits"
grep -E "^INFO: [0-9]+ processes:" "$T/build2.log" | grep -qE "[0-9]+ (local|linux-sandbox|processwrapper-sandbox)" &&
  fail "the rebuild ran actions locally: $(grep processes: "$T/build2.log")"
[ "$("$WS/bazel-bin/hello")" = "hello over TLS" ] || fail "the binary from the cache does not run"

# 3. The pr/1 token may not write main: a new action's result is refused, main is unchanged.
echo 'genrule(name = "pr", outs = ["pr.txt"], cmd = "echo pr > $@")' >>"$WS/BUILD"
stats >"$T/stats2.json"
bazel_build //:pr --remote_instance_name=main \
  --remote_header="Authorization=Bearer $PR_TOKEN" >"$T/build3.log" 2>&1 ||
  fail "pr/1 build of a new target against main failed: $(tail -20 "$T/build3.log")"
grep -q "WARNING: Writing to Remote Cache" "$T/build3.log" ||
  fail "Bazel reported no refused write to main: $(tail -20 "$T/build3.log")"
stats >"$T/stats3.json"
[ "$(json_field "$T/stats3.json" ac_updates)" = "$(json_field "$T/stats2.json" ac_updates)" ] ||
  fail "a pr/1 token wrote main's action cache"
#    ... and its own scope takes the write.
inner_bazel clean >>"$T/clean.log" 2>&1 || fail "bazel clean: $(tail -5 "$T/clean.log")"
bazel_build //:pr --remote_instance_name=pr/1 \
  --remote_header="Authorization=Bearer $PR_TOKEN" >"$T/build4.log" 2>&1 ||
  fail "pr/1 build in pr/1 failed: $(tail -20 "$T/build4.log")"
grep -q "WARNING: Writing to Remote Cache" "$T/build4.log" && fail "pr/1 could not write pr/1"
stats >"$T/stats4.json"
[ "$(json_field "$T/stats4.json" ac_updates)" -gt "$(json_field "$T/stats3.json" ac_updates)" ] ||
  fail "pr/1's write to its own scope was not stored"

# 4. Refusals, each with its reason in Bazel's output, and no hits.
refused() {  # refused NAME PATTERN BAZEL-FLAGS...
  local name=$1 want=$2
  shift 2
  inner_bazel clean >>"$T/clean.log" 2>&1 || fail "bazel clean: $(tail -5 "$T/clean.log")"
  inner_bazel build --config=farm //:hello --remote_instance_name=main "$@" \
    >"$T/refused-$name.log" 2>&1
  grep -qE "$want" "$T/refused-$name.log" ||
    fail "$name: Bazel did not show \"$want\": $(grep -m3 -E "WARNING|ERROR" "$T/refused-$name.log")"
  local h
  h=$(hits_in "$T/refused-$name.log")
  [ -z "$h" ] || [ "$h" -eq 0 ] || fail "$name: got $h remote cache hits"
}
# (With a client certificate but no token the caller is known, so: PERMISSION_DENIED.)
refused no-token "PERMISSION_DENIED: .*needs a bearer token; the caller is certificate CN=bazel" \
  --config=mtls
sleep 1.1  # the 1 s token has expired (farm-cache runs with --token-clock-skew 0s)
refused expired "UNAUTHENTICATED: .*expired" --config=mtls \
  --remote_header="Authorization=Bearer $EXPIRED"
refused forged "UNAUTHENTICATED: .*(signature|unknown key|no key)" --config=mtls \
  --remote_header="Authorization=Bearer $FORGED"
# Without a client certificate the TLS handshake itself fails (farm-cache requires one): Bazel
# 4.2.3 only says "Failed to query remote execution capabilities: null" and stops; farm-cache
# logs the reason.
refused no-client-cert "Failed to query remote execution capabilities" \
  --remote_header="Authorization=Bearer $MAIN_TOKEN"
grep -q "peer did not return a certificate" "$T/server.err" ||
  fail "farm-cache did not log the handshake without a client certificate"

stats >"$T/stats5.json"
ac_hits=$(json_field "$T/stats5.json" ac_hits)
[ "${ac_hits:-0}" -ge "${hits:-1}" ] || fail "farm-cache counted $ac_hits hits, Bazel $hits"
echo "Bazel over mutual TLS with a token: $hits remote cache hits; farm-cache: $ac_hits"
finish
