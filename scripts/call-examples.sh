#!/usr/bin/env bash
# Part of `npm start`: calls each bundled example plugin once and prints what it returns.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
call() { node bin/reed-plugins.js call --plugin-dir examples/plugins --no-default-paths "$@"; echo; }
call_with() { node bin/reed-plugins.js call "$@"; echo; }
export REED_LOG_LEVEL=${REED_LOG_LEVEL:-warn}
call example.hello greet --input world
call example.notes-c publish --input "a note"
printf 'one two\nthree\n' | call example.wordcount _start --input-file -
call example.as-greeter greet --input Ada
# The native example runs in-process only under a policy that trusts its signer:
call_with --config examples/reed-trusted.toml example.native-c greet --input you
