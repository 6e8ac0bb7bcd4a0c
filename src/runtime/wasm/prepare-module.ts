import { ReedError } from '../../errors.js';
import { BinaryError, concat, encodeName, encodeS64, encodeU32, Reader } from './binary.js';

/**
 * Checks a WebAssembly module against the host's policy and rewrites it so that the host can bound it:
 *
 * - memories and tables get a maximum no larger than the caps (a module that declares none, or a larger one,
 *   is capped; one whose *initial* size is above the cap is rejected), so `memory.grow` fails inside the cap;
 * - with fuel on, every straight-line run of instructions first subtracts its length from a new exported i64
 *   global (`__reed_fuel`), and every function entry and loop head traps (`unreachable`) once the fuel is
 *   below zero. V8 has no fuel or epoch interruption of its own; this makes an infinite loop end on the calling
 *   thread, deterministically. No import is added, so no function index shifts.
 *
 * - the start function is exported as `__reed_start` instead of run by instantiation: the host calls it at
 *   once, with the instance in hand, so fuel exhaustion there is reported as such and host imports work.
 *
 * Bump INSTRUMENTER_VERSION whenever the output for the same input changes: it is part of the cache key.
 */
export const INSTRUMENTER_VERSION = 2;
export const FUEL_EXPORT = '__reed_fuel';
/** The module's start function, exported instead of run at instantiation, so the host runs it under fuel. */
export const START_EXPORT = '__reed_start';
export const WASM_PAGE_BYTES = 65_536;

export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';
export interface FuncType {
  params: ValType[];
  results: ValType[];
}

export interface ModuleImport {
  module: string;
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
  type?: FuncType;
}

export interface ModuleExport {
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
  type?: FuncType;
}

export interface PrepareOptions {
  /** Instrument for fuel. Default true. */
  fuel: boolean;
  /** Initial fuel (what the start function runs with); the host sets it again before each call. */
  initialFuel: bigint;
  memoryCapPages: number;
  tableCapElements: number;
}

export interface PreparedModule {
  /** The rewritten module. */
  bytes: Uint8Array;
  imports: ModuleImport[];
  exports: ModuleExport[];
  /** Exports `_start`: a WASI command. */
  isCommand: boolean;
}

const VALTYPES: Record<number, ValType> = {
  127: 'i32',
  126: 'i64',
  125: 'f32',
  124: 'f64',
  123: 'v128',
  112: 'funcref',
  111: 'externref',
};
const KINDS = ['function', 'table', 'memory', 'global', 'tag'] as const;

const fail = (
  code: 'wasm_invalid' | 'wasm_unsupported' | 'wasm_memory_limit' | 'wasm_table_limit',
  message: string,
) => new ReedError(code, message);

function valType(r: Reader): ValType {
  const b = r.byte();
  const t = VALTYPES[b];
  if (t === undefined) throw fail('wasm_unsupported', `value type 0x${b.toString(16)} is not supported`);
  return t;
}

interface Limits {
  min: number;
  max?: number;
}

function readLimits(r: Reader, what: string): Limits {
  const flags = r.byte();
  if (flags > 1)
    throw fail(
      'wasm_unsupported',
      `${what} with flags 0x${flags.toString(16)} (shared or 64-bit) is not supported`,
    );
  const min = r.u32();
  return flags === 1 ? { min, max: r.u32() } : { min };
}

function writeLimits(l: Limits): number[] {
  return l.max === undefined ? [0x00, ...encodeU32(l.min)] : [0x01, ...encodeU32(l.min), ...encodeU32(l.max)];
}

function capLimits(
  l: Limits,
  cap: number,
  what: string,
  unit: string,
  code: 'wasm_memory_limit' | 'wasm_table_limit',
): Limits {
  if (l.min > cap) {
    throw fail(code, `${what} starts at ${l.min} ${unit}, above the cap of ${cap} ${unit}`);
  }
  return { min: l.min, max: l.max === undefined ? cap : Math.min(l.max, cap) };
}

/** Parses, checks and rewrites `input`. Throws ReedError (wasm_*) for what it cannot accept. */
export function prepareModule(input: Uint8Array, options: PrepareOptions): PreparedModule {
  try {
    return prepare(input, options);
  } catch (error) {
    if (error instanceof BinaryError)
      throw new ReedError('wasm_invalid', `malformed module: ${error.message}`, { cause: error });
    throw error;
  }
}

