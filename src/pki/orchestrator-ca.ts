// The orchestrator's own certificate authority (issue 18, part 2): runners that dial the host over TCP verify the
// host's certificate against this CA alone (src/transport/tls-transport.ts, sandbox-runner/tls-dial.ts).
// Keys come from node:crypto (WebCrypto, ECDSA P-256); node:crypto cannot make an X.509 certificate, so the
// certificates are built and signed with pkijs (docs/ARCHITECTURE.md, "The TLS transport": why pkijs).
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { ReedError } from '../errors.js';

/** The DNS name the orchestrator's server certificate carries unless told otherwise: what runners check. */
export const ORCHESTRATOR_SERVERNAME = 'orchestrator.reed.invalid';

/** A certificate and its private key, PEM. The key is the holder's alone: never handed to a runner. */
export interface CertifiedKey {
  certPem: string;
  keyPem: string;
}

export interface CaOptions {
  /** The CA's common name. Default "reed orchestrator CA " and 12 random hex digits: each CA its own name. */
  commonName?: string;
  /** How long the CA certificate is valid, from now. Default 3,650 days. */
  validityDays?: number;
}

export interface ServerCertificateOptions {
  /** DNS names (subjectAltName). Default [ORCHESTRATOR_SERVERNAME]. */
  dnsNames?: string[];
  /** IP addresses (subjectAltName), v4 or v6. Default none. */
  ipAddresses?: string[];
  /** Default 365 days. */
  validityDays?: number;
}

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const DAY_MS = 86_400_000;
/** Clocks of the host and of a node that runs a runner may disagree a little. */
const CLOCK_SKEW_MS = 5 * 60_000;
const OID = {
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

// pkijs is typed against the DOM's Crypto and CryptoKey; node:crypto's webcrypto is the same API.
type EngineCrypto = ConstructorParameters<typeof pkijs.CryptoEngine>[0]['crypto'];
type PkiKey = Parameters<pkijs.Certificate['sign']>[0];
let engine: pkijs.CryptoEngine | undefined;
function cryptoEngine(): pkijs.CryptoEngine {
  engine ??= new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as EngineCrypto });
  return engine;
}

/**
 * A CA made in memory when the orchestrator starts: its private key is a non-extractable WebCrypto key that never
 * leaves this process (nothing is written to disk), so a new orchestrator is a new CA, and runners started by an
 * earlier one cannot be fooled by a certificate it issued. It issues the orchestrator's server certificates and,
 * optionally, a sandbox's client certificate.
 */
export class OrchestratorCa {
  /** The CA certificate, PEM: what a runner is given to verify the orchestrator with. */
  readonly certPem: string;
  readonly #name: string;
  readonly #key: webcrypto.CryptoKey;

  private constructor(certPem: string, name: string, key: webcrypto.CryptoKey) {
    this.certPem = certPem;
    this.#name = name;
    this.#key = key;
  }

  static async create(options: CaOptions = {}): Promise<OrchestratorCa> {
    const name = options.commonName ?? `reed orchestrator CA ${randomBytes(6).toString('hex')}`;
    checkName(name, 'the CA common name');
    const keys = await webcrypto.subtle.generateKey(KEY_ALGORITHM, false, ['sign', 'verify']);
    const certPem = await certificate({
      subject: name,
      issuer: name,
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      validityDays: options.validityDays ?? 3650,
      ca: true,
    });
    return new OrchestratorCa(certPem, name, keys.privateKey);
  }

  /** A server certificate (serverAuth) for the orchestrator's runner listeners, with a fresh key. */
  async issueServer(options: ServerCertificateOptions = {}): Promise<CertifiedKey> {
    const dnsNames = options.dnsNames ?? [ORCHESTRATOR_SERVERNAME];
    const ipAddresses = options.ipAddresses ?? [];
    for (const d of dnsNames) checkName(d, 'a DNS name');
    for (const ip of ipAddresses)
      if (isIP(ip) === 0) throw new ReedError('usage', `"${ip.slice(0, 64)}" is not an IP address`);
    if (dnsNames.length + ipAddresses.length === 0)
      throw new ReedError('usage', 'a server certificate needs at least one DNS name or IP address');
    return this.#issue(
      dnsNames[0] ?? ipAddresses[0] ?? '',
      OID.serverAuth,
      { dnsNames, ipAddresses },
      options,
    );
  }

  /** A client certificate (clientAuth) naming `commonName` (a sandbox), with a fresh key. */
  async issueClient(commonName: string, options: { validityDays?: number } = {}): Promise<CertifiedKey> {
    checkName(commonName, 'a client common name');
    return this.#issue(commonName, OID.clientAuth, { dnsNames: [], ipAddresses: [] }, options);
  }

  async #issue(
    subject: string,
    purpose: string,
    names: { dnsNames: string[]; ipAddresses: string[] },
    options: { validityDays?: number },
  ): Promise<CertifiedKey> {
    const keys = await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
    const certPem = await certificate({
      subject,
      issuer: this.#name,
      publicKey: keys.publicKey,
      signingKey: this.#key,
      validityDays: options.validityDays ?? 365,
      ca: false,
      purpose,
      ...names,
    });
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    return { certPem, keyPem: pem('PRIVATE KEY', pkcs8) };
  }
}

