import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { ReedError } from '../errors.js';
import { fsyncDir, readJsonRecord, removeRecordTemps, writeJsonRecord } from '../json-record.js';
import { TENANT_ID_PATTERN } from './tenant.js';

/**
 * The serve API's bearer tokens (issue 14, part 3; docs/API.md, "Authentication"). A token is
 * `reed_<id>_<secret>`: `id` 16 hex digits (public: it names the token in lists, revocations and the audit log),
 * `secret` 32 bytes from crypto.randomBytes in base64url (256 bits). Only the SHA-256 of the whole token is kept,
 * one file per token under `<data_dir>/tokens/` (`<id>.json`, mode 0600, written to a temporary name, fsynced and
 * renamed), so the plaintext exists once: in the answer to its creation. Verification looks the token up by its id
 * and compares SHA-256 digests with crypto.timingSafeEqual, also for an unknown id (against a digest of nothing),
 * so the time taken says nothing about how much of a token was right.
 */
export const TOKEN_PREFIX = 'reed_';
const TOKEN_PATTERN = /^reed_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const ID_PATTERN = /^[0-9a-f]{16}$/;
/** A token file is a few hundred bytes; anything larger is not ours. */
const MAX_TOKEN_FILE_BYTES = 4096;
/** Bounds what a store holds (and what a start reads): far more than any host needs. */
export const MAX_TOKENS = 100_000;
/** The admin token file: at least this many characters (e.g. `openssl rand -base64 32`: 44). */
export const MIN_ADMIN_TOKEN_CHARS = 32;
const MAX_ADMIN_TOKEN_BYTES = 4096;

/** What a token is allowed: the admin routes and every tenant, or one tenant's routes. */
export type TokenScope = { kind: 'admin' } | { kind: 'tenant'; tenant: string };

/** A stored token as lists show it: never the token, never its digest. */
export interface TokenInfo {
  id: string;
  scope: TokenScope;
  /** ISO 8601. */
  created: string;
}

interface StoredToken extends TokenInfo {
  hash: Buffer;
}

/** A verified token: its id and scope. */
export interface VerifiedToken {
  id: string;
  scope: TokenScope;
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();
/** Compared against when the id is unknown, so that path costs what a known id's does. */
const NOTHING = sha256('');

export class TokenStore {
  readonly dir: string;
  readonly #tokens = new Map<string, StoredToken>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Opens (creating, mode 0700) `<dataDir>/tokens/` and reads every token in it. The directory must be a real
   * directory (not a link) owned by this user and closed to others; a token file that is not a small regular
   * file of the right shape makes the store refuse to open (`token_store_unreadable`): a token is never guessed.
   */
  static open(dataDir: string): TokenStore {
    const dir = join(dataDir, 'tokens');
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw unreadable(dir, (error as Error).message);
    }
    const st = lstatSync(dir);
    if (!st.isDirectory()) throw unreadable(dir, 'it is not a directory (a link is not followed)');
    if (typeof process.getuid === 'function' && st.uid !== process.getuid())
      throw unreadable(dir, `it is owned by uid ${st.uid}, not by this user`);
    if ((st.mode & 0o077) !== 0)
      throw unreadable(
        dir,
        `its mode is ${(st.mode & 0o777).toString(8)}; it must be closed to group and others (700)`,
      );
    const store = new TokenStore(dir);
    // A creation a dead host never renamed into place: never valid, removed.
    removeRecordTemps(dir);
    const names = readdirSync(dir);
    for (const name of names) {
      const match = /^([0-9a-f]{16})\.json$/.exec(name);
      if (match === null) throw unreadable(join(dir, name), 'not a token file (<16 hex digits>.json)');
      if (store.#tokens.size >= MAX_TOKENS) throw unreadable(dir, `more than ${MAX_TOKENS} tokens`);
      const token = readToken(join(dir, name), match[1] as string);
      store.#tokens.set(token.id, token);
    }
    return store;
  }