function prepare(input: Uint8Array, options: PrepareOptions): PreparedModule {
  const r = new Reader(input);
  const header = input.subarray(0, 8);
  if (input.length < 8 || header[0] !== 0 || header[1] !== 0x61 || header[2] !== 0x73 || header[3] !== 0x6d) {
    throw fail('wasm_invalid', 'not a WebAssembly module (bad magic number)');
  }
  r.skip(8);
  const startFunction = findStart(input);

  const types: FuncType[] = [];
  const imports: ModuleImport[] = [];
  const funcTypes: number[] = []; // type index per function, imports first
  const exports: { name: string; kind: ModuleExport['kind']; index: number }[] = [];
  let importedGlobals = 0;
  let definedGlobals = 0;
  let memories = 0;
  const out: (Uint8Array | number[])[] = [header];
  let globalSectionSeen = false;
  let exportSectionSeen = false;
  const fuelGlobal = () => importedGlobals + definedGlobals;
  const newGlobal = () => [0x7e, 0x01, 0x42, ...encodeS64(options.initialFuel), 0x0b];
  const extraExports = () => [
    ...(options.fuel ? [[...encodeName(FUEL_EXPORT), 0x03, ...encodeU32(fuelGlobal())]] : []),
    ...(startFunction === undefined
      ? []
      : [[...encodeName(START_EXPORT), 0x00, ...encodeU32(startFunction)]]),
  ];
  const needExports = options.fuel || startFunction !== undefined;
  const section = (id: number, content: Uint8Array | number[]) =>
    out.push([id, ...encodeU32(content.length)], content);

  while (!r.done) {
    const sectionStart = r.pos;
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    const end = start + size;
    if (end > input.length) throw new BinaryError(`section ${id} runs past the end of the module`);
    const s = new Reader(input, start, end);
    // Sections after the global section's place (export=7 onward) need a global section first.
    if (options.fuel && !globalSectionSeen && id !== 0 && (id === 7 || (id > 7 && id !== 13))) {
      section(6, [...encodeU32(1), ...newGlobal()]);
      globalSectionSeen = true;
    }
    if (needExports && !exportSectionSeen && id !== 0 && id > 7 && id !== 13) {
      const extra = extraExports();
      section(7, concat([encodeU32(extra.length), ...extra]));
      exportSectionSeen = true;
    }
    switch (id) {
      case 1: {
        for (let n = s.u32(); n > 0; n--) {
          const form = s.byte();
          if (form !== 0x60)
            throw fail('wasm_unsupported', `type form 0x${form.toString(16)} (GC types) is not supported`);
          const params = Array.from({ length: s.u32() }, () => valType(s));
          const results = Array.from({ length: s.u32() }, () => valType(s));
          types.push({ params, results });
        }
        out.push(input.subarray(sectionStart, end));
        break;
      }
      case 2: {
        for (let n = s.u32(); n > 0; n--) {
          const module = s.name();
          const name = s.name();
          const kind = KINDS[s.byte()];
          if (kind === undefined) throw new BinaryError('bad import kind');
          const entry: ModuleImport = { module, name, kind };
          if (kind === 'function') {
            const t = s.u32();
            funcTypes.push(t);
            if (types[t] !== undefined) entry.type = types[t];
          } else if (kind === 'table') {
            s.byte();
            readLimits(s, 'imported table');
          } else if (kind === 'memory') readLimits(s, 'imported memory');
          else if (kind === 'global') {
            valType(s);
            s.byte();
            importedGlobals++;
          } else {
            s.byte();
            s.u32();
          }
          imports.push(entry);
        }
        out.push(input.subarray(sectionStart, end));
        break;
      }
      case 3: {
        for (let n = s.u32(); n > 0; n--) funcTypes.push(s.u32());
        out.push(input.subarray(sectionStart, end));
        break;
      }
      case 4: {
        const entries: number[] = [];
        const n = s.u32();
        for (let i = 0; i < n; i++) {
          const ref = s.byte();
          const limits = capLimits(
            readLimits(s, 'table'),
            options.tableCapElements,
            `table ${i}`,
            'elements',
            'wasm_table_limit',
          );
          entries.push(ref, ...writeLimits(limits));
        }
        section(4, [...encodeU32(n), ...entries]);
        break;
      }
      case 5: {
        const n = s.u32();
        memories += n;
        if (memories > 1) throw fail('wasm_unsupported', 'more than one memory is not supported');
        const entries: number[] = [];
        for (let i = 0; i < n; i++) {
          const limits = capLimits(
            readLimits(s, 'memory'),
            options.memoryCapPages,
            'memory',
            'pages of 64 KiB',
            'wasm_memory_limit',
          );
          entries.push(...writeLimits(limits));
        }
        section(5, [...encodeU32(n), ...entries]);
        break;
      }
      case 6: {
        const n = s.u32();
        definedGlobals = n;
        if (options.fuel) {
          section(6, concat([encodeU32(n + 1), input.subarray(s.pos, end), newGlobal()]));
          globalSectionSeen = true;
        } else out.push(input.subarray(sectionStart, end));
        break;
      }
      case 7: {
        const n = s.u32();
        const entriesStart = s.pos;
        for (let i = 0; i < n; i++) {
          const name = s.name();
          const kind = KINDS[s.byte()];
          if (kind === undefined) throw new BinaryError('bad export kind');
          exports.push({ name, kind, index: s.u32() });
          if (name.startsWith('__reed_')) {
            throw fail(
              'wasm_invalid',
              `the module exports "${name}"; names starting with __reed_ are reserved for the host`,
            );
          }
        }
        if (needExports) {
          const extra = extraExports();
          section(7, concat([encodeU32(n + extra.length), input.subarray(entriesStart, end), ...extra]));
          exportSectionSeen = true;
        } else out.push(input.subarray(sectionStart, end));
        break;
      }
      case 8:
        break; // the start function is exported instead (START_EXPORT)
      case 10: {
        if (!options.fuel) {
          out.push(input.subarray(sectionStart, end));
          break;
        }
        const n = s.u32();
        const bodies: (Uint8Array | number[])[] = [encodeU32(n)];
        for (let i = 0; i < n; i++) {
          const bodySize = s.u32();
          const bodyEnd = s.pos + bodySize;
          const body = instrumentBody(input, s.pos, bodyEnd, fuelGlobal());
          bodies.push(encodeU32(body.length), body);
          s.pos = bodyEnd;
        }
        section(10, concat(bodies));
        break;
      }
      default:
        out.push(input.subarray(sectionStart, end));
    }
    r.pos = end;
  }
  if (options.fuel && !globalSectionSeen) section(6, [...encodeU32(1), ...newGlobal()]);
  if (needExports && !exportSectionSeen) {
    const extra = extraExports();
    section(7, concat([encodeU32(extra.length), ...extra]));
  }

  const resolvedExports: ModuleExport[] = exports.map((e) => {
    const typeIndex = e.kind === 'function' ? funcTypes[e.index] : undefined;
    const type = typeIndex === undefined ? undefined : types[typeIndex];
    return { name: e.name, kind: e.kind, ...(type === undefined ? {} : { type }) };
  });
  return {
    bytes: concat(out),
    imports,
    exports: resolvedExports,
    isCommand: exports.some((e) => e.name === '_start' && e.kind === 'function'),
  };
}

