import { rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

/**
 * A Unix socket in front of the real Docker engine, so that a test can make "the engine" go away and come back
 * without stopping the engine every other test uses: `down()` closes the socket and cuts every connection
 * (clients get ECONNREFUSED/ENOENT), `hang()` accepts connections and never answers, `up()` forwards again.
 */
export class EngineProxy {
  readonly path: string;
  #server: Server | undefined;
  #mode: 'forward' | 'hang' = 'forward';
  readonly #sockets = new Set<Socket>();

  constructor(
    dir: string,
    readonly engine = '/var/run/docker.sock',
  ) {
    this.path = join(dir, 'engine.sock');
  }

  async up(): Promise<void> {
    await this.#listen('forward');
  }

  async hang(): Promise<void> {
    await this.#listen('hang');
  }

  async down(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    const server = this.#server;
    this.#server = undefined;
    if (server !== undefined) await new Promise((r) => server.close(r));
    rmSync(this.path, { force: true });
  }

  async #listen(mode: 'forward' | 'hang'): Promise<void> {
    await this.down();
    this.#mode = mode;
    const server = createServer((client) => {
      this.#sockets.add(client);
      client.on('close', () => this.#sockets.delete(client));
      client.on('error', () => {});
      if (this.#mode === 'hang') return;
      const engine = createConnection(this.engine);
      this.#sockets.add(engine);
      engine.on('close', () => this.#sockets.delete(engine));
      engine.on('error', () => client.destroy());
      client.pipe(engine).pipe(client);
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, resolve);
    });
  }
}
