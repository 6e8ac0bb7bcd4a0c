// The host's one ledger of each writable data directory's quotas (limits.disk_mb, limits.max_files) while runners
// write it (process and container modes): every runner of the plugin (its replicas, an upgrade's second runner)
// grows from a lease the ledger granted it, so together they stay within the quotas, not each within them (issue
// 10: N replicas filled N times disk_mb). The runner's side, and why leases: src/runtime/wasm/quota-leases.ts.
//
// The ledger's figure is an upper bound of what the directory holds: the count the first runner made, plus every
// lease granted, less what runners gave back. Each runner sends its count as soon as it has made it (before any
// change of its own); the figure then becomes the lower of itself and that count plus every lease the other live
// runners hold (what they were granted less what they gave back: what they wrote since the count is in there, what
// they wrote before it is in the count). So a lease a lost runner (killed, crashed) never gave back stays counted
// only until a runner counts again (its restart does, at its first use of the directory); and the ledger goes
// with the last runner (the next one counts again). A count cannot lower the figure below what the others may
// have written since it was made (the seventh review found a count sent late, at a runner's first request, reset
// the figure under another replica's writes).
import type { FilesystemGrant } from '../../manifest/data-dir.js';
import type { Amount, LeaseAnswer, LeaseRequest } from '../../runtime/wasm/quota-leases.js';

/**
 * What a lease adds beyond a request at most, and what a runner keeps of what it frees: a 16th of the quota, within
 * these bounds. A runner's give-back is not charged fuel (quota-leases.ts): each follows an ask (which is) or `keep`
 * freed of what the directory held when it was counted, at most 16 of those while the quota is above the minimum.
 */
const KEEP_BYTES = { min: 4096, max: 16 * 1024 * 1024 };
const KEEP_ENTRIES = { min: 1, max: 1024 };

interface Ledger {
  /** Bytes and entries counted as taken; undefined until a runner's count is known. */
  used: Amount | undefined;
  holds: Set<DiskLedgerHold>;
}

/** Every ledger of this host, by the directory's host path (one per plugin id and tenant: data-dir.ts). */
const LEDGERS = new Map<string, Ledger>();

/**
 * A runner's part in its directory's ledger: made when the runner is sent its plugin, let go when its link closes
 * (what it held and did not give back stays counted: see above).
 */
export class DiskLedgerHold {
  readonly #ledger: Ledger;
  #released = false;
  /** What this runner was granted less what it gave back: what it may have written since another's count. */
  readonly #net: Amount = [0, 0];

  private constructor(
    readonly path: string,
    private readonly limits: Amount,
  ) {
    let ledger = LEDGERS.get(path);
    if (ledger === undefined) {
      ledger = { used: undefined, holds: new Set() };
      LEDGERS.set(path, ledger);
    }
    ledger.holds.add(this);
    this.#ledger = ledger;
  }

  /** A hold for a runner given `grant` (the host's own: its path and quotas); none when it cannot write. */
  static forGrant(grant: FilesystemGrant | undefined): DiskLedgerHold | undefined {
    if (grant === undefined || grant.readOnly || (grant.diskBytes === 0 && grant.maxFiles === 0))
      return undefined;
    return new DiskLedgerHold(grant.hostPath, [grant.diskBytes, grant.maxFiles]);
  }

  /** Answers a runner's request (already checked: non-negative safe integers). */
  lease(request: LeaseRequest): LeaseAnswer {
    if (this.#released) return { refused: 'disk' };
    const ledger = this.#ledger;
    if (request.walked !== undefined) {
      // The count, and what every other live runner may have written since it: both bounds hold, the lower is kept.
      const bound: Amount = [...request.walked];
      for (const other of ledger.holds) {
        if (other === this) continue;
        bound[0] += other.#net[0];
        bound[1] += other.#net[1];
      }
      const was = ledger.used;
      ledger.used = was === undefined ? bound : [Math.min(was[0], bound[0]), Math.min(was[1], bound[1])];
    }
    const used: Amount = ledger.used ?? [0, 0];
    for (const i of [0, 1] as const) {
      used[i] = Math.max(0, used[i] - request.back[i]);
      this.#net[i] = Math.max(0, this.#net[i] - request.back[i]);
    }
    ledger.used = used;
    const keep = this.#keep();
    const granted: Amount = [0, 0];
    for (const i of [0, 1] as const) {
      const limit = this.limits[i];
      const need = request.need[i];
      if (need === 0) continue;
      if (limit === 0) {
        // No quota of this kind: the runner never asks for it; grant what it asked.
        granted[i] = need;
        continue;
      }
      const left = limit - used[i];
      if (need > left) return { refused: i === 0 ? 'disk' : 'files' };
      // Beyond the need, a lease (halved as the quota nears, so the last bytes are not all held by one runner).
      granted[i] = need + Math.min(keep[i], Math.floor((left - need) / 2));
    }
    for (const i of [0, 1] as const) {
      if (this.limits[i] === 0) continue;
      used[i] += granted[i];
      this.#net[i] += granted[i];
    }
    return { granted, keep };
  }

  /** What a runner keeps of what it frees before giving it back, and the most a lease adds to a need. */
  #keep(): Amount {
    const [bytes, entries] = this.limits;
    return [
      Math.min(KEEP_BYTES.max, Math.max(KEEP_BYTES.min, Math.floor(bytes / 16))),
      Math.min(KEEP_ENTRIES.max, Math.max(KEEP_ENTRIES.min, Math.floor(entries / 16))),
    ];
  }

  /** The runner is gone: its hold goes, and the ledger with the last. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#ledger.holds.delete(this);
    if (this.#ledger.holds.size === 0 && LEDGERS.get(this.path) === this.#ledger) LEDGERS.delete(this.path);
  }
}

/** Test seam: the ledger's figure for a directory, if one is held. */
export function ledgerFigure(path: string): Amount | undefined {
  const used = LEDGERS.get(path)?.used;
  return used === undefined ? undefined : [...used];
}
