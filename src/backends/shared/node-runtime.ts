import {
  chmodSync,
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
} from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { ReedError } from '../../errors.js';

const MULTIARCH: Partial<Record<NodeJS.Architecture, string>> = {
  x64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
  arm: 'arm-linux-gnueabihf',
  riscv64: 'riscv64-linux-gnu',
};
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

/**
 * Copies the running node binary to /usr/local/bin/node under `rootfs`, and every shared library it loads to the
 * path the dynamic loader finds it at. Read from the ELF files themselves rather than from `ldd`, which is a shell
 * script that runs the binary and is absent where the orchestrator itself runs FROM scratch (docker-compose.yml).
 */
export function collectNodeRuntime(rootfs: string): void {
  mkdirSync(join(rootfs, 'usr/local/bin'), { recursive: true });
  cpSync(process.execPath, join(rootfs, 'usr/local/bin/node'));
  for (const path of sharedLibraries(process.execPath)) {
    mkdirSync(join(rootfs, dirname(path)), { recursive: true });
    // The file a link names, copied as a file: Node 24's cpSync takes a dereferenced link for a directory.
    copyFileSync(realpathSync(path), join(rootfs, path));
  }
  // The container's /tmp tmpfs takes this directory's mode (Docker copies it up): world-writable and sticky.
  mkdirSync(join(rootfs, 'tmp'), { recursive: true });
  chmodSync(join(rootfs, 'tmp'), 0o1777);
}

/**
 * The program interpreter and every library `binary` needs, transitively, as absolute paths found the way glibc's
 * loader finds them: DT_RPATH (when there is no DT_RUNPATH), DT_RUNPATH, the directories of /etc/ld.so.conf, then
 * the defaults (multiarch included). Throws `runtime_library_missing` naming the library that cannot be found.
 */
export function sharedLibraries(binary: string): string[] {
  const found = new Map<string, string>(); // soname -> path
  const result: string[] = [];
  const searchDirs = systemLibraryDirs();
  const visit = (file: string) => {
    const elf = readDynamic(file);
    if (elf.interpreter !== undefined && !result.includes(elf.interpreter)) result.push(elf.interpreter);
    const origin = dirname(file);
    const expand = (list: string[]) => list.map((d) => d.replaceAll(/\$\{?ORIGIN\}?/g, origin));
    const dirs = [...expand(elf.runpath.length > 0 ? [] : elf.rpath), ...expand(elf.runpath), ...searchDirs];
    for (const soname of elf.needed) {
      if (found.has(soname)) continue;
      const path = isAbsolute(soname) ? soname : dirs.map((d) => join(d, soname)).find((p) => existsSync(p));
      // The interpreter is often also a DT_NEEDED entry by its soname (ld-linux-x86-64.so.2).
      const interp = result.find((p) => p.endsWith(`/${soname}`));
      if (path === undefined && interp === undefined) {
        throw new ReedError(
          'runtime_library_missing',
          `${file} needs ${soname}, which is in none of ${dirs.join(', ')}`,
          { file },
        );
      }
      const chosen = interp ?? (path as string);
      found.set(soname, chosen);
      if (!result.includes(chosen)) {
        result.push(chosen);
        visit(chosen);
      }
    }
  };
  visit(binary);
  return result;
}

interface DynamicInfo {
  interpreter?: string;
  needed: string[];
  rpath: string[];
  runpath: string[];
}

/**
 * PT_INTERP and the DT_NEEDED / DT_RPATH / DT_RUNPATH entries of an ELF file (32 or 64 bit, either byte order).
 * Reads only the headers, the dynamic section and the strings it names, by position: Node's own binary is about
 * 100 MB, and process mode asks for its libraries when the first runner starts.
 */
export function readDynamic(file: string): DynamicInfo {
  const fd = openSync(file, 'r');
  try {
    const elf = elfReader(fd, file);
    const { loads, dynamic, interpreter } = programHeaders(elf);
    const info: DynamicInfo = { needed: [], rpath: [], runpath: [], ...(interpreter ? { interpreter } : {}) };
    if (dynamic === undefined) return info; // statically linked
    const { strtab, entries } = dynamicEntries(elf, dynamic);
    const segment = loads.find((l) => strtab >= l.vaddr && strtab < l.vaddr + l.filesz);
    if (segment === undefined) throw elf.fail('the string table is in no loaded segment');
    const strOffset = strtab - segment.vaddr + segment.offset;
    const paths = (value: number) =>
      elf
        .string(strOffset + value)
        .split(':')
        .filter(Boolean);
    for (const [tag, value] of entries) {
      if (tag === DT_NEEDED) info.needed.push(elf.string(strOffset + value));
      else if (tag === DT_RPATH) info.rpath.push(...paths(value));
      else if (tag === DT_RUNPATH) info.runpath.push(...paths(value));
    }
    return info;
  } finally {
    closeSync(fd);
  }
}

