import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { isCode } from '../src/codes.js';
import { ReedError } from '../src/errors.js';
import type { HostOp } from '../src/protocol/messages.js';
import type { HostApi } from '../src/runtime/host-api.js';

export interface HostReply {
  ok: boolean;
  value?: unknown;
  bytes?: Uint8Array;
  code?: string;
  message?: string;
}

/**
 * The HostApi inside the runner's worker thread. Each call is synchronous for the plugin: the request goes to
 * the runner's main thread (which owns the socket), and the worker blocks on a shared flag until the main
 * thread has put the host's reply on the port. Permission checks happen on the host, not here.
 */
export class RemoteHostApi implements HostApi {
  constructor(
    private readonly port: MessagePort,
    private readonly flag: Int32Array,
    private readonly log_: (level: number, message: string) => void,
  ) {}

  #ask(op: HostOp, args: string[], bytes?: Uint8Array): HostReply {
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage({ op, args, bytes });
    Atomics.wait(this.flag, 0, 0);
    const reply = receiveMessageOnPort(this.port)?.message as HostReply | undefined;
    if (reply === undefined) throw new ReedError('sandbox_crashed', 'the runner lost its host connection');
    if (!reply.ok) {
      throw new ReedError(
        isCode(reply.code) ? reply.code : 'invalid_argument',
        reply.message ?? 'host call failed',
      );
    }
    return reply;
  }

  log(level: number, message: string): void {
    this.log_(level, message);
  }
  storageGet(key: string): Uint8Array | undefined {
    return this.#ask('storageGet', [key]).bytes;
  }
  storagePut(key: string, value: Uint8Array): void {
    this.#ask('storagePut', [key], value);
  }
  storageDelete(key: string): boolean {
    return this.#ask('storageDelete', [key]).value === true;
  }
  storageList(prefix: string): string[] {
    return this.#ask('storageList', [prefix]).value as string[];
  }
  contentCreate(type: string, data: string): string {
    return this.#ask('contentCreate', [type, data]).value as string;
  }
  contentGet(id: string): string | undefined {
    return (this.#ask('contentGet', [id]).value as string | null) ?? undefined;
  }
  eventEmit(topic: string, data: string): void {
    this.#ask('eventEmit', [topic, data]);
  }
  configGet(key: string): string | undefined {
    return (this.#ask('configGet', [key]).value as string | null) ?? undefined;
  }
}
