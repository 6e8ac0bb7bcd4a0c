import { ReedError } from '../src/errors.js';
import {
  type HostCallMeta,
  type HostReply,
  hostCallFrame,
  hostCallResult,
} from '../src/protocol/host-calls.js';
import {
  HOST_CALL_NAMES,
  type HostApi,
  type HostArg,
  type RunnerAnsweredName,
} from '../src/runtime/host-api.js';
import { configurationJson } from '../src/runtime/host-api-calls.js';

export interface RunnerHostApiOptions {
  /** Sends a plugin's log line to the host (a Log frame, from the main thread). */
  log: (level: number, message: string) => void;
  /** The plugin's [configuration], as the host sent it: config_get answers from it. */
  configuration: Record<string, unknown>;
  /**
   * Asks the host and waits for its reply. Absent for a plugin loaded without host calls (a WASM module that
   * imports none of the functions a runner must ask for): they cannot happen, and fail if they did.
   */
  ask?: (call: { meta: HostCallMeta; body?: Uint8Array }) => HostReply;
}

/**
 * The HostApi inside a runner, from the host API table: the functions whose row says `reply` are asked of the
 * host, which checks permissions and quotas (the runner can only ask); the others are answered here, by the
 * implementations below. Synchronous for the plugin, whichever thread it runs on.
 */
export function runnerHostApi(o: RunnerHostApiOptions): HostApi {
  const answeredHere: Pick<HostApi, RunnerAnsweredName> = {
    log: o.log,
    config_get: (key) => configurationJson(o.configuration, key),
  };
  const api: Record<string, unknown> = { ...answeredHere };
  const { ask } = o;
  for (const name of HOST_CALL_NAMES) {
    api[name] = (...args: HostArg[]) => {
      if (ask === undefined)
        throw new ReedError('sandbox_crashed', 'this plugin was loaded without host calls');
      return hostCallResult(name, ask(hostCallFrame(name, args)));
    };
  }
  // Complete by construction: the answered-here names are typed above, the asked ones are every other name.
  return api as HostApi;
}
