// The host's ledger of a data directory's quotas and a runner's lease on it (src/backends/shared/disk-ledger.ts,
// src/runtime/wasm/quota-leases.ts): several runners of one plugin together stay within limits.disk_mb and
// limits.max_files (issue 10). The end-to-end case, two replicas in process and container modes:
// test/integration/data-dir.test.ts ("the quotas of a directory written by two runners").
import { describe, expect, it } from 'vitest';
import { DiskLedgerHold, ledgerFigure } from '../../src/backends/shared/disk-ledger.js';
import type { FilesystemGrant } from '../../src/manifest/data-dir.js';
import { checkLeaseAnswer, checkLeaseRequest } from '../../src/protocol/host-calls.js';
import { LeasePool, type QuotaLeases } from '../../src/runtime/wasm/quota-leases.js';
import type { QuotaIo } from '../../src/runtime/wasm/wasi-quota.js';
import { WasiErrno } from '../../src/runtime/wasm/wasi-types.js';

let n = 0;
const grant = (diskBytes: number, maxFiles: number, readOnly = false): FilesystemGrant => ({
  hostPath: `/test/ledger/${n++}`,
  guestName: '/data',
  readOnly,
  diskBytes,
  maxFiles,
});

/** A runner's pool over `hold`, as the runner asks it (with the fuel and the refusals it reported). */
function runner(hold: DiskLedgerHold, walked: [number, number] = [0, 0]) {
  const asked: unknown[] = [];
  const leases: QuotaLeases = {
    lease: (request) => {
      asked.push(request);
      return hold.lease(request);
    },
  };
  const io = { fuel: 0, refused: [] as string[] };
  const quotaIo: QuotaIo = {
    charge: (fuel) => {
      io.fuel += fuel;
    },
    exceeded: (kind) => {
      io.refused.push(kind);
    },
  };
  const pool = new LeasePool(leases, walked);
  const limits: [number, number] = [1 << 20, 100];
  return {
    pool,
    asked,
    io,
    /** Grows by `bytes` and `entries`: true when granted, false on EDQUOT. */
    grow(bytes: number, entries = 0): boolean {
      try {
        pool.take(bytes, entries, quotaIo, limits);
        return true;
      } catch (error) {
        if (error instanceof WasiErrno) return false;
        throw error;
      }
    },
  };
}

