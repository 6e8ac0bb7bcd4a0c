import type { Readable } from 'node:stream';
import type { LoadedPlugin } from '../dependencies/resolve-dependencies.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import { isReedError, ReedError } from '../errors.js';
import type { Generation } from './generation.js';
import type { HostConfig } from './host-config.js';
import { checkPluginId, scanPluginDir, stageArchive } from './install.js';
import type { InstallSlots } from './install-slots.js';
import type { Entry, LifecycleListener, PluginSet } from './plugin-set.js';
import type { PluginStore } from './plugin-store.js';

/**
 * Installs, reloads and forgets plugins while the host runs, and keeps the store of installed plugins
 * (src/host/plugin-store.ts) in step with what serves: its pointer names the version directory that serves each
 * installed id, and a version directory the set lets go (past probation, rolled back from, replaced, removed) is
 * removed. Plugins found in plugin_dirs are never written or removed.
 */
export class Installer implements LifecycleListener {
  constructor(
    private readonly store: PluginStore,
    private readonly config: HostConfig,
    /** Held while the archive is taken in (extracted, scanned, kept), not while the new version starts. */
    private readonly slots: InstallSlots,
    private readonly set: PluginSet,
    /** The plugins an incoming one is validated against: every other one in the set, and the embedder's. */
    private readonly others: (id: string) => LoadedPlugin[],
    /** Throws when the host takes no more changes, or the candidate may not be added (PluginHost). */
    private readonly assertChangeable: (candidate: ParsedCandidate) => void,
  ) {}

  /**
   * A tar archive of a plugin directory, taken in, validated (its id must be `id`), kept under data_dir, then
   * started: as a new plugin, or as an upgrade with drain of the one with that id. Only when it serves does the
   * store's pointer name it; a refusal or a failed start leaves the store as it was.
   */
  async install(id: string, archive: Readable): Promise<Entry> {
    checkPluginId(id); // a wrong id is refused as such, not queued
    // One of the host's slots for the intake only (install_busy past its queue); the start below holds none.
    const { candidate, dir } = await this.slots
      .run(() => stageArchive(this.store, this.config, id, archive, this.others(id)), id, this)
      .catch((error: unknown) => {
        if (isReedError(error) && error.code === 'install_busy') archive.resume(); // refused unread, as a quota is
        throw error;
      });
    try {
      return await this.set.serially(async () => {
        this.assertChangeable(candidate);
        this.store.assertRoom(id, dir, candidate.manifest.metadata.version);
        const entry = this.set.entries.get(id);
        if (entry !== undefined && entry.state !== 'draining')
          return await this.set.upgrade(entry, candidate);
        if (entry !== undefined)
          throw new ReedError(
            'plugin_not_loaded',
            `plugin "${id}" is being removed; install it again after`,
            {
              pluginId: id,
            },
          );
        const added = await this.set.load(candidate);
        if (added.state !== 'ready' || added.current === undefined) {
          this.set.entries.delete(id);
          throw added.error ?? new ReedError('init_failed', `plugin "${id}" did not start`, { pluginId: id });
        }
        this.serving(id, added.current);
        return added;
      });
    } catch (error) {
      await this.store.discard(dir);
      throw error;
    }
  }

  /** The same upgrade path from the plugin's own directory on disk (its files read, checked and planned again). */
  async reload(id: string): Promise<Entry> {
    const entry = this.set.entries.get(id);
    if (entry === undefined || entry.state === 'draining')
      throw new ReedError('plugin_not_loaded', `plugin "${id}" is not in the host`, { pluginId: id });
    const candidate = await scanPluginDir(this.config, entry.candidate.pluginDir, id, this.others(id));
    return this.set.serially(async () => {
      this.assertChangeable(candidate);
      const now = this.set.entries.get(id);
      if (now === undefined || now.state === 'draining')
        throw new ReedError('plugin_not_loaded', `plugin "${id}" is not in the host`, { pluginId: id });
      return this.set.upgrade(now, candidate);
    });
  }

  /** Before a removal: an installed plugin is no longer loaded at the next start. */
  forget(id: string): void {
    if (this.store.installed().has(id)) this.store.point(id, undefined);
  }

  serving(id: string, generation: Generation): void {
    const dir = generation.candidate.pluginDir;
    if (this.store.owns(dir)) this.store.point(id, dir, generation.version);
    // A version from plugin_dirs serves now (a reload, a rollback to it): the next start finds it there.
    else if (this.store.installed().has(id)) this.store.point(id, undefined);
  }

  retired(_id: string, generation: Generation): void {
    void this.store.discard(generation.candidate.pluginDir);
  }
}
