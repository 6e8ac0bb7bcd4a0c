// The warm pool's bookkeeping (src/backends/pool/warm-pool.ts) over runners that only record what is done to them;
// the real runners are in test/integration/pool-process.test.ts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  parseTtl,
  poolsOf,
  REFILL_AFTER_HAND_OUT_MS,
  WarmPool,
  type WarmRunner,
} from '../../src/backends/pool/warm-pool.js';
import { DEFAULT_POOL_TTL_MS, loadHostConfig } from '../../src/host/host-config.js';
import { tempDir } from '../helpers/plugin-tree.js';

class FakeRunner implements WarmRunner {
  static launching = 0;
  static maxLaunching = 0;
  alive = true;
  destroyed = false;
  readonly exited: Promise<void>;
  exit!: () => void;
  finishLaunch!: (error?: Error) => void;
  constructor() {
    this.exited = new Promise((r) => {
      this.exit = () => {
        this.alive = false;
        r();
      };
    });
  }
  launch(): Promise<void> {
    FakeRunner.launching++;
    FakeRunner.maxLaunching = Math.max(FakeRunner.maxLaunching, FakeRunner.launching);
    return new Promise((resolve, reject) => {
      this.finishLaunch = (error) => {
        FakeRunner.launching--;
        if (error === undefined) resolve();
        else reject(error);
      };
    });
  }
  async destroy(): Promise<void> {
    this.destroyed = true;
    this.alive = false;
  }
}

const made: FakeRunner[] = [];
const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};
/** Lets every launch under way finish, until the pool launches no more. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await flush();
    const pending = made.filter((r) => r.finishLaunch !== undefined && !(r as { done?: boolean }).done);
    if (pending.length === 0) return;
    for (const r of pending) {
      (r as { done?: boolean }).done = true;
      r.finishLaunch();
    }
  }
}

function pool(size: number, ttlMs = 60_000, session = 'unit-session') {
  return new WarmPool<FakeRunner>({
    size,
    ttlMs,
    kind: 'fake',
    session,
    logger: pino({ level: 'silent' }),
    make: () => {
      const r = new FakeRunner();
      made.push(r);
      return r;
    },
  });
}

afterEach(() => {
  made.length = 0;
  FakeRunner.launching = 0;
  FakeRunner.maxLaunching = 0;
  vi.useRealTimers();
});

describe('WarmPool', () => {
  it('launches nothing before start, then fills one at a time; take hands one out, refill replaces it', async () => {
    vi.useFakeTimers();
    const p = pool(3);
    await flush();
    expect(made).toHaveLength(0);
    p.start();
    await settle();
    expect(p.ready).toBe(3);
    expect(FakeRunner.maxLaunching).toBe(1);
    const first = p.take();
    expect(first).toBe(made[0]);
    expect(p.idleRunners()).not.toContain(first);
    // Its replacement waits for the hand-out to be done (the backend calls handedOut), not to share its CPU, and
    // then REFILL_AFTER_HAND_OUT_MS more: the load that took it returns first.
    await settle();
    expect(made).toHaveLength(3);
    p.handedOut();
    await settle();
    expect(made).toHaveLength(3);
    vi.advanceTimersByTime(REFILL_AFTER_HAND_OUT_MS - 1);
    await settle();
    expect(made).toHaveLength(3);
    vi.advanceTimersByTime(1);
    await settle();
    expect(p.ready).toBe(3);
    expect(made).toHaveLength(4);
    // refill launches at once.
    p.take();
    p.refill();
    await settle();
    expect(made).toHaveLength(5);
    expect(p.stats).toMatchObject({ launched: 5, handedOut: 2 });
    await p.close();
  });

  it('replaces a runner that exits while it waits, and never hands out one already dead', async () => {
    const p = pool(2);
    p.start();
    await settle();
    const [a, b] = made as [FakeRunner, FakeRunner];
    a.exit();
    await settle();
    expect(p.idleRunners()).toEqual([b, made[2]]);
    expect(a.destroyed).toBe(true);
    expect(p.stats.died).toBe(1);
    // Dead, but its exit not seen yet: skipped at take.
    b.alive = false;
    expect(p.take()).toBe(made[2]);
    expect(b.destroyed).toBe(true);
    await p.close();
  });

  it('replaces a runner past its ttl, and retries a failed launch after a backoff', async () => {
    vi.useFakeTimers();
    const p = pool(1, 5_000);
    p.start();
    made[0]?.finishLaunch(new Error('no bwrap'));
    await flush();
    expect(p.stats.failed).toBe(1);
    expect(made).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(made).toHaveLength(2);
    made[1]?.finishLaunch();
    await flush();
    expect(p.ready).toBe(1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(made[1]?.destroyed).toBe(true);
    expect(p.stats.expired).toBe(1);
    made[2]?.finishLaunch();
    await flush();
    expect(p.idleRunners()).toEqual([made[2]]);
    // A runner taken whose hand-out never says it is done is replaced all the same, 2 s later.
    expect(p.take()).toBe(made[2]);
    await vi.advanceTimersByTimeAsync(1_999);
    expect(made).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(made).toHaveLength(4);
    await p.close();
  });

  it('close destroys the ready runners and the one being launched, and launches nothing more', async () => {
    const p = pool(2, 60_000, 'unit-close');
    p.start();
    made[0]?.finishLaunch();
    await flush();
    expect(poolsOf('unit-close')).toEqual([p]);
    await p.close();
    expect(made.map((r) => r.destroyed)).toEqual([true, true]);
    expect(poolsOf('unit-close')).toEqual([]);
    made[1]?.finishLaunch();
    await flush();
    expect(made).toHaveLength(2);
    expect(p.take()).toBeUndefined();
  });
});

describe('[sandbox.pool] in reed.toml', () => {
  const config = (toml: string) => {
    const dir = tempDir('reed-pool-config-');
    writeFileSync(join(dir, 'reed.toml'), toml);
    return loadHostConfig({ cwd: dir, env: {}, home: dir, overrides: { defaultSearchPaths: false } });
  };

  it('is off by default, and reads sizes and the ttl', () => {
    expect(config('').pool).toMatchObject({
      process: 0,
      container: { runc: 0, runsc: 0 },
      ttlMs: DEFAULT_POOL_TTL_MS,
    });
    const set = config('[limits]\nmemory_mb = 96\n[sandbox.pool]\nprocess = 4\nttl = "30s"\n').pool;
    expect(set).toMatchObject({ process: 4, container: { runc: 0, runsc: 0 }, ttlMs: 30_000 });
    expect(set.limits.memoryMb).toBe(96);
    expect(parseTtl('10m')).toBe(600_000);
    expect(parseTtl('1h')).toBe(3_600_000);
    expect(parseTtl('0s')).toBeUndefined();
  });

  it('refuses a ttl that is not a duration, naming the key', () => {
    expect(() => config('[sandbox.pool]\nttl = "soon"\n')).toThrow(/sandbox\.pool\.ttl/);
    expect(() => config('[sandbox.pool]\nprocess = -1\n')).toThrow(/sandbox/);
    expect(() => config('[sandbox.pool]\nrunc = -1\n')).toThrow(/sandbox/);
    // Container mode: a size per runtime.
    const runc = config('[sandbox.pool]\nrunc = 2\nrunsc = 1\n');
    expect(runc.warnings.map((w) => w.field)).not.toContain('sandbox.pool.runc');
    expect(runc.pool.container).toEqual({ runc: 2, runsc: 1 });
  });
});
