// What a WASM plugin makes the host hold in its heap (mode none: the host's own heap) for guest-sized work, found by
// the adversarial pass H10. Each case runs through the CLI in a child whose heap is capped at 64 MiB: before the
// fixes, the host died of "heap out of memory".
// - A WASI command's output written one byte at a time (1,024 one-byte iovecs per fd_write): each write was kept as
//   a typed array of its own (~200 bytes of heap per byte written: 16 MiB of output, the default max_output_bytes,
//   held 3.5 GB). Now the 768 KiB of output it asks for fit with room to spare. (768 KiB: the CLI's JSON answer
//   must stay under runCli's 1 MiB stdout buffer.)
// - poll_oneoff with a million subscriptions: an object per subscription and per event (~110 bytes of heap for
//   each 48-byte subscription in guest memory, 1.1 GB for the ten million the default fuel pays for).
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { buildWasiC } from '../helpers/wasm-c.js';

const OUTPUT_BYTES = 768 * 1024;

const FLOOD_C = `#include <wasi/api.h>
static const char x[1] = {'x'};
static __wasi_ciovec_t iov[1024];
int main(void) {
  for (int i = 0; i < 1024; i++) { iov[i].buf = (const uint8_t *)x; iov[i].buf_len = 1; }
  __wasi_size_t n;
  for (int k = 0; k < ${OUTPUT_BYTES / 1024}; k++)
    if (__wasi_fd_write(1, iov, 1024, &n) != 0 || n != 1024) return 1;
  return 0;
}
`;

/** poll_oneoff with a million fd_read subscriptions on stdin, each ready at once. */
const POLL_C = `#include <stdlib.h>
#include <wasi/api.h>
int main(void) {
  size_t n = 1000000;
  __wasi_subscription_t *subs = calloc(n, sizeof *subs);
  __wasi_event_t *events = calloc(n, sizeof *events);
  if (subs == 0 || events == 0) return 2;
  for (size_t i = 0; i < n; i++) {
    subs[i].userdata = i;
    subs[i].u.tag = __WASI_EVENTTYPE_FD_READ;
    subs[i].u.u.fd_read.file_descriptor = 0;
  }
  __wasi_size_t got = 0;
  if (__wasi_poll_oneoff(subs, events, n, &got) != 0 || got != n) return 1;
  for (size_t i = 0; i < n; i++)
    if (events[i].userdata != i || events[i].error != 0 || events[i].type != __WASI_EVENTTYPE_FD_READ) return 3;
  return 0;
}
`;

function callInSmallHeap(dir: string, id: string): { ok: boolean; output: string } {
  const r = runCli(
    ['call', '--plugin-dir', dir, '--no-default-paths', id, '_start', '--mode', 'none', '--json'],
    {
      env: { NODE_OPTIONS: '--max-old-space-size=64' },
    },
  );
  expect(r.stderr).not.toMatch(/heap out of memory/);
  expect(r.status, r.stderr.slice(-2000)).toBe(0);
  return JSON.parse(r.stdout) as { ok: boolean; output: string };
}

describe('guest-sized work in a host whose heap is 64 MiB (mode none)', () => {
  it('poll_oneoff with a million subscriptions answers them all', () => {
    const dir = tempDir('reed-poll-heap-');
    writePlugin(
      dir,
      'poll',
      // A million subscriptions cost 2.05G fuel at FUEL_PER_SUBSCRIPTION (2,048), past the default fuel_per_call.
      {
        id: 'hostile.poll-many',
        limits: { memory_mb: 128, call_timeout_ms: 60_000, fuel_per_call: 4_000_000_000 },
      },
      { 'plugin.wasm': buildWasiC(POLL_C) },
    );
    expect(callInSmallHeap(dir, 'hostile.poll-many')).toMatchObject({ ok: true, output: '' });
  });

  it('768 KiB of output written one byte at a time is answered whole', () => {
    const dir = tempDir('reed-output-heap-');
    writePlugin(
      dir,
      'flood',
      { id: 'hostile.output-flood', limits: { max_output_bytes: OUTPUT_BYTES, call_timeout_ms: 60_000 } },
      { 'plugin.wasm': buildWasiC(FLOOD_C) },
    );
    const answer = callInSmallHeap(dir, 'hostile.output-flood');
    expect(answer.ok).toBe(true);
    expect(answer.output).toBe('x'.repeat(OUTPUT_BYTES));
  });
});
