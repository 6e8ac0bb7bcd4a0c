import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';

interface JsonPlugin {
  id: string | null;
  status: string;
  type: string | null;
  diagnostics: { code: string; severity: string; field?: string }[];
}

describe('reed-plugins CLI', () => {
  it('discover --json lists valid and invalid fixture plugins with their diagnostics, and exits 1', () => {
    const r = runCli(['discover', '--plugin-dir', 'test/fixtures/plugins', '--json']);
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout) as { plugins: JsonPlugin[]; loadOrder: string[] };
    const byId = (id: string) => out.plugins.find((p) => p.id === id);
    expect(byId('fixture.hello')).toMatchObject({ status: 'valid', type: 'wasm', diagnostics: [] });
    expect(byId('fixture.greeter')?.status).toBe('valid');
    expect(
      byId('fixture.with-warning')
        ?.diagnostics.map((d) => d.code)
        .sort(),
    ).toEqual(['api_version_newer', 'manifest_unknown_key']);
    expect(byId('fixture.api-mismatch')?.diagnostics.map((d) => d.code)).toEqual(['api_version_mismatch']);
    expect(byId('fixture.traversal')?.diagnostics.map((d) => d.code)).toEqual(['path_traversal']);
    expect(byId('fixture.missing-dependency')?.diagnostics.map((d) => d.code)).toEqual([
      'dependency_missing',
    ]);
    expect(byId('fixture.cycle-a')?.diagnostics.map((d) => d.code)).toEqual(['dependency_cycle']);
    expect(byId('fixture.script')?.diagnostics.map((d) => d.code)).toEqual(['plugin_type_unsupported']);
    const broken = out.plugins.find((p) => p.id === null);
    expect(broken?.diagnostics[0]?.code).toBe('manifest_syntax');
    expect(out.loadOrder).toEqual(['fixture.hello', 'fixture.greeter', 'fixture.with-warning']);
  });

  it('discover prints a table with id, name, version, type, path and status', () => {
    const r = runCli(['discover', '--plugin-dir', 'test/fixtures/plugins']);
    const [header, ...rows] = r.stdout.split('\n');
    expect(header?.split(/\s+/)).toEqual(['ID', 'NAME', 'VERSION', 'TYPE', 'PATH', 'STATUS']);
    expect(rows.find((l) => l.startsWith('fixture.hello'))).toMatch(/1\.2\.0\s+wasm\s+\S+hello\s+valid$/);
  });

  it('validate exits 0 for a valid plugin and 1 for an invalid one, printing codes', () => {
    expect(runCli(['validate', 'test/fixtures/plugins/hello', '--no-default-paths']).status).toBe(0);
    const bad = runCli(['validate', 'test/fixtures/plugins/traversal/plugin.toml', '--no-default-paths']);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toContain('error path_traversal');
    expect(bad.stdout).toContain('[entry_point]');
  });

  it('validate checks a plugin against the others the host would see', () => {
    const alone = runCli(['validate', 'test/fixtures/plugins/greeter', '--no-default-paths', '--json']);
    expect(alone.status).toBe(1);
    expect((JSON.parse(alone.stdout) as { plugins: JsonPlugin[] }).plugins[0]?.diagnostics[0]?.code).toBe(
      'dependency_missing',
    );
    const withOthers = runCli([
      'validate',
      'test/fixtures/plugins/greeter',
      '--plugin-dir',
      'test/fixtures/plugins',
    ]);
    expect(withOthers.status).toBe(0);
  });

  it('validate without PATH checks every plugin found and reads the plugin dirs from reed.toml', () => {
    const home = tempDir();
    const cwd = tempDir();
    writePlugin(join(cwd, 'mine'), 'one', { id: 'one' });
    writeFileSync(join(cwd, 'reed.toml'), 'plugin_dirs = ["mine"]\n');
    writePlugin(join(home, '.reed', 'plugins'), 'two', { id: 'two' });
    const r = runCli(['validate', '--json'], { cwd, home });
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as { plugins: JsonPlugin[] }).plugins.map((p) => p.id)).toEqual([
      'one',
      'two',
    ]);
    const noDefaults = runCli(['validate', '--json', '--no-default-paths'], { cwd, home });
    expect((JSON.parse(noDefaults.stdout) as { plugins: JsonPlugin[] }).plugins.map((p) => p.id)).toEqual([
      'one',
    ]);
  });

  it.each([
    [['frobnicate'], 'unknown command'],
    [['discover', '--bogus'], "Unknown option '--bogus'"],
    [['discover', 'extra'], 'too many arguments'],
    [['validate', 'does/not/exist'], 'no such file or directory'],
    [[], 'usage: reed-plugins'],
  ])('exits 2 for bad usage: %j', (args, text) => {
    const r = runCli(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(text);
  });

  it('exits 2 with config_invalid for a broken reed.toml', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'reed.toml'), '[sandbox]\nmode = "vm"\n');
    const r = runCli(['discover'], { cwd });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error config_invalid: .*sandbox\.mode/s);
  });

  it('prints help for the program and each command', () => {
    const r = runCli(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/discover\s+list every plugin/);
    expect(r.stdout).toMatch(/validate\s+check plugins/);
    expect(runCli(['validate', '--help']).stdout).toContain('--plugin-dir DIR');
  });
});

