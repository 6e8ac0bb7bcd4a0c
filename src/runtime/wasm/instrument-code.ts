import { ReedError } from '../../errors.js';
import type { ByteWriter, Reader } from './binary.js';

/**
 * Fuel metering of function bodies, in one streaming pass: each straight-line run of instructions is copied to
 * the output behind a charge of its length (and, at function entries and loop heads, a check that traps once
 * the fuel is below zero). No object is made per instruction or per run; time and memory are linear in the
 * body. See docs/ABI-wasm.md "How fuel works" for what each instruction costs and why. (Longer than ~300
 * lines because half of it is the opcode decoder, which must stay one exhaustive table.)
 */

export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';

const VALTYPES: Record<number, ValType> = {
  127: 'i32',
  126: 'i64',
  125: 'f32',
  124: 'f64',
  123: 'v128',
  112: 'funcref',
  111: 'externref',
};

export function valType(r: Reader): ValType {
  const b = r.byte();
  const t = VALTYPES[b];
  if (t === undefined)
    throw new ReedError('wasm_unsupported', `value type 0x${b.toString(16)} is not supported`);
  return t;
}

/**
 * Fuel for instructions whose work grows with an operand (the last one, a count): charged as
 * `fixed + (count << shift)` before the instruction runs, so a plugin out of fuel traps before the work.
 * Measured on this host's V8 (docs/ABI-wasm.md): one fuel is about one plain instruction, about 0.05-0.1 ns;
 * memory.fill/copy take about as long per byte; table.fill/copy/init about 30 ns per element (2^9 fuel);
 * table.grow about 250 ns per element (2^12); memory.grow about 0.7 us whatever it asks for (2^13, with no
 * per-page part: a request that fails costs V8 nothing more, and the memory cap bounds what successful grows
 * can add over an instance's life, so a legitimate grow that fails still answers -1 instead of running out).
 */
export const BULK_COSTS = Object.freeze({
  memoryBytes: { fixed: 1, shift: 0 },
  tableElements: { fixed: 1, shift: 9 },
  tableGrow: { fixed: 1, shift: 12 },
  memoryGrow: { fixed: 1 << 13, shift: -1 },
});

/** What an instruction means for metering. */
enum Flow {
  Plain = 0,
  /** Ends the current run: what follows is entered another way (a label, a condition). */
  Boundary = 1,
  /** Ends the run and never falls through: the next run is unreachable until a label, so it needs no charge. */
  Jump = 2,
  /** `loop`: a boundary whose next run is a loop head, where fuel is also checked. */
  Loop = 3,
  // Instructions whose work grows with their last operand: charged by BULK_COSTS before they run.
  MemoryBytes = 4,
  TableElements = 5,
  TableGrow = 6,
  MemoryGrow = 7,
}

const BULK_BY_FLOW = [
  BULK_COSTS.memoryBytes,
  BULK_COSTS.tableElements,
  BULK_COSTS.tableGrow,
  BULK_COSTS.memoryGrow,
] as const;

/** The globals the instrumentation adds: the fuel counter (i64) and a scratch slot for a count (i32). */
export interface MeterGlobals {
  fuel: number;
  scratch: number;
}

/**
 * Copies one function body (`bytes[start, end)`) to `w`, metered. Each declared local costs one fuel at entry:
 * V8 zeroes every local on each call, so a function declaring thousands of them would otherwise be cheap to
 * call and slow to enter.
 */
export function instrumentBody(
  bytes: Uint8Array,
  r: Reader,
  end: number,
  w: ByteWriter,
  g: MeterGlobals,
): void {
  const start = r.pos;
  let locals = 0;
  for (let groups = r.u32(); groups > 0; groups--) {
    locals += r.u32();
    valType(r);
  }
  w.bytes(bytes, start, r.pos);
  let runStart = r.pos;
  let cost = locals;
  let check = true;
  let dead = false;
  while (r.pos < end) {
    const at = r.pos;
    const flow = skipInstruction(r);
    if (flow >= Flow.MemoryBytes) {
      emitRun(w, bytes, runStart, at, cost, check, dead, g);
      emitBulkCharge(w, BULK_BY_FLOW[flow - Flow.MemoryBytes] as { fixed: number; shift: number }, g);
      w.bytes(bytes, at, r.pos);
      runStart = r.pos;
      cost = 0;
      check = false;
      continue;
    }
    cost++;
    if (flow !== Flow.Plain) {
      emitRun(w, bytes, runStart, r.pos, cost, check, dead, g);
      runStart = r.pos;
      cost = 0;
      check = flow === Flow.Loop;
      dead = flow === Flow.Jump;
    }
  }
  if (runStart < end) w.bytes(bytes, runStart, end);
}

