import { posix } from 'node:path';
import { ReedError } from '../errors.js';
import { jsonTooDeep } from '../manifest/config-check.js';
import type { FilesystemGrant } from '../manifest/data-dir.js';
import type { ResolvedLimits } from '../manifest/limits.js';
import type { ModuleExport } from '../runtime/wasm/prepare-module.js';
import { MAX_DETAILS_BYTES, MAX_DETAILS_DEPTH, MAX_ERROR_MESSAGE, MAX_LOG_MESSAGE } from './frames.js';

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
  /** WASM: the host's log level (pino's name), which an Extism plugin's get_log_level answers. Default info. */
  logLevel?: string;
  /**
   * WASM only, when permissions.filesystem is granted: the plugin's data directory as the runner sees it (the
   * bind mount at RUNNER_DATA_DIR) and its quotas, which the runner hands to WASI. Absent: no preopen.
   */
  filesystem?: FilesystemGrant;
}

/**
 * A Welcome's `plugin.filesystem`, checked before the runner hands it to WASI: absent, or an absolute normalised
 * directory path, a guest name, a read-only flag and two quotas (non-negative safe integers). Anything else is a
 * `protocol_violation` (the host sends what planLoad made: a runner that gets something else must not guess).
 */
export function checkFilesystemSpec(value: unknown, pluginId: string): FilesystemGrant | undefined {
  if (value === undefined) return undefined;
  const v = value as Record<string, unknown>;
  const quota = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  const path = (p: unknown) =>
    typeof p === 'string' &&
    p.length < 4096 &&
    p.startsWith('/') &&
    !p.includes('\0') &&
    posix.normalize(p) === p;
  if (
    v === null ||
    typeof v !== 'object' ||
    Array.isArray(v) ||
    !path(v.hostPath) ||
    !path(v.guestName) ||
    typeof v.readOnly !== 'boolean' ||
    !quota(v.diskBytes) ||
    !quota(v.maxFiles)
  ) {
    throw new ReedError(
      'protocol_violation',
      `the host sent plugin "${pluginId}" a filesystem grant that is not one (a data directory path, a guest name, readOnly, diskBytes, maxFiles)`,
      { pluginId },
    );
  }
  return {
    hostPath: v.hostPath as string,
    guestName: v.guestName as string,
    readOnly: v.readOnly as boolean,
    diskBytes: v.diskBytes as number,
    maxFiles: v.maxFiles as number,
  };
}

/** Whether `value` is an array of strings, of at most 100,000 (a frame's list: functions, arguments, keys). */
export function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.length <= 100_000 && value.every((v) => typeof v === 'string');
}

/** Error frame metadata. */
export interface ErrorPayload {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/**
 * An error as Error frame metadata: a ReedError keeps its code and details; anything else is the runner's own
 * failure. Cut to what the host accepts (MAX_ERROR_MESSAGE, boundedDetails), so a long message or large details
 * of the runner's own never cost the sandbox a protocol_violation.
 */
export function errorPayload(error: unknown): ErrorPayload {
  if (!(error instanceof ReedError))
    return {
      code: 'sandbox_crashed',
      message: String((error as Error)?.message ?? error).slice(0, MAX_ERROR_MESSAGE),
    };
  const details = boundedDetails(error.details);
  return {
    code: error.code,
    message: error.message.slice(0, MAX_ERROR_MESSAGE),
    ...(details === undefined ? {} : { details }),
  };
}

/** A plugin's log line as Log frame metadata, cut to MAX_LOG_MESSAGE (the ceiling of limits.log_line_bytes). */
export function logPayload(level: number, message: string): { level: number; message: string } {
  return { level, message: message.length > MAX_LOG_MESSAGE ? message.slice(0, MAX_LOG_MESSAGE) : message };
}

/**
 * `details` when they are an object whose JSON is at most MAX_DETAILS_BYTES long and MAX_DETAILS_DEPTH deep (the
 * flat facts details are for: a plugin's code, a status), as a fresh copy of what was measured; else undefined.
 * Never throws: details too deep to serialize are simply not kept.
 */
export function boundedDetails(details: unknown): Record<string, unknown> | undefined {
  if (details === null || typeof details !== 'object' || Array.isArray(details)) return undefined;
  let text: string;
  try {
    text = JSON.stringify(details);
  } catch {
    return undefined;
  }
  if (text.length > MAX_DETAILS_BYTES || Buffer.byteLength(text) > MAX_DETAILS_BYTES) return undefined;
  if (jsonTooDeep(text, MAX_DETAILS_DEPTH)) return undefined;
  return JSON.parse(text) as Record<string, unknown>;
}