/** The start section's function index, if the module has one. */
function findStart(input: Uint8Array): number | undefined {
  const r = new Reader(input, 8);
  while (!r.done) {
    const id = r.byte();
    const size = r.u32();
    if (id === 8) return new Reader(input, r.pos, r.pos + size).u32();
    r.skip(size);
  }
  return undefined;
}

// --- code instrumentation -----------------------------------------------------------------------

/** What an instruction means for metering. */
enum Flow {
  Plain = 0,
  /** Ends the current straight-line run: what follows is entered another way (or not at all). */
  Boundary = 1,
  /** `loop`: a boundary whose new run is a loop head, where fuel is also checked. */
  Loop = 2,
}

/** Rewrites one function body: locals unchanged, a charge (and at heads a check) before each run. */
function instrumentBody(bytes: Uint8Array, start: number, end: number, fuel: number): Uint8Array {
  const r = new Reader(bytes, start, end);
  for (let groups = r.u32(); groups > 0; groups--) {
    r.u32();
    valType(r);
  }
  const exprStart = r.pos;
  const runs: { at: number; cost: number; check: boolean }[] = [];
  let run = { at: exprStart, cost: 0, check: true };
  while (r.pos < end) {
    const flow = skipInstruction(r);
    run.cost++;
    if (flow !== Flow.Plain) {
      runs.push(run);
      run = { at: r.pos, cost: 0, check: flow === Flow.Loop };
    }
  }
  if (run.cost > 0 || run.check) runs.push(run);

  const g = encodeU32(fuel);
  const out: (Uint8Array | number[])[] = [bytes.subarray(start, exprStart)];
  let copied = exprStart;
  for (const { at, cost, check } of runs) {
    if (cost === 0 && !check) continue;
    if (at >= end) break; // after the body's final `end`
    out.push(bytes.subarray(copied, at));
    copied = at;
    if (cost > 0) out.push([0x23, ...g, 0x42, ...encodeS64(BigInt(cost)), 0x7d, 0x24, ...g]);
    // global.get; i64.const 0; i64.lt_s; if (empty) unreachable end
    if (check) out.push([0x23, ...g, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0b]);
  }
  out.push(bytes.subarray(copied, end));
  return concat(out);
}

