import type { ByteWriter, Reader } from './binary.js';
import { type Decoded, Flow, skipInstruction, valType } from './opcodes.js';

export { type ValType, valType } from './opcodes.js';

/**
 * Fuel metering of function bodies, in one streaming pass (opcodes.ts decodes). No object is made per
 * instruction; time and memory are linear in the body. See docs/ABI-wasm.md "How fuel works" for what each
 * instruction costs and why. (Longer than ~300 lines: the run's bookkeeping and the byte sequences it emits are
 * one mechanism, kept in one read.)
 */

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

/**
 * What a successful memory.grow costs the host beyond its fixed charge. V8 makes a new ArrayBuffer of the whole
 * memory at each grow (even of 0 pages) and counts it as external memory before it lets the old one go, so for a
 * moment the memory counts twice; when that passes what V8 allows over the external memory it had at its last full
 * collection (64 MiB), V8 starts or advances a full collection of the heap, there and then. The memory alone passes
 * it once it is over LARGE_MEMORY_PAGES (64 MiB): from there on each grow costs a full collection of the host's heap
 * (mode none: the host's; 3-5 ms of its thread for a 15 MiB heap, measured), 2^LARGE_GROW_SHIFT fuel. Below it a
 * grow is charged 2^GROWN_PAGE_SHIFT per page of the new size (grown a page at a time to 64 MiB: 14-85 ms of the
 * host's thread, 42M fuel). Measured before: 16,384 one-page grows to 1 GiB took 61-1,938 ms of the host's thread
 * for 134M fuel; 0-page grows of a 1,025-page memory 1.9-4.5 s for 1G. Now the default fuel_per_call (1G) buys
 * about 15 grows of a memory over 64 MiB: a program that grows past it should grow in large steps (doubling), as
 * allocators do. A grow of 0 pages never reaches V8 (emitZeroGrowIsSize). A grow that fails (past the cap or the
 * maximum) does no such work and is not charged it.
 */
export const GROWN_PAGE_SHIFT = 6;
export const LARGE_MEMORY_PAGES = 1024;
export const LARGE_GROW_SHIFT = 26;

const BULK_BY_FLOW = [
  BULK_COSTS.memoryBytes,
  BULK_COSTS.tableElements,
  BULK_COSTS.tableGrow,
  BULK_COSTS.memoryGrow,
] as const;

/**
 * Fuel for exceptions, measured on this host's V8: a `throw` (or `rethrow`) caught in the same function takes
 * 1.5-3 us (2^15 fuel, charged with the run that ends in it), and each frame the exception unwinds on its way
 * to a handler about 0.3 us more (2^12 per frame, charged when the handler starts). Without these a plugin
 * could build a deep stack at a few fuel per frame and throw through it again and again, keeping the host's
 * thread a thousand times longer than its fuel says.
 */
export const EXCEPTION_COSTS = Object.freeze({ throw: 1 << 15, frameShift: 12 });

/**
 * How far a charge may run ahead of a conditional branch (`br_if`): the instructions after a `br_if`, up to
 * this many, are charged with those before it, so a taken branch pays for at most this many instructions it
 * skipped. Longer stretches get a charge of their own.
 */
export const MAX_PRECHARGE = 16;

/**
 * The globals the instrumentation adds: the fuel (i64, exported), the frame depth (i32) exceptions use, the pages
 * memory.grow may reach (i64, exported) and whether a grow was refused for it (i32, exported).
 */
export interface MeterGlobals {
  fuel: number;
  depth: number;
  memoryCap: number;
  memoryRefused: number;
}

/** Metering state for one code section. */
export interface CodeMeter extends MeterGlobals {
  /** The module declares exception tags: something can be thrown and caught, so frames are counted. */
  eh: boolean;
  /** Scratch arrays every body reuses. */
  marks: RunMarks;
}

/** What happens at a marked instruction inside a run. */
enum Mark {
  /** A `br_if` inside the function: the run may be split after it. */
  BrIf = 0,
  /** A `br_if` out of the function: the counter is stored before it; the run may be split after it. */
  BrIfOut = 1,
  /** A call: the counter is stored before it and read back after it. */
  Call = 2,
}

/**
 * The marked instructions of the run being read, in order: where each starts and ends in the input, the run's
 * cost up to and including it, and its kind. Typed arrays reused from run to run and body to body (grown by
 * doubling), so a run with many branches or calls makes no object per instruction.
 */
