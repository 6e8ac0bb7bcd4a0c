import type { ValType } from './instrument-code.js';
import type { FuncType } from './module-sections.js';

/**
 * The core WebAssembly signature of every `wasi_snapshot_preview1` function, as the preview1 witx defines them
 * (and wasi-libc imports them): pointers, sizes, descriptors and flags are i32; offsets, lengths of files,
 * timestamps and rights are i64; every function answers an errno (i32) but `proc_exit`. A module that imports
 * one with another signature is refused before it is compiled (`wasm_import_signature`), as for the host's own
 * imports: V8 links a JavaScript import whatever its declared type, so a wrong one would otherwise reach the
 * implementation with arguments of the wrong kind. `test/unit/validate-load-agree.test.ts` checks this table
 * against the imports of a program built with wasi-libc that calls every function.
 */
const PARAMS: Readonly<Record<string, string>> = {
  args_get: 'ii',
  args_sizes_get: 'ii',
  environ_get: 'ii',
  environ_sizes_get: 'ii',
  clock_res_get: 'ii',
  clock_time_get: 'iIi',
  fd_advise: 'iIIi',
  fd_allocate: 'iII',
  fd_close: 'i',
  fd_datasync: 'i',
  fd_fdstat_get: 'ii',
  fd_fdstat_set_flags: 'ii',
  fd_fdstat_set_rights: 'iII',
  fd_filestat_get: 'ii',
  fd_filestat_set_size: 'iI',
  fd_filestat_set_times: 'iIIi',
  fd_pread: 'iiiIi',
  fd_prestat_get: 'ii',
  fd_prestat_dir_name: 'iii',
  fd_pwrite: 'iiiIi',
  fd_read: 'iiii',
  fd_readdir: 'iiiIi',
  fd_renumber: 'ii',
  fd_seek: 'iIii',
  fd_sync: 'i',
  fd_tell: 'ii',
  fd_write: 'iiii',
  path_create_directory: 'iii',
  path_filestat_get: 'iiiii',
  path_filestat_set_times: 'iiiiIIi',
  path_link: 'iiiiiii',
  path_open: 'iiiiiIIii',
  path_readlink: 'iiiiii',
  path_remove_directory: 'iii',
  path_rename: 'iiiiii',
  path_symlink: 'iiiii',
  path_unlink_file: 'iii',
  poll_oneoff: 'iiii',
  proc_exit: 'i',
  proc_raise: 'i',
  sched_yield: '',
  random_get: 'ii',
  sock_accept: 'iii',
  sock_recv: 'iiiiii',
  sock_send: 'iiiii',
  sock_shutdown: 'ii',
};

export const WASI_SIGNATURES: Readonly<Record<string, FuncType>> = Object.freeze(
  Object.fromEntries(
    Object.entries(PARAMS).map(([name, params]) => [
      name,
      {
        params: [...params].map((p): ValType => (p === 'I' ? 'i64' : 'i32')),
        results: name === 'proc_exit' ? [] : (['i32'] as ValType[]),
      },
    ]),
  ),
);

/** Own properties only: the name comes from the module. */
export function wasiSignature(name: string): FuncType | undefined {
  return Object.hasOwn(WASI_SIGNATURES, name) ? WASI_SIGNATURES[name] : undefined;
}