describe('reed-plugins call', () => {
  const call = (args: string[]) =>
    runCli(['call', '--plugin-dir', 'examples/plugins', '--no-default-paths', ...args], { home: tempDir() });

  it.each([
    ['example.hello', 'greet', 'hello', 'Hello, hello!'],
    ['example.notes-c', 'publish', 'hello', '"createdBy":"example.notes-c"'],
    ['example.wordcount', '_start', 'hello', '0 1 5'],
    ['example.as-greeter', 'greet', 'hello', 'Good day, hello!'],
  ])('%s %s --input %s --json works', (id, fn, input, expected) => {
    const r = call([id, fn, '--input', input, '--json']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as {
      ok: boolean;
      output: string;
      error: unknown;
      stats: { fuelConsumed: number; durationMs: number };
    };
    expect(out.ok).toBe(true);
    expect(out.output).toContain(expected);
    expect(out.error).toBeNull();
    expect(out.stats.fuelConsumed).toBeGreaterThan(0);
    expect(out.stats.durationMs).toBeGreaterThanOrEqual(0);
    // Those two figures only (not CallStats.endedAt, a reading of the host process's clock).
    expect(Object.keys(out.stats).sort()).toEqual(['durationMs', 'fuelConsumed']);
  });

  it('prints the raw output without --json', () => {
    const r = call(['example.hello', 'greet', '--input', 'raw']);
    expect([r.status, r.stdout]).toEqual([0, 'Hello, raw!']);
  });

  it('returns typed errors with exit 1 for hostile plugins', () => {
    const r = runCli(['call', '--plugin-dir', 'test/fixtures/hostile', 'hostile.spin', 'spin', '--json'], {
      home: tempDir(),
    });
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      output: null,
      error: { code: 'fuel_exhausted', pluginId: 'hostile.spin' },
    });
    const failed = runCli(['call', '--plugin-dir', 'test/fixtures/hostile', 'hostile.unknown-import', 'ok'], {
      home: tempDir(),
    });
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain('error plugin_failed');
    expect(failed.stderr).toContain('wasm_import_unknown');
  });

  it('reads input from a file and rejects bad usage with exit 2', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'in.txt'), 'from a file');
    expect(call(['example.hello', 'echo', '--input-file', join(dir, 'in.txt')]).stdout).toBe('from a file');
    expect(call(['example.hello']).status).toBe(2);
    expect(call(['example.hello', 'greet', '--input', 'a', '--input-file', 'b']).status).toBe(2);
    expect(call(['example.hello', 'greet', '--mode', 'vm']).status).toBe(2);
    const kata = call(['example.hello', 'greet', '--mode', 'container', '--runtime', 'kata']);
    expect(kata.status).toBe(2);
    expect(kata.stderr).toContain('--runtime must be one of runc, runsc');
  });
});

describe('reed-plugins keygen, sign, verify, and the native example', () => {
  it('signs a plugin and verifies it, then fails verification after a change', () => {
    const dir = tempDir();
    const plugin = writePlugin(dir, 'p', { id: 'p' });
    expect(runCli(['keygen', '--out', join(dir, 'k')]).status).toBe(0);
    expect(runCli(['keygen', '--out', join(dir, 'k')]).status).toBe(2); // never overwrites a key
    const signed = runCli(['sign', plugin, '--key', join(dir, 'k.key')]);
    expect(signed.status).toBe(0);
    expect(signed.stdout).toContain('signed 2 file(s)');
    const ok = runCli(['verify', plugin, '--trusted-key', join(dir, 'k.pub'), '--json']);
    expect([ok.status, JSON.parse(ok.stdout).valid]).toEqual([0, true]);
    expect(runCli(['verify', plugin]).stderr).toContain('error signature_untrusted');
    writeFileSync(join(plugin, 'plugin.wasm'), 'changed');
    const bad = runCli(['verify', plugin, '--trusted-key', join(dir, 'k.pub'), '--json']);
    expect(bad.status).toBe(1);
    expect(JSON.parse(bad.stdout).error).toMatchObject({
      code: 'signature_invalid',
      details: { changed: ['plugin.wasm'] },
    });
  });

  it('runs the native example in mode none when trusted, and refuses it clearly when not', () => {
    const trusted = runCli(
      [
        'call',
        '--config',
        'examples/reed-trusted.toml',
        'example.native-c',
        'greet',
        '--input',
        'you',
        '--json',
      ],
      {
        home: tempDir(),
      },
    );
    expect(trusted.status).toBe(0);
    expect(JSON.parse(trusted.stdout)).toMatchObject({ ok: true, output: 'Hello from C, you!' });
    const refused = runCli(
      ['call', '--plugin-dir', 'examples/plugins', 'example.native-c', 'greet', '--json'],
      { home: tempDir() },
    );
    expect(refused.status).toBe(1);
    expect(JSON.parse(refused.stdout).error).toMatchObject({
      code: 'plugin_failed',
      details: { causeCode: 'native_in_process_denied' },
    });
  });
});

describe('reed-plugins call --mode process', () => {
  it('gives the same output and the same typed errors as mode none', () => {
    const run = (mode: string, args: string[]) =>
      runCli(
        [
          'call',
          '--plugin-dir',
          'examples/plugins',
          '--plugin-dir',
          'test/fixtures/hostile',
          '--mode',
          mode,
          ...args,
          '--json',
        ],
        {
          home: tempDir(),
        },
      );
    for (const mode of ['none', 'process']) {
      expect(JSON.parse(run(mode, ['example.hello', 'greet', '--input', 'p']).stdout)).toMatchObject({
        ok: true,
        output: 'Hello, p!',
      });
      expect(JSON.parse(run(mode, ['hostile.no-permission', 'read']).stdout)).toMatchObject({
        ok: false,
        error: { code: 'permission_denied' },
      });
    }
  });
});
