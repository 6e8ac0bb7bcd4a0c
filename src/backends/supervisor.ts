import type { Logger } from 'pino';
import { ReedError } from '../errors.js';
import { publish } from '../events/events.js';
import type { ResolvedLimits } from '../manifest/limits.js';
import type { SandboxMode } from '../manifest/types.js';
import type {
  CallOptions,
  CallOutcome,
  Sandbox,
  SandboxHealth,
  SandboxStatus,
  SandboxUsage,
} from './sandbox.js';
import { CallDeadlines, type Deadline, now } from './shared/call-deadlines.js';
import { IdleClock } from './shared/idle-clock.js';
import type { Runner } from './shared/runner.js';
import { eventSource } from './shared/session.js';

export interface Supervision {
  /** Spawn to ready. Default 10,000 ms. */
  startTimeoutMs: number;
  /** How long a graceful stop may take at each step (deactivate, then SIGTERM) before the next. Default 2,000 ms. */
  graceMs: number;
  /** First restart delay after a crash; doubles per crash in a row. Default 100 ms. */
  restartBaseMs: number;
  restartMaxMs: number;
  /** Crashes within `crashWindowMs` that mark the plugin failed (the breaker opens). Default 5 in 60,000 ms. */
  maxCrashes: number;
  crashWindowMs: number;
  /**
   * How long an open breaker stays open before it half-opens (one trial start: success closes it, failure opens it
   * again). Doubles with each opening in a row, up to `breakerCooldownMaxMs`; a call or health ping answered after
   * the breaker closed starts the doubling over. Default 5,000 ms, at most 300,000 ms.
   */
  breakerCooldownMs: number;
  breakerCooldownMaxMs: number;
  /** Ping the runner this often; one that does not answer within `healthTimeoutMs` is replaced. 0: never. Default 10,000 ms. */
  healthIntervalMs: number;
  healthTimeoutMs: number;
}

/** A call's options when it gave none: one object for them all, not one made a call. */
const NO_OPTIONS: CallOptions = Object.freeze({});

export const DEFAULT_SUPERVISION: Readonly<Supervision> = Object.freeze({
  startTimeoutMs: 10_000,
  graceMs: 2_000,
  restartBaseMs: 100,
  restartMaxMs: 5_000,
  maxCrashes: 5,
  crashWindowMs: 60_000,
  breakerCooldownMs: 5_000,
  breakerCooldownMaxMs: 300_000,
  healthIntervalMs: 10_000,
  healthTimeoutMs: 2_000,
});

export interface SupervisedSandboxOptions {
  pluginId: string;
  /** The mode this sandbox reports (the backend that made it). */
  mode: SandboxMode;
  /** Makes a runner for each (re)start: the backend's own kind (a child process, a container). */
  createRunner: () => Runner;
  /** The plugin's limits: its call deadline, and the memory limit an OOM kill is reported against. */
  limits: ResolvedLimits;
  logger: Logger;
  /** The host's session: the events this sandbox publishes name it (src/events/events.ts). */
  session: { id: string; tenant?: string };
  supervision?: Partial<Supervision>;
  /**
   * Scale to zero (the plan's `idle_timeout`): after this long without a call the runner is stopped as on a normal
   * stop (deactivate first) and the next call starts one again through `createRunner`. 0 or absent: never.
   */
  idleTimeoutMs?: number;
}

/**
 * The supervisor of a plugin's runners, whatever backend makes them (process, container): every call crosses the
 * runner's connection. Supervision: a deadline per call (on expiry the runner's process group is killed, the caller gets
 * `call_timeout`, and a new runner starts), restarts after crashes with exponential backoff, a breaker that
 * marks the plugin failed after too many crashes and half-opens after a cool-down (one trial start), health
 * pings, and a stop that runs deactivate, then
 * SIGTERM, then SIGKILL, and leaves no process, socket or directory behind (the runner's `destroy`).
 * This file is over 300 lines because supervision is one state machine (start, loss, backoff, breaker, call,
 * close) whose transitions read best side by side.
 */
