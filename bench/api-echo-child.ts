// The API bench's baseline: a bare node:http server on a Unix socket that answers every request with its body in
// the call route's JSON (as `serve` answers a mode-none echo), and nothing else: no routing, no schema, no plugin.
//
// `api-echo-child.js SOCKET -- SERVE_ARGS...`: the same bare server, in a process that also runs `serve SERVE_ARGS`
// (its own socket, sent nothing): what a process holding a running serve (its heap, its plugin, its timers) costs
// the same bare answers. The floor an answer given inside serve's process starts from (issue 14's api figure).
import { createServer } from 'node:http';

const socket = process.argv[2] as string;
const dash = process.argv.indexOf('--');
/** serve's exit status once it has stopped (on SIGTERM, as when run alone), when one runs beside the echo. */
let serveDone: Promise<number> | undefined;
if (dash !== -1) {
  const { main } = await import('../src/cli/main.js');
  let started = '';
  await new Promise<void>((resolve, reject) => {
    const stderr = (text: string) => {
      started += text;
      if (started.includes('serving')) resolve();
    };
    const io = { stdout: () => {}, stdoutBytes: () => {}, stderr, cwd: process.cwd(), env: process.env };
    serveDone = main(process.argv.slice(dash + 1), io);
    serveDone.then(
      (status) => reject(new Error(`serve beside the echo exited with ${status}: ${started}`)),
      reject,
    );
  });
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.stringify({
      ok: true,
      output: Buffer.concat(chunks).toString('utf8'),
      outputEncoding: 'utf8',
      stats: { fuelConsumed: 0, durationMs: 0 },
    });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.listen(socket, () => process.stderr.write('serving\n'));
process.on('SIGTERM', () =>
  server.close(() => {
    if (serveDone === undefined) process.exit(0);
    else void serveDone.then((status) => process.exit(status));
  }),
);
