import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { tempDir } from '../helpers/plugin-tree.js';

const configWith = (toml: string) => {
  const cwd = tempDir();
  writeFileSync(join(cwd, 'reed.toml'), toml);
  return () => loadHostConfig({ cwd, env: {}, home: cwd });
};

describe('reed.toml: [supervision] and [lifecycle]', () => {
  it('defaults: no supervision keys (the supervisor keeps its own defaults), probation 30 s, drain 60 s, 2 installs at once and 16 waiting', () => {
    const config = configWith('')();
    expect(config.supervision).toEqual({});
    expect(config.lifecycle).toEqual({
      probationMs: 30_000,
      drainTimeoutMs: 60_000,
      maxConcurrentInstalls: 2,
      installQueue: 16,
    });
  });

  it('reads the breaker and the probation window', () => {
    const config = configWith(
      '[supervision]\nmax_crashes = 3\ncrash_window_ms = 10000\nbreaker_cooldown_ms = 250\nbreaker_cooldown_max_ms = 4000\n' +
        '[lifecycle]\nprobation_ms = 0\ndrain_timeout_ms = 5000\nmax_concurrent_installs = 1\ninstall_queue = 0\n',
    )();
    expect(config.supervision).toEqual({
      maxCrashes: 3,
      crashWindowMs: 10_000,
      breakerCooldownMs: 250,
      breakerCooldownMaxMs: 4_000,
    });
    expect(config.lifecycle).toEqual({
      probationMs: 0,
      drainTimeoutMs: 5_000,
      maxConcurrentInstalls: 1,
      installQueue: 0,
    });
  });

  it('refuses a cap below the first cool-down, and keys of the wrong type, naming the key', () => {
    expect(configWith('[supervision]\nbreaker_cooldown_ms = 9000\nbreaker_cooldown_max_ms = 100\n')).toThrow(
      expect.objectContaining({ code: 'config_invalid', field: 'supervision.breaker_cooldown_max_ms' }),
    );
    expect(configWith('[lifecycle]\nprobation_ms = "soon"\n')).toThrow(
      expect.objectContaining({ code: 'config_invalid', field: 'lifecycle.probation_ms' }),
    );
    expect(configWith('[lifecycle]\nmax_concurrent_installs = 0\n')).toThrow(
      expect.objectContaining({ code: 'config_invalid', field: 'lifecycle.max_concurrent_installs' }),
    );
    expect(configWith('[lifecycle]\ninstall_queue = -1\n')).toThrow(
      expect.objectContaining({ code: 'config_invalid', field: 'lifecycle.install_queue' }),
    );
  });
});
