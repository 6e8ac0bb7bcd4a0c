// What both ends of the TLS transport agree on (src/transport/tls-transport.ts, sandbox-runner/tls-dial.ts): the
// address form and the protocol version. Imports nothing: the runner loads it.

/** `tls://HOST:PORT` (an IPv6 host in brackets): the RunnerAddress of the TLS transport. */
export const TLS_SCHEME = 'tls://';

/** TLS 1.3 only, both ends. */
export const TLS_VERSION = 'TLSv1.3';

/**
 * The runner's environment that carries the TLS transport's material (none of it secret): the CA certificate (PEM
 * text, or a file), and the name the orchestrator's certificate must carry.
 */
export const TLS_ENV = {
  ca: 'REED_TLS_CA',
  caFile: 'REED_TLS_CA_FILE',
  servername: 'REED_TLS_SERVERNAME',
  /** Mutual TLS: files holding the runner's client certificate and its key (a secret: a file, never the environment). */
  certFile: 'REED_TLS_CERT_FILE',
  keyFile: 'REED_TLS_KEY_FILE',
} as const;

/** `tls://HOST:PORT` -> host and port; throws for anything else. */
export function parseTlsAddress(address: string): { host: string; port: number } {
  const match = /^tls:\/\/(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined || port < 1 || port > 65535)
    throw new Error(`not a TLS runner address (tls://HOST:PORT): ${JSON.stringify(address.slice(0, 200))}`);
  return { host, port };
}

/** `host`, `port` -> `tls://HOST:PORT` (an IPv6 host bracketed). */
export function formatTlsAddress(host: string, port: number): string {
  return `${TLS_SCHEME}${host.includes(':') ? `[${host}]` : host}:${port}`;
}
