import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import tarFs from 'tar-fs';
import { type Header, pack } from 'tar-stream';

export type TarEntry = Partial<Header> & { name: string; content?: string | Buffer };

/** A tar archive of exactly these entries, headers as given (hostile ones included: tar-stream writes what it is told). */
export async function tarOf(entries: TarEntry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', () => resolve());
    p.on('error', (e: unknown) => reject(e));
  });
  for (const { content, ...header } of entries) {
    await new Promise<void>((resolve, reject) => {
      const body = content === undefined ? undefined : Buffer.from(content);
      const cb = (error?: Error | null) => (error ? reject(error) : resolve());
      if (body === undefined) p.entry(header, cb);
      else p.entry({ ...header, size: header.size ?? body.length }, body, cb);
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A tar of a directory as the CLI makes it (tar-fs, links not followed). */
export async function tarDir(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of tarFs.pack(dir) as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

export const stream = (bytes: Buffer) => Readable.from([bytes]);

/** The files of a plugin directory as tar entries (plugin.toml and the module). */
export function pluginEntries(dir: string, files = ['plugin.toml', 'plugin.wasm']): TarEntry[] {
  return files.map((name) => ({ name, content: readFileSync(`${dir}/${name}`) }));
}
