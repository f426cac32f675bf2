#!/bin/bash
# The farm across several "hosts" on one machine: every daemon and client runs in its own
# network namespace, joined by veth pairs to a bridge in a switch namespace, with addresses of
# a private /24 that exists only inside those namespaces (nothing is sent outside them).
#
#   cache 10.N.M.2    farm-cache
#   sched 10.N.M.3    farm-scheduler (heartbeat 1s, lease timeout 6s)
#   w1-w3 10.N.M.11-13  farm-worker, linux/amd64, one slot each
#   w4    10.N.M.14   farm-worker announcing linux/arm64
#   c1/c2 10.N.M.21-22  two clients (farm submit), each with its own FARM_HOME
#   rogue 10.N.M.31   a worker that lies (section 10); w5 10.N.M.15: an honest linux/s390x one
#
# Checks: independent stages on different workers at once; a second client fully cached; a
# worker with a wiped layer store still runs steps; a SIGKILLed worker's step is requeued; a
# scheduler SIGKILLed and restarted mid-build: the build completes and the client's stream
# resumes (the running step is adopted, not rerun); a small tenant is not stuck behind a big
# one; the arm64 worker gets only arm64 tasks. Every namespace and process is removed on exit,
# also after a failure.
#
# Security is on as in production (issue 12): TLS everywhere (deploy/make-certs.sh), workers
# identified by worker-CA certificates, clients by bearer tokens (farm token mint), one tenant
# per client. Section 9 checks the trust boundary: no token, a forged token, another tenant's
# build, a PR token writing main, a worker without a worker certificate, gc without admin.
# Section 10: an expired token; a worker with a valid certificate whose results lie (another
# lease, a false diff_id: refused, logged, nothing cached, the honest rebuild is unaffected);
# secrets: the same step with another secret value does not share its layer.
set -uo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

R="$TEST_SRCDIR/farm"
FARM="$R/cli/farm"
CACHE_BIN="$R/cache/server/farm-cache"
SCHED_BIN="$R/scheduler/server/farm-scheduler"
WORKER_BIN="$R/worker/agent/farm-worker"
ROGUE_BIN="$R/tests/farm/rogue_worker"
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

[ "$(id -u)" = 0 ] || { echo "FATAL: this test needs root (network namespaces)" >&2; exit 1; }
command -v ip >/dev/null || { echo "FATAL: ip (iproute2) is not installed" >&2; exit 1; }

# shellcheck source=tests/farm/netns.sh
source "$R/tests/farm/netns.sh"
# Names unique to this run; a private /24 picked at random.
P="ft$$"
NET=$(netns_random_net)
declare -A NETNS_ADDR=([cache]=2 [sched]=3 [w1]=11 [w2]=12 [w3]=13 [w4]=14 [w5]=15 [c1]=21
  [c2]=22 [rogue]=31)
HOSTS=(cache sched w1 w2 w3 w4 w5 c1 c2 rogue)
NETNS_PREFIX=$P NETNS_NET=$NET

cleanup() {
  netns_down "${HOSTS[@]}"
  # Overlay and bind mounts the workers' sandboxes may have left under $T.
  grep " $T/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  true
}
trap cleanup EXIT

ns() { echo "${P}$1"; }
in_ns() {
  local h=$1
  shift
  ip netns exec "$(ns "$h")" "$@"
}

# --- the network -------------------------------------------------------------------------
netns_up "${HOSTS[@]}" || { echo "FATAL: could not make the namespaces" >&2; exit 1; }

CACHE="$NET.2:9092"
SCHED="$NET.3:9091"

# --- the farm's CAs, certificates and tokens ------------------------------------------------
TLS="$T/tls"
"$R/deploy/make-certs.sh" --dir "$TLS" --server "farm-cache=$NET.2" \
  --server "farm-scheduler=$NET.3" --worker w1 --worker w2 --worker w3 --worker w4 \
  --worker w5 --worker rogue --client farm-scheduler --client c1 --client c2 >"$T/certs.log" 2>&1 ||
  { cat "$T/certs.log" >&2; echo "FATAL: make-certs.sh failed" >&2; exit 1; }
mint() { "$FARM" token mint --key "$TLS/jwt/signing.key" --ttl 3h "$@"; }
mint --sub farm-scheduler --read '*' --write '*' >"$T/sched.token"
mint --sub ci-big --tenant big --read main --write main --role submit >"$T/c1.token"
mint --sub ci-small --tenant small --read main --write main --role submit >"$T/c2.token"
# Expired by section 10 (1 s, and the servers allow 2 s of clock skew): no sleeping for it.
"$FARM" token mint --key "$TLS/jwt/signing.key" --ttl 1s --sub ops-late --role admin \
  --read '*' >"$T/expired.token"
