import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import pino from 'pino';
import type { Supervision } from '../../src/backends/supervisor.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { tempDir } from './plugin-tree.js';

export interface LogLine {
  level: number;
  msg: string;
  pluginId?: string;
  [key: string]: unknown;
}

/** A PluginHost over `dirs` with its own temporary cache, in-memory storage, and captured logs. */
export async function startHost(
  dirs: string[],
  options: {
    reedToml?: string;
    plugins?: string[];
    storage?: MemoryStorage;
    mode?: SandboxMode;
    supervision?: Partial<Supervision>;
    runnerCommand?: string[];
    runnerImage?: string;
    docker?: Docker;
    runnerTransport?: 'unix' | 'tls';
  } = {},
): Promise<{ host: PluginHost; logs: LogLine[]; dir: string }> {
  const dir = tempDir('reed-host-');
  writeFileSync(
    join(dir, 'reed.toml'),
    `cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n${options.reedToml ?? ''}`,
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: dirs, defaultSearchPaths: false },
  });
  const logs: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => logs.push(JSON.parse(line) as LogLine) },
  );
  const host = await PluginHost.start({
    config,
    logger,
    services: { storage: options.storage ?? new MemoryStorage() },
    ...(options.plugins ? { plugins: options.plugins } : {}),
    ...(options.mode ? { forceMode: options.mode } : {}),
    ...(options.supervision ? { supervision: options.supervision } : {}),
    ...(options.runnerCommand ? { runnerCommand: options.runnerCommand } : {}),
    ...(options.runnerImage ? { runnerImage: options.runnerImage } : {}),
    ...(options.docker ? { docker: options.docker } : {}),
    ...(options.runnerTransport ? { runnerTransport: options.runnerTransport } : {}),
  });
  return { host, logs, dir };
}

export const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
