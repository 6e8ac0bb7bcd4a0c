import { ReedError } from '../../errors.js';
import type { WasmAbi } from '../../manifest/types.js';
import { callableFunctions, expectedSignature, isKnownImport, sameSignature } from './abi.js';
import { BinaryError, Reader } from './binary.js';
import { checkDeclaredAbi, detectAbi, extismFunctions } from './extism.js';
import { checkModuleLimits, type WasmModuleLimits } from './module-limits.js';
import {
  cappedMemoryEntries,
  cappedTableSection,
  type ExportEntry,
  type FuncType,
  fail,
  type ModuleExport,
  type ModuleImport,
  readExportEntries,
  readImportSection,
  readTypeSection,
} from './module-sections.js';
import { WASM_PAGE_BYTES } from './prepare-module.js';

/** What a module is checked against: the host's `[wasm]` settings and the plugin's memory and table caps. */
export interface ModulePolicy {
  /** `[wasm] max_module_bytes`. */
  maxModuleBytes: number;
  /** `[wasm]`'s shape limits. */
  limits: WasmModuleLimits;
  /** `limits.memory_mb` in pages of 64 KiB. */
  memoryCapPages: number;
  /** `limits.table_elements`. */
  tableCapElements: number;
  /** The manifest's `abi`, when it names one: the module must speak it (wasm_abi_mismatch). */
  abi?: WasmAbi;
}

/** What the check learned of a module that passed it. */
export interface ModuleFacts {
  imports: ModuleImport[];
  /** Exports with their function types. */
  exports: ModuleExport[];
  /** Exports `_start`: a WASI command. */
  isCommand: boolean;
  /** The plugin ABI its imports speak (extism.ts detectAbi). */
  abi: WasmAbi;
  /** The functions the host could call (abi.ts callableFunctions); empty is allowed but useless (a warning at validate). */
  callable: string[];
}

/** `limits.memory_mb` as WASM pages, as the host caps a module's memory. */
export function memoryCapPages(memoryMb: number): number {
  return Math.floor((memoryMb * 1024 * 1024) / WASM_PAGE_BYTES);
}

/**
 * Everything loading refuses a module for that needs no compiling or instantiating, in one pass over its section
 * headers and the sections that declare things (types, imports, functions, tables, memories, exports, start): its
 * size, a component instead of a module, its shape ([wasm] limits), imports against what the host provides for the
 * ABI it uses (the host's own, WASI preview1, and any other set abi.ts knows) and their signatures, memory and table
 * declarations against the caps, export names and indices, and the start function. Loading calls this first
 * (compile-wasm.ts), and `reed-plugins validate` calls the same function, so a module refused for any of these is
 * invalid at validate with the same code. Function bodies are not read here: what only V8's validation or the
 * instrumenter finds in code (a bad instruction, an unsupported opcode) is found at load alone.
 * Throws ReedError naming `at.file`; returns what it learned.
 */
export function checkModule(
  bytes: Uint8Array,
  policy: ModulePolicy,
  at: { pluginId: string; file: string },
): ModuleFacts {
  try {
    if (bytes.length > policy.maxModuleBytes) {
      throw new ReedError(
        'wasm_too_large',
        `${at.file} is ${bytes.length} bytes, above the cap of ${policy.maxModuleBytes} bytes ([wasm] max_module_bytes)`,
        at,
      );
    }
    checkPreamble(bytes);
    checkModuleLimits(bytes, policy.limits);
    return readDeclarations(bytes, policy);
  } catch (error) {
    if (error instanceof BinaryError)
      throw new ReedError('wasm_invalid', `${at.file}: malformed module: ${error.message}`, {
        ...at,
        cause: error,
      });
    if (error instanceof ReedError && error.file === undefined)
      throw new ReedError(error.code, `${at.file}: ${error.message}`, { ...at, cause: error });
    throw error;
  }
}

/**
 * The eight-byte preamble: the magic number, then a version and a layer (u16 each). A core module is version 1,
 * layer 0; a component (the component model, WASI preview 2) is layer 1, whatever its version.
 */
function checkPreamble(bytes: Uint8Array): void {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d)
    throw fail('wasm_invalid', 'not a WebAssembly module (bad magic number)');
  const version = (bytes[4] as number) | ((bytes[5] as number) << 8);
  const layer = (bytes[6] as number) | ((bytes[7] as number) << 8);
  if (layer === 1) {
    throw new ReedError(
      'wasm_component_unsupported',
      `this is a WebAssembly component (the component model, WASI preview 2; binary version 0x${version.toString(16)}), not a core module. This host runs core WebAssembly modules only: with its own ABI (docs/ABI-wasm.md), WASI preview1 (wasi_snapshot_preview1) or Extism's (extism:host/env). Build for wasm32-wasip1 (wasm32-wasi) instead of wasm32-wasip2, or an Extism PDK`,
    );
  }
  if (version !== 1 || layer !== 0)
    throw fail('wasm_invalid', `binary version ${version}, layer ${layer} is not a core module's (1, 0)`);
}

/** Where each known section must come, by id (custom sections, id 0, may come anywhere). */
const SECTION_ORDER: Readonly<Record<number, number>> = {
  1: 1, // type
  2: 2, // import
  3: 3, // function
  4: 4, // table
  5: 5, // memory
  13: 6, // tag
  6: 7, // global
  7: 8, // export
  8: 9, // start
  9: 10, // element
  12: 11, // data count
  10: 12, // code
  11: 13, // data
};

interface Declared {
  types: FuncType[];
  imports: ModuleImport[];
  /** Type index per function, imports first. */
  funcTypes: number[];
  /** Bodies in the code section (undefined: none). */
  bodies: number | undefined;
  exports: ExportEntry[];
  start: number | undefined;
  /** Index-space sizes for the other kinds an export may name. */
  count: Record<'table' | 'memory' | 'global' | 'tag', number>;
}

