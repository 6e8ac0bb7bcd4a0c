import { type FSWatcher, watch } from 'node:fs';
import type { ReedError } from '../errors.js';
import type { PluginHost } from './plugin-host.js';

export interface WatchOptions {
  /** Quiet time after the last change before the plugin is reloaded. Default 300 ms. */
  debounceMs?: number;
}

export const DEFAULT_WATCH_DEBOUNCE_MS = 300;

/**
 * Development mode (`reed-plugins serve --watch`): each loaded plugin found in plugin_dirs is reloaded (the upgrade
 * path with drain, PluginHost.reload) once its directory has been quiet for `debounceMs` after a change. A broken
 * edit is refused by the reload and the version that serves keeps serving; the log says why (code and message).
 * Installed plugins are not watched (their directories never change). Returns the stop.
 */
export function watchPlugins(host: PluginHost, options: WatchOptions = {}): () => void {
  const debounceMs = options.debounceMs ?? DEFAULT_WATCH_DEBOUNCE_MS;
  const watchers: FSWatcher[] = [];
  const timers = new Map<string, NodeJS.Timeout>();
  /** Per plugin: the reload under way, and whether another change came meanwhile. */
  const busy = new Map<string, { again: boolean }>();
  let stopped = false;

  const reload = async (id: string): Promise<void> => {
    const running = busy.get(id);
    if (running !== undefined) {
      running.again = true;
      return;
    }
    const state = { again: false };
    busy.set(id, state);
    try {
      const status = await host.reload(id);
      host.logger.info({ pluginId: id, version: status.version, state: status.state }, 'watch: reloaded');
    } catch (error) {
      const e = error as Partial<ReedError>;
      host.logger.error(
        { pluginId: id, code: e.code, details: e.details },
        `watch: reload failed, the version that serves keeps serving: ${e.message}`,
      );
    } finally {
      busy.delete(id);
    }
    if (state.again && !stopped) await reload(id);
  };

  for (const [id, dir] of host.watchableDirs()) {
    try {
      const watcher = watch(dir, { recursive: true }, () => {
        if (stopped) return;
        clearTimeout(timers.get(id));
        timers.set(
          id,
          setTimeout(() => {
            timers.delete(id);
            void reload(id);
          }, debounceMs),
        );
      });
      watcher.on('error', (error) =>
        host.logger.warn(
          { pluginId: id, err: error },
          'watch: the plugin directory can no longer be watched',
        ),
      );
      watchers.push(watcher);
    } catch (error) {
      host.logger.warn({ pluginId: id, err: error }, `watch: cannot watch ${dir}`);
    }
  }
  host.logger.info({ plugins: watchers.length, debounceMs }, 'watch: watching plugin directories');
  return () => {
    stopped = true;
    for (const timer of timers.values()) clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
  };
}
