import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { isCode } from '../../codes.js';
import { ReedError } from '../../errors.js';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_ERROR_MESSAGE,
  MAX_LOG_MESSAGE,
  PROTOCOL_VERSION,
  ProtocolError,
} from '../../protocol/frames.js';
import { boundedDetails, HOST_OPS, type HostOp, type PluginSpec } from '../../protocol/messages.js';
import type { HostApi } from '../../runtime/host-api.js';
import { escapeUnprintable } from '../../safe-text.js';

export interface LinkOptions {
  pluginId: string;
  /** The one-time secret this sandbox's runner must present. */
  secret: string;
  /** Largest frame accepted from the runner. */
  maxFrameBytes: number;
  host: HostApi;
  logger: Logger;
  /** Deadline for the Hello frame. */
  handshakeTimeoutMs: number;
}

interface Pending {
  resolve: (value: { output: Uint8Array; fuelConsumed: number }) => void;
  reject: (error: ReedError) => void;
}

const MAX_ARG_BYTES = 64 * 1024 * 1024;
/** Bytes of replies a runner may leave unread before the host stops reading from it. */
export const UNREAD_HIGH_WATER = 4 * 1024 * 1024;

/**
 * The host's end of one runner connection (docs/PROTOCOL.md). Every frame from the runner is hostile input:
 * size-checked by the decoder, type- and schema-checked here; a bad one ends the link (and the sandbox),
 * never the host. Host API calls from the runner go to the same HostApi as in mode `none`, so the host's
 * permission checks apply unchanged.
 */
export class RunnerLink {
  readonly #o: LinkOptions;
  readonly #socket: Socket;
  readonly #decoder: FrameDecoder;
  readonly #pending = new Map<number, Pending>();
  readonly #pings = new Map<number, () => void>();
  #nextId = 1;
  #state: 'handshake' | 'welcome' | 'ready' | 'closed' = 'handshake';
  #onHandshake: ((error?: ReedError) => void) | undefined;
  #onReady: ((result: string[] | ReedError) => void) | undefined;
  #onBye: (() => void) | undefined;
  #closeListeners: ((error: ReedError) => void)[] = [];
  functions: string[] = [];

