# "Hosts" on one machine for tests/farm and bench/farm (sourced): each host is a network
# namespace with an eth0 on a bridge in a switch namespace, in a private /24 that exists only
# inside them (nothing is routed outside). Needs root and iproute2.
#
#   NETNS_PREFIX=ft$$ NETNS_NET=10.1.2
#   declare -A NETNS_ADDR=([cache]=2 [sched]=3)   # host → last octet
#   netns_up cache sched || exit 1                # namespaces ${NETNS_PREFIX}cache, ...
#   ip netns exec "${NETNS_PREFIX}cache" ...      # NETNS_NET.2
#   netns_down cache sched                        # kills their processes, deletes them

# A random private /24 (10.20-219.1-250.0/24).
netns_random_net() { echo "10.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1))"; }

netns_up() {
  local sw="${NETNS_PREFIX}sw" h ns
  ip netns add "$sw" || { echo "FATAL: ip netns add failed" >&2; return 1; }
  ip -n "$sw" link add br0 type bridge || return 1
  ip -n "$sw" link set br0 up
  ip -n "$sw" link set lo up
  for h in "$@"; do
    ns="${NETNS_PREFIX}$h"
    ip netns add "$ns" || return 1
    ip -n "$sw" link add "p-$h" type veth peer name eth0 netns "$ns" || return 1
    ip -n "$sw" link set "p-$h" master br0 up
    ip -n "$ns" addr add "$NETNS_NET.${NETNS_ADDR[$h]}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

# Kills every process in the namespaces, then deletes them (the veths go with them).
netns_down() {
  local h
  # (|| true: callers may run under set -e and -o pipefail; cleanup must go on regardless)
  for h in "$@" sw; do
    ip netns pids "${NETNS_PREFIX}$h" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  sleep 0.3
  for h in "$@" sw; do ip netns del "${NETNS_PREFIX}$h" 2>/dev/null || true; done
}