  /**
   * Makes a token for `scope` and stores its digest. The plaintext is in the answer and nowhere else: it cannot
   * be shown again.
   */
  create(scope: TokenScope): { token: string; info: TokenInfo } {
    if (scope.kind === 'tenant' && !TENANT_ID_PATTERN.test(scope.tenant))
      throw new ReedError('api_bad_request', `"${scope.tenant.slice(0, 64)}" is not a tenant id`);
    if (this.#tokens.size >= MAX_TOKENS)
      throw new ReedError('token_store_unreadable', `the token store holds ${MAX_TOKENS} tokens already`);
    let id = randomBytes(8).toString('hex');
    while (this.#tokens.has(id)) id = randomBytes(8).toString('hex');
    const token = `${TOKEN_PREFIX}${id}_${randomBytes(32).toString('base64url')}`;
    const stored: StoredToken = {
      id,
      scope: scope.kind === 'admin' ? { kind: 'admin' } : { kind: 'tenant', tenant: scope.tenant },
      created: new Date().toISOString(),
      hash: sha256(token),
    };
    writeToken(this.dir, stored);
    this.#tokens.set(id, stored);
    return { token, info: infoOf(stored) };
  }

  /** The token's id and scope when it is one of this store's, else undefined. Constant time in the secret. */
  verify(token: string): VerifiedToken | undefined {
    const match = TOKEN_PATTERN.exec(token);
    const stored = match === null ? undefined : this.#tokens.get(match[1] as string);
    const expected = stored?.hash ?? NOTHING;
    const equal = timingSafeEqual(sha256(token), expected);
    if (!equal || stored === undefined) return undefined;
    return { id: stored.id, scope: stored.scope };
  }

  /** Tokens, optionally of one tenant only (`admin` scope when tenant is undefined and admins are asked for). */
  list(tenant?: string): TokenInfo[] {
    const out: TokenInfo[] = [];
    for (const t of this.#tokens.values())
      if (tenant === undefined || (t.scope.kind === 'tenant' && t.scope.tenant === tenant))
        out.push(infoOf(t));
    return out.sort((a, b) =>
      a.created < b.created ? -1 : a.created > b.created ? 1 : a.id < b.id ? -1 : 1,
    );
  }

  get(id: string): TokenInfo | undefined {
    const t = ID_PATTERN.test(id) ? this.#tokens.get(id) : undefined;
    return t === undefined ? undefined : infoOf(t);
  }

  /**
   * Revokes a token: its file is removed (and the directory fsynced) before this returns, and it verifies no
   * more. Answers whether there was such a token (of `tenant`, when given).
   */
  revoke(id: string, tenant?: string): boolean {
    const t = ID_PATTERN.test(id) ? this.#tokens.get(id) : undefined;
    if (t === undefined) return false;
    if (tenant !== undefined && (t.scope.kind !== 'tenant' || t.scope.tenant !== tenant)) return false;
    this.#tokens.delete(id);
    try {
      unlinkSync(join(this.dir, `${id}.json`));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#tokens.set(id, t);
        throw error;
      }
    }
    fsyncDir(this.dir);
    return true;
  }

  /** Revokes every token of a tenant (when the tenant is deleted). Answers their ids. */
  revokeTenant(tenant: string): string[] {
    const ids = this.list(tenant).map((t) => t.id);
    for (const id of ids) this.revoke(id, tenant);
    return ids;
  }

  get size(): number {
    return this.#tokens.size;
  }
}

function infoOf(t: StoredToken): TokenInfo {
  return {
    id: t.id,
    scope: t.scope.kind === 'admin' ? { kind: 'admin' } : { kind: 'tenant', tenant: t.scope.tenant },
    created: t.created,
  };
}

function unreadable(path: string, why: string): ReedError {
  return new ReedError('token_store_unreadable', `the token store ${path} cannot be used: ${why}`, {
    file: path,
  });
}

function readToken(path: string, id: string): StoredToken {
  const parsed = readJsonRecord(path, MAX_TOKEN_FILE_BYTES, (why) => unreadable(path, why)) as
    | Record<string, unknown>
    | null
    | undefined;
  // Listed a moment ago: gone now is as wrong as any other surprise in this directory.
  if (parsed === undefined) throw unreadable(path, 'ENOENT');
  const { version, id: fileId, tenant, admin, created, sha256: hash } = parsed ?? {};
  if (version !== 1 || fileId !== id) throw unreadable(path, 'not a version 1 token file of that id');
  if (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash))
    throw unreadable(path, 'the field sha256 is not 64 hex digits');
  if (typeof created !== 'string' || created.length > 64)
    throw unreadable(path, 'the field created is not a time');
  let scope: TokenScope;
  if (admin === true && tenant === undefined) scope = { kind: 'admin' };
  else if (admin === undefined && typeof tenant === 'string' && TENANT_ID_PATTERN.test(tenant))
    scope = { kind: 'tenant', tenant };
  else throw unreadable(path, 'it names neither a tenant (field tenant) nor admin (field admin)');
  return { id, scope, created, hash: Buffer.from(hash, 'hex') };
}

function writeToken(dir: string, t: StoredToken): void {
  writeJsonRecord(dir, `${t.id}.json`, {
    version: 1,
    id: t.id,
    ...(t.scope.kind === 'admin' ? { admin: true } : { tenant: t.scope.tenant }),
    created: t.created,
    sha256: t.hash.toString('hex'),
  });
}

/**
 * The admin token of `serve --admin-token-file F`: F's content, its surrounding white space trimmed. F must be a
 * regular file of this user closed to group and others (mode 600 or 400): else `admin_token_file_invalid`, and
 * serve does not start. Only the digest is kept.
 */
export class AdminToken {
  readonly #hash: Buffer;
  /** The id the audit log names it by. */
  readonly id = 'admin';

  private constructor(hash: Buffer) {
    this.#hash = hash;
  }

  static fromFile(path: string): AdminToken {
    const invalid = (why: string) =>
      new ReedError('admin_token_file_invalid', `the admin token file ${path} ${why}`, { file: path });
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      throw invalid(`cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw invalid('is not a regular file');
      if ((st.mode & 0o077) !== 0)
        throw invalid(
          `is readable or writable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
        );
      if (typeof process.getuid === 'function' && st.uid !== process.getuid())
        throw invalid(`is owned by uid ${st.uid}, not by the user serve runs as`);
      if (st.size > MAX_ADMIN_TOKEN_BYTES) throw invalid(`is larger than ${MAX_ADMIN_TOKEN_BYTES} bytes`);
      const buf = Buffer.alloc(st.size);
      const n = readSync(fd, buf, 0, st.size, 0);
      const token = buf.toString('utf8', 0, n).trim();
      if (token.length < MIN_ADMIN_TOKEN_CHARS || /\s/.test(token))
        throw invalid(
          `must hold one token of at least ${MIN_ADMIN_TOKEN_CHARS} characters without white space (e.g. openssl rand -base64 32)`,
        );
      return new AdminToken(sha256(token));
    } finally {
      closeSync(fd);
    }
  }

  /** Constant time in the token (both sides are SHA-256 digests). */
  verify(token: string): boolean {
    return timingSafeEqual(sha256(token), this.#hash);
  }
}
