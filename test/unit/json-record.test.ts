// The one atomic JSON record (src/json-record.ts) that the installed-plugin pointer, the API tokens and tenant.json
// are written and read through, and the leftovers of killed writers that each store's start removes.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readJsonRecord, removeRecordTemps, writeJsonRecord } from '../../src/json-record.js';
import { TokenStore } from '../../src/tenants/tokens.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { startRegistry } from '../helpers/tenants.js';

const fail = (why: string) => Object.assign(new Error(why), { code: 'test_unreadable' });

describe('writeJsonRecord and readJsonRecord', () => {
  it('writes a 0600 file through a temporary one that does not stay, and reads it back', () => {
    const dir = tempDir();
    writeJsonRecord(dir, 'r.json', { a: 1 });
    writeJsonRecord(dir, 'r.json', { a: 2 }, 2);
    expect(readdirSync(dir)).toEqual(['r.json']);
    expect(statSync(join(dir, 'r.json')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'r.json'), 'utf8')).toBe('{\n  "a": 2\n}\n');
    expect(readJsonRecord(join(dir, 'r.json'), 100, fail)).toEqual({ a: 2 });
  });

  it('a value that cannot be serialized leaves the old record and no temporary file', () => {
    const dir = tempDir();
    writeJsonRecord(dir, 'r.json', { a: 1 });
    expect(() => writeJsonRecord(dir, 'r.json', { a: 1n })).toThrow();
    expect(readdirSync(dir)).toEqual(['r.json']);
    expect(readJsonRecord(join(dir, 'r.json'), 100, fail)).toEqual({ a: 1 });
  });

  it('replaces a link in the record’s place, never writing through it', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'target'), 'untouched');
    symlinkSync(join(dir, 'target'), join(dir, 'r.json'));
    writeJsonRecord(dir, 'r.json', { a: 1 });
    expect(readFileSync(join(dir, 'target'), 'utf8')).toBe('untouched');
    expect(readJsonRecord(join(dir, 'r.json'), 100, fail)).toEqual({ a: 1 });
  });

  it('reads nothing for a missing file; refuses a link, a FIFO, a directory, a file past the cap, and not JSON', () => {
    const dir = tempDir();
    expect(readJsonRecord(join(dir, 'none.json'), 100, fail)).toBeUndefined();
    writeFileSync(join(dir, 'target'), '{}');
    symlinkSync(join(dir, 'target'), join(dir, 'link.json'));
    execFileSync('mkfifo', [join(dir, 'fifo.json')]);
    mkdirSync(join(dir, 'dir.json'));
    writeFileSync(join(dir, 'big.json'), `"${'x'.repeat(200)}"`);
    writeFileSync(join(dir, 'bad.json'), '{');
    for (const [name, why] of [
      ['link.json', /link/],
      ['fifo.json', /not a regular file/],
      ['dir.json', /not a regular file/],
      ['big.json', /larger than 100 bytes/],
      ['bad.json', /not JSON/],
    ] as const)
      expect(() => readJsonRecord(join(dir, name), 100, fail), name).toThrow(why);
  });

  it('removeRecordTemps removes the temporary files of one record name, or of all, and nothing else', () => {
    const dir = tempDir();
    for (const name of [
      'a.json.0123456789abcdef.tmp',
      'b.json.0123456789abcdef.tmp',
      'a.json',
      'a.json.tmp',
      'notes.tmp.txt',
    ])
      writeFileSync(join(dir, name), '');
    expect(removeRecordTemps(dir, 'a.json')).toBe(1);
    expect(readdirSync(dir).sort()).toEqual([
      'a.json',
      'a.json.tmp',
      'b.json.0123456789abcdef.tmp',
      'notes.tmp.txt',
    ]);
    expect(removeRecordTemps(dir)).toBe(1);
    expect(readdirSync(dir).sort()).toEqual(['a.json', 'a.json.tmp', 'notes.tmp.txt']);
  });
});

describe('the stores written through it', () => {
  it("a token store's start removes a killed creation's temporary file", () => {
    const data = tempDir();
    const store = TokenStore.open(data);
    const { info } = store.create({ kind: 'tenant', tenant: 'acme' });
    writeFileSync(join(store.dir, `${info.id}.json.0123456789abcdef.tmp`), '{', { mode: 0o600 });
    expect(
      TokenStore.open(data)
        .list()
        .map((t) => t.id),
    ).toEqual([info.id]);
    expect(readdirSync(store.dir)).toEqual([`${info.id}.json`]);
  });

  it('the tenant registry’s start removes what killed tenant.json writes left (failed before: never removed)', async () => {
    const fixture = await startRegistry('none');
    await fixture.registry.create('acme', {});
    const dir = join(fixture.dir, 'data', 'tenants', 'acme');
    await fixture.registry.close();
    // What a host killed between the creation and the rename leaves: this version's name, and the one of before.
    writeFileSync(join(dir, 'tenant.json.0123456789abcdef.tmp'), '{"id":', { mode: 0o600 });
    writeFileSync(join(dir, '.tenant.json.0123456789ab'), '{"id":', { mode: 0o600 });
    const registry = await fixture.restart();
    expect(registry.get('acme')?.origin).toBe('runtime');
    expect(existsSync(join(dir, 'tenant.json.0123456789abcdef.tmp'))).toBe(false);
    expect(existsSync(join(dir, '.tenant.json.0123456789ab'))).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes('tenant.json'))).toEqual(['tenant.json']);
    await registry.close();
  });
});
