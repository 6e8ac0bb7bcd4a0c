// Scale to zero's configuration (issue 16, part 2): reed.toml's [sandbox] idle_timeout (the default, off unless set)
// and the manifest's [sandbox] idle_timeout over it, each checked with an error naming its file and field.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { parseIdleTimeout } from '../../src/manifest/idle-timeout.js';
import { parseManifest } from '../../src/manifest/parse-manifest.js';
import { tempDir } from '../helpers/plugin-tree.js';

const manifest = (sandbox: string) => `[metadata]
id = "idle.check"
name = "Idle check"
version = "1.0.0"
api_version = "1.0.0"

[sandbox]
${sandbox}
`;

function hostConfig(toml: string) {
  const dir = tempDir('reed-idle-config-');
  writeFileSync(join(dir, 'reed.toml'), toml);
  return () => loadHostConfig({ cwd: dir, env: {}, home: dir });
}

describe('idle_timeout', () => {
  it('reads whole numbers with ms, s, m or h, and "off"', () => {
    expect(parseIdleTimeout('200ms')).toEqual({ ms: 200 });
    expect(parseIdleTimeout('30s')).toEqual({ ms: 30_000 });
    expect(parseIdleTimeout('5m')).toEqual({ ms: 300_000 });
    expect(parseIdleTimeout('2h')).toEqual({ ms: 7_200_000 });
    expect(parseIdleTimeout('off')).toEqual({ ms: 0 });
    for (const bad of ['5', '5 m', '1.5m', '-1s', '5min', '', '50ms', '31d', '800h', 'OFF'])
      expect(parseIdleTimeout(bad)).toHaveProperty('problem');
  });

  it('reed.toml: off by default; [sandbox] idle_timeout sets the host default; a bad one names the file and field', () => {
    expect(hostConfig('')().idleTimeoutMs).toBe(0);
    expect(hostConfig('[sandbox]\nidle_timeout = "5m"\n')().idleTimeoutMs).toBe(300_000);
    const bad = hostConfig('[sandbox]\nidle_timeout = "5 minutes"\n');
    expect(bad).toThrow(/reed\.toml: `sandbox\.idle_timeout` must be a duration such as "200ms"/);
    try {
      bad();
    } catch (error) {
      expect(error).toMatchObject({ code: 'config_invalid', field: 'sandbox.idle_timeout' });
      expect((error as { file?: string }).file).toMatch(/reed\.toml$/);
    }
    expect(hostConfig('[sandbox]\nidle_timeout = "10ms"\n')).toThrow(/between 100 ms and 30 days/);
    expect(hostConfig('[sandbox]\nidle_timeout = 300\n')).toThrow(/sandbox\.idle_timeout/);
  });

  it('plugin.toml: [sandbox] idle_timeout over the host default ("off" included); a bad one is an error at its field', () => {
    expect(parseManifest(manifest('idle_timeout = "90s"'), 'p/plugin.toml').manifest?.sandbox).toEqual({
      idleTimeoutMs: 90_000,
    });
    expect(
      parseManifest(manifest('mode = "process"\nidle_timeout = "off"'), 'p/plugin.toml').manifest?.sandbox,
    ).toEqual({ mode: 'process', idleTimeoutMs: 0 });
    expect(parseManifest(manifest('mode = "none"'), 'p/plugin.toml').manifest?.sandbox).toEqual({
      mode: 'none',
    });
    const bad = parseManifest(manifest('idle_timeout = "soon"'), 'p/plugin.toml');
    expect(bad.manifest).toBeUndefined();
    expect(bad.diagnostics).toEqual([
      expect.objectContaining({
        code: 'manifest_invalid_value',
        severity: 'error',
        file: 'p/plugin.toml',
        field: 'sandbox.idle_timeout',
        pluginId: 'idle.check',
        message: expect.stringMatching(/^sandbox\.idle_timeout must be a duration .* found "soon"$/),
      }),
    ]);
  });
});
