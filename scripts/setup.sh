#!/usr/bin/env bash
# Makes a fresh Debian 12 machine ready to build and test reed-plugin-loader. Idempotent: it only does what
# is missing, and reuses a Docker engine that already answers without changing it.
#
#   bash scripts/setup.sh              npm dependencies, build, a Docker engine with gVisor (runsc), docker-compose
#   bash scripts/setup.sh --no-docker  npm dependencies and build only (enough for `npm start`)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

want_docker=1
for arg in "$@"; do
  case "$arg" in
    --no-docker) want_docker=0 ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { printf 'setup: %s\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else log "root is needed for: $*"; return 1
  fi
}

apt_updated=0
# Installs those of the named Debian packages that are not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- toolchains for the example and fixture plugins (C to wasm32-wasi) -------------------------------
apt_install clang lld wasi-libc libclang-rt-14-dev-wasm32

# --- the serve API's TLS tests make their certificates with the openssl CLI (test/helpers/tls.ts) ------------
apt_install openssl

# --- the metrics test scrapes serve with a real Prometheus server and queries its HTTP API (test/integration/prometheus.test.ts) ---
apt_install prometheus

# --- tenants' quotas.filesystem_bytes: an ext4 image per tenant, loop-mounted (src/tenants/tenant-volume.ts) ---
apt_install e2fsprogs mount

# --- process mode's sandbox: bubblewrap (src/backends/process/bubblewrap.ts); without it process mode refuses to run ---
apt_install bubblewrap

# --- npm dependencies (npm ci also compiles the TypeScript, through `prepare`) -----------------------
stamp=node_modules/.reed-setup-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  log "npm ci"
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi

# --- process mode: runners started by root run as nobody and must reach this package's code ----------
if [ "$(id -u)" = 0 ]; then
  dir=$(pwd)
  while [ "$dir" != / ]; do
    if [ $(( 0$(stat -c %a "$dir") & 1 )) = 0 ]; then
      log "chmod o+x $dir (process-mode runners run as nobody and must pass through it)"
      chmod o+x "$dir"
    fi
    dir=$(dirname "$dir")
  done
fi

# --- plugins and fixtures from their sources (.wat, .c, AssemblyScript) ------------------------------
node scripts/build-plugins.mjs

[ $want_docker = 1 ] || exit 0

# --- docker-compose (a client only: docker-compose.yml runs the orchestrator in a container) ----------
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose

# --- the swarm tests: a registry for the test swarm's nodes (scripts/swarm-up.sh starts it; the package's
# own service is not used) ---
apt_install docker-registry tini iproute2 util-linux curl

# --- Docker engine --------------------------------------------------------------------------------------
docker_answers() { node scripts/docker-ping.mjs >/dev/null 2>&1; }

if docker_answers; then
  log "a Docker engine answers; using it as it is"
  exit 0
fi

# Register gVisor (and the cgroupfs driver) before the engine first starts, so that an engine the package itself
# starts has them too.
# --host-uds=open: without it gVisor refuses the connect-back to the bind-mounted Unix socket.
# --network=none: runsc containers get no network stack at all.
as_root mkdir -p /etc/docker
as_root node -e '
  const fs = require("node:fs");
  const file = "/etc/docker/daemon.json";
  let config = {};
  try { config = JSON.parse(fs.readFileSync(file, "utf8")); } catch {}
  config.runtimes = config.runtimes ?? {};
  config.runtimes.runsc = { path: "/usr/bin/runsc", runtimeArgs: ["--network=none", "--host-uds=open"] };
  // cgroupfs: the containers of a tenant go under a cgroup path the host makes with the limits of the tenant
  // (CgroupParent, docs/TENANTS.md); the systemd driver (the default on cgroup v2 with systemd) takes only slices.
  const opts = config["exec-opts"] ?? [];
  if (!opts.some((o) => o.startsWith("native.cgroupdriver="))) config["exec-opts"] = [...opts, "native.cgroupdriver=cgroupfs"];
  fs.writeFileSync(file, JSON.stringify(config, null, 2) + "\n");
'
apt_install docker.io runsc

if ! docker_answers; then
  log "starting dockerd (log: /var/log/reed-dockerd.log)"
  as_root bash -c 'nohup setsid dockerd >/var/log/reed-dockerd.log 2>&1 </dev/null &'
fi
for _ in $(seq 1 90); do
  if docker_answers; then log "Docker engine ready"; exit 0; fi
  sleep 1
done
log "dockerd did not answer within 90 s; the end of its log:"
tail -n 30 /var/log/reed-dockerd.log >&2 || true
exit 1
