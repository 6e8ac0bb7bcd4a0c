import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isReedError } from '../../src/errors.js';
import { AdminToken, TokenStore } from '../../src/tenants/tokens.js';

// The comparisons go through node:crypto's timingSafeEqual: counted here, the real one still answers.
const compared = vi.hoisted(() => ({ calls: [] as [Buffer, Buffer][] }));
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return {
    ...real,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      compared.calls.push([Buffer.from(a as Uint8Array), Buffer.from(b as Uint8Array)]);
      return real.timingSafeEqual(a, b);
    },
  };
});

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  compared.calls.length = 0;
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'reed-tokens-'));
  dirs.push(d);
  return d;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isReedError(error) ? error.code : `not a ReedError: ${String(error)}`;
  }
  return undefined;
}

describe('TokenStore', () => {
  it('makes 256-bit tokens with the reed_ prefix, stores only their SHA-256 in 0600 files, and verifies them after a restart', () => {
    const data = tmp();
    const store = TokenStore.open(data);
    const { token, info } = store.create({ kind: 'tenant', tenant: 'acme' });
    expect(token).toMatch(/^reed_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token.split('_').slice(2).join('_'), 'base64url')).toHaveLength(32);
    expect(info).toEqual({
      id: token.slice(5, 21),
      scope: { kind: 'tenant', tenant: 'acme' },
      created: expect.any(String),
    });
    expect(statSync(join(data, 'tokens')).mode & 0o777).toBe(0o700);
    const files = readdirSync(join(data, 'tokens'));
    expect(files).toEqual([`${info.id}.json`]);
    const file = join(data, 'tokens', files[0] as string);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    const secret = token.slice(22);
    expect(text).not.toContain(secret);
    expect(text).not.toContain(token);
    expect(JSON.parse(text).sha256).toMatch(/^[0-9a-f]{64}$/);

    const again = TokenStore.open(data);
    expect(again.verify(token)).toEqual({ id: info.id, scope: { kind: 'tenant', tenant: 'acme' } });
    expect(again.list('acme')).toEqual([info]);
    expect(again.list('other')).toEqual([]);
    expect(JSON.stringify(again.list())).not.toContain(secret);
  });

  it('refuses a wrong secret, an unknown id, a malformed token and no token, each through timingSafeEqual on SHA-256 digests', () => {
    const store = TokenStore.open(tmp());
    const { token } = store.create({ kind: 'tenant', tenant: 'acme' });
    const last = token.at(-1) === 'A' ? 'B' : 'A';
    const cases = [
      `${token.slice(0, -1)}${last}`, // right id, wrong secret
      `reed_0000000000000000_${token.slice(22)}`, // unknown id
      'reed_nonsense',
      '',
    ];
    for (const wrong of cases) {
      compared.calls.length = 0;
      expect(store.verify(wrong)).toBeUndefined();
      expect(compared.calls).toHaveLength(1);
      const [a, b] = compared.calls[0] as [Buffer, Buffer];
      expect(a).toHaveLength(32);
      expect(b).toHaveLength(32);
    }
    compared.calls.length = 0;
    expect(store.verify(token)).toBeDefined();
    expect(compared.calls).toHaveLength(1);
  });

  it('revokes: the file goes, the token verifies no more, here or after a restart; a tenant revokes only its own', () => {
    const data = tmp();
    const store = TokenStore.open(data);
    const a = store.create({ kind: 'tenant', tenant: 'acme' });
    const b = store.create({ kind: 'tenant', tenant: 'bravo' });
    expect(store.revoke(a.info.id, 'bravo')).toBe(false);
    expect(store.verify(a.token)).toBeDefined();
    expect(store.revoke(a.info.id, 'acme')).toBe(true);
    expect(store.verify(a.token)).toBeUndefined();
    expect(store.revoke(a.info.id)).toBe(false);
    expect(readdirSync(join(data, 'tokens'))).toEqual([`${b.info.id}.json`]);
    expect(TokenStore.open(data).verify(a.token)).toBeUndefined();
    expect(TokenStore.open(data).verify(b.token)).toBeDefined();
    const c = store.create({ kind: 'tenant', tenant: 'bravo' });
    expect(store.revokeTenant('bravo').sort()).toEqual([b.info.id, c.info.id].sort());
    expect(store.size).toBe(0);
    expect(store.verify(c.token)).toBeUndefined();
  });

  it('admin tokens in the store have the admin scope', () => {
    const store = TokenStore.open(tmp());
    const { token } = store.create({ kind: 'admin' });
    expect(store.verify(token)?.scope).toEqual({ kind: 'admin' });
  });

  it('refuses a tokens directory open to others, a link in place of it, and a file that is not a token', () => {
    const open = tmp();
    mkdirSync(join(open, 'tokens'), { mode: 0o755 });
    chmodSync(join(open, 'tokens'), 0o755);
    expect(code(() => TokenStore.open(open))).toBe('token_store_unreadable');

    const linked = tmp();
    const elsewhere = tmp();
    chmodSync(elsewhere, 0o700);
    symlinkSync(elsewhere, join(linked, 'tokens'));
    expect(code(() => TokenStore.open(linked))).toBe('token_store_unreadable');

    const junk = tmp();
    const store = TokenStore.open(junk);
    const { info } = store.create({ kind: 'tenant', tenant: 'acme' });
    writeFileSync(join(junk, 'tokens', `${info.id}.json`), '{"version":1}');
    expect(code(() => TokenStore.open(junk))).toBe('token_store_unreadable');

    const linkFile = tmp();
    const s2 = TokenStore.open(linkFile);
    const made = s2.create({ kind: 'tenant', tenant: 'acme' });
    const target = join(linkFile, 'elsewhere.json');
    writeFileSync(target, readFileSync(join(linkFile, 'tokens', `${made.info.id}.json`)));
    rmSync(join(linkFile, 'tokens', `${made.info.id}.json`));
    symlinkSync(target, join(linkFile, 'tokens', `${made.info.id}.json`));
    expect(code(() => TokenStore.open(linkFile))).toBe('token_store_unreadable');
  });

  it('refuses a tenant id that is not one', () => {
    const store = TokenStore.open(tmp());
    expect(code(() => store.create({ kind: 'tenant', tenant: '../x' }))).toBe('api_bad_request');
  });
});

