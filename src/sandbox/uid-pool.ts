import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { ReedError } from '../errors.js';

/** A range of uids (inclusive) process-mode runners run as, one uid per running sandbox. */
export interface UidRange {
  start: number;
  end: number;
}

/**
 * The default range: far above system users (< 1000), regular users, 65534 (nobody, the container user) and the
 * subordinate ranges useradd and Docker's userns-remap hand out (100000-165535 and the next 65536 blocks).
 */
export const DEFAULT_RUNNER_UIDS: Readonly<UidRange> = Object.freeze({ start: 600_000, end: 699_999 });

/** Uids no runner may ever have: root, and nobody (which containers and other software share). */
export const RESERVED_UIDS: readonly number[] = [0, 65_534];

/** `"START-END"` as a range, or undefined when it is not one; `problem` says what is wrong with a range. */
export function parseUidRange(text: string): UidRange | undefined {
  const m = /^(\d{1,10})-(\d{1,10})$/.exec(text.trim());
  return m === null ? undefined : { start: Number(m[1]), end: Number(m[2]) };
}

export function uidRangeProblem(
  range: UidRange,
  avoid: readonly number[] = RESERVED_UIDS,
): string | undefined {
  if (range.start > range.end) return `starts after it ends (${range.start} > ${range.end})`;
  if (range.end > 2 ** 32 - 2) return `ends above the largest uid (${2 ** 32 - 2})`;
  const inside = avoid.find((uid) => uid >= range.start && uid <= range.end);
  if (inside !== undefined)
    return `contains uid ${inside}, which runners must never share (root, or nobody: the user containers run as)`;
  return undefined;
}

/** One uid, held for as long as its sandbox runs. */
export interface UidLease {
  readonly uid: number;
  /** Gives the uid back. Call it only once nothing runs as it any more. Idempotent. */
  release(): void;
}

/**
 * Leases a uid of `range` that no other sandbox holds, in this host or in any other host process on the machine.
 * Each lease is an abstract Unix socket "reed-runner-uid-<uid>" this process listens on: binding is atomic
 * (EADDRINUSE when another holder has it, so two hosts can never both win), and the kernel frees it when the
 * holder dies however it dies, so a crashed host leaks nothing. Abstract sockets live in the network namespace:
 * hosts that share a machine must share one (or use disjoint ranges). A uid some live process already runs as
 * (a runner a dead host left, anything else) is skipped too. The search starts at a random place so that hosts
 * starting together rarely contend. Throws `sandbox_unavailable` when every uid of the range is taken.
 */
export async function leaseUid(range: UidRange, pluginId: string): Promise<UidLease> {
  const size = range.end - range.start + 1;
  const first = Math.floor(Math.random() * size);
  // Scanned while a uid is held (a process that starts as it later is one this host or another started: held).
  let busy: Set<number> | undefined;
  for (let i = 0; i < size; i++) {
    const uid = range.start + ((first + i) % size);
    if (RESERVED_UIDS.includes(uid) || busy?.has(uid)) continue;
    const server = await hold(`\0reed-runner-uid-${uid}`);
    if (server === undefined) continue;
    busy ??= uidsInUse();
    if (busy.has(uid)) {
      server.close();
      continue;
    }
    let held = true;
    return {
      uid,
      release: () => {
        if (held) server.close();
        held = false;
      },
    };
  }
  throw new ReedError(
    'sandbox_unavailable',
    `no free runner uid for plugin "${pluginId}": all ${size} uids of [sandbox] runner_uids (${range.start}-${range.end}) are taken; widen the range in reed.toml`,
    { pluginId, field: 'sandbox.runner_uids' },
  );
}

/** Listens on an abstract socket name, or undefined when someone else holds it. */
function hold(name: string): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) =>
      error.code === 'EADDRINUSE' ? resolve(undefined) : reject(error),
    );
    server.listen({ path: name, exclusive: true }, () => {
      server.unref(); // a held uid must not keep the host alive
      resolve(server);
    });
  });
}

/** Real, effective, saved and filesystem uids of every live process. */
function uidsInUse(): Set<number> {
  const out = new Set<number>();
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) > 57) continue; // not a pid
    try {
      const line = /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'))?.[1];
      for (const uid of line?.split(/\s+/) ?? []) out.add(Number(uid));
    } catch {}
  }
  return out;
}
