#!/usr/bin/env bash
# Runs the unit, security and process-mode tests on the other supported Node majors (22 and 24), with Node builds
# from the npm registry (the node-linux-<arch> packages), kept under node_modules/.cache/reed-node/<major>. The main suite (npm test)
# runs on the machine's own Node (20 on Debian 12 images here).
#
#   bash scripts/other-nodes.sh            every major in NODE_MAJORS (default "22 24")
#   NODE_MAJORS=24 bash scripts/other-nodes.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

majors=${NODE_MAJORS:-"22 24"}
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "other-nodes: no Node package for $(uname -m)" >&2; exit 1 ;;
esac

# Process mode, the integration tests that start runners, and the README's library example.
tests=(test/unit test/security test/integration/cli.test.ts test/integration/host-death.test.ts
  test/integration/library-example.test.ts)

for major in $majors; do
  dir=node_modules/.cache/reed-node/$major
  node_bin=$dir/node_modules/node-linux-$arch/bin/node
  if [ ! -x "$node_bin" ]; then
    echo "other-nodes: installing node-linux-$arch@$major into $dir" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "node-linux-$arch@$major" >&2
  fi
  # Runners are started with this Node (process.execPath) and must reach it as their own uid: every directory on
  # the way is passable (setup.sh already made the package's own directories so) and the build readable.
  chmod -R o+rX "$dir"
  for d in node_modules node_modules/.cache node_modules/.cache/reed-node; do chmod o+x "$d"; done
  echo "other-nodes: Node $("$node_bin" --version): ${tests[*]}" >&2
  "$node_bin" node_modules/vitest/vitest.mjs run "${tests[@]}"
done
