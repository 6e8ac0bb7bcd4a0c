#!/usr/bin/env bash
# Runs docker-compose.yml: the orchestrators (`reed-plugins serve`, container mode, runc and runsc) in containers
# of their own, and the container-mode tests (test/compose) against their APIs. Exits with the tests' status, and leaves no
# container, network or runtime directory of the run behind.
#
#   bash scripts/compose.sh          (npm run test:compose; `npm test` runs it last)
#
# No registry is reachable on our machines, so the orchestrator's image builds on the base image made FROM
# scratch out of this machine's Node (`reed-plugins images`). Set REED_BASE_IMAGE to use another.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -d dist ] || npm run build
if [ -z "${REED_BASE_IMAGE:-}" ]; then
  REED_BASE_IMAGE=$(node bin/reed-plugins.js images --json | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).base));')
  node scripts/compose-rootfs.mjs
else
  node scripts/compose-rootfs.mjs --empty
fi
export REED_BASE_IMAGE
# The same path inside the containers as on this machine (see docker-compose.yml): made here, so that it is
# ours and not a directory the engine creates as root on first mount.
made_dir=
if [ -z "${REED_COMPOSE_DIR:-}" ]; then
  REED_COMPOSE_DIR=$(mktemp -d /tmp/reed-compose-XXXXXX)
  made_dir=$REED_COMPOSE_DIR
fi
export REED_COMPOSE_DIR
chmod 755 "$REED_COMPOSE_DIR"
project="reed-compose-$$"

cleanup() {
  docker-compose -p "$project" down --remove-orphans --timeout 60 >/dev/null 2>&1 || true
  [ -z "$made_dir" ] || rm -rf "$made_dir"
}
trap cleanup EXIT

echo "compose: base image $REED_BASE_IMAGE, runtime directory $REED_COMPOSE_DIR" >&2
status=0
docker-compose -p "$project" up --build --exit-code-from tests || status=$?

# The orchestrators were stopped with SIGTERM: each must have removed every plugin container it made.
for service in orchestrator orchestrator-runsc; do
  id=$(docker-compose -p "$project" ps -q "$service" || true)
  [ -n "$id" ] || continue
  left=$(docker ps -aq --filter "label=reed.host.container=$id")
  if [ -n "$left" ]; then
    echo "compose: the stopped $service left plugin containers behind: $left" >&2
    docker rm -f $left >/dev/null
    status=1
  fi
done
exit $status
