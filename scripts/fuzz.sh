#!/usr/bin/env bash
# Long fuzz runs (issue 17): every target in test/fuzz/ with REED_FUZZ_RUNS runs each (default 10000), from
# REED_FUZZ_SEED (default: one picked from the clock, printed, so a failure can be replayed with it).
#   npm run fuzz                                  every target, 10000 runs each
#   REED_FUZZ_RUNS=100000 npm run fuzz -- frames  one file, longer
# A failure prints fast-check's counterexample, its seed and path; make it a regression test (docs/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export REED_FUZZ_RUNS="${REED_FUZZ_RUNS:-10000}"
export REED_FUZZ_SEED="${REED_FUZZ_SEED:-$(date +%s)}"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
export REED_FUZZ_REPORT="$report"
echo "fuzz: REED_FUZZ_RUNS=$REED_FUZZ_RUNS REED_FUZZ_SEED=$REED_FUZZ_SEED ($(uptime))"
targets=()
for name in "$@"; do targets+=("test/fuzz/$name"); done
[ ${#targets[@]} -gt 0 ] || targets=(test/fuzz)
status=0
npx vitest run --testTimeout=0 --hookTimeout=0 "${targets[@]}" || status=$?
echo
echo "| target | runs | seed | seconds |"
echo "| --- | ---: | ---: | ---: |"
node -e '
  const lines = require("node:fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
  for (const l of lines) {
    const r = JSON.parse(l);
    console.log(`| ${r.target} | ${r.runs} | ${r.seed} | ${(r.ms / 1000).toFixed(1)} |`);
  }' "$report"
exit "$status"
