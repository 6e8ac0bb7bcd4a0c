// The runner's side of the TLS transport (src/transport/tls-transport.ts): dials `tls://HOST:PORT`, trusts only
// the orchestrator's CA (REED_TLS_CA, or the file REED_TLS_CA_FILE) and checks that the certificate carries the
// name REED_TLS_SERVERNAME. main.ts sends the Hello (the one-time secret) only once this handshake is done and the
// certificate verified ('secureConnect'): a server that is not the orchestrator never sees the secret.
import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { parseTlsAddress, TLS_ENV, TLS_SCHEME, TLS_VERSION } from '../src/transport/tls-address.js';

/** A CA certificate is a few KiB: more is not one. */
const MAX_CA_BYTES = 64 * 1024;

export function isTlsAddress(address: string): boolean {
  return address.startsWith(TLS_SCHEME);
}

/** Dials the orchestrator. Throws (before any connection) when the address or the TLS material is missing or bad. */
export function dialTls(address: string, env: NodeJS.ProcessEnv = process.env): TLSSocket {
  const { host, port } = parseTlsAddress(address);
  const caFile = env[TLS_ENV.caFile];
  const ca = env[TLS_ENV.ca] ?? (caFile === undefined ? undefined : readFileSync(caFile, 'utf8'));
  if (ca === undefined || ca.length === 0 || ca.length > MAX_CA_BYTES)
    throw new Error(`${address}: no CA certificate (${TLS_ENV.ca} or ${TLS_ENV.caFile}, at most 64 KiB)`);
  const servername = env[TLS_ENV.servername];
  if (servername === undefined || servername.length === 0)
    throw new Error(`${address}: no server name to check (${TLS_ENV.servername})`);
  // Mutual TLS (optional): the sandbox's client certificate and key, both files or neither.
  const certFile = env[TLS_ENV.certFile];
  const keyFile = env[TLS_ENV.keyFile];
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new Error(`${address}: ${TLS_ENV.certFile} and ${TLS_ENV.keyFile} go together`);
  const client =
    certFile === undefined || keyFile === undefined
      ? {}
      : { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
  const socket = connect({
    host,
    port,
    ca, // the orchestrator's CA alone: not the system's roots
    servername,
    minVersion: TLS_VERSION,
    maxVersion: TLS_VERSION,
    rejectUnauthorized: true,
    ...client,
  });
  socket.setNoDelay(true);
  return socket;
}
