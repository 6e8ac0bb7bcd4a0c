#!/bin/sh
# `npm run build`: dist/ from the TypeScript sources (the runner and the discovery worker then bundled), then the example and fixture plugins (scripts/build-plugins.mjs).
# Builds run one at a time (a lock beside the other temporary files) and tsc writes into a fresh directory that
# replaces dist/ only once complete, so a test or a second build running meanwhile never sees dist/ half-made or
# missing. The fresh directory sits beside dist/ at the same depth, so the source maps' relative paths hold.
set -e
cd "$(dirname "$0")/.."
lock="${TMPDIR:-/tmp}/reed-build-$(pwd | cksum | cut -d' ' -f1)"
exec 9>"$lock.lock"
asked=$(date +%s%N)
flock 9
# A build that started after this one was asked for compiled everything this one would: waiting builds coalesce.
if [ -f "$lock.started" ] && [ "$(cat "$lock.started")" -gt "$asked" ]; then
  echo "build: dist/ is from a build that started after this one was asked for; nothing to do"
  exit 0
fi
started=$(date +%s%N)
next=".dist-next.$$"
old=".dist-old.$$"
rm -rf "$next"
trap 'rm -rf "$next"' EXIT
npx tsc -p tsconfig.build.json --outDir "$next"
# The runner program and the discovery worker, bundled (scripts/bundle.mjs says why).
node scripts/bundle.mjs "$next"
# bwrap's starter for root hosts on cgroup v1 (scripts/build-starter.mjs says why).
node scripts/build-starter.mjs "$next"
if [ -d dist ]; then mv dist "$old"; fi
mv "$next" dist
rm -rf "$old"
node scripts/build-plugins.mjs
echo "$started" >"$lock.started"
