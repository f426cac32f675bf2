#!/usr/bin/env bash
# Issue 13's Tests, end to end: the probe (a static binary) runs inside RUN steps built by the
# embedded `farm build` and by a farm (farm-cache, farm-scheduler, farm-worker), each on a
# "host" of its own: network namespaces made here, joined by a bridge, in a private /24 that
# exists only inside them (tests/farm/netns.sh; nothing leaves this machine).
#
#   build  .2   the embedded `farm build`     servers on 127.0.0.1:7101 and its LAN address:7102
#   peer   .3   another host                  a server on :7103, also on 169.254.169.254 (link-local)
#   cache  .4   farm-cache; also the farm's DNS resolver (a TCP server on :53 and :7104)
#   sched  .5   farm-scheduler (--allow-entitlement security.insecure)
#   worker .6   farm-worker                   servers on 127.0.0.1:7101 and its LAN address:7102
#   client .7   farm submit
#
# In each RUN the probe reports: seccomp mode 2, Docker's capability set, mknod + open of a
# block device refused, keyctl/add_key and unshare(CLONE_NEWUSER) refused, mount refused; the
# worker host's loopback and LAN servers unreachable, the other host reachable, link-local
# refused (and, on the farm, a private range refused by default, the resolver reachable on port
# 53 only). A RUN that swaps a mount stub's parent for a symlink to a host directory leaves it
# alone. RUN --security=insecure fails at plan time without the entitlement (naming the
# Dockerfile line) and runs unconfined with it. The same destinations are reachable from the
# hosts themselves (so refusals are the sandbox's). TIOCSTI through `farm run -t` is
# tests/e2e/run_tty_test.sh.
# Rootless steps, the same assertions again: embedded (sandbox.conf `rootless-steps`, range
# 200000:65536) and on the farm (the worker restarted with --rootless-steps --subid-range
# 300000:65536): root inside with the range in uid_map/gid_map, and from the host a sleeping
# step's processes run as 200000 in a user namespace of their own. Insecure rootless: no
# seccomp and a nested user namespace allowed (so the refusal is the profile's).
set -uo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
R="$TEST_SRCDIR/farm"
FARM="$R/cli/farm"
CACHE_BIN="$R/cache/server/farm-cache"
SCHED_BIN="$R/scheduler/server/farm-scheduler"
WORKER_BIN="$R/worker/agent/farm-worker"
PROBE="$R/tests/probe/probe"
GREET="$R/tests/probe/greet.py"
T="$TEST_TMPDIR"
failures=0
checks=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
check() {
  local what=$1
  shift
  checks=$((checks + 1))
  if ! "$@"; then fail "$what"; else echo "ok: $what"; fi
}
[ "$(id -u)" = 0 ] || { echo "FATAL: this test needs root (namespaces)" >&2; exit 1; }

# shellcheck source=tests/farm/netns.sh
source "$R/tests/farm/netns.sh"
P="pr$$"
NET=$(netns_random_net)
declare -A NETNS_ADDR=([build]=2 [peer]=3 [cache]=4 [sched]=5 [worker]=6 [client]=7)
HOSTS=(build peer cache sched worker client)
NETNS_PREFIX=$P NETNS_NET=$NET
cleanup() {
  netns_down "${HOSTS[@]}"
  grep " $T/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  true
}
trap cleanup EXIT
in_ns() {
  local h=$1
  shift
  ip netns exec "$P$h" "$@"
}
netns_up "${HOSTS[@]}" || { echo "FATAL: could not make the namespaces" >&2; exit 1; }
addr() { echo "$NET.${NETNS_ADDR[$1]}"; }