export class RunMarks {
  n = 0;
  start = new Int32Array(64);
  end = new Int32Array(64);
  cost = new Float64Array(64);
  kind = new Uint8Array(64);
  /** Per mark: the charge of the group that starts after it (a split), or -1 (none). */
  split = new Float64Array(64);

  push(start: number, end: number, cost: number, kind: number): void {
    if (this.n === this.start.length) {
      const grow = <T extends Int32Array | Float64Array | Uint8Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.start = grow(this.start);
      this.end = grow(this.end);
      this.cost = grow(this.cost);
      this.kind = grow(this.kind);
      this.split = grow(this.split);
    }
    this.start[this.n] = start;
    this.end[this.n] = end;
    this.cost[this.n] = cost;
    this.kind[this.n] = kind;
    this.n++;
  }
}

/** Where a body's metering code reads and writes: the output, the globals, the locals it adds. */
interface Meter {
  w: ByteWriter;
  fuel: number;
  depth: number;
  memoryCap: number;
  memoryRefused: number;
  eh: boolean;
  /** The function's working copy of the fuel (i64 local). */
  counter: number;
  /** Where a bulk instruction's count waits while it is charged (i32 local). */
  scratch: number;
  /** This frame's depth (i32 local; exception-handling modules only). */
  frame: number;
}

/** How a run starts, besides its charge. */
enum Start {
  Plain = 0,
  /** Check the fuel after the charge: function entry, loop head. */
  Check = 1,
  /** Read the counter from the global: function entry. */
  Reload = 2,
  /** Count this frame in the depth global: function entry. */
  Enter = 4,
  /** A handler: read the counter, charge the frames the exception unwound, check. */
  Catch = 8,
}
const ENTRY = Start.Check | Start.Reload | Start.Enter;

/**
 * Copies one function body (`bytes[start, end)`) to `w`, metered. The function keeps its fuel in a local of its
 * own (`counter`, added after its declared locals): a charge is a subtraction in a register, not a read and a
 * write of the global. The counter is read from the global at entry, after each call and at each handler (a
 * callee, the host or a thrower changed it), and written back before each call, return, branch out of the
 * function, throw and `unreachable`, so that whoever reads the global next (a callee, the host, a caller, a
 * handler) sees every charge made so far. The checks (at entry, loop heads, handlers and bulk charges) test the
 * counter and store it before they trap, so an exhausted run leaves the global below zero.
 *
 * A run is charged once, before it starts, for every instruction in it: it ends where control may enter other
 * than from the instruction before (a label: `loop`, `end`, `else`, `catch`; the code after `if`), after an
 * unconditional jump, and at bulk instructions. Calls do not end a run (the callee charges itself; the counter
 * is handed over through the global), and neither does a `br_if` followed by at most MAX_PRECHARGE instructions
 * of the run.
 *
 * Each declared local costs one fuel at entry: V8 zeroes every local on each call, so a function declaring
 * thousands of them would otherwise be cheap to call and slow to enter.
 */
