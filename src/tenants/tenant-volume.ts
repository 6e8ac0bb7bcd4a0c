// A tenant's `quotas.filesystem_bytes` (docs/TENANTS.md, "Filesystem bytes"): the tenant's `files/` root (every
// plugin's data directory, `<data dir>/files/<plugin id>/`) is a file system of its own, an ext4 image file
// `<data dir>/files.img` loop-mounted on `<data dir>/files` (nodev, nosuid, noexec) by the host. The kernel then
// bounds every mode's writes alike: the WASI layer in modes none and process, a native plugin, a container's bind
// mount. Needs root and loop devices; without them the quota is refused, never left unenforced.
import { execFile } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { ReedError } from '../errors.js';
import { DATA_FILES_DIR } from '../manifest/data-dir.js';
import { loadLibc } from '../runtime/libc.js';
import { MIN_FILESYSTEM_BYTES } from '../tenant-quotas.js';

/** The image's name in the tenant's data directory (next to `files/`, out of every plugin's reach). */
export const VOLUME_IMAGE = 'files.img';
/** ext4's block size for the images: 4 KiB (what the usable bytes are counted in). */
export const VOLUME_BLOCK = 4096;
/**
 * The first size of an image, past the quota: ext4's own metadata without a journal (inode tables, about 1.6 %;
 * bitmaps, group descriptors). The image is then grown until statfs reports at least the quota usable
 * (usableBytes): from below, so that it ends at most about two growth steps past the quota. mkfs.ext4 gives an
 * image of 8 MiB or more a 4 MiB journal (smaller ones none), which the growth then makes up for.
 */
export const VOLUME_OVERHEAD = (quota: number) => 256 * 1024 + Math.ceil(quota / 50);
/**
 * A quota this far below what its file system holds usable is a lowering, refused: 1 MiB and 1 %, past what growing
 * from below leaves over the quota.
 */
export const LOWERING_SLACK = (quota: number) => 1024 * 1024 + Math.ceil(quota / 100);
/** A tenant whose file system has less than this left is full: a call that fails then answers quota_exceeded. */
export const VOLUME_FULL_MARGIN = 64 * 1024;
/** Bytes bought each time the image grows to reach its quota (each reserved on the disk under it: see reserve). */
const GROW_STEP = 256 * 1024;
const MOUNT_OPTIONS = 'loop,nodev,nosuid,noexec';

/** What the host needs to enforce the quota, as found (injectable for the unit test of the check). */
export interface VolumeProbe {
  uid: number;
  /** /dev/loop-control exists (loop devices can be attached). */
  loopControl: boolean;
  /** Tools not found of mkfs.ext4, e2fsck, resize2fs, losetup, mount, umount. */
  missingTools: string[];
}

const TOOLS = ['mkfs.ext4', 'e2fsck', 'resize2fs', 'losetup', 'mount', 'umount'] as const;
const TOOL_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

export function probeVolumeSupport(): VolumeProbe {
  const tool = (name: string) => TOOL_DIRS.map((d) => join(d, name)).find((p) => existsSync(p));
  let loopControl = false;
  try {
    loopControl = lstatSync('/dev/loop-control').isCharacterDevice();
  } catch {
    loopControl = false;
  }
  return {
    uid: process.getuid?.() ?? -1,
    loopControl,
    missingTools: TOOLS.filter((t) => tool(t) === undefined),
  };
}

/** Why `quotas.filesystem_bytes` cannot be enforced on this host, or undefined when it can. */
export function volumeUnsupported(probe: VolumeProbe): string | undefined {
  if (probe.uid !== 0)
    return `the host runs as uid ${probe.uid}, not root: only root can loop-mount the tenant's file system`;
  if (!probe.loopControl) return 'the host has no loop devices (/dev/loop-control is missing)';
  if (probe.missingTools.length > 0)
    return `${probe.missingTools.join(', ')} not found (Debian: apt-get install e2fsprogs mount)`;
  return undefined;
}

