import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  DEFAULT_FILE_LIMITS,
  type FileLimits,
  fileNameProblem,
  type PluginInventory,
} from '../discovery/plugin-inventory.js';
import { ReedError } from '../errors.js';
import { type PluginSnapshot, readPluginSnapshot } from './plugin-snapshot.js';

/**
 * Detached Ed25519 signatures over a plugin directory (the seed's `require_signature`, made concrete).
 *
 * The signed message is a canonical listing of every file of the plugin but the signature file itself:
 * a header line, then one line per file, sorted by path, `<sha256 hex> <f|l> <path>` (`l`: a symlink, hashed
 * by its target text). The signature file (`plugin.sig`, JSON) carries the listing's entries, so that a
 * mismatch can name the changed file, the signer's public key, and the signature.
 *
 * Names are data: entries live in Maps (a file named `__proto__` is a file like any other), and a name with a
 * control character is refused on both sides, so that one line of the listing can never stand for two.
 */
export const SIGNATURE_FILE = 'plugin.sig';
const FORMAT = 'reed-signature-v1';
const HEADER = 'reed-plugin-digest-v1\n';
const ENTRY_RE = /^(l:)?[0-9a-f]{64}$/;

export interface SignatureFile {
  format: typeof FORMAT;
  algorithm: 'ed25519';
  /** Raw 32-byte Ed25519 public key, base64. */
  publicKey: string;
  /** sha256 hex per relative path; a symlink's entry is prefixed `l:`. */
  files: Record<string, string>;
  /** Signature over the canonical listing, base64. */
  signature: string;
}

export interface VerifiedPlugin {
  /** The signer's key id (first 16 hex digits of the SHA-256 of the raw public key). */
  keyId: string;
  /**
   * The bytes of every regular file as hashed (the signature file too): load these, never the files again.
   * The manifest the host runs with must be parsed from (or be byte-equal to) `contents.get("plugin.toml")`.
   */
  contents: Map<string, Uint8Array>;
}

/** The entries of the canonical listing of a snapshot (every file but the signature file). */
export function digestSnapshot(snapshot: PluginSnapshot): Map<string, string> {
  const entries = new Map<string, string>();
  for (const [path, bytes] of snapshot.files) if (path !== SIGNATURE_FILE) entries.set(path, sha256(bytes));
  for (const [path, target] of snapshot.links)
    if (path !== SIGNATURE_FILE) entries.set(path, `l:${sha256(target)}`);
  return entries;
}

function listing(entries: ReadonlyMap<string, string>): Buffer {
  const lines = [...entries.keys()]
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((path) => {
      const entry = entries.get(path) as string;
      return entry.startsWith('l:') ? `${entry.slice(2)} l ${path}\n` : `${entry} f ${path}\n`;
    });
  return Buffer.from(HEADER + lines.join(''));
}

/** Signs every file of the plugin at `inventory.root`, read afresh once (throws `file_name_invalid` for names it cannot list). */
export function signPlugin(
  inventory: Pick<PluginInventory, 'root'>,
  privateKey: KeyObject,
  limits: FileLimits = DEFAULT_FILE_LIMITS,
): SignatureFile {
  const entries = digestSnapshot(readPluginSnapshot(inventory.root, limits));
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return {
    format: FORMAT,
    algorithm: 'ed25519',
    publicKey: publicKey.toString('base64'),
    // fromEntries defines own properties, so a file named __proto__ is serialised like any other.
    files: Object.fromEntries(entries),
    signature: sign(null, listing(entries), privateKey).toString('base64'),
  };
}

export interface VerifyOptions {
  pluginId?: string;
  /** Caps for the read; default DEFAULT_FILE_LIMITS. */
  limits?: FileLimits;
}

/**
 * Reads the plugin at `root` (a real path: a file reached through a link is refused) once, in a fresh walk
 * (every file counts, whatever its name or when it was added), checks `plugin.sig` against exactly those bytes
 * and the trusted keys, and returns the bytes. Throws `signature_missing`, `signature_invalid` (unreadable,
 * altered, files changed since signing or while read, naming them, or a directory that cannot be listed whole:
 * `details.causeCode` says why) or `signature_untrusted`.
 */