function memarg(r: Reader): void {
  const align = r.u32();
  if ((align & 0x40) !== 0) r.u32(); // multi-memory index
  r.u32();
}

function blockType(r: Reader): void {
  r.s33();
}

/** Skips one instruction with its immediates and says what it means for control flow. */
function skipInstruction(r: Reader): Flow {
  const op = r.byte();
  switch (op) {
    case 0x00: // unreachable
    case 0x0f: // return
      return Flow.Boundary;
    case 0x01:
    case 0x1a:
    case 0x1b:
    case 0xd1:
      return Flow.Plain;
    case 0x02: // block
      blockType(r);
      return Flow.Plain;
    case 0x03: // loop
      blockType(r);
      return Flow.Loop;
    case 0x04: // if
    case 0x06: // try
      blockType(r);
      return Flow.Boundary;
    case 0x05: // else
    case 0x0b: // end
    case 0x19: // catch_all
      return Flow.Boundary;
    case 0x07: // catch
    case 0x08: // throw
    case 0x09: // rethrow
    case 0x18: // delegate
    case 0x0c: // br
    case 0x0d: // br_if
      r.u32();
      return Flow.Boundary;
    case 0x0e: {
      for (let n = r.u32(); n > 0; n--) r.u32();
      r.u32();
      return Flow.Boundary;
    }
    case 0x10: // call
      r.u32();
      return Flow.Plain;
    case 0x11: // call_indirect
      r.u32();
      r.u32();
      return Flow.Plain;
    case 0x12: // return_call
      r.u32();
      return Flow.Boundary;
    case 0x13:
      r.u32();
      r.u32();
      return Flow.Boundary;
    case 0x1c: {
      for (let n = r.u32(); n > 0; n--) valType(r);
      return Flow.Plain;
    }
    case 0x20:
    case 0x21:
    case 0x22:
    case 0x23:
    case 0x24:
    case 0x25:
    case 0x26:
    case 0xd2:
    case 0x3f:
    case 0x40:
      r.u32();
      return Flow.Plain;
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
    case 0xd0:
      r.s33();
      return Flow.Plain;
    case 0xfc:
      return skipPrefixFC(r);
    case 0xfd:
      return skipPrefixFD(r);
    case 0xfe: {
      const sub = r.u32();
      if (sub === 0x03) r.byte();
      else memarg(r);
      return Flow.Plain;
    }
    default:
      if (op >= 0x28 && op <= 0x3e) {
        memarg(r);
        return Flow.Plain;
      }
      if (op >= 0x45 && op <= 0xc4) return Flow.Plain;
      throw fail(
        'wasm_unsupported',
        `instruction 0x${op.toString(16)} at byte ${r.pos - 1} is not supported`,
      );
  }
}

function skipPrefixFC(r: Reader): Flow {
  const sub = r.u32();
  if (sub <= 7) return Flow.Plain;
  switch (sub) {
    case 8: // memory.init
    case 10: // memory.copy
    case 12: // table.init
    case 14: // table.copy
      r.u32();
      r.u32();
      return Flow.Plain;
    case 9:
    case 11:
    case 13:
    case 15:
    case 16:
    case 17:
      r.u32();
      return Flow.Plain;
    default:
      throw fail('wasm_unsupported', `instruction 0xfc ${sub} at byte ${r.pos} is not supported`);
  }
}

function skipPrefixFD(r: Reader): Flow {
  const sub = r.u32();
  if (sub <= 11 || sub === 92 || sub === 93) memarg(r);
  else if (sub === 12 || sub === 13) r.skip(16);
  else if (sub >= 21 && sub <= 34) r.byte();
  else if (sub >= 84 && sub <= 91) {
    memarg(r);
    r.byte();
  }
  return Flow.Plain;
}
