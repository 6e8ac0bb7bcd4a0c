import { constants, mkdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { finished, type Readable, Transform, type TransformCallback } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { ReedError } from '../errors.js';

/** What one archive may hold: the same caps as a plugin directory on disk (reed.toml's `[files]`). */
export interface IntakeLimits {
  maxFileBytes: number;
  maxPluginBytes: number;
  maxFiles: number;
  maxDepth: number;
}

/** Why an archive was refused (`details.reason` of `install_archive_invalid`). */
export type RefusalReason =
  | 'path_traversal'
  | 'absolute_path'
  | 'name_invalid'
  | 'link'
  | 'special_file'
  | 'file_too_large'
  | 'too_large'
  | 'too_many_files'
  | 'too_deep'
  | 'duplicate'
  | 'header_too_large'
  | 'corrupt';

/**
 * The most a header that describes the next entry may hold: a PAX extended header (`x`, `g`) or a GNU long name or
 * link (`L`, `K`). tar-stream keeps such a body whole in memory before it parses it; the longest name kept is
 * 4,096 bytes, so 64 KiB leaves room for any honest PAX record set.
 */
export const MAX_META_HEADER_BYTES = 64 * 1024;
/** Typeflags whose body tar-stream buffers whole: PAX extended and global headers, GNU long name and long link. */
const META_TYPES = new Set([0x78, 0x67, 0x4c, 0x4b]);

/** A tar header's size field: octal ASCII, or GNU's base-256 (high bit of its first byte set). */
function headerSize(header: Buffer): number {
  if ((header[124] ?? 0) & 0x80) {
    let size = (header[124] ?? 0) & 0x7f;
    for (let i = 125; i < 136; i++) size = size * 256 + (header[i] ?? 0);
    return size;
  }
  const field = header
    .toString('latin1', 124, 136)
    .replace(/[\0 ]+$/, '')
    .trim();
  const size = Number.parseInt(field.length === 0 ? '0' : field, 8);
  return Number.isFinite(size) ? size : 0; // tar-stream refuses what is not a number
}

/**
 * Passes a tar stream through unchanged, reading each 512-byte header on the way: a header whose body tar-stream
 * would buffer whole (META_TYPES) and that is longer than MAX_META_HEADER_BYTES is refused before its body is read.
 * Every other body is passed over by its size, rounded to the 512-byte block.
 */
class MetaHeaderGuard extends Transform {
  #header = Buffer.alloc(0);
  #skip = 0;
  /** A PAX header's body being read (at most MAX_META_HEADER_BYTES), and how much of it is still to come. */
  #pax: Buffer[] | undefined;
  #paxLeft = 0;

  constructor(
    private readonly refuse: (size: number) => Error,
    private readonly refusePaxSize: () => Error,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - at);
        if (this.#pax !== undefined && this.#paxLeft > 0) {
          const take = Math.min(n, this.#paxLeft);
          this.#pax.push(chunk.subarray(at, at + take));
          this.#paxLeft -= take;
          if (this.#paxLeft === 0 && paxSetsSize(Buffer.concat(this.#pax))) {
            done(this.refusePaxSize());
            return;
          }
        }
        this.#skip -= n;
        at += n;
        continue;
      }
      const n = Math.min(512 - this.#header.length, chunk.length - at);
      this.#header = Buffer.concat([this.#header, chunk.subarray(at, at + n)]);
      at += n;
      if (this.#header.length < 512) break;
      const size = headerSize(this.#header);
      const type = this.#header[156] ?? 0;
      if (META_TYPES.has(type) && size > MAX_META_HEADER_BYTES) {
        done(this.refuse(size));
        return;
      }
      // A PAX header's records are read on the way (see paxSetsSize).
      const pax = type === 0x78 || type === 0x67;
      this.#pax = pax && size > 0 ? [] : undefined;
      this.#paxLeft = pax ? size : 0;
      this.#skip = Math.ceil(size / 512) * 512;
      this.#header = Buffer.alloc(0);
    }
    done(null, chunk);
  }
}

/**
 * Whether PAX records set an entry's `size`: the parser then reads that many bytes for the entry while this guard,
 * which goes by the ustar header's size, would look for the next header elsewhere, and let a long-name header past
 * its cap (the sixth review: a PAX `size=0` made a 3 MB GNU long name reach the parser). Only sizes over 8 GiB, which
 * ustar's field cannot hold, need one, and no plugin's file is that large: refused.
 */
function paxSetsSize(records: Buffer): boolean {
  return /(?:^|\n)\d+ size=/.test(records.toString('latin1'));
}

/** Names that cannot be a plugin's file: control characters, backslashes, bytes that were not UTF-8 (U+FFFD). */
function badName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x5c || c === 0xfffd) return true;
  }
  return false;
}

