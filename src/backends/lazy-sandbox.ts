import type { SandboxMode } from '../manifest/types.js';
import type {
  CallOptions,
  CallOutcome,
  Sandbox,
  SandboxHealth,
  SandboxStatus,
  SandboxUsage,
} from './sandbox.js';

/** A sandbox whose preparation (reading, verifying, preparing the plugin) happens in `start`, not before. */
export class LazySandbox implements Sandbox {
  #inner: Sandbox | undefined;
  #closed = false;

  constructor(
    readonly pluginId: string,
    readonly mode: SandboxMode,
    private readonly create: () => Promise<Sandbox>,
  ) {}

  get inner(): Sandbox | undefined {
    return this.#inner;
  }

  async start(): Promise<void> {
    const inner = await this.create();
    this.#inner = inner;
    await inner.start();
  }

  call(fn: string, input: Uint8Array, options?: CallOptions, startedAt?: number): Promise<CallOutcome> {
    if (this.#inner === undefined) return Promise.reject(new Error('sandbox not started'));
    return this.#inner.call(fn, input, options, startedAt);
  }

  health(): Promise<SandboxHealth> {
    return this.#inner?.health() ?? Promise.resolve({ ok: false, detail: 'not started' });
  }

  status(): SandboxStatus {
    if (this.#inner !== undefined) return this.#inner.status();
    return { state: this.#closed ? 'stopped' : 'starting', crashes: 0 };
  }

  usage(): SandboxUsage | undefined {
    return this.#inner?.usage?.();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#inner?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
