#!/usr/bin/env bash
# Starts a Docker Swarm of NODES engines on this one machine, beside (never touching) the main engine:
#
#   bash scripts/swarm-up.sh NET [NODES]      NET: 0-255, names everything of this swarm; NODES: 2 by default
#   bash scripts/swarm-down.sh NET            takes it all away again (also after a crash, from the state files)
#
# Layout (all names start with rsw<NET>, all files under /run/reed-swarm/<NET> and /var/lib/reed-swarm/<NET>):
#   - netns rsw<NET>-hub: a bridge (10.231.NET.254/24) and the registry (Debian's docker-registry) on :5000;
#   - netns rsw<NET>-n<k>: one per node, its veth (10.231.NET.k/24) on the hub's bridge; a dockerd with its own
#     data root, exec root, pid file, socket (/run/reed-swarm/<NET>/n<k>.sock) and its own containerd (the one
#     dockerd starts under its exec root), in a mount and PID namespace of its own: everything the node starts
#     (containerd, shims, containers) dies with it, and its mounts go with its mount namespace;
#   - a veth from the host (10.231.NET.253) onto the hub's bridge: the host reaches the nodes and the registry.
# Node 1 is the manager (swarm init), the others join as workers. Every engine trusts the registry over plain HTTP
# (insecure-registries: it is only on the hub's bridge) and sets no-new-privileges on every container (Swarm's API
# cannot ask it per service before API 1.50, see docs/SCALE.md). Prints "registry HOST:PORT", then per node
# "node <k> <socket> <address>".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

