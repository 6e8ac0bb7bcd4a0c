// Host API calls on the wire (HostCall and HostReply frames, docs/PROTOCOL.md), both ends, from the host API
// table (src/runtime/host-api.ts): a runner asks for the functions whose row says `reply`, by their ABI name; text
// arguments travel in the metadata, a bytes argument as the body, and the answer comes back by its row's kind.
import { isCode } from '../codes.js';
import { ReedError } from '../errors.js';
import {
  HOST_FUNCTIONS,
  type HostApi,
  type HostArg,
  type HostCallName,
  type HostFunction,
  isHostCallName,
} from '../runtime/host-api.js';
import { invokeHostApi } from '../runtime/host-api-calls.js';
import type { Amount, LeaseAnswer, LeaseRequest } from '../runtime/wasm/quota-leases.js';
import { ProtocolError } from './frames.js';
import { boundedDetails, isStringArray } from './messages.js';

/** HostCall metadata: a host function's call, or the runner's own lease request (LEASE_OP). */
export type HostCallMeta =
  | {
      op: HostCallName;
      /** The text arguments, in order. */
      args: string[];
    }
  | { op: typeof LEASE_OP; args: []; lease: LeaseRequest };

/** HostReply metadata: the answer (`hasBytes`: it is the body), or the refusal with its code. */
export type HostReplyMeta =
  | { ok: true; value?: unknown; hasBytes?: boolean }
  | { ok: false; code: string; message: string; details?: Record<string, unknown> };

/** A HostReply as the runner hands it on: its metadata, and its body when the metadata says it has one. */
export interface HostReply {
  meta: HostReplyMeta;
  bytes?: Uint8Array;
}

/**
 * The runner's own HostCall: a lease on its data directory's quotas (src/runtime/wasm/quota-leases.ts), its request
 * in the metadata's `lease`, the answer as the reply's value. Not a host function: no plugin can import or name it.
 */
export const LEASE_OP = 'fs_lease';

const isAmount = (v: unknown): v is Amount =>
  Array.isArray(v) && v.length === 2 && v.every((n) => Number.isSafeInteger(n) && (n as number) >= 0);

/** Host side: an `fs_lease` request as a runner sent it, or undefined when it is not one. */
export function checkLeaseRequest(value: unknown): LeaseRequest | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (!isAmount(v.need) || !isAmount(v.back) || (v.walked !== undefined && !isAmount(v.walked)))
    return undefined;
  return { need: v.need, back: v.back, ...(v.walked === undefined ? {} : { walked: v.walked }) };
}

/** Runner side: the host's answer to `fs_lease`, or undefined when it is not one. */
export function checkLeaseAnswer(reply: HostReply): LeaseAnswer | undefined {
  const v = reply.meta.ok ? (reply.meta.value as Record<string, unknown> | null) : null;
  if (v === null || typeof v !== 'object') return undefined;
  if (v.refused === 'disk' || v.refused === 'files') return { refused: v.refused };
  return isAmount(v.granted) && isAmount(v.keep) ? { granted: v.granted, keep: v.keep } : undefined;
}

/** The most bytes of arguments one HostCall carries (text and body together). */
const MAX_ARG_BYTES = 64 * 1024 * 1024;

/** Runner side: a call of `name` as HostCall metadata and body. */
export function hostCallFrame(
  name: HostCallName,
  args: readonly HostArg[],
): { meta: HostCallMeta; body?: Uint8Array } {
  const texts: string[] = [];
  let body: Uint8Array | undefined;
  for (const arg of args) {
    if (typeof arg === 'string') texts.push(arg);
    else if (arg instanceof Uint8Array) body = arg;
  }
  return { meta: { op: name, args: texts }, ...(body === undefined ? {} : { body }) };
}

/**
 * Host side: answers a HostCall frame with `host` (the same PluginHostApi as in mode none, so the same checks).
 * A frame that names no function a runner may ask for, or carries too much, is a ProtocolError; a refusal by the
 * host is an answer (`ok: false` with its code).
 */
