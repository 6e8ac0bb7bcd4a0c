import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_UNSENT_TO_RUNNER } from '../../src/backends/shared/runner-link.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';

/**
 * Issue 17, part 2: a runner that stops reading its socket while calls keep coming (test/fixtures/runners/
 * unread-calls.mjs). Each call sent to it was held by the host, its input encoded into a frame, until the calls'
 * deadline killed the runner: under load, memory without a bound (200 calls of 1 MiB: 200 MiB). Now a call finds
 * the runner's unread queue at MAX_UNSENT_TO_RUNNER and is refused at once with `runner_backlogged`; the plugin's
 * other plugin keeps answering, and the wedged runner is replaced once the calls it holds pass their deadline.
 */
const RUNNERS = join(REPO, 'test/fixtures/runners');
const MiB = 1024 * 1024;
const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

/** The host's own memory: its heap, plus Buffers outside it (what is queued on a socket is there). */
const used = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
};
v8.setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

const outcome = (call: Promise<unknown>): Promise<string> =>
  call.then(
    () => 'ok',
    (error: { code?: string }) => error.code ?? String(error),
  );

describe('process mode: a runner that stops reading its socket while calls keep coming', () => {
  it('its calls past MAX_UNSENT_TO_RUNNER are refused with runner_backlogged, not held; another plugin answers meanwhile; the runner is replaced', async () => {
    const started = await startHost([join(REPO, 'examples/plugins')], {
      mode: 'process',
      plugins: ['example.notes-c', 'example.hello'],
      reedToml: '[signatures]\nrequire = "none"\n[limits]\ncall_timeout_ms = 5000\n',
      supervision: { startTimeoutMs: 30_000, restartBaseMs: 20 },
      runnerCommand: [process.execPath, join(RUNNERS, 'unread-calls.mjs')],
    });
    hosts.push(started.host);
    const host = started.host;
    expect(text((await host.call('example.notes-c', 'ok')).output)).toBe('ok');
    const input = Buffer.alloc(MiB, 'i');
    collect();
    const base = used();
    const attack = outcome(host.call('example.notes-c', 'attack'));
    const flood = Array.from({ length: 200 }, () => outcome(host.call('example.notes-c', 'ok', input)));
    // Sampled once every call is sent or refused (all in this turn): what the host holds for the runner now.
    collect();
    let growth = used() - base;
    // The other plugin's runner is a process of its own: it answers while this one is wedged.
    const other = await outcome(host.call('example.hello', 'ok'));
    collect();
    growth = Math.max(growth, used() - base);
    const outcomes = await Promise.all(flood);
    const counts: Record<string, number> = {};
    for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
    expect(await attack).toBe('call_timeout');
    expect(other).toBe('ok');
    // Refused at once: all but the ~32 (MAX_UNSENT_TO_RUNNER / 1 MiB) that went onto its queue and timed out with
    // the call that wedged it (or were cut with the runner its deadline killed).
    expect(
      Object.keys(counts).filter(
        (c) => !['runner_backlogged', 'call_timeout', 'sandbox_crashed'].includes(c),
      ),
    ).toEqual([]);
    expect(counts.runner_backlogged ?? 0).toBeGreaterThanOrEqual(200 - MAX_UNSENT_TO_RUNNER / MiB - 8);
    // Held: the queue's bound and one call, not 200 MiB (room for what the collector has not reached).
    expect(growth).toBeLessThan(MAX_UNSENT_TO_RUNNER + 32 * MiB);
    // The wedged runner was killed at the deadline and a new one serves (polled: the restart takes a while).
    const until = Date.now() + 60_000;
    let after = await outcome(host.call('example.notes-c', 'ok'));
    while (after !== 'ok' && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      after = await outcome(host.call('example.notes-c', 'ok'));
    }
    expect(after).toBe('ok');
  }, 120_000);
});
