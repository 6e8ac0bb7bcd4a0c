// ReplicaSet's choice of replica and its aggregated status, over stand-in sandboxes whose state a test sets (the real
// runners are in test/integration/replicas-*.test.ts).
import { describe, expect, it } from 'vitest';
import { ReplicaSet } from '../../src/backends/replica-set.js';
import type { CallOutcome, Sandbox, SandboxStatus } from '../../src/backends/sandbox.js';

interface Stand {
  sandbox: Sandbox;
  status: SandboxStatus;
  /** The calls it was given, each settled by the test. */
  calls: { resolve: (o: CallOutcome) => void; reject: (e: unknown) => void }[];
  closed: number;
}

function stand(index: number): Stand {
  const s: Stand = {
    status: { state: 'ready', crashes: 0, breaker: 'closed' },
    calls: [],
    closed: 0,
    sandbox: undefined as unknown as Sandbox,
  };
  s.sandbox = {
    mode: 'process',
    pluginId: 'p',
    start: async () => {},
    call: () =>
      new Promise<CallOutcome>((resolve, reject) => {
        s.calls.push({ resolve, reject });
      }),
    health: async () => ({ ok: s.status.state === 'ready' || s.status.state === 'idle' }),
    status: () => s.status,
    usage: () => ({ memoryBytes: 1_000 * (index + 1), cpuSeconds: index }),
    close: async () => {
      s.closed++;
      s.status = { ...s.status, state: 'stopped' };
    },
    [Symbol.asyncDispose]: async () => {},
  };
  return s;
}

function setOf(n: number) {
  const stands = Array.from({ length: n }, (_, i) => stand(i));
  const set = new ReplicaSet({
    pluginId: 'p',
    mode: 'process',
    replicas: n,
    createReplica: (i) => (stands[i] as Stand).sandbox,
  });
  const given = () => stands.map((s) => s.calls.length);
  const call = () => void set.call('f', new Uint8Array()).catch(() => {});
  return { set, stands, given, call };
}

const outcome: CallOutcome = { output: new Uint8Array(), stats: { fuelConsumed: 0, durationMs: 0 } };

describe('ReplicaSet', () => {
  it('takes replicas in turn when all are free, and the least loaded when not', async () => {
    const { set, stands, given, call } = setOf(3);
    for (let i = 0; i < 3; i++) call();
    expect(given()).toEqual([1, 1, 1]);
    // Replica 1 finishes its call: the next goes there, not to whoever's turn it was.
    stands[1]?.calls[0]?.resolve(outcome);
    await new Promise((r) => setImmediate(r));
    expect([0, 1, 2].map((i) => set.inFlight(i))).toEqual([1, 0, 1]);
    call();
    expect(given()).toEqual([1, 2, 1]);
  });

  it('skips replicas that are restarting or failed while another is ready; prefers ready over idle at equal load', () => {
    const { stands, given, call } = setOf(3);
    (stands[0] as Stand).status = { state: 'restarting', crashes: 1 };
    (stands[1] as Stand).status = { state: 'idle', crashes: 0 };
    (stands[2] as Stand).status = { state: 'ready', crashes: 0 };
    call();
    expect(given()).toEqual([0, 0, 1]);
    // The ready one is busy now: the idle one (no call in flight) is woken rather than queue behind it.
    call();
    expect(given()).toEqual([0, 1, 1]);
    (stands[1] as Stand).status = {
      state: 'failed',
      crashes: 5,
      breaker: 'open',
      retryAt: '2030-01-01T00:00:00.000Z',
    };
    call();
    expect(given()).toEqual([0, 1, 2]);
  });

  it('aggregates: ready while one is (how many), crashes summed, failed with the first retry only when all are', async () => {
    const { set, stands } = setOf(2);
    const [a, b] = stands as [Stand, Stand];
    a.status = {
      state: 'failed',
      crashes: 5,
      breaker: 'open',
      retryAt: '2030-01-01T00:00:05.000Z',
      lastError: { code: 'sandbox_crashed', message: 'a' },
    };
    expect(set.status()).toEqual({
      state: 'ready',
      crashes: 5,
      breaker: 'closed',
      replicas: { total: 2, ready: 1 },
      lastError: { code: 'sandbox_crashed', message: 'a' },
    });
    expect(await set.health()).toEqual({ ok: true, detail: '1 of 2 replicas healthy' });
    expect(set.usage()).toEqual({ memoryBytes: 3_000, cpuSeconds: 1 });
    b.status = { state: 'failed', crashes: 5, breaker: 'open', retryAt: '2030-01-01T00:00:01.000Z' };
    expect(set.status()).toMatchObject({
      state: 'failed',
      crashes: 10,
      breaker: 'open',
      retryAt: '2030-01-01T00:00:01.000Z',
      replicas: { total: 2, ready: 0 },
    });
    expect(await set.health()).toEqual({ ok: false, detail: '0 of 2 replicas healthy' });
    await set.close();
    await set.close();
    expect(stands.map((s) => s.closed)).toEqual([1, 1]);
    expect(set.status().state).toBe('stopped');
    await expect(set.call('f', new Uint8Array())).rejects.toMatchObject({ code: 'plugin_not_loaded' });
  });
});
