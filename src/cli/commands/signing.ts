import { closeSync, constants, existsSync, openSync, realpathSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { inventoryPlugin } from '../../discovery/plugin-inventory.js';
import { isReedError } from '../../errors.js';
import { MANIFEST_FILE } from '../../manifest/parse-manifest.js';
import { escapeUnprintable } from '../../safe-text.js';
import {
  generateSigningKey,
  readPrivateKey,
  readTrustedKey,
  SIGNATURE_FILE,
  signPlugin,
  verifyPlugin,
} from '../../signing/signature.js';
import { type Command, EXIT_OK, EXIT_PLUGIN_ERROR, hostConfigFrom, toJson, UsageError } from '../command.js';

function pluginInventory(
  dir: string | undefined,
  cwd: string,
  limits: Parameters<typeof inventoryPlugin>[1],
) {
  if (dir === undefined) throw new UsageError('expected a plugin directory');
  const abs = resolve(cwd, dir);
  if (!existsSync(join(abs, MANIFEST_FILE)))
    throw new UsageError(`${dir} is not a plugin directory (no ${MANIFEST_FILE})`);
  return inventoryPlugin(realpathSync(abs), limits);
}

export const keygenCommand: Command = {
  name: 'keygen',
  usage: '[--out PREFIX]',
  summary: 'create an Ed25519 signing key pair: PREFIX.key (private, mode 0600) and PREFIX.pub',
  options: { out: { type: 'string' } },
  optionHelp: [['--out PREFIX', 'where to write the keys (default: reed-signing)']],
  maxPositionals: 0,
  async run({ values, io }) {
    const prefix = resolve(io.cwd, typeof values.out === 'string' ? values.out : 'reed-signing');
    for (const f of [`${prefix}.key`, `${prefix}.pub`]) {
      if (existsSync(f)) throw new UsageError(`${f} exists; refusing to overwrite a key`);
    }
    const key = generateSigningKey();
    writeFileSync(`${prefix}.key`, key.privatePem, { mode: 0o600, flag: 'wx' });
    writeFileSync(`${prefix}.pub`, key.publicPem, { mode: 0o644, flag: 'wx' });
    io.stdout(`key ${key.keyId}\n  private: ${prefix}.key (keep it secret)\n  public:  ${prefix}.pub\n`);
    io.stdout(`Trust it in reed.toml:\n  [signatures]\n  trusted_keys = ["${prefix}.pub"]\n`);
    return EXIT_OK;
  },
};

export const signCommand: Command = {
  name: 'sign',
  usage: 'DIR --key KEY',
  summary: `sign every file of the plugin in DIR with an Ed25519 key, writing DIR/${SIGNATURE_FILE}`,
  options: { key: { type: 'string' } },
  optionHelp: [['--key KEY', 'the private key (PEM, from keygen)']],
  maxPositionals: 1,
  async run({ values, positionals, io }) {
    if (typeof values.key !== 'string') throw new UsageError('--key KEY is required');
    const config = hostConfigFrom({}, io);
    const inventory = pluginInventory(positionals[0], io.cwd, config.fileLimits);
    const key = readPrivateKey(resolve(io.cwd, values.key));
    const signature = signPlugin(inventory, key, config.fileLimits);
    // O_NOFOLLOW: a plugin.sig someone replaced with a link must not make us overwrite the link's target.
    const out = openSync(
      join(inventory.root, SIGNATURE_FILE),
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      0o644,
    );
    try {
      writeFileSync(out, `${JSON.stringify(signature, null, 2)}\n`);
    } finally {
      closeSync(out);
    }
    io.stdout(`signed ${Object.keys(signature.files).length} file(s) in ${inventory.root}\n`);
    return EXIT_OK;
  },
};

export const verifyCommand: Command = {
  name: 'verify',
  usage: 'DIR [--trusted-key PUB]... [--config FILE] [--json]',
  summary: `check DIR/${SIGNATURE_FILE} against the plugin's files and the trusted keys`,
  options: {
    'trusted-key': { type: 'string', multiple: true },
    config: { type: 'string' },
    json: { type: 'boolean' },
  },
  optionHelp: [
    ['--trusted-key PUB', 'also trust this public key (a PEM file, or ed25519:BASE64); repeatable'],
    ['--config FILE', 'host configuration whose [signatures] trusted_keys apply'],
    ['--json', 'print machine-readable JSON'],
  ],
  maxPositionals: 1,
  async run({ values, positionals, io }) {
    const config = hostConfigFrom(values, io);
    const extra = ((values['trusted-key'] as string[] | undefined) ?? []).map((k) =>
      readTrustedKey(k, io.cwd),
    );
    const inventory = pluginInventory(positionals[0], io.cwd, config.fileLimits);
    try {
      const verified = verifyPlugin(inventory.root, [...config.signatures.trustedKeys, ...extra], {
        limits: config.fileLimits,
      });
      if (values.json === true)
        io.stdout(
          `${toJson({ valid: true, keyId: verified.keyId, files: [...verified.contents.keys()].filter((p) => p !== SIGNATURE_FILE).length })}\n`,
        );
      else io.stdout(`valid: signed by trusted key ${verified.keyId}\n`);
      return EXIT_OK;
    } catch (error) {
      if (!isReedError(error)) throw error;
      if (values.json === true) io.stdout(`${toJson({ valid: false, error: error.toJSON() })}\n`);
      else io.stderr(`error ${error.code}: ${escapeUnprintable(error.message)}\n`);
      return EXIT_PLUGIN_ERROR;
    }
  },
};