/** A run's charge (and check) followed by its instructions; a run no path reaches is copied alone. */
function emitRun(
  w: ByteWriter,
  bytes: Uint8Array,
  from: number,
  to: number,
  cost: number,
  check: boolean,
  dead: boolean,
  g: MeterGlobals,
): void {
  if (!dead) {
    if (cost > 0) {
      // global.get fuel; i64.const cost; i64.sub; global.set fuel
      w.byte(0x23);
      w.u32(g.fuel);
      w.byte(0x42);
      w.s64(cost);
      w.byte(0x7d);
      w.byte(0x24);
      w.u32(g.fuel);
    }
    if (check) emitCheck(w, g);
  }
  w.bytes(bytes, from, to);
}

/** global.get fuel; i64.const 0; i64.lt_s; if (empty) unreachable end. A trap, which no WASM handler catches. */
function emitCheck(w: ByteWriter, g: MeterGlobals): void {
  w.byte(0x23);
  w.u32(g.fuel);
  w.byte(0x42);
  w.byte(0x00);
  w.byte(0x53);
  w.byte(0x04);
  w.byte(0x40);
  w.byte(0x00);
  w.byte(0x0b);
}

/**
 * With the count on top of the stack: fuel -= fixed + (count << shift), trap if negative, count back. A
 * negative shift charges `fixed` alone.
 */
function emitBulkCharge(w: ByteWriter, c: { fixed: number; shift: number }, g: MeterGlobals): void {
  if (c.shift < 0) {
    w.byte(0x23); // global.get fuel; i64.const fixed; i64.sub; global.set fuel
    w.u32(g.fuel);
    w.byte(0x42);
    w.s64(c.fixed);
    w.byte(0x7d);
    w.byte(0x24);
    w.u32(g.fuel);
    emitCheck(w, g);
    return;
  }
  w.byte(0x24); // global.set scratch
  w.u32(g.scratch);
  w.byte(0x23); // global.get fuel
  w.u32(g.fuel);
  w.byte(0x23); // global.get scratch; i64.extend_i32_u
  w.u32(g.scratch);
  w.byte(0xad);
  if (c.shift > 0) {
    w.byte(0x42); // i64.const shift; i64.shl
    w.s64(c.shift);
    w.byte(0x86);
  }
  w.byte(0x42); // i64.const fixed; i64.add
  w.s64(c.fixed);
  w.byte(0x7c);
  w.byte(0x7d); // i64.sub
  w.byte(0x24); // global.set fuel
  w.u32(g.fuel);
  emitCheck(w, g);
  w.byte(0x23); // global.get scratch: the count, for the instruction itself
  w.u32(g.scratch);
}

const unsupported = (what: string, at: number) =>
  new ReedError('wasm_unsupported', `instruction ${what} at byte ${at} is not supported`);

function memarg(r: Reader): void {
  const align = r.u32();
  if ((align & 0x40) !== 0) r.u32(); // multi-memory index (V8 rejects any but 0: one memory)
  r.u32();
}

/**
 * Skips one instruction with its immediates and says what it means for metering. Every opcode is decoded
 * exactly or refused: an opcode read with the wrong immediates would make this pass see other instructions
 * than V8 runs, and a loop it did not see would go unmetered. Long because it is that decoder's table, one case
 * per opcode group, kept whole so that it can be checked against the spec's opcode list in one read.
 */