/** An open ELF file read by position, in its own word size and byte order. */
interface ElfReader {
  is64: boolean;
  head: Buffer;
  /** Up to `length` bytes at `offset` (fewer at the end of the file). */
  at(offset: number, length: number): Buffer;
  u16(b: Buffer, o: number): number;
  u32(b: Buffer, o: number): number;
  /** An address-sized word: 8 bytes in a 64-bit file, 4 in a 32-bit one. */
  word(b: Buffer, o: number): number;
  /** The NUL-terminated string at `offset`. */
  string(offset: number): string;
  fail(why: string): ReedError;
}

function elfReader(fd: number, file: string): ElfReader {
  const fail = (why: string) =>
    new ReedError('runtime_library_missing', `${file} is not a usable ELF file: ${why}`, { file });
  const size = fstatSync(fd).size;
  const at = (offset: number, length: number): Buffer => {
    if (offset < 0 || offset >= size) throw fail(`offset ${offset} is past the end`);
    const buffer = Buffer.alloc(Math.min(length, size - offset));
    readSync(fd, buffer, 0, buffer.length, offset);
    return buffer;
  };
  const head = at(0, 64);
  if (head.length < 52 || head.readUInt32BE(0) !== 0x7f454c46) throw fail('no ELF magic');
  const is64 = head[4] === 2;
  const le = head[5] === 1;
  const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  return {
    is64,
    head,
    at,
    u16: (b, o) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o)),
    u32,
    word: (b, o) => (is64 ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(b, o)),
    string: (offset) => cString(at(offset, 4096), 0),
    fail,
  };
}

/** The loaded segments, the dynamic section and the interpreter, from the program headers. */
function programHeaders(elf: ElfReader) {
  const { is64, head, u16, u32, word } = elf;
  const phoff = word(head, is64 ? 32 : 28);
  const phentsize = u16(head, is64 ? 54 : 42);
  const phnum = u16(head, is64 ? 56 : 44);
  const headers = elf.at(phoff, phnum * phentsize);
  if (headers.length < phnum * phentsize) throw elf.fail('program headers run past the end');
  const loads: { vaddr: number; offset: number; filesz: number }[] = [];
  let dynamic: { offset: number; size: number } | undefined;
  let interpreter: string | undefined;
  for (let h = 0; h < phnum * phentsize; h += phentsize) {
    const type = u32(headers, h);
    const offset = word(headers, is64 ? h + 8 : h + 4);
    const vaddr = word(headers, is64 ? h + 16 : h + 8);
    const filesz = word(headers, is64 ? h + 32 : h + 16);
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (type === PT_DYNAMIC) dynamic = { offset, size: filesz };
    else if (type === PT_INTERP) interpreter = elf.string(offset);
  }
  return { loads, dynamic, interpreter };
}

/** The dynamic section's entries up to DT_NULL, and where its string table is (a virtual address). */
function dynamicEntries(elf: ElfReader, dynamic: { offset: number; size: number }) {
  const section = elf.at(dynamic.offset, dynamic.size);
  const entrySize = elf.is64 ? 16 : 8;
  const entries: [number, number][] = [];
  let strtab: number | undefined;
  for (let o = 0; o + entrySize <= section.length; o += entrySize) {
    const tag = elf.word(section, o);
    const value = elf.word(section, o + entrySize / 2);
    if (tag === DT_NULL) break;
    if (tag === DT_STRTAB) strtab = value;
    else entries.push([tag, value]);
  }
  if (strtab === undefined) throw elf.fail('a dynamic section without a string table');
  return { strtab, entries };
}

function cString(bytes: Buffer, offset: number): string {
  const end = bytes.indexOf(0, offset);
  return bytes.toString('latin1', offset, end < 0 ? bytes.length : end);
}

/** The directories of /etc/ld.so.conf (following its `include` lines), then glibc's defaults. */
function systemLibraryDirs(): string[] {
  const dirs: string[] = [];
  const read = (file: string, depth: number) => {
    if (depth > 8 || !existsSync(file)) return;
    for (const raw of readFileSync(file, 'utf8').split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (line === '') continue;
      const include = /^include\s+(.+)$/.exec(line)?.[1];
      if (include === undefined) {
        if (!dirs.includes(line)) dirs.push(line);
        continue;
      }
      for (const pattern of include.split(/\s+/)) {
        const dir = dirname(pattern);
        const suffix = pattern.slice(dir.length + 1).replace(/^\*/, '');
        if (!existsSync(dir)) continue;
        for (const name of readdirSync(dir).sort())
          if (name.endsWith(suffix)) read(join(dir, name), depth + 1);
      }
    }
  };
  read('/etc/ld.so.conf', 0);
  // Debian's loader also searches its multiarch directories by default, with or without ld.so.conf (an image
  // FROM scratch, such as docker-compose.yml's orchestrator, has none).
  const triplet = MULTIARCH[process.arch];
  const defaults = triplet === undefined ? [] : [`/lib/${triplet}`, `/usr/lib/${triplet}`];
  for (const d of [...defaults, '/lib64', '/usr/lib64', '/lib', '/usr/lib'])
    if (!dirs.includes(d)) dirs.push(d);
  return dirs;
}
