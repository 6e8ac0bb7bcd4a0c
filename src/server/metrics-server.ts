import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { guardConnections, serverTimeouts } from './connection-guard.js';

/** Connections the metrics listener holds at once (a scraper needs one or two). */
const MAX_METRICS_CONNECTIONS = 64;

/**
 * `serve --metrics-listen HOST:PORT`: plain HTTP on TCP serving `GET /metrics` only (a Prometheus server scrapes
 * TCP, not a Unix socket). No authentication: bind it to loopback or a network only the scraper reaches
 * (docs/OPERATIONS.md). The metrics hold plugin ids, tenant ids, codes and figures, never a call's data.
 */
export async function listenMetrics(
  metrics: { text(): Promise<string>; readonly contentType: string },
  address: { host: string; port: number },
): Promise<Server> {
  const server = createServer(serverTimeouts(10_000), (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const answer = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (path !== '/metrics') return answer(404, 'text/plain', 'only /metrics is served here\n');
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      return answer(405, 'text/plain', 'GET only\n');
    }
    metrics.text().then(
      (text) => answer(200, metrics.contentType, text),
      () => answer(500, 'text/plain', 'the metrics could not be read\n'),
    );
  });
  guardConnections(server, MAX_METRICS_CONNECTIONS);
  server.listen(address.port, address.host);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([error]) => {
      throw error;
    }),
  ]);
  return server;
}