export class SupervisedSandbox implements Sandbox {
  readonly mode: SandboxMode;
  readonly pluginId: string;
  readonly #o: SupervisedSandboxOptions;
  readonly #s: Supervision;
  #runner: Runner | undefined;
  #ready: Promise<void> = Promise.reject(new ReedError('plugin_not_loaded', 'not started'));
  #state: 'new' | 'starting' | 'ready' | 'restarting' | 'idle' | 'failed' | 'closed' = 'new';
  #failure: ReedError | undefined;
  #crashes: number[] = [];
  #inARow = 0;
  /** The last crash or failed start, for the status. */
  #lastError: ReedError | undefined;
  /** The breaker: closed, open (state failed, half-opens at `#retryAt`), or half-open (one trial start). */
  #breaker: 'closed' | 'open' | 'half-open' = 'closed';
  /** Openings in a row (the cool-down doubles with each); back to 0 once the plugin answers after a close. */
  #opens = 0;
  #retryAt: number | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  /** Scale to zero's clock; undefined when the plugin has no idle_timeout. */
  readonly #idle: IdleClock | undefined;
  /** The stop of an idled runner (deactivate, then SIGTERM, then SIGKILL), while it runs or once it has. */
  #idleStop: Promise<void> | undefined;
  /** Runners stopped for idling: their exit is not a loss (no crash, no restart). */
  readonly #idled = new WeakSet<Runner>();
  /** A wake under way: why, and since when (now()'s clock). */
  #waking: { reason: string; since: number } | undefined;

  constructor(options: SupervisedSandboxOptions) {
    this.#o = options;
    this.mode = options.mode;
    this.pluginId = options.pluginId;
    this.#s = { ...DEFAULT_SUPERVISION, ...options.supervision };
    this.#ready.catch(() => {});
    const idleMs = options.idleTimeoutMs ?? 0;
    this.#idle =
      idleMs > 0
        ? new IdleClock(
            idleMs,
            () => this.#inFlight > 0,
            () => this.#goIdle(),
          )
        : undefined;
  }

  /** The current runner, for tests and benchmarks (its pid, its directory). */
  get runner(): Runner | undefined {
    return this.#runner;
  }

  get state(): string {
    return this.#state;
  }

  /** The current runner's cgroup accounting (undefined between runners). */
  usage(): SandboxUsage | undefined {
    return this.#state === 'ready' ? this.#runner?.usage?.() : undefined;
  }

