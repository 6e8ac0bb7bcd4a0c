import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { PluginInventory } from '../discovery/plugin-inventory.js';
import { ReedError } from '../errors.js';

/**
 * Detached Ed25519 signatures over a plugin directory (the seed's `require_signature`, made concrete).
 *
 * The signed message is a canonical listing of every file of the plugin but the signature file itself:
 * a header line, then one line per file, sorted by path, `<sha256 hex> <f|l> <path>` (`l`: a symlink, hashed
 * by its target text). The signature file (`plugin.sig`, JSON) carries the listing's entries, so that a
 * mismatch can name the changed file, the signer's public key, and the signature.
 */
export const SIGNATURE_FILE = 'plugin.sig';
const FORMAT = 'reed-signature-v1';
const HEADER = 'reed-plugin-digest-v1\n';

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
  /** The bytes of every regular file as hashed: load these, not the files again. */
  contents: Map<string, Uint8Array>;
}

/** The entries of the canonical listing, read from disk now. */
export function digestFiles(inventory: PluginInventory): {
  files: Record<string, string>;
  contents: Map<string, Uint8Array>;
} {
  const files: Record<string, string> = {};
  const contents = new Map<string, Uint8Array>();
  for (const f of [...inventory.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    if (f.path === SIGNATURE_FILE) continue;
    const abs = join(inventory.root, f.path);
    if (f.kind === 'file') {
      const bytes = readFileSync(abs);
      contents.set(f.path, bytes);
      files[f.path] = sha256(bytes);
    } else if (f.kind === 'symlink') {
      files[f.path] = `l:${sha256(readlinkSync(abs))}`;
    }
  }
  return { files, contents };
}

function listing(files: Record<string, string>): Buffer {
  const lines = Object.keys(files)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((path) => {
      const entry = files[path] as string;
      return entry.startsWith('l:') ? `${entry.slice(2)} l ${path}\n` : `${entry} f ${path}\n`;
    });
  return Buffer.from(HEADER + lines.join(''));
}

export function signPlugin(inventory: PluginInventory, privateKey: KeyObject): SignatureFile {
  const { files } = digestFiles(inventory);
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return {
    format: FORMAT,
    algorithm: 'ed25519',
    publicKey: publicKey.toString('base64'),
    files,
    signature: sign(null, listing(files), privateKey).toString('base64'),
  };
}

/**
 * Verifies `plugin.sig` against the files now on disk and the trusted keys. Throws `signature_missing`,
 * `signature_invalid` (unreadable, altered, or files changed since signing, naming them) or
 * `signature_untrusted`.
 */
export function verifyPlugin(
  inventory: PluginInventory,
  trustedKeys: readonly Buffer[],
  pluginId?: string,
): VerifiedPlugin {
  const file = join(inventory.root, SIGNATURE_FILE);
  const at = { file, ...(pluginId === undefined ? {} : { pluginId }) };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new ReedError(
      'signature_missing',
      `plugin ${pluginId ?? inventory.root} has no ${SIGNATURE_FILE}, and a signature by a trusted key is required here ([signatures] require; native code in the host process always needs one). Sign it with reed-plugins sign DIR --key K`,
      at,
    );
  }
  let sig: SignatureFile;
  try {
    sig = JSON.parse(text) as SignatureFile;
    if (
      sig.format !== FORMAT ||
      sig.algorithm !== 'ed25519' ||
      typeof sig.signature !== 'string' ||
      typeof sig.publicKey !== 'string' ||
      typeof sig.files !== 'object' ||
      sig.files === null
    ) {
      throw new Error('not a reed signature');
    }
  } catch (error) {
    throw new ReedError(
      'signature_invalid',
      `${file} is not a ${FORMAT} signature file: ${(error as Error).message}`,
      at,
    );
  }
  const { files, contents } = digestFiles(inventory);
  const changed = [...new Set([...Object.keys(files), ...Object.keys(sig.files)])]
    .filter((p) => files[p] !== sig.files[p])
    .sort();
  if (changed.length > 0) {
    throw new ReedError(
      'signature_invalid',
      `files of plugin ${pluginId ?? inventory.root} differ from what was signed: ${changed.slice(0, 10).join(', ')}${changed.length > 10 ? ', ...' : ''}`,
      {
        ...at,
        details: { changed },
      },
    );
  }
  const publicKey = Buffer.from(sig.publicKey, 'base64');
  let ok = false;
  try {
    ok = verify(null, listing(sig.files), keyFromRaw(publicKey), Buffer.from(sig.signature, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) throw new ReedError('signature_invalid', `the signature in ${file} does not verify`, at);
  const keyId = keyIdOf(publicKey);
  if (!trustedKeys.some((k) => k.equals(publicKey))) {
    throw new ReedError(
      'signature_untrusted',
      `plugin ${pluginId ?? inventory.root} is signed by key ${keyId}, which is not among the trusted keys ([signatures] trusted_keys)`,
      {
        ...at,
        details: { keyId },
      },
    );
  }
  return { keyId, contents };
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
