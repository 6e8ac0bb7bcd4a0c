// The audit trail's events (issue 14, part 6): one message per admin action and per denial of the serve API,
// published on the diagnostics_channel `reed:audit`. The API publishes (src/server/auth.ts); the audit log file
// (under data_dir, with rotation) subscribes. Apart from events.ts's channels because it is about a request, not a
// plugin: no session, no sandbox mode.
import diagnosticsChannel from 'node:diagnostics_channel';

export const AUDIT_CHANNEL = 'reed:audit';

export interface AuditEvent {
  /** When the decision was made or the action answered (ISO 8601). */
  time: string;
  /** `denied`: authentication or authorization refused the request; `done`: an admin action was answered. */
  kind: 'denied' | 'done';
  /** The token's id (`admin` for the admin token file, `socket` for the peer of a Unix socket with no tokens); never the token. */
  tokenId: string | undefined;
  /** Who that token is: `admin`, a tenant, or `anonymous` (no token, or one that did not verify). */
  principal: 'admin' | 'tenant' | 'anonymous';
  /** `unix` (the API socket) or `tcp` (`serve --listen`, TLS). */
  transport: 'unix' | 'tcp';
  method: string;
  /** The path only: never the query (a call's env may hold secrets). At most 1,024 characters. */
  route: string;
  /** The tenant the route is about (the default tenant for /v1/plugins/...), when it names one. */
  tenant: string | undefined;
  plugin: string | undefined;
  /** The HTTP status answered. */
  status: number;
  /** `ok` for an action that succeeded, else the stable code answered (`unauthenticated`, `forbidden`, ...). */
  outcome: string;
}

const channel = diagnosticsChannel.channel(AUDIT_CHANNEL);

export function hasAuditSubscribers(): boolean {
  return channel.hasSubscribers;
}

/** Publishes synchronously to every subscriber (subscribers must not throw: see events.ts's publish). */
export function publishAudit(event: AuditEvent): void {
  if (channel.hasSubscribers) channel.publish(event);
}

/** Subscribes to `reed:audit`; returns the unsubscribe. */
export function subscribeAudit(listener: (event: AuditEvent) => void): () => void {
  const onMessage = (message: unknown) => listener(message as AuditEvent);
  diagnosticsChannel.subscribe(AUDIT_CHANNEL, onMessage);
  return () => {
    diagnosticsChannel.unsubscribe(AUDIT_CHANNEL, onMessage);
  };
}
