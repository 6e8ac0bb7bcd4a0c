import { appendFileSync, chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkElf, readCheckedLibrary } from '../../src/runtime/native/check-library.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { copyFixtures, makeKey, NATIVE_FIXTURES, sign, trustToml } from '../helpers/native.js';
import { tempDir } from '../helpers/plugin-tree.js';

/** A host over copies of the named fixtures, each signed with a trusted key unless `unsigned`. */
async function nativeHost(
  names: string[],
  options: { prepare?: (root: string) => void; unsigned?: boolean; toml?: (pub: string) => string } = {},
) {
  const root = copyFixtures(names);
  const key = makeKey();
  if (options.unsigned !== true) for (const name of names) sign(join(root, name), key);
  options.prepare?.(root);
  const started = await startHost([root], { reedToml: (options.toml ?? trustToml)(key.pubFile) });
  return { ...started, root, key };
}

const loadError = (host: Awaited<ReturnType<typeof nativeHost>>['host'], name: string) =>
  host.status().find((s) => s.id === `native.${name}`)?.error;

describe('native plugins in mode none (trusted)', () => {
  it('runs a signed, trusted plugin and warns about it on load', async () => {
    const { host, logs } = await nativeHost(['good']);
    expect(text((await host.call('native.good', 'echo', 'x'.repeat(64))).output)).toBe('x'.repeat(64));
    expect(
      logs.some((l) => l.pluginId === 'native.good' && l.level === 40 && /full rights/.test(l.msg)),
    ).toBe(true);
    await host.close();
  });

  it.each([
    ['null-output', 'null', 'native_bad_output'],
    ['big-output', 'big', 'output_too_large'],
    ['no-permission', 'sneak', 'permission_denied'],
    ['quota', 'fill', 'storage_quota_exceeded'],
  ])('%s.%s -> %s, and the host keeps serving', async (name, fn, code) => {
    const { host } = await nativeHost([name, 'good']);
    await expect(host.call(`native.${name}`, fn)).rejects.toMatchObject({ code, pluginId: `native.${name}` });
    await expect(host.call(`native.${name}`, fn)).rejects.toMatchObject({ code });
    expect(text((await host.call('native.good', 'echo', 'still here')).output)).toBe('still here');
    await host.close();
  });

  it('refuses the wrong API version, naming both', async () => {
    const { host } = await nativeHost(['wrong-api']);
    const error = loadError(host, 'wrong-api');
    expect(error?.code).toBe('api_version_mismatch');
    expect(error?.message).toMatch(/"2\.1\.0".*1\.0\.0/);
    await host.close();
  });

  it('refuses a library without _reed_plugin_create', async () => {
    const { host } = await nativeHost(['missing-create']);
    expect(loadError(host, 'missing-create')?.code).toBe('native_symbol_missing');
    await host.close();
  });

  it('refuses a library that is not ELF, even when signed', async () => {
    const key = makeKey();
    const root = copyFixtures(['good']);
    writeFileSync(join(root, 'good', 'plugin.so'), 'not a library');
    sign(join(root, 'good'), key);
    const { host } = await startHost([root], { reedToml: trustToml(key.pubFile) });
    expect(host.status()[0]?.error?.code).toBe('native_invalid_library');
    await host.close();
  });

  it('refuses a file changed after signing, naming it', async () => {
    const { host } = await nativeHost(['good'], {
      prepare: (root) => appendFileSync(join(root, 'good', 'plugin.so'), 'x'),
    });
    expect(loadError(host, 'good')).toMatchObject({ code: 'signature_invalid' });
    expect(loadError(host, 'good')?.message).toContain('plugin.so');
    await host.close();
  });

  it('refuses a signature by a key the host does not trust', async () => {
    const other = makeKey();
    const { host } = await nativeHost(['good'], {
      unsigned: true,
      prepare: (root) => sign(join(root, 'good'), other),
    });
    expect(loadError(host, 'good')?.code).toBe('signature_untrusted');
    await host.close();
  });

  it('refuses a native plugin without a signature (required for native by default)', async () => {
    const { host } = await nativeHost(['good'], { unsigned: true });
    expect(loadError(host, 'good')?.code).toBe('signature_missing');
    await host.close();
  });

  it('refuses native code in the host process unless the policy allows it, even when signed', async () => {
    const { host } = await nativeHost(['good'], { toml: (pub) => trustToml(pub, false) });
    expect(loadError(host, 'good')?.code).toBe('native_in_process_denied');
    await expect(host.call('native.good', 'echo')).rejects.toMatchObject({
      code: 'plugin_failed',
      details: { causeCode: 'native_in_process_denied' },
    });
    await host.close();
  });

  it('never loads a world-writable library or directory, or a symlink leaving the plugin', async () => {
    const { host, root } = await nativeHost(['good'], {
      prepare: (r) => {
        mkdirSync(join(r, 'ww'));
        copyFileSync(join(r, 'good', 'plugin.so'), join(r, 'ww', 'plugin.so'));
        writeFileSync(
          join(r, 'ww', 'plugin.toml'),
          '[metadata]\nid = "native.ww"\nname = "ww"\nversion = "1.0.0"\napi_version = "1.0.0"\n',
        );
        chmodSync(join(r, 'ww', 'plugin.so'), 0o666);
        mkdirSync(join(r, 'link'));
        writeFileSync(
          join(r, 'link', 'plugin.toml'),
          '[metadata]\nid = "native.link"\nname = "link"\nversion = "1.0.0"\napi_version = "1.0.0"\n',
        );
        symlinkSync(join(NATIVE_FIXTURES, 'good', 'plugin.so'), join(r, 'link', 'plugin.so'));
      },
    });
    const codes = (dir: string) =>
      host.scan.candidates.find((c) => c.pluginDir === join(root, dir))?.diagnostics.map((d) => d.code);
    expect(codes('ww')).toContain('world_writable');
    expect(codes('link')).toEqual(expect.arrayContaining(['symlink_escape']));
    expect(host.status().map((s) => s.id)).toEqual(['native.good']);
    await host.close();
  });
});

