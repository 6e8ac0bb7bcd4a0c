#!/usr/bin/env bash
# Takes away a swarm that scripts/swarm-up.sh started, leaving nothing: its engines and everything they started
# (killed with their PID namespaces), the registry, the network namespaces and veths, mounts, cgroups and files.
# Works from what is there (names and state files), so it also cleans up after a crashed test or a half-made swarm.
#
#   bash scripts/swarm-down.sh NET          one swarm
#   bash scripts/swarm-down.sh all          every swarm of this machine
#   bash scripts/swarm-down.sh NET kill K   only kills node K (as a machine that loses power: its namespace stays)
#
# The main engine is not touched (nothing here goes near /var/run/docker.sock or its data).
set -uo pipefail

log() { printf 'swarm-down: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { echo "swarm-down: must run as root" >&2; exit 1; }

# The pid namespace's first process: killing it with SIGKILL kills the whole node (unshare --kill-child).
kill_pidfile() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  # Only a process that is still the one we started (its command line names our state files).
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'reed-swarm'; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# Processes still in the node's cgroups (containers) or network namespace.
node_pids() {
  local net=$1 k=$2 f
  ip netns pids "rsw$net-n$k" 2>/dev/null
  for f in /sys/fs/cgroup/*/"rsw$net-n$k" /sys/fs/cgroup/"rsw$net-n$k"; do
    [ -d "$f" ] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
}

wait_gone() {
  local i pids
  for i in $(seq 1 150); do
    pids=$(node_pids "$1" "$2" | sort -u | tr '\n' ' ')
    [ -z "${pids// /}" ] && return 0
    [ "$i" = 50 ] && kill -KILL $pids 2>/dev/null
    sleep 0.2
  done
  log "node $2 of swarm $1: processes left: $pids"
  return 1
}

kill_node() {
  local net=$1 k=$2
  # As a machine losing power: its link goes first, so that nothing it would send as it dies (a FIN, an RST, a
  # last heartbeat) reaches anyone; the others learn of the loss only from silence.
  ip -n "rsw$net-n$k" link set eth0 down 2>/dev/null || true
  kill_pidfile "/run/reed-swarm/$net/n$k.pid"
  wait_gone "$net" "$k"
}

remove_cgroups() { # every cgroup directory of the node, deepest first
  local net=$1 k=$2 top
  for top in /sys/fs/cgroup/*/"rsw$net-n$k" /sys/fs/cgroup/"rsw$net-n$k"; do
    [ -d "$top" ] || continue
    find "$top" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ -d "$top" ] && log "cgroup $top could not be removed"
  done
}

down() {
  local net=$1 status=0 k ns mnt
  local run=/run/reed-swarm/$net lib=/var/lib/reed-swarm/$net
  # Nodes: from the state file, and any namespace of that name left by a half-made swarm.
  local nodes=() 
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^rsw$net-n[0-9]+$"); do nodes+=("${ns##*-n}"); done
  for k in $(seq 1 "$(cat "$run/nodes" 2>/dev/null || echo 0)"); do nodes+=("$k"); done
  for k in $(printf '%s\n' "${nodes[@]}" | sort -u); do
    kill_node "$net" "$k" || status=1
    remove_cgroups "$net" "$k"
  done
  if [ -f "$run/registry.pid" ]; then
    kill_pidfile "$run/registry.pid"
    local pid
    pid=$(cat "$run/registry.pid")
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
  for pid in $(ip netns pids "rsw$net-hub" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  # Mounts of ours in this namespace (there should be none: the nodes mount in namespaces of their own).
  for mnt in $(awk -v a="$run" -v b="$lib" 'index($5, a) == 1 || index($5, b) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$mnt" 2>/dev/null && log "unmounted $mnt"
  done
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^rsw$net-(hub|n[0-9]+)$"); do
    ip netns del "$ns" || status=1
  done
  ip link del "rsw${net}h" 2>/dev/null || true
  rm -rf "$run" "$lib"
  return $status
}

target=${1:?usage: swarm-down.sh NET|all [kill K]}
if [ "${2:-}" = kill ]; then
  kill_node "$target" "${3:?node number}"
  exit
fi
if [ "$target" = all ]; then
  nets=$( (ls /run/reed-swarm /var/lib/reed-swarm 2>/dev/null; ip netns list | awk '{print $1}' |
    sed -nE 's/^rsw([0-9]+)-.*/\1/p') | grep -E '^[0-9]+$' | sort -u)
  status=0
  for n in $nets; do down "$n" || status=1; done
  rmdir /run/reed-swarm /var/lib/reed-swarm 2>/dev/null
  exit $status
fi
[[ "$target" =~ ^[0-9]+$ ]] || { echo "swarm-down: NET must be a number or all" >&2; exit 2; }
down "$target"; status=$?
rmdir /run/reed-swarm /var/lib/reed-swarm 2>/dev/null
exit $status
