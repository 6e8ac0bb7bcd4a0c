import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { ReedError } from '../errors.js';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  PROTOCOL_VERSION,
  ProtocolError,
} from '../protocol/frames.js';
import { escapeUnprintable } from '../safe-text.js';

export interface ConnectionOptions {
  pluginId: string;
  /** The one-time secret this sandbox's runner must present. */
  secret: string;
  /** Largest frame accepted from the runner. */
  maxFrameBytes: number;
  /** Deadline for the Hello frame, from the connection. */
  handshakeTimeoutMs: number;
  logger: Logger;
}

export interface ConnectionHandlers {
  /** Every frame after the Hello, in order. Whatever it throws ends the connection as a protocol violation. */
  frame(frame: Frame): void;
  /** Once, when the connection ends, whatever ended it. */
  closed(error: ReedError): void;
}

/** Bytes of replies a runner may leave unread before the host stops reading from it. */
export const UNREAD_HIGH_WATER = 4 * 1024 * 1024;

/**
 * The host's end of one runner's byte stream, whatever transport delivered it (a Unix socket; a TLS socket is a
 * net.Socket too): bounded framing (docs/PROTOCOL.md), back-pressure, and the Hello handshake (protocol version,
 * plugin id, the one-time secret). Every byte from the runner is hostile input: a frame too large or malformed,
 * or a wrong Hello, ends the connection (and the sandbox), never the host.
 */
export class RunnerConnection {
  #o: ConnectionOptions;
  readonly #socket: Socket;
  readonly #handlers: ConnectionHandlers;
  #decoder: FrameDecoder;
  readonly #handshake: Promise<void>;
  #onHandshake: ((error?: ReedError) => void) | undefined;
  #state: 'handshake' | 'open' | 'closed' = 'handshake';
  /** Frames decoded but not handled yet: at most one chunk's worth, as reading stops while they wait. */
  #queue: Frame[] = [];
  #blocked = false;

  constructor(socket: Socket, options: ConnectionOptions, handlers: ConnectionHandlers) {
    this.#o = { ...options };
    this.#socket = socket;
    this.#handlers = handlers;
    this.#decoder = new FrameDecoder(options.maxFrameBytes);
    this.#handshake = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.#fail('no handshake within the deadline'),
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
      let frames: Frame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (error) {
        this.#violation((error as Error).message);
        return;
      }
      // The decoder's array is new at every push: it becomes the queue when none waits (every call's answer), with
      // no copy of its frames (a spread and a push cost ~200 host instructions a call).
      if (this.#queue.length === 0) this.#queue = frames;
      else for (const frame of frames) this.#queue.push(frame);
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
      this.close(
        new ReedError('sandbox_crashed', `the runner of plugin "${this.#o.pluginId}" closed its connection`, {
          pluginId: this.#o.pluginId,
        }),
      ),
    );
    socket.on('error', () => {});
  }

  /**
   * Resolves once the runner presented the right plugin id, protocol and secret, within the deadline counted
   * from the connection. Settled by the connection itself, whenever the Hello arrives: a runner may well connect
   * and say Hello before its starter has even heard back that it started (a container under load).
   */
  handshake(): Promise<void> {
    return this.#handshake;
  }

  get closed(): boolean {
    return this.#state === 'closed';
  }

  /**
   * A warm runner (src/backends/pool/) handed to a plugin: from now on the connection speaks for `pluginId` (its
   * messages and errors) and accepts frames up to that plugin's `maxFrameBytes`. Only after the handshake and before
   * any frame past it (a generic runner sends nothing until it is sent a plugin): a frame half-read would be lost
   * with the old decoder, so that is a protocol violation.
   */
  adopt(pluginId: string, maxFrameBytes: number): void {
    if (this.#state !== 'open') return;
    if (this.#decoder.pending || this.#queue.length > 0) {
      this.#violation('sent frames before it was handed a plugin');
      return;
    }
    this.#o = { ...this.#o, pluginId, maxFrameBytes };
    this.#decoder = new FrameDecoder(maxFrameBytes);
  }

  /** Bytes sent to the runner that it has not read yet (beyond what the kernel's socket buffer holds). */
  get unsentBytes(): number {
    return this.#socket.writableLength;
  }

  send(type: FrameType, id: number, meta?: object, body?: Uint8Array): void {
    if (!this.#socket.destroyed) this.#socket.write(encodeFrame(type, id, meta, body));
  }

  /** Ends the connection with `error` (what pending work is rejected with). Idempotent. */
  close(error: ReedError): void {
    if (this.#state === 'closed') return;
    const wasHandshake = this.#state === 'handshake';
    this.#state = 'closed';
    this.#socket.destroy();
    if (wasHandshake) this.#onHandshake?.(error);
    this.#handlers.closed(error);
  }

  /** Handles queued frames until none is left or the runner has UNREAD_HIGH_WATER of replies unread. */
  #drain(): void {
    while (this.#queue.length > 0 && !this.#blocked) {
      if (this.#state === 'closed') {
        this.#queue = [];
        return;
      }
      const frame = this.#queue.shift() as Frame;
      try {
        if (this.#state === 'handshake') this.#hello(frame);
        else this.#handlers.frame(frame);
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

  #hello(frame: Frame): void {
    const m = frame.meta;
    if (frame.type !== FrameType.Hello)
      throw new ProtocolError(`expected a Hello frame first, got type ${frame.type}`);
    if (m.protocol !== PROTOCOL_VERSION) {
      this.#fail(
        `runner speaks protocol ${escapeUnprintable(String(JSON.stringify(m.protocol)).slice(0, 64))}; the host speaks ${PROTOCOL_VERSION}`,
      );
      return;
    }
    if (
      m.pluginId !== this.#o.pluginId ||
      typeof m.secret !== 'string' ||
      !sameSecret(m.secret, this.#o.secret)
    ) {
      this.#fail('wrong plugin id or secret');
      return;
    }
    this.#state = 'open';
    this.#onHandshake?.();
  }

  #violation(message: string): void {
    this.#o.logger.error(
      { pluginId: this.#o.pluginId, code: 'protocol_violation' },
      `runner broke the protocol: ${message}; stopping its sandbox`,
    );
    this.close(
      new ReedError(
        'protocol_violation',
        `the runner of plugin "${this.#o.pluginId}" broke the protocol (${message}); its sandbox was stopped`,
        { pluginId: this.#o.pluginId },
      ),
    );
  }

  #fail(message: string): void {
    const code = 'handshake_failed';
    const error = new ReedError(code, `runner of plugin "${this.#o.pluginId}": ${message}`, {
      pluginId: this.#o.pluginId,
    });
    this.#o.logger.warn({ pluginId: this.#o.pluginId, code }, error.message);
    this.#onHandshake?.(error);
    this.close(error);
  }
}

/** Constant-time comparison, whatever the lengths. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && given.length === expected.length;
}