describe('library checks at load time', () => {
  const good = join(NATIVE_FIXTURES, 'good', 'plugin.so');

  it('accepts an ELF shared object for this machine and returns its bytes', () => {
    expect(readCheckedLibrary(good, 'p', 1 << 30).length).toBeGreaterThan(1000);
  });

  it.each([
    ['a symlink', (dir: string) => symlinkSync(good, join(dir, 'lib.so')), 'symlink_escape'],
    [
      'world-writable',
      (dir: string) => {
        copyFileSync(good, join(dir, 'lib.so'));
        chmodSync(join(dir, 'lib.so'), 0o646);
      },
      'world_writable',
    ],
    [
      'in a world-writable directory',
      (dir: string) => {
        copyFileSync(good, join(dir, 'lib.so'));
        chmodSync(dir, 0o777);
      },
      'world_writable',
    ],
    [
      'not ELF',
      (dir: string) => writeFileSync(join(dir, 'lib.so'), 'x'.repeat(100)),
      'native_invalid_library',
    ],
    [
      'an executable, not a shared object',
      (dir: string) => copyFileSync(process.execPath, join(dir, 'lib.so')),
      'native_invalid_library',
    ],
  ])('refuses %s', (_name, make, code) => {
    const dir = tempDir();
    make(dir);
    expect(() => readCheckedLibrary(join(dir, 'lib.so'), 'p', 1 << 30)).toThrow(
      expect.objectContaining({ code }),
    );
  });

  it('refuses an ELF object for another machine', () => {
    const bytes = new Uint8Array(64);
    bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
    new DataView(bytes.buffer).setUint16(16, 3, true);
    new DataView(bytes.buffer).setUint16(18, 0x28 /* ARM */, true);
    expect(() => checkElf(bytes, 'x.so', 'p')).toThrow(
      expect.objectContaining({
        code: 'native_invalid_library',
        message: expect.stringMatching(/machine 40/),
      }),
    );
  });
});

describe('signatures for WASM plugins when the policy asks', () => {
  it('requires and checks them with [signatures] require = "all"', async () => {
    const root = tempDir();
    mkdirSync(join(root, 'hello'));
    for (const f of ['plugin.toml', 'plugin.wasm'])
      copyFileSync(join(REPO, 'examples/plugins/hello', f), join(root, 'hello', f));
    const key = makeKey();
    const toml = `[signatures]\nrequire = "all"\ntrusted_keys = ["${key.pubFile}"]\n`;
    const unsigned = await startHost([root], { reedToml: toml });
    expect(unsigned.host.status()[0]?.error?.code).toBe('signature_missing');
    await unsigned.host.close();
    sign(join(root, 'hello'), key);
    const signed = await startHost([root], { reedToml: toml });
    expect(text((await signed.host.call('example.hello', 'greet', 'signed')).output)).toBe('Hello, signed!');
    await signed.host.close();
  });
});
