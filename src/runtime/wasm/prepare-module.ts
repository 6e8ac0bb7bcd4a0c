import { ReedError } from '../../errors.js';
import { BinaryError, ByteWriter, encodeName, encodeS64, encodeU32, Reader } from './binary.js';
import {
  EMPTY_INSTANCE_SHAPE,
  encodeInstantiationFuel,
  INSTANTIATION_FUEL_SECTION,
  type InstanceShape,
  instantiationFuel,
} from './instantiation-fuel.js';
import { type CodeMeter, instrumentBody, RunMarks, type ValType } from './instrument-code.js';
import {
  cappedMemoryEntries,
  cappedTableSection,
  type ExportEntry,
  type FuncType,
  fail,
  findStart,
  type ModuleExport,
  type ModuleImport,
  readExportEntries,
  readImportSection,
  readTypeSection,
} from './module-sections.js';

/**
 * Checks a WebAssembly module against the host's policy and rewrites it so that the host can bound it:
 *
 * - memories and tables get a maximum no larger than the caps (a module that declares none, or a larger one,
 *   is capped; one whose *initial* size is above the cap is rejected), so `memory.grow` fails inside the cap;
 * - with fuel on, every instruction is charged one fuel before it runs, from a new exported i64 global
 *   (`__reed_fuel`) that each function keeps in a local between the points where others can read it, and every
 *   function entry, loop head and exception handler traps (`unreachable`) once the fuel is below zero;
 *   instructions whose work grows with an operand (memory.fill, table.grow, ...) and exceptions are charged in
 *   proportion to it before they run (instrument-code.ts). V8 has no fuel or epoch interruption of its own;
 *   this makes an infinite loop end on the calling thread, deterministically. No import is added, so no
 *   function index shifts; a second, unexported global counts frames for the exceptions' charge;
 * - with fuel on, every `memory.grow` first checks the pages it would reach against a cap the host sets before
 *   each run in a third global (`__reed_memory_cap`, exported; default: no cap below the memory's own maximum),
 *   and asks for 2^32 - 1 pages instead when they are past it, so the grow fails (-1) as it does past the
 *   memory's maximum, and a fourth (`__reed_memory_refused`, exported) records that it happened. Mode none sets
 *   the cap to what the tenant's memory_mb leaves this instance beside the tenant's other instances.
 *
 * Time and memory are linear in the module: one pass, output streamed into one growing buffer whose size is
 * capped at {@link MAX_EXPANSION} times the input (module-limits.ts caps the input's shape before this runs).
 *
 * - the start function is exported as `__reed_start` instead of run by instantiation: the host calls it at
 *   once, with the instance in hand, so fuel exhaustion there is reported as such and host imports work;
 * - with fuel on, what making an instance costs (instantiation-fuel.ts) is written into a custom section of its
 *   own, last, for the runtime to charge before it instantiates.
 *
 * Bump INSTRUMENTER_VERSION whenever the output for the same input changes: it is part of the cache key.
 */
export const INSTRUMENTER_VERSION = 13;
/**
 * Custom sections (names, producers, debug info) kept in the prepared module, in all: V8 copies a function's name
 * from the `name` section into every stack frame and error, so a module could otherwise make each trap carry
 * megabytes (found by the adversarial pass: a 60 MB name made the host's shutdown log throw). Past this the
 * rest are dropped; they never change what the module does.
 */
export const MAX_CUSTOM_SECTION_BYTES = 64 * 1024;
export const FUEL_EXPORT = '__reed_fuel';
/** The pages `memory.grow` may reach in this run (i64; the host sets it), and whether one was refused (i32). */
export const MEMORY_CAP_EXPORT = '__reed_memory_cap';
export const MEMORY_REFUSED_EXPORT = '__reed_memory_refused';
/** Globals the instrumentation adds: the fuel, the frame depth, the memory cap, the refused flag. */
const ADDED_GLOBALS = 4;
/** The module's start function, exported instead of run at instantiation, so the host runs it under fuel. */
export const START_EXPORT = '__reed_start';
export const WASM_PAGE_BYTES = 65_536;
/**
 * The instrumented module may be at most this many times the original (plus 64 KiB). Real code grows by
 * about half; only code made of nothing but branches grows more, and a module that would pass this is refused
 * rather than allowed to make the host hold and compile a multiple of what it was given.
 */
export const MAX_EXPANSION = 4;

export type { FuncType, ModuleExport, ModuleImport, ValType };

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
  /** What making an instance costs in fuel (instantiation-fuel.ts), also written into `bytes` when fuel is on. */
  instantiationFuel: number;
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

