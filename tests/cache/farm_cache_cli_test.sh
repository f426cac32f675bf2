#!/usr/bin/env bash
# farm-cache's startup errors (one clear line, non-zero exit, never a crash), its bound-address
# line, and `farm cache stats|gc` against it and against the embedded $FARM_HOME/cache.
set -uo pipefail
source "$TEST_SRCDIR/farm/tests/cache/testlib.sh"

start_server "$T/a" --max-size 64M
echo "serving on $ADDR"

expect_error "port in use" 1 "address already in use" "$FARM_CACHE" --listen "$ADDR" --dir "$T/b"
[ ! -e "$T/b" ] || fail "port in use: the directory was created before the port was checked"
expect_error "directory in use" 1 "in use by another process" \
  "$FARM_CACHE" --listen 127.0.0.1:0 --dir "$T/a"
touch "$T/a-file"
expect_error "unwritable directory" 1 "$T/a-file/cache" \
  "$FARM_CACHE" --listen 127.0.0.1:0 --dir "$T/a-file/cache"
expect_error "unknown flag" 2 "unknown flag: --nope" "$FARM_CACHE" --nope
expect_error "bad size" 2 "--max-size" "$FARM_CACHE" --dir "$T/c" --max-size 12Q
expect_error "no dir" 2 "--dir is required" "$FARM_CACHE" --listen 127.0.0.1:0
expect_error "bad listen address" 1 "listen address" "$FARM_CACHE" --dir "$T/c" --listen nonsense
expect_error "budget too small" 1 "below the minimum" \
  "$FARM_CACHE" --listen 127.0.0.1:0 --dir "$T/d" --max-size 1M

# Stats and gc over the admin service.
"$FARM" cache stats --cache "$ADDR" >"$T/stats.txt" || fail "farm cache stats --cache failed"
grep -q "^Max size: *67.11MB" "$T/stats.txt" || fail "stats: $(cat "$T/stats.txt")"
grep -q "^Server:" "$T/stats.txt" || fail "stats lacks the server counters: $(cat "$T/stats.txt")"
"$FARM" cache gc --cache "grpc://$ADDR" --max-size 48M --json >"$T/gc.json" || fail "gc failed"
[ "$(json_field "$T/gc.json" max_size)" = "50331648" ] || fail "gc --max-size: $(cat "$T/gc.json")"
"$FARM" cache stats --cache "$ADDR" --json >"$T/stats.json"
[ "$(json_field "$T/stats.json" max_size)" = "50331648" ] || fail "new budget not kept"
stop_server || fail "farm-cache did not exit 0 on SIGTERM"
cat "$T/server.out" "$T/server.err" | grep -q "SIGTERM, shutting down" || fail "no shutdown line"
# The budget set by gc survives a restart without --max-size.
start_server "$T/a"
"$FARM" cache stats --cache "$ADDR" --json >"$T/stats.json"
[ "$(json_field "$T/stats.json" max_size)" = "50331648" ] || fail "budget not persisted"
stop_server

# The embedded cache.
export FARM_HOME="$T/home"
"$FARM" cache stats >"$T/local.txt" || fail "local stats failed"
grep -q "^Cache: *$T/home/cache" "$T/local.txt" || fail "local stats: $(cat "$T/local.txt")"
"$FARM" cache gc --max-size 40M --json >"$T/local.json" || fail "local gc failed"
[ "$(json_field "$T/local.json" max_size)" = "41943040" ] || fail "local gc: $(cat "$T/local.json")"
expect_error "local budget too small" 1 "below the minimum" "$FARM" cache gc --max-size 1M
expect_error "unknown subcommand" 2 "unknown command \"bogus\"" "$FARM" cache bogus
expect_error "unreachable server" 1 "127.0.0.1:1" "$FARM" cache stats --cache 127.0.0.1:1

finish
