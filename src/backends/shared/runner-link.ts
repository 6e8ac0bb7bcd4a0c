import type { Socket } from 'node:net';
import { isCode } from '../../codes.js';
import { ReedError } from '../../errors.js';
import type { FilesystemGrant } from '../../manifest/data-dir.js';
import {
  type Frame,
  FrameType,
  MAX_ERROR_MESSAGE,
  MAX_LOG_MESSAGE,
  ProtocolError,
} from '../../protocol/frames.js';
import { answerHostCall, checkLeaseRequest, LEASE_OP, QuotaRefusals } from '../../protocol/host-calls.js';
import { boundedDetails, isStringArray, type PluginSpec } from '../../protocol/messages.js';
import type { CallWasi } from '../../runtime/call-wasi.js';
import type { HostApi } from '../../runtime/host-api.js';
import type { LeaseAnswer } from '../../runtime/wasm/quota-leases.js';
import { escapeUnprintable } from '../../safe-text.js';
import { type ConnectionOptions, RunnerConnection } from '../../transport/connection.js';
import { DiskLedgerHold } from './disk-ledger.js';
import { PendingCalls } from './pending-calls.js';

/**
 * Bytes the host may have queued for a runner that has not read them before it refuses that runner's next call
 * (`runner_backlogged`). A runner that stops reading its socket (hostile, or wedged) would otherwise make the host
 * hold every call's input sent to it until the calls time out: memory without a bound, under load. One call is
 * always let through onto an empty queue, whatever its size (inputs are bounded by max_input_bytes), so the most
 * held for one runner is this plus one call's frame. Replies to its host calls need no bound of their own: the
 * host stops reading from a runner that leaves UNREAD_HIGH_WATER of them unread (connection.ts).
 */
export const MAX_UNSENT_TO_RUNNER = 32 * 1024 * 1024;

export interface LinkOptions extends ConnectionOptions {
  host: HostApi;
  /**
   * The plugin's max_output_bytes and fuel_per_call, which the host holds a Result to as well: a runner enforces
   * both itself, but one that plugin code took over could answer with more (up to its frame bound) or claim any fuel.
   */
  maxOutputBytes: number;
  maxFuelPerCall: number;
}

/**
 * Where a call's answer goes (RunnerLink.request): callbacks rather than a promise of the link's own, so that a
 * sandbox's call settles its caller's one promise straight from the frame (bench/process: each promise between
 * the frame and the caller costs the host a reaction job per call).
 */
export interface CallReply {
  /** The runner's Result; `ran`: when it ran the call (epoch ms, the runner's word), for a traced call. */
  result(output: Uint8Array, fuelConsumed: number, ran?: { startedAt: number; endedAt: number }): void;
  /** The runner's Error for this call, or the end of the connection. */
  error(error: ReedError): void;
}

/**
 * The host's end of the protocol with one runner (docs/PROTOCOL.md), over a connection whatever its transport
 * (framing and the Hello handshake: src/transport/connection.ts). Every frame from the runner is hostile input:
 * size-checked by the decoder, type- and schema-checked here; a bad one ends the link (and the sandbox),
 * never the host. Host API calls from the runner go to the same HostApi as in mode `none`, so the host's
 * permission checks apply unchanged.
 */
export class RunnerLink {
  #o: LinkOptions;
  readonly #connection: RunnerConnection;
  /** Not a Map: see PendingCalls (a Map here made the host's scavenges keep every call's garbage). */
  readonly #pending = new PendingCalls<CallReply>();
  /**
   * The one Ping sent and not yet answered, and who waits for its Pong (each until its own timeout). A runner that
   * runs a call on its main thread (a WASM plugin without host calls, sandbox-runner/main.ts) answers a Ping only
   * when the call ends, and the supervisor pings with a timeout shorter than some calls: the Pong that comes late is
   * still this ping's, and nobody sends another Ping before it comes (a new one would only queue behind it). So a
   * late Pong is let by however many pings timed out meanwhile; a Pong for any other id ends the link.
   */
  #ping: { id: number; waiters: Set<(alive: boolean) => void> } | undefined;
  /** The quota refusals answered to this runner: the only quota_exceeded details its Error frames may carry. */
  readonly #refusals = new QuotaRefusals();
  /** The next call or ping id (the wire's 1 to 2^32 - 1), and whether they have wrapped round once (#newId). */
  #nextId = 1;
  #wrapped = false;
  /** After the connection's handshake: waiting for Ready, then ready, until closed. */
  #state: 'welcome' | 'ready' | 'closed' = 'welcome';
  #onReady: ((result: string[] | ReedError) => void) | undefined;
  #onBye: (() => void) | undefined;
  #closeListeners: ((error: ReedError) => void)[] = [];
  functions: string[] = [];