describe('the disk ledger', () => {
  it('is held only for a directory a runner may write, with a quota', () => {
    expect(DiskLedgerHold.forGrant(undefined)).toBeUndefined();
    expect(DiskLedgerHold.forGrant(grant(1000, 10, true))).toBeUndefined();
    expect(DiskLedgerHold.forGrant(grant(0, 0))).toBeUndefined();
    DiskLedgerHold.forGrant(grant(1000, 10))?.release();
  });

  it('two runners that counted the same directory share its quotas instead of each having them', () => {
    const g = grant(1 << 20, 100);
    const a = runner(DiskLedgerHold.forGrant(g) as DiskLedgerHold, [1000, 2]);
    const b = runner(DiskLedgerHold.forGrant(g) as DiskLedgerHold, [1000, 2]);
    expect(a.grow(600_000, 40)).toBe(true);
    // b's count (taken before a wrote) is not the figure: a holds a lease it could not have seen.
    expect(b.grow(600_000)).toBe(false);
    expect(b.grow(0, 60)).toBe(false);
    expect(b.io.refused).toEqual(['disk', 'files']);
    // What is left once a's lease (its need and a 16th of the quota beyond) is counted.
    expect(b.grow(300_000, 50)).toBe(true);
    const figure = ledgerFigure(g.hostPath) as [number, number];
    expect(figure[0]).toBeLessThanOrEqual(1 << 20);
    expect(figure[1]).toBeLessThanOrEqual(100);
    // Each ask is charged a round trip's fuel.
    expect(a.io.fuel).toBeGreaterThan(0);
  });

  it('a lease beyond the need shrinks as the quota nears, so the last bytes are not all held by one runner', () => {
    const g = grant(1 << 20, 1000);
    const hold = DiskLedgerHold.forGrant(g) as DiskLedgerHold;
    const first = hold.lease({ need: [1, 0], back: [0, 0], walked: [0, 0] });
    expect(first).toEqual({ granted: [1 + 65_536, 0], keep: [65_536, 62] });
    // A quota of few entries keeps few: a lost runner's lease is not the whole quota.
    const few = DiskLedgerHold.forGrant(grant(1 << 20, 8)) as DiskLedgerHold;
    expect(few.lease({ need: [0, 1], back: [0, 0], walked: [0, 0] })).toEqual({
      granted: [0, 2],
      keep: [65_536, 1],
    });
    few.release();
    const near = hold.lease({ need: [(1 << 20) - 65_537 - 100, 0], back: [0, 0] });
    expect('granted' in near && near.granted[0]).toBe((1 << 20) - 65_537 - 100 + 50);
    expect(hold.lease({ need: [51, 0], back: [0, 0] })).toEqual({ refused: 'disk' });
    hold.release();
  });

  it('what a runner frees past twice what it keeps goes back, and the other runner may use it', () => {
    const g = grant(1 << 20, 100);
    const a = runner(DiskLedgerHold.forGrant(g) as DiskLedgerHold);
    const b = runner(DiskLedgerHold.forGrant(g) as DiskLedgerHold);
    expect(a.grow(1_000_000)).toBe(true);
    expect(b.grow(100_000)).toBe(false);
    a.pool.give(900_000, 0);
    expect(b.grow(100_000)).toBe(true);
  });

  it('a count is sent as soon as it is made: one made before another runner wrote cannot reset the figure later', () => {
    // The seventh review: replica Y counted the (empty) directory and asked for nothing; X filled 900 KB and stopped;
    // Y's count, sent with its first request, became the figure: both filled 1 MiB.
    const g = grant(1 << 20, 100);
    const holdY = DiskLedgerHold.forGrant(g) as DiskLedgerHold;
    const y = runner(holdY, [0, 0]);
    expect(y.asked).toEqual([{ need: [0, 0], back: [0, 0], walked: [0, 0] }]);
    const holdX = DiskLedgerHold.forGrant(g) as DiskLedgerHold;
    const x = runner(holdX, [0, 0]);
    expect(x.grow(900_000)).toBe(true);
    x.pool.returnAll();
    holdX.release();
    expect(y.grow(900_000)).toBe(false);
    expect(y.grow(100_000)).toBe(true);
    holdY.release();
  });

  it('a runner that ends gives back its lease; a lost one stays counted until a runner counts again', () => {
    const g = grant(1 << 20, 100);
    const holdA = DiskLedgerHold.forGrant(g) as DiskLedgerHold;
    const a = runner(holdA);
    const holdB = DiskLedgerHold.forGrant(g) as DiskLedgerHold;
    const b = runner(holdB);
    expect(a.grow(10)).toBe(true);
    a.pool.returnAll();
    expect(ledgerFigure(g.hostPath)).toEqual([10, 0]);
    // a stays, holding nothing more; b takes a large lease and is lost (killed) without giving it back.
    expect(b.grow(900_000, 5)).toBe(true);
    holdB.release();
    const counted = ledgerFigure(g.hostPath) as [number, number];
    expect(counted[0]).toBeGreaterThan(900_000);
    // b's restart counts the directory (b had written 300,000 bytes and 3 names of its lease): the figure is that
    // count and what a may have written since (its lease, less what it gave back), not b's lost lease.
    const holdB2 = DiskLedgerHold.forGrant(g) as DiskLedgerHold;
    runner(holdB2, [300_010, 3]);
    expect(ledgerFigure(g.hostPath)).toEqual([300_020, 3]);
    // A count never raises the figure: the lower bound is kept.
    const holdC = DiskLedgerHold.forGrant(g) as DiskLedgerHold;
    runner(holdC, [900_000, 50]);
    expect(ledgerFigure(g.hostPath)).toEqual([300_020, 3]);
    for (const hold of [holdA, holdB2, holdC]) hold.release();
    expect(ledgerFigure(g.hostPath)).toBeUndefined();
    // A released hold grants nothing.
    expect(holdC.lease({ need: [1, 0], back: [0, 0] })).toEqual({ refused: 'disk' });
  });

  it('takes a runner request only as two amounts of non-negative safe integers', () => {
    expect(checkLeaseRequest({ need: [1, 2], back: [0, 0] })).toEqual({ need: [1, 2], back: [0, 0] });
    expect(checkLeaseRequest({ need: [1, 2], back: [0, 0], walked: [5, 6] })).toMatchObject({
      walked: [5, 6],
    });
    for (const bad of [
      undefined,
      null,
      [],
      { need: [1], back: [0, 0] },
      { need: [-1, 0], back: [0, 0] },
      { need: [1.5, 0], back: [0, 0] },
      { need: [2 ** 53, 0], back: [0, 0] },
      { need: ['1', 0], back: [0, 0] },
      { need: [1, 0], back: [0, 0], walked: 'x' },
      { need: [1, 0] },
    ])
      expect(checkLeaseRequest(bad)).toBeUndefined();
    expect(checkLeaseAnswer({ meta: { ok: true, value: { refused: 'files' } } })).toEqual({
      refused: 'files',
    });
    expect(checkLeaseAnswer({ meta: { ok: true, value: { granted: [1, 1], keep: [2, 2] } } })).toEqual({
      granted: [1, 1],
      keep: [2, 2],
    });
    expect(
      checkLeaseAnswer({ meta: { ok: true, value: { granted: [-1, 1], keep: [2, 2] } } }),
    ).toBeUndefined();
    expect(checkLeaseAnswer({ meta: { ok: false, code: 'x', message: 'y' } })).toBeUndefined();
  });
});