  /** What is true now: the state, the crashes in the window, the last crash, and the breaker's next trial. */
  status(): SandboxStatus {
    const now = Date.now();
    const crashes = this.#crashes.filter((t) => now - t < this.#s.crashWindowMs).length;
    const state = this.#state === 'closed' ? 'stopped' : this.#state === 'new' ? 'starting' : this.#state;
    return {
      state,
      crashes,
      breaker: this.#breaker,
      ...(this.#lastError === undefined
        ? {}
        : { lastError: { code: this.#lastError.code, message: this.#lastError.message } }),
      ...(this.#breaker === 'open' && this.#retryAt !== undefined
        ? { retryAt: new Date(this.#retryAt).toISOString() }
        : {}),
    };
  }

  async start(): Promise<void> {
    this.#state = 'starting';
    this.#ready = this.#launch();
    await this.#ready;
    if (this.#s.healthIntervalMs > 0) {
      this.#healthTimer = setInterval(() => void this.#checkHealth(), this.#s.healthIntervalMs);
      this.#healthTimer.unref();
    }
  }

  #healthTimer: NodeJS.Timeout | undefined;
  #inFlight = 0;
  /** The deadlines of the calls in flight, on one timer. */
  readonly #deadlines = new CallDeadlines();

  /** A runner that stops answering pings (its main thread is stuck) is replaced like a crashed one. */
  async #checkHealth(): Promise<void> {
    const runner = this.#runner;
    // A runner busy with a call may not answer until the call ends; its deadline covers that.
    if (this.#state !== 'ready' || runner?.link === undefined || this.#inFlight > 0) return;
    if (await runner.link.ping(this.#s.healthTimeoutMs)) {
      this.#opens = 0;
      return;
    }
    if (this.#inFlight > 0) return;
    if (this.#runner === runner && this.#state === 'ready')
      this.#kill(`no answer to a health ping within ${this.#s.healthTimeoutMs} ms`);
  }

  async #launch(): Promise<void> {
    const runner = this.#o.createRunner();
    this.#runner = runner;
    const launchedAt = performance.now();
    try {
      await runner.start();
    } catch (error) {
      await runner.destroy();
      throw error;
    }
    if (this.#state === 'closed') {
      await runner.destroy();
      throw new ReedError(
        'host_closed',
        `the sandbox of plugin "${this.pluginId}" was closed while starting`,
      );
    }
    this.#state = 'ready';
    this.#idle?.arm();
    const lostAt = this.#lostAt;
    this.#lostAt = undefined;
    const waking = this.#waking;
    this.#waking = undefined;
    const at = { ...eventSource(this.#o.session), pluginId: this.pluginId, mode: this.mode };
    const trial = this.#breaker === 'half-open';
    if (trial) {
      // The trial start succeeded: the breaker closes, and the crashes that opened it are forgotten.
      this.#breaker = 'closed';
      this.#crashes = [];
      this.#failure = undefined;
    }
    publish('reed:sandbox:started', {
      ...at,
      pid: runner.pid,
      restart: lostAt !== undefined,
      startMs: performance.now() - launchedAt,
      ...(runner.pooled === true ? { pooled: true } : {}),
      enforced: [
        'call deadline',
        'process group',
        'scrubbed environment',
        'node permission model',
        'seccomp: no ptrace or process_vm_*',
        ...(runner.isolation?.enforced ?? []),
      ],
      notEnforced: runner.isolation?.notEnforced ?? [],
    });
    if (lostAt !== undefined)
      publish('reed:sandbox:restarted', { ...at, pid: runner.pid, downtimeMs: performance.now() - lostAt });
    if (trial) publish('reed:breaker:closed', { ...at, pid: runner.pid });
    if (waking !== undefined)
      publish('reed:sandbox:woke', {
        ...at,
        pid: runner.pid,
        reason: waking.reason,
        wakeMs: now() - waking.since,
      });
    runner.link?.onClose(() => this.#onRunnerLost(runner));
    void runner.exited.then(() => this.#onRunnerLost(runner));
  }

  /**
   * A runner went away without being asked to (or was killed for a deadline): from this moment calls wait for
   * the restart or the breaker, never for the runner that is gone. Then find out why (exit code, signal, OOM),
   * count it, and restart or trip the breaker.
   */
  #onRunnerLost(runner: Runner): void {
    if (
      this.#runner !== runner ||
      this.#idled.has(runner) ||
      this.#state === 'closed' ||
      this.#state === 'failed' ||
      this.#state === 'restarting'
    )
      return;
    this.#state = 'restarting';
    this.#lostAt ??= performance.now();
    const gate = deferred();
    this.#ready = gate.promise;
    const why = (async () => {
      const exit = await Promise.race([
        runner.exited,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 500)),
      ]);
      const oom = await runner.oomKilled();
      const tenant = oom ? await runner.tenantMemoryQuota?.() : undefined;
      if (tenant !== undefined)
        return new ReedError(
          'quota_exceeded',
          `the runner of plugin "${this.pluginId}" was killed because its tenant's sandboxes together reached the tenant's memory quota (memory_mb = ${tenant.limitMb})`,
          {
            pluginId: this.pluginId,
            details: {
              quota: 'memory_mb',
              tenant: tenant.tenant,
              limit: tenant.limitMb,
              retryAfterMs: this.#s.restartBaseMs,
            },
          },
        );
      return oom
        ? new ReedError(
            'memory_limit',
            `the runner of plugin "${this.pluginId}" was killed for exceeding its memory limit (limits.memory_mb = ${this.#o.limits.memoryMb})`,
            { pluginId: this.pluginId },
          )
        : new ReedError(
            'sandbox_crashed',
            `the runner of plugin "${this.pluginId}" stopped (${exit === undefined ? 'connection lost' : (exit.signal ?? `exit code ${exit.code}`)})`,
            {
              pluginId: this.pluginId,
              details: { exitCode: exit?.code ?? null, signal: exit?.signal ?? null },
            },
          );
    })();
    this.#losses.set(runner, why);
    void why.then(async (error) => {
      runner.link?.destroy(error);
      await runner.destroy();
      this.#losses.delete(runner);
      this.#crashed(error, gate);
    });
  }

  /** When the runner that is being replaced was lost (for the restarted event's downtime). */
  #lostAt: number | undefined;

  /** Why a runner was lost, for calls that only saw its connection close. */
  readonly #losses = new Map<Runner, Promise<ReedError>>();

  /**
   * Counts a crash, then either trips the breaker or restarts after a backoff; `gate` settles with the outcome
   * (undefined: the calls waiting were already answered, as after a failed wake; the restart makes a gate of its own).
   */
  #crashed(error: ReedError, gate: Deferred | undefined): void {
    this.#lastError = error;
    if (this.#state === 'closed') {
      gate?.reject(
        new ReedError('plugin_not_loaded', `plugin "${this.pluginId}" was stopped`, {
          pluginId: this.pluginId,
        }),
      );
      return;
    }
    if (error.code === 'docker_unavailable') {
      // Not the plugin's doing: no count towards the breaker. Calls fail at once with it (rather than waiting out
      // their deadline) until the next attempt, which is made with backoff until the engine answers.
      gate?.reject(error);
      this.#restartLater(error, undefined);
      return;
    }
    const now = Date.now();
    this.#crashes = [...this.#crashes.filter((t) => now - t < this.#s.crashWindowMs), now];
    // A failed trial start opens the breaker again at once: half-open allows one attempt.
    if (this.#breaker === 'half-open' || this.#crashes.length >= this.#s.maxCrashes) {
      this.#openBreaker(error, gate);
      return;
    }
    this.#restartLater(error, gate);
  }

  /**
   * Marks the plugin failed: calls fail at once with `plugin_failed` until the cool-down ends, then one trial start
   * (#halfOpen). The cool-down doubles with each opening in a row, up to its cap.
   */
  #openBreaker(error: ReedError, gate: Deferred | undefined): void {
    const trial = this.#breaker === 'half-open';
    const cooldownMs = Math.min(this.#s.breakerCooldownMs * 2 ** this.#opens, this.#s.breakerCooldownMaxMs);
    this.#opens++;
    this.#state = 'failed';
    this.#breaker = 'open';
    this.#retryAt = Date.now() + cooldownMs;
    const retryAt = new Date(this.#retryAt).toISOString();
    const crashes = this.#crashes.length;
    const why = trial
      ? 'its trial start after the breaker\u2019s cool-down failed'
      : `${crashes} crashes within ${this.#s.crashWindowMs} ms`;
    this.#failure = new ReedError(
      'plugin_failed',
      `plugin "${this.pluginId}" is marked failed after ${why}; last: ${error.code}: ${error.message}; next trial at ${retryAt}`,
      { pluginId: this.pluginId, cause: error, details: { causeCode: error.code, crashes, retryAt } },
    );
    const at = { ...eventSource(this.#o.session), pluginId: this.pluginId, mode: this.mode };
    publish('reed:sandbox:crashed', { ...at, error, crashes });
    publish('reed:breaker:opened', {
      ...at,
      error: this.#failure,
      crashes,
      windowMs: this.#s.crashWindowMs,
      cooldownMs,
      retryAt,
    });
    gate?.reject(this.#failure);
    // A cool-down alone does not keep the process alive (close() clears it too).
    this.#restartTimer = setTimeout(() => this.#halfOpen(), cooldownMs).unref();
  }

  /** The cool-down is over: one trial start. Calls made meanwhile wait for it, as for a restart. */
  #halfOpen(): void {
    this.#restartTimer = undefined;
    if (this.#state !== 'failed') return;
    this.#breaker = 'half-open';
    this.#retryAt = undefined;
    this.#state = 'restarting';
    this.#lostAt ??= performance.now();
    const attempt = deferred();
    this.#ready = attempt.promise;
    publish('reed:breaker:half-open', {
      ...eventSource(this.#o.session),
      pluginId: this.pluginId,
      mode: this.mode,
    });
    this.#launch().then(attempt.resolve, (startError: ReedError) => this.#crashed(startError, attempt));
  }

  /**
   * Starts a runner again after the backoff. `gate` settles with the outcome; without one (the last was failed at
   * once), calls made from the attempt on wait for it.
   */
  #restartLater(error: ReedError, gate: Deferred | undefined): void {
    const delay = Math.min(this.#s.restartBaseMs * 2 ** this.#inARow, this.#s.restartMaxMs);
    this.#inARow++;
    publish('reed:sandbox:crashed', {
      ...eventSource(this.#o.session),
      pluginId: this.pluginId,
      mode: this.mode,
      error,
      // The engine's absence is not the plugin's doing: it does not count towards the breaker (#crashed).
      crashes: error.code === 'docker_unavailable' ? 0 : this.#crashes.length,
      restartInMs: delay,
    });
    this.#state = 'restarting';
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      const attempt = gate ?? deferred();
      if (gate === undefined) this.#ready = attempt.promise;
      this.#launch().then(attempt.resolve, (startError: ReedError) => this.#crashed(startError, attempt));
    }, delay);
  }

  /**
   * One promise per call, settled by the result, the deadline or the signal, whichever comes first. This is the
   * hot path of every sandboxed call (bench/process, bench/container): no async function, no promise of the
   * link's own (RunnerLink.request answers into this one), and no timer of its own (the sandbox's CallDeadlines).
   * Past 60 lines: those three outcomes and their clean-up read as one piece.
   */
  call(
    fn: string,
    input: Uint8Array,
    options: CallOptions = NO_OPTIONS,
    startedAt?: number,
  ): Promise<CallOutcome> {
    const { signal } = options;
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    if (this.#state === 'closed')
      return Promise.reject(
        new ReedError('plugin_not_loaded', `plugin "${this.pluginId}" was stopped`, {
          pluginId: this.pluginId,
        }),
      );
    if (this.#state === 'failed') return Promise.reject(this.#failure as ReedError);
    if (this.#state === 'idle') this.#wake(`call ${JSON.stringify(fn.slice(0, 128))}`);
    /** Whether it waits for a wake from idle: that wait is bounded by its deadline. */
    const waking = this.#waking !== undefined;
    const timeoutMs = options.timeoutMs ?? this.#o.limits.callTimeoutMs;
    // The host's clock read for this call when it gave one (Sandbox.call): one read fewer a call.
    const started = startedAt ?? now();
    this.#inFlight++;
    return new Promise<CallOutcome>((resolve, reject) => {
      let done = false;
      /** Whether it waited for a restart before it was sent. */
      let waited = false;
      let deadline: Deadline | undefined;
      let onAbort: (() => void) | undefined;
      /** The first outcome wins; it takes the call out of the counts, the deadlines and the signal. */
      const settle = (): boolean => {
        if (done) return false;
        done = true;
        this.#inFlight--;
        this.#idle?.touch();
        if (deadline !== undefined) this.#deadlines.remove(deadline);
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const fail = (error: unknown) => {
        if (settle()) reject(error);
      };
      if (signal !== undefined) {
        onAbort = () => {
          fail(signal.reason);
          this.#kill('aborted');
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      const send = () => {
        // Settled while it waited for a restart (its signal): it is not sent, and gets no deadline.
        if (done) return;
        // The wait for a wake is over: the plugin's own run gets its whole deadline from here, as after a restart.
        if (deadline !== undefined) this.#deadlines.remove(deadline);
        const runner = this.#runner;
        const link = runner?.link;
        if (runner === undefined || link === undefined || !link.ready) {
          fail(
            new ReedError('sandbox_crashed', `the runner of plugin "${this.pluginId}" is not connected`, {
              pluginId: this.pluginId,
            }),
          );
          return;
        }
        // The deadline bounds the plugin's own run, from the moment the call reaches a ready runner. Waiting
        // for a restart is bounded by the start timeout and the backoff, and a deadline that expired there
        // would kill the runner being started for everyone's next call.
        deadline = this.#deadlines.add((waited ? now() : started) + timeoutMs, () => {
          deadline = undefined;
          fail(
            new ReedError(
              'call_timeout',
              `call ${fn} of plugin "${this.pluginId}" ran past its deadline of ${timeoutMs} ms; the runner was killed and is restarting`,
              { pluginId: this.pluginId },
            ),
          );
          if (this.#runner === runner) this.#kill('deadline');
        });
        link.request(
          fn,
          input,
          options.wasi,
          {
            result: (output, fuelConsumed, ran) => {
              this.#inARow = 0;
              this.#opens = 0;
              // endedAt: the host's call event ends here instead of reading the clock again (CallStats).
              const endedAt = now();
              const stats = { fuelConsumed, durationMs: endedAt - started, endedAt };
              if (settle()) resolve(ran === undefined ? { output, stats } : { output, stats, runner: ran });
            },
            error: (error) => {
              // The connection closed under the call: report what happened to the runner, not only that.
              const why = this.#losses.get(runner);
              if (why === undefined || error.code !== 'sandbox_crashed') fail(error);
              else why.then(fail, fail);
            },
          },
          options.traceParent,
        );
      };
      if (this.#state === 'ready') send();
      else {
        waited = true;
        // A wake from idle is waited for at most the call's deadline; it fails the call, not the start, which
        // goes on for the calls after it (nothing is killed: no runner has this call yet).
        if (waking)
          deadline = this.#deadlines.add(started + timeoutMs, () => {
            deadline = undefined;
            fail(
              new ReedError(
                'call_timeout',
                `call ${fn} of plugin "${this.pluginId}" waited its deadline of ${timeoutMs} ms for the plugin to wake from idle (idle_timeout), and its sandbox was still starting`,
                { pluginId: this.pluginId, details: { waking: true } },
              ),
            );
          });
        this.#ready.then(send, fail);
      }
    });
  }

  /** Kills the current runner's process group; supervision restarts it. */
  #kill(why: string): void {
    const runner = this.#runner;
    if (runner === undefined || this.#state !== 'ready') return;
    this.#o.logger.warn({ pluginId: this.pluginId, sandbox: this.mode, why }, 'killing the runner');
    runner.kill();
    this.#onRunnerLost(runner);
  }

  /**
   * No call for idle_timeout (IdleClock): the runner is stopped as on a normal stop (deactivate, then SIGTERM, then
   * SIGKILL; its directory, socket, cgroup or container removed). Not a loss: no crash is counted, nothing restarts
   * until the next call wakes it (#wake). A call that arrives during the stop waits for it, then for the wake.
   */
  #goIdle(): void {
    const runner = this.#runner;
    if (this.#state !== 'ready' || this.#inFlight > 0 || runner === undefined) return;
    this.#state = 'idle';
    this.#idled.add(runner);
    const idleTimeoutMs = this.#idle?.timeoutMs ?? 0;
    publish('reed:sandbox:idled', {
      ...eventSource(this.#o.session),
      pluginId: this.pluginId,
      mode: this.mode,
      pid: runner.pid,
      idleTimeoutMs,
      reason: `no call for ${idleTimeoutMs} ms (idle_timeout)`,
    });
    this.#idleStop = this.#stopRunner(runner, true).then(
      () => {
        if (this.#runner === runner) this.#runner = undefined;
      },
      (error: unknown) => {
        if (this.#runner === runner) this.#runner = undefined;
        this.#o.logger.warn(
          { pluginId: this.pluginId, sandbox: this.mode, err: error },
          'stopping the idle runner failed',
        );
      },
    );
  }

  /**
   * The first call to an idle sandbox starts a runner again through the normal start path (createRunner: a pool, when
   * the backend has one), once the idle stop has finished. Calls meanwhile wait for it (`#ready`). A start that fails
   * answers them with its own code, then counts as a crash: a restart after the backoff, or the breaker.
   */
  #wake(reason: string): void {
    this.#state = 'starting';
    this.#waking = { reason, since: now() };
    const attempt = deferred();
    this.#ready = attempt.promise;
    void (this.#idleStop ?? Promise.resolve()).then(() => {
      if (this.#state === 'closed') {
        this.#waking = undefined;
        attempt.reject(
          new ReedError('plugin_not_loaded', `plugin "${this.pluginId}" was stopped`, {
            pluginId: this.pluginId,
          }),
        );
        return;
      }
      this.#launch().then(attempt.resolve, (error: ReedError) => {
        this.#waking = undefined;
        attempt.reject(error);
        this.#crashed(error, undefined);
      });
    });
  }

  /** Deactivate (when it is ready for it), then SIGTERM, then SIGKILL, each within the grace; then its clean-up. */
  async #stopRunner(runner: Runner, deactivate: boolean): Promise<void> {
    const grace = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
    if (deactivate && runner.link?.ready === true)
      await Promise.race([runner.link.shutdown(), grace(this.#s.graceMs)]);
    if (runner.alive) {
      await Promise.race([runner.exited, grace(this.#s.graceMs)]);
      if (runner.alive) {
        runner.terminate();
        await Promise.race([runner.exited, grace(this.#s.graceMs)]);
      }
    }
    await runner.destroy();
  }

  async health(): Promise<SandboxHealth> {
    if (this.#state === 'idle') return { ok: true, detail: 'idle' };
    if (this.#state !== 'ready') return { ok: false, detail: this.#state };
    if ((await this.#runner?.link?.ping(1_000)) === true) return { ok: true };
    // As #checkHealth judges it: a runner busy with a call may answer only when the call ends (a WASM plugin without
    // host calls runs it on the runner's main thread), and the call's deadline covers a stuck one.
    if (this.#inFlight > 0 && this.#state === 'ready')
      return { ok: true, detail: `busy with ${this.#inFlight} call(s): no answer to ping within 1000 ms` };
    return { ok: false, detail: 'no answer to ping within 1000 ms' };
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const wasReady = this.#state === 'ready';
      this.#state = 'closed';
      clearTimeout(this.#restartTimer);
      clearInterval(this.#healthTimer);
      this.#idle?.stop();
      // Idle: its runner is gone already, or going (deactivate ran); a wake waiting for that stop now gives up.
      await this.#idleStop;
      const runner = this.#runner;
      if (runner === undefined || this.#idled.has(runner)) return;
      await this.#stopRunner(runner, wasReady);
    })();
    return this.#closing;
  }

  /** Stops at once: SIGKILL, no deactivate. Idempotent. */
  async kill(): Promise<void> {
    this.#state = 'closed';
    clearTimeout(this.#restartTimer);
    clearInterval(this.#healthTimer);
    this.#idle?.stop();
    await this.#runner?.destroy();
    await this.#idleStop;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}