/**
 * Extracts a tar stream of a plugin directory into `into`, a fresh empty directory only this process writes to,
 * refusing the whole archive at the first entry that is not a plain file or directory inside it: a path with `..`
 * or an absolute one, a symlink or hard link, a device, FIFO or other special entry, a name that is not clean
 * UTF-8, a file or a total over the caps, too many entries, too deep, the same path twice. Nothing is ever
 * followed: only directories and files this function made exist under `into`, every file is created with
 * O_EXCL|O_NOFOLLOW, and every file is fsynced. On refusal the caller removes `into` (the archive's bytes seen so
 * far are there) and the rest of the stream is left unread (the caller discards it). A PAX or GNU long-name header
 * over MAX_META_HEADER_BYTES is refused at its header (MetaHeaderGuard): the parser would hold its body whole.
 */
export async function extractPluginTar(
  source: Readable,
  into: string,
  limits: IntakeLimits,
  pluginId: string,
): Promise<{ files: number; bytes: number }> {
  const made = new Map<string, 'dir' | 'file'>([['', 'dir']]);
  let entries = 0;
  let total = 0;
  const refuse = (reason: RefusalReason, entry: string, message: string) =>
    new ReedError(
      'install_archive_invalid',
      `the archive for plugin "${pluginId}" ${message}; nothing was installed`,
      {
        pluginId,
        file: entry,
        details: { reason, entry },
      },
    );

  /** The entry's path as segments under `into`, checked; undefined for the archive's root directory itself. */
  const pathOf = (header: Header): string[] | undefined => {
    const raw = header.name;
    if (raw.length === 0 || raw.length > 4096 || badName(raw))
      throw refuse(
        'name_invalid',
        raw.slice(0, 256),
        'has an entry whose name is empty, too long, not UTF-8 or holds control characters',
      );
    if (raw.startsWith('/')) throw refuse('absolute_path', raw, `has an entry with an absolute path: ${raw}`);
    const segments = raw.split('/').filter((s) => s !== '' && s !== '.');
    if (segments.includes('..'))
      throw refuse('path_traversal', raw, `has an entry that leaves its directory: ${raw}`);
    if (segments.some((s) => Buffer.byteLength(s) > 255))
      throw refuse('name_invalid', raw, `has an entry with a name longer than 255 bytes: ${raw}`);
    if (segments.length === 0) return undefined;
    if (segments.length > limits.maxDepth)
      throw refuse('too_deep', raw, `nests deeper than files.max_depth = ${limits.maxDepth}: ${raw}`);
    return segments;
  };

  /** Makes the parent directories of `segments` (as directories this function made, never over a file). */
  const parents = (segments: string[], entry: string) => {
    for (let i = 1; i < segments.length; i++) {
      const rel = segments.slice(0, i).join('/');
      const kind = made.get(rel);
      if (kind === 'dir') continue;
      if (kind === 'file')
        throw refuse('duplicate', entry, `has an entry under a path that is a file: ${entry}`);
      count(entry);
      mkdirSync(join(into, rel), { mode: 0o755 });
      made.set(rel, 'dir');
    }
  };

  const count = (entry: string) => {
    if (++entries > limits.maxFiles)
      throw refuse('too_many_files', entry, `holds more than files.max_files = ${limits.maxFiles} entries`);
  };

  const take = async (header: Header, stream: Readable): Promise<void> => {
    const segments = pathOf(header);
    const entry = header.name;
    if (header.type === 'symlink' || header.type === 'link')
      throw refuse('link', entry, `has a ${header.type === 'link' ? 'hard link' : 'symlink'}: ${entry}`);
    if (header.type !== 'file' && header.type !== 'directory')
      throw refuse(
        'special_file',
        entry,
        `has an entry that is not a file or directory (${header.type}): ${entry}`,
      );
    if (segments === undefined) {
      if (header.type === 'directory') return;
      throw refuse('name_invalid', entry, `has a file where its root directory is: ${entry}`);
    }
    const rel = segments.join('/');
    if (made.has(rel)) throw refuse('duplicate', entry, `has the same path twice: ${entry}`);
    parents(segments, entry);
    count(entry);
    if (header.type === 'directory') {
      mkdirSync(join(into, rel), { mode: 0o755 });
      made.set(rel, 'dir');
      return;
    }
    if (header.size > limits.maxFileBytes)
      throw refuse(
        'file_too_large',
        entry,
        `has a file over files.max_file_bytes = ${limits.maxFileBytes}: ${entry}`,
      );
    if (total + header.size > limits.maxPluginBytes)
      throw refuse(
        'too_large',
        entry,
        `holds more than files.max_plugin_bytes = ${limits.maxPluginBytes} bytes`,
      );
    // Only the owner's execute bit is kept: a plugin's files are never writable by others (SecurityRule).
    const mode = (header.mode & 0o100) !== 0 ? 0o755 : 0o644;
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    // Opened, written and fsynced on libuv's threads: done on the host's thread (openSync, writeSync, fsyncSync a
    // file), an upload of ~10,000 small files held it for 0.6-4.7 s at a time (the sixth review: another tenant's
    // requests waited), most of it the fsyncs.
    const file = await open(join(into, rel), flags, mode);
    made.set(rel, 'file');
    try {
      let written = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        written += chunk.length;
        if (written > header.size)
          throw refuse('corrupt', entry, `has an entry longer than its header says: ${entry}`);
        await file.write(chunk);
      }
      total += written;
      await file.sync();
    } finally {
      await file.close();
    }
  };

  return new Promise((resolve, reject) => {
    const ex = extract();
    const guard = new MetaHeaderGuard(
      (size) =>
        refuse(
          'header_too_large',
          '',
          `has an extended (PAX or long-name) header of ${size} bytes, over ${MAX_META_HEADER_BYTES}`,
        ),
      () =>
        refuse('corrupt', '', 'has a PAX header that sets an entry’s size (only files over 8 GiB need one)'),
    );
    let settled = false;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      source.unpipe(guard);
      guard.unpipe(ex as unknown as NodeJS.WritableStream);
      guard.destroy();
      ex.destroy();
      reject(
        error instanceof ReedError
          ? error
          : refuse(
              'corrupt',
              '',
              `is not a tar archive that can be read to its end (${(error as Error).message})`,
            ),
      );
    };
    ex.on('entry', (header, stream, next) => {
      // An entry cut short errors its stream as it does the extractor (whose error fail() answers), possibly while
      // take still waits for its file to open, before anything reads the entry: listened to from the start.
      stream.on('error', () => {});
      take(header, stream as unknown as Readable).then(
        () => {
          stream.resume();
          next();
        },
        (error: unknown) => fail(error),
      );
    });
    ex.on('error', fail);
    ex.on('finish', () => {
      if (settled) return;
      settled = true;
      resolve({ files: entries, bytes: total });
    });
    source.on('error', fail);
    source.on('aborted', () => fail(new Error('the request was aborted')));
    // A source destroyed without an error (an embedder's stream) emits neither: without this the intake never
    // settled, and held its install slot for good (the seventh review). finished() reports a premature close.
    finished(source, (error) => {
      if (error !== undefined && error !== null) fail(error);
    });
    guard.on('error', fail);
    source.pipe(guard).pipe(ex as unknown as NodeJS.WritableStream);
  });
}
