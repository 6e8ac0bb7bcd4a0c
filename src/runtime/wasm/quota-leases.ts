// A data directory's quotas when more than one process writes it (process and container modes: a plugin's
// `[sandbox] replicas`, an upgrade's second runner while the first drains): the host keeps the directory's one
// ledger (src/backends/shared/disk-ledger.ts) and each runner takes what it grows from a lease the host granted it,
// asking for more when its lease runs out and giving back what it frees beyond what it keeps. Each process's own
// count (wasi-quota.ts) could only see the others' writes when it counted again: N replicas could fill N times
// limits.disk_mb and limits.max_files (issue 10). In mode none the host is the one process: no leases.
import { FUEL_PER_ROUND_TRIP } from './abi.js';
import type { QuotaIo } from './wasi-quota.js';
import { ERRNO, WasiErrno } from './wasi-types.js';

/** Bytes and entries (files, directories, links), in that order. */
export type Amount = [bytes: number, entries: number];

/** What a runner asks the host (the `fs_lease` HostCall, docs/PROTOCOL.md). */
export interface LeaseRequest {
  /** How much more than the lease holds the change needs (0 when only giving back). */
  need: Amount;
  /** What this process freed and gives back. */
  back: Amount;
  /** This process's count of the directory, sent as soon as it is made (LeasePool's constructor). */
  walked?: Amount;
}

/** The host's answer: a grant of at least `need` (and how much to keep when freeing), or the quota refused. */
export type LeaseAnswer = { granted: Amount; keep: Amount } | { refused: 'disk' | 'files' };

/** How a runner asks (synchronously: the plugin's WASI call waits for the answer). */
export interface QuotaLeases {
  lease(request: LeaseRequest): LeaseAnswer;
}

/**
 * One process's lease on its directory's quotas: what it may still grow before asking the host. It goes below zero
 * only by what a change that adds a name made its directories take, which the headroom taken before it covers.
 */
export class LeasePool {
  #bytes = 0;
  #entries = 0;
  /** What the host said to keep of what this process frees (nothing is given back before it says). */
  #keep: Amount | undefined;
  /**
   * Made with the count this process has just made of the directory, which goes to the host at once: a count sent
   * later (at the first change) could be stale by then, while the host would take it as the figure (disk-ledger.ts).
   * Not charged on its own: the count it comes with is, far more (FUEL_WALK_DIR at least), once per count.
   */
  constructor(
    private readonly leases: QuotaLeases,
    walked: Amount,
  ) {
    const answer = leases.lease({ need: [0, 0], back: [0, 0], walked });
    if (!('refused' in answer)) this.#keep = answer.keep;
  }

  /** Takes `bytes` and `entries` from the lease, asking the host for what it lacks; EDQUOT when refused. */
  take(bytes: number, entries: number, io: QuotaIo, limits: Amount): void {
    if (!this.#has(bytes, entries)) this.#ask([bytes, entries], io, limits);
    this.#bytes -= bytes;
    this.#entries -= entries;
  }

  /** Makes sure `bytes` are in the lease without taking them (the headroom of a change that adds a name). */
  reserve(bytes: number, io: QuotaIo, limits: Amount): void {
    if (!this.#has(bytes, 0)) this.#ask([bytes, 0], io, limits);
  }

  /**
   * What a change already made took (or, negative, gave): a directory's own size measured after a new name. Not
   * refused here: the headroom reserved before it is what it takes from.
   */
  took(bytes: number): void {
    if (bytes < 0) this.give(-bytes, 0);
    else this.#bytes -= bytes;
  }

  /**
   * What this process freed: kept for its own next growth, up to twice what the host said to keep, then given back
   * down to `keep`. Not charged (the change that freed it is done): each give-back follows an ask, which is, or
   * `keep` freed of what the directory held when it was counted, at most 16 of those while `keep` is a 16th of the
   * quota (disk-ledger.ts).
   */
  give(bytes: number, entries: number): void {
    this.#bytes += bytes;
    this.#entries += entries;
    const keep = this.#keep;
    if (keep === undefined) return;
    const over: Amount = [
      this.#bytes > 2 * keep[0] ? this.#bytes - keep[0] : 0,
      this.#entries > 2 * keep[1] ? this.#entries - keep[1] : 0,
    ];
    if (over[0] > 0 || over[1] > 0) this.#giveBack(over);
  }

  /** The process is done with the directory (its plugin deactivated): everything left in the lease goes back. */
  returnAll(): void {
    if (this.#keep === undefined) return;
    const back: Amount = [Math.max(0, this.#bytes), Math.max(0, this.#entries)];
    if (back[0] > 0 || back[1] > 0) this.#giveBack(back);
  }

  #has(bytes: number, entries: number): boolean {
    return this.#bytes >= bytes && this.#entries >= entries;
  }

  #ask(wanted: Amount, io: QuotaIo, limits: Amount): void {
    io.charge(FUEL_PER_ROUND_TRIP);
    const need: Amount = [Math.max(0, wanted[0] - this.#bytes), Math.max(0, wanted[1] - this.#entries)];
    const answer = this.leases.lease({ need, back: [0, 0] });
    if ('refused' in answer) {
      io.exceeded(answer.refused, answer.refused === 'disk' ? limits[0] : limits[1]);
      throw new WasiErrno(ERRNO.DQUOT);
    }
    this.#bytes += answer.granted[0];
    this.#entries += answer.granted[1];
    this.#keep = answer.keep;
  }

  #giveBack(back: Amount): void {
    const answer = this.leases.lease({ need: [0, 0], back });
    this.#bytes -= back[0];
    this.#entries -= back[1];
    if (!('refused' in answer)) this.#keep = answer.keep;
  }
}
