import type { Logger } from 'pino';
import { type EventName, type ReedEvents, subscribeEvent } from './events.js';

type LogLines = { [N in EventName]?: (event: ReedEvents[N], logger: Logger) => void };

/**
 * The log line each lifecycle event becomes: the same lines the host and the supervisor wrote themselves before
 * events existed (tests and operators read them). No line for calls: `reed:call:finished` stays without a
 * subscriber unless metrics ask for it, so the call path pays nothing.
 */
const LINES: LogLines = {
  'reed:plugin:loaded': (e, log) =>
    log.info({ pluginId: e.pluginId, sandbox: e.mode, version: e.version }, 'plugin ready'),
  'reed:plugin:failed': (e, log) =>
    log.error({ pluginId: e.pluginId, sandbox: e.mode, code: e.error.code }, e.error.message),
  'reed:plugin:upgraded': (e, log) =>
    log.info(
      { pluginId: e.pluginId, sandbox: e.mode, version: e.version, fromVersion: e.fromVersion },
      'plugin upgraded',
    ),
  'reed:plugin:upgrade-failed': (e, log) =>
    log.error(
      {
        pluginId: e.pluginId,
        sandbox: e.mode,
        version: e.version,
        fromVersion: e.fromVersion,
        code: e.error.code,
      },
      `upgrade failed: ${e.error.message}`,
    ),
  'reed:plugin:rolled-back': (e, log) =>
    log.error(
      {
        pluginId: e.pluginId,
        sandbox: e.mode,
        version: e.version,
        fromVersion: e.fromVersion,
        code: e.error.code,
      },
      `rolled back to ${e.version}: ${e.error.message}`,
    ),
  'reed:plugin:removed': (e, log) =>
    log.info({ pluginId: e.pluginId, sandbox: e.mode, version: e.version }, 'plugin removed'),
  'reed:plugin:stopped': (e, log) => {
    if (e.drainTimedOut === true)
      log.warn(
        { pluginId: e.pluginId, sandbox: e.mode, version: e.version },
        'calls were still in flight when the drain timed out (lifecycle.drain_timeout_ms)',
      );
    if (e.error === undefined) return;
    // Code and a cut message only: whatever the plugin put in the error must not flood the log.
    log.warn(
      { pluginId: e.pluginId, code: e.error.code, why: String(e.error.message).slice(0, 2048) },
      'deactivate failed',
    );
  },
  'reed:sandbox:started': (e, log) =>
    log.info(
      {
        pluginId: e.pluginId,
        sandbox: e.mode,
        pid: e.pid,
        ...(e.pooled === true ? { pooled: true } : {}),
        enforced: e.enforced,
        notEnforced: e.notEnforced,
      },
      'runner ready',
    ),
  'reed:sandbox:crashed': (e, log) => {
    // Without a restart the breaker opened: its own line says so.
    if (e.restartInMs === undefined) return;
    log.warn(
      { pluginId: e.pluginId, sandbox: e.mode, code: e.error.code, restartInMs: e.restartInMs },
      `${e.error.message}; restarting`,
    );
  },
  'reed:sandbox:restarted': (e, log) =>
    log.debug({ pluginId: e.pluginId, sandbox: e.mode, downtimeMs: e.downtimeMs }, 'runner restarted'),
  'reed:sandbox:idled': (e, log) =>
    log.info(
      { pluginId: e.pluginId, sandbox: e.mode, pid: e.pid, idleTimeoutMs: e.idleTimeoutMs, reason: e.reason },
      `idled: ${e.reason}`,
    ),
  'reed:sandbox:woke': (e, log) =>
    log.info(
      { pluginId: e.pluginId, sandbox: e.mode, pid: e.pid, wakeMs: e.wakeMs, reason: e.reason },
      `woke: ${e.reason}`,
    ),
  'reed:breaker:opened': (e, log) => {
    const cause = e.error.cause as { code?: string } | undefined;
    log.error(
      { pluginId: e.pluginId, sandbox: e.mode, code: cause?.code ?? e.error.code, retryAt: e.retryAt },
      e.error.message,
    );
  },
  'reed:breaker:half-open': (e, log) =>
    log.info({ pluginId: e.pluginId, sandbox: e.mode }, 'breaker half-open: one trial start'),
  'reed:breaker:closed': (e, log) =>
    log.info(
      { pluginId: e.pluginId, sandbox: e.mode, pid: e.pid },
      'breaker closed: the plugin serves again',
    ),
};

/**
 * Writes the lifecycle events of one host (its session id) to `logger`; returns the unsubscribe. A subscriber
 * must never throw (Node rethrows on the next tick, docs in events.ts): a logger that fails loses the line.
 */
export function logEvents(logger: Logger, session: string): () => void {
  const unsubscribes = (Object.keys(LINES) as EventName[]).map((name) =>
    subscribeEvent(name, (event) => {
      if (event.session !== session) return;
      try {
        (LINES[name] as (event: ReedEvents[EventName], logger: Logger) => void)(event, logger);
      } catch {}
    }),
  );
  return () => {
    for (const unsubscribe of unsubscribes) unsubscribe();
  };
}
