// `npm run bench -- api`: the serve API's overhead. 64 connections POST a 64-byte input to a mode-none echo plugin
// through `reed-plugins serve` on a Unix socket, and the same to a bare node:http echo server (api-echo-child.ts) on
// the same kind of socket, alternating rounds in one run (autocannon). Target: serve at least 0.8x the bare server's
// requests per second (issue 14).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { fmt, median, printTable, type Row } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CONNECTIONS = 64;
const ROUND_SECONDS = 5;
const ROUNDS = 3;
const PATH = '/v1/plugins/example.hello/call/echo';
const INPUT = 'x'.repeat(64);

/** Starts a child and resolves once it says `serving` on stderr. */
async function start(args: string[], cwd: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { PATH: process.env.PATH, HOME: cwd, REED_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('serving')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${err}`)));
  });
  return child;
}

async function load(socketPath: string, seconds: number): Promise<number> {
  const result = await autocannon({
    url: `http://localhost${PATH}`,
    socketPath,
    method: 'POST',
    body: INPUT,
    connections: CONNECTIONS,
    duration: seconds,
  });
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0)
    throw new Error(
      `${socketPath}: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts`,
    );
  return result.requests.average;
}

export async function runApiBench(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-api-'));
  writeFileSync(join(dir, 'reed.toml'), 'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n');
  const bareSocket = join(dir, 'bare.sock');
  const serveSocket = join(dir, 'api.sock');
  const children: ChildProcess[] = [];
  try {
    children.push(await start([join(REPO, 'dist/bench/api-echo-child.js'), bareSocket], dir));
    children.push(
      await start(
        [
          join(REPO, 'bin/reed-plugins.js'),
          'serve',
          '--socket',
          serveSocket,
          '--no-default-paths',
          '--plugin-dir',
          join(REPO, 'examples/plugins'),
          '--plugin',
          'example.hello',
          '--mode',
          'none',
        ],
        dir,
      ),
    );
    // Warm-up (JIT, the plugin's first calls), then alternating rounds so both see the same machine.
    await load(bareSocket, 2);
    await load(serveSocket, 2);
    const bare: number[] = [];
    const serve: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      bare.push(await load(bareSocket, ROUND_SECONDS));
      serve.push(await load(serveSocket, ROUND_SECONDS));
    }
    const [ours, base] = [median(serve), median(bare)];
    const ratio = ours / base;
    const met = ratio >= 0.8;
    const rows: Row[] = [
      {
        figure: `serve: POST ${PATH} (mode none echo, ${INPUT.length} B), ${CONNECTIONS} connections, req/s`,
        value: fmt(ours),
        baseline: `${fmt(base)} (bare node:http echo)`,
        ratio: `${ratio.toFixed(2)}x`,
        target: '>= 0.8x',
        met,
      },
    ];
    printTable('API: serve against a bare node:http echo, Unix socket (autocannon)', rows);
    console.log(
      `rounds of ${ROUND_SECONDS} s, median of ${ROUNDS}: serve ${serve.map((v) => fmt(v)).join(', ')}; bare ${bare.map((v) => fmt(v)).join(', ')}; load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
    return met;
  } finally {
    for (const c of children) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}