export function instrumentBody(
  bytes: Uint8Array,
  r: Reader,
  end: number,
  w: ByteWriter,
  g: CodeMeter,
  params: number,
): void {
  let locals = 0;
  const groups = r.u32();
  const groupsStart = r.pos;
  for (let n = groups; n > 0; n--) {
    locals += r.u32();
    valType(r);
  }
  w.u32(groups + 2);
  w.bytes(bytes, groupsStart, r.pos);
  w.byte(0x01); // one i64: the counter; two i32: the scratch slot, the frame's depth
  w.byte(0x7e);
  w.byte(0x02);
  w.byte(0x7f);
  const counter = params + locals;
  const m: Meter = { w, ...g, counter, scratch: counter + 1, frame: counter + 2 };
  const marks = g.marks;
  marks.n = 0;
  const d: Decoded = { label: 0 };
  let runStart = r.pos;
  let cost = locals;
  let start: number = ENTRY;
  let dead = false;
  let depth = 0; // labels open inside the function's own
  while (r.pos < end) {
    const at = r.pos;
    const flow = skipInstruction(r, d);
    if (flow >= Flow.MemoryBytes) {
      emitRun(m, bytes, runStart, at, cost, start, dead, marks);
      if (!dead) emitBulkCharge(m, BULK_BY_FLOW[flow - Flow.MemoryBytes] as { fixed: number; shift: number });
      if (!dead && flow === Flow.MemoryGrow) {
        emitGrowCap(m);
        emitZeroGrowIsSize(m);
        w.bytes(bytes, at, r.pos);
        emitGrownCharge(m);
        w.byte(0x0b); // end (of emitZeroGrowIsSize's if)
      } else w.bytes(bytes, at, r.pos);
      runStart = r.pos;
      cost = 0;
      start = Start.Plain;
      continue;
    }
    cost++;
    switch (flow) {
      case Flow.Plain:
        continue;
      case Flow.Block:
        depth++;
        continue;
      case Flow.Call:
        marks.push(at, r.pos, cost, Mark.Call);
        continue;
      case Flow.BrIf:
        marks.push(at, r.pos, cost, d.label >= depth ? Mark.BrIfOut : Mark.BrIf);
        continue;
      case Flow.Throw:
        cost += EXCEPTION_COSTS.throw;
        break;
    }
    // Whether the counter must be in the global before this instruction runs: it leaves the function.
    const out =
      flow === Flow.Return ||
      flow === Flow.Throw ||
      flow === Flow.Trap ||
      ((flow === Flow.Br || flow === Flow.BrTable) && d.label >= depth) ||
      (flow === Flow.End && depth === 0);
    emitRun(m, bytes, runStart, out ? at : r.pos, cost, start, dead, marks);
    if (out) {
      if (!dead) {
        emitStore(m);
        // A tail call replaces this frame: the callee takes its depth.
        if (m.eh && flow === Flow.Return && bytes[at] !== 0x0f) emitFrameOut(m);
      }
      w.bytes(bytes, at, r.pos);
    }
    runStart = r.pos;
    cost = 0;
    start = flow === Flow.Loop ? Start.Check : flow === Flow.Catch ? Start.Catch : Start.Plain;
    if (flow === Flow.Loop || flow === Flow.Open) depth++;
    else if (flow === Flow.End) depth--;
    // Code after an unconditional jump is unreachable until the next label: it needs no charge.
    dead =
      flow === Flow.Return ||
      flow === Flow.Throw ||
      flow === Flow.Trap ||
      flow === Flow.Br ||
      flow === Flow.BrTable;
  }
  if (runStart < end) w.bytes(bytes, runStart, end);
}

/**
 * Splits a run into charge groups at its `br_if`s. The run's stretches end at each `br_if` and at the run's end;
 * a group is its first stretch and as many following ones as end within MAX_PRECHARGE of that first stretch's
 * end. Fills `marks.split` (a group's charge at the mark after which it starts); returns the first group's.
 */
function groupRun(marks: RunMarks, total: number): number {
  let first = -1;
  let groupMark = -1; // the mark the current group starts after (-1: the run's start)
  let groupBase = 0; // the run's cost where the current group starts
  let headEnd = -1; // where the group's first stretch ends (-1: not seen yet)
  let prevEnd = 0; // where the previous stretch ended, at mark prevMark
  let prevMark = -1;
  const close = (charge: number) => {
    if (groupMark < 0) first = charge;
    else marks.split[groupMark] = charge;
    groupMark = prevMark;
    groupBase = prevEnd;
  };
  for (let i = 0; i < marks.n; i++) {
    marks.split[i] = -1;
    if (marks.kind[i] === Mark.Call) continue;
    const at = marks.cost[i] as number;
    if (headEnd < 0) headEnd = at;
    else if (at - headEnd > MAX_PRECHARGE) {
      close(prevEnd - groupBase);
      headEnd = at;
    }
    prevEnd = at;
    prevMark = i;
  }
  if (headEnd >= 0 && total - headEnd > MAX_PRECHARGE) close(prevEnd - groupBase);
  const last = total - groupBase;
  if (groupMark < 0) return last;
  marks.split[groupMark] = last;
  return first;
}

/**
 * A run's charges and its instructions, with the counter stored before each call and `br_if` out of the
 * function and read back after each call; a run no path reaches is copied alone.
 */
