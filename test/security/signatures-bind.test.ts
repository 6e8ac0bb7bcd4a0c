import { execFileSync, spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { discoverPlugins } from '../../src/discovery/discover.js';
import { DEFAULT_FILE_LIMITS, inventoryPlugin } from '../../src/discovery/plugin-inventory.js';
import { isReedError } from '../../src/errors.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { readTrustedKey, SIGNATURE_FILE, signPlugin, verifyPlugin } from '../../src/signing/signature.js';
import { REPO, runCli } from '../helpers/cli.js';
import { makeKey, NATIVE_FIXTURES, sign, type TestKey } from '../helpers/native.js';
import { EMPTY_WASM, tempDir, writePlugin } from '../helpers/plugin-tree.js';

/**
 * Class 12 and 14 of issue 10, and its Deliver point 5: the bytes and the manifest a host verifies are the ones it
 * uses, and every file of the plugin counts in the signature whatever its name.
 */

const ECHO = join(REPO, 'test/fixtures/signing/config-echo');
const SIGNED_TOML = readFileSync(join(ECHO, 'plugin.toml'), 'utf8');
/** What an attacker wants the host to run the signed code with. */
const HOSTILE_TOML = SIGNED_TOML.replace('storage = "none"', 'storage = "readwrite"').replace(
  'role = "user"',
  'role = "admin"',
);
const ECHO_ID = 'fixture.config-echo';
const FIRST_ID = 'fixture.aa-first';

interface Setup {
  root: string;
  echo: string;
  key: TestKey;
}

/** A search path with the signed config-echo plugin and a signed plugin that loads before it (by name). */
function setup(): Setup {
  const root = tempDir('reed-sigbind-');
  const key = makeKey(tempDir('reed-key-'));
  const echo = join(root, 'echo');
  cpSync(ECHO, echo, { recursive: true });
  rmSync(join(echo, 'plugin.wat'));
  sign(echo, key);
  const first = writePlugin(root, 'first', { id: FIRST_ID, name: 'A first' }, {});
  copyFileSync(join(ECHO, 'plugin.wasm'), join(first, 'plugin.wasm'));
  sign(first, key);
  return { root, echo, key };
}

/**
 * Starts a host over `root` whose log sink runs `between` when the first plugin is ready: after the scan
 * (discovery, validation) and before the config-echo plugin is loaded, the exact window of class 12.
 */
async function startWithHook(
  s: Setup,
  between: () => void,
  options: { mode?: SandboxMode; require?: string } = {},
): Promise<PluginHost> {
  const dir = tempDir('reed-host-');
  writeFileSync(
    join(dir, 'reed.toml'),
    `cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[signatures]\nrequire = "${options.require ?? 'all'}"\ntrusted_keys = ["${s.key.pubFile}"]\n`,
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [s.root], defaultSearchPaths: false },
  });
  let fired = false;
  const logger = pino(
    { level: 'info' },
    {
      write: (line: string) => {
        const entry = JSON.parse(line) as { msg?: string; pluginId?: string };
        if (!fired && entry.msg === 'plugin ready' && entry.pluginId === FIRST_ID) {
          fired = true;
          between();
        }
      },
    },
  );
  const host = await PluginHost.start({
    config,
    logger,
    services: { storage: new MemoryStorage() },
    ...(options.mode === undefined ? {} : { forceMode: options.mode }),
  });
  expect(fired).toBe(true);
  return host;
}

/**
 * The invariant: the config-echo plugin is either refused with a signature code, or runs with the signed
 * manifest's configuration and permissions. Returns what happened.
 */
async function assertNoMix(host: PluginHost): Promise<'refused' | 'signed'> {
  const status = host.status().find((s) => s.id === ECHO_ID);
  if (status === undefined) return 'refused'; // not even valid at the scan
  if (status.state !== 'ready') {
    expect(status.error?.code).toMatch(/^signature_/);
    return 'refused';
  }
  const config = await host.call(ECHO_ID, 'config');
  expect(JSON.parse(Buffer.from(config.output).toString())).toEqual({ role: 'user' });
  const stored = await host.call(ECHO_ID, 'store').then(
    () => 'stored',
    (error: unknown) => (isReedError(error) ? error.code : String(error)),
  );
  expect(stored).toBe('permission_denied');
  return 'signed';
}

