#!/bin/sh
# `npm run build`: dist/ from the TypeScript sources, then the example and fixture plugins (scripts/build-plugins.mjs).
# Builds run one at a time (a lock beside the other temporary files) and tsc writes into a fresh directory that
# replaces dist/ only once complete, so a test or a second build running meanwhile never sees dist/ half-made or
# missing. The fresh directory sits beside dist/ at the same depth, so the source maps' relative paths hold.
set -e
cd "$(dirname "$0")/.."
exec 9>"${TMPDIR:-/tmp}/reed-build-$(pwd | cksum | cut -d' ' -f1).lock"
flock 9
next=".dist-next.$$"
old=".dist-old.$$"
rm -rf "$next"
trap 'rm -rf "$next"' EXIT
npx tsc -p tsconfig.build.json --outDir "$next"
if [ -d dist ]; then mv dist "$old"; fi
mv "$next" dist
rm -rf "$old"
node scripts/build-plugins.mjs
