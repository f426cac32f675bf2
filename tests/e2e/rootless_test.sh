#!/usr/bin/env bash
# Rootless steps end to end (README, sandbox section, "Rootless steps"): one small Dockerfile
# built by `farm build` twice, in a home whose sandbox.conf turns rootless steps on (range
# 200000:65536) and in a rootful one, with SOURCE_DATE_EPOCH=0. Ids are written inside the
# user namespace (chown to a user made in the image, a USER step, a cache mount with uid/gid)
# and must be stored as the image-side ids: the two builds give the same image id (same
# layers), the cache directory on the host is owned by 1000, and `farm run` of the rootless
# build (itself rootless) sees them. Then `RUN --mount=type=ssh` (as root and as a USER with
# the mount's uid) and `RUN --network=host` under rootless, with the probe (tests/probe).
# Busybox has no adduser: the user is appended to /etc/passwd and /etc/group.
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
PROBE="$TEST_SRCDIR/farm/tests/probe/probe"
GREET="$TEST_SRCDIR/farm/tests/probe/greet.py"
export SOURCE_DATE_EPOCH=0
ROOTLESS="$T/home-rootless"
ROOTFUL="$T/home-rootful"
mkdir -p "$ROOTLESS" "$ROOTFUL"
printf 'rootless-steps = true\nsubid-range = 200000:65536\nallow-entitlement = network.host\n' \
  >"$ROOTLESS/sandbox.conf"
echo "allow-entitlement = network.host" >"$ROOTFUL/sandbox.conf"
agent_pid=""
# The agent's socket: $T is too long a path for a unix socket.
agent_dir=$(mktemp -d /tmp/farm-rootless-e2e.XXXXXX)
cleanup() {
  [ -z "$agent_pid" ] || kill "$agent_pid" 2>/dev/null
  rm -rf "$agent_dir"
}
trap cleanup EXIT
image_id() { json <(FARM_HOME=$1 "$FARM" inspect "$2") 'j[0]["Id"]'; }

for home in "$ROOTLESS" "$ROOTFUL"; do FARM_HOME=$home busybox_base; done
check "the busybox base is the same image built rootless and rootful" \
  test "$(image_id "$ROOTLESS" busybox:farm-example)" = "$(image_id "$ROOTFUL" busybox:farm-example)"

ctx="$T/ctx"
mkdir -p "$ctx"
cp "$PROBE" "$ctx/probe"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:farm-example
RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group \
 && mkdir -p /home/app && echo hi > /home/app/f && chown -R app:app /home/app \
 && touch /owned && chown 1000:1000 /owned && chmod 0640 /owned
USER app
RUN id -u > /home/app/whoami && touch /home/app/byapp
USER root
RUN --mount=type=cache,id=rootless-e2e,target=/cache,uid=1000,gid=1000 \
    echo data > /cache/x && chown 1000:1000 /cache/x && cp -p /cache/x /fromcache \
 && stat -c 'cache dir %u:%g' /cache
COPY probe /probe
DF
FARM_HOME=$ROOTLESS build rootless "$ctx" -t rl:1
check "rootless build" test $? = 0
FARM_HOME=$ROOTFUL build rootful "$ctx" -t rl:1
check "rootful build" test $? = 0
rootless_id=$(image_id "$ROOTLESS" rl:1)
check "rootless and rootful give the same image ($rootless_id)" \
  test "$rootless_id" = "$(image_id "$ROOTFUL" rl:1)"
check "the cache mount was made with its uid/gid inside the rootless step" \
  grep -aq "cache dir 1000:1000" "$T/rootless.log"
cache_file=$(find "$ROOTLESS" -path '*cache-mounts*' -name x -type f | head -1)
check "the rootless cache directory on the host keeps the image-side owner ($cache_file)" \
  test -n "$cache_file" -a "$(stat -c %u:%g "$cache_file" 2>/dev/null)" = 1000:1000

# farm run of the rootless-built image, itself rootless.
FARM_HOME=$ROOTLESS "$FARM" run rl:1 sh -c 'echo "map $(cat /proc/self/uid_map)"; id -u
  stat -c "%n %u:%g" /owned /home/app/f /home/app/byapp /fromcache; cat /home/app/whoami /fromcache
  echo rewritten > /owned && cat /owned' >"$T/run.out" 2>&1
check "farm run (rootless): the command ran" test $? = 0
check "farm run (rootless): in the range" \
  grep -aqE "^map +0 +200000 +65536" "$T/run.out"
check "farm run (rootless): root inside" grep -aqx 0 "$T/run.out"
for f in /owned /home/app/f /home/app/byapp /fromcache; do
  check "farm run (rootless): $f is 1000:1000" grep -aqx "$f 1000:1000" "$T/run.out"
