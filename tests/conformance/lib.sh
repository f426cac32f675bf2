# The reference engine and the registry for the conformance tests (sourced).
#
# start_engines starts, privately and on loopback only:
#   - a Distribution registry (Debian's docker-registry) on 127.0.0.1 and a free port,
#   - dockerd (Debian's docker.io: 20.10 with BuildKit) with its own data/exec roots and socket,
#     no bridge and no iptables changes (RUN steps use --network host),
#   - an ssh-agent without keys, for RUN --mount=type=ssh,
# and builds the base images with farm ({{BASE}}, {{ONBUILD_BASE}}), pushed to the registry,
# from which both engines pull them. Everything started here is stopped, and its directories
# removed, by stop_engines (run from an EXIT trap: also on failure or interruption).
#
# Sets: W (work dir), REG (127.0.0.1:PORT), BASE, ONBUILD_BASE, FARM, DOCKER_HOST,
#       FARM_HOME, SSH_AUTH_SOCK (an ssh-agent of its own), and the functions dk (the docker
#       client) and log.
set -uo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

HERE="$TEST_SRCDIR/farm/tests/conformance"
FARM="$TEST_SRCDIR/farm/cli/farm"
# Short paths: dockerd's and containerd's unix sockets must fit in 108 bytes.
W=$(mktemp -d /tmp/farm-conf.XXXXXX)
export FARM_HOME="$W/farm"
# The cases' ADD <url> sources are on the loopback registry, which steps (and ADD) may not
# reach by default (issue 13); docker's daemon fetches them on the host's network. Name it.
mkdir -p "$FARM_HOME"
echo "allow-network = 127.0.0.1/32" >"$FARM_HOME/sandbox.conf"
export DOCKER_HOST="unix://$W/docker.sock"
export DOCKER_BUILDKIT=1
export DOCKER_CONFIG="$W/docker-config"
mkdir -p "$DOCKER_CONFIG"
REG_PID=""
DOCKERD_PID=""
AGENT_PID=""

log() { echo "conformance: $*" >&2; }

# The 20.10 client with BuildKit (/usr/local/bin/docker, if any, is a newer one without buildx).
dk() { /usr/bin/docker "$@"; }

# xml_escape TEXT: TEXT for an XML attribute or element (JUnit output).
xml_escape() {
  printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for SECONDS DESCRIPTION CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}

stop_pid() {
  local pid=$1 what=$2
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      log "$what (pid $pid) did not stop: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
      break
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

stop_engines() {
  local rc=$?
  # dockerd stops the containerd it started (its child) before it exits.
  stop_pid "$DOCKERD_PID" dockerd
  if [ -f "$W/exec/containerd/containerd.pid" ]; then
    stop_pid "$(cat "$W/exec/containerd/containerd.pid")" containerd
  fi
  stop_pid "$REG_PID" docker-registry
  stop_pid "$AGENT_PID" ssh-agent
  # dockerd leaves mounts under its roots (overlay, shm, netns): unmount before removing.
  if [ -d "$W" ]; then
    grep -o " $W/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null
    done
    rm -rf "$W"
  fi
  return $rc
}

start_registry() {
  local port
  port=$(free_port)
  REG="127.0.0.1:$port"
  cat >"$W/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry
  delete:
    enabled: true
http:
  addr: $REG
  secret: conformance
EOF
  docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
  REG_PID=$!
  wait_for 20 "the registry on $REG" curl -sf "http://$REG/v2/" ||
    { cat "$W/registry.log" >&2; return 1; }
}

start_dockerd() {
  dockerd --data-root "$W/root" --exec-root "$W/exec" -H "$DOCKER_HOST" \
    --iptables=false --ip6tables=false --bridge=none --pidfile "$W/dockerd.pid" \
    >"$W/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  wait_for 60 dockerd dk version || { tail -20 "$W/dockerd.log" >&2; return 1; }
}

# subst FILE: replaces the {{...}} placeholders in place (same number of lines).
subst() {
  sed -i -e "s|{{BASE}}|$BASE|g" -e "s|{{ONBUILD_BASE}}|$ONBUILD_BASE|g" \
    -e "s|{{REGISTRY}}|$REG|g" "$1"
}

build_bases() {
  BASE="$REG/conformance/busybox:1"
  ONBUILD_BASE="$REG/conformance/onbuild:1"
  local ctx="$W/base"
  mkdir -p "$ctx"
  cp "$HERE/base/Dockerfile" "$HERE/base/Dockerfile.onbuild" "$ctx/"
  cp /bin/busybox "$ctx/busybox"
  mkdir -p "$ctx/rootdirs/dev" "$ctx/rootdirs/proc" "$ctx/rootdirs/sys"
  : >"$ctx/hosts"
  : >"$ctx/resolv.conf"
  subst "$ctx/Dockerfile.onbuild"
  SOURCE_DATE_EPOCH=0 "$FARM" build --progress=plain -t "$BASE" "$ctx" >"$W/base.log" 2>&1 &&
    "$FARM" push "$BASE" >>"$W/base.log" 2>&1 &&
    SOURCE_DATE_EPOCH=0 "$FARM" build --progress=plain -t "$ONBUILD_BASE" \
      -f "$ctx/Dockerfile.onbuild" "$ctx" >>"$W/base.log" 2>&1 &&
    "$FARM" push "$ONBUILD_BASE" >>"$W/base.log" 2>&1 ||
    { tail -30 "$W/base.log" >&2; log "could not build the base images"; return 1; }
}

# An ssh-agent (no keys) for RUN --mount=type=ssh with --ssh default: SSH_AUTH_SOCK.
start_ssh_agent() {
  export SSH_AUTH_SOCK="$W/agent.sock"
  ssh-agent -D -a "$SSH_AUTH_SOCK" >"$W/ssh-agent.log" 2>&1 &
  AGENT_PID=$!
  wait_for 10 ssh-agent test -S "$SSH_AUTH_SOCK"
}

start_engines() {
  trap stop_engines EXIT
  trap 'exit 130' INT TERM
  start_ssh_agent || return 1
  start_registry || return 1
  start_dockerd || return 1
  build_bases || return 1
}