  constructor(socket: Socket, options: LinkOptions) {
    this.#o = options;
    this.#connection = new RunnerConnection(socket, options, {
      frame: (frame) => this.#handle(frame),
      closed: (error) => this.#closed(error),
    });
  }

  /** Resolves once the runner presented the right plugin id, protocol and secret (connection.ts). */
  handshake(): Promise<void> {
    return this.#connection.handshake();
  }

  /**
   * A warm runner (src/backends/pool/) handed to a plugin: the link now speaks for that plugin (its id in messages,
   * its host API for the runner's host calls, its frame bound). Before `welcome` only: the runner has been sent
   * nothing, so nothing it did was on behalf of another plugin.
   */
  adopt(
    o: Pick<
      LinkOptions,
      'pluginId' | 'host' | 'logger' | 'maxFrameBytes' | 'maxOutputBytes' | 'maxFuelPerCall'
    >,
  ): void {
    if (this.#welcomed) throw new Error('a runner that was sent a plugin is never handed another');
    this.#o = { ...this.#o, ...o };
    this.#connection.adopt(o.pluginId, o.maxFrameBytes);
  }

  #welcomed = false;
  /** The runner's part in its data directory's ledger, when it may write one (disk-ledger.ts). */
  #ledger: DiskLedgerHold | undefined;

  /**
   * Sends the plugin and resolves with its callable functions once its init ran. `dataDir`: the host's own grant
   * of the plugin's data directory (its path and quotas), whose ledger this runner's writes are leased from.
   */
  welcome(spec: PluginSpec, bytes: Uint8Array, dataDir?: FilesystemGrant): Promise<string[]> {
    this.#state = 'welcome';
    this.#welcomed = true;
    this.#ledger = DiskLedgerHold.forGrant(dataDir);
    return new Promise((resolve, reject) => {
      this.#onReady = (result) => (result instanceof ReedError ? reject(result) : resolve(result));
      this.#send(FrameType.Welcome, 0, { plugin: spec }, bytes);
    });
  }

  /** `wasi`: this call's WASI arguments and environment (checked by the host), carried in the Call frame. */
  call(
    fn: string,
    input: Uint8Array,
    wasi?: CallWasi,
  ): Promise<{ output: Uint8Array; fuelConsumed: number }> {
    return new Promise((resolve, reject) =>
      this.request(fn, input, wasi, {
        result: (output, fuelConsumed) => resolve({ output, fuelConsumed }),
        error: reject,
      }),
    );
  }

  /** `call` without a promise: the answer goes to `reply`, exactly once (at once when the runner is not ready). */
  request(
    fn: string,
    input: Uint8Array,
    wasi: CallWasi | undefined,
    reply: CallReply,
    traceParent?: string,
  ): void {
    if (this.#state !== 'ready') {
      reply.error(
        new ReedError('sandbox_crashed', `the runner of plugin "${this.#o.pluginId}" is not connected`),
      );
      return;
    }
    const unsent = this.#connection.unsentBytes;
    if (unsent >= MAX_UNSENT_TO_RUNNER) {
      reply.error(
        new ReedError(
          'runner_backlogged',
          `the runner of plugin "${this.#o.pluginId}" has not read ${unsent} bytes the host sent it (the bound is ${MAX_UNSENT_TO_RUNNER}); call "${escapeUnprintable(fn.slice(0, 256))}" was refused`,
          { pluginId: this.#o.pluginId, details: { unsentBytes: unsent, limit: MAX_UNSENT_TO_RUNNER } },
        ),
      );
      return;
    }
    const id = this.#newId();
    this.#pending.add(id, reply);
    const meta: { fn: string; wasi?: CallWasi; trace?: string } = { fn };
    if (wasi !== undefined) meta.wasi = wasi;
    if (traceParent !== undefined) meta.trace = traceParent;
    this.#send(FrameType.Call, id, meta, input);
  }

  /**
   * An id for a call or a ping, as the wire carries it (a frame's id is 32 bits). After 2^32 - 1 of them the ids
   * start again at 1 (before, the 2^32nd call's reply came back under another id than the one waited for and
   * ended the link), skipping any id still waiting then.
   */
  #newId(): number {
    for (;;) {
      const id = this.#nextId;
      if (id === 0xffff_ffff) {
        this.#nextId = 1;
        this.#wrapped = true;
      } else this.#nextId = id + 1;
      if (!this.#wrapped || !(this.#pending.has(id) || this.#ping?.id === id)) return id;
    }
  }

  /** Test seam: the next id a call or ping gets (test/unit/pending-calls: the wrap at 2^32). */
  set nextIdForTest(id: number) {
    this.#nextId = id;
  }

  /** Whether the runner answers a Ping within `timeoutMs` (false at once when it is not ready). See #ping. */
  ping(timeoutMs: number): Promise<boolean> {
    if (this.#state !== 'ready') return Promise.resolve(false);
    let ping = this.#ping;
    if (ping === undefined) {
      ping = { id: this.#newId(), waiters: new Set() };
      this.#ping = ping;
      this.#send(FrameType.Ping, ping.id);
    }
    const { waiters } = ping;
    return new Promise((resolve) => {
      const waiter = (alive: boolean) => {
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve(alive);
      };
      const timer = setTimeout(() => waiter(false), timeoutMs);
      waiters.add(waiter);
    });
  }

  /** Asks the runner to run deactivate and exit; resolves on Bye or when the connection closes. */
  shutdown(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    return new Promise((resolve) => {
      this.#onBye = resolve;
      this.#closeListeners.push(() => resolve());
      this.#send(FrameType.Shutdown, 0);
    });
  }

  onClose(listener: (error: ReedError) => void): void {
    this.#closeListeners.push(listener);
  }

  destroy(error?: ReedError): void {
    this.#connection.close(
      error ??
        new ReedError('sandbox_crashed', `the sandbox of plugin "${this.#o.pluginId}" was stopped`, {
          pluginId: this.#o.pluginId,
        }),
    );
  }

  get ready(): boolean {
    return this.#state === 'ready';
  }

  #send(type: FrameType, id: number, meta?: object, body?: Uint8Array): void {
    this.#connection.send(type, id, meta, body);
  }

  #handle(frame: Frame): void {
    const m = frame.meta;
    switch (frame.type) {
      case FrameType.Ready: {
        if (this.#state !== 'welcome' || !isStringArray(m.functions))
          throw new ProtocolError('unexpected or malformed Ready frame');
        this.functions = m.functions;
        this.#state = 'ready';
        this.#onReady?.(m.functions);
        return;
      }
      case FrameType.Result: {
        // Checked before the call is taken from the waiting ones: a refused frame leaves it there, answered
        // when the link closes (a call taken first was never answered at all).
        const claimed = m.fuelConsumed;
        if (typeof claimed !== 'number' || !Number.isFinite(claimed) || claimed < 0)
          throw new ProtocolError('malformed Result frame');
        // No call can burn more than its fuel_per_call: a larger claim is counted as that (usage, metrics).
        const fuel = Math.min(claimed, this.#o.maxFuelPerCall);
        if (frame.body.byteLength > this.#o.maxOutputBytes) {
          this.#takePending(frame.id).error(this.#outputTooLarge(frame.body.byteLength));
          return;
        }
        const ran = m.ran;
        if (ran === undefined) {
          this.#takePending(frame.id).result(frame.body, fuel);
          return;
        }
        // A traced call's times: two finite numbers, nothing else (the host keeps them within the call's own).
        if (
          !Array.isArray(ran) ||
          ran.length !== 2 ||
          !ran.every((t) => typeof t === 'number' && Number.isFinite(t))
        )
          throw new ProtocolError('malformed Result frame');
        this.#takePending(frame.id).result(frame.body, fuel, {
          startedAt: ran[0] as number,
          endedAt: ran[1] as number,
        });
        return;
      }
      case FrameType.Error: {
        const error = this.#errorFrom(m);
        if (frame.id === 0) {
          if (this.#state === 'welcome') this.#onReady?.(error);
          else this.#connection.close(error);
          return;
        }
        this.#takePending(frame.id).error(error);
        return;
      }
      case FrameType.HostCall:
        this.#hostCall(frame);
        return;
      case FrameType.Log: {
        if (typeof m.level !== 'number' || typeof m.message !== 'string')
          throw new ProtocolError('malformed Log frame');
        // Cut here, before anything measures or copies it: the plugin's own log_line_bytes applies after.
        this.#o.host.log(
          m.level,
          m.message.length > MAX_LOG_MESSAGE ? m.message.slice(0, MAX_LOG_MESSAGE) : m.message,
        );
        return;
      }
      case FrameType.Pong: {
        const ping = this.#ping;
        if (ping === undefined || ping.id !== frame.id)
          throw new ProtocolError(`Pong for unknown ping ${frame.id}`);
        this.#ping = undefined;
        for (const waiter of ping.waiters) waiter(true);
        return;
      }
      case FrameType.Bye:
        this.#onBye?.();
        return;
      default:
        throw new ProtocolError(`frame type ${frame.type} is not one a runner may send`);
    }
  }

  /** A Result larger than the plugin's max_output_bytes: what the runner should have answered (it did not). */
  #outputTooLarge(bytes: number): ReedError {
    const limit = this.#o.maxOutputBytes;
    return new ReedError(
      'output_too_large',
      `the runner of plugin "${this.#o.pluginId}" answered ${bytes} bytes of output, more than ${limit} (limits.max_output_bytes)`,
      { pluginId: this.#o.pluginId, details: { bytes, limit } },
    );
  }

  #takePending(id: number): CallReply {
    const pending = this.#pending.take(id);
    if (pending === undefined) throw new ProtocolError(`reply for unknown call ${id}`);
    return pending;
  }

  #errorFrom(m: Record<string, unknown>): ReedError {
    if (typeof m.code !== 'string' || typeof m.message !== 'string')
      throw new ProtocolError('malformed Error frame');
    // Codes keep their meaning across the wire; an unknown one is the runner's own failure.
    const code = isCode(m.code) ? m.code : 'sandbox_crashed';
    // The message is shown wherever errors are (a terminal, a log viewer): escaped here, once, as it arrives.
    // Details are kept only when flat and small: what serializes them later must not overflow or bloat.
    const details = this.#refusals.vouch(code, boundedDetails(m.details));
    return new ReedError(code, escapeUnprintable(m.message.slice(0, MAX_ERROR_MESSAGE)), {
      pluginId: this.#o.pluginId,
      ...(details === undefined ? {} : { details }),
    });
  }

  /** A host API call from the runner, answered by the table's wire encoding (protocol/host-calls.ts). */
  #hostCall(frame: Frame): void {
    if (frame.meta.op === LEASE_OP) {
      this.#send(FrameType.HostReply, frame.id, { ok: true, value: this.#lease(frame.meta) });
      return;
    }
    const reply = answerHostCall(this.#o.host, frame.meta, frame.body);
    this.#refusals.note(reply.meta);
    this.#send(FrameType.HostReply, frame.id, reply.meta, reply.body);
  }

  /** A runner's `fs_lease` (quota-leases.ts): from a runner that may write a data directory, well formed. */
  #lease(meta: Record<string, unknown>): LeaseAnswer {
    const ledger = this.#ledger;
    const request = checkLeaseRequest(meta.lease);
    if (ledger === undefined || request === undefined)
      throw new ProtocolError(
        ledger === undefined
          ? 'fs_lease from a runner given no writable data directory'
          : 'malformed fs_lease',
      );
    return ledger.lease(request);
  }

  /** The connection ended (connection.ts): everything waiting on this runner fails with `error`. */
  #closed(error: ReedError): void {
    this.#ledger?.release();
    this.#state = 'closed';
    this.#onReady?.(error);
    // Whoever waits for a Pong has the answer now: none will come.
    const ping = this.#ping;
    this.#ping = undefined;
    for (const waiter of ping?.waiters ?? []) waiter(false);
    const pending = this.#pending.drain();
    // Listeners first: a call's reply runs at once (no promise in between), and the supervisor's listener is what
    // records why the runner was lost, which the call then reports.
    for (const listener of this.#closeListeners) listener(error);
    for (const p of pending) p.error(error);
  }
}
