import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { DEFAULT_LIMITS } from '../../src/manifest/limits.js';
import { tempDir } from '../helpers/plugin-tree.js';

describe('host configuration', () => {
  it('uses built-in defaults without a reed.toml', () => {
    const cwd = tempDir();
    const config = loadHostConfig({ cwd, env: {}, home: '/home/u' });
    expect(config.file).toBeUndefined();
    expect(config.searchPaths).toEqual([
      join(cwd, 'plugins'),
      '/home/u/.reed/plugins',
      '/usr/local/share/reed/plugins',
    ]);
    expect(config.sandboxMode).toBe('none');
    expect(config.limits).toEqual(DEFAULT_LIMITS);
    expect(config.policy.permissions.network).toBe(false);
  });

  it("puts a root host's data under /var/lib/reed (runners must pass every directory above it), unless told", () => {
    // The tests run as root, as CI does.
    expect(process.getuid?.()).toBe(0);
    expect(loadHostConfig({ cwd: tempDir(), env: {}, home: '/root' }).dataDir).toBe('/var/lib/reed');
    expect(loadHostConfig({ cwd: tempDir(), env: { XDG_DATA_HOME: '/srv/x' }, home: '/root' }).dataDir).toBe(
      '/srv/x/reed',
    );
  });

  it('reads ./reed.toml, resolves its paths against its directory, and lets overrides win', () => {
    const cwd = tempDir();
    writeFileSync(
      join(cwd, 'reed.toml'),
      [
        'plugin_dirs = ["a", "/abs/b"]',
        'default_search_paths = false',
        'capabilities = ["storage", "gpu"]',
        '[sandbox]',
        'mode = "process"',
        '[limits]',
        'memory_mb = 128',
        'disk_mb = 256',
        'max_files = 500',
        '[files]',
        'max_files = 50',
        '[policy.permissions]',
        'network = true',
        '[policy.limits]',
        'memory_mb = 256',
      ].join('\n'),
    );
    const config = loadHostConfig({ cwd, env: {} });
    expect(config.file).toBe(join(cwd, 'reed.toml'));
    expect(config.searchPaths).toEqual([join(cwd, 'a'), '/abs/b']);
    expect(config.sandboxMode).toBe('process');
    expect(config.limits.memoryMb).toBe(128);
    expect([config.limits.diskMb, config.limits.maxFiles]).toEqual([256, 500]);
    expect(config.fileLimits.maxFiles).toBe(50);
    expect(config.policy.permissions.network).toBe(true);
    expect(config.policy.limitCeilings.memoryMb).toBe(256);
    expect(config.capabilities).toEqual(['storage', 'gpu']);
    const overridden = loadHostConfig({
      cwd,
      env: {},
      overrides: { pluginDirs: ['x'], sandboxMode: 'none' },
    });
    expect(overridden.searchPaths).toEqual([join(cwd, 'x')]);
    expect(overridden.sandboxMode).toBe('none');
  });

  it('takes the file from REED_CONFIG', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'host.toml'), 'plugin_dirs = ["p"]\n');
    const config = loadHostConfig({ cwd: '/', env: { REED_CONFIG: join(dir, 'host.toml') } });
    expect(config.pluginDirs).toEqual([join(dir, 'p')]);
  });

  it.each([
    ['[limits]\nmemory_mb = "big"\n', 'limits.memory_mb'],
    ['[sandbox]\nmode = "vm"\n', 'sandbox.mode'],
    ['[limits]\nmemory_mb = 2048\n', 'limits.memory_mb'],
    ['[limits]\ndisk_mb = 32\n[policy.limits]\ndisk_mb = 16\n', 'limits.disk_mb'],
    ['[limits]\nmax_files = 0\n', 'limits.max_files'],
    ['reed_version = "latest"\n', 'reed_version'],
    ['[policy]\nallowed_sandbox_modes = ["container"]\n', 'sandbox.mode'],
    ['plugin_dirs = [\n', undefined],
  ])('rejects %j with config_invalid', (text, field) => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'reed.toml'), text);
    expect(() => loadHostConfig({ cwd, env: {} })).toThrow(
      expect.objectContaining({ code: 'config_invalid', ...(field ? { field } : {}) }),
    );
  });

  it('reads policy.max_replicas (default 4) and refuses one outside 1..16, naming the field', () => {
    expect(loadHostConfig({ env: {}, cwd: tempDir() }).policy.maxReplicas).toBe(4);
    const ok = tempDir();
    writeFileSync(join(ok, 'reed.toml'), '[policy]\nmax_replicas = 8\n');
    expect(loadHostConfig({ env: {}, cwd: ok }).policy.maxReplicas).toBe(8);
    const bad = tempDir();
    writeFileSync(join(bad, 'reed.toml'), '[policy]\nmax_replicas = 17\n');
    expect(() => loadHostConfig({ env: {}, cwd: bad })).toThrow(
      expect.objectContaining({ code: 'config_invalid', message: expect.stringContaining('max_replicas') }),
    );
  });

  it('says config_unreadable for a named file that is missing', () => {
    expect(() => loadHostConfig({ file: '/nonexistent/reed.toml', env: {} })).toThrow(
      expect.objectContaining({ code: 'config_unreadable' }),
    );
  });

  it('warns about unknown keys without failing', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'reed.toml'), 'plugin_dir = "x"\n');
    const config = loadHostConfig({ cwd, env: {} });
    expect(config.warnings.map((w) => [w.code, w.field])).toEqual([['manifest_unknown_key', 'plugin_dir']]);
  });
});
