import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadHostConfig, TENANT_ID } from '../../src/host/host-config.js';
import { TENANT_ID_PATTERN } from '../../src/tenants/tenant.js';
import { tempDir } from '../helpers/plugin-tree.js';

const configWith = (toml: string) => {
  const cwd = tempDir();
  writeFileSync(join(cwd, 'reed.toml'), toml);
  return { cwd, load: () => loadHostConfig({ cwd, env: {}, home: cwd }) };
};

describe('reed.toml: [tenants]', () => {
  it('checks ids with the pattern of the tenant layer', () => {
    expect(TENANT_ID.source).toBe(TENANT_ID_PATTERN.source);
  });

  it('none by default', () => {
    expect(configWith('').load().tenants).toEqual({});
  });

  it('reads each tenant: plugin_dirs relative to reed.toml, its quotas as written', () => {
    const { cwd, load } = configWith(
      '[tenants.acme]\nplugin_dirs = ["acme-plugins"]\n[tenants.acme.quotas]\nmax_concurrent_calls = 4\ncalls_per_second = 2.5\nstorage_bytes = 100000\nmemory_mb = 256\n' +
        '[tenants.default.quotas]\nmax_plugins = 10\n',
    );
    expect(load().tenants).toEqual({
      acme: {
        pluginDirs: [join(cwd, 'acme-plugins')],
        quotas: { max_concurrent_calls: 4, calls_per_second: 2.5, storage_bytes: 100_000, memory_mb: 256 },
      },
      default: { pluginDirs: [], quotas: { max_plugins: 10 } },
    });
  });

  it('refuses a bad id, an unknown or wrong quota, and plugin_dirs on the default tenant, naming file and field', () => {
    const bad = (toml: string, field: string) => {
      const { cwd, load } = configWith(toml);
      expect(load).toThrow(
        expect.objectContaining({ code: 'config_invalid', field, file: join(cwd, 'reed.toml') }),
      );
      try {
        load();
      } catch (error) {
        expect((error as Error).message).toContain(field);
      }
    };
    bad('[tenants.Acme]\n', 'tenants.Acme');
    bad('[tenants.acme.quotas]\nmax_concurent_calls = 3\n', 'tenants.acme.quotas.max_concurent_calls');
    bad('[tenants.acme.quotas]\ncalls_per_second = -1\n', 'tenants.acme.quotas.calls_per_second');
    bad('[tenants.acme.quotas]\nstorage_bytes = "lots"\n', 'tenants.acme.quotas.storage_bytes');
    bad('[tenants.acme.quotas]\ncalls_burst = 5\n', 'tenants.acme.quotas.calls_burst');
    bad('[tenants.acme]\nplugins_dirs = ["x"]\n', 'tenants.acme.plugins_dirs');
    bad('[tenants.acme.quotas]\nfilesystem_bytes = 1000\n', 'tenants.acme.quotas.filesystem_bytes');
    bad('[tenants.default]\nplugin_dirs = ["x"]\n', 'tenants.default.plugin_dirs');
  });
});
