import { ReedError } from '../errors.js';
import type { ResolvedLimits } from '../host/limits.js';
import type { ModuleExport } from '../runtime/wasm/prepare-module.js';

/** What the host tells a runner to load (Welcome frame metadata); the body holds the module or library bytes. */
export interface PluginSpec {
  id: string;
  type: 'wasm' | 'native';
  apiVersion: string;
  limits: ResolvedLimits;
  wasi: { args: string[]; env: Record<string, string> };
  /** WASM only: the prepared module's exports, and whether it is a WASI command. */
  exports?: ModuleExport[];
  isCommand?: boolean;
  /**
   * Whether the plugin can make host calls that need the host's answer (storage, content, events). When false
   * (a WASM module importing none of them), the runner runs it on its main thread, without a worker.
   */
  hostCalls: boolean;
  /** The plugin's [configuration], which `config_get` answers from without a round trip. */
  configuration: Record<string, unknown>;
}

/** Host API operations a runner may ask for (HostCall frames); each maps to one HostApi method. */
export const HOST_OPS = [
  'storageGet',
  'storagePut',
  'storageDelete',
  'storageList',
  'contentCreate',
  'contentGet',
  'eventEmit',
  'configGet',
] as const;
export type HostOp = (typeof HOST_OPS)[number];

/** An error as Error frame metadata: a ReedError keeps its code and details; anything else is the runner's own failure. */
export function errorPayload(error: unknown): {
  code: string;
  message: string;
  details?: Record<string, unknown>;
} {
  return error instanceof ReedError
    ? {
        code: error.code,
        message: error.message,
        ...(error.details === undefined ? {} : { details: error.details }),
      }
    : { code: 'sandbox_crashed', message: String((error as Error)?.message ?? error) };
}
