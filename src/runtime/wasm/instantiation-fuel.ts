import { BinaryError } from './binary.js';

/**
 * What making an instance of a module costs in fuel (issue 10, class 6). Instantiation runs no instruction of the
 * plugin, yet the host's thread pays for it: V8 reserves and maps the memory (and counts it as external memory,
 * which starts collections of the host's heap), copies every active data segment in, allocates and fills the
 * tables. A command makes an instance at every call, a plugin at its first call after a trap; before this, an empty
 * `_start` with a 64 MiB memory held the host's thread 3.3-4.2 ms a call and a 60 MiB data segment 47-57 ms, for no
 * fuel at all. So the call that makes the instance pays for it from its fuel, before V8 is asked to.
 *
 * The prices come from instantiating such modules on Node 20 (session 17) against fuel's own rate (real programs run
 * at 0.04-0.08 ns of CPU per fuel: bench/fuel.ts's, on the same machine), rounded to powers of two. In a loop of its
 * own an instance costs ~3.5 µs, a memory ~20-30 µs more and ~0.5 µs a page, a data byte ~1 ns (V8 touches each
 * fresh page as it copies), a table element ~27 ns, an element segment's entry ~26 ns (an entry is one to five
 * bytes). In a host, memory costs more: V8 counts each instance's memory as external memory, and each 64 MiB of it
 * starts or advances a collection of the host's whole heap (the same reason memory.grow is charged per page:
 * instrument-code.ts). An empty command with 1,024 pages took 1.9-2.4 ms a call in a mode none host under vitest:
 * so 2^15 a page (34M for those 1,024). A module whose instance costs more than limits.fuel_per_call is refused at
 * load (prepare-job.ts): none of its calls that make an instance could run.
 *
 * What a module declares costs too (found by a second review: 99k exports or 1M tags held the host's thread 36-336
 * ms a call for 65,537 fuel). Measured on Node 20.20 (V8 11.3) on the same machine, with a plain Node script
 * outside the tree: new WebAssembly.Instance of a compiled module in a loop for 0.3-0.4 s, three runs a case, CPU from
 * process.cpuUsage (the whole process: GC's helper threads count), minus an empty module's instance, with 1,000 and
 * 10,000 of each thing; alone, and beside 100 MB of live JS objects as in a host. Per instance: an export 1.0-2.5 µs
 * (V8 makes a JS object for each: a function's wrapper 2.0-2.5, a global's WebAssembly.Global 1.1-1.6, a tag's
 * 1.0-1.2; one function exported under many names still 0.6-0.9; beside the heap, spikes past 10 µs as the objects
 * start its collections), an import 0.33-0.8 µs (looked up in the import object, its call wrapper found; 1.7 once
 * beside the heap), a table 0.9-1.3 µs whatever its size (its object; 2.8 beside the heap), a tag 50-65 ns (110-137
 * beside the heap), a defined global 25-40 ns, a defined function 14-17 ns (45-60 beside the heap), an active data
 * segment 17-35 ns beside its bytes (a passive one ~1 ns), an element segment 15-170 ns (paid already by its bytes at
 * 2^9, at least 3 a segment). Types cost nothing per instance. So, for 0.1 ns of CPU per fuel or less in a loop: 2^15
 * an export of any kind (one price: the kinds differ by less than twice, and a real module exports tens), 2^15 a
 * table, 2^14 an import, 2^11 a tag, 2^14 a global (see FUEL_PER_GLOBAL), 2^9 a function and a segment. The instrumenter's own exports and
 * globals are in FUEL_PER_INSTANCE (an empty module's instance took 1.9-2.5 µs, 4.5-7.4 µs once prepared). The
 * counts are capped as well (`[wasm] max_exports`, `max_imports`, `max_globals`, `max_tags`: module-limits.ts): a
 * module at every cap costs ~0.55G fuel an instance, within the default fuel_per_call (1G); past one it is refused.
 */
/** Every instantiation. */
export const FUEL_PER_INSTANCE = 1 << 16;
/**
 * A module that defines a memory: its reservation, guard regions and the buffer's object. Alone, 34-51 µs of CPU
 * (2^19 was priced from that); beside a host's heap of a million live objects (~100 MB), 215-236 µs (session 18,
 * Node 20: every memory V8 reserves advances a collection of the whole heap), so 2^22, ~4.2M: a command's every call
 * pays it.
 */
export const FUEL_PER_MEMORY = 1 << 22;
/** Each page (64 KiB) of the memory's initial size. */
export const FUEL_PER_INITIAL_PAGE = 1 << 15;
/** Each byte of the data section (active segments are copied in; passive ones are few, and charged the same). */
export const FUEL_PER_DATA_BYTE = 1 << 4;
/** Each element of a table's initial size. */
export const FUEL_PER_TABLE_ELEMENT = 1 << 9;
/** Each byte of the element section (its entries are written into the tables at instantiation). */
export const FUEL_PER_ELEMENT_BYTE = 1 << 9;
/** Each table the module defines, whatever its size (V8 makes a WebAssembly.Table object for each). */
export const FUEL_PER_TABLE = 1 << 15;
/** Each export, of any kind (V8 makes the JS object that stands for it: a function's wrapper, a Global, a Tag). */
export const FUEL_PER_EXPORT = 1 << 15;
/**
 * Each byte of the export section: V8 makes a string of each export's name at every instantiation, ~0.25 ns a byte
 * (a third review, session 18: one export named with 50 MB held a command's every call 10 ms for 131,585 fuel).
 */
