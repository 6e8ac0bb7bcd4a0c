// The sixth review: installed.json is read back with a 16 MiB cap (store_unreadable past it), but nothing capped it
// as it was written: a tenant without max_plugins installing for days could make a store no host starts on. Now a
// pointer over the cap is never written (store_full), and the one on disk stays as it was.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { newSession } from '../../src/backends/shared/session.js';
import { PluginStore } from '../../src/host/plugin-store.js';
import { tempDir } from '../helpers/plugin-tree.js';

describe('the installed-plugin pointer', () => {
  it('is never written past the cap it is read back with (store_full), and what was there stays readable', () => {
    const dataDir = tempDir('reed-store-cap-');
    const store = new PluginStore(dataDir, newSession(), pino({ level: 'silent' }));
    store.open();
    const dir = join(dataDir, 'plugins', 'versions', 'p', '1.0.0_1_2_0123456789abcdef');
    store.point('p', dir, '1.0.0');
    const before = readFileSync(join(dataDir, 'plugins', 'installed.json'), 'utf8');
    // Checked before an install's version starts (Installer.install), and again as it is pointed at.
    expect(() => store.assertRoom('q', dir, 'x'.repeat(17 * 1024 * 1024))).toThrow(
      expect.objectContaining({ code: 'store_full' }),
    );
    expect(() => store.point('q', dir, 'x'.repeat(17 * 1024 * 1024))).toThrow(
      expect.objectContaining({ code: 'store_full' }),
    );
    expect(readFileSync(join(dataDir, 'plugins', 'installed.json'), 'utf8')).toBe(before);
    const again = new PluginStore(dataDir, newSession(), pino({ level: 'silent' }));
    again.open();
    expect([...again.installed().keys()]).toEqual(['p']);
  });
});