# Link-local on the peer, routed to it from the two build hosts.
ip -n "${P}peer" addr add 169.254.169.254/32 dev lo
for h in build worker; do ip -n "$P$h" route add 169.254.169.254/32 via "$(addr peer)"; done
serve() {  # serve HOST ADDR PORT NAME
  in_ns "$1" python3 "$GREET" "$2" "$3" "$4" >"$T/greet-$1-$3.log" 2>&1 &
  for _ in $(seq 100); do grep -q listening "$T/greet-$1-$3.log" 2>/dev/null && return 0; sleep 0.05; done
  echo "FATAL: server $4 did not start" >&2
  exit 1
}
serve build 127.0.0.1 7101 build-loopback
serve build 0.0.0.0 7102 build-host
serve worker 127.0.0.1 7101 worker-loopback
serve worker 0.0.0.0 7102 worker-host
serve peer 0.0.0.0 7103 peer
serve cache 0.0.0.0 53 resolver-53
serve cache 0.0.0.0 7104 resolver-other

# Controls: every destination the steps are refused is reachable from their host.
for h in build worker; do
  in_ns "$h" "$PROBE" connect 127.0.0.1 7101 "$(addr "$h")" 7102 "$(addr peer)" 7103 \
    169.254.169.254 7103 "$(addr cache)" 7104 >"$T/control-$h.txt"
  check "control: from the $h host everything answers" \
    test "$(grep -c ': ok ' "$T/control-$h.txt")" = 5
done