function emitRun(
  m: Meter,
  bytes: Uint8Array,
  from: number,
  to: number,
  cost: number,
  start: number,
  dead: boolean,
  marks: RunMarks,
): void {
  const w = m.w;
  if (dead) {
    w.bytes(bytes, from, to);
    marks.n = 0;
    return;
  }
  emitCharge(m, marks.n === 0 ? cost : groupRun(marks, cost), start);
  let copied = from;
  for (let i = 0; i < marks.n; i++) {
    const kind = marks.kind[i] as Mark;
    const at = marks.start[i] as number;
    const end = marks.end[i] as number;
    if (kind !== Mark.BrIf) {
      w.bytes(bytes, copied, at);
      emitStore(m);
      w.bytes(bytes, at, end);
      if (kind === Mark.Call) {
        w.byte(0x23); // global.get fuel; local.set counter
        w.u32(m.fuel);
        w.byte(0x21);
        w.u32(m.counter);
        if (m.eh) emitFrameBack(m);
      }
      copied = end;
    }
    const split = marks.split[i] as number;
    if (split >= 0 && kind !== Mark.Call) {
      w.bytes(bytes, copied, end);
      copied = end;
      emitCharge(m, split, Start.Plain);
    }
  }
  w.bytes(bytes, copied, to);
  marks.n = 0;
}

/** counter (or the global) - cost into the counter, with what the run's start asks for. */
function emitCharge(m: Meter, cost: number, start: number): void {
  const w = m.w;
  if (cost <= 0 && start === Start.Plain) return;
  w.byte(start & (Start.Reload | Start.Catch) ? 0x23 : 0x20); // global.get fuel | local.get counter
  w.u32(start & (Start.Reload | Start.Catch) ? m.fuel : m.counter);
  if (start & Start.Catch && m.eh) {
    // The frames unwound since the throw: the thrower's depth (still in the global) minus this frame's.
    w.byte(0x23); // global.get depth; local.get frame; i32.sub; i64.extend_i32_u
    w.u32(m.depth);
    w.byte(0x20);
    w.u32(m.frame);
    w.byte(0x6b);
    w.byte(0xad);
    w.byte(0x42); // i64.const shift; i64.shl; i64.sub
    w.s64(EXCEPTION_COSTS.frameShift);
    w.byte(0x86);
    w.byte(0x7d);
    emitFrameBack(m);
  }
  if (cost > 0) {
    w.byte(0x42); // i64.const cost; i64.sub
    w.s64(cost);
    w.byte(0x7d);
  }
  if (start & (Start.Check | Start.Catch)) emitCheck(m);
  else {
    w.byte(0x21); // local.set counter
    w.u32(m.counter);
  }
  if (start & Start.Enter && m.eh) {
    w.byte(0x23); // global.get depth; i32.const 1; i32.add; local.tee frame; global.set depth
    w.u32(m.depth);
    w.byte(0x41);
    w.byte(0x01);
    w.byte(0x6a);
    w.byte(0x22);
    w.u32(m.frame);
    w.byte(0x24);
    w.u32(m.depth);
  }
}

/** local.get counter; global.set fuel. */
function emitStore(m: Meter): void {
  m.w.byte(0x20);
  m.w.u32(m.counter);
  m.w.byte(0x24);
  m.w.u32(m.fuel);
}

/** local.get frame; global.set depth: this frame is the deepest again (after a call returned or a catch). */
function emitFrameBack(m: Meter): void {
  m.w.byte(0x20);
  m.w.u32(m.frame);
  m.w.byte(0x24);
  m.w.u32(m.depth);
}

/** local.get frame; i32.const 1; i32.sub; global.set depth: before a tail call, which replaces this frame. */
function emitFrameOut(m: Meter): void {
  m.w.byte(0x20);
  m.w.u32(m.frame);
  m.w.byte(0x41);
  m.w.byte(0x01);
  m.w.byte(0x6b);
  m.w.byte(0x24);
  m.w.u32(m.depth);
}

/**
 * With the new counter on the stack: local.tee counter; i64.const 0; i64.lt_s; if (store; unreachable) end. A
 * trap, which no WASM handler catches; the global shows the exhaustion to the host.
 */
function emitCheck(m: Meter): void {
  const w = m.w;
  w.byte(0x22);
  w.u32(m.counter);
  w.byte(0x42);
  w.byte(0x00);
  w.byte(0x53);
  w.byte(0x04);
  w.byte(0x40);
  emitStore(m);
  w.byte(0x00);
  w.byte(0x0b);
}

/**
 * With the count on top of the stack: counter -= fixed + (count << shift), trap if negative, count back. A
 * negative shift charges `fixed` alone.
 */
function emitBulkCharge(m: Meter, c: { fixed: number; shift: number }): void {
  const w = m.w;
  if (c.shift < 0) {
    w.byte(0x20); // local.get counter; i64.const fixed; i64.sub
    w.u32(m.counter);
    w.byte(0x42);
    w.s64(c.fixed);
    w.byte(0x7d);
    emitCheck(m);
    return;
  }
  w.byte(0x21); // local.set scratch
  w.u32(m.scratch);
  w.byte(0x20); // local.get counter
  w.u32(m.counter);
  w.byte(0x20); // local.get scratch; i64.extend_i32_u
  w.u32(m.scratch);
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
  emitCheck(m);
  w.byte(0x20); // local.get scratch: the count, for the instruction itself
  w.u32(m.scratch);
}