net=${1:?usage: swarm-up.sh NET [NODES]}
nodes=${2:-2}
[[ "$net" =~ ^[0-9]+$ ]] && [ "$net" -le 255 ] || { echo "swarm-up: NET must be 0-255" >&2; exit 2; }
[[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 1 ] && [ "$nodes" -le 9 ] || { echo "swarm-up: NODES must be 1-9" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "swarm-up: must run as root (network namespaces, dockerd)" >&2; exit 1; }

p=rsw$net
run=/run/reed-swarm/$net
lib=/var/lib/reed-swarm/$net
subnet=10.231.$net
registry=$subnet.254:5000
log() { printf 'swarm-up: %s\n' "$*" >&2; }

if [ -e "$run" ] || ip netns list | grep -q "^$p-"; then
  echo "swarm-up: swarm $net exists already (bash scripts/swarm-down.sh $net)" >&2
  exit 1
fi
for tool in dockerd docker-registry tini-static nsenter unshare; do
  command -v "$tool" >/dev/null || { echo "swarm-up: $tool is missing (bash scripts/setup.sh)" >&2; exit 1; }
done

fail() {
  log "$1; taking the partial swarm down"
  bash scripts/swarm-down.sh "$net" >&2 || true
  exit 1
}
trap 'fail "failed at line $LINENO"' ERR

mkdir -p "$run" "$lib"
echo "$nodes" >"$run/nodes"

# --- the hub: a bridge in a namespace of its own (no firewall there), and the host's link onto it -------------
ip netns add "$p-hub"
ip -n "$p-hub" link set lo up
ip -n "$p-hub" link add br0 type bridge
ip -n "$p-hub" addr add "$subnet.254/24" dev br0
ip -n "$p-hub" link set br0 up
ip link add "${p}h" type veth peer name "${p}hb" netns "$p-hub"
ip -n "$p-hub" link set "${p}hb" master br0 up
ip addr add "$subnet.253/24" dev "${p}h"
ip link set "${p}h" up

# --- the registry, on the hub ----------------------------------------------------------------------------
mkdir -p "$lib/registry"
cat >"$run/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $lib/registry
  delete:
    enabled: true
http:
  addr: $registry
EOF
setsid nsenter --net="/run/netns/$p-hub" docker-registry serve "$run/registry.yml" \
  >"$run/registry.log" 2>&1 </dev/null &
echo $! >"$run/registry.pid"

# --- the nodes ------------------------------------------------------------------------------------------------
for k in $(seq 1 "$nodes"); do
  ns=$p-n$k
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "${p}n${k}" netns "$p-hub" type veth peer name eth0 netns "$ns"
  ip -n "$p-hub" link set "${p}n${k}" master br0 up
  ip -n "$ns" addr add "$subnet.$k/24" dev eth0
  ip -n "$ns" link set eth0 up
  mkdir -p "$lib/n$k" "$run/n$k"
  cat >"$run/n$k.json" <<EOF
{
  "data-root": "$lib/n$k",
  "exec-root": "$run/n$k",
  "pidfile": "$run/n$k.dockerd.pid",
  "hosts": ["unix://$run/n$k.sock"],
  "insecure-registries": ["$registry"],
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "cgroup-parent": "/$ns",
  "no-new-privileges": true,
  "log-level": "warn"
}
EOF
  # The node's own mount, PID and UTS namespaces (its host name: rsw<NET>-n<k>). In its mount namespace: a sysfs
  # of its network namespace (as `ip netns exec` makes) with the cgroup tree kept, and an /etc/docker of its own
  # (the engine's identity, key.json, is made there; the main engine's is not read). tini is PID 1 there (it reaps
  # the shims the node's containerd leaves to it); when it dies the kernel kills everything else in the namespace.
  # A containerd of the system, if one runs, is hidden so that dockerd starts its own (sharing one would keep the
  # node's containers alive after the node is killed).
  setsid nsenter --net="/run/netns/$ns" \
    unshare --mount --pid --uts --fork --kill-child --mount-proc \
    sh -c 'set -e
           hostname "$3"
           if [ -e /run/containerd ]; then mount -t tmpfs reed-swarm /run/containerd; fi
           mkdir -p "$2" "$4"; mount --bind "$4" /etc/docker
           mount --rbind /sys/fs/cgroup "$2"
           mount -t sysfs reed-swarm /sys; mount --rbind "$2" /sys/fs/cgroup; umount -l "$2"
           exec tini-static -- dockerd --config-file "$1"' sh "$run/n$k.json" "$run/n$k.cgroup" "$ns" "$lib/n$k.etc" \
    >"$run/n$k.log" 2>&1 </dev/null &
  echo $! >"$run/n$k.pid"
done

docker_n() { local k=$1; shift; docker -H "unix://$run/n$k.sock" "$@"; }

wait_for() { # what, seconds, command...
  local what=$1 seconds=$2 i
  shift 2
  for i in $(seq 1 $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  fail "$what did not come up within ${seconds}s"
}
wait_for "the registry" 60 curl -sf "http://$registry/v2/"
for k in $(seq 1 "$nodes"); do
  wait_for "dockerd of node $k (log: $run/n$k.log)" 120 docker_n "$k" version
done

# --- the swarm: node 1 manages, the others work --------------------------------------------------------------
# Overlay networks take their subnets from 10.232.0.0/16, away from the hub's 10.231.NET.0/24. A node is seen as
# down after ~3 missed heartbeats of 2 s (the default 5 s makes a lost node take long to notice).
docker_n 1 swarm init --advertise-addr "$subnet.1" --listen-addr "$subnet.1:2377" \
  --default-addr-pool 10.232.0.0/16 --default-addr-pool-mask-length 24 --dispatcher-heartbeat 2s >/dev/null
token=$(docker_n 1 swarm join-token -q worker)
for k in $(seq 2 "$nodes"); do
  docker_n "$k" swarm join --token "$token" --advertise-addr "$subnet.$k" --listen-addr "$subnet.$k:2377" \
    "$subnet.1:2377" >/dev/null
done
all_ready() { [ "$(docker_n 1 node ls --format '{{.Status}}' | grep -c '^Ready$')" = "$nodes" ]; }
wait_for "all $nodes nodes Ready" 120 all_ready

trap - ERR
echo "registry $registry"
for k in $(seq 1 "$nodes"); do echo "node $k unix://$run/n$k.sock $subnet.$k"; done