SERVER_SEC=(--tls-client-ca "$TLS/client-cas.crt" --worker-ca "$TLS/worker-ca.crt"
  --token-keys "$TLS/jwt/signing.pub" --token-clock-skew 2s)

# --- daemons -----------------------------------------------------------------------------
start_cache() {
  in_ns cache "$CACHE_BIN" --listen "$CACHE" --dir "$T/cache" "${SERVER_SEC[@]}" \
    --tls-cert "$TLS/servers/farm-cache.crt" --tls-key "$TLS/servers/farm-cache.key" \
    >>"$T/cache.log" 2>&1 &
}
start_scheduler() {
  in_ns sched "$SCHED_BIN" --listen "$SCHED" --cache "$CACHE" --dir "$T/sched" \
    --heartbeat-interval 1 --lease-timeout 6 "${SERVER_SEC[@]}" \
    --tls-cert "$TLS/servers/farm-scheduler.crt" --tls-key "$TLS/servers/farm-scheduler.key" \
    --cache-tls-ca "$TLS/ca.crt" --cache-tls-cert "$TLS/clients/farm-scheduler.crt" \
    --cache-tls-key "$TLS/clients/farm-scheduler.key" --cache-token-file "$T/sched.token" \
    >>"$T/sched.log" 2>&1 &
}
start_worker() {
  local w=$1
  shift
  # Each worker's steps get addresses of their own /24 (198.18.<worker's last octet>.0/24), so
  # a step's address says which worker ran it (`where`).
  in_ns "$w" "$WORKER_BIN" --scheduler "$SCHED" --cache "$CACHE" --dir "$T/$w" --slots 1 \
    --tls-ca "$TLS/ca.crt" --tls-cert "$TLS/workers/$w.crt" --tls-key "$TLS/workers/$w.key" \
    --step-subnet "198.18.${NETNS_ADDR[$w]}.0/24" "$@" >>"$T/$w.log" 2>&1 &
}
kill_host() {  # kill -SIG every process of a "host" (its daemon and what it started)
  local sig=$1 h=$2
  ip netns pids "$(ns "$h")" | xargs -r kill "-$sig" 2>/dev/null
  for _ in $(seq 100); do
    [ -z "$(ip netns pids "$(ns "$h")")" ] && return 0
    sleep 0.1
  done
  ip netns pids "$(ns "$h")" | xargs -r kill -9 2>/dev/null
  sleep 0.2
}
# client_env CLIENT: the environment of the farm CLI on a client host (its certificate, for
# farm-cache's mutual TLS, and its tenant's token; $TOKEN_FILE overrides the token).
client_env() {
  echo "FARM_HOME=$T/home-$1 FARM_SCHEDULER=$SCHED FARM_TLS_CA=$TLS/ca.crt" \
    "FARM_TLS_CERT=$TLS/clients/$1.crt FARM_TLS_KEY=$TLS/clients/$1.key" \
    "FARM_TOKEN_FILE=${TOKEN_FILE:-$T/$1.token}"
}
farm_c() {  # farm_c CLIENT ARGS...: the farm CLI on a client host
  local c=$1
  shift
  # shellcheck disable=SC2046
  in_ns "$c" env $(client_env "$c") "$FARM" "$@"
}
connected_workers() {
  farm_c c1 workers 2>/dev/null | awk 'NR > 1' | wc -l
}
wait_workers() {
  local n=$1
  for _ in $(seq 150); do
    [ "$(connected_workers)" -ge "$n" ] && return 0
    sleep 0.2
  done
  echo "--- only $(connected_workers) workers connected; farm workers:" >&2
  farm_c c1 workers >&2
  return 1
}
# running_on PATTERN CMD...: waits (up to 20 s) until CMD prints "PATTERN ADDRESS", a step's
# `where`; prints the worker host (w1..w3) whose step subnet has that address, or nothing.
running_on() {
  local pattern=$1 addr="" h
  shift
  for _ in $(seq 200); do
    addr=$("$@" 2>/dev/null | grep -oE "$pattern [0-9.]+" | head -1 | awk '{print $NF}')
    [ -n "$addr" ] && break
    sleep 0.1
  done
  for h in w1 w2 w3; do
    case "$addr" in "198.18.${NETNS_ADDR[$h]}."*) echo "$h" ;; esac
  done
}
worker_tasks() {  # worker_tasks HOST: tasks done by the worker labeled host=HOST
  farm_c c1 workers --all | awk -v h="host=$1" 'NR > 1 && $0 ~ h { print $5 }' | head -1
}