/**
 * With a memory.grow's page count on top of the stack: a count of 0 is answered with memory.size, which is what
 * the grow would return, and never reaches V8, whose grow makes a new buffer of the whole memory even for 0 pages
 * (and past its external-memory limit, a full collection of the heap: a loop of 0-page grows beside a host import
 * that allocates held the host's thread 42-307 s per 1G fuel). Opens `if (result i32) ... else`; the caller emits
 * the grow and its charge, then the `end`.
 */
function emitZeroGrowIsSize(m: Meter): void {
  const w = m.w;
  w.byte(0x22); // local.tee scratch; i32.eqz; if (result i32); memory.size 0; else; local.get scratch
  w.u32(m.scratch);
  w.byte(0x45);
  w.byte(0x04);
  w.byte(0x7f);
  w.byte(0x3f);
  w.byte(0x00);
  w.byte(0x05);
  w.byte(0x20);
  w.u32(m.scratch);
}

/**
 * After a memory.grow, with its result on top of the stack: when it succeeded, charges 2^GROWN_PAGE_SHIFT per page
 * of the memory's new size and 2^LARGE_GROW_SHIFT more when that is over LARGE_MEMORY_PAGES (trapping if that
 * leaves the fuel below zero), and leaves the result as it was. See GROWN_PAGE_SHIFT for why.
 */
function emitGrownCharge(m: Meter): void {
  const w = m.w;
  w.byte(0x22); // local.tee scratch; i32.const -1; i32.ne; if
  w.u32(m.scratch);
  w.byte(0x41);
  w.byte(0x7f);
  w.byte(0x47);
  w.byte(0x04);
  w.byte(0x40);
  w.byte(0x20); // local.get counter; memory.size 0; i64.extend_i32_u; i64.const shift; i64.shl; i64.sub
  w.u32(m.counter);
  w.byte(0x3f);
  w.byte(0x00);
  w.byte(0xad);
  w.byte(0x42);
  w.s64(GROWN_PAGE_SHIFT);
  w.byte(0x86);
  w.byte(0x7d);
  w.byte(0x3f); // memory.size 0; i32.const large; i32.gt_u; i64.extend_i32_u; i64.const shift; i64.shl; i64.sub
  w.byte(0x00);
  w.byte(0x41);
  w.s64(LARGE_MEMORY_PAGES); // signed LEB128: the same bytes for an i32 immediate
  w.byte(0x4b);
  w.byte(0xad);
  w.byte(0x42);
  w.s64(LARGE_GROW_SHIFT);
  w.byte(0x86);
  w.byte(0x7d);
  emitCheck(m);
  w.byte(0x0b); // end
  w.byte(0x20); // local.get scratch: the grow's result
  w.u32(m.scratch);
}

/**
 * With a memory.grow's page count on top of the stack: records in the refused global whether the pages it would
 * reach pass the cap global, and replaces the count with 2^32 - 1 when they do, so the grow that follows fails
 * (-1) as one past the memory's maximum does. 64-bit arithmetic: size + count cannot wrap.
 */
function emitGrowCap(m: Meter): void {
  const w = m.w;
  const over = () => {
    w.byte(0x20); // local.get scratch; i64.extend_i32_u
    w.u32(m.scratch);
    w.byte(0xad);
    w.byte(0x3f); // memory.size 0; i64.extend_i32_u; i64.add
    w.byte(0x00);
    w.byte(0xad);
    w.byte(0x7c);
    w.byte(0x23); // global.get cap; i64.gt_u
    w.u32(m.memoryCap);
    w.byte(0x56);
  };
  w.byte(0x21); // local.set scratch
  w.u32(m.scratch);
  w.byte(0x23); // global.get refused; over; i32.or; global.set refused
  w.u32(m.memoryRefused);
  over();
  w.byte(0x72);
  w.byte(0x24);
  w.u32(m.memoryRefused);
  w.byte(0x41); // i32.const -1; local.get scratch; over; select
  w.byte(0x7f);
  w.byte(0x20);
  w.u32(m.scratch);
  over();
  w.byte(0x1b);
}