  constructor(socket: Socket, options: LinkOptions) {
    this.#o = options;
    this.#socket = socket;
    this.#decoder = new FrameDecoder(options.maxFrameBytes);
    this.#handshake = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.#fail('handshake_failed', 'no handshake within the deadline'),
        options.handshakeTimeoutMs,
      );
      this.#onHandshake = (error) => {
        clearTimeout(timer);
        this.#onHandshake = undefined;
        if (error === undefined) resolve();
        else reject(error);
      };
    });
    this.#handshake.catch(() => {}); // settled before anyone asks, or never asked: not unhandled
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#queue.push(...this.#decoder.push(chunk));
      } catch (error) {
        this.#violation((error as Error).message);
        return;
      }
      this.#drain();
    });
    // Replies the runner does not read pile up in the socket's buffer: past UNREAD_HIGH_WATER the host stops
    // reading (and answering) until they drain, so a runner can make the host hold at most that plus one reply.
    socket.on('drain', () => {
      if (!this.#blocked) return;
      this.#blocked = false;
      socket.resume();
      this.#drain();
    });
    socket.on('close', () =>
      this.#close(
        new ReedError('sandbox_crashed', `the runner of plugin "${options.pluginId}" closed its connection`, {
          pluginId: options.pluginId,
        }),
      ),
    );
    socket.on('error', () => {});
  }

  /**
   * Resolves once the runner presented the right plugin id, protocol and secret, within the deadline counted
   * from the connection. Settled by the link itself, whenever the Hello arrives: a runner may well connect and
   * say Hello before its starter has even heard back that it started (a container under load).
   */
  handshake(): Promise<void> {
    return this.#handshake;
  }

  readonly #handshake: Promise<void>;

  /** Sends the plugin and resolves with its callable functions once its init ran. */
  welcome(spec: PluginSpec, bytes: Uint8Array): Promise<string[]> {
    this.#state = 'welcome';
    return new Promise((resolve, reject) => {
      this.#onReady = (result) => (result instanceof ReedError ? reject(result) : resolve(result));
      this.#send(FrameType.Welcome, 0, { plugin: spec }, bytes);
    });
  }

  call(fn: string, input: Uint8Array): Promise<{ output: Uint8Array; fuelConsumed: number }> {
    if (this.#state !== 'ready')
      return Promise.reject(
        new ReedError('sandbox_crashed', `the runner of plugin "${this.#o.pluginId}" is not connected`),
      );
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#send(FrameType.Call, id, { fn }, input);
    });
  }

  ping(timeoutMs: number): Promise<boolean> {
    if (this.#state !== 'ready') return Promise.resolve(false);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pings.delete(id);
        resolve(false);
      }, timeoutMs);
      this.#pings.set(id, () => {
        clearTimeout(timer);
        resolve(true);
      });
      this.#send(FrameType.Ping, id);
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
    this.#close(
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
    if (!this.#socket.destroyed) this.#socket.write(encodeFrame(type, id, meta, body));
  }

  /** Frames decoded but not handled yet: at most one chunk's worth, as reading stops while they wait. */
  #queue: Frame[] = [];
  #blocked = false;

  /** Handles queued frames until none is left or the runner has UNREAD_HIGH_WATER of replies unread. */
  #drain(): void {
    while (this.#queue.length > 0 && !this.#blocked) {
      if (this.#state === 'closed') {
        this.#queue = [];
        return;
      }
      const frame = this.#queue.shift() as Frame;
      try {
        this.#handle(frame);
      } catch (error) {
        this.#violation(
          error instanceof ProtocolError
            ? error.message
            : `frame handling failed: ${(error as Error).message}`,
        );
        return;
      }
      if (this.#socket.writableLength > UNREAD_HIGH_WATER) {
        this.#blocked = true;
        this.#socket.pause();
      }
    }
  }

  #handle(frame: Frame): void {
    const m = frame.meta;
    if (this.#state === 'handshake') {
      if (frame.type !== FrameType.Hello)
        throw new ProtocolError(`expected a Hello frame first, got type ${frame.type}`);
      if (m.protocol !== PROTOCOL_VERSION) {
        this.#fail(
          'handshake_failed',
          `runner speaks protocol ${escapeUnprintable(String(JSON.stringify(m.protocol)).slice(0, 64))}; the host speaks ${PROTOCOL_VERSION}`,
        );
        return;
      }
      if (
        m.pluginId !== this.#o.pluginId ||
        typeof m.secret !== 'string' ||
        !sameSecret(m.secret, this.#o.secret)
      ) {
        this.#fail('handshake_failed', 'wrong plugin id or secret');
        return;
      }
      this.#state = 'welcome';
      this.#onHandshake?.();
      return;
    }
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
        const pending = this.#takePending(frame.id);
        const fuel = m.fuelConsumed;
        if (typeof fuel !== 'number' || !Number.isFinite(fuel) || fuel < 0)
          throw new ProtocolError('malformed Result frame');
        pending.resolve({ output: frame.body, fuelConsumed: fuel });
        return;
      }
      case FrameType.Error: {
        const error = this.#errorFrom(m);
        if (frame.id === 0) {
          if (this.#state === 'welcome') this.#onReady?.(error);
          else this.#close(error);
          return;
        }
        this.#takePending(frame.id).reject(error);
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
        const done = this.#pings.get(frame.id);
        if (done === undefined) throw new ProtocolError(`Pong for unknown ping ${frame.id}`);
        this.#pings.delete(frame.id);
        done();
        return;
      }
      case FrameType.Bye:
        this.#onBye?.();
        return;
      default:
        throw new ProtocolError(`frame type ${frame.type} is not one a runner may send`);
    }
  }

  #takePending(id: number): Pending {
    const pending = this.#pending.get(id);
    if (pending === undefined) throw new ProtocolError(`reply for unknown call ${id}`);
    this.#pending.delete(id);
    return pending;
  }

  #errorFrom(m: Record<string, unknown>): ReedError {
    if (typeof m.code !== 'string' || typeof m.message !== 'string')
      throw new ProtocolError('malformed Error frame');
    // Codes keep their meaning across the wire; an unknown one is the runner's own failure.
    const code = isCode(m.code) ? m.code : 'sandbox_crashed';
    // The message is shown wherever errors are (a terminal, a log viewer): escaped here, once, as it arrives.
    // Details are kept only when flat and small: what serializes them later must not overflow or bloat.
    const details = boundedDetails(m.details);
    return new ReedError(code, escapeUnprintable(m.message.slice(0, MAX_ERROR_MESSAGE)), {
      pluginId: this.#o.pluginId,
      ...(details === undefined ? {} : { details }),
    });
  }

  #hostCall(frame: Frame): void {
    const { op, args } = frame.meta;
    if (typeof op !== 'string' || !(HOST_OPS as readonly string[]).includes(op) || !isStringArray(args)) {
      throw new ProtocolError('malformed HostCall frame');
    }
    if (args.reduce((n, a) => n + a.length, 0) + frame.body.length > MAX_ARG_BYTES)
      throw new ProtocolError('HostCall arguments too large');
    const h = this.#o.host;
    const reply = (meta: object, body?: Uint8Array) => this.#send(FrameType.HostReply, frame.id, meta, body);
    const a = (i: number) => {
      const v = args[i];
      if (v === undefined) throw new ReedError('invalid_argument', `${op} needs ${i + 1} argument(s)`);
      return v;
    };
    try {
      switch (op as HostOp) {
        case 'storageGet': {
          const value = h.storageGet(a(0));
          reply({ ok: true, hasBytes: value !== undefined }, value);
          return;
        }
        case 'storagePut':
          h.storagePut(a(0), frame.body);
          break;
        case 'storageDelete':
          reply({ ok: true, value: h.storageDelete(a(0)) });
          return;
        case 'storageList':
          reply({ ok: true, value: h.storageList(a(0)) });
          return;
        case 'contentCreate':
          reply({ ok: true, value: h.contentCreate(a(0), a(1)) });
          return;
        case 'contentGet':
          reply({ ok: true, value: h.contentGet(a(0)) ?? null });
          return;
        case 'eventEmit':
          h.eventEmit(a(0), a(1));
          break;
        case 'configGet':
          reply({ ok: true, value: h.configGet(a(0)) ?? null });
          return;
      }
      reply({ ok: true });
    } catch (error) {
      const e =
        error instanceof ReedError
          ? error
          : new ReedError('invalid_argument', String((error as Error)?.message ?? error));
      reply({ ok: false, code: e.code, message: e.message });
    }
  }

  #violation(message: string): void {
    this.#o.logger.error(
      { pluginId: this.#o.pluginId, code: 'protocol_violation' },
      `runner broke the protocol: ${message}; stopping its sandbox`,
    );
    this.#close(
      new ReedError(
        'protocol_violation',
        `the runner of plugin "${this.#o.pluginId}" broke the protocol (${message}); its sandbox was stopped`,
        { pluginId: this.#o.pluginId },
      ),
    );
  }

  #fail(code: 'handshake_failed', message: string): void {
    const error = new ReedError(code, `runner of plugin "${this.#o.pluginId}": ${message}`, {
      pluginId: this.#o.pluginId,
    });
    this.#o.logger.warn({ pluginId: this.#o.pluginId, code }, error.message);
    this.#onHandshake?.(error);
    this.#close(error);
  }

  #close(error: ReedError): void {
    if (this.#state === 'closed') return;
    const wasHandshake = this.#state === 'handshake';
    this.#state = 'closed';
    this.#socket.destroy();
    if (wasHandshake) this.#onHandshake?.(error);
    this.#onReady?.(error);
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
    for (const listener of this.#closeListeners) listener(error);
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.length <= 100_000 && value.every((v) => typeof v === 'string');
}

/** Constant-time comparison, whatever the lengths. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && given.length === expected.length;
}