start_cache
start_scheduler
for w in w1 w2 w3; do start_worker "$w" --label "host=$w"; done
start_worker w4 --platform linux/arm64 --label host=w4
wait_workers 4 || { tail -20 "$T"/*.log >&2; echo "FATAL: the farm did not come up" >&2; exit 1; }
echo "farm up: 4 workers on $NET.0/24"

# --- the build ---------------------------------------------------------------------------
mkdir -p "$T/ctx"
cp /bin/busybox "$T/ctx/busybox"
echo "hello from the farm" >"$T/ctx/msg.txt"
# `where`: the step's address, in its worker's --step-subnet (RUN has its own isolated network).
cat >"$T/ctx/Dockerfile" <<'EOF'
FROM scratch AS base
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ARG BASE_NONCE
RUN echo "base $BASE_NONCE" > /base.txt && mkdir -p /usr/local/bin && \
    printf '#!/bin/sh\nip -4 addr show eth0 | grep -o "inet [0-9.]*" | cut -d" " -f2\n' \
      > /usr/local/bin/where && chmod +x /usr/local/bin/where

FROM base AS a
ARG NONCE
RUN echo "stage a $NONCE on $(where) from $(cut -d' ' -f1 /proc/uptime)"; sleep 3; \
    echo "stage a until $(cut -d' ' -f1 /proc/uptime)"; echo a > /a.txt

FROM base AS b
ARG NONCE
RUN echo "stage b $NONCE on $(where) from $(cut -d' ' -f1 /proc/uptime)"; sleep 3; \
    echo "stage b until $(cut -d' ' -f1 /proc/uptime)"; echo b > /b.txt

FROM base AS c
ARG NONCE
RUN echo "stage c $NONCE on $(where) from $(cut -d' ' -f1 /proc/uptime)"; sleep 3; \
    echo "stage c until $(cut -d' ' -f1 /proc/uptime)"; echo c > /c.txt

FROM base AS slow
ARG NONCE
RUN echo "slow $NONCE on $(where)"; sleep 8; echo "slow $NONCE done"

FROM base AS sleeper
ARG NONCE
RUN echo "sleeper $NONCE on $(where)"; sleep 3

FROM base AS secret
RUN --mount=type=secret,id=s sh -c 'echo "secret step runs"; cat /run/secrets/s | sha256sum > /s.sum'

FROM base AS final
COPY --from=a /a.txt /
COPY --from=b /b.txt /
COPY --from=c /c.txt /
COPY msg.txt /
CMD ["cat", "/msg.txt"]
EOF

# submit CLIENT NAME ARGS...: farm submit with plain progress into $T/NAME.log.
submit() {
  local c=$1 name=$2
  shift 2
  SOURCE_DATE_EPOCH=0 farm_c "$c" submit --progress=plain --build-arg BASE_NONCE=$$ "$@" \
    "$T/ctx" >"$T/$name.out" 2>"$T/$name.log"
}
show() { echo "--- $1:" >&2; tail -30 "$T/$1.log" >&2; }

# 1. Independent stages run on different workers at the same time.
if submit c1 first --build-arg NONCE=one --iidfile "$T/first.iid" -t farm-test:1 \
  --target final; then
  check "the multi-stage build succeeded" true
else
  show first
  check "the multi-stage build succeeded" false
fi
addrs=$(grep -oE 'stage [abc] one on [0-9.]+' "$T/first.log" | awk '{print $5}' | sort -u |
  wc -l)
check "stages a, b and c ran on 3 different workers (saw $addrs)" [ "$addrs" -eq 3 ]
overlap=$(python3 - "$T/first.log" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
start = {m[0]: float(m[1]) for m in re.findall(r"stage ([abc]) one on \S+ from ([0-9.]+)", t)}
end = {m[0]: float(m[1]) for m in re.findall(r"stage ([abc]) until ([0-9.]+)", t)}
if len(start) != 3 or len(end) != 3:
    print(0); sys.exit()
print(1 if max(start.values()) < min(end.values()) else 0)
PY
)
check "the three stages' RUN intervals overlap" [ "$overlap" = 1 ]

# 2. A second client, same Dockerfile and context: fully cached, same image.
if submit c2 second --build-arg NONCE=one --iidfile "$T/second.iid" --target final; then
  check "the second client's build succeeded" true
else
  show second
  check "the second client's build succeeded" false
fi
cached=$(grep -c '^#[0-9]* CACHED$' "$T/second.log")
ran=$(grep -cE 'stage [abc] one on' "$T/second.log")
check "the second build is fully cached ($cached steps cached, $ran stage steps ran)" \
  [ "$cached" -ge 8 -a "$ran" -eq 0 ]
check "both clients got the same image" cmp -s "$T/first.iid" "$T/second.iid"
check "the second client uploaded nothing new" grep -q "uploaded 0 of" "$T/second.log"

# 3. A worker whose layer store was wiped still runs steps (fetching layers from the cache).
kill_host TERM w1
kill_host TERM w2
kill_host TERM w3
rm -rf "$T/w1"
start_worker w1 --label host=w1
wait_workers 2  # w1 and w4
if submit c1 wiped --build-arg NONCE=two --target a; then
  check "a build on the wiped worker succeeded" true
else
  show wiped
  check "a build on the wiped worker succeeded" false
fi
check "the step ran on the wiped worker w1" grep -q "stage a two on 198.18.11." "$T/wiped.log"
start_worker w2 --label host=w2
start_worker w3 --label host=w3
wait_workers 4

# 4. SIGKILL the worker running a step: the step is requeued on another worker.
submit c1 killed --build-arg NONCE=three --target slow &
submit_pid=$!
victim_host=$(running_on "slow three on" cat "$T/killed.log")
if [ -n "$victim_host" ]; then
  kill_host KILL "$victim_host"
  echo "killed $victim_host mid-step"
fi
wait "$submit_pid"
rc=$?
[ $rc -eq 0 ] || show killed
check "the step started on a worker we could kill (${victim_host:-none})" [ -n "$victim_host" ]
check "the build whose worker was killed succeeded" [ $rc -eq 0 ]
runs=$(grep -oE "slow three on [0-9.]+" "$T/killed.log" | awk '{print $4}' | sort -u | wc -l)
check "the step ran again on another worker ($runs workers)" [ "$runs" -eq 2 ]
check "the step finished" grep -q "slow three done" "$T/killed.log"
[ -n "$victim_host" ] && start_worker "$victim_host" --label "host=$victim_host"
wait_workers 4

w4_before=$(worker_tasks w4)
check "the linux/arm64 worker got no amd64 task so far (${w4_before:-?})" [ "${w4_before:-x}" = 0 ]

# 5. Restart the scheduler (SIGKILL) mid-build: the build completes, the stream resumes, the
#    running step is adopted from its worker rather than run again.
submit c1 restarted --build-arg NONCE=four --target slow &
submit_pid=$!
for _ in $(seq 200); do
  grep -q "slow four on" "$T/restarted.log" 2>/dev/null && break
  sleep 0.1
done
kill_host KILL sched
sleep 1
start_scheduler
wait "$submit_pid"
rc=$?
[ $rc -eq 0 ] || { show restarted; tail -20 "$T/sched.log" >&2; }
check "the build survived the scheduler restart" [ $rc -eq 0 ]
check "the client's stream reattached" grep -q "reattaching" "$T/restarted.log"
check "the client saw the step finish" grep -q "slow four done" "$T/restarted.log"
check "the running step was adopted, not run again" \
  [ "$(grep -c 'slow four on' "$T/restarted.log")" -eq 1 ]
wait_workers 4

# 5b. farm cancel: the build ends CANCELED and its running step is killed on its worker.
build_id=$(SOURCE_DATE_EPOCH=0 farm_c c1 submit -d --build-arg BASE_NONCE=$$ \
  --build-arg NONCE=five --target slow "$T/ctx" 2>"$T/cancel.err")
check "farm submit --detach printed a build id (${build_id:-none})" [ -n "$build_id" ]
runner_host=$(running_on "slow five on" farm_c c1 logs "$build_id")
check "the step to cancel started (on ${runner_host:-nothing})" [ -n "$runner_host" ]
# A step runs in a network namespace of its own: look among the descendants of the host's
# processes, not in the host's namespace.
descendants() {
  ps -eo pid=,ppid= | awk -v roots="$(ip netns pids "$(ns "$1")" | tr '\n' ' ')" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) in_tree[r[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do {
        grew = 0
        for (p in parent) if (!(p in in_tree) && (parent[p] in in_tree)) { in_tree[p] = 1; grew = 1 }
      } while (grew)
      for (p in in_tree) print p
    }'
}
sleeping() { descendants "$1" | xargs -r ps -o args= -p 2>/dev/null | grep -c '^sleep 8'; }
check "its sleep runs on $runner_host" [ "$(sleeping "${runner_host:-w1}")" -ge 1 ]
farm_c c1 cancel "$build_id" >"$T/cancel.out" 2>&1
check "farm cancel answered" grep -q "$build_id" "$T/cancel.out"
farm_c c1 logs -f "$build_id" >"$T/canceled.log" 2>&1
gone=0
for _ in $(seq 50); do
  [ "$(sleeping "${runner_host:-w1}")" -eq 0 ] && { gone=1; break; }
  sleep 0.1
done
check "the canceled step's processes were killed on its worker within 5 s" [ "$gone" = 1 ]
check "the canceled step never finished" sh -c "! grep -q 'slow five done' '$T/canceled.log'"
check "the build is listed as canceled" sh -c \
  "ip netns exec $(ns c1) env $(client_env c1) $FARM builds --scheduler $SCHED |
    grep '$build_id' | grep -qi cancel"

# 5c. A worker stopped gracefully (SIGTERM) mid-step reports the step CANCELLED: the step
#     runs on another worker and the build succeeds.
submit c1 stopped --build-arg NONCE=six --target slow &
submit_pid=$!
victim_host=$(running_on "slow six on" cat "$T/stopped.log")
[ -n "$victim_host" ] && kill_host TERM "$victim_host"
wait "$submit_pid"
rc=$?
[ $rc -eq 0 ] || show stopped
check "a build whose worker was stopped with SIGTERM mid-step succeeded" [ $rc -eq 0 ]
runs=$(grep -oE "slow six on [0-9.]+" "$T/stopped.log" | awk '{print $4}' | sort -u | wc -l)
check "the stopped worker's step ran again on another worker ($runs workers)" [ "$runs" -eq 2 ]
[ -n "$victim_host" ] && start_worker "$victim_host" --label "host=$victim_host"
wait_workers 4

# 6. Two tenants at once: the small tenant's one build is not stuck behind the big one's nine.
start_ts=$(date +%s.%N)
pids=()
for i in $(seq 9); do
  (submit c1 "big$i" --tenant big --build-arg NONCE="big$i" --target sleeper &&
    date +%s.%N >"$T/big$i.done") &
  pids+=($!)
done
sleep 0.5
(submit c2 small --tenant small --build-arg NONCE=small --target sleeper &&
  date +%s.%N >"$T/small.done") &
pids+=($!)
wait "${pids[@]}"  # not a bare `wait`: the daemons are this shell's children too
all_done=1
for f in small $(seq -f 'big%g' 9); do [ -s "$T/$f.done" ] || { all_done=0; show "$f"; }; done
check "all ten tenant builds succeeded" [ $all_done = 1 ]
if [ $all_done = 1 ]; then
  later=0
  for i in $(seq 9); do
    if python3 -c "import sys; sys.exit(0 if float('$(cat "$T/big$i.done")') > float('$(cat "$T/small.done")') else 1)"; then
      later=$((later + 1))
    fi
  done
  small_s=$(python3 -c "print(round($(cat "$T/small.done") - $start_ts, 1))")
  echo "small tenant's build took ${small_s}s; $later of big's 9 finished after it"
  # FIFO would finish it last (after ~12 s, behind 3 waves of 3 x 3 s); fair share gives it the
  # first free slot.
  check "the small tenant's build finished before most of the big tenant's ($later of 9 later)" \
    [ "$later" -ge 4 ]
fi

# 7. The arm64 worker never got an amd64 task; an arm64 build goes to it alone.
w4_before=$(worker_tasks w4)
check "the linux/arm64 worker got no amd64 task since the restart (${w4_before:-?})" \
  [ "${w4_before:-x}" = 0 ]
mkdir -p "$T/armctx"
echo data >"$T/armctx/file"
printf 'FROM scratch\nCOPY file /file\n' >"$T/armctx/Dockerfile"
if SOURCE_DATE_EPOCH=0 farm_c c1 submit --progress=plain --platform linux/arm64 "$T/armctx" \
  >"$T/arm.out" 2>"$T/arm.log"; then
  check "a linux/arm64 build succeeded" true
else
  show arm
  check "a linux/arm64 build succeeded" false
fi
check "the linux/arm64 build ran on the arm64 worker" [ "$(worker_tasks w4)" = 1 ]
# The same build with its context as a tar on stdin, then with the Dockerfile on stdin: cached.
check "farm submit - (a context tar on stdin)" sh -c "tar -C '$T/armctx' -c . |
  ip netns exec $(ns c1) env $(client_env c1) SOURCE_DATE_EPOCH=0 $FARM submit -q \
    --scheduler $SCHED --platform linux/arm64 - >'$T/stdin.out' 2>&1"
check "farm submit -f - (the Dockerfile on stdin)" sh -c "ip netns exec $(ns c1) \
  env $(client_env c1) SOURCE_DATE_EPOCH=0 $FARM submit -q --scheduler $SCHED \
    --platform linux/arm64 -f - '$T/armctx' <'$T/armctx/Dockerfile' >>'$T/stdin.out' 2>&1"
check "both gave the arm64 build's image" [ "$(sort -u "$T/stdin.out" | wc -l)" = 1 ]
check "and ran nothing more on the arm64 worker" [ "$(worker_tasks w4)" = 1 ]

# 8. Clear errors: an unreachable scheduler, a Dockerfile syntax error (with its position).
# shellcheck disable=SC2046
in_ns c1 env $(client_env c1) timeout 60 "$FARM" submit --scheduler "$NET.99:9091" \
  "$T/ctx" >"$T/unreach.out" 2>&1
check "an unreachable scheduler is a clear error" \
  grep -q "cannot reach farm-scheduler at $NET.99:9091" "$T/unreach.out"
mkdir -p "$T/badctx"
printf 'FROM scratch\nFROB x\n' >"$T/badctx/Dockerfile"
farm_c c1 submit --progress=plain "$T/badctx" >"$T/bad.out" 2>&1
check "a syntax error names its line" grep -q "Dockerfile:2" "$T/bad.out"
check "farm builds --scheduler lists the builds" \
  sh -c "ip netns exec $(ns c1) env $(client_env c1) $FARM builds --scheduler $SCHED |
    grep -q farm-test:1"

# 9. The trust boundary.
in_ns c1 env FARM_HOME="$T/home-c1" FARM_TLS_CA="$TLS/ca.crt" "$FARM" builds \
  --scheduler "$SCHED" >"$T/notoken.out" 2>&1
check "no token: UNAUTHENTICATED, saying a token is needed" \
  grep -q "authorization: Bearer" "$T/notoken.out"
"$R/deploy/make-certs.sh" --dir "$T/rogue" >/dev/null 2>&1
"$FARM" token mint --key "$T/rogue/jwt/signing.key" --sub mallory --tenant big --role admin \
  --read '*' --write '*' >"$T/forged.token"
TOKEN_FILE="$T/forged.token" farm_c c1 builds --scheduler "$SCHED" >"$T/forged.out" 2>&1
check "a token signed by another key is refused" grep -qi "unauthenticated\|key" "$T/forged.out"
check "and gets no listing" sh -c "! grep -q farm-test '$T/forged.out'"
# Tenant small (c2) cannot see, follow or cancel tenant big's (c1) builds.
big_id=$(farm_c c1 builds --scheduler "$SCHED" 2>/dev/null | awk 'NR == 2 { print $1 }')
check "c1 sees its builds (${big_id:-none})" [ -n "$big_id" ]
farm_c c2 logs "$big_id" >"$T/xlogs.out" 2>&1
check "another tenant cannot read a build's logs" grep -q "tenant" "$T/xlogs.out"
farm_c c2 cancel "$big_id" >"$T/xcancel.out" 2>&1
check "another tenant cannot cancel it" grep -q "tenant" "$T/xcancel.out"
farm_c c2 builds --scheduler "$SCHED" >"$T/xlist.out" 2>&1
check "nor list it" sh -c "! grep -q '$big_id' '$T/xlist.out'"
# Image names are per tenant: big's tag farm-test:1 is not small's base image.
mkdir -p "$T/fromctx"
printf 'FROM farm-test:1\nCMD ["cat", "/a.txt"]\n' >"$T/fromctx/Dockerfile"
if SOURCE_DATE_EPOCH=0 farm_c c1 submit --progress=plain "$T/fromctx" >"$T/from-big.out" 2>&1; then
  check "a tenant builds FROM its own tag" true
else
  tail -5 "$T/from-big.out" >&2
  check "a tenant builds FROM its own tag" false
fi
check "another tenant's FROM does not see that tag" sh -c "! timeout 120 \
  $(printf '%q ' ip netns exec "$(ns c2)" env $(client_env c2) "$FARM" submit --progress=plain \
  "$T/fromctx") >'$T/from-small.out' 2>&1"
check "it goes to the registry instead (not in its tenant's store)" \
  grep -q "pulling farm-test:1" "$T/from-small.out"
# A PR token (tenant big) reads main but writes only pr/*.
mint --sub pr-7 --tenant big --read main --read 'pr/*' --write 'pr/*' --role submit \
  >"$T/pr.token"
TOKEN_FILE="$T/pr.token" farm_c c1 submit --progress=plain --platform linux/arm64 \
  "$T/armctx" >"$T/prmain.out" 2>&1
check "a PR token cannot build into main's cache scope" grep -q "may write only\\|may not write scope" "$T/prmain.out"
if TOKEN_FILE="$T/pr.token" farm_c c1 submit --progress=plain --cache-scope pr/7 \
  --platform linux/arm64 "$T/armctx" >"$T/pr.out" 2>&1; then
  check "a PR token builds in its own scope" true
else
  tail -5 "$T/pr.out" >&2
  check "a PR token builds in its own scope" false
fi
# A worker whose certificate is not from the worker CA (a client certificate) is refused.
in_ns c2 timeout 8 "$WORKER_BIN" --scheduler "$SCHED" --cache "$CACHE" --dir "$T/rogue-w" \
  --tls-ca "$TLS/ca.crt" --tls-cert "$TLS/clients/c2.crt" --tls-key "$TLS/clients/c2.key" \
  >"$T/rogue-w.log" 2>&1
check "a worker without a worker-CA certificate cannot join" \
  grep -q "worker certificate" "$T/rogue-w.log"
farm_c c1 workers --all >"$T/workers-after.out" 2>&1
check "and is not listed" sh -c "! grep -q '$NET.22' '$T/workers-after.out'"
# farm-cache: gc and stats need the admin role.
farm_c c1 cache gc --cache "$CACHE" --max-size 100G >"$T/gc.out" 2>&1
check "farm cache gc without admin is refused" grep -q "admin" "$T/gc.out"
mint --sub ops --role admin >"$T/admin.token"
TOKEN_FILE="$T/admin.token" farm_c c1 cache stats --cache "$CACHE" >"$T/stats.out" 2>&1
check "with an admin token farm cache stats works" grep -qi "blobs" "$T/stats.out"

# 10. An expired token, a worker that lies, secrets.
TOKEN_FILE="$T/expired.token" farm_c c1 builds --scheduler "$SCHED" >"$T/expired.out" 2>&1
TOKEN_FILE="$T/expired.token" farm_c c1 cache stats --cache "$CACHE" >"$T/expired-cache.out" 2>&1
check "an expired token is refused by farm-scheduler: token expired" \
  grep -q "token expired at .*clock skew allowed 2s" "$T/expired.out"
check "and by farm-cache" grep -q "token expired at .*clock skew allowed 2s" "$T/expired-cache.out"
# The farm CLI prints only the message; the status code, from the call's trailers (curl speaks
# enough gRPC over HTTP/2 for an empty request).
grpc_trailers() {  # grpc_trailers ADDRESS /SERVICE/METHOD TOKEN_FILE
  printf '\0\0\0\0\0' >"$T/empty.grpc"
  in_ns c1 curl -sS --http2 --max-time 10 --cacert "$TLS/ca.crt" --cert "$TLS/clients/c1.crt" \
    --key "$TLS/clients/c1.key" -H "content-type: application/grpc" -H "te: trailers" \
    -H "authorization: Bearer $(cat "$3")" --data-binary "@$T/empty.grpc" -o /dev/null -D - \
    "https://$1$2"
}
command -v curl >/dev/null || { echo "FATAL: curl is not installed (tools/setup.sh)" >&2; exit 1; }
for server in "$SCHED /farm.v1.Scheduler/ListBuilds" "$CACHE /farm.v1.CacheAdmin/GetStats"; do
  set -- $server
  for _ in 1 2 3; do  # (a loaded machine: curl's own timeout, retried)
    grpc_trailers "$1" "$2" "$T/expired.token" >"$T/expired.trailers" 2>&1 &&
      grep -q '^grpc-status:' "$T/expired.trailers" && break
    sleep 1
  done
  check "$2 with UNAUTHENTICATED (grpc-status 16)" grep -q '^grpc-status: 16' "$T/expired.trailers"
done

# A rogue worker with a valid worker certificate (CN rogue), the only linux/s390x worker, so
# the s390x build's one step is its: (a) the true layer under a lease id that is not its own,
# (b) its own lease with a false diff_id. The design: (a) is answered with CancelTask and
# ignored, (b) fails the build (PERMISSION_DENIED, no other attempt) and caches nothing.
ac_entries() {  # ac_entries SCOPE: farm-cache's action-cache entries in SCOPE
  TOKEN_FILE="$T/admin.token" farm_c c1 cache stats --cache "$CACHE" --json 2>/dev/null |
    python3 -c 'import json, sys
print(sum(s["entries"] for s in json.load(sys.stdin)["scopes"] if s["scope"] == sys.argv[1]))' "$1"
}
mkdir -p "$T/s390ctx" "$T/rogue-layer"
echo "s390x data" >"$T/s390ctx/file"
printf 'FROM scratch\nCOPY file /file\n' >"$T/s390ctx/Dockerfile"
echo "the rogue was here" >"$T/rogue-layer/rogue.txt"
tar -C "$T/rogue-layer" -c rogue.txt | gzip -n >"$T/rogue-layer.tar.gz"
rogue_diff_id="sha256:$(gunzip -c "$T/rogue-layer.tar.gz" | sha256sum | cut -d' ' -f1)"
rogue_layer="sha256:$(sha256sum "$T/rogue-layer.tar.gz" | cut -d' ' -f1)"
in_ns rogue "$ROGUE_BIN" --scheduler "$SCHED" --cache "$CACHE" --platform linux/s390x \
  --layer "$T/rogue-layer.tar.gz" --diff-id "$rogue_diff_id" --tls-ca "$TLS/ca.crt" \
  --tls-cert "$TLS/workers/rogue.crt" --tls-key "$TLS/workers/rogue.key" >"$T/rogue.log" 2>&1 &
rogue_pid=$!
wait_workers 5
s390_submit() {  # s390_submit NAME SCOPE: the s390x build into cache scope SCOPE (a PR token)
  # shellcheck disable=SC2046
  in_ns c1 env $(TOKEN_FILE="$T/pr.token" client_env c1) SOURCE_DATE_EPOCH=0 timeout 60 \
    "$FARM" submit --progress=plain --cache-scope "$2" --platform linux/s390x \
    --iidfile "$T/$1.iid" "$T/s390ctx" >"$T/$1.out" 2>&1
}
s390_submit s390-rogue pr/s390x
rc=$?
wait "$rogue_pid"
rogue_rc=$?
cat "$T/rogue.log"
check "the rogue joined as its certificate's id, not its hello's (w1)" \
  grep -q "worker rogue connected from .*linux/s390x" "$T/sched.log"
check "the rogue got the s390x step once (exit $rogue_rc)" \
  [ "$(grep -c '^rogue: got task' "$T/rogue.log")" -eq 1 -a "$rogue_rc" -eq 0 ]
check "(a) its result under a lease that is not its own is refused (CancelTask)" \
  grep -q "^rogue: (a) refused: CancelTask .*lease is no longer valid" "$T/rogue.log"
check "(a) farm-scheduler logged it, naming the rogue" \
  grep -q "worker rogue: result for task .* refused: no current lease has that id" "$T/sched.log"
check "(b) its false diff_id fails the build" [ "$rc" -ne 0 ]
check "(b) with a clear error naming the rogue" grep -q \
  "worker rogue reported diff_id sha256:[0-9a-f]* for layer $rogue_layer, but its content is $rogue_diff_id: result refused, nothing cached" \
  "$T/s390-rogue.out"
check "(b) farm-scheduler logged it, naming the rogue" \
  grep -q "build .* failed .*worker rogue reported diff_id" "$T/sched.log"
check "nothing was cached in the build's scope ($(ac_entries pr/s390x) entries)" \
  [ "$(ac_entries pr/s390x)" = 0 ]
# An honest s390x worker then builds it: the step runs (not a hit on the rogue's layer), and
# the image is the one a scope the rogue never touched gets.
start_worker w5 --platform linux/s390x --label host=w5
for _ in $(seq 100); do farm_c c1 workers 2>/dev/null | grep -q host=w5 && break; sleep 0.1; done
if s390_submit s390-honest pr/s390x; then
  check "the honest worker builds it after the rogue" true
else
  tail -5 "$T/s390-honest.out" >&2
  check "the honest worker builds it after the rogue" false
fi
check "the step ran on the honest worker" [ "$(worker_tasks w5)" = 1 ]
check "and is cached now ($(ac_entries pr/s390x) entries)" [ "$(ac_entries pr/s390x)" = 1 ]
s390_submit s390-clean pr/s390x-clean
check "the same image as in a scope the rogue never touched" \
  cmp -s "$T/s390-honest.iid" "$T/s390-clean.iid"

# Secrets: the same step with another value does not share its layer; the value is stored
# nowhere by the scheduler or farm-cache.
printf 'one-%s' "$$" >"$T/secret1"
printf 'two-%s' "$$" >"$T/secret2"
submit c1 secret1 --target secret --secret "id=s,src=$T/secret1" --iidfile "$T/secret1.iid"
ran_secret_step() { grep -qE '^#[0-9]+ [0-9.]+ secret step runs' "$T/$1.log"; }  # its output
check "a RUN with a secret ran" ran_secret_step secret1
submit c1 secret2 --target secret --secret "id=s,src=$T/secret1" --iidfile "$T/secret2.iid"
check "with the same secret again it is cached" eval "! ran_secret_step secret2"
check "and gives the same image" cmp -s "$T/secret1.iid" "$T/secret2.iid"
submit c1 secret3 --target secret --secret "id=s,src=$T/secret2" --iidfile "$T/secret3.iid"
check "with another secret value the step runs again" ran_secret_step secret3
check "and gives another image" sh -c "! cmp -s '$T/secret1.iid' '$T/secret3.iid'"
check "the secret's value is in none of the scheduler's or farm-cache's files" sh -c \
  "! grep -rqaF -e 'one-$$' -e 'two-$$' '$T/sched' '$T/cache' '$T/sched.log' '$T/cache.log'"

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ] || {
  for l in sched w1 w2 w3 w4 cache; do echo "--- $l.log (end)" >&2; tail -15 "$T/$l.log" >&2; done
  exit 1
}