/** Reads the declaring sections in order and checks each, then what spans them (exports, start, bodies). */
function readDeclarations(bytes: Uint8Array, policy: ModulePolicy): ModuleFacts {
  const d: Declared = {
    types: [],
    imports: [],
    funcTypes: [],
    bodies: undefined,
    exports: [],
    start: undefined,
    count: { table: 0, memory: 0, global: 0, tag: 0 },
  };
  const r = new Reader(bytes, 8);
  let lastRank = 0;
  while (!r.done) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (end > bytes.length) throw new BinaryError(`section ${id} runs past the end of the module`);
    if (id !== 0) {
      const rank = SECTION_ORDER[id];
      if (rank === undefined) throw new BinaryError(`unknown section id ${id}`);
      if (rank <= lastRank) throw new BinaryError(`section ${id} is out of order or repeated`);
      lastRank = rank;
    }
    readSection(id, new Reader(bytes, r.pos, end), d, policy);
    r.pos = end;
  }
  for (const t of d.funcTypes)
    if (t >= d.types.length) throw fail('wasm_invalid', `a function has type ${t}, which does not exist`);
  // The ABI first: an Extism host's own functions, or two ABIs at once, get their own codes.
  const abi = detectAbi(d.imports);
  checkDeclaredAbi(policy.abi, abi);
  checkImports(d.imports);
  const functions = d.funcTypes.length;
  const definedFunctions = functions - d.imports.filter((i) => i.kind === 'function').length;
  if ((d.bodies ?? 0) !== definedFunctions)
    throw new BinaryError(`${definedFunctions} functions are declared but ${d.bodies ?? 0} bodies given`);
  checkStart(d);
  const exports = resolveExports(d);
  const isCommand = exports.some((e) => e.name === '_start' && e.kind === 'function');
  const callable = abi === 'extism' ? extismFunctions(exports) : callableFunctions(exports, isCommand);
  return { imports: d.imports, exports, isCommand, abi, callable };
}

function readSection(id: number, s: Reader, d: Declared, policy: ModulePolicy): void {
  switch (id) {
    case 1:
      readTypeSection(s, d.types);
      return;
    case 2: {
      d.count.global += readImportSection(s, d.types, d.funcTypes, d.imports);
      for (const i of d.imports) if (i.kind === 'table' || i.kind === 'tag') d.count[i.kind]++;
      return;
    }
    case 3:
      for (let n = s.u32(); n > 0; n--) d.funcTypes.push(s.u32());
      return;
    case 4: {
      const before = s.pos;
      const n = s.u32();
      s.pos = before;
      cappedTableSection(s, policy.tableCapElements);
      d.count.table += n;
      return;
    }
    case 5: {
      const n = s.u32();
      d.count.memory += n;
      if (d.count.memory > 1) throw fail('wasm_unsupported', 'more than one memory is not supported');
      cappedMemoryEntries(s, n, policy.memoryCapPages);
      return;
    }
    case 6:
      d.count.global += s.u32();
      return;
    case 7:
      readExportEntries(s, s.u32(), d.exports);
      return;
    case 8:
      d.start = s.u32();
      return;
    case 10:
      d.bodies = s.u32();
      return;
    case 13:
      d.count.tag += s.u32();
      return;
    default:
  }
}

/** Each import against what the host provides: a known function of a known ABI, with its exact signature. */
function checkImports(imports: readonly ModuleImport[]): void {
  for (const imp of imports) {
    const name = `${imp.module}.${imp.name}`;
    if (imp.kind !== 'function' || !isKnownImport(imp.module, imp.name)) {
      throw new ReedError(
        'wasm_import_unknown',
        `it imports ${imp.kind} "${name}", which the host does not provide (see docs/ABI-wasm.md)`,
      );
    }
    const expected = expectedSignature(imp.module, imp.name);
    if (expected !== undefined && imp.type !== undefined && !sameSignature(expected, imp.type)) {
      throw new ReedError(
        'wasm_import_signature',
        `it imports "${name}" as (${imp.type.params.join(', ')}) -> (${imp.type.results.join(', ')}); the ABI has (${expected.params.join(', ')}) -> (${expected.results.join(', ')})`,
      );
    }
  }
}

/** The start function exists and takes and returns nothing (the host runs it right after instantiation). */
function checkStart(d: Declared): void {
  if (d.start === undefined) return;
  const typeIndex = d.funcTypes[d.start];
  if (typeIndex === undefined)
    throw fail('wasm_invalid', `the start function ${d.start} is not a function of the module`);
  const type = d.types[typeIndex];
  if (type === undefined || type.params.length > 0 || type.results.length > 0)
    throw fail('wasm_invalid', `the start function ${d.start} must take and return nothing`);
}

/** Exports with unique names naming things that exist; each function's type attached. */
function resolveExports(d: Declared): ModuleExport[] {
  const names = new Set<string>();
  return d.exports.map((e) => {
    if (names.has(e.name)) throw fail('wasm_invalid', `the export name "${e.name}" is used twice`);
    names.add(e.name);
    const size = e.kind === 'function' ? d.funcTypes.length : d.count[e.kind];
    if (e.index >= size)
      throw fail('wasm_invalid', `the export "${e.name}" names ${e.kind} ${e.index}, which does not exist`);
    if (e.kind !== 'function') return { name: e.name, kind: e.kind };
    const type = d.types[d.funcTypes[e.index] as number];
    if (type === undefined)
      throw fail('wasm_invalid', `the export "${e.name}" is a function of a type that does not exist`);
    return { name: e.name, kind: e.kind, type };
  });
}
