import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { ReedError } from '../../errors.js';

const ELF_MACHINES: Partial<Record<NodeJS.Architecture, number>> = {
  x64: 62,
  arm64: 183,
  ia32: 3,
  arm: 40,
  riscv64: 243,
};
const ET_DYN = 3;

/**
 * The seed's validate_library, and more: the library must be a regular file (not a symlink), neither it nor its
 * directory may be world-writable, and it must be an ELF shared object for this machine. Returns the bytes it
 * checked: the caller loads exactly these (see NativePlugin), never the path again.
 */
export function readCheckedLibrary(
  file: string,
  pluginId: string,
  maxBytes: number,
  /** Bytes already read and verified against a signature: these are checked and returned, the file is not read again. */
  verified?: Uint8Array,
): Uint8Array {
  const at = { pluginId, file };
  const link = lstatSync(file);
  if (link.isSymbolicLink()) {
    throw new ReedError(
      'symlink_escape',
      `native library ${file} is a symlink; give the real file as the entry point`,
      at,
    );
  }
  if ((lstatSync(dirname(file)).mode & 0o002) !== 0) {
    throw new ReedError(
      'world_writable',
      `the directory of native library ${file} is world-writable: anyone could swap the library (chmod o-w)`,
      at,
    );
  }
  if (verified !== undefined) {
    checkFile(lstatSync(file), file, maxBytes, at);
    checkElf(verified, file, pluginId);
    return verified;
  }
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  let bytes: Uint8Array;
  try {
    const st = fstatSync(fd);
    checkFile(st, file, maxBytes, at);
    bytes = new Uint8Array(st.size);
    let read = 0;
    while (read < st.size) {
      const n = readSync(fd, bytes, read, st.size - read, null);
      if (n === 0) break;
      read += n;
    }
    bytes = bytes.subarray(0, read);
  } finally {
    closeSync(fd);
  }
  checkElf(bytes, file, pluginId);
  return bytes;
}

function checkFile(st: Stats, file: string, maxBytes: number, at: { pluginId: string; file: string }): void {
  if (!st.isFile())
    throw new ReedError('native_invalid_library', `native library ${file} is not a regular file`, at);
  if ((st.mode & 0o002) !== 0) {
    throw new ReedError(
      'world_writable',
      `native library ${file} is world-writable: anyone could change it (chmod o-w)`,
      at,
    );
  }
  if (st.size > maxBytes)
    throw new ReedError(
      'file_too_large',
      `native library ${file} is ${st.size} bytes, above the cap of ${maxBytes}`,
      at,
    );
}

/** An ELF shared object (ET_DYN) of this process's class, byte order and machine. */
export function checkElf(bytes: Uint8Array, file: string, pluginId: string): void {
  const fail = (why: string) =>
    new ReedError('native_invalid_library', `native library ${file} ${why}`, { pluginId, file });
  if (bytes.length < 64 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    throw fail('is not an ELF file');
  }
  const is64 = bytes[4] === 2;
  const wanted64 = process.arch === 'x64' || process.arch === 'arm64' || process.arch === 'riscv64';
  if (is64 !== wanted64)
    throw fail(`is ${is64 ? '64' : '32'}-bit; this host is ${wanted64 ? '64' : '32'}-bit`);
  const little = bytes[5] === 1;
  if (little !== (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1))
    throw fail('has the wrong byte order for this machine');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = view.getUint16(16, little);
  const machine = view.getUint16(18, little);
  if (type !== ET_DYN) throw fail(`is not a shared object (ELF type ${type})`);
  const expected = ELF_MACHINES[process.arch];
  if (expected !== undefined && machine !== expected) {
    throw fail(`is built for ELF machine ${machine}, not this ${process.arch} host (${expected})`);
  }
}
