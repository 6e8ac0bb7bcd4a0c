import { ERRNO, FILETYPE, STDIN_RIGHTS, STDOUT_RIGHTS, WasiErrno } from './wasi-types.js';

/** The most descriptors one instance may hold open, stdio and the preopen included; past it path_open is EMFILE. */
export const MAX_FDS = 1_024;

/** One guest descriptor. */
export interface FdEntry {
  kind: 'stdin' | 'stdout' | 'stderr' | 'file' | 'dir';
  /** WASI filetype for fdstat. */
  filetype: number;
  base: number;
  inheriting: number;
  /** fdflags (APPEND, DSYNC, NONBLOCK, RSYNC, SYNC). */
  flags: number;
  /** The host descriptor (O_CLOEXEC), or -1: stdio, or a preopen not opened yet (it is opened on first use). */
  host: number;
  /** A preopen's guest name. */
  preopen?: Buffer;
  /** A regular file's or directory's device:inode, for the quota's count of open ones (removed while open). */
  key?: string;
  /**
   * A directory's last fd_readdir: the d_next of its last whole entry and of its last entry. A call from either goes
   * on with that listing, which paid for the directory's size up to `paid` bytes (wasi-fs.ts readdir).
   */
  listedTo?: { whole: bigint; last: bigint; paid: number } | undefined;
}

export function stdioEntries(): FdEntry[] {
  const stream = (kind: FdEntry['kind'], base: number): FdEntry => ({
    kind,
    filetype: FILETYPE.CHARACTER_DEVICE,
    base,
    inheriting: 0,
    flags: 0,
    host: -1,
  });
  return [stream('stdin', STDIN_RIGHTS), stream('stdout', STDOUT_RIGHTS), stream('stderr', STDOUT_RIGHTS)];
}

/**
 * The descriptor table of one instance: numbers as the guest sees them, each new one the lowest free from 3 up.
 * `onClose` releases what an entry holds on the host when it leaves the table (closed, or replaced by renumber).
 */
export class FdTable {
  readonly #entries: (FdEntry | undefined)[];
  #count: number;

  constructor(
    initial: FdEntry[],
    private readonly onClose: (entry: FdEntry) => void,
  ) {
    this.#entries = [...initial];
    this.#count = initial.length;
  }

  get(fd: number): FdEntry | undefined {
    return this.#entries[fd >>> 0];
  }

  /** The entry at `fd`, or EBADF. */
  need(fd: number): FdEntry {
    const entry = this.#entries[fd >>> 0];
    if (entry === undefined) throw new WasiErrno(ERRNO.BADF);
    return entry;
  }

  /** Room for one more, or EMFILE: checked before a host descriptor is opened for it. */
  reserve(): void {
    if (this.#count >= MAX_FDS) throw new WasiErrno(ERRNO.MFILE);
  }

  add(entry: FdEntry): number {
    this.reserve();
    let fd = 3;
    while (this.#entries[fd] !== undefined) fd++;
    this.#entries[fd] = entry;
    this.#count++;
    return fd;
  }

  close(fd: number): void {
    const entry = this.need(fd);
    this.#entries[fd >>> 0] = undefined;
    this.#count--;
    this.onClose(entry);
  }

  /** fd_renumber: `to` must be open; what it held is closed, and `from` takes its number. */
  renumber(from: number, to: number): void {
    const entry = this.need(from);
    const target = this.need(to);
    if (from >>> 0 === to >>> 0) return;
    this.#entries[to >>> 0] = entry;
    this.#entries[from >>> 0] = undefined;
    this.#count--;
    this.onClose(target);
  }

  /** Every entry, for the instance's end. */
  closeAll(): void {
    for (let fd = 0; fd < this.#entries.length; fd++) {
      const entry = this.#entries[fd];
      if (entry === undefined) continue;
      this.#entries[fd] = undefined;
      this.onClose(entry);
    }
    this.#count = 0;
  }
}