/**
 * Long because it is one pass over the sections in order, with the state of the rewrite (what has been read, and
 * whether the added global and export sections are written yet) in one place: the order in which they are
 * inserted is what makes the output valid, and reads best top to bottom.
 */
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
  const exports: ExportEntry[] = [];
  let importedGlobals = 0;
  let definedGlobals = 0;
  let memories = 0;
  const w = new ByteWriter(
    input.length + (input.length >> 1) + 1024,
    input.length * MAX_EXPANSION + 65_536,
    (max) => {
      throw fail(
        'wasm_limit_exceeded',
        `the instrumented module would be larger than ${max} bytes (${MAX_EXPANSION} times the original); its code is almost nothing but branches`,
      );
    },
  );
  const put = (chunk: Uint8Array | number[]) => {
    if (chunk instanceof Uint8Array) w.bytes(chunk);
    else for (const b of chunk) w.byte(b);
  };
  put(header);
  let globalSectionSeen = false;
  let exportSectionSeen = false;
  const fuelGlobal = () => importedGlobals + definedGlobals;
  let tags = 0;
  const meter = (): CodeMeter => ({
    fuel: fuelGlobal(),
    depth: fuelGlobal() + 1,
    memoryCap: fuelGlobal() + 2,
    memoryRefused: fuelGlobal() + 3,
    eh: tags > 0,
    marks: new RunMarks(),
  });
  // The fuel (mutable i64), then the frame depth that charges for exceptions read (mutable i32), the memory cap
  // in pages (mutable i64, 65,536: all a 32-bit memory has) and the refused flag (mutable i32).
  const newGlobals = () => [
    0x7e,
    0x01,
    0x42,
    ...encodeS64(options.initialFuel),
    0x0b,
    0x7f,
    0x01,
    0x41,
    0x00,
    0x0b,
    0x7e,
    0x01,
    0x42,
    ...encodeS64(65_536n),
    0x0b,
    0x7f,
    0x01,
    0x41,
    0x00,
    0x0b,
  ];
  const extraExports = () => [
    ...(options.fuel
      ? [
          [...encodeName(FUEL_EXPORT), 0x03, ...encodeU32(fuelGlobal())],
          [...encodeName(MEMORY_CAP_EXPORT), 0x03, ...encodeU32(fuelGlobal() + 2)],
          [...encodeName(MEMORY_REFUSED_EXPORT), 0x03, ...encodeU32(fuelGlobal() + 3)],
        ]
      : []),
    ...(startFunction === undefined
      ? []
      : [[...encodeName(START_EXPORT), 0x00, ...encodeU32(startFunction)]]),
  ];
  const needExports = options.fuel || startFunction !== undefined;
  const section = (id: number, content: Uint8Array | number[]) => {
    w.byte(id);
    w.u32(content.length);
    put(content);
  };

  let customBytes = 0;
  // What making an instance costs is priced from counts the sections below read anyway (instantiation-fuel.ts).
  const shape: InstanceShape = { ...EMPTY_INSTANCE_SHAPE };
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
      section(6, [...encodeU32(ADDED_GLOBALS), ...newGlobals()]);
      globalSectionSeen = true;
    }
    if (needExports && !exportSectionSeen && id !== 0 && id > 7 && id !== 13) {
      const extra = extraExports();
      section(7, [...encodeU32(extra.length), ...extra.flat()]);
      exportSectionSeen = true;
    }
    switch (id) {
      case 0: {
        if (s.name() === INSTANTIATION_FUEL_SECTION)
          throw fail(
            'wasm_invalid',
            `the module has a custom section "${INSTANTIATION_FUEL_SECTION}"; that name is reserved for the host`,
          );
        customBytes += end - sectionStart;
        if (customBytes <= MAX_CUSTOM_SECTION_BYTES) w.bytes(input, sectionStart, end);
        break;
      }
      case 1: {
        readTypeSection(s, types);
        w.bytes(input, sectionStart, end);
        break;
      }
      case 2: {
        importedGlobals += readImportSection(s, types, funcTypes, imports);
        shape.imports = imports.length;
        shape.tags += imports.filter((i) => i.kind === 'tag').length;
        w.bytes(input, sectionStart, end);
        break;
      }
      case 3: {
        const n = s.u32();
        shape.functions += n;
        for (let i = n; i > 0; i--) funcTypes.push(s.u32());
        w.bytes(input, sectionStart, end);
        break;
      }
      case 4: {
        shape.tables += new Reader(input, start, end).u32(); // the count, which cappedTableSection reads again
        const tables = cappedTableSection(s, options.tableCapElements);
        shape.tableElements += tables.initial;
        section(4, tables.content);
        break;
      }
      case 5: {
        const n = s.u32();
        memories += n;
        if (memories > 1) throw fail('wasm_unsupported', 'more than one memory is not supported');
        const memory = cappedMemoryEntries(s, n, options.memoryCapPages);
        if (n > 0) shape.memoryPages = memory.initial;
        section(5, memory.content);
        break;
      }
      case 6: {
        const n = s.u32();
        definedGlobals = n;
        shape.globals = n;
        if (options.fuel) {
          const globals = newGlobals();
          w.byte(6);
          w.u32(encodeU32(n + ADDED_GLOBALS).length + (end - s.pos) + globals.length);
          w.u32(n + ADDED_GLOBALS);
          w.bytes(input, s.pos, end);
          put(globals);
          globalSectionSeen = true;
        } else w.bytes(input, sectionStart, end);
        break;
      }
      case 7: {
        const n = s.u32();
        const entriesStart = s.pos;
        readExportEntries(s, n, exports);
        shape.exports = n;
        shape.exportBytes = size;
        if (needExports) {
          const extra = extraExports();
          const tail = extra.flat();
          w.byte(7);
          w.u32(encodeU32(n + extra.length).length + (end - entriesStart) + tail.length);
          w.u32(n + extra.length);
          w.bytes(input, entriesStart, end);
          put(tail);
          exportSectionSeen = true;
        } else w.bytes(input, sectionStart, end);
        break;
      }
      case 8:
        break; // the start function is exported instead (START_EXPORT)
      case 13: {
        // tags: something can be thrown, so the metering counts frames (instrument-code.ts)
        const n = s.u32();
        tags += n;
        shape.tags += n;
        w.bytes(input, sectionStart, end);
        break;
      }
      case 10: {
        if (!options.fuel) {
          w.bytes(input, sectionStart, end);
          break;
        }
        instrumentCodeSection(input, s, end, w, meter(), types, funcTypes);
        break;
      }
      default:
        if (id === 9) shape.elementBytes += size;
        if (id === 11) shape.dataBytes += size;
        if (id === 9 || id === 11) shape.segments += s.u32();
        w.bytes(input, sectionStart, end);
    }
    r.pos = end;
  }
  const fuelOfInstance = instantiationFuel(shape);
  // Last, after every section V8 orders: custom sections may stand anywhere.
  if (options.fuel)
    section(0, [...encodeName(INSTANTIATION_FUEL_SECTION), ...encodeInstantiationFuel(fuelOfInstance)]);
  if (options.fuel && !globalSectionSeen) section(6, [...encodeU32(ADDED_GLOBALS), ...newGlobals()]);
  if (needExports && !exportSectionSeen) {
    const extra = extraExports();
    section(7, [...encodeU32(extra.length), ...extra.flat()]);
  }

  const resolvedExports: ModuleExport[] = exports.map((e) => {
    const typeIndex = e.kind === 'function' ? funcTypes[e.index] : undefined;
    const type = typeIndex === undefined ? undefined : types[typeIndex];
    return { name: e.name, kind: e.kind, ...(type === undefined ? {} : { type }) };
  });
  return {
    bytes: w.result(),
    imports,
    exports: resolvedExports,
    isCommand: exports.some((e) => e.name === '_start' && e.kind === 'function'),
    instantiationFuel: fuelOfInstance,
  };
}

