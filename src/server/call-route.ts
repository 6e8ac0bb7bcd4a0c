import type { IncomingMessage } from 'node:http';
import type { ReedError } from '../errors.js';
import { escapeRawInJson } from '../safe-text.js';
import { quotaExceeded } from '../tenants/quota.js';
import type { Tenant } from '../tenants/tenant.js';
import { readBody } from './request-body.js';

/**
 * What the call route (`POST .../plugins/{id}/call/{fn}`) does, shared by its fastify handler (plugin-routes.ts)
 * and its fast path (call-fast-path.ts): the call bodies the host holds, counted against the tenant's
 * max_concurrent_calls, and the answer's JSON.
 */
/**
 * The call bodies a tenant without max_concurrent_calls may have the host hold at once, being received or in a call
 * not yet answered: a host-wide default, so that no tenant holds an unbounded number of them (each up to
 * maxInputBytes: 64 x 16 MiB at the defaults). Counted until the answer, not only while received: a call read but
 * waiting for the tenant's next turn slice (TenantHost, TURN_SLICE_MS) or in a runner's queue holds its body too,
 * and requests pipelined on a connection are read faster than slow calls end (test/security/tenant-deferred-calls).
 */
export const DEFAULT_BODIES_PER_TENANT = 64;

/** Tenants whose count of bodies held is kept at 0 before they are swept (the map's bound, but for tenants holding some). */
const KEPT_COUNTS = 64;

export class CallBodies {
  /** Call bodies held now (being received, or their call not yet answered), by tenant. */
  readonly #held = new Map<string, number>();

  /**
   * The refusal of one more body for the tenant: its max_concurrent_calls bounds the bodies held too (each may hold
   * maxInputBytes of the host's memory before the call's own admission, Tenant.call, sees it, and after).
   */
  refusal(tenant: Tenant, pluginId: string): ReedError | undefined {
    const quota = tenant.spec.quotas?.max_concurrent_calls;
    const max = quota ?? DEFAULT_BODIES_PER_TENANT;
    const held = this.#held.get(tenant.id) ?? 0;
    if (held < max) return undefined;
    return quotaExceeded(
      tenant.id,
      'max_concurrent_calls',
      max,
      `${held} calls are being received or run${quota === undefined ? ' (the host-wide default of a tenant without max_concurrent_calls)' : ''}`,
      null,
      pluginId,
    );
  }

  /** The tenants with no body held now are forgotten. */
  #sweep(): void {
    for (const [id, count] of this.#held) if (count <= 0) this.#held.delete(id);
  }

  /**
   * Reads a call's body (readBody), counted as held until the read fails or, when `done` returns the call's outcome,
   * until that settles.
   */
  read(
    tenant: Tenant,
    req: IncomingMessage,
    max: number,
    done: (error: Error | undefined, body: Buffer | undefined) => PromiseLike<unknown> | undefined,
  ): void {
    const id = tenant.id;
    const held = this.#held.get(id);
    if (held === undefined) {
      if (this.#held.size >= KEPT_COUNTS) this.#sweep();
      this.#held.set(id, 1);
    } else this.#held.set(id, held + 1);
    // A count back to 0 stays (a delete shrank the map, and the next body grew it again: both per call); the
    // zeros are swept once KEPT_COUNTS tenants have one.
    const release = () => void this.#held.set(id, (this.#held.get(id) ?? 1) - 1);
    readBody(req, max, (error, body) => {
      let outcome: PromiseLike<unknown> | undefined;
      try {
        outcome = done(error, body);
      } finally {
        if (outcome === undefined) release();
        else outcome.then(release, release);
      }
    });
  }
}

/**
 * The call's answer, `{"ok":true,"output","outputEncoding","stats":{"fuelConsumed","durationMs"}}`, written here
 * rather than by the generic jsonText (a replacer called for every key): the same text, made as safe (the output's
 * characters JSON leaves raw escaped; base64 has none). Undefined if it cannot be made (an output too large for one
 * string): a 500.
 */
export function callAnswer(
  output: Uint8Array,
  stats: { fuelConsumed: unknown; durationMs: unknown },
): string | undefined {
  try {
    const plain = plainAscii(output);
    let text: string;
    let encoding: 'utf8' | 'base64';
    if (plain !== undefined) {
      text = `"${plain}"`;
      encoding = 'utf8';
    } else {
      const encoded = encodeOutput(output);
      text =
        encoded.outputEncoding === 'utf8'
          ? escapeRawInJson(JSON.stringify(encoded.output))
          : `"${encoded.output}"`;
      encoding = encoded.outputEncoding;
    }
    return `{"ok":true,"output":${text},"outputEncoding":"${encoding}","stats":{"fuelConsumed":${number(stats.fuelConsumed)},"durationMs":${number(stats.durationMs)}}}`;
  } catch {
    return undefined;
  }
}

/**
 * The output as a JSON string's contents when every byte is printable ASCII but `"` and `\` (0x20-0x7e): the text
 * JSON.stringify and escapeRawInJson would write, without the decoder, the stringifier and the replace (most
 * answers: the API bench, issue 14). Undefined for anything else, which takes the general path.
 */
function plainAscii(output: Uint8Array): string | undefined {
  const n = output.length;
  for (let i = 0; i < n; i++) {
    const b = output[i] as number;
    if (b < 0x20 || b > 0x7e || b === 0x22 || b === 0x5c) return undefined;
  }
  // Every byte is ASCII, which the decoder reads as it is (and faster than a Buffer made for it and its latin1Slice).
  return utf8.decode(output);
}

/** A figure as JSON: a number as JSON.stringify writes it (NaN and infinities null), anything else null. */
function number(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : 'null';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Output as text when it is UTF-8, else base64, saying which (as `reed-plugins call --json` prints it). */
export function encodeOutput(output: Uint8Array): { output: string; outputEncoding: 'utf8' | 'base64' } {
  try {
    return { output: utf8.decode(output), outputEncoding: 'utf8' };
  } catch {
    return { output: Buffer.from(output).toString('base64'), outputEncoding: 'base64' };
  }
}
