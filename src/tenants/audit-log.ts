import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type AuditEvent, subscribeAudit } from '../events/audit.js';
import { TokenBucket } from './quota.js';

export interface AuditLogOptions {
  /** A file is rotated once the next line would take it past this. Default 10 MiB. */
  maxBytes?: number;
  /** Rotated files kept besides the current one (audit.log.1 is the newest). Default 5. */
  maxFiles?: number;
  /**
   * Denial lines written per second past the burst (default 10, burst 100); the others are counted and written
   * as one `{"kind":"suppressed","count":N}` line before the next line that is written. Admin actions (`done`)
   * are always written.
   */
  deniedPerSecond?: number;
  deniedBurst?: number;
  /**
   * A tenant's failed actions (an install, upgrade, removal or reload its token asked for, answered 4xx or 5xx)
   * written per second past the burst, per tenant (default 10, burst 100); the others are counted and written as
   * one `{"kind":"suppressed","outcome":"failed","tenant":T,"count":N}` line. The admin's actions and every
   * action that succeeded (a tenant's are bounded by its lifecycle rate) are always written.
   */
  failedPerSecond?: number;
  failedBurst?: number;
}

/** Tenants whose failed actions are metered at once: past this the meters start over (each a few numbers). */
const MAX_FAILED_METERS = 1_024;

export const AUDIT_FILE = 'audit.log';
/** Every string field is cut to this: an audit line is bounded whatever a request carried. */
const MAX_FIELD_CHARS = 1024;

/**
 * The audit log (docs/TENANTS.md, "Audit"): one JSON line per `reed:audit` message (an admin action answered, a
 * request denied), appended to `<data_dir>/audit/audit.log`; when a line would take the file past maxBytes it is
 * renamed audit.log.1 (the older ones shift up, the last dropped), so the log takes at most
 * (maxFiles + 1) x maxBytes. Tokens never reach it: the message carries the token's id only, and the route without
 * its query. Written synchronously (the subscriber runs in the publisher's turn), never through a link.
 */
export class AuditLog {
  readonly dir: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  #fd: number | undefined;
  #size = 0;
  #unsubscribe: (() => void) | undefined;
  /** Lines that could not be written (disk full, say): the publisher is never failed for them. */
  failures = 0;
  /**
   * Denials are what anyone may cause, a client without a token too (a 401 per request): unbounded, they rotated
   * the admin actions out of the log (60 MiB of 401s by default). Past this bucket they are counted, not written.
   */
  readonly #denials: TokenBucket;
  /** Denials not written since the last line that was. */
  suppressed = 0;
  /**
   * A tenant's failed actions are what its token may cause as fast as it can send them (a 415 for a wrong
   * content type on an install route: ~2,750 a second rotated every line out of the log within a minute, the sixth
   * review). Past each tenant's bucket they are counted, not written.
   */
  readonly #failed = new Map<string, TokenBucket>();
  readonly #failedRate: [number, number];
  /** Failed actions not written, by tenant, since the last line that was. */
  readonly suppressedFailed = new Map<string, number>();

  constructor(dir: string, options: AuditLogOptions = {}) {
    this.dir = dir;
    this.#maxBytes = Math.max(1024, options.maxBytes ?? 10 * 1024 * 1024);
    this.#maxFiles = Math.max(1, options.maxFiles ?? 5);
    this.#denials = new TokenBucket(
      Math.max(0.001, options.deniedPerSecond ?? 10),
      Math.max(1, options.deniedBurst ?? 100),
    );
    this.#failedRate = [
      Math.max(0.001, options.failedPerSecond ?? 10),
      Math.max(1, options.failedBurst ?? 100),
    ];
  }

  /** Whether the event is a tenant's failed action over its tenant's rate (then counted, not written). */
  #overFailedRate(event: AuditEvent): boolean {
    if (event.kind !== 'done' || event.principal === 'admin' || event.status < 400) return false;
    const tenant = event.tenant ?? '';
    let bucket = this.#failed.get(tenant);
    if (bucket === undefined) {
      if (this.#failed.size >= MAX_FAILED_METERS) this.#failed.clear();
      bucket = new TokenBucket(...this.#failedRate);
      this.#failed.set(tenant, bucket);
    }
    if (bucket.take() === undefined) return false;
    this.suppressedFailed.set(tenant, (this.suppressedFailed.get(tenant) ?? 0) + 1);
    return true;
  }

  /** The counts of lines not written, each as one line, before the next line that is. */
  #flushSuppressed(): void {
    if (this.suppressed > 0) {
      const count = this.suppressed;
      this.suppressed = 0;
      this.#line(
        JSON.stringify({ time: new Date().toISOString(), kind: 'suppressed', outcome: 'denied', count }),
      );
    }
    if (this.suppressedFailed.size === 0) return;
    const failed = [...this.suppressedFailed];
    this.suppressedFailed.clear();
    for (const [tenant, count] of failed)
      this.#line(
        JSON.stringify({
          time: new Date().toISOString(),
          kind: 'suppressed',
          outcome: 'failed',
          tenant,
          count,
        }),
      );
  }

  start(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (!lstatSync(this.dir).isDirectory()) throw new Error(`${this.dir} is not a directory`);
    this.#open();
    this.#unsubscribe = subscribeAudit((event) => this.write(event));
  }

  #open(): void {
    this.#fd = openSync(
      join(this.dir, AUDIT_FILE),
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o600,
    );
    this.#size = fstatSync(this.#fd).size;
  }

  #rotate(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    const name = (n: number) => join(this.dir, n === 0 ? AUDIT_FILE : `${AUDIT_FILE}.${n}`);
    try {
      unlinkSync(name(this.#maxFiles));
    } catch {
      // None yet.
    }
    for (let n = this.#maxFiles - 1; n >= 0; n--) {
      try {
        renameSync(name(n), name(n + 1));
      } catch {
        // A gap: nothing to shift.
      }
    }
    this.#open();
  }

  write(event: AuditEvent): void {
    if (event.kind !== 'done' && this.#denials.take() !== undefined) {
      this.suppressed++;
      return;
    }
    if (this.#overFailedRate(event)) return;
    this.#flushSuppressed();
    this.#line(JSON.stringify(bounded(event)));
  }

  #line(json: string): void {
    try {
      const line = `${json}\n`;
      const bytes = Buffer.byteLength(line);
      if (this.#fd === undefined) return;
      if (this.#size > 0 && this.#size + bytes > this.#maxBytes) this.#rotate();
      if (this.#fd === undefined) return;
      writeSync(this.#fd, line);
      this.#size += bytes;
    } catch {
      // A subscriber must not throw (events.ts): the failure is counted, the request goes on.
      this.failures++;
    }
  }

  close(): void {
    if (this.#fd !== undefined) this.#flushSuppressed();
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** The event's known fields only, strings cut to MAX_FIELD_CHARS: nothing unbounded or unexpected is written. */
function bounded(e: AuditEvent): Record<string, unknown> {
  const s = (v: unknown) => (typeof v === 'string' ? v.slice(0, MAX_FIELD_CHARS) : undefined);
  return {
    time: s(e.time),
    kind: s(e.kind),
    tokenId: s(e.tokenId) ?? null,
    principal: s(e.principal),
    transport: s(e.transport),
    method: s(e.method),
    route: s(e.route),
    tenant: s(e.tenant) ?? null,
    plugin: s(e.plugin) ?? null,
    status: typeof e.status === 'number' ? e.status : null,
    outcome: s(e.outcome),
  };
}