/**
 * The code section with every function body metered (instrument-code.ts), written to `w` as section 10. Each
 * body needs its parameter count (the metering adds locals after the parameters and the declared locals), from
 * its type: `funcTypes` holds the imported functions' types, then the defined ones'.
 */
function instrumentCodeSection(
  input: Uint8Array,
  s: Reader,
  end: number,
  w: ByteWriter,
  globals: CodeMeter,
  types: readonly FuncType[],
  funcTypes: readonly number[],
): void {
  const n = s.u32();
  const imported = funcTypes.length - n;
  if (imported < 0)
    throw new BinaryError(`the code section has ${n} bodies, more than the functions declared`);
  w.byte(10);
  const sectionContent = w.beginSized();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const bodySize = s.u32();
    const bodyEnd = s.pos + bodySize;
    if (bodyEnd > end) throw new BinaryError(`function ${i} runs past the end of the code section`);
    const type = types[funcTypes[imported + i] as number];
    if (type === undefined) throw new BinaryError(`function ${i} has no valid type`);
    const body = w.beginSized();
    instrumentBody(input, new Reader(input, s.pos, bodyEnd), bodyEnd, w, globals, type.params.length);
    w.endSized(body);
    s.pos = bodyEnd;
  }
  w.endSized(sectionContent);
}
