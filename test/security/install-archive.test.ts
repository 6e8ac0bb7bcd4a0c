// Hostile plugin archives (issue 13, point 1): each refused with install_archive_invalid (the reason in details) or
// install_id_mismatch, nothing written under data_dir or anywhere else, the installed version still serving.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { startHost, text } from '../helpers/host.js';
import { EXAMPLES, helloToml, helloVersion } from '../helpers/lifecycle.js';
import { stream, type TarEntry, tarOf } from '../helpers/tar.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const WASM = readFileSync(join(EXAMPLES, 'hello/plugin.wasm'));
const LIMITS = '[files]\nmax_file_bytes = 65536\nmax_plugin_bytes = 131072\nmax_files = 20\nmax_depth = 4\n';

/** example.hello 2.0.0, as a valid archive would carry it. */
const good = (id = 'example.hello'): TarEntry[] => [
  { name: 'plugin.toml', content: helloToml('2.0.0', 'Howdy', id) },
  { name: 'plugin.wasm', content: WASM },
];

/** Every path under `dir`, with its kind: what "nothing written" is checked against. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const st = statSync(path, { throwIfNoEntry: false });
      out.push(`${relative(dir, path)}${st?.isDirectory() ? '/' : ''}`);
      if (st?.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out.sort();
}

async function hostAtV1() {
  const { host, dir } = await startHost([helloVersion('1.0.0', 'Hello')], { mode: 'none', reedToml: LIMITS });
  cleanups.push(() => host.close());
  return { host, dir };
}

const CASES: [name: string, entries: TarEntry[], reason: string][] = [
  ['a path with ..', [...good(), { name: '../../escaped', content: 'x' }], 'path_traversal'],
  ['a .. in the middle', [...good(), { name: 'sub/../../escaped', content: 'x' }], 'path_traversal'],
  ['an absolute path', [...good(), { name: '/tmp/reed-h6-escaped', content: 'x' }], 'absolute_path'],
  ['a symlink', [{ name: 'lib', type: 'symlink', linkname: '/etc' }, ...good()], 'link'],
  [
    'a symlink, then a file through it',
    [
      { name: 'out', type: 'symlink', linkname: '/tmp' },
      { name: 'out/reed-h6-escaped', content: 'x' },
      ...good(),
    ],
    'link',
  ],
  ['a hard link', [...good(), { name: 'passwd', type: 'link', linkname: '/etc/passwd' }], 'link'],
  [
    'a character device',
    [...good(), { name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }],
    'special_file',
  ],
  [
    'a block device',
    [...good(), { name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 }],
    'special_file',
  ],
  ['a FIFO', [...good(), { name: 'pipe', type: 'fifo' }], 'special_file'],
  [
    'a file over max_file_bytes',
    [...good(), { name: 'big.bin', content: Buffer.alloc(65537) }],
    'file_too_large',
  ],
  [
    'files over max_plugin_bytes together',
    [...good(), ...[1, 2, 3].map((i) => ({ name: `part${i}.bin`, content: Buffer.alloc(60000) }))],
    'too_large',
  ],
  [
    'more entries than max_files',
    [...good(), ...Array.from({ length: 25 }, (_, i) => ({ name: `f${i}.txt`, content: 'x' }))],
    'too_many_files',
  ],
  ['deeper than max_depth', [...good(), { name: 'a/b/c/d/e/f.txt', content: 'x' }], 'too_deep'],
  ['the same path twice', [...good(), { name: 'plugin.wasm', content: WASM }], 'duplicate'],
  [
    'a name with a control character',
    [...good(), { name: 'evil\u001b[2J.txt', content: 'x' }],
    'name_invalid',
  ],
  ['no manifest', [{ name: 'plugin.wasm', content: WASM }], 'no_manifest'],
];

describe('hostile plugin archives are refused, and nothing is written', () => {
  it.each(CASES)('%s', async (_name, entries, reason) => {
    const { host, dir } = await hostAtV1();
    const before = tree(dir);
    const refused = await host.install('example.hello', stream(await tarOf(entries))).catch((e) => e);
    expect(refused).toMatchObject({ code: 'install_archive_invalid', details: { reason } });
    expect(tree(dir)).toEqual(before);
    expect(existsSync('/tmp/reed-h6-escaped')).toBe(false);
    expect(host.pluginStatus('example.hello')).toMatchObject({ version: '1.0.0', state: 'ready' });
    expect(text((await host.call('example.hello', 'greeting')).output)).toBe('"Hello"');
  });

  it('a body that is not a tar archive (corrupt)', async () => {
    const { host, dir } = await hostAtV1();
    const before = tree(dir);
    const archive = await tarOf(good());
    // A header's checksum broken: tar-stream refuses the header.
    archive[150] = archive[150] === 0x30 ? 0x31 : 0x30;
    await expect(host.install('example.hello', stream(archive))).rejects.toMatchObject({
      code: 'install_archive_invalid',
      details: { reason: 'corrupt' },
    });
    await expect(
      host.install('example.hello', stream(Buffer.from('not a tar at all'))),
    ).rejects.toMatchObject({
      code: 'install_archive_invalid',
    });
    expect(tree(dir)).toEqual(before);
  });

  it('an extended (PAX) header of 64 MiB is refused at its header, its body never read (header_too_large)', async () => {
    const { host, dir } = await hostAtV1();
    const before = tree(dir);
    // One entry's header turned into a PAX extended header ('x') that says 64 MiB: tar-stream would keep that
    // body whole in memory before parsing it (up to --max-install-bytes, per upload).
    const header = Buffer.from((await tarOf([{ name: 'PaxHeader', content: '' }])).subarray(0, 512));
    header[156] = 0x78;
    header.write(`${(64 * 1024 * 1024).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    let pulled = 0;
    async function* body() {
      yield header;
      for (let i = 0; i < 64; i++) {
        pulled += 1024 * 1024;
        yield Buffer.alloc(1024 * 1024, 0x61);
      }
    }
    const refused = await host.install('example.hello', Readable.from(body())).catch((e) => e);
    expect(refused).toMatchObject({
      code: 'install_archive_invalid',
      details: { reason: 'header_too_large' },
    });
    // Before: all 64 MiB were pulled and buffered by the parser.
    expect(pulled).toBeLessThan(8 * 1024 * 1024);
    expect(tree(dir)).toEqual(before);
    // A PAX header of honest size (a long name) still installs.
    const longName = `${'d'.repeat(100)}/${'n'.repeat(120)}.txt`;
    await host.install('example.hello', stream(await tarOf([...good(), { name: longName, content: 'x' }])));
    expect(host.pluginStatus('example.hello')).toMatchObject({ version: '2.0.0' });
  });

  it('a PAX header that sets a size is refused before a long-name header behind it is buffered', async () => {
    // The sixth review: PAX `size=0` made the guard (going by the ustar header's size) and the parser (by the PAX
    // size) disagree on where the next header starts, and a 3 MB GNU long name reached the parser whole.
    const { host, dir } = await hostAtV1();
    const before = tree(dir);
    const block = (name: string, type: string, size: number) => {
      const b = Buffer.alloc(512);
      b.write(name, 0);
      b.write('0000644\0', 100);
      b.write('0000000\0', 108);
      b.write('0000000\0', 116);
      b.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
      b.write('00000000000\0', 136);
      b.write(type, 156);
      b.write('ustar\0', 257);
      b.write('00', 263);
      b.fill(0x20, 148, 156);
      let sum = 0;
      for (const byte of b) sum += byte;
      b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
      return b;
    };
    const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
    const long = 3_000_000;
    const archive = Buffer.concat([
      block('PaxHeader', 'x', 9),
      pad(Buffer.from('9 size=0\n')),
      block('f', '0', 1024),
      block('././@LongLink', 'L', long),
      pad(Buffer.alloc(long, 0x61)),
      Buffer.alloc(1024),
    ]);
    const refused = await host.install('example.hello', stream(archive)).catch((e) => e);
    expect(refused).toMatchObject({ code: 'install_archive_invalid', details: { reason: 'corrupt' } });
    expect(String(refused.message)).toMatch(/PAX header that sets an entry’s size/);
    expect(tree(dir)).toEqual(before);
    expect(host.pluginStatus('example.hello')).toMatchObject({ version: '1.0.0', state: 'ready' });
  });

  it('a manifest whose id is not the one installed as: install_id_mismatch', async () => {
    const { host, dir } = await hostAtV1();
    const before = tree(dir);
    await expect(
      host.install('example.hello', stream(await tarOf(good('example.other')))),
    ).rejects.toMatchObject({
      code: 'install_id_mismatch',
      field: 'metadata.id',
      details: { manifestId: 'example.other' },
    });
    await expect(host.install('Not An Id', stream(await tarOf(good())))).rejects.toMatchObject({
      code: 'install_id_mismatch',
    });
    expect(tree(dir)).toEqual(before);
    expect(host.pluginStatus('example.hello')).toMatchObject({ version: '1.0.0', state: 'ready' });
  });

  it.each([
    ['a trailing space', '2.0.0 '],
    ['a newline around it (TOML escapes)', '\\n2.0.0\\n'],
    ['a leading v', 'v2.0.0'],
    ['240 characters (valid semver)', `2.0.0-${'a'.repeat(234)}`],
  ])(
    'a version with %s is refused (invalid_semver), and the store stays readable',
    async (_name, version) => {
      // The sixth review: semver.valid trims and takes these; the version named a directory of the store, which
      // readIndex then refused at the next start (no host started on that data_dir), or renameSync failed
      // (ENAMETOOLONG: internal_error).
      const { host, dir } = await hostAtV1();
      const before = tree(dir);
      const entries = [
        { name: 'plugin.toml', content: helloToml(version, 'Howdy') },
        { name: 'plugin.wasm', content: WASM },
      ];
      await expect(host.install('example.hello', stream(await tarOf(entries)))).rejects.toMatchObject({
        code: 'invalid_semver',
        field: 'metadata.version',
      });
      expect(tree(dir)).toEqual(before);
      expect(host.pluginStatus('example.hello')).toMatchObject({ version: '1.0.0', state: 'ready' });
    },
  );

  it('a clean archive installs (the control case): v2 serves, kept under data_dir', async () => {
    const { host, dir } = await hostAtV1();
    const status = await host.install('example.hello', stream(await tarOf(good())));
    expect(status).toMatchObject({ id: 'example.hello', version: '2.0.0', state: 'ready' });
    expect(text((await host.call('example.hello', 'greeting')).output)).toBe('"Howdy"');
    const kept = tree(join(dir, 'data/plugins'));
    expect(kept).toContain('installed.json');
    expect(kept.filter((p) => p.startsWith('staging/') && p !== 'staging/')).toEqual([]);
    expect(kept.filter((p) => /^versions\/example\.hello\/[^/]+\/plugin\.wasm$/.test(p))).toHaveLength(1);
  });
});
