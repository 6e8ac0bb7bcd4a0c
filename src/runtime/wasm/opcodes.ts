import { ReedError } from '../../errors.js';
import type { Reader } from './binary.js';

/**
 * The instruction decoder the fuel metering reads code with (instrument-code.ts): each instruction skipped with
 * its immediates, and what it means for metering. Every opcode is decoded exactly or refused: an opcode read
 * with the wrong immediates would make the metering see other instructions than V8 runs, and a loop it did not
 * see would go unmetered. Kept as one table, one case per opcode group, so that it can be checked against the
 * spec's opcode list in one read.
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

/** What an instruction means for metering. */
export enum Flow {
  Plain = 0,
  /** `block`: opens a label; the run goes on. */
  Block = 1,
  /** `loop`: opens a label and ends the run; the next run is a loop head, where fuel is also checked. */
  Loop = 2,
  /** `if`, `try`: open a label and end the run. */
  Open = 3,
  /** `else`: ends the run; what follows is entered another way (the condition). */
  Else = 4,
  /** `end`, `delegate`: close a label (the last `end`, the function) and end the run. */
  End = 5,
  /** `catch`, `catch_all`: end the run; the next is entered by a throw (the fuel global is read there). */
  Catch = 6,
  /** `br`, `br_if`, `br_table`: their label (the deepest, for br_table) is in {@link Decoded.label}. */
  Br = 7,
  BrIf = 8,
  BrTable = 9,
  /** `call`, `call_indirect`: the callee (or the host) reads and charges the fuel global. */
  Call = 10,
  /** `return`, `return_call`, `return_call_indirect`: leave the function normally. */
  Return = 11,
  /** `throw`, `rethrow`. */
  Throw = 12,
  /** `unreachable`. */
  Trap = 13,
  // Instructions whose work grows with their last operand (instrument-code.ts BULK_COSTS), in that order.
  MemoryBytes = 14,
  TableElements = 15,
  TableGrow = 16,
  MemoryGrow = 17,
}

/** What the decoder tells the metering beyond the Flow: the label a branch targets. */
export interface Decoded {
  label: number;
}

const unsupported = (what: string, at: number) =>
  new ReedError('wasm_unsupported', `instruction ${what} at byte ${at} is not supported`);

function memarg(r: Reader): void {
  const align = r.u32();
  if ((align & 0x40) !== 0) r.u32(); // multi-memory index (V8 rejects any but 0: one memory)
  r.u32();
}

/** Skips one instruction with its immediates and says what it means for metering. */
export function skipInstruction(r: Reader, d: Decoded): Flow {
  const op = r.byte();
  switch (op) {
    case 0x00: // unreachable
      return Flow.Trap;
    case 0x0f: // return
      return Flow.Return;
    case 0x01: // nop
    case 0x1a: // drop
    case 0x1b: // select
    case 0xd1: // ref.is_null
      return Flow.Plain;
    case 0x02: // block
      r.s33();
      return Flow.Block;
    case 0x03: // loop
      r.s33();
      return Flow.Loop;
    case 0x04: // if
    case 0x06: // try
      r.s33();
      return Flow.Open;
    case 0x05: // else
      return Flow.Else;
    case 0x0b: // end
      return Flow.End;
    case 0x18: // delegate: ends its try like end
      r.u32();
      return Flow.End;
    case 0x19: // catch_all
      return Flow.Catch;
    case 0x07: // catch
      r.u32();
      return Flow.Catch;
    case 0x0c: // br
      d.label = r.u32();
      return Flow.Br;
    case 0x0d: // br_if
      d.label = r.u32();
      return Flow.BrIf;
    case 0x0e: {
      // br_table: the deepest of its labels, the default included
      let deepest = 0;
      for (let n = r.u32() + 1; n > 0; n--) deepest = Math.max(deepest, r.u32());
      d.label = deepest;
      return Flow.BrTable;
    }
    case 0x08: // throw
    case 0x09: // rethrow
      r.u32();
      return Flow.Throw;
    case 0x12: // return_call
      r.u32();
      return Flow.Return;
    case 0x10: // call
      r.u32();
      return Flow.Call;
    case 0x11: // call_indirect
      r.u32();
      r.u32();
      return Flow.Call;
    case 0x13: // return_call_indirect
      r.u32();
      r.u32();
      return Flow.Return;
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