# The build context: busybox, the probe, a RUN that reports, a RUN that swaps a stub.
ctx="$T/ctx"
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox"
cp "$PROBE" "$ctx/probe"
cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /tmp /usr/bin && /bin/busybox --install -s /bin && chmod 1777 /tmp"]
COPY probe /probe
ARG NONCE TARGETS VICTIM
RUN echo "nonce $NONCE"; /probe sandbox && /probe connect $TARGETS && cat /etc/resolv.conf
RUN --mount=type=tmpfs,target=/x/y mv /x /x.moved && ln -s "$VICTIM" /x && echo swapped
DF
cat >"$ctx/Dockerfile.insecure" <<'DF'
FROM scratch
COPY probe /probe
ARG NONCE
RUN --security=insecure ["/probe", "sandbox"]
DF
# value LOG KEY: the value the probe printed for KEY (the last one).
value() { grep -aoE "$2: .*" "$1" | tail -1 | sed "s/^$2: //"; }
host_bnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status)
# A new user namespace starts with a full bounding set, whatever this host's lacks.
all_caps=$(printf '%016x' $(((1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1)))

# expect_sandboxed WHERE LOG: the probe's sandbox report in LOG.
expect_sandboxed() {
  local where=$1 log=$2
  check "$where: seccomp mode 2 (filter)" test "$(value "$log" seccomp)" = 2
  check "$where: Docker's default capability set ($(value "$log" cap_eff))" \
    test "$(value "$log" cap_eff)" = 00000000a80425fb
  check "$where: the bounding set too" test "$(value "$log" cap_bnd)" = 00000000a80425fb
  check "$where: a block device node cannot be opened ($(value "$log" open_block))" \
    grep -q "^refused" <<<"$(value "$log" open_block)"
  check "$where: keyctl refused" grep -q "^refused" <<<"$(value "$log" keyctl)"
  check "$where: add_key refused" grep -q "^refused" <<<"$(value "$log" add_key)"
  check "$where: unshare(CLONE_NEWUSER) refused" grep -q "^refused" <<<"$(value "$log" unshare_user)"
  check "$where: mount refused" grep -q "^refused" <<<"$(value "$log" mount)"
}
# expect_network WHERE LOG HOST: the probe's connections in LOG, made from a step on HOST.
expect_network() {
  local where=$1 log=$2 h=$3
  check "$where: the worker host's 127.0.0.1 server is unreachable" \
    grep -aq "connect 127.0.0.1:7101: refused" "$log"
  check "$where: the worker host's own address is refused" \
    grep -aq "connect $(addr "$h"):7102: refused" "$log"
  check "$where: link-local (169.254.169.254) is refused" \
    grep -aq "connect 169.254.169.254:7103: refused" "$log"
}

# --- embedded: farm build on the build host ----------------------------------------------
export FARM_HOME="$T/home-build"
victim="$T/victim-build"
mkdir -p "$victim/y"
targets="127.0.0.1 7101 $(addr build) 7102 $(addr peer) 7103 169.254.169.254 7103"
if in_ns build "$FARM" build --progress=plain --build-arg NONCE=$$ --build-arg "TARGETS=$targets" \
  --build-arg "VICTIM=$victim" -t probe:embedded "$ctx" >"$T/embedded.out" 2>"$T/embedded.log"; then
  check "embedded: the build succeeded" true
else
  tail -30 "$T/embedded.log" >&2
  check "embedded: the build succeeded" false
fi
expect_sandboxed embedded "$T/embedded.log"
expect_network embedded "$T/embedded.log" build
check "embedded: the other host is reachable" \
  grep -aq "connect $(addr peer):7103: ok peer" "$T/embedded.log"
check "embedded: the symlink swap ran" grep -aq swapped "$T/embedded.log"
check "embedded: the host directory behind the swapped stub is still there" test -d "$victim/y"

# --security=insecure: the build must ask, and the embedded home must permit.
in_ns build "$FARM" build --progress=plain --build-arg NONCE=$$ -f "$ctx/Dockerfile.insecure" \
  "$ctx" >/dev/null 2>"$T/insecure-unasked.log"
check "embedded: insecure without --allow fails at plan time, naming the line" \
  grep -q "Dockerfile.insecure:4:1" "$T/insecure-unasked.log"
in_ns build "$FARM" build --progress=plain --allow security.insecure --build-arg NONCE=$$ \
  -f "$ctx/Dockerfile.insecure" "$ctx" >/dev/null 2>"$T/insecure-unpermitted.log"
check "embedded: insecure asked for but not permitted by sandbox.conf fails" \
  grep -qi "security.insecure" "$T/insecure-unpermitted.log"
echo "allow-entitlement = security.insecure" >"$FARM_HOME/sandbox.conf"
if in_ns build "$FARM" build --progress=plain --allow security.insecure --build-arg NONCE=$$ \
  -f "$ctx/Dockerfile.insecure" "$ctx" >/dev/null 2>"$T/insecure.log"; then
  check "embedded: insecure with the entitlement builds" true
else
  tail -20 "$T/insecure.log" >&2
  check "embedded: insecure with the entitlement builds" false
fi
check "embedded insecure: no seccomp filter" test "$(value "$T/insecure.log" seccomp)" = 0
check "embedded insecure: every capability ($(value "$T/insecure.log" cap_eff))" \
  test "$(value "$T/insecure.log" cap_eff)" = "$host_bnd"
rm "$FARM_HOME/sandbox.conf"

# --- embedded, rootless: the same RUNs in a user namespace mapped to 200000:65536 --------
# Differences by design (README, "Rootless steps"): mknod is refused too (rootful steps may
# make a node they cannot open); the insecure step gets every capability the kernel knows, but
# over the step's own namespaces only (a new user namespace starts with a full bounding set,
# even where this host's lacks some: the rootful insecure step gets the host's); everything
# else is asserted as rootful.
export FARM_HOME="$T/home-rootless"
mkdir -p "$FARM_HOME"
printf 'rootless-steps = true\nsubid-range = 200000:65536\nallow-entitlement = security.insecure\n' \
  >"$FARM_HOME/sandbox.conf"
victim="$T/victim-rootless"
mkdir -p "$victim/y"
targets="127.0.0.1 7101 $(addr build) 7102 $(addr peer) 7103 169.254.169.254 7103"
if in_ns build "$FARM" build --progress=plain --build-arg NONCE=$$ --build-arg "TARGETS=$targets" \
  --build-arg "VICTIM=$victim" -t probe:rootless "$ctx" >"$T/rootless.out" 2>"$T/rootless.log"; then
  check "rootless: the build succeeded" true
else
  tail -30 "$T/rootless.log" >&2
  check "rootless: the build succeeded" false
fi
check "rootless: root inside ($(value "$T/rootless.log" uid))" test "$(value "$T/rootless.log" uid)" = 0
check "rootless: uid_map is the range ($(value "$T/rootless.log" uid_map))" \
  test "$(value "$T/rootless.log" uid_map)" = "0 200000 65536"
check "rootless: gid_map too" test "$(value "$T/rootless.log" gid_map)" = "0 200000 65536"
check "embedded (rootful): no user namespace ($(value "$T/embedded.log" uid_map))" \
  test "$(value "$T/embedded.log" uid_map)" = "0 0 4294967295"
expect_sandboxed rootless "$T/rootless.log"
check "rootless: mknod refused ($(value "$T/rootless.log" mknod_block))" \
  grep -q "^refused" <<<"$(value "$T/rootless.log" mknod_block)"
expect_network rootless "$T/rootless.log" build
check "rootless: the other host is reachable" \
  grep -aq "connect $(addr peer):7103: ok peer" "$T/rootless.log"
check "rootless: the symlink swap ran" grep -aq swapped "$T/rootless.log"
check "rootless: the host directory behind the swapped stub is still there" test -d "$victim/y"
# Without seccomp a nested user namespace is allowed: the refusal above is the profile's.
if in_ns build "$FARM" build --progress=plain --allow security.insecure --build-arg NONCE=$$ \
  -f "$ctx/Dockerfile.insecure" "$ctx" >/dev/null 2>"$T/rootless-insecure.log"; then
  check "rootless: insecure with the entitlement builds" true
else
  tail -20 "$T/rootless-insecure.log" >&2
  check "rootless: insecure with the entitlement builds" false
fi
check "rootless insecure: no seccomp filter" test "$(value "$T/rootless-insecure.log" seccomp)" = 0
check "rootless insecure: still in the range" \
  test "$(value "$T/rootless-insecure.log" uid_map)" = "0 200000 65536"
check "rootless insecure: every capability the kernel has, in the namespace ($(value "$T/rootless-insecure.log" cap_eff))" \
  test "$(value "$T/rootless-insecure.log" cap_eff)" = "$all_caps"
check "rootless insecure: unshare(CLONE_NEWUSER) allowed (so seccomp refused it above)" \
  test "$(value "$T/rootless-insecure.log" unshare_user)" = allowed
check "rootless insecure: a block device node still cannot be made" \
  grep -q "^refused" <<<"$(value "$T/rootless-insecure.log" mknod_block)"

# Seen from the host, while a step sleeps: every process in its pid namespace runs as the
# range's first id, in a user namespace other than the host's.
marker="probe-rootless-sleeper-$$"
cat >"$ctx/Dockerfile.sleep" <<DF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /tmp /usr/bin && /bin/busybox --install -s /bin && chmod 1777 /tmp"]
RUN sleep 3; echo $marker
DF
in_ns build "$FARM" build --progress=plain -f "$ctx/Dockerfile.sleep" "$ctx" >/dev/null \
  2>"$T/rootless-sleep.log" &
sleeper_build=$!
step_pid=""
for _ in $(seq 200); do
  for c in /proc/[0-9]*/cmdline; do
    if grep -aq "$marker" "$c" 2>/dev/null; then
      step_pid=${c#/proc/}
      step_pid=${step_pid%/cmdline}
      break 2
    fi
  done
  sleep 0.05
done
check "rootless: the sleeping step's shell is found from the host" test -n "$step_pid"
if [ -n "$step_pid" ]; then
  step_pidns=$(readlink "/proc/$step_pid/ns/pid")
  step_procs=0 step_ids=""
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$step_pidns" ] || continue
    step_procs=$((step_procs + 1))
    step_ids+="$(awk '/^(Uid|Gid):/ {print $2, $3, $4, $5}' "$p/status" 2>/dev/null | sort -u | tr '\n' ' ')"
  done
  echo "rootless: $step_procs processes in the step's pid namespace, ids: $step_ids"
  check "rootless: the step has its own pid namespace" \
    test "$step_pidns" != "$(readlink /proc/self/ns/pid)"
  check "rootless: and its own user namespace" \
    test "$(readlink "/proc/$step_pid/ns/user")" != "$(readlink /proc/self/ns/user)"
  check "rootless: its processes ($step_procs, init and the shell at least) are found" \
    test "$step_procs" -ge 2
  check "rootless: every one runs as 200000 (uid and gid, real/effective/saved/fs)" \
    test "$(tr ' ' '\n' <<<"$step_ids" | grep -v '^$' | sort -u)" = 200000
fi
wait "$sleeper_build"
check "rootless: the sleeping build succeeded" test $? = 0

# --- the farm: a worker on its own host --------------------------------------------------
CACHE="$(addr cache):9092"
SCHED="$(addr sched):9091"
# Plaintext (--insecure): this test is about the sandbox; tests/farm has the farm's TLS.
in_ns cache "$CACHE_BIN" --listen "$CACHE" --dir "$T/cache" --insecure >"$T/cache.log" 2>&1 &
in_ns sched "$SCHED_BIN" --listen "$SCHED" --cache "$CACHE" --dir "$T/sched" --insecure \
  --allow-entitlement security.insecure >"$T/sched.log" 2>&1 &
# The worker's defaults deny private ranges (this whole /24 is one): the peer is the
# operator's exception, the resolver is reachable on port 53 anyway.
# (ip netns exec execs the worker: $! is the worker, stopped for the rootless pass below.)
worker_flags=(--scheduler "$SCHED" --cache "$CACHE" --slots 1 --insecure
  --allow-network "$(addr peer)/32" --dns "$(addr cache)" --allow-entitlement security.insecure)
ip netns exec "${P}worker" "$WORKER_BIN" "${worker_flags[@]}" --dir "$T/worker" >"$T/worker.log" 2>&1 &
worker_pid=$!
export FARM_HOME="$T/home-client"
up=0
for _ in $(seq 150); do
  if [ "$(in_ns client "$FARM" workers --insecure --scheduler "$SCHED" 2>/dev/null | awk 'NR > 1' | wc -l)" -ge 1 ]; then
    up=1
    break
  fi
  sleep 0.2
done
check "the farm came up" test "$up" = 1
[ "$up" = 1 ] || tail -20 "$T"/cache.log "$T"/sched.log "$T"/worker.log >&2
victim="$T/victim-farm"
mkdir -p "$victim/y"
targets="127.0.0.1 7101 $(addr worker) 7102 $(addr peer) 7103 169.254.169.254 7103 $(addr cache) 53 $(addr cache) 7104 $(addr sched) 9091"
if in_ns client "$FARM" submit --insecure --scheduler "$SCHED" --progress=plain --build-arg NONCE=$$ \
  --build-arg "TARGETS=$targets" --build-arg "VICTIM=$victim" "$ctx" >"$T/farm.out" 2>"$T/farm.log"; then
  check "farm: the build succeeded" true
else
  tail -30 "$T/farm.log" >&2
  check "farm: the build succeeded" false
fi
expect_sandboxed farm "$T/farm.log"
expect_network farm "$T/farm.log" worker
check "farm: the other host (the operator's exception) is reachable" \
  grep -aq "connect $(addr peer):7103: ok peer" "$T/farm.log"
check "farm: a private range is refused by default (the scheduler)" \
  grep -aq "connect $(addr sched):9091: refused" "$T/farm.log"
check "farm: the resolver answers on port 53" \
  grep -aq "connect $(addr cache):53: ok resolver-53" "$T/farm.log"
check "farm: and only there" grep -aq "connect $(addr cache):7104: refused" "$T/farm.log"
check "farm: the step's resolv.conf names it" grep -aq "nameserver $(addr cache)" "$T/farm.log"
check "farm: the symlink swap ran" grep -aq swapped "$T/farm.log"
check "farm: the host directory behind the swapped stub is still there" test -d "$victim/y"

in_ns client "$FARM" submit --insecure --scheduler "$SCHED" --progress=plain --build-arg NONCE=$$ \
  -f "$ctx/Dockerfile.insecure" "$ctx" >/dev/null 2>"$T/farm-insecure-unasked.log"
check "farm: insecure without --allow fails at plan time, naming the line" \
  grep -q "Dockerfile.insecure:4:1" "$T/farm-insecure-unasked.log"
if in_ns client "$FARM" submit --insecure --scheduler "$SCHED" --progress=plain --allow security.insecure \
  --build-arg NONCE=$$ -f "$ctx/Dockerfile.insecure" "$ctx" >/dev/null 2>"$T/farm-insecure.log"; then
  check "farm: insecure with the entitlement builds" true
else
  tail -20 "$T/farm-insecure.log" >&2
  check "farm: insecure with the entitlement builds" false
fi
check "farm insecure: no seccomp filter" test "$(value "$T/farm-insecure.log" seccomp)" = 0
check "farm insecure: every capability" test "$(value "$T/farm-insecure.log" cap_eff)" = "$host_bnd"

# --- the farm, rootless: the worker restarted with --rootless-steps --subid-range ---------
# connected_workers: how many workers the scheduler lists as connected.
connected_workers() {
  in_ns client "$FARM" workers --insecure --scheduler "$SCHED" 2>/dev/null | awk 'NR > 1' | wc -l
}
kill -TERM "$worker_pid"
wait "$worker_pid"
gone=0
for _ in $(seq 150); do
  [ "$(connected_workers)" -eq 0 ] && { gone=1; break; }
  sleep 0.1
done
check "farm: the rootful worker left" test "$gone" = 1
ip netns exec "${P}worker" "$WORKER_BIN" "${worker_flags[@]}" --dir "$T/worker-rootless" \
  --rootless-steps true --subid-range 300000:65536 >"$T/worker-rootless.log" 2>&1 &
up=0
for _ in $(seq 150); do
  [ "$(connected_workers)" -ge 1 ] && { up=1; break; }
  sleep 0.1
done
check "farm: the rootless worker came up" test "$up" = 1
[ "$up" = 1 ] || tail -20 "$T"/worker-rootless.log >&2
victim="$T/victim-farm-rootless"
mkdir -p "$victim/y"
if in_ns client "$FARM" submit --insecure --scheduler "$SCHED" --progress=plain --build-arg NONCE=r$$ \
  --build-arg "TARGETS=$targets" --build-arg "VICTIM=$victim" "$ctx" >/dev/null 2>"$T/farm-rootless.log"; then
  check "farm rootless: the build succeeded" true
else
  tail -30 "$T/farm-rootless.log" >&2
  check "farm rootless: the build succeeded" false
fi
check "farm rootless: root inside" test "$(value "$T/farm-rootless.log" uid)" = 0
check "farm rootless: uid_map is the worker's range ($(value "$T/farm-rootless.log" uid_map))" \
  test "$(value "$T/farm-rootless.log" uid_map)" = "0 300000 65536"
check "farm rootless: gid_map too" test "$(value "$T/farm-rootless.log" gid_map)" = "0 300000 65536"
check "farm (rootful): no user namespace" test "$(value "$T/farm.log" uid_map)" = "0 0 4294967295"
expect_sandboxed "farm rootless" "$T/farm-rootless.log"
check "farm rootless: mknod refused" grep -q "^refused" <<<"$(value "$T/farm-rootless.log" mknod_block)"
expect_network "farm rootless" "$T/farm-rootless.log" worker
check "farm rootless: the other host (the operator's exception) is reachable" \
  grep -aq "connect $(addr peer):7103: ok peer" "$T/farm-rootless.log"
check "farm rootless: a private range is refused by default (the scheduler)" \
  grep -aq "connect $(addr sched):9091: refused" "$T/farm-rootless.log"
check "farm rootless: the resolver answers on port 53" \
  grep -aq "connect $(addr cache):53: ok resolver-53" "$T/farm-rootless.log"
check "farm rootless: and only there" grep -aq "connect $(addr cache):7104: refused" "$T/farm-rootless.log"
check "farm rootless: the symlink swap ran" grep -aq swapped "$T/farm-rootless.log"
check "farm rootless: the host directory behind the swapped stub is still there" test -d "$victim/y"

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ] && [ "$checks" -gt 0 ]