describe('class 12: the manifest and bytes verified are the ones used', () => {
  it('plugin.toml swapped back to the signed one after the scan: refused, never the scanned manifest', async () => {
    const s = setup();
    writeFileSync(join(s.echo, 'plugin.toml'), HOSTILE_TOML); // what the scan sees
    const host = await startWithHook(s, () => writeFileSync(join(s.echo, 'plugin.toml'), SIGNED_TOML));
    try {
      expect(host.scan.candidates.find((c) => c.id === ECHO_ID)?.status).toBe('valid');
      expect(await assertNoMix(host)).toBe('refused');
    } finally {
      await host.close();
    }
  });

  it('the signed plugin.toml swapped for another after the scan: refused', async () => {
    const s = setup();
    const host = await startWithHook(s, () => writeFileSync(join(s.echo, 'plugin.toml'), HOSTILE_TOML));
    try {
      expect(await assertNoMix(host)).toBe('refused');
    } finally {
      await host.close();
    }
  });

  it('plugin.wasm swapped after the scan: refused', async () => {
    const s = setup();
    const other = join(REPO, 'examples/plugins/hello/plugin.wasm');
    const host = await startWithHook(s, () => copyFileSync(other, join(s.echo, 'plugin.wasm')));
    try {
      expect(await assertNoMix(host)).toBe('refused');
    } finally {
      await host.close();
    }
  });

  it('a file added after the scan counts: refused', async () => {
    const s = setup();
    const host = await startWithHook(s, () => writeFileSync(join(s.echo, 'late.txt'), 'unsigned'));
    try {
      expect(await assertNoMix(host)).toBe('refused');
    } finally {
      await host.close();
    }
  });

  it('a native library swapped after the scan (process mode): refused', async () => {
    const root = tempDir('reed-sigbind-native-');
    const key = makeKey(tempDir('reed-key-'));
    const lib = join(root, 'good');
    cpSync(join(NATIVE_FIXTURES, 'good'), lib, { recursive: true });
    sign(lib, key);
    const first = writePlugin(root, 'first', { id: FIRST_ID, name: 'A first' }, {});
    copyFileSync(join(ECHO, 'plugin.wasm'), join(first, 'plugin.wasm'));
    sign(first, key);
    const host = await startWithHook(
      { root, echo: lib, key },
      () => copyFileSync(join(NATIVE_FIXTURES, 'quota/plugin.so'), join(lib, 'plugin.so')),
      { mode: 'process', require: 'native' },
    );
    try {
      const good = host.status().find((st) => st.id !== FIRST_ID);
      expect(good?.state).toBe('failed');
      expect(good?.error?.code).toBe('signature_invalid');
    } finally {
      await host.close();
    }
  });

  it('a process swapping plugin.toml continuously while hosts load: never a mix', async () => {
    const s = setup();
    const signed = join(s.root, 'signed.toml.tmp');
    const hostile = join(s.root, 'hostile.toml.tmp');
    writeFileSync(signed, SIGNED_TOML);
    writeFileSync(hostile, HOSTILE_TOML);
    // Atomic renames, so that every read sees one whole manifest or the other.
    const swapper = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('fs'); const [a, b, t, dst] = process.argv.slice(1);
         const wait = new Int32Array(new SharedArrayBuffer(4));
         for (let i = 0; ; i++) { fs.copyFileSync(i % 2 ? a : b, t); fs.renameSync(t, dst); Atomics.wait(wait, 0, 0, 1); }`,
        signed,
        hostile,
        join(s.root, 'swap.tmp'),
        join(s.echo, 'plugin.toml'),
      ],
      { stdio: 'ignore' },
    );
    try {
      const seen = { refused: 0, signed: 0 };
      for (let i = 0; i < 25; i++) {
        const host = await startWithHook(s, () => {});
        try {
          seen[await assertNoMix(host)]++;
        } finally {
          await host.close();
        }
      }
      expect(seen.refused + seen.signed).toBe(25);
    } finally {
      swapper.kill('SIGKILL');
    }
  });
});

const HOSTILE_NAMES = [
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '__defineGetter__',
  '..x',
  'a..b',
  '...',
  ' lead',
  'x'.repeat(255),
  'ünï©ødé',
];
/** Names the signer refuses outright (they would make the signed listing ambiguous). */
const CONTROL_NAMES = ['line\nbreak', 'carriage\rreturn', 'tab\tname', 'del\x7f'];

function signedTree(extra: Record<string, string> = {}): { dir: string; keys: Buffer[] } {
  const dir = writePlugin(
    tempDir('reed-names-'),
    'p',
    { id: 'fixture.names' },
    { 'plugin.wasm': EMPTY_WASM, ...extra },
  );
  const key = makeKey(tempDir('reed-key-'));
  sign(dir, key);
  return { dir, keys: [readTrustedKey(key.pubFile, '/')] };
}

function verifyCode(dir: string, keys: Buffer[]): string {
  try {
    verifyPlugin(dir, keys);
    return 'valid';
  } catch (error) {
    return isReedError(error) ? error.code : String(error);
  }
}

describe('class 14: every file counts in the signature, whatever its name', () => {
  it.each([...HOSTILE_NAMES, ...CONTROL_NAMES])('a file named %j added after signing is refused', (name) => {
    const { dir, keys } = signedTree();
    expect(verifyCode(dir, keys)).toBe('valid');
    writeFileSync(join(dir, name), 'added');
    expect(verifyCode(dir, keys)).toBe('signature_invalid');
  });

  it.each(HOSTILE_NAMES)('a signed file named %j that changes or goes is refused', (name) => {
    const { dir, keys } = signedTree({ [name]: 'signed' });
    expect(verifyCode(dir, keys)).toBe('valid');
    writeFileSync(join(dir, name), 'changed');
    expect(verifyCode(dir, keys)).toBe('signature_invalid');
    unlinkSync(join(dir, name));
    expect(verifyCode(dir, keys)).toBe('signature_invalid');
  });

  it.each(HOSTILE_NAMES)('a directory named %j added after signing is refused', (name) => {
    const { dir, keys } = signedTree();
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'f'), 'added');
    expect(verifyCode(dir, keys)).toBe('signature_invalid');
  });

  it.each(CONTROL_NAMES)('signing refuses a file named %j', (name) => {
    const dir = writePlugin(tempDir('reed-names-'), 'p', { id: 'fixture.names' }, { [name]: 'x' });
    const key = makeKey(tempDir('reed-key-'));
    let code = 'signed';
    try {
      signPlugin(inventoryPlugin(dir, DEFAULT_FILE_LIMITS), createPrivateKey(readFileSync(key.keyFile)));
    } catch (error) {
      code = isReedError(error) ? error.code : String(error);
    }
    expect(code).toBe('file_name_invalid');
  });

  it('a file whose name is not UTF-8 is refused by verify and makes the plugin invalid', () => {
    const { dir, keys } = signedTree();
    writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0x66, 0xff, 0xfe])]), 'hidden');
    expect(verifyCode(dir, keys)).toBe('signature_invalid');
    const found = discoverPlugins({ searchPaths: [join(dir, '..')] }).candidates[0];
    expect(found?.status).toBe('invalid');
    expect(found?.diagnostics.map((d) => d.code)).toContain('file_name_invalid');
  });

  it('a file whose path is longer than PATH_MAX is refused by verify and makes the plugin invalid', () => {
    const { dir, keys } = signedTree();
    // 15 directories of 255 bytes, then a file of 255: the whole path passes 4,095 bytes, so only relative
    // paths from a shell that walks down can make it.
    const seg = 'd'.repeat(255);
    execFileSync('sh', [
      '-c',
      `cd "$1" && for i in $(seq 15); do mkdir "$2" && cd "$2"; done && echo hidden > "$3"`,
      'sh',
      dir,
      seg,
      'f'.repeat(255),
    ]);
    try {
      expect(verifyCode(dir, keys)).toBe('signature_invalid');
      const found = discoverPlugins({ searchPaths: [join(dir, '..')] }).candidates[0];
      expect(found?.status).toBe('invalid');
      expect(found?.diagnostics.map((d) => d.code)).toContain('file_name_invalid');
    } finally {
      execFileSync('rm', ['-rf', join(dir, seg)]); // rmSync cannot: the path is too long for one call
    }
  });

  it('a signature file cannot rename files by putting a newline in a listed name', () => {
    const { dir, keys } = signedTree({ b: 'B' });
    const sig = JSON.parse(readFileSync(join(dir, SIGNATURE_FILE), 'utf8')) as {
      files: Record<string, string>;
    };
    // Fold the plugin.toml line into b's name: the same listing text, another set of files.
    const forged = `b\n${sig.files['plugin.toml']} f plugin.toml`;
    const files = { [forged]: sig.files.b, 'plugin.wasm': sig.files['plugin.wasm'] };
    const attack = tempDir('reed-forged-');
    writeFileSync(join(attack, forged), 'B');
    copyFileSync(join(dir, 'plugin.wasm'), join(attack, 'plugin.wasm'));
    writeFileSync(join(attack, SIGNATURE_FILE), JSON.stringify({ ...sig, files }));
    expect(verifyCode(attack, keys)).toBe('signature_invalid');
  });

  it('the host refuses a signed plugin with an added __proto__ file', async () => {
    const s = setup();
    writeFileSync(join(s.echo, '__proto__'), 'added after signing');
    const host = await startWithHook(s, () => {});
    try {
      const status = host.status().find((st) => st.id === ECHO_ID);
      expect(status?.state).toBe('failed');
      expect(status?.error?.code).toBe('signature_invalid');
    } finally {
      await host.close();
    }
  });

  it('the CLI verify refuses an added __proto__ file', () => {
    const { dir } = signedTree();
    const key = makeKey(tempDir('reed-key-'));
    sign(dir, key);
    writeFileSync(join(dir, '__proto__'), 'added');
    const result = runCli(['verify', dir, '--trusted-key', key.pubFile, '--json']);
    expect(result.status).not.toBe(0);
    expect((JSON.parse(result.stdout) as { error?: { code?: string } }).error?.code).toBe(
      'signature_invalid',
    );
  });
});
