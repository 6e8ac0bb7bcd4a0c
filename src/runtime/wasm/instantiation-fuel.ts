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
 */
/** Every instantiation. */
export const FUEL_PER_INSTANCE = 1 << 16;
/** A module that defines a memory: its reservation, guard regions and the buffer's object. */
export const FUEL_PER_MEMORY = 1 << 19;
/** Each page (64 KiB) of the memory's initial size. */
export const FUEL_PER_INITIAL_PAGE = 1 << 15;
/** Each byte of the data section (active segments are copied in; passive ones are few, and charged the same). */
export const FUEL_PER_DATA_BYTE = 1 << 4;
/** Each element of a table's initial size. */
export const FUEL_PER_TABLE_ELEMENT = 1 << 9;
/** Each byte of the element section (its entries are written into the tables at instantiation). */
export const FUEL_PER_ELEMENT_BYTE = 1 << 9;

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
}

export function instantiationFuel(shape: InstanceShape): number {
  return (
    FUEL_PER_INSTANCE +
    (shape.memoryPages === undefined ? 0 : FUEL_PER_MEMORY + shape.memoryPages * FUEL_PER_INITIAL_PAGE) +
    shape.tableElements * FUEL_PER_TABLE_ELEMENT +
    shape.dataBytes * FUEL_PER_DATA_BYTE +
    shape.elementBytes * FUEL_PER_ELEMENT_BYTE
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
