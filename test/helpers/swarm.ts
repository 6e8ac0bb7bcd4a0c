import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';

const run = promisify(execFile);
const SCRIPTS = fileURLToPath(new URL('../../scripts', import.meta.url));

/** One engine of a test swarm: its own dockerd in its own network namespace (scripts/swarm-up.sh). */
export interface SwarmNode {
  /** 1 is the manager. */
  index: number;
  /** unix:///run/reed-swarm/<net>/n<index>.sock */
  socket: string;
  /** Its address on the hub's bridge (10.231.<net>.<index>). */
  address: string;
  docker: Docker;
}

export interface TestSwarm {
  net: number;
  /** host:port of the swarm's registry (plain HTTP; every node trusts it). */
  registry: string;
  nodes: SwarmNode[];
  /** Node 1's engine: the manager. */
  manager: Docker;
  /** How long swarm-up.sh took, all nodes Ready. */
  upMs: number;
  /** Kills node k and everything it started at once, as a machine losing power (its namespace stays). */
  killNode(index: number): Promise<void>;
  /** swarm-down.sh: nothing of this swarm is left after it. Returns how long it took. */
  down(): Promise<number>;
}

async function script(name: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run('bash', [join(SCRIPTS, name), ...args], {
      maxBuffer: 1 << 20,
      timeout: 300_000,
    });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${name} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

/**
 * A swarm of `nodes` engines on this machine, numbered `net` (0-255; each test file its own number, so that files
 * running at once do not meet). What a crashed earlier run left under that number is taken away first.
 */
export async function startSwarm(options: { net: number; nodes?: number }): Promise<TestSwarm> {
  const net = options.net;
  await script('swarm-down.sh', [String(net)]);
  const started = performance.now();
  const out = await script('swarm-up.sh', [String(net), String(options.nodes ?? 2)]);
  const upMs = performance.now() - started;
  let registry = '';
  const nodes: SwarmNode[] = [];
  for (const line of out.trim().split('\n')) {
    const [kind, a, b, c] = line.split(' ');
    if (kind === 'registry' && a !== undefined) registry = a;
    if (kind === 'node' && a !== undefined && b !== undefined && c !== undefined) {
      const socketPath = b.replace(/^unix:\/\//, '');
      nodes.push({
        index: Number(a),
        socket: b,
        address: c,
        docker: new Docker({ socketPath, timeout: 60_000 }),
      });
    }
  }
  const manager = nodes[0]?.docker;
  if (registry === '' || manager === undefined) throw new Error(`swarm-up.sh printed no swarm:\n${out}`);
  return {
    net,
    registry,
    nodes,
    manager,
    upMs,
    killNode: async (index) => {
      await script('swarm-down.sh', [String(net), 'kill', String(index)]);
    },
    down: async () => {
      const t = performance.now();
      await script('swarm-down.sh', [String(net)]);
      return performance.now() - t;
    },
  };
}

/**
 * Everything of swarm `net` still on this machine: network namespaces, the host's veth, processes, mounts,
 * cgroups, state directories, host firewall rules naming its interfaces or subnet. Empty once it is down.
 */
export async function swarmLeftovers(net: number): Promise<string[]> {
  const left: string[] = [];
  const prefix = `rsw${net}`;
  const { stdout: namespaces } = await run('ip', ['netns', 'list']);
  for (const line of namespaces.split('\n'))
    if (line.startsWith(`${prefix}-`)) left.push(`netns ${line.split(' ')[0]}`);
  const { stdout: links } = await run('ip', ['-o', 'link', 'show']);
  for (const line of links.split('\n')) {
    const name = line.split(': ')[1]?.split('@')[0];
    if (name?.startsWith(prefix)) left.push(`link ${name}`);
  }
  for (const dir of [`/run/reed-swarm/${net}`, `/var/lib/reed-swarm/${net}`])
    if (existsSync(dir)) left.push(`directory ${dir}`);
  const marks = [`/run/reed-swarm/${net}/`, `/var/lib/reed-swarm/${net}/`];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (marks.some((m) => cmdline.includes(m))) left.push(`process ${pid}: ${cmdline.slice(0, 120)}`);
    } catch {
      // gone meanwhile
    }
  }
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n'))
    if (marks.some((m) => line.includes(m.slice(0, -1)))) left.push(`mount ${line}`);
  for (const controller of readdirSync('/sys/fs/cgroup')) {
    const base = join('/sys/fs/cgroup', controller);
    try {
      for (const entry of readdirSync(base))
        if (entry.startsWith(`${prefix}-`)) left.push(`cgroup ${base}/${entry}`);
    } catch {
      // not a directory
    }
  }
  for (const table of ['iptables-save', 'ip6tables-save']) {
    const { stdout: rules } = await run(table, [], { maxBuffer: 16 << 20 });
    for (const line of rules.split('\n'))
      if (line.includes(prefix) || line.includes(`10.231.${net}.`)) left.push(`${table}: ${line}`);
  }
  return left;
}

/** Polls `check` until it returns a value other than undefined, or throws after `ms` with `what`. */
export async function until<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${last})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