/** The refusal of the quota on a host that cannot enforce it: names the tenant and the field. */
export function volumeRefusal(tenant: string, why: string): ReedError {
  return new ReedError(
    'tenant_invalid',
    `tenant "${tenant}": \`quotas.filesystem_bytes\` cannot be enforced on this host (${why}), so it is refused rather than ignored (docs/TENANTS.md, "Filesystem bytes")`,
    { details: { field: 'quotas.filesystem_bytes', tenant } },
  );
}

/** A tool that failed: its exit status kept (undefined when it did not exit: not found, killed, timed out). */
export class ToolFailure extends Error {
  override readonly name = 'ToolFailure';
  readonly exitCode: number | undefined;
  /** What it wrote (stdout and stderr, the first 500 characters). */
  readonly output: string;

  constructor(message: string, exitCode: number | undefined, output: string, cause: unknown) {
    super(message, { cause });
    this.exitCode = exitCode;
    this.output = output;
  }
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: { PATH: TOOL_DIRS.join(':'), LC_ALL: 'C' }, timeout: 120_000, maxBuffer: 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve(String(stdout));
          return;
        }
        // execFile's `code` is the exit status when the tool exited, a string (ENOENT) when it did not start.
        const exitCode = typeof error.code === 'number' ? error.code : undefined;
        const output = [String(stdout).trim(), String(stderr).trim()]
          .filter((t) => t !== '')
          .join('\n')
          .slice(0, 500);
        const status = exitCode === undefined ? '' : `exit ${exitCode}: `;
        reject(
          new ToolFailure(
            `${file} ${args.join(' ')}: ${status}${String(stderr).trim().slice(0, 500) || output || error.message}`,
            exitCode,
            output,
            error,
          ),
        );
      },
    );
  });
}

/** `\040` and the like, as /proc/self/mountinfo escapes spaces, tabs, newlines and backslashes. */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** The mount points of /proc/self/mountinfo (each once, in order). */
export function mountPoints(): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field !== undefined) points.push(unescapeMount(field));
  }
  return points;
}

function mounted(path: string): boolean {
  return mountPoints().includes(path);
}

