// Adversarial pass, finding 2: a plugin granted network shares the host's network namespace, and the uid leases
// were abstract sockets the host listened on there. It connected to its own lease ~20,000 times, the host
// accepted and kept every connection, and ran out of descriptors. The lease is now a lock held without any
// socket: these tests drive the uid-pool module directly, with real processes in the host's network namespace.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  LEASE_DIR,
  leaseUid,
  SPARE_MAX_AGE_MS,
  type UidLease,
  verifyUidAhead,
} from '../../src/backends/shared/uid-pool.js';
import { REPO } from '../helpers/cli.js';

const fdCount = () => readdirSync('/proc/self/fd').length;
const leases: UidLease[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const l of leases.splice(0)) l.release();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** Runs an ES module script in a child process; resolves with its first line of output, parsed. */
function child<T>(script: string): Promise<{ out: T; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.push(c);
    let out = '';
    c.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve({ out: JSON.parse(out) as T, child: c });
    });
    c.once('exit', (code) => reject(new Error(`child exited with ${code} before answering: ${out}`)));
  });
}

describe('uid leases', () => {
  it('connecting thousands of times to a lease name gets no connection and costs the host no descriptor', async () => {
    const lease = await leaseUid({ start: 720_000, end: 720_009 }, 'victim');
    leases.push(lease);
    const before = fdCount();
    // The attacker: a process in the host's network namespace (as a runner granted network is), holding every
    // connection it gets.
    const { out } = await child<{ connected: number; refused: number }>(`
      import { connect } from 'node:net';
      const held = [];
      let connected = 0, refused = 0;
      await Promise.all(Array.from({ length: 3000 }, () => new Promise((done) => {
        const s = connect({ path: '\\0reed-runner-uid-${lease.uid}' });
        s.on('connect', () => { connected++; held.push(s); done(); });
        s.on('error', () => { refused++; done(); });
      })));
      process.stdout.write(JSON.stringify({ connected, refused }) + '\\n');
      process.stdin.resume();`);
    // Give an accepting server every chance to take what is queued for it before counting.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(out.connected).toBe(0);
    expect(fdCount() - before).toBeLessThan(50);
  });

  it('holding many leases costs the host one descriptor at most, opened close-on-exec', async () => {
    const before = fdCount();
    for (let i = 0; i < 40; i++) leases.push(await leaseUid({ start: 720_100, end: 720_199 }, 'p'));
    expect(new Set(leases.map((l) => l.uid)).size).toBe(40);
    expect(fdCount() - before).toBeLessThanOrEqual(1);
    // The lock's descriptor must not reach a runner (bwrap is spawned from this process).
    const lockFds = readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith(LEASE_DIR);
      } catch {
        return false;
      }
    });
    expect(lockFds).toHaveLength(1);
    const flags = /^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${lockFds[0]}`, 'utf8'))?.[1];
    expect(Number.parseInt(flags ?? '0', 8) & 0o2000000).not.toBe(0);
  });

  it('keeps its lock file in a directory only root can enter', async () => {
    leases.push(await leaseUid({ start: 720_200, end: 720_209 }, 'p'));
    const dir = statSync(LEASE_DIR);
    expect(dir.isDirectory()).toBe(true);
    expect(dir.uid).toBe(0);
    expect(dir.mode & 0o077).toBe(0);
  });

  it('lease names in the network namespace cannot be squatted: a process holding all of them takes no uid', async () => {
    const servers: Server[] = [];
    try {
      for (let uid = 720_300; uid <= 720_304; uid++) {
        const server = createServer();
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ path: `\0reed-runner-uid-${uid}`, exclusive: true }, resolve);
        });
        servers.push(server);
      }
      const lease = await leaseUid({ start: 720_300, end: 720_304 }, 'p');
      leases.push(lease);
      expect(lease.uid).toBeGreaterThanOrEqual(720_300);
    } finally {
      for (const s of servers) s.close();
    }
  });

  it('a uid held by another live host process is not given; once that process dies it is', async () => {
    const module = JSON.stringify(join(REPO, 'dist/src/backends/shared/uid-pool.js'));
    const { out, child: holder } = await child<number[]>(`
      import { leaseUid } from ${module};
      const uids = [];
      for (let i = 0; i < 3; i++) uids.push((await leaseUid({ start: 720400, end: 720402 }, 'p')).uid);
      process.stdout.write(JSON.stringify(uids) + '\\n');
      process.stdin.resume();`);
    expect(out.sort()).toEqual([720_400, 720_401, 720_402]);
    await expect(leaseUid({ start: 720_400, end: 720_402 }, 'p')).rejects.toMatchObject({
      code: 'sandbox_unavailable',
    });
    const exited = new Promise((r) => holder.once('exit', r));
    holder.kill('SIGKILL');
    await exited;
    for (let i = 0; i < 3; i++) leases.push(await leaseUid({ start: 720_400, end: 720_402 }, 'p'));
    expect(leases.map((l) => l.uid).sort()).toEqual([720_400, 720_401, 720_402]);
  });

  it('a number some live process has as its group is not given (a container of a dead host running as 65534:<gid>); once it dies it is', async () => {
    // A process as a container-mode sandbox with a data directory runs: uid 65534, the directory's leased gid.
    // Its host (and the lease) gone, the number must not be leased again while it runs.
    const holder = spawn('sleep', ['600'], { uid: 65_534, gid: 720_600, stdio: 'ignore' });
    children.push(holder);
    await new Promise((resolve) => holder.once('spawn', resolve));
    await expect(leaseUid({ start: 720_600, end: 720_600 }, 'p')).rejects.toMatchObject({
      code: 'sandbox_unavailable',
    });
    const exited = new Promise((r) => holder.once('exit', r));
    holder.kill('SIGKILL');
    await exited;
    const lease = await leaseUid({ start: 720_600, end: 720_600 }, 'p');
    leases.push(lease);
    expect(lease.uid).toBe(720_600);
  });

  it('a number a live process has as its uid, or a root process as its group, is not given', async () => {
    // The scan reads a process's ids from its /proc entry's owner, and root's processes from their status: one
    // case of each (a leftover runner as 720610:720610; a root process in group 720611).
    const runner = spawn('sleep', ['600'], { uid: 720_610, gid: 720_610, stdio: 'ignore' });
    const rooted = spawn('sleep', ['600'], { uid: 0, gid: 720_611, stdio: 'ignore' });
    children.push(runner, rooted);
    await Promise.all([runner, rooted].map((c) => new Promise((resolve) => c.once('spawn', resolve))));
    for (const uid of [720_610, 720_611])
      await expect(leaseUid({ start: uid, end: uid }, 'p')).rejects.toMatchObject({
        code: 'sandbox_unavailable',
      });
    const lease = await leaseUid({ start: 720_610, end: 720_612 }, 'p');
    leases.push(lease);
    expect(lease.uid).toBe(720_612);
  });

  /** Another host process's lease of `range`: its uid, or its error's code. */
  const otherHostLeases = async (range: { start: number; end: number }) => {
    const module = JSON.stringify(join(REPO, 'dist/src/backends/shared/uid-pool.js'));
    const { out } = await child<{ uid?: number; code?: string }>(`
      import { leaseUid } from ${module};
      const out = await leaseUid(${JSON.stringify(range)}, 'p').then((l) => ({ uid: l.uid }), (e) => ({ code: e.code }));
      process.stdout.write(JSON.stringify(out) + '\\n');
      process.stdin.resume();`);
    return out;
  };

  it('a uid verified ahead is held like a lease: no other host process gets it, the next lease here does', async () => {
    const range = { start: 720_700, end: 720_700 };
    verifyUidAhead(range, 'p');
    expect(await otherHostLeases(range)).toEqual({ code: 'sandbox_unavailable' });
    const lease = await leaseUid(range, 'p');
    leases.push(lease);
    expect(lease.uid).toBe(720_700);
    // Taken: the next lease scans again, and finds nothing free.
    await expect(leaseUid(range, 'p')).rejects.toMatchObject({ code: 'sandbox_unavailable' });
  });

  it('a uid some live process has is never verified ahead', async () => {
    const leftover = spawn('sleep', ['600'], { uid: 720_710, gid: 720_710, stdio: 'ignore' });
    children.push(leftover);
    await new Promise((resolve) => leftover.once('spawn', resolve));
    verifyUidAhead({ start: 720_710, end: 720_711 }, 'p');
    verifyUidAhead({ start: 720_710, end: 720_710 }, 'p');
    await expect(leaseUid({ start: 720_710, end: 720_710 }, 'p')).rejects.toMatchObject({
      code: 'sandbox_unavailable',
    });
    const lease = await leaseUid({ start: 720_710, end: 720_711 }, 'p');
    leases.push(lease);
    expect(lease.uid).toBe(720_711);
  });

  it('a uid verified ahead and not leased goes back to every host after SPARE_MAX_AGE_MS', async () => {
    const range = { start: 720_720, end: 720_720 };
    verifyUidAhead(range, 'p');
    expect(await otherHostLeases(range)).toEqual({ code: 'sandbox_unavailable' });
    await new Promise((r) => setTimeout(r, SPARE_MAX_AGE_MS + 200));
    expect(await otherHostLeases(range)).toEqual({ uid: 720_720 });
  });

  it('release gives the uid back to this process and to others, once', async () => {
    const first = await leaseUid({ start: 720_500, end: 720_500 }, 'p');
    await expect(leaseUid({ start: 720_500, end: 720_500 }, 'p')).rejects.toMatchObject({
      code: 'sandbox_unavailable',
    });
    first.release();
    first.release();
    const again = await leaseUid({ start: 720_500, end: 720_500 }, 'p');
    leases.push(again);
    expect(again.uid).toBe(720_500);
  });
});
