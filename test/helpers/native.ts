import { createPrivateKey } from 'node:crypto';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_FILE_LIMITS, inventoryPlugin } from '../../src/discovery/plugin-inventory.js';
import { generateSigningKey, SIGNATURE_FILE, signPlugin } from '../../src/signing/signature.js';
import { REPO } from './cli.js';
import { tempDir } from './plugin-tree.js';

export const NATIVE_FIXTURES = join(REPO, 'test/fixtures/native');

export interface TestKey {
  keyFile: string;
  pubFile: string;
}

export function makeKey(dir = tempDir()): TestKey {
  const key = generateSigningKey();
  const keyFile = join(dir, `k-${key.keyId}.key`);
  const pubFile = join(dir, `k-${key.keyId}.pub`);
  writeFileSync(keyFile, key.privatePem, { mode: 0o600 });
  writeFileSync(pubFile, key.publicPem);
  return { keyFile, pubFile };
}

export function sign(dir: string, key: TestKey): void {
  const signature = signPlugin(
    inventoryPlugin(dir, DEFAULT_FILE_LIMITS),
    createPrivateKey(readFileSync(key.keyFile)),
  );
  writeFileSync(join(dir, SIGNATURE_FILE), JSON.stringify(signature));
}

/** Copies native fixtures into a fresh search path. */
export function copyFixtures(names: string[]): string {
  const root = tempDir('reed-native-');
  for (const name of names) cpSync(join(NATIVE_FIXTURES, name), join(root, name), { recursive: true });
  return root;
}

export const trustToml = (pubFile: string, allowInProcess = true) =>
  `[signatures]\ntrusted_keys = ["${pubFile}"]\n[policy]\nallow_native_in_process = ${allowInProcess}\n`;
