#!/usr/bin/env bash
# The proof of wire compatibility: Debian's Bazel (bazel-bootstrap, 4.2.3) builds a small C++
# workspace with --remote_cache=grpc://127.0.0.1:PORT against farm-cache; after `bazel clean`
# the rebuild is served from the cache. Asserts Bazel reports remote cache hits, the rebuilt
# binary works, and farm-cache counted GetActionResult hits.
set -uo pipefail
source "$TEST_SRCDIR/farm/tests/cache/testlib.sh"

command -v bazel >/dev/null || die "bazel (Debian's bazel-bootstrap) is not installed"
WS="$T/ws"
bazel_workspace "$WS"
cat >"$WS/BUILD" <<'BUILD'
cc_library(name = "greet", srcs = ["greet.cc"], hdrs = ["greet.h"])
cc_binary(name = "hello", srcs = ["main.cc"], deps = [":greet"])
genrule(name = "banner", outs = ["banner.txt"], cmd = "echo farm > $@; echo made banner")
BUILD
cat >"$WS/greet.h" <<'SRC'
#include <string>
std::string Greeting();
SRC
cat >"$WS/greet.cc" <<'SRC'
#include "greet.h"
std::string Greeting() { return "hello from a remotely cached build"; }
SRC
cat >"$WS/main.cc" <<'SRC'
#include <iostream>
#include "greet.h"
int main() { std::cout << Greeting() << std::endl; }
SRC

start_server "$T/cache" --max-size 256M
echo "farm-cache on $ADDR"

# The inner Bazel is its own server under the test's temp dir (it does not take the lock).
inner_bazel() {
  (cd "$WS" && HOME="$T/home" bazel --output_user_root="$T/bazel-root" --max_idle_secs=60 "$@")
}
shutdown_inner() { inner_bazel shutdown >/dev/null 2>&1 || true; cleanup; }
trap shutdown_inner EXIT

FLAGS=(--remote_cache="grpc://$ADDR" --remote_timeout=60 --color=no --curses=no)
inner_bazel build //:hello //:banner "${FLAGS[@]}" >"$T/build1.log" 2>&1 ||
  die "first build failed: $(tail -30 "$T/build1.log")"
echo "first build:"; grep -E "processes|remote cache" "$T/build1.log"
"$FARM" cache stats --cache "$ADDR" --json >"$T/stats1.json" || fail "stats after build 1"
[ "$(json_field "$T/stats1.json" ac_updates)" -ge 3 ] ||
  fail "Bazel stored fewer than 3 action results: $(cat "$T/stats1.json")"

inner_bazel clean >"$T/clean.log" 2>&1 || die "bazel clean failed: $(cat "$T/clean.log")"
inner_bazel build //:hello //:banner "${FLAGS[@]}" >"$T/build2.log" 2>&1 ||
  die "rebuild failed: $(tail -30 "$T/build2.log")"
echo "rebuild:"; grep -E "processes|remote cache" "$T/build2.log"
hits=$(sed -n 's/.* \([0-9][0-9]*\) remote cache hit.*/\1/p' "$T/build2.log" | tail -1)
[ -n "$hits" ] && [ "$hits" -ge 3 ] || fail "Bazel reported no (or too few) remote cache hits"
grep -E "^INFO: [0-9]+ processes:" "$T/build2.log" | grep -qE "sandbox|[0-9]+ local" &&
  fail "the rebuild ran actions locally: $(grep processes: "$T/build2.log")"
out=$("$WS/bazel-bin/hello") || fail "the rebuilt binary does not run"
[ "$out" = "hello from a remotely cached build" ] || fail "the rebuilt binary printed \"$out\""
[ "$(cat "$WS/bazel-bin/banner.txt")" = "farm" ] || fail "banner.txt not restored"

"$FARM" cache stats --cache "$ADDR" --json >"$T/stats2.json" || fail "stats after the rebuild"
ac_hits=$(json_field "$T/stats2.json" ac_hits)
[ "$ac_hits" -ge "$hits" ] || fail "farm-cache counted $ac_hits GetActionResult hits, Bazel $hits"
echo "Bazel: $hits remote cache hits; farm-cache: $ac_hits GetActionResult hits"

finish
