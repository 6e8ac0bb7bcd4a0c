import { ReedError } from '../../errors.js';
import { BinaryError, encodeU32, Reader } from './binary.js';
import { type ValType, valType } from './instrument-code.js';

/**
 * The sections prepare-module.ts only reads or caps, decoded: types, imports, exports, the start function, and
 * table and memory limits. Nothing here writes the module; what each returns is what the rewrite needs.
 */

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

/** Whether an export is a `() -> i32` function: the shape of a callable plugin function in both ABIs. */
export function isI32Thunk(e: ModuleExport): boolean {
  return (
    e.kind === 'function' &&
    e.type !== undefined &&
    e.type.params.length === 0 &&
    e.type.results.length === 1 &&
    e.type.results[0] === 'i32'
  );
}

/** An export as declared: its function's type is looked up once every section is read. */
export interface ExportEntry {
  name: string;
  kind: ModuleExport['kind'];
  index: number;
}

const KINDS = ['function', 'table', 'memory', 'global', 'tag'] as const;

export const fail = (
  code:
    | 'wasm_invalid'
    | 'wasm_unsupported'
    | 'wasm_memory_limit'
    | 'wasm_table_limit'
    | 'wasm_limit_exceeded',
  message: string,
) => new ReedError(code, message);

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

/** Reads the type section into `types`; only plain function types (form 0x60) are accepted. */
export function readTypeSection(s: Reader, types: FuncType[]): void {
  for (let n = s.u32(); n > 0; n--) {
    const form = s.byte();
    if (form !== 0x60)
      throw fail('wasm_unsupported', `type form 0x${form.toString(16)} (GC types) is not supported`);
    const params = Array.from({ length: s.u32() }, () => valType(s));
    const results = Array.from({ length: s.u32() }, () => valType(s));
    types.push({ params, results });
  }
}

/** Reads the import section into `imports` and `funcTypes`; returns how many globals it imports. */
export function readImportSection(
  s: Reader,
  types: readonly FuncType[],
  funcTypes: number[],
  imports: ModuleImport[],
): number {
  let importedGlobals = 0;
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
  return importedGlobals;
}

/**
 * The table section's new content (every table's maximum capped: wasm_table_limit past the cap), and the
 * elements its tables start with, in all.
 */
export function cappedTableSection(s: Reader, cap: number): { content: number[]; initial: number } {
  const entries: number[] = [];
  let initial = 0;
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const ref = s.byte();
    const limits = capLimits(readLimits(s, 'table'), cap, `table ${i}`, 'elements', 'wasm_table_limit');
    initial += limits.min;
    entries.push(ref, ...writeLimits(limits));
  }
  return { content: [...encodeU32(n), ...entries], initial };
}

/**
 * The memory section's new content for its `n` memories (count already read; maxima capped), and the pages they
 * start with, in all.
 */
export function cappedMemoryEntries(
  s: Reader,
  n: number,
  cap: number,
): { content: number[]; initial: number } {
  const entries: number[] = [];
  let initial = 0;
  for (let i = 0; i < n; i++) {
    const limits = capLimits(readLimits(s, 'memory'), cap, 'memory', 'pages of 64 KiB', 'wasm_memory_limit');
    initial += limits.min;
    entries.push(...writeLimits(limits));
  }
  return { content: [...encodeU32(n), ...entries], initial };
}

/** Reads `n` export entries into `exports`, refusing a name the host reserves (`__reed_*`). */
export function readExportEntries(s: Reader, n: number, exports: ExportEntry[]): void {
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
}

/** The start section's function index, if the module has one. */
export function findStart(input: Uint8Array): number | undefined {
  const r = new Reader(input, 8);
  while (!r.done) {
    const id = r.byte();
    const size = r.u32();
    if (id === 8) return new Reader(input, r.pos, r.pos + size).u32();
    r.skip(size);
  }
  return undefined;
}
