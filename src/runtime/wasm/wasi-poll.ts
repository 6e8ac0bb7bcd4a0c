import type { FdEntry } from './wasi-fds.js';
import { CLOCK, ERRNO, EVENTTYPE, RIGHT, SUBCLOCK_ABSTIME } from './wasi-types.js';

/**
 * Fuel per subscription poll_oneoff reads (three passes over it, its event written): ~85-90 ns each with 1,024 in a
 * poll (bench/import-fuel.ts rows poll_stdin, poll_files; at 100 they ran at 8-13x plain instructions' CPU per fuel,
 * the fifth review, session 21). A sleep itself costs nothing more, however long (it is bounded by time).
 */
export const FUEL_PER_SUBSCRIPTION = 2_048;
const SUBSCRIPTION_BYTES = 48;
const EVENT_BYTES = 32;

export interface PollContext {
  view(): DataView;
  /** Bounds-checks [ptr, ptr + len) of guest memory (RangeError outside). */
  region(ptr: number, len: number): Uint8Array;
  charge(fuel: number): void;
  entry(fd: number): FdEntry | undefined;
  /** Bytes ready to read on a descriptor (stdin's rest, a file's bytes past its offset), for the event; charges its work. */
  readable(entry: FdEntry): bigint;
  /** Sleeps until the monotonic clock reads `ns`; throws (call_timeout) if that would pass the call's deadline. */
  sleep(untilNs: bigint): void;
}

export const realtimeNs = (): bigint => BigInt(Date.now()) * 1_000_000n;
export const monotonicNs = (): bigint => process.hrtime.bigint();

/**
 * poll_oneoff: descriptor subscriptions are ready at once (stdio and files never block here: stdin is the call's
 * input, output goes to memory, files are files), so they answer without waiting, with any clock already due;
 * with clocks alone, the call sleeps until the soonest (relative or absolute, realtime or monotonic), never past
 * the call's deadline (PollContext.sleep ends the call there). Other clocks answer EINVAL in their event.
 * Events are written into guest memory as they are found, in three passes over the subscriptions (what is there
 * and the soonest clock; descriptor and EINVAL events; clocks due), so the host holds nothing per subscription:
 * an object per subscription and per event held ~110 bytes of the host's heap for each 48-byte subscription.
 */
export function pollOneoff(
  ctx: PollContext,
  inPtr: number,
  outPtr: number,
  count: number,
  countPtr: number,
): number {
  const n = count >>> 0;
  if (n === 0) return ERRNO.INVAL;
  ctx.charge(n * FUEL_PER_SUBSCRIPTION);
  ctx.region(inPtr >>> 0, n * SUBSCRIPTION_BYTES);
  ctx.region(outPtr >>> 0, n * EVENT_BYTES);
  const now = monotonicNs();
  const realNow = realtimeNs();
  const sub = (i: number) => (inPtr >>> 0) + i * SUBSCRIPTION_BYTES;
  /** A valid clock subscription's due time on the monotonic clock; undefined for any other subscription. */
  const dueOf = (v: DataView, at: number): bigint | undefined => {
    if (v.getUint8(at + 8) !== EVENTTYPE.CLOCK) return undefined;
    const id = v.getUint32(at + 16, true);
    if (id !== CLOCK.REALTIME && id !== CLOCK.MONOTONIC) return undefined;
    const timeout = v.getBigUint64(at + 24, true);
    const absolute = (v.getUint16(at + 40, true) & SUBCLOCK_ABSTIME) !== 0;
    return !absolute ? now + timeout : id === CLOCK.MONOTONIC ? timeout : timeout - realNow + now;
  };
  // Guest memory cannot grow while this runs (no guest code does), so one view serves all three passes.
  const v = ctx.view();
  // Pass 1: every tag known; the soonest clock, and whether anything is ready without waiting.
  let soonest: bigint | undefined;
  let readyAtOnce = false;
  for (let i = 0; i < n; i++) {
    const tag = v.getUint8(sub(i) + 8);
    if (tag !== EVENTTYPE.CLOCK && tag !== EVENTTYPE.FD_READ && tag !== EVENTTYPE.FD_WRITE)
      return ERRNO.INVAL;
    const due = dueOf(v, sub(i));
    if (due === undefined) readyAtOnce = true;
    else if (soonest === undefined || due < soonest) soonest = due;
  }
  let reached = now;
  if (!readyAtOnce && soonest !== undefined) {
    ctx.sleep(soonest);
    const after = monotonicNs();
    reached = after > soonest ? after : soonest;
  }
  // Pass 2: descriptor events and clocks of unknown ids, in the order of their subscriptions; pass 3: clocks due.
  let events = 0;
  /** One event at the next place of `out` (checked whole above), its padding zeroed. */
  const put = (userdata: bigint, error: number, type: number, nbytes: bigint) => {
    const at = (outPtr >>> 0) + events * EVENT_BYTES;
    v.setBigUint64(at, userdata, true);
    v.setBigUint64(at + 8, 0n, true);
    v.setUint16(at + 8, error, true);
    v.setUint8(at + 10, type);
    v.setBigUint64(at + 16, nbytes, true);
    v.setBigUint64(at + 24, 0n, true);
    events++;
  };
  // What a descriptor has ready to read, asked once per descriptor however many subscriptions name it (a file's
  // costs two system calls, which ctx.readable charges).
  const readable = new Map<FdEntry, bigint>();
  for (let i = 0; i < n; i++) {
    const at = sub(i);
    const tag = v.getUint8(at + 8);
    const userdata = v.getBigUint64(at, true);
    if (tag === EVENTTYPE.CLOCK) {
      if (dueOf(v, at) === undefined) put(userdata, ERRNO.INVAL, tag, 0n);
      continue;
    }
    const entry = ctx.entry(v.getUint32(at + 16, true));
    const right = tag === EVENTTYPE.FD_READ ? RIGHT.FD_READ : RIGHT.FD_WRITE;
    const error =
      entry === undefined
        ? ERRNO.BADF
        : (entry.base & (right | RIGHT.POLL_FD_READWRITE)) === 0
          ? ERRNO.NOTCAPABLE
          : ERRNO.SUCCESS;
    let nbytes = 0n;
    if (entry !== undefined && error === 0 && tag === EVENTTYPE.FD_READ) {
      const known = readable.get(entry);
      nbytes = known ?? ctx.readable(entry);
      if (known === undefined) readable.set(entry, nbytes);
    }
    put(userdata, error, tag, nbytes);
  }
  for (let i = 0; i < n; i++) {
    const due = dueOf(v, sub(i));
    if (due !== undefined && due <= reached) put(v.getBigUint64(sub(i), true), 0, 0, 0n);
  }
  v.setUint32(countPtr >>> 0, events, true);
  return ERRNO.SUCCESS;
}
