// The API bench's baseline: a bare node:http server on a Unix socket that answers every request with its body in
// the call route's JSON (as `serve` answers a mode-none echo), and nothing else: no routing, no schema, no plugin.
import { createServer } from 'node:http';

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
server.listen(process.argv[2] as string, () => process.stderr.write('serving\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