/** Unmounts `path` (the loop device detaches itself: mount -o loop sets autoclear), retrying while it is busy. */
async function unmount(path: string, logger: Logger): Promise<void> {
  for (let attempt = 0; mounted(path); attempt++) {
    try {
      await run('umount', [path]);
      return;
    } catch (error) {
      if (attempt >= 20) {
        // Still busy after ~5 s (a process outside the host holds a file there): detached now, freed when let go.
        logger.warn({ err: error, path }, 'the tenant file system is busy: unmounted lazily');
        await run('umount', ['-l', path]);
        return;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** How long an image may stay attached to a loop device once unmounted (the kernel frees it asynchronously). */
export const DETACH_DEADLINE_MS = 60_000;

/** The loop devices `image` is attached to (`losetup -j`). */
async function attachedLoops(image: string): Promise<string[]> {
  const out = await run('losetup', ['-n', '-O', 'NAME', '-j', image]);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/**
 * Waits until `image` is attached to no loop device: after an unmount the kernel detaches it asynchronously, and a
 * sandbox still dying (its mount namespace) may hold the file system a moment longer. The image is never checked,
 * grown or mounted again while an older mount of it may still write. Throws past DETACH_DEADLINE_MS.
 */
async function detached(tenant: string, image: string): Promise<void> {
  const deadline = performance.now() + DETACH_DEADLINE_MS;
  for (;;) {
    const loops = await attachedLoops(image);
    if (loops.length === 0) return;
    if (performance.now() > deadline)
      throw new ReedError(
        'tenant_invalid',
        `tenant "${tenant}": its file system image ${image} is still attached to ${loops.join(', ')} (mounted elsewhere, or held by a process outside the host): it is not mounted twice`,
        { details: { field: 'quotas.filesystem_bytes', tenant } },
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Unmounts every tenant file system a host that died left under `dataDir` (`<data_dir>/files` and
 * `<data_dir>/tenants/<id>/<data>/files`), so that each tenant's start mounts its image afresh. Answers the paths.
 */
export async function sweepTenantVolumes(dataDir: string, logger: Logger): Promise<string[]> {
  const prefix = join(dataDir, 'tenants');
  const ours = (p: string) =>
    p === join(dataDir, DATA_FILES_DIR) ||
    (p.startsWith(`${prefix}/`) && /^[^/]+\/[^/]+\/files$/.test(p.slice(prefix.length + 1)));
  const left = mountPoints().filter(ours);
  // Deepest first, each once.
  for (const p of [...new Set(left)].sort((a, b) => b.length - a.length)) {
    logger.warn({ path: p }, 'a tenant file system a stopped host left mounted: unmounted');
    await unmount(p, logger);
  }
  return left;
}

/** statfs figures of a mounted volume, bytes. */
export interface VolumeSpace {
  /** Used by the tenant's files and directories (blocks - free). */
  usedBytes: number;
  /** Left for the tenant to write. */
  availableBytes: number;
  /** used + available: at least the quota. */
  usableBytes: number;
}

function spaceOf(path: string): VolumeSpace {
  const s = statfsSync(path);
  const used = (s.blocks - s.bfree) * s.bsize;
  const available = s.bavail * s.bsize;
  return { usedBytes: used, availableBytes: available, usableBytes: used + available };
}

/** A regular file of root's (or ours) at `path`, never a link: the image; undefined when there is none. */
function checkedImage(tenant: string, path: string): { size: number } | undefined {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st === undefined) return undefined;
  const uid = process.getuid?.() ?? 0;
  if (!st.isFile() || st.isSymbolicLink() || (st.uid !== 0 && st.uid !== uid))
    throw new ReedError(
      'tenant_invalid',
      `tenant "${tenant}": its file system image ${path} is not a regular file of the host's (a link is never followed)`,
      { details: { field: 'quotas.filesystem_bytes', tenant } },
    );
  return { size: st.size };
}

/** The tenant's `files/`: a real directory (made 0711 when absent), never a link. */
function checkedMountPoint(tenant: string, path: string): { empty: boolean } {
  let st = lstatSync(path, { throwIfNoEntry: false });
  if (st === undefined) {
    // mkdir does not follow a link at its last component; the data directory above is the host's.
    mkdirSync(path, { mode: 0o711 });
    st = lstatSync(path);
  }
  if (!st.isDirectory() || st.isSymbolicLink())
    throw new ReedError(
      'tenant_invalid',
      `tenant "${tenant}": ${path} is not a directory (a link or a file is never followed): its file system cannot be mounted there`,
      { details: { field: 'quotas.filesystem_bytes', tenant } },
    );
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    const again = fstatSync(fd);
    if (again.ino !== st.ino || again.dev !== st.dev) throw new Error(`${path} changed while checked`);
  } finally {
    closeSync(fd);
  }
  return { empty: readdirSync(path).length === 0 };
}

/**
 * One tenant's file system, mounted: `open` makes the image (first time), mounts it on `files/`, grows it to the
 * quota; `close` unmounts it. The image stays in the data directory: a host started again mounts the same one
 * (data kept), a tenant removed keeps it aside with the rest of its data.
 */
export class TenantVolume {
  readonly tenant: string;
  readonly image: string;
  readonly mountPoint: string;
  #limitBytes: number;
  readonly #logger: Logger;
  #closed: Promise<void> | undefined;

  private constructor(tenant: string, dataDir: string, limitBytes: number, logger: Logger) {
    this.tenant = tenant;
    this.image = join(dataDir, VOLUME_IMAGE);
    this.mountPoint = join(dataDir, DATA_FILES_DIR);
    this.#limitBytes = limitBytes;
    this.#logger = logger;
  }

  /**
   * The tenant's volume: mounted when the tenant has `quotas.filesystem_bytes` (`quota`), or when it has none but
   * an image from when it had (kept mounted at its size: removing the quota does not hide the data, nor lift the
   * bound); undefined when neither. Refused (tenant_invalid, naming the tenant and the field) on a host that
   * cannot mount, for a quota below what the file system holds (lowering is refused: docs/TENANTS.md), and for a first
   * quota on a `files/` that already holds data.
   */
  static async open(
    tenant: string,
    dataDir: string,
    quota: number | undefined,
    logger: Logger,
    probe: () => VolumeProbe = probeVolumeSupport,
  ): Promise<TenantVolume | undefined> {
    const image = join(dataDir, VOLUME_IMAGE);
    const existing = checkedImage(tenant, image);
    if (quota === undefined && existing === undefined) return undefined;
    const why = volumeUnsupported(probe());
    if (why !== undefined) {
      if (quota !== undefined) throw volumeRefusal(tenant, why);
      throw new ReedError(
        'tenant_invalid',
        `tenant "${tenant}": its data is in the file system image ${image}, which this host cannot mount (${why})`,
        { details: { field: 'quotas.filesystem_bytes', tenant } },
      );
    }
    if (quota !== undefined && quota < MIN_FILESYSTEM_BYTES)
      throw new ReedError(
        'tenant_invalid',
        `tenant "${tenant}": \`quotas.filesystem_bytes\` = ${quota} is below the smallest file system made (${MIN_FILESYSTEM_BYTES} bytes)`,
        { details: { field: 'quotas.filesystem_bytes', tenant } },
      );
    const mountPoint = join(dataDir, DATA_FILES_DIR);
    // A mount a killed host left: let go, then mounted afresh below.
    if (mounted(mountPoint)) await unmount(mountPoint, logger);
    if (existing !== undefined) await detached(tenant, image);
    const point = checkedMountPoint(tenant, mountPoint);
    if (existing === undefined) {
      if (!point.empty)
        throw new ReedError(
          'tenant_invalid',
          `tenant "${tenant}": \`quotas.filesystem_bytes\` is new to it but ${mountPoint} already holds its plugins' data, which its own file system would hide: move the data out (serve stopped) and back in once it is mounted`,
          { details: { field: 'quotas.filesystem_bytes', tenant } },
        );
      await makeImage(tenant, image, imageSizeFor(quota as number));
    }
    // An image a host left unclean (killed, or the machine lost): its journal replayed, or repaired, first.
    if (existing !== undefined) {
      await checkImage(tenant, image, logger);
      // Its blocks reserved before it is mounted (an image of an earlier version is sparse).
      await reserveImage(tenant, image);
    }
    const volume = new TenantVolume(tenant, dataDir, quota ?? 0, logger);
    // Mounted, measured, and while statfs reports less than the quota usable, unmounted and grown (offline: the
    // tenant is not running, and online resizing needs CAP_SYS_RESOURCE, which a host in a container may lack).
    for (let round = 0; ; round++) {
      await run('mount', ['-t', 'ext4', '-o', MOUNT_OPTIONS, image, mountPoint]);
      let short = 0;
      try {
        const usable = volume.space().usableBytes;
        if (quota === undefined) volume.#limitBytes = usable;
        else short = quota - usable;
        if (quota !== undefined && usable > quota + LOWERING_SLACK(quota))
          throw new ReedError(
            'tenant_invalid',
            `tenant "${tenant}": \`quotas.filesystem_bytes\` = ${quota} is below what its file system holds (${usable} bytes usable): lowering the quota is refused (docs/TENANTS.md, "Filesystem bytes")`,
            { details: { field: 'quotas.filesystem_bytes', tenant } },
          );
      } catch (error) {
        await unmount(mountPoint, logger);
        throw error;
      }
      if (short <= 0) break;
      await unmount(mountPoint, logger);
      await detached(tenant, image);
      if (round >= 16)
        throw new Error(`the file system of tenant "${tenant}" does not grow to ${quota} bytes`);
      await growImage(
        tenant,
        image,
        lstatSync(image).size + Math.ceil((short + GROW_STEP) / GROW_STEP) * GROW_STEP,
        logger,
      );
    }
    if (quota === undefined)
      logger.warn(
        { tenant, image },
        'the tenant has no filesystem_bytes but a file system image: kept mounted at its size (the data stays where it is, bounded as it was)',
      );
    return volume;
  }

  /** The quota it enforces (bytes); for an image kept without a quota, its usable bytes. */
  get limitBytes(): number {
    return this.#limitBytes;
  }

  /** statfs of the mounted file system. */
  space(): VolumeSpace {
    return spaceOf(this.mountPoint);
  }

  /** Less than VOLUME_FULL_MARGIN left to write. */
  full(): boolean {
    try {
      return this.space().availableBytes < VOLUME_FULL_MARGIN;
    } catch {
      return false;
    }
  }

  /** Unmounts it, and waits for its loop device to be let go (idempotent). The image stays. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await unmount(this.mountPoint, this.#logger);
      await detached(this.tenant, this.image);
    })();
    return this.#closed;
  }
}

/** The size an image is first made at for `quota`. */
export function imageSizeFor(quota: number): number {
  const raw = quota + VOLUME_OVERHEAD(quota);
  return Math.ceil(raw / GROW_STEP) * GROW_STEP;
}

/**
 * The image (not mounted) grown to `size` bytes: the new bytes reserved on the disk under it first (refused with
 * tenant_volume_no_space, the image left at its size, when they cannot be), then checked (e2fsck -f, which resize2fs
 * asks for) and resized.
 */
async function growImage(tenant: string, image: string, size: number, logger: Logger): Promise<void> {
  const fd = openSync(image, constants.O_RDWR | constants.O_NOFOLLOW);
  try {
    const before = fstatSync(fd).size;
    try {
      await reserve(tenant, image, fd, size);
    } catch (error) {
      // What the reservation took before it failed is let go: the file back at the size its file system has.
      ftruncateSync(fd, before);
      throw error;
    }
  } finally {
    closeSync(fd);
  }
  await checkImage(tenant, image, logger, true);
  await run('resize2fs', [image]);
}

/**
 * e2fsck -p (preen: what is safe to repair; `full`: checked even when marked clean, as resize2fs asks). Its exit
 * status: 0 clean; 1 errors corrected (a warning, the image mounted); 2 (or 3) corrected, "the system should be
 * rebooted", which concerns a file system mounted while checked: the image is not, and is mounted afresh after (a
 * warning); 4 and above (errors left, an operational error, a check that did not finish): tenant_volume_damaged,
 * the image not mounted, the tenant not started.
 */
async function checkImage(tenant: string, image: string, logger: Logger, full = false): Promise<void> {
  try {
    await run('e2fsck', [...(full ? ['-f'] : []), '-p', image]);
  } catch (error) {
    const status = error instanceof ToolFailure ? error.exitCode : undefined;
    const output = error instanceof ToolFailure ? error.output : String(error);
    if (status === 1) {
      logger.warn(
        { tenant, image, exitCode: status, output },
        'e2fsck corrected errors in the tenant file system image (exit 1): mounted as repaired',
      );
      return;
    }
    if (status === 2 || status === 3) {
      logger.warn(
        { tenant, image, exitCode: status, output },
        `e2fsck corrected errors in the tenant file system image and asks for a reboot (exit ${status}): that is for a file system mounted while checked; this image was not, and is mounted afresh now`,
      );
      return;
    }
    throw new ReedError(
      'tenant_volume_damaged',
      `tenant "${tenant}": its file system image ${image} has errors \`e2fsck -p\` did not repair (${status === undefined ? 'it did not finish' : `exit ${status}`}${output === '' ? '' : `: ${output.replace(/\s+/g, ' ').slice(0, 300)}`}): it is not mounted and the tenant is not started; with the host stopped, repair it (e2fsck -f ${image}) or restore it from a backup (docs/TENANTS.md, "Filesystem bytes")`,
      {
        details: {
          field: 'quotas.filesystem_bytes',
          tenant,
          image,
          ...(status === undefined ? {} : { exitCode: status }),
        },
        cause: error,
      },
    );
  }
}

/** posix_fallocate's ENOSPC and EDQUOT: the disk (or the host's quota on it) has not the bytes. */
const ENOSPC = 28;
const EDQUOT = 122;

/** Bytes free on the file system holding `dir`: for root (the host that mounts), its reserved blocks included. */
function freeBytesAt(dir: string): number {
  const s = statfsSync(dir);
  return (process.getuid?.() === 0 ? s.bfree : s.bavail) * s.bsize;
}

function noSpace(tenant: string, image: string, neededBytes: number, freeBytes: number): ReedError {
  return new ReedError(
    'tenant_volume_no_space',
    `tenant "${tenant}": its file system image ${image} needs ${neededBytes} bytes more on the disk under it, which has ${freeBytes} bytes free: \`quotas.filesystem_bytes\` is refused rather than promised on disk that is not there (free space under the data_dir, or ask a smaller quota; docs/TENANTS.md, "Filesystem bytes")`,
    { details: { field: 'quotas.filesystem_bytes', tenant, image, neededBytes, freeBytes } },
  );
}

/** posix_fallocate(fd, offset, len) off the event loop (koffi's worker thread): answers its error number, 0 if none. */
function fallocate(fd: number, offset: number, len: number): Promise<number> {
  return new Promise((resolve, reject) => {
    loadLibc().posixFallocate.async(fd, offset, len, (error: unknown, rc: unknown) => {
      if (error !== null && error !== undefined) reject(error);
      else resolve(Number(rc));
    });
  });
}

/**
 * Reserves on the disk under the image (`fd`, opened for writing) every block of its first `size` bytes, growing it
 * to `size` when shorter: posix_fallocate, which allocates the holes (they still read as zeros) and leaves what is
 * written as it is. The kernel's loop device then never needs a block of the host's disk to write the tenant's file
 * system: a disk that another tenant (or anything else) filled cannot fail it half-way, which would abort its
 * journal and lose data. Throws tenant_volume_no_space, naming the bytes needed and free, when the disk has not
 * them: checked first with statfs (so a quota that cannot fit does not take the disk's last blocks for a moment),
 * then by the allocation itself.
 */
async function reserve(tenant: string, image: string, fd: number, size: number): Promise<void> {
  const dir = dirname(image);
  const needed = Math.max(0, size - fstatSync(fd).blocks * 512);
  const free = freeBytesAt(dir);
  if (needed > free) throw noSpace(tenant, image, needed, free);
  const rc = await fallocate(fd, 0, size);
  if (rc === ENOSPC || rc === EDQUOT)
    throw noSpace(tenant, image, Math.max(0, size - fstatSync(fd).blocks * 512), freeBytesAt(dir));
  if (rc !== 0) throw new Error(`posix_fallocate of ${image} to ${size} bytes failed: errno ${rc}`);
}

/**
 * The blocks of an image that exists reserved (see reserve): an image made sparse by an earlier version, or one a
 * copy made sparse, is filled in at its start, before it is mounted; one already whole costs a walk of its extents.
 */
async function reserveImage(tenant: string, image: string): Promise<void> {
  const fd = openSync(image, constants.O_RDWR | constants.O_NOFOLLOW);
  try {
    await reserve(tenant, image, fd, fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

/**
 * A new image of `size` bytes (O_EXCL, never through a link), its blocks reserved on the disk under it, formatted
 * ext4 (nodiscard: mkfs.ext4 would otherwise punch the reserved blocks out of a file again). Nothing is left of it
 * when either step fails.
 */
async function makeImage(tenant: string, path: string, size: number): Promise<void> {
  // Refused before the file is made when the disk has not the bytes (reserve checks again, and is the authority).
  const free = freeBytesAt(dirname(path));
  if (size > free) throw noSpace(tenant, path, size, free);
  const fd = openSync(
    path,
    constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    try {
      await reserve(tenant, path, fd, size);
    } finally {
      closeSync(fd);
    }
    await run('mkfs.ext4', [
      '-q',
      '-F',
      '-b',
      String(VOLUME_BLOCK),
      '-m',
      '0',
      '-T',
      'default',
      '-E',
      'root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard',
      path,
    ]);
  } catch (error) {
    rmSync(path, { force: true });
    throw error;
  }
}