export function verifyPlugin(
  root: string,
  trustedKeys: readonly Buffer[],
  options: VerifyOptions = {},
): VerifiedPlugin {
  const { pluginId } = options;
  const file = join(root, SIGNATURE_FILE);
  const at = { file, ...(pluginId === undefined ? {} : { pluginId }) };
  const who = pluginId === undefined ? root : `plugin ${pluginId}`;
  const snapshot = snapshotToVerify(root, options.limits ?? DEFAULT_FILE_LIMITS, pluginId, who, at);
  const sigBytes = snapshot.files.get(SIGNATURE_FILE);
  if (sigBytes === undefined) {
    throw new ReedError(
      'signature_missing',
      `${who} has no ${SIGNATURE_FILE} (a regular file), and a signature by a trusted key is required here ([signatures] require; native code in the host process always needs one). Sign it with reed-plugins sign DIR --key K`,
      at,
    );
  }
  const { sig, signed } = parseSignatureFile(sigBytes, file, at);
  checkUnchanged(snapshot, signed, who, at);
  const publicKey = Buffer.from(sig.publicKey, 'base64');
  let ok = false;
  try {
    ok = verify(null, listing(signed), keyFromRaw(publicKey), Buffer.from(sig.signature, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) throw new ReedError('signature_invalid', `the signature in ${file} does not verify`, at);
  const keyId = keyIdOf(publicKey);
  if (!trustedKeys.some((k) => k.equals(publicKey))) {
    throw new ReedError(
      'signature_untrusted',
      `${who} is signed by key ${keyId}, which is not among the trusted keys ([signatures] trusted_keys)`,
      { ...at, details: { keyId } },
    );
  }
  return { keyId, contents: snapshot.files };
}

type SignatureAt = { file: string; pluginId?: string };

/** The plugin's snapshot; a tree the listing cannot hold whole is `signature_invalid`, with the cause's code. */
function snapshotToVerify(
  root: string,
  limits: FileLimits,
  pluginId: string | undefined,
  who: string,
  at: SignatureAt,
): PluginSnapshot {
  try {
    return readPluginSnapshot(root, limits, pluginId);
  } catch (error) {
    // A name or a tree the listing cannot hold is a file outside the signature: tampering, whatever caused it.
    if (!(error instanceof ReedError) || error.code === 'signature_invalid') throw error;
    throw new ReedError(
      'signature_invalid',
      `${who} cannot be verified: not every file of it can be covered by a signature (${error.code}: ${error.message})`,
      { ...at, cause: error, details: { causeCode: error.code, ...error.details } },
    );
  }
}

/** `plugin.sig` parsed, its shape checked and its entries well-formed; anything else is `signature_invalid`. */
function parseSignatureFile(
  sigBytes: Uint8Array,
  file: string,
  at: SignatureAt,
): { sig: SignatureFile; signed: Map<string, string> } {
  try {
    const sig = JSON.parse(Buffer.from(sigBytes).toString('utf8')) as SignatureFile;
    if (
      sig === null ||
      typeof sig !== 'object' ||
      sig.format !== FORMAT ||
      sig.algorithm !== 'ed25519' ||
      typeof sig.signature !== 'string' ||
      typeof sig.publicKey !== 'string' ||
      typeof sig.files !== 'object' ||
      sig.files === null ||
      Array.isArray(sig.files)
    ) {
      throw new Error('not a reed signature');
    }
    return { sig, signed: signedEntries(sig.files) };
  } catch (error) {
    throw new ReedError(
      'signature_invalid',
      `${file} is not a ${FORMAT} signature file: ${(error as Error).message}`,
      at,
    );
  }
}

/** Throws `signature_invalid` naming each file whose digest differs from the signed listing (or is not in both). */
function checkUnchanged(
  snapshot: PluginSnapshot,
  signed: Map<string, string>,
  who: string,
  at: SignatureAt,
): void {
  const entries = digestSnapshot(snapshot);
  const changed = [...new Set([...entries.keys(), ...signed.keys()])]
    .filter((p) => entries.get(p) !== signed.get(p))
    .sort();
  if (changed.length > 0) {
    const shown = changed.slice(0, 10).map((p) => JSON.stringify(p));
    throw new ReedError(
      'signature_invalid',
      `files of ${who} differ from what was signed: ${shown.join(', ')}${changed.length > 10 ? ', ...' : ''}. Sign the plugin again, or restore the signed files`,
      { ...at, details: { changed } },
    );
  }
}

/** The signature file's entries, each a well-formed name and digest (a hostile file gets no other shape in). */
function signedEntries(files: object): Map<string, string> {
  const entries = new Map<string, string>();
  // JSON.parse makes every key an own property, __proto__ included.
  for (const [path, entry] of Object.entries(files)) {
    const problem = fileNameProblem(path);
    if (problem !== undefined) throw new Error(`the listed name ${JSON.stringify(path)} ${problem}`);
    if (typeof entry !== 'string' || !ENTRY_RE.test(entry)) {
      throw new Error(`the entry for ${JSON.stringify(path)} is not a sha256 digest`);
    }
    entries.set(path, entry);
  }
  return entries;
}

export function generateSigningKey(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(rawPublicKey(publicKey)),
  };
}

export function readPrivateKey(file: string): KeyObject {
  try {
    const key = createPrivateKey(readFileSync(file));
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an ${key.asymmetricKeyType} key, not ed25519`);
    return key;
  } catch (error) {
    throw new ReedError(
      'key_invalid',
      `cannot use ${file} as an Ed25519 private key: ${(error as Error).message}`,
      { file },
    );
  }
}

/** A trusted key from configuration: `ed25519:<base64 raw key>`, or the path of a PEM public key. */
export function readTrustedKey(spec: string, baseDir: string): Buffer {
  try {
    if (spec.startsWith('ed25519:')) {
      const raw = Buffer.from(spec.slice(8), 'base64');
      if (raw.length !== 32) throw new Error('an Ed25519 public key is 32 bytes');
      return raw;
    }
    const key = createPublicKey(readFileSync(resolve(baseDir, spec)));
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an ${key.asymmetricKeyType} key, not ed25519`);
    return rawPublicKey(key);
  } catch (error) {
    throw new ReedError(
      'key_invalid',
      `trusted key ${JSON.stringify(spec)} cannot be used: ${(error as Error).message}`,
    );
  }
}

function rawPublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' }) as { x?: string };
  return Buffer.from(jwk.x ?? '', 'base64url');
}

function keyFromRaw(raw: Buffer): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
    format: 'jwk',
  });
}

export function keyIdOf(raw: Buffer): string {
  return sha256(raw).slice(0, 16);
}

function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