done
check "farm run (rootless): the USER step ran as 1000" grep -aqx 1000 "$T/run.out"
check "farm run (rootless): the cache's contents were copied" grep -aqx data "$T/run.out"
check "farm run (rootless): root writes a file owned by 1000" grep -aqx rewritten "$T/run.out"
FARM_HOME=$ROOTLESS "$FARM" run -u app rl:1 sh -c 'id -u; echo more >> /home/app/f && cat /home/app/f
  touch /forbidden 2>/dev/null || echo "no write to /"' >"$T/run-app.out" 2>&1
check "farm run -u app (rootless): writes its own files, not /" \
  test "$(tr '\n' ' ' <"$T/run-app.out")" = "1000 hi more no write to / "

# RUN --mount=type=ssh: a throwaway agent with one key, asked from the step (as root, and as a
# USER whose uid the mount names), rootless and rootful.
ssh-keygen -q -t ed25519 -N '' -C rootless-e2e -f "$T/key" </dev/null
ssh-agent -D -a "$agent_dir/agent.sock" >/dev/null 2>&1 &
agent_pid=$!
for _ in $(seq 100); do [ -S "$agent_dir/agent.sock" ] && break; sleep 0.05; done
SSH_AUTH_SOCK="$agent_dir/agent.sock" ssh-add -q "$T/key" 2>/dev/null
cat >"$ctx/Dockerfile.ssh" <<'DF'
FROM rl:1
ARG NONCE
RUN --mount=type=ssh echo "root nonce $NONCE"; /probe ssh-agent; stat -c 'sock %u:%g %a' $SSH_AUTH_SOCK
USER app
RUN --mount=type=ssh,uid=1000,gid=1000,mode=0600 echo "app"; /probe ssh-agent
DF
for mode in rootless rootful; do
  home=$ROOTLESS
  [ "$mode" = rootful ] && home=$ROOTFUL
  SSH_AUTH_SOCK="$agent_dir/agent.sock" FARM_HOME=$home "$FARM" build --progress=plain --ssh default \
    --build-arg NONCE=$$ -f "$ctx/Dockerfile.ssh" "$ctx" >/dev/null 2>"$T/ssh-$mode.log"
  check "ssh mount ($mode): the build succeeded" test $? = 0
  check "ssh mount ($mode): root reaches the agent" \
    test "$(grep -ac "ssh_agent: 1 identities" "$T/ssh-$mode.log")" = 2
  check "ssh mount ($mode): the socket is root's inside" grep -aq "sock 0:0 600" "$T/ssh-$mode.log"
done
[ "$failures" = 0 ] || tail -20 "$T/ssh-rootless.log" >&2

# RUN --network=host under rootless: the host's network (a namespace made here, with a server
# on its 127.0.0.1, and a mount namespace whose /sys is that network namespace's: rootless
# steps get the caller's /sys bound, not a sysfs of their own), still in the user namespace.
cat >"$ctx/Dockerfile.hostnet" <<'DF'
FROM rl:1
ARG NONCE
RUN --network=host echo "nonce $NONCE"; /probe sandbox; /probe connect 127.0.0.1 7101; echo "sys_net:" $(ls /sys/class/net)
DF
FARM_HOME=$ROOTLESS unshare -n -m --propagation private bash -c "ip link set lo up
  mount -t sysfs sysfs /sys
  python3 '$GREET' 127.0.0.1 7101 host-loopback >'$T/greet.log' 2>&1 &
  for _ in \$(seq 100); do grep -q listening '$T/greet.log' 2>/dev/null && break; sleep 0.05; done
  '$FARM' build --progress=plain --allow network.host --build-arg NONCE=$$ \
    -f '$ctx/Dockerfile.hostnet' '$ctx' >/dev/null 2>'$T/hostnet.log'; rc=\$?
  kill \$!; exit \$rc"
check "network=host (rootless): the build succeeded" test $? = 0
check "network=host (rootless): in the range" grep -aq "uid_map: 0 200000 65536" "$T/hostnet.log"
check "network=host (rootless): seccomp mode 2" grep -aq "seccomp: 2" "$T/hostnet.log"
check "network=host (rootless): the host's 127.0.0.1 answers" \
  grep -aq "connect 127.0.0.1:7101: ok host-loopback" "$T/hostnet.log"
check "network=host (rootless): /sys shows the host's interfaces (lo only)" \
  grep -aqE "sys_net: lo$" "$T/hostnet.log"
[ "$failures" = 0 ] || tail -20 "$T/hostnet.log" >&2

finish
