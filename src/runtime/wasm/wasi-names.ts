// What of WASI preview1 the rest of the runtime names without running it: the module's name, its functions, and the
// exit it throws. Apart from wasi.ts so that a runner whose module imports nothing of WASI never loads WASI's
// implementation and its file system (wasm-plugin.ts, loadWasi: ~2.6 MiB of an idle runner's PSS).

/** The import module of WASI preview1. */
export const WASI_MODULE = 'wasi_snapshot_preview1';

/** Thrown by `proc_exit` (and proc_raise of a signal whose default action ends a process); the runtime turns it into a status. */
export class WasiExit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

/** Every preview1 function. */
const PREVIEW1 = [
  'args_get',
  'args_sizes_get',
  'environ_get',
  'environ_sizes_get',
  'clock_res_get',
  'clock_time_get',
  'fd_advise',
  'fd_allocate',
  'fd_close',
  'fd_datasync',
  'fd_fdstat_get',
  'fd_fdstat_set_flags',
  'fd_fdstat_set_rights',
  'fd_filestat_get',
  'fd_filestat_set_size',
  'fd_filestat_set_times',
  'fd_pread',
  'fd_prestat_get',
  'fd_prestat_dir_name',
  'fd_pwrite',
  'fd_read',
  'fd_readdir',
  'fd_renumber',
  'fd_seek',
  'fd_sync',
  'fd_tell',
  'fd_write',
  'path_create_directory',
  'path_filestat_get',
  'path_filestat_set_times',
  'path_link',
  'path_open',
  'path_readlink',
  'path_remove_directory',
  'path_rename',
  'path_symlink',
  'path_unlink_file',
  'poll_oneoff',
  'proc_exit',
  'proc_raise',
  'sched_yield',
  'random_get',
  'sock_accept',
  'sock_recv',
  'sock_send',
  'sock_shutdown',
] as const;

export const WASI_FUNCTIONS: ReadonlySet<string> = new Set(PREVIEW1);