interface CertificateRequest {
  subject: string;
  issuer: string;
  publicKey: webcrypto.CryptoKey;
  signingKey: webcrypto.CryptoKey;
  validityDays: number;
  ca: boolean;
  purpose?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
}

async function certificate(r: CertificateRequest): Promise<string> {
  if (!Number.isInteger(r.validityDays) || r.validityDays < 1 || r.validityDays > 36_500)
    throw new ReedError('usage', `validityDays must be an integer from 1 to 36500, not ${r.validityDays}`);
  const c = new pkijs.Certificate();
  c.version = 2; // X.509 v3
  c.serialNumber = new asn1js.Integer({ valueHex: serialBytes(randomBytes(16)).buffer });
  c.subject = distinguishedName(r.subject);
  c.issuer = distinguishedName(r.issuer);
  const now = Date.now();
  c.notBefore.value = new Date(now - CLOCK_SKEW_MS);
  c.notAfter.value = new Date(now + r.validityDays * DAY_MS);
  const extensions: pkijs.Extension[] = [
    extension(
      OID.basicConstraints,
      true,
      new pkijs.BasicConstraints(r.ca ? { cA: true, pathLenConstraint: 0 } : {}).toSchema(),
    ),
    // keyCertSign + cRLSign for the CA (bits 5, 6), digitalSignature (bit 0) otherwise.
    extension(
      OID.keyUsage,
      true,
      new asn1js.BitString({
        valueHex: new Uint8Array([r.ca ? 0x06 : 0x80]).buffer,
        unusedBits: r.ca ? 1 : 7,
      }),
    ),
  ];
  if (r.purpose !== undefined)
    extensions.push(
      extension(OID.extKeyUsage, true, new pkijs.ExtKeyUsage({ keyPurposes: [r.purpose] }).toSchema()),
    );
  const altNames = [
    ...(r.dnsNames ?? []).map((value) => new pkijs.GeneralName({ type: 2, value })),
    ...(r.ipAddresses ?? []).map(
      (ip) =>
        new pkijs.GeneralName({
          type: 7,
          value: new asn1js.OctetString({ valueHex: new Uint8Array(ipBytes(ip)).buffer }),
        }),
    ),
  ];
  if (altNames.length > 0)
    extensions.push(
      extension(OID.subjectAltName, false, new pkijs.GeneralNames({ names: altNames }).toSchema()),
    );
  c.extensions = extensions;
  await c.subjectPublicKeyInfo.importKey(r.publicKey as unknown as PkiKey, cryptoEngine());
  await c.sign(r.signingKey as unknown as PkiKey, 'SHA-256', cryptoEngine());
  return pem('CERTIFICATE', Buffer.from(c.toSchema(true).toBER(false)));
}

/**
 * A certificate's serial from 16 random bytes: positive (the first bit clear) and DER's minimal encoding (the first
 * byte never 0: a 0 before a byte under 0x80 is padding DER forbids, and OpenSSL 3 refused such a certificate with
 * "illegal padding", one certificate in 256, when the TLS listener loaded it), so no two certificates of a CA share
 * one.
 */
export function serialBytes(random: Uint8Array): Uint8Array {
  const serial = new Uint8Array(random);
  serial[0] = (serial[0] ?? 0) & 0x7f || 0x01;
  return serial;
}

function extension(extnID: string, critical: boolean, value: { toBER(sizeOnly?: boolean): ArrayBuffer }) {
  return new pkijs.Extension({ extnID, critical, extnValue: value.toBER(false) });
}

function distinguishedName(commonName: string): pkijs.RelativeDistinguishedNames {
  const name = new pkijs.RelativeDistinguishedNames();
  name.typesAndValues.push(
    new pkijs.AttributeTypeAndValue({
      type: OID.commonName,
      value: new asn1js.Utf8String({ value: commonName }),
    }),
  );
  return name;
}

/** Printable ASCII without spaces at either end, 1-253 characters: names go into certificates and logs. */
function checkName(name: string, what: string): void {
  if (!/^[\x21-\x7e](?:[\x20-\x7e]{0,251}[\x21-\x7e])?$/.test(name))
    throw new ReedError(
      'usage',
      `${what} must be 1-253 printable ASCII characters, not ${JSON.stringify(name.slice(0, 64))}`,
    );
}

/** An IP address's bytes: 4 for IPv4, 16 for IPv6 (the forms isIP accepts, "::" included). */
export function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  let text = ip;
  const tail: number[] = [];
  const v4 = /:(\d+\.\d+\.\d+\.\d+)$/.exec(ip);
  if (v4?.[1] !== undefined) {
    tail.push(...ipBytes(v4[1]));
    text = `${ip.slice(0, -v4[1].length)}0:0`;
  }
  const [head = '', rest] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  if (tail.length === 4) Buffer.from(tail).copy(out, 12);
  return out;
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
