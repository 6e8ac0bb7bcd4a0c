// A WASI command's output written one byte at a time (1,024 one-byte iovecs per fd_write): in mode none the
// output is held in the host's heap until the call ends, and each write used to be kept as a typed array of its own
// (~200 bytes of heap per byte written: 16 MiB of output, the default max_output_bytes, held 3.5 GB). The call
// runs through the CLI in a child whose heap is capped at 64 MiB: before the fix it died of "heap out of memory"
// (the host, in mode none); now the 768 KiB of output it asks for fit with room to spare. (768 KiB: the CLI's
// JSON answer must stay under runCli's 1 MiB stdout buffer.)
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

describe('output written one byte at a time (mode none, the host heap)', () => {
  it('768 KiB of one-byte writes fit in a host whose heap is 64 MiB', () => {
    const dir = tempDir('reed-output-heap-');
    writePlugin(
      dir,
      'flood',
      { id: 'hostile.output-flood', limits: { max_output_bytes: OUTPUT_BYTES, call_timeout_ms: 60_000 } },
      { 'plugin.wasm': buildWasiC(FLOOD_C) },
    );
    const r = runCli(
      [
        'call',
        '--plugin-dir',
        dir,
        '--no-default-paths',
        'hostile.output-flood',
        '_start',
        '--mode',
        'none',
        '--json',
      ],
      { env: { NODE_OPTIONS: '--max-old-space-size=64' } },
    );
    expect(r.stderr).not.toMatch(/heap out of memory/);
    expect(r.status).toBe(0);
    const answer = JSON.parse(r.stdout) as { ok: boolean; output: string };
    expect(answer.ok).toBe(true);
    expect(answer.output).toBe('x'.repeat(OUTPUT_BYTES));
  });
});
