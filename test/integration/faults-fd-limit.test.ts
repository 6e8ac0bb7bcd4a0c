import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runSoak, soakProblems } from '../../bench/soak.js';

/**
 * Issue 17, part 2 (docs/RELIABILITY.md, "Faults during load"): too few file descriptors. Once `reed-plugins
 * serve` has started, `prlimit --pid` lowers its RLIMIT_NOFILE to the descriptors it holds plus 24;
 * from 1 s to 9 s, 96 callers beside the soak's 2 each hold a connection of their own, more than the
 * descriptors left. The server stays up; a caller that gets no descriptor gets no answer (its connection is
 * refused or closed: `no_answer`) or a coded error; once those callers stop, every plugin answers again.
 */
const PLUGINS = 4;
const OVERLOAD_MS = 8000;

describe('faults during load: too few file descriptors', () => {
  it('process mode: the host stays up, refused calls carry no answer or a code, all works once the load drops', async () => {
    let limit = 0;
    const result = await runSoak({
      mode: 'process',
      seconds: 18,
      callers: 2,
      plugins: PLUGINS,
      warmupFraction: 0.2,
      extraPlugins: [
        {
          id: 'soak.flood',
          source: new URL('../../examples/plugins/hello', import.meta.url).pathname,
          callers: 96,
          fn: 'echo',
          input: 'flood',
          expected: 'flood',
          startAtMs: 1000,
          stopAtMs: 1000 + OVERLOAD_MS,
        },
      ],
      fault: async (ctx) => {
        // Lowered on the running server (its start opens many files at once: the module loader), then the
        // extra callers' connections take what is left.
        limit = readdirSync(`/proc/${ctx.serverPid}/fd`).length + 24;
        execFileSync('prlimit', ['--pid', String(ctx.serverPid), `--nofile=${limit}:${limit}`]);
        ctx.mark('descriptors limited', []);
        await ctx.sleep(1000 + OVERLOAD_MS - ctx.elapsedMs());
        const ids = ctx.plugins.map((p) => p.id);
        ctx.mark('the extra callers stopped', ids);
        for (const id of ids) {
          const echo = id.includes('notes') ? ['get', 'none'] : ['echo', 'back'];
          while (ctx.remainingMs() > 0) {
            const ok = id.includes('notes')
              ? await ctx.call(id, 'put', 'after=1', '')
              : await ctx.call(id, echo[0] as string, echo[1] as string, echo[1]);
            if (ok) break;
            await ctx.sleep(100);
          }
        }
      },
    });
    const failures = Object.fromEntries(
      Object.entries(result.perPlugin).map(([id, c]) => [id, { ok: c.ok, failed: c.failed }]),
    );
    // biome-ignore lint/suspicious/noConsole: each fault test prints its recovery time (docs/RELIABILITY.md)
    console.log(
      `faults-fd-limit: RLIMIT_NOFILE ${limit}, load ${result.loadAverage.toFixed(1)};`,
      JSON.stringify(failures),
      `recovery after the extra callers stopped: ${JSON.stringify(result.faults[1]?.recoveryMs)}`,
    );
    expect(soakProblems({ ...result, failures: {}, rssGrowth: 0 })).toEqual([]);
    // A refused connection has no answer; an answer that came is right or carries a stable code (never a wrong
    // output, a 500 or an answer without a code).
    for (const counts of Object.values(result.perPlugin))
      for (const code of Object.keys(counts.failed)) {
        expect(code).not.toMatch(/^(wrong_output|internal_error|status_)/);
      }
    expect(result.faults[1]?.recoveryMs).toBeDefined();
    for (const fault of result.faults)
      for (const [id, ms] of Object.entries(fault.recoveryMs))
        expect({ id, recovered: ms !== null }).toEqual({ id, recovered: true });
  }, 300_000);
});
