import { leaseUid, type UidLease, type UidRange } from './uid-pool.js';

/** A group held for one data directory while sandboxes of its plugin run in this host process. */
export interface DataGroup {
  readonly gid: number;
  /** Once per holder; the last one's release calls `last` with the gid (to take the directory back), then frees it. */
  release(last: (gid: number) => void): void;
}

interface Held {
  gid: number;
  refs: number;
  lease: UidLease;
  /** Released by its last holder: a start that was waiting for it leases another. */
  gone: boolean;
}

const groups = new Map<string, Promise<Held>>();

/**
 * The group every sandbox of a plugin with a data directory runs as (root host): a process-mode runner's gid, a
 * container's (65534:<gid>). One per directory, held while any of its sandboxes lives in this host process, in
 * either mode, so an upgrade's old and new sandboxes (a drain), a runner restarted while the old one is still being
 * torn down, and a process-mode and a container-mode sandbox of one directory all keep the directory (0770, this
 * group), and no other plugin's sandbox has it. Leased from `runner_uids` like a runner's uid (a leased number is no
 * runner's uid, on any host of the machine), and released with the last sandbox that holds it.
 */
export async function holdDataGroup(path: string, range: UidRange, pluginId: string): Promise<DataGroup> {
  let held: Held;
  do {
    let pending = groups.get(path);
    if (pending === undefined) {
      pending = leaseUid(range, pluginId).then((lease) => ({ gid: lease.uid, refs: 0, lease, gone: false }));
      groups.set(path, pending);
      pending.catch(() => groups.delete(path));
    }
    held = await pending;
  } while (held.gone);
  held.refs++;
  let released = false;
  return {
    gid: held.gid,
    release(last) {
      if (released) return;
      released = true;
      held.refs--;
      if (held.refs > 0) return;
      held.gone = true;
      groups.delete(path);
      try {
        last(held.gid);
      } finally {
        held.lease.release();
      }
    },
  };
}