export const FUEL_PER_EXPORT_BYTE = 1 << 4;
/** Each import (looked up in the import object, checked and linked: `FUEL_PER_IMPORT` in abi.ts prices a call). */
export const FUEL_PER_LINKED_IMPORT = 1 << 14;
/** Each tag the module defines or imports (an object each). */
export const FUEL_PER_TAG = 1 << 11;
/**
 * Each global the module defines (its initializer evaluated and stored): 25-40 ns for a number, but a funcref
 * initialised with `ref.func` of a distinct function 0.74-0.88 µs (V8 makes the function's reference object; a
 * third review, session 18: 10,000 of them 7.4-8.8 ms an instance for 25.6M fuel). Globals are not parsed here, so
 * every one pays what the dearest costs; a real program defines a few.
 */
export const FUEL_PER_GLOBAL = 1 << 14;
/** Each function the module defines (its entry in the instance's function tables). */
export const FUEL_PER_FUNCTION = 1 << 9;
/** Each data or element segment, beside its bytes (an empty active data segment is 5 bytes, 80 fuel by its bytes). */
export const FUEL_PER_SEGMENT = 1 << 9;

/** The custom section the instrumenter writes the cost into; a module that declares one itself is refused. */
export const INSTANTIATION_FUEL_SECTION = 'reed.instantiation_fuel';

/** What a module's instance is made of, as its sections declare it. */
export interface InstanceShape {
  /** Initial pages of the memory the module defines, if it defines one. */
  memoryPages: number | undefined;
  /** Initial elements of every table the module defines. */
  tableElements: number;
  /** Bytes of the data section's content. */
  dataBytes: number;
  /** Bytes of the element section's content. */
  elementBytes: number;
  /** Tables the module defines. */
  tables: number;
  /** Exports the module declares (not the instrumenter's own: FUEL_PER_INSTANCE covers those). */
  exports: number;
  /** Bytes of the export section (its names, mostly). */
  exportBytes: number;
  /** Imports of any kind. */
  imports: number;
  /** Globals the module defines (imported ones are priced as imports). */
  globals: number;
  /** Tags the module defines or imports. */
  tags: number;
  /** Functions the module defines (imported ones are priced as imports). */
  functions: number;
  /** Segments of the data and element sections. */
  segments: number;
}

/** The shape of a module that declares nothing: what a test or a caller spreads its own counts over. */
export const EMPTY_INSTANCE_SHAPE: Readonly<InstanceShape> = Object.freeze({
  memoryPages: undefined,
  tableElements: 0,
  dataBytes: 0,
  elementBytes: 0,
  tables: 0,
  exports: 0,
  exportBytes: 0,
  imports: 0,
  globals: 0,
  tags: 0,
  functions: 0,
  segments: 0,
});

export function instantiationFuel(shape: InstanceShape): number {
  return (
    FUEL_PER_INSTANCE +
    (shape.memoryPages === undefined ? 0 : FUEL_PER_MEMORY + shape.memoryPages * FUEL_PER_INITIAL_PAGE) +
    shape.tableElements * FUEL_PER_TABLE_ELEMENT +
    shape.dataBytes * FUEL_PER_DATA_BYTE +
    shape.elementBytes * FUEL_PER_ELEMENT_BYTE +
    shape.tables * FUEL_PER_TABLE +
    shape.exports * FUEL_PER_EXPORT +
    shape.exportBytes * FUEL_PER_EXPORT_BYTE +
    shape.imports * FUEL_PER_LINKED_IMPORT +
    shape.tags * FUEL_PER_TAG +
    shape.globals * FUEL_PER_GLOBAL +
    shape.functions * FUEL_PER_FUNCTION +
    shape.segments * FUEL_PER_SEGMENT
  );
}

/** The section's content: the cost as 8 bytes, little-endian (it fits 2^53: every term is bounded by the module). */
export function encodeInstantiationFuel(fuel: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(fuel), true);
  return out;
}

const byModule = new WeakMap<WebAssembly.Module, number>();
/** WebAssembly.Module.customSections, which every engine Node runs on has and TypeScript's lib does not declare. */
const customSections = (
  WebAssembly.Module as unknown as {
    customSections(module: WebAssembly.Module, name: string): ArrayBuffer[];
  }
).customSections;

/**
 * The cost the instrumenter wrote into `module` (asked once per module however many instances it makes). A
 * module without the section was not instrumented for fuel (`fuel: false`), and costs nothing: it has no fuel.
 */
export function moduleInstantiationFuel(module: WebAssembly.Module): number {
  let fuel = byModule.get(module);
  if (fuel === undefined) {
    const sections = customSections(module, INSTANTIATION_FUEL_SECTION);
    const section = sections[0];
    if (section === undefined) fuel = 0;
    else if (sections.length > 1 || section.byteLength !== 8)
      throw new BinaryError(`the module's ${INSTANTIATION_FUEL_SECTION} section is not the host's`);
    else fuel = Number(new DataView(section).getBigUint64(0, true));
    byModule.set(module, fuel);
  }
  return fuel;
}
