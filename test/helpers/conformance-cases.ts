import { join } from 'node:path';
import type { SandboxMode } from '../../src/manifest/types.js';
import { REPO } from './cli.js';

/**
 * The conformance suite: every example plugin and every hostile case, from one table, in every mode this
 * machine runs. The same plugin must give the same output or the same error code in each mode.
 */
export const MODES: { name: string; mode: SandboxMode; reedToml?: string; runnerTransport?: 'tls' }[] = [
  { name: 'none', mode: 'none' },
  { name: 'process', mode: 'process' },
  // The runner dials back over TCP with TLS (src/transport/tls-transport.ts) instead of the Unix socket.
  { name: 'process over TLS', mode: 'process', runnerTransport: 'tls' },
  { name: 'container (runc)', mode: 'container', reedToml: '[sandbox]\nruntime = "runc"\n' },
  { name: 'container (runsc, gVisor)', mode: 'container', reedToml: '[sandbox]\nruntime = "runsc"\n' },
];

/** The host settings the suite runs under: the examples' key trusted, native code allowed in-process, more fuel. */
export const CONFORMANCE_TOML =
  `[signatures]\ntrusted_keys = ["${join(REPO, 'examples/keys/examples.pub')}"]\n` +
  '[policy]\nallow_native_in_process = true\n[limits]\nfuel_per_call = 50000000\n';

type Expect = { output: string } | { code: string; causeCode?: string };
export const CALLS: [plugin: string, fn: string, input: string, expected: Expect][] = [
  ['example.hello', 'greet', 'world', { output: 'Hello, world!' }],
  ['example.hello', 'echo', 'x'.repeat(64), { output: 'x'.repeat(64) }],
  ['example.hello', 'greeting', '', { output: '"Hello"' }],
  ['example.hello', 'nope', '', { code: 'function_not_found' }],
  ['example.notes-c', 'put', 'k=v', { output: '' }],
  ['example.notes-c', 'get', 'k', { output: 'v' }],
  ['example.notes-c', 'get', 'missing', { code: 'plugin_error' }],
  ['example.notes-c', 'publish', 'hi', { output: '"createdBy":"example.notes-c"' }],
  ['example.wordcount', '_start', 'one two\n', { output: '1 2 8\n' }],
  ['example.wordcount', '_start', '', { code: 'plugin_error' }],
  ['example.as-greeter', 'greet', 'Ada', { output: 'Good day, Ada! (from AssemblyScript)' }],
  ['example.native-c', 'greet', 'C', { output: 'Hello from C, C!' }],
  ['example.native-c', 'put', 'n=1', { output: '' }],
  ['example.native-c', 'get', 'n', { output: '1' }],
  ['hostile.spin', 'spin', '', { code: 'fuel_exhausted' }],
  ['hostile.recursion', 'recurse', '', { code: 'wasm_stack_overflow' }],
  ['hostile.big-output', 'flood', '', { code: 'output_too_large' }],
  ['hostile.quota', 'fill', '', { code: 'storage_quota_exceeded' }],
  ['hostile.no-permission', 'read', '', { code: 'permission_denied' }],
  ['hostile.no-permission', 'emit', '', { code: 'permission_denied' }],
  ['hostile.memory-grow', 'grow', '', { code: 'plugin_error' }],
  ['hostile.out-of-bounds', 'storage_get', 'x', { code: 'wasm_out_of_bounds' }],
  ['hostile.out-of-bounds', 'output_write', 'x', { code: 'wasm_out_of_bounds' }],
  ['hostile.out-of-bounds', 'wasi_fd_write', 'x', { code: 'wasm_out_of_bounds' }],
  ['hostile.wasi-fs', 'open', '', { output: 'EBADF' }], // no filesystem granted: fd 3 is not open
  ['hostile.start-loop', 'ok', '', { code: 'plugin_failed', causeCode: 'fuel_exhausted' }],
  ['hostile.big-initial', 'ok', '', { code: 'plugin_failed', causeCode: 'wasm_memory_limit' }],
  ['hostile.unknown-import', 'ok', '', { code: 'plugin_failed', causeCode: 'wasm_import_unknown' }],
  ['hostile.init-trap', 'ok', '', { code: 'plugin_failed', causeCode: 'init_failed' }],
  ['hostile.malformed', 'ok', '', { code: 'plugin_failed', causeCode: 'wasm_invalid' }],
];
