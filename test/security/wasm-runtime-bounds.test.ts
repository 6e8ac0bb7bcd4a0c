// Issue 10, classes 5, 6, 13 and 16: work a WASM plugin makes the host do, and errors it tries to swallow.
// Cases that froze the host's thread before the fix run through the CLI in a child process: a frozen call
// then shows as a CLI that never answered (killed by runCli's timeout) instead of freezing the test runner.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO, runCli } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

const DIR = join(REPO, 'test/fixtures/hostile/wasm-runtime');
const MODES = ['none', 'process'] as const;
type Mode = (typeof MODES)[number];
/** The documented cap (docs/MANIFEST.md, src/manifest/config-check.ts). */
const MAX_CONFIG_DEPTH = 32;

interface CallJson {
  ok: boolean;
  output?: string;
  error?: { code: string; details?: Record<string, unknown> };
}

function cliCall(plugin: string, fn: string, mode: Mode, dir = DIR): CallJson {
  const r = runCli(['call', '--plugin-dir', dir, '--no-default-paths', plugin, fn, '--mode', mode, '--json']);
  // status null: the CLI did not answer before runCli's timeout (the host thread froze).
  expect(r.status, `the CLI did not answer: ${r.stderr.slice(-2000)}`).not.toBeNull();
  return JSON.parse(r.stdout) as CallJson;
}

describe.each(MODES)('mode %s', (mode) => {
  // Class 5: a pattern from a manifest against a topic from the plugin, on the host's thread.
  it('a topic against the manifest pattern a*a*a*a*a*a*a*a*b answers at once (no backtracking)', () => {
    expect(cliCall('hostile.wr.topic-pattern', 'emit_256', mode).error?.code).toBe('permission_denied');
    expect(cliCall('hostile.wr.topic-pattern', 'emit_100k', mode).error?.code).toBe('argument_too_large');
  });

  // Class 6: host functions charge fuel for the work they do, before doing it, and check the deadline.
  it.each(['random_loop', 'write_loop', 'newline_loop', 'log_loop'])(
    '%s: host work per call is charged, so the call ends (fuel or deadline)',
    (fn) => {
      const result = cliCall('hostile.wr.host-work', fn, mode);
      expect(result.ok).toBe(false);
      expect(['fuel_exhausted', 'call_timeout']).toContain(result.error?.code);
    },
  );

  it('fd_write with four million iovecs is refused with EINVAL, not walked', () => {
    const result = cliCall('hostile.wr.host-work', 'iovecs_many', mode);
    expect(result.error).toMatchObject({ code: 'plugin_error', details: { status: 28 } });
  });

  // Class 13: errors a host import raises cannot be swallowed by try/catch_all.
  it('a deadline inside a catch_all loop ends the call with call_timeout', () => {
    expect(cliCall('hostile.wr.catch-all', 'deadline', mode).error?.code).toBe('call_timeout');
  });

  it.each(['put', 'put_retry'])(
    '%s: storage_put without permission inside catch_all fails the call with permission_denied',
    (fn) => {
      const result = cliCall('hostile.wr.catch-all', fn, mode);
      expect(result.ok).toBe(false);
      expect(result.error?.code).toBe('permission_denied');
    },
  );

  it('the exnref form (try_table) cannot swallow it either: refused at load, or the call fails', () => {
    const result = cliCall('hostile.wr.try-table', 'put', mode);
    expect(result.ok).toBe(false);
    const code =
      result.error?.code === 'plugin_failed' ? result.error.details?.causeCode : result.error?.code;
    // Node 20's V8 does not run exnref (wasm_invalid); a V8 that does must still fail the call.
    expect(['wasm_invalid', 'wasm_unsupported', 'permission_denied']).toContain(code);
  });
});

// Class 16: one rule for configuration values in every mode, enforced at validate.
describe('configuration values: the same rule in every mode', () => {
  const hosts: PluginHost[] = [];
  afterEach(async () => {
    for (const h of hosts.splice(0)) await h.close();
  });

  /** A plugin (the stores fixture's module) with `configuration` as its [configuration] table body. */
  function pluginWith(configuration: string): string {
    const root = tempDir('reed-config-');
    const dir = join(root, 'p');
    mkdirSync(dir);
    copyFileSync(join(DIR, 'stores', 'plugin.wasm'), join(dir, 'plugin.wasm'));
    writeFileSync(
      join(dir, 'plugin.toml'),
      `[metadata]\nid = "config.case"\nname = "c"\nversion = "1.0.0"\napi_version = "1.0.0"\n\n[configuration]\n${configuration}\n`,
    );
    return root;
  }
  const nested = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;

  it.each([
    ['an integer above 2^53', 'big = 9007199254740993', 'configuration.big'],
    ['an integer below -2^53', 'small = -9007199254740993', 'configuration.small'],
    [
      `nesting one past the cap (${MAX_CONFIG_DEPTH})`,
      `t = { a = ${nested(MAX_CONFIG_DEPTH)} }`,
      'configuration.t.a',
    ],
  ])('%s is invalid at validate, naming the field, and no mode loads it', async (_name, body, field) => {
    const root = pluginWith(body);
    const validated = runCli(['validate', root, '--no-default-paths', '--json']);
    expect(validated.status).toBe(1);
    expect(validated.stdout).toContain('manifest_invalid_value');
    expect(validated.stdout).toContain(field);
    for (const mode of MODES) {
      const { host } = await startHost([root], { mode });
      hosts.push(host);
      await expect(host.call('config.case', 'config', '')).rejects.toMatchObject({
        code: expect.not.stringMatching(/^init_failed$/),
      });
      expect(host.status().find((s) => s.id === 'config.case')?.state).not.toBe('running');
    }
  });

  it('nesting 20,000 deep is a syntax error at validate, with its line, and no mode loads it', async () => {
    // The TOML parser bounds nesting itself (src/toml.ts), far below what would overflow a stack.
    const root = pluginWith(`deep = ${nested(20_000)}`);
    const validated = runCli(['validate', root, '--no-default-paths', '--json']);
    expect(validated.status).toBe(1);
    expect(validated.stdout).toContain('manifest_syntax');
    expect(validated.stdout).toContain('nested');
    expect(validated.stdout).toMatch(/"line":\s*8/);
    for (const mode of MODES) {
      const { host } = await startHost([root], { mode });
      hosts.push(host);
      await expect(host.call('config.case', 'config', '')).rejects.toMatchObject({
        code: expect.not.stringMatching(/^init_failed$/),
      });
    }
  });

  it('values inside the rule read back the same in mode none and process mode', async () => {
    const body = [
      'max = 9007199254740991',
      'min = -9007199254740991',
      'real = 1.5',
      'inf = inf',
      'when = 1979-05-27T07:32:00Z',
      `deep = ${nested(MAX_CONFIG_DEPTH - 1)}`,
      'text = "caf\u00e9"',
    ].join('\n');
    const root = pluginWith(body);
    const outputs: string[] = [];
    for (const mode of MODES) {
      const { host } = await startHost([root], { mode });
      hosts.push(host);
      outputs.push(text((await host.call('config.case', 'config', '')).output));
    }
    expect(outputs[0]).toContain('"max":9007199254740991');
    expect(outputs[1]).toBe(outputs[0]);
  });
});