function skipInstruction(r: Reader): Flow {
  const op = r.byte();
  switch (op) {
    case 0x00: // unreachable
    case 0x0f: // return
      return Flow.Jump;
    case 0x01: // nop
    case 0x1a: // drop
    case 0x1b: // select
    case 0xd1: // ref.is_null
      return Flow.Plain;
    case 0x02: // block
      r.s33();
      return Flow.Plain;
    case 0x03: // loop
      r.s33();
      return Flow.Loop;
    case 0x04: // if
    case 0x06: // try
      r.s33();
      return Flow.Boundary;
    case 0x05: // else
    case 0x0b: // end
    case 0x19: // catch_all
      return Flow.Boundary;
    case 0x07: // catch
    case 0x18: // delegate
    case 0x0d: // br_if
      r.u32();
      return Flow.Boundary;
    case 0x08: // throw
    case 0x09: // rethrow
    case 0x0c: // br
    case 0x12: // return_call
      r.u32();
      return Flow.Jump;
    case 0x0e: // br_table
      for (let n = r.u32(); n > 0; n--) r.u32();
      r.u32();
      return Flow.Jump;
    case 0x10: // call
      r.u32();
      return Flow.Plain;
    case 0x11: // call_indirect
      r.u32();
      r.u32();
      return Flow.Plain;
    case 0x13: // return_call_indirect
      r.u32();
      r.u32();
      return Flow.Jump;
    case 0x1c: // select t*
      for (let n = r.u32(); n > 0; n--) valType(r);
      return Flow.Plain;
    case 0x20: // local.get/set/tee, global.get/set, table.get/set, ref.func, memory.size
    case 0x21:
    case 0x22:
    case 0x23:
    case 0x24:
    case 0x25:
    case 0x26:
    case 0xd2:
    case 0x3f:
      r.u32();
      return Flow.Plain;
    case 0x40: // memory.grow
      r.u32();
      return Flow.MemoryGrow;
    case 0x41:
      r.skipSigned(32);
      return Flow.Plain;
    case 0x42:
      r.skipSigned(64);
      return Flow.Plain;
    case 0x43:
      r.skip(4);
      return Flow.Plain;
    case 0x44:
      r.skip(8);
      return Flow.Plain;
    case 0xd0: // ref.null
      r.s33();
      return Flow.Plain;
    case 0xfc:
      return skipPrefixFC(r);
    case 0xfd:
      return skipPrefixFD(r);
    case 0xfe:
      return skipPrefixFE(r);
    default:
      if (op >= 0x28 && op <= 0x3e) {
        memarg(r);
        return Flow.Plain;
      }
      if (op >= 0x45 && op <= 0xc4) return Flow.Plain;
      // GC (0xfb, 0xd3-0xd6, call_ref), try_table, throw_ref and the rest: refused, not guessed at.
      throw unsupported(`0x${op.toString(16)}`, r.pos - 1);
  }
}

/** Saturating truncations, and the bulk-memory and reference-types operations. */
function skipPrefixFC(r: Reader): Flow {
  const at = r.pos - 1;
  const sub = r.u32();
  if (sub <= 7) return Flow.Plain;
  switch (sub) {
    case 8: // memory.init data mem
    case 10: // memory.copy mem mem
      r.u32();
      r.u32();
      return Flow.MemoryBytes;
    case 11: // memory.fill mem
      r.u32();
      return Flow.MemoryBytes;
    case 12: // table.init elem table
    case 14: // table.copy table table
      r.u32();
      r.u32();
      return Flow.TableElements;
    case 17: // table.fill table
      r.u32();
      return Flow.TableElements;
    case 15: // table.grow table
      r.u32();
      return Flow.TableGrow;
    case 9: // data.drop
    case 13: // elem.drop
    case 16: // table.size
      r.u32();
      return Flow.Plain;
    default:
      throw unsupported(`0xfc ${sub}`, at);
  }
}

/** SIMD and relaxed SIMD: all constant work per instruction. */
function skipPrefixFD(r: Reader): Flow {
  const at = r.pos - 1;
  const sub = r.u32();
  if (sub <= 11 || sub === 92 || sub === 93) memarg(r);
  else if (sub === 12 || sub === 13) r.skip(16);
  else if (sub >= 21 && sub <= 34) r.byte();
  else if (sub >= 84 && sub <= 91) {
    memarg(r);
    r.byte();
  } else if (sub > 0x113) throw unsupported(`0xfd ${sub}`, at);
  return Flow.Plain;
}

/** Atomics (only on an unshared memory here, where wait traps at once). */
function skipPrefixFE(r: Reader): Flow {
  const at = r.pos - 1;
  const sub = r.u32();
  if (sub === 0x03)
    r.byte(); // atomic.fence
  else if (sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e)) memarg(r);
  else throw unsupported(`0xfe ${sub}`, at);
  return Flow.Plain;
}
