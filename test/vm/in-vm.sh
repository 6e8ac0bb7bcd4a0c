#!/bin/sh
# Run inside scripts/cgroup2-vm.sh's VM (by its reed-vm-run, as root under systemd): $1 the run directory (shared
# read-write with the host), $2 this checkout's path there. Prints what the machine's cgroups are, then runs vitest
# with the run directory's args (one a line); its output goes to the console and to $1/in-vm.log. Exits with
# vitest's status.
set -u
run="$1"
repo="$2"
cd "$repo" || exit 1
log="$run/in-vm.log"
{
  echo "== reed VM: kernel $(uname -r), node $(node --version), bwrap $(bwrap --version 2>&1)"
  echo "== cgroup mounts:"
  grep cgroup /proc/mounts
  echo "== /sys/fs/cgroup/cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>&1)"
  echo "== /sys/fs/cgroup/cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control 2>&1)"
  echo "== this process's cgroup: $(cat /proc/self/cgroup)"
} 2>&1 | tee "$log"
# shellcheck disable=SC2046 # one argument a line, none with spaces
{
  CI=true node node_modules/vitest/vitest.mjs run $(cat "$run/args")
  echo $? >"$run/vitest.status"
} 2>&1 | tee -a "$log"
status="$(cat "$run/vitest.status" 2>/dev/null || echo 1)"
echo "== vitest status: $status" | tee -a "$log"
exit "$status"
