import type { FdEntry } from './wasi-fds.js';
import { CLOCK, ERRNO, EVENTTYPE, RIGHT, SUBCLOCK_ABSTIME } from './wasi-types.js';

/** Fuel per subscription poll_oneoff reads: a sleep itself costs nothing more, however long (it is bounded by time). */
export const FUEL_PER_SUBSCRIPTION = 100;
const SUBSCRIPTION_BYTES = 48;
const EVENT_BYTES = 32;

export interface PollContext {
  view(): DataView;
  /** Bounds-checks [ptr, ptr + len) of guest memory (RangeError outside). */
  region(ptr: number, len: number): Uint8Array;
  charge(fuel: number): void;
  entry(fd: number): FdEntry | undefined;
  /** Bytes ready to read on a descriptor (stdin's rest, a file's bytes past its offset), for the event. */
  readable(entry: FdEntry): bigint;
  /** Sleeps until the monotonic clock reads `ns`; throws (call_timeout) if that would pass the call's deadline. */
  sleep(untilNs: bigint): void;
}

export const realtimeNs = (): bigint => BigInt(Date.now()) * 1_000_000n;
export const monotonicNs = (): bigint => process.hrtime.bigint();

interface Ready {
  userdata: bigint;
  error: number;
  type: number;
  nbytes: bigint;
}

/**
 * poll_oneoff: descriptor subscriptions are ready at once (stdio and files never block here: stdin is the call's
 * input, output goes to memory, files are files), so they answer without waiting, with any clock already due;
 * with clocks alone, the call sleeps until the soonest (relative or absolute, realtime or monotonic), never past
 * the call's deadline (PollContext.sleep ends the call there). Other clocks answer EINVAL in their event.
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
  const out = ctx.region(outPtr >>> 0, n * EVENT_BYTES);
  const v = ctx.view();
  const now = monotonicNs();
  const ready: Ready[] = [];
  const clocks: { userdata: bigint; at: bigint }[] = [];
  for (let i = 0; i < n; i++) {
    const at = (inPtr >>> 0) + i * SUBSCRIPTION_BYTES;
    const userdata = v.getBigUint64(at, true);
    const tag = v.getUint8(at + 8);
    if (tag === EVENTTYPE.CLOCK) {
      const id = v.getUint32(at + 16, true);
      const timeout = v.getBigUint64(at + 24, true);
      const absolute = (v.getUint16(at + 40, true) & SUBCLOCK_ABSTIME) !== 0;
      if (id !== CLOCK.REALTIME && id !== CLOCK.MONOTONIC) {
        ready.push({ userdata, error: ERRNO.INVAL, type: tag, nbytes: 0n });
        continue;
      }
      const due = !absolute ? now + timeout : id === CLOCK.MONOTONIC ? timeout : timeout - realtimeNs() + now;
      clocks.push({ userdata, at: due });
    } else if (tag === EVENTTYPE.FD_READ || tag === EVENTTYPE.FD_WRITE) {
      const entry = ctx.entry(v.getUint32(at + 16, true));
      const right = tag === EVENTTYPE.FD_READ ? RIGHT.FD_READ : RIGHT.FD_WRITE;
      const error =
        entry === undefined
          ? ERRNO.BADF
          : (entry.base & (right | RIGHT.POLL_FD_READWRITE)) === 0
            ? ERRNO.NOTCAPABLE
            : ERRNO.SUCCESS;
      const nbytes =
        entry !== undefined && error === 0 && tag === EVENTTYPE.FD_READ ? ctx.readable(entry) : 0n;
      ready.push({ userdata, error, type: tag, nbytes });
    } else {
      return ERRNO.INVAL;
    }
  }
  if (ready.length === 0 && clocks.length > 0) {
    // biome-ignore lint/complexity/useMathMinMax: BigInts (Math.min takes numbers)
    const soonest = clocks.reduce((min, c) => (c.at < min ? c.at : min), clocks[0]?.at ?? now);
    ctx.sleep(soonest);
    const after = monotonicNs();
    // biome-ignore lint/complexity/useMathMinMax: BigInts (Math.max takes numbers)
    const reached = after > soonest ? after : soonest;
    for (const c of clocks)
      if (c.at <= reached) ready.push({ userdata: c.userdata, error: 0, type: 0, nbytes: 0n });
  } else {
    for (const c of clocks)
      if (c.at <= now) ready.push({ userdata: c.userdata, error: 0, type: 0, nbytes: 0n });
  }
  out.fill(0, 0, ready.length * EVENT_BYTES);
  const w = ctx.view();
  ready.forEach((event, i) => {
    const at = (outPtr >>> 0) + i * EVENT_BYTES;
    w.setBigUint64(at, event.userdata, true);
    w.setUint16(at + 8, event.error, true);
    w.setUint8(at + 10, event.type);
    w.setBigUint64(at + 16, event.nbytes, true);
  });
  w.setUint32(countPtr >>> 0, ready.length, true);
  return ERRNO.SUCCESS;
}