export function answerHostCall(
  host: HostApi,
  meta: Record<string, unknown>,
  body: Uint8Array,
): { meta: HostReplyMeta; body?: Uint8Array } {
  const { op, args } = meta;
  if (!isHostCallName(op) || !isStringArray(args)) throw new ProtocolError('malformed HostCall frame');
  if (args.reduce((n, a) => n + a.length, 0) + body.length > MAX_ARG_BYTES)
    throw new ProtocolError('HostCall arguments too large');
  const row: HostFunction = HOST_FUNCTIONS[op];
  try {
    const result = invokeHostApi(host, op, callArguments(op, row, args, body));
    if (row.answer === 'bytes') {
      const bytes = result as Uint8Array | undefined;
      return {
        meta: { ok: true, hasBytes: bytes !== undefined },
        ...(bytes === undefined ? {} : { body: bytes }),
      };
    }
    if (row.answer === 'status' || row.answer === 'nothing') return { meta: { ok: true } };
    return { meta: { ok: true, value: result ?? null } };
  } catch (error) {
    const e =
      error instanceof ReedError
        ? error
        : new ReedError('invalid_argument', String((error as Error)?.message ?? error));
    // The refusal's details (a quota's name, limit and retryAfterMs) go with it, bounded as an Error frame's, so
    // that the call the runner fails with it answers what mode none answers.
    const details = boundedDetails(e.details);
    return {
      meta: { ok: false, code: e.code, message: e.message, ...(details === undefined ? {} : { details }) },
    };
  }
}

/** How many of the quota refusals answered to one runner are remembered (the most recent ones). */
const REMEMBERED_REFUSALS = 16;

/**
 * Host side: the `quota_exceeded` refusals the host answered to one runner's HostCalls, so that the details of a
 * call's Error frame with that code are believed only when they are one of them. A runner is hostile: left to
 * itself it could answer any quota, limit, tenant or retryAfterMs (a Retry-After of a year) for a call; this way it
 * can only hand back what the host told it. Bounded: the most recent REMEMBERED_REFUSALS.
 */
export class QuotaRefusals {
  readonly #seen = new Map<string, Record<string, unknown>>();

  /** Remembers a HostReply's refusal when it is a quota's. */
  note(reply: HostReplyMeta): void {
    if (reply.ok || reply.code !== 'quota_exceeded' || reply.details === undefined) return;
    const key = JSON.stringify(reply.details);
    this.#seen.delete(key);
    this.#seen.set(key, reply.details);
    if (this.#seen.size > REMEMBERED_REFUSALS) this.#seen.delete(this.#seen.keys().next().value as string);
  }

  /**
   * The details to keep of an Error frame's (already bounded): for `quota_exceeded`, the host's own copy of a
   * refusal it answered with the same details, else none; any other code's as they are.
   */
  vouch(code: string, details: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
    if (code !== 'quota_exceeded' || details === undefined) return details;
    const own = this.#seen.get(JSON.stringify(details));
    return own === undefined ? undefined : { ...own };
  }
}

/** The method's arguments: text ones from the metadata in order, a bytes one from the body. */
function callArguments(op: HostCallName, row: HostFunction, args: string[], body: Uint8Array): HostArg[] {
  const texts = row.params.filter((param) => param.kind === 'text').length;
  if (args.length < texts) throw new ReedError('invalid_argument', `${op} needs ${texts} argument(s)`);
  let text = 0;
  return row.params
    .filter((param) => param.kind === 'text' || param.kind === 'bytes')
    .map((param) => (param.kind === 'bytes' ? body : (args[text++] as string)));
}

/** Runner side: a HostReply frame from the host, read into its parts (the body kept only when announced). */
export function readHostReply(meta: Record<string, unknown>, body: Uint8Array): HostReply {
  if (meta.ok !== true) {
    const details = boundedDetails(meta.details);
    return {
      meta: {
        ok: false,
        code: String(meta.code),
        message: String(meta.message ?? 'host call failed'),
        ...(details === undefined ? {} : { details }),
      },
    };
  }
  const hasBytes = meta.hasBytes === true;
  return { meta: { ok: true, value: meta.value, hasBytes }, ...(hasBytes ? { bytes: body } : {}) };
}

/** Runner side: what the method returns, from the host's reply (a refusal is thrown with its code). */
export function hostCallResult(name: HostCallName, reply: HostReply): unknown {
  const { meta } = reply;
  if (!meta.ok)
    throw new ReedError(
      isCode(meta.code) ? meta.code : 'invalid_argument',
      meta.message,
      meta.details === undefined ? undefined : { details: meta.details },
    );
  switch (HOST_FUNCTIONS[name].answer as HostFunction['answer']) {
    case 'bytes':
      return meta.hasBytes === true ? (reply.bytes ?? new Uint8Array(0)) : undefined;
    case 'found':
      return meta.value === true;
    case 'list':
      return isStringArray(meta.value) ? meta.value : [];
    case 'text':
      return typeof meta.value === 'string' ? meta.value : undefined;
    default:
      return undefined;
  }
}