describe('AdminToken', () => {
  const TOKEN = 'x'.repeat(20) + 'Y'.repeat(24);

  it('reads a 0600 file, trims its newline, and verifies through timingSafeEqual', () => {
    const file = join(tmp(), 'admin');
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    const admin = AdminToken.fromFile(file);
    expect(admin.verify(TOKEN)).toBe(true);
    compared.calls.length = 0;
    expect(admin.verify(`${TOKEN}z`)).toBe(false);
    expect(admin.verify('')).toBe(false);
    expect(compared.calls).toHaveLength(2);
  });

  it.each([0o640, 0o604, 0o644, 0o660])('refuses a file of mode %o, saying why', (mode) => {
    const file = join(tmp(), 'admin');
    writeFileSync(file, TOKEN);
    chmodSync(file, mode);
    let message = '';
    try {
      AdminToken.fromFile(file);
    } catch (error) {
      expect(isReedError(error, 'admin_token_file_invalid')).toBe(true);
      message = (error as Error).message;
    }
    expect(message).toContain(file);
    expect(message).toContain('chmod 600');
  });

  it('refuses a missing file, a short token and a directory', () => {
    const dir = tmp();
    expect(code(() => AdminToken.fromFile(join(dir, 'none')))).toBe('admin_token_file_invalid');
    const short = join(dir, 'short');
    writeFileSync(short, 'abc\n', { mode: 0o600 });
    expect(code(() => AdminToken.fromFile(short))).toBe('admin_token_file_invalid');
    chmodSync(dir, 0o700);
    expect(code(() => AdminToken.fromFile(dir))).toBe('admin_token_file_invalid');
  });
});
