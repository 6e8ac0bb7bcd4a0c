// Longer than most files: one class owns an instance's whole life and every import, because the per-call state
// they share (output, fuel, deadline, the fatal error) must stay private to it.
import { ReedError } from '../../errors.js';
import type { ResolvedLimits } from '../../manifest/limits.js';
import { escapeUnprintable } from '../../safe-text.js';
import { type CallWasi, notACommand, withCallWasi } from '../call-wasi.js';
import {
  HOST_FUNCTIONS,
  type HostApi,
  type HostApiName,
  type HostArg,
  type HostFunction,
  NOT_FOUND,
  OWN_MARSHALLED_NAMES,
  type OwnMarshalledName,
  TABLE_MARSHALLED_NAMES,
} from '../host-api.js';
import {
  answerStatus,
  bufferData,
  checkArgumentSize,
  fillsBuffer,
  invokeHostApi,
} from '../host-api-calls.js';
import { LogRate } from '../log-rate.js';
import { type CallResult, checkCallable, type PluginRuntime } from '../runtime.js';
import {
  callableFunctions,
  expectedSignature,
  FUEL_PER_BYTE,
  FUEL_PER_ERROR_BYTE,
  FUEL_PER_LOG_LINE,
  FUEL_PER_LOG_WRITE,
  FUEL_PER_TRAP,
  importFuel,
  MAX_ERROR_CODE_BYTES,
  MAX_ERROR_MESSAGE_BYTES,
} from './abi.js';
import { EXTISM_MODULE, extismFunctions, extismLogLevel, isExtismModule } from './extism.js';
import { ExtismKernel, extismConfigValue, SELF_GUARDED } from './extism-kernel.js';
import { ExtismVars } from './extism-vars.js';
import { FUEL_PER_INSTANCE, FUEL_PER_MEMORY, moduleInstantiationFuel } from './instantiation-fuel.js';
import { OutputBuffer } from './output-buffer.js';
import {
  FUEL_EXPORT,
  MEMORY_CAP_EXPORT,
  MEMORY_REFUSED_EXPORT,
  type ModuleExport,
  START_EXPORT,
  WASM_PAGE_BYTES,
} from './prepare-module.js';
import { uncatchable } from './trap.js';
import type { WasiFilesystem } from './wasi-fs.js';
import { WASI_MODULE, WasiExit } from './wasi-names.js';
import { type QuotaKind, releaseQuota } from './wasi-quota.js';

export interface WasmPluginOptions {
  pluginId: string;
  module: WebAssembly.Module;
  exports: readonly ModuleExport[];
  isCommand: boolean;
  host: HostApi;
  limits: ResolvedLimits;
  wasi: { args: readonly string[]; env: Readonly<Record<string, string>> };
  /** The host's log level (pino's name; default info): what an Extism plugin's get_log_level answers. */
  logLevel?: string;
  /** The plugin's private directory, preopened for WASI when permissions.filesystem grants one. */
  filesystem?: WasiFilesystem;
  /**
   * What each host call that must ask the host pays on top of its price: FUEL_PER_ROUND_TRIP in a runner (its
   * calls cross a socket), nothing in mode none (default).
   */
  roundTripFuel?: number;
  /**
   * A warning from the runtime itself with its stable code (a WASI quota refused a call). Default: a warn line
   * through the host API's log, the code in front.
   */
  warn?: (code: string, message: string) => void;
  /**
   * Memory shared with other instances (a tenant's memory_mb in mode none): the bytes this instance's memory may
   * reach now, asked before each run and at instantiation. A grow past it fails as one past limits.memory_mb
   * does, and a run that fails after such a grow (or an instance too large to start) answers quota_exceeded.
   */
  memoryBudget?: MemoryBudget;
}

/** See WasmPluginOptions.memoryBudget. */
export interface MemoryBudget {
  /** The quota in MiB, for messages and the error's details. */
  readonly limitMb: number;
  /** The tenant's id, for the error's details. */
  readonly tenant?: string | undefined;
  /** Bytes `holder`'s memory may reach now: the quota less what the other instances sharing it hold. */
  bytesFor(holder: object): number;
  /**
   * Asked before each call: throws (quota_exceeded) while `holder` is held back after churning (below), so the
   * tenant pays for its own churn in refused calls rather than the host's thread paying in instantiations.
   */
  admit?(holder: object, pluginId: string): void;
  /**
   * A run of `holder` failed after a refused grow, and its instance (its memory with it) was dropped: the next
   * call makes a new one. Each such cycle costs the host's thread a trap, an instantiation and, with the
   * dropped memories, garbage collections no quota counts.
   */
  churned?(holder: object, pluginId: string): void;
}

/** What `make` returns, its errors made without a stack trace (capturing one costs microseconds). */
function stackless<T>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** WASI's implementation, once a module importing it is about to run here (loadWasi). */
let wasi: typeof import('./wasi.js') | undefined;

/**
 * Loads WASI's implementation (wasi.ts and its file system) when `module` imports from it: to be awaited before a
 * WasmPlugin of `module` is made, since instantiation is synchronous. A module importing nothing of WASI never loads
 * it: a runner of such a plugin is ~2.6 MiB of PSS smaller (README, Benchmarks).
 */
export async function loadWasi(module: WebAssembly.Module): Promise<void> {
  if (wasi === undefined && declaredImports(module).has(WASI_MODULE)) wasi = await import('./wasi.js');
}

/** Each compiled module's imports, by module name: asked once per module, however many instances it makes. */
const importsByModule = new WeakMap<WebAssembly.Module, Map<string, Set<string>>>();

function declaredImports(module: WebAssembly.Module): ReadonlyMap<string, ReadonlySet<string>> {
  let imports = importsByModule.get(module);
  if (imports === undefined) {
    imports = new Map();
    for (const { module: from, name } of WebAssembly.Module.imports(module)) {
      const names = imports.get(from);
      if (names === undefined) imports.set(from, new Set([name]));
      else names.add(name);
    }
    importsByModule.set(module, imports);
  }
  return imports;
}

const strict = new TextDecoder('utf-8', { fatal: true });
const lenient = new TextDecoder('utf-8');
const EMPTY = new Uint8Array(0);
/** What poll_oneoff's sleeps wait on (nothing ever wakes it: Atomics.wait times out). */
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));
/**
 * performance.now(), the clock a call's deadline is on (the host's own in mode none), taken from the global when a
 * clock is first read: node:perf_hooks (9 modules, ~1 ms of a runner's CPU before its Ready) then loads only for a
 * run with a deadline or a WASI sleep, never for a runner's plain calls (their deadline is 0: the host keeps it).
 */
let perf: typeof performance | undefined;
const now = (): number => {
  if (perf === undefined) perf = performance;
  return perf.now();
};
/** Host fuel owed before it is taken from the guest's fuel global and the deadline is checked: 100 plain imports. */
const SETTLE_FUEL = 10_000; // extism-fast.wat pays at the same sum

/**
 * One WASM plugin, in whatever process runs it. Pull-style ABI (docs/ABI-wasm.md): the plugin reads its input
 * and writes its output through host imports; the host writes into guest memory only where the plugin named a
 * buffer and its length, after checking both. After any trap or limit the instance is dropped and the next
 * call gets a fresh one (with `init` run again), so one bad call never poisons the next.
 */
export class WasmPlugin implements PluginRuntime {
  readonly functions: readonly string[];
  readonly #o: WasmPluginOptions;
  readonly #fuelBudget: bigint;
  /** What making an instance costs (instantiation-fuel.ts): charged to the call that makes one. */
  readonly #instanceFuel: bigint;
  /**
   * While a call runs, the fuel its next run starts with: everything the call makes the host do shares the call's
   * budget, the instance it makes (a command's every call, a plugin's first after a trap), that instance's start
   * function and init hooks, then the function. Outside calls (load's init, deactivate) each run has the whole
   * budget. Before, each of those runs had a budget of its own, and a plugin that trapped at every call made the
   * host run its init, and instantiate it, at every call for the fuel of the function alone.
   */
  #callFuel: bigint | undefined;
  /** The fuel the current call has spent making its instance and running its start and init hooks, if it made one. */
  #setupFuel = 0;
  /** A command's run in this call ended in proc_exit(0): the call is over (a clean exit). */
  #exited = false;
  #instance: WebAssembly.Instance | undefined;
  #memory: WebAssembly.Memory | undefined;
  #view = EMPTY;
  #fuel: WebAssembly.Global | undefined;
  /** The instrumentation's memory cap (pages) and refused flag, when a memory budget is shared (memoryBudget). */
  #memoryCap: WebAssembly.Global | undefined;
  #memoryRefused: WebAssembly.Global | undefined;
  /** Fuel the last run used, whether it returned or failed (a fuel budget per second charges it). */
  fuelOfLastRun = 0;
  // Per-call state.
  #input: Uint8Array = EMPTY;
  #stdinAt = 0;
  /** The call's output, in pieces writes are copied into (output-buffer.ts): never an object per write. */
  #output = new OutputBuffer();
  #outputBytes = 0;
  #outputToStdout = false;
  /**
   * What reed.error_set (or Extism's error_set) named last in the call, as bytes: a plugin may call it in a loop,
   * so it is decoded and escaped once, when read (#errorText), not at every call.
   */
  #error: { code: Uint8Array | string; message: Uint8Array | string } | undefined;
  /** Extism's config_get answers, by key (only keys the configuration has: bounded by it). */
  readonly #extismConfig = new Map<string, Uint8Array>();
  /** Where reed.error_set's bytes are kept (made on its first use; each error_set overwrites it). */
  #errorBytes: Uint8Array | undefined;
  #deadline = 0;
  /** The clock (performance.now()) when the deadline was last checked: at the guest's return, the call's end. */
  #clock = 0;
  /**
   * The first error a host import raised in this guest run (deadline, fuel, permission, quota, bad argument,
   * lost host, proc_exit: every one, as the ABI says a failing import traps). Once set, the run is over
   * whatever the guest does: see #fatalize.
   */
  #fatal: unknown;
  #fuelAtFatal: bigint | undefined;
  /** Host work charged but not yet taken from the fuel global (see #charge). */
  #owed = 0;
  /** The fuel left when the guest last returned, host work included (see #settle), until the next run. */
  #left: bigint | undefined;
  /** stdout's and stderr's line being made: its bytes so far, in a buffer of log_line_bytes (made on first use). */
  #lines = {
    out: { buffer: undefined as Uint8Array | undefined, bytes: 0 },
    err: { buffer: undefined as Uint8Array | undefined, bytes: 0 },
  };
  #deactivated = false;
  /** What the instance holds on the host (the WASI filesystem's descriptors), released when it is dropped. */
  #dropHooks: (() => void)[] = [];
  /** poll_oneoff sleep left to this run when it has no deadline (init, deactivate, a runner's call). */
  #sleepLeftMs = 0;
  /** Quota kinds already reported in this run: a loop hitting the quota logs once. */
  #quotaReported = new Set<string>();
  /** The current call's WASI arguments and environment (a command's only; see call). */
  #callWasi: CallWasi | undefined;
  readonly #logRate: LogRate;
  /** Extism's ABI: its kernel, one per instance (blocks per call). */
  readonly #extism: boolean;
  #kernel: ExtismKernel | undefined;
  /** Extism's variables: the plugin's, kept across instances (dropped with this runtime), as Extism keeps them. */
  #extismVars: ExtismVars | undefined;

  constructor(options: WasmPluginOptions) {
    if (wasi === undefined && declaredImports(options.module).has(WASI_MODULE))
      throw new Error(`WASI not loaded for plugin "${options.pluginId}": await loadWasi(module) first`);
    // An Extism plugin (extism.ts) is never a command: its functions are called on one instance, _start never is.
    this.#extism = isExtismModule(options.module);
    this.#o = this.#extism ? { ...options, isCommand: false } : options;
    this.#id = options.pluginId;
    this.#fuelBudget = BigInt(options.limits.fuelPerCall);
    // An Extism plugin's instance comes with its kernel's: a memory for the arena and an instance of the loads and
    // stores (extism-fast.wat), made with it each time (~80 us of CPU together, more beside a large heap).
    // (A module without fuel, `fuel: false`, pays nothing.)
    const instanceFuel = moduleInstantiationFuel(options.module);
    this.#instanceFuel = BigInt(
      instanceFuel + (this.#extism && instanceFuel > 0 ? FUEL_PER_MEMORY + FUEL_PER_INSTANCE : 0),
    );
    this.#logRate = new LogRate(options.limits.logLinesPerSecond);
    this.functions = this.#extism
      ? extismFunctions(options.exports)
      : callableFunctions(options.exports, this.#o.isCommand);
  }

  /** The manifest's WASI arguments and environment, with the current call's (a command's) added. */
  #wasi(): { args: readonly string[]; env: Readonly<Record<string, string>> } {
    return withCallWasi(this.#o.wasi, this.#callWasi);
  }

  /** A field, not a getter: a private getter takes V8's slow path (Runtime_LoadPrivateGetter) on every call. */
  readonly #id: string;

  /**
   * `deadline` (now()'s clock; 0: none): when the instance's making and `_initialize` must end, checked as a call's
   * is. Mode none gives call_timeout_ms: init runs on the host's thread, and fuel alone let an init whose host calls
   * cost more than their fuel hold it for minutes (the seventh review, session 22). A runner has its start deadline.
   */
  init(deadline = 0): void {
    if (this.#o.isCommand) return; // a command runs fresh for each call
    this.#deadline = deadline;
    this.#initializing = true;
    try {
      this.#ensureInstance();
    } finally {
      this.#deadline = 0;
      this.#initializing = false;
    }
  }

  /** Whether `init` is running: its deadline's error says so. */
  #initializing = false;

  call(fn: string, input: Uint8Array, deadline = 0, wasi?: CallWasi): CallResult {
    checkCallable(this.#id, this.#deactivated, this.functions, fn);
    // Nothing ran yet: a call refused before its run must not be charged the last run's fuel again.
    this.fuelOfLastRun = 0;
    this.#o.memoryBudget?.admit?.(this, this.#id);
    // A command's instance is made for this call, with these arguments; another plugin's outlives it.
    if (wasi !== undefined && !this.#o.isCommand) throw notACommand(this.#id, 'a WASM plugin of functions');
    this.#callWasi = wasi;
    this.#input = input;
    this.#stdinAt = 0;
    this.#output.reset();
    this.#outputBytes = 0;
    this.#error = undefined;
    this.#deadline = deadline;
    this.#outputToStdout = this.#o.isCommand;
    this.#exited = false;
    try {
      this.#callFuel = this.#fuelBudget;
      if (this.#o.isCommand) this.#instance = undefined; // a fresh instance per run, as a process would be
      const instance = this.#ensureInstance(true);
      this.#setupFuel = this.fuelOfLastRun;
      this.#kernel?.begin(input);
      const exported = instance.exports[fn] as () => number;
      // A command's _start returns nothing when main returns 0 (a non-zero status arrives as proc_exit); a
      // proc_exit(0) in its start function ended the call already.
      const status = this.#exited ? 0 : (this.#enter(exported) ?? 0);
      const fuelConsumed = this.fuelOfLastRun;
      if (this.#o.isCommand) this.#drop();
      if (this.#kernel !== undefined) this.#extismResult(this.#kernel);
      if (status !== 0 || (this.#extism && this.#error !== undefined)) throw this.#statusError(fn, status);
      // The deadline was checked on return, by #enter's last #settle, which read the clock: the call ended then.
      return {
        output: this.#takeOutput(),
        fuelConsumed,
        endedAt: deadline === 0 ? undefined : this.#clock,
      };
    } finally {
      this.#callFuel = undefined;
      this.#setupFuel = 0;
      this.#flushLines();
      this.#input = EMPTY;
      // What a failed call wrote is let go.
      this.#output.reset();
    }
  }

  /**
   * The error of a run that returned a non-zero status. Its own method: a closure inside `call` would make V8
   * allocate a context for `call`'s variables on every call, failed or not.
   */
  #statusError(fn: string, status: number): ReedError {
    if (this.#memoryRefused !== undefined && this.#memoryRefused.value !== 0)
      // A quota's answer, made without stacks: a tenant calling in a loop gets it as often as it calls.
      return stackless(() =>
        this.#memoryQuotaError(
          `function "${fn}" of plugin "${this.#id}" failed after a memory.grow was refused`,
          this.#pluginError(`function "${fn}" returned status ${status}`, status),
        ),
      );
    return this.#fullOr(this.#pluginError(`function "${fn}" returned status ${status}`, status));
  }

  memoryBytes(): number {
    return this.#memory?.buffer.byteLength ?? 0;
  }

  deactivate(): void {
    if (this.#deactivated) return;
    this.#deactivated = true;
    const hook = this.#extism ? undefined : this.#instance?.exports.deactivate;
    try {
      if (typeof hook === 'function') {
        const status = this.#enter(() => (hook as () => number)());
        if (typeof status === 'number' && status !== 0)
          this.#o.host.log(2, `deactivate returned status ${status}`);
      }
    } finally {
      this.#flushLines();
      this.#drop();
      if (this.#o.filesystem !== undefined) releaseQuota(this.#o.filesystem);
    }
  }

  // --- instance lifecycle ---------------------------------------------------------------------------

  /** `charged`: the current call pays for the instance, before V8 makes it (#callFuel). */
  #ensureInstance(charged = false): WebAssembly.Instance {
    if (this.#instance !== undefined) return this.#instance;
    if (charged && this.#callFuel !== undefined && this.#instanceFuel > 0n) {
      // Load refuses a module whose instance costs more than fuel_per_call (prepare-job.ts): this is a backstop.
      if (this.#instanceFuel > this.#callFuel)
        throw new ReedError(
          'fuel_exhausted',
          `plugin "${this.#id}" cannot make an instance for this call: it costs ${this.#instanceFuel} fuel, more than the call's ${this.#callFuel} (limits.fuel_per_call)`,
          { pluginId: this.#id },
        );
      this.#callFuel -= this.#instanceFuel;
      this.fuelOfLastRun = Number(this.#fuelBudget - this.#callFuel);
    }
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(this.#o.module, this.#imports());
    } catch (error) {
      throw this.#classify(error, 'instantiation (start function)');
    }
    this.#instance = instance;
    const memory = instance.exports.memory;
    this.#memory = memory instanceof WebAssembly.Memory ? memory : undefined;
    this.#view = EMPTY;
    const fuel = instance.exports[FUEL_EXPORT];
    this.#fuel = fuel instanceof WebAssembly.Global ? fuel : undefined;
    if (this.#o.memoryBudget !== undefined) {
      const cap = instance.exports[MEMORY_CAP_EXPORT];
      const refused = instance.exports[MEMORY_REFUSED_EXPORT];
      this.#memoryCap = cap instanceof WebAssembly.Global ? cap : undefined;
      this.#memoryRefused = refused instanceof WebAssembly.Global ? refused : undefined;
      // The memory's initial pages were taken by instantiation: past what the tenant has left, it cannot start.
      const room = this.#o.memoryBudget.bytesFor(this);
      if (this.memoryBytes() > room) {
        const bytes = this.memoryBytes();
        this.#drop();
        throw this.#memoryQuotaError(
          `an instance of plugin "${this.#id}" starts with ${bytes} bytes of memory, and its tenant's other instances leave it ${Math.max(0, room)}`,
        );
      }
    }
    const start = instance.exports[START_EXPORT];
    if (typeof start === 'function') this.#enter(() => (start as () => void)(), 'the start function');
    if (this.#o.isCommand) return instance;
    for (const hook of this.#extism ? (['_initialize'] as const) : (['_initialize', 'init'] as const)) {
      const fn = instance.exports[hook];
      if (typeof fn !== 'function') continue;
      let status: number | undefined;
      try {
        status = this.#enter(() => (fn as () => number | undefined)(), hook);
      } catch (error) {
        const cause = error as ReedError;
        throw new ReedError(
          'init_failed',
          `${hook} of plugin "${this.#id}" failed: ${cause.code}: ${cause.message}`,
          {
            pluginId: this.#id,
            cause,
            details: { causeCode: cause.code },
          },
        );
      }
      if (hook === 'init' && typeof status === 'number' && status !== 0) {
        this.#drop();
        const e = this.#errorText();
        const reason = e === undefined ? `status ${status}` : `${e.code}: ${e.message}`;
        throw new ReedError('init_failed', `init of plugin "${this.#id}" failed with ${reason}`, {
          pluginId: this.#id,
        });
      }
    }
    return instance;
  }

  #drop(): void {
    for (const hook of this.#dropHooks.splice(0)) hook();
    this.#instance = undefined;
    this.#kernel = undefined;
    this.#memory = undefined;
    this.#fuel = undefined;
    this.#memoryCap = undefined;
    this.#memoryRefused = undefined;
    this.#view = EMPTY;
  }

  #memoryQuotaError(what: string, cause?: unknown): ReedError {
    const limitMb = this.#o.memoryBudget?.limitMb ?? 0;
    return new ReedError(
      'quota_exceeded',
      `${what}: its tenant's WASM memory together would pass the tenant's memory quota (memory_mb = ${limitMb})`,
      {
        pluginId: this.#id,
        ...(cause === undefined ? {} : { cause }),
        details: {
          quota: 'memory_mb',
          ...(this.#o.memoryBudget?.tenant === undefined ? {} : { tenant: this.#o.memoryBudget.tenant }),
          limit: limitMb,
          // Waiting alone frees nothing: another of the tenant's instances must shrink or go.
          retryAfterMs: null,
          ...(cause instanceof ReedError ? { causeCode: cause.code } : {}),
        },
      },
    );
  }

  /**
   * Runs guest code with a fresh fuel budget; any failure drops the instance and becomes a typed error. A fatal
   * error a host import recorded wins over whatever the guest did after it, a normal return included.
   */
  #enter<T>(run: () => T, what?: string): T {
    if (this.#fuel !== undefined) this.#fuel.value = this.#callFuel ?? this.#fuelBudget;
    if (this.#memoryCap !== undefined && this.#o.memoryBudget !== undefined) {
      const room = Math.max(0, this.#o.memoryBudget.bytesFor(this));
      this.#memoryCap.value = BigInt(Math.floor(room / WASM_PAGE_BYTES));
      if (this.#memoryRefused !== undefined) this.#memoryRefused.value = 0;
    }
    this.#fatal = undefined;
    this.#owed = 0;
    this.#sleepLeftMs = this.#o.limits.callTimeoutMs;
    if (this.#quotaReported.size > 0) this.#quotaReported.clear();
    let result: T;
    this.#left = undefined;
    try {
      result = run();
      if (this.#fatal === undefined) this.#settle(true);
    } catch (error) {
      this.#unexhaustCleanExit(this.#fatal ?? error);
      this.#ran();
      // A trap's error object and stack trace cost the host ~90 us: the run used that too (its tenant's
      // fuel_per_second is charged it), or a plugin trapping at every call would run at 10x fuel's rate.
      if (this.#fatal === undefined && error instanceof WebAssembly.RuntimeError)
        this.fuelOfLastRun += FUEL_PER_TRAP;
      return this.#failed(this.#fatal ?? error, what);
    }
    if (this.#fatal !== undefined) this.#unexhaustCleanExit(this.#fatal);
    this.#ran();
    if (this.#fatal !== undefined) return this.#failed(this.#fatal, what);
    return result;
  }

  /**
   * A command's clean exit (proc_exit(0)) is a success: its fuel is what it used up to the exit, not the exhausted
   * value #fatalize left to end the run (read by #ran, so before it: else every such call reported, and took from its
   * tenant's fuel_per_second, the whole budget).
   */
  #unexhaustCleanExit(error: unknown): void {
    if (!(error instanceof WasiExit) || error.status !== 0 || !this.#o.isCommand) return;
    if (this.#fuel === undefined || this.#fuelAtFatal === undefined) return;
    // What host work owed and had not settled when the exit came is used too (#settle did not run after it).
    const left = this.#fuelAtFatal - BigInt(Math.ceil(this.#owed));
    this.#owed = 0;
    this.#fuel.value = left < 0n ? 0n : left;
  }

  /** After a run: what it used (the call's runs so far, in a call), and where the call's next run starts. */
  #ran(): void {
    this.fuelOfLastRun = this.#consumed();
    if (this.#callFuel !== undefined) this.#callFuel = this.#fuelBudget - BigInt(this.fuelOfLastRun);
  }

  #failed<T>(error: unknown, what?: string): T {
    this.#fatal = undefined;
    // A grow the tenant's memory quota refused in this run: that, not what the plugin made of the -1, is why.
    const refused = this.#memoryRefused !== undefined && this.#memoryRefused.value !== 0;
    if (error instanceof WasiExit && this.#o.isCommand) {
      // A clean exit (its fuel was put back by #unexhaustCleanExit): the call is over, even when the exit came
      // from the start function, before the export the call names ran.
      if (error.status === 0) {
        this.#exited = true;
        return 0 as T;
      }
      this.#drop();
      const exited = this.#pluginError(`exited with status ${error.status}`, error.status);
      if (refused) this.#o.memoryBudget?.churned?.(this, this.#id);
      if (refused)
        throw this.#memoryQuotaError(`plugin "${this.#id}" exited after a memory.grow was refused`, exited);
      throw this.#fullOr(exited);
    }
    const typed = this.#classify(error, what);
    this.#drop();
    if (refused) {
      this.#o.memoryBudget?.churned?.(this, this.#id);
      throw this.#memoryQuotaError(`plugin "${this.#id}" failed after a memory.grow was refused`, typed);
    }
    throw this.#fullOr(typed);
  }

  /**
   * A run that met its file system full (ENOSPC, answered EDQUOT) and then failed: `filesystem_full`, with the
   * failure as its cause, so that the host can answer its tenant's quota (filesystem_bytes). Else `error`.
   */
  #fullOr(error: ReedError): ReedError {
    if (!this.#quotaReported.has('filesystem')) return error;
    return new ReedError(
      'filesystem_full',
      `plugin "${this.#id}" failed after its file system was full: ${error.code}: ${error.message}`,
      { pluginId: this.#id, cause: error, details: { causeCode: error.code } },
    );
  }

  /**
   * A host import failed: the run must end with this error, and WASM exception handling (`catch_all`) must not
   * be able to swallow it (issue 10, class 13: a swallowed deadline ran on for 17 s, a swallowed
   * permission_denied looked like success). So the error is recorded for #enter, the fuel is set exhausted (the
   * next fuel check traps), every later import of the run fails again at once, and what the guest sees thrown
   * is a trap, which no `catch_all` catches.
   */
  #fatalize(error: unknown): unknown {
    if (this.#fatal === undefined) {
      this.#fatal =
        error instanceof WasiExit && this.#o.isCommand ? error : this.#classify(error, 'a host call');
      this.#fuelAtFatal = this.#fuel?.value as bigint | undefined;
    }
    if (this.#fuel !== undefined) this.#fuel.value = -1n;
    return uncatchable(this.#fatal);
  }

  /**
   * Charges `fuel` for host work about to be done; the call fails with fuel_exhausted if it cannot pay. Small
   * charges are added up and taken from the fuel global (a BigInt, costly to read and write on every import)
   * once they reach SETTLE_FUEL, together with a deadline check; so a run may overdraw by less than that, and
   * work of any size is paid for before it is done.
   */
  #charge(fuel: number): void {
    this.#owed += fuel;
    if (this.#owed >= SETTLE_FUEL) this.#settle();
  }

  /**
   * Takes what host work owes from the fuel global, and checks the deadline. `last`: the guest has returned, so
   * nothing will read the global again before the next run resets it: what is left is kept for #consumed
   * instead of written back (each read or write of the i64 global converts a BigInt).
   */
  #settle(last = false): void {
    // What an Extism plugin's loads and stores owe (they run in WebAssembly, and pay when they owe SETTLE_FUEL).
    if (this.#kernel !== undefined) this.#owed += this.#kernel.takeDebt();
    this.#checkDeadline();
    const global = this.#fuel;
    const fuel = this.#owed;
    this.#owed = 0;
    if (global === undefined || (fuel <= 0 && !last)) return;
    const left = (global.value as bigint) - (fuel <= 0 ? 0n : BigInt(Math.ceil(fuel)));
    if (last) this.#left = left;
    else global.value = left;
    if (left < 0n) {
      throw new ReedError(
        'fuel_exhausted',
        `plugin "${this.#id}" used up its fuel of ${this.#fuelBudget} instructions (limits.fuel_per_call), counting the host work it asked for${this.#setupNote()}`,
        { pluginId: this.#id },
      );
    }
  }

  /**
   * Every import goes through this: fail at once after a fatal error, charge the call (and so check the
   * deadline). `arity`: the import's WASM parameter count, when known: a wrapper of exactly that many parameters
   * is called from WASM without an arity mismatch and passes them on without a rest array (the mode-none call
   * path makes several imports per call).
   */
  #guard(
    fn: (...args: never[]) => unknown,
    arity: number | undefined,
    fuel: number,
  ): (...args: never[]) => unknown {
    const f = fn as (...args: unknown[]) => unknown;
    switch (arity) {
      case 0:
        return () => {
          if (this.#fatal !== undefined) throw uncatchable(this.#fatal);
          try {
            this.#payCall(fuel);
            return f();
          } catch (error) {
            throw this.#fatalize(error);
          }
        };
      case 1:
        return (a: unknown) => {
          if (this.#fatal !== undefined) throw uncatchable(this.#fatal);
          try {
            this.#payCall(fuel);
            return f(a);
          } catch (error) {
            throw this.#fatalize(error);
          }
        };
      case 2:
        return (a: unknown, b: unknown) => {
          if (this.#fatal !== undefined) throw uncatchable(this.#fatal);
          try {
            this.#payCall(fuel);
            return f(a, b);
          } catch (error) {
            throw this.#fatalize(error);
          }
        };
      case 3:
        return (a: unknown, b: unknown, c: unknown) => {
          if (this.#fatal !== undefined) throw uncatchable(this.#fatal);
          try {
            this.#payCall(fuel);
            return f(a, b, c);
          } catch (error) {
            throw this.#fatalize(error);
          }
        };
      case 4:
        return (a: unknown, b: unknown, c: unknown, d: unknown) => {
          if (this.#fatal !== undefined) throw uncatchable(this.#fatal);
          try {
            this.#payCall(fuel);
            return f(a, b, c, d);
          } catch (error) {
            throw this.#fatalize(error);
          }
        };
      default:
        return (...args: unknown[]) => {
          if (this.#fatal !== undefined) throw uncatchable(this.#fatal);
          try {
            this.#payCall(fuel);
            return f(...args);
          } catch (error) {
            throw this.#fatalize(error);
          }
        };
    }
  }

  /**
   * The guard's work for an import that runs without it (Extism's SELF_GUARDED): fail at once after a fatal error,
   * charge `fuel` (the call's price included), and end the run on a failure there as the guard would.
   */
  #enterImport(fuel: number): void {
    if (this.#fatal !== undefined) throw uncatchable(this.#fatal);
    this.#owed += fuel;
    if (this.#owed >= SETTLE_FUEL) {
      try {
        this.#settle();
      } catch (error) {
        throw this.#fatalize(error);
      }
    }
  }

  /** What every import pays before it runs, its price (importFuel in abi.ts; see #charge). */
  #payCall(fuel: number): void {
    this.#owed += fuel;
    if (this.#owed >= SETTLE_FUEL) this.#settle();
  }

  #classify(error: unknown, what = 'call'): ReedError {
    const at = { pluginId: this.#id, cause: boundedCause(error) };
    if (error instanceof ReedError) return error;
    if (this.#fuel !== undefined && (this.#fuel.value as bigint) < 0n) {
      return new ReedError(
        'fuel_exhausted',
        `plugin "${this.#id}" used up its fuel of ${this.#fuelBudget} instructions in ${what} (limits.fuel_per_call)${this.#setupNote()}`,
        at,
      );
    }
    if (error instanceof WasiExit)
      return this.#pluginError(`called proc_exit(${error.status}) outside a command`, error.status);
    if (error instanceof RangeError) {
      if (/call stack/i.test(error.message)) {
        return new ReedError(
          'wasm_stack_overflow',
          `plugin "${this.#id}" overflowed the stack in ${what}`,
          at,
        );
      }
      return new ReedError(
        'wasm_out_of_bounds',
        `plugin "${this.#id}" passed a pointer outside its memory to the host in ${what}`,
        at,
      );
    }
    if (error instanceof WebAssembly.RuntimeError) {
      return new ReedError('wasm_trap', `plugin "${this.#id}" trapped in ${what}: ${error.message}`, at);
    }
    if (error instanceof WebAssembly.LinkError || error instanceof WebAssembly.CompileError) {
      return new ReedError(
        'wasm_invalid',
        `plugin "${this.#id}" could not be instantiated: ${error.message}`,
        at,
      );
    }
    return new ReedError(
      'wasm_trap',
      `plugin "${this.#id}" failed in ${what}: ${String((error as Error)?.message ?? error)}`,
      at,
    );
  }

  /** For a fuel_exhausted message: what of the call's fuel went to the instance it made, if it made one. */
  #setupNote(): string {
    if (this.#setupFuel === 0) return '';
    return this.#o.isCommand
      ? `; ${this.#setupFuel} of it went to making the call's instance (its memory, tables and data)`
      : `; ${this.#setupFuel} of it went to making a new instance after the last one failed, and running its start function and init`;
  }

  #consumed(): number {
    if (this.#fuel === undefined) return 0;
    const left = this.#left ?? (this.#fuel.value as bigint);
    const used = this.#fuelBudget - (left < 0n ? 0n : left);
    return Number(used);
  }

  /**
   * The error the plugin set, as text: a plugin's error is shown wherever errors are (terminals, log viewers), so
   * it is escaped; decoded once, however often the plugin set it or this is read.
   */
  #errorText(): { code: string; message: string } | undefined {
    const e = this.#error;
    if (e === undefined || (typeof e.code === 'string' && typeof e.message === 'string'))
      return e as { code: string; message: string } | undefined;
    const text = (part: Uint8Array | string) =>
      typeof part === 'string' ? part : escapeUnprintable(lenient.decode(part));
    const decoded = { code: text(e.code), message: text(e.message) };
    this.#error = decoded;
    return decoded;
  }

  #pluginError(fallback: string, status?: number): ReedError {
    const e = this.#errorText();
    const message = e === undefined ? fallback : e.code === '' ? e.message : `${e.code}: ${e.message}`;
    return new ReedError('plugin_error', `plugin "${this.#id}": ${message}`, {
      pluginId: this.#id,
      details: {
        ...(e === undefined || e.code === '' ? {} : { pluginCode: e.code }),
        ...(status === undefined ? {} : { status }),
      },
    });
  }

  #timeout(): ReedError {
    return new ReedError(
      'call_timeout',
      `${this.#initializing ? 'init' : 'call'} of plugin "${this.#id}" ran past its deadline (limits.call_timeout_ms = ${this.#o.limits.callTimeoutMs})`,
      {
        pluginId: this.#id,
      },
    );
  }

  #checkDeadline(): void {
    if (this.#deadline === 0) return;
    const clock = now();
    this.#clock = clock;
    if (clock > this.#deadline) throw this.#timeout();
  }

  // --- guest memory --------------------------------------------------------------------------------

  #mem(): Uint8Array {
    const memory = this.#memory;
    if (memory === undefined) {
      throw new ReedError(
        'wasm_no_memory',
        `plugin "${this.#id}" exports no memory named "memory", or called the host from its start function`,
        {
          pluginId: this.#id,
        },
      );
    }
    // memory.grow detaches the old buffer, so a view of length 0 is stale (or the memory is empty): reading
    // memory.buffer only then keeps the hot path of every import off that getter.
    if (this.#view.length === 0) this.#view = new Uint8Array(memory.buffer);
    return this.#view;
  }

  #bytes(ptr: number, len: number): Uint8Array {
    const p = this.#checked(ptr, len);
    return this.#view.subarray(p, p + (len >>> 0));
  }

  /** `ptr` as an offset, once [ptr, ptr + len) is known to lie in the guest's memory (and #view is current). */
  #checked(ptr: number, len: number): number {
    const p = ptr >>> 0;
    const n = len >>> 0;
    const mem = this.#mem();
    if (p + n > mem.length) {
      throw new ReedError(
        'wasm_out_of_bounds',
        `plugin "${this.#id}" passed [${p}, ${p + n}) to the host, outside its ${mem.length}-byte memory`,
        {
          pluginId: this.#id,
        },
      );
    }
    return p;
  }

  #string(ptr: number, len: number, what: string): string {
    const bytes = this.#bytes(ptr, len); // bounds first: a bad pointer is wasm_out_of_bounds, whatever its length
    this.#charge(bytes.length * FUEL_PER_BYTE);
    try {
      return strict.decode(bytes);
    } catch (error) {
      if (error instanceof ReedError) throw error;
      throw new ReedError('invalid_argument', `plugin "${this.#id}" passed ${what} that is not valid UTF-8`, {
        pluginId: this.#id,
      });
    }
  }

  /** Copies `data` into the buffer the plugin named, as far as it fits; returns the full length. */
  #give(data: Uint8Array | string | undefined, ptr: number, cap: number): number {
    if (data === undefined) return NOT_FOUND;
    // The whole buffer the plugin named must lie in its memory, not only the part this data fills.
    const buffer = this.#bytes(ptr, cap);
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    // The whole answer is charged, not only what fits: the host built all of it (a list, an item) either way.
    this.#charge(bytes.length * FUEL_PER_BYTE);
    buffer.set(bytes.subarray(0, Math.min(buffer.length, bytes.length)));
    return bytes.length;
  }

  /** Appends a copy of `chunk[from, to)` to the output. */
  #appendOutput(chunk: Uint8Array, from = 0, to = chunk.length): void {
    this.#charge((to - from) * FUEL_PER_BYTE);
    this.#outputBytes += to - from;
    if (this.#outputBytes > this.#o.limits.maxOutputBytes) {
      throw new ReedError(
        'output_too_large',
        `plugin "${this.#id}" wrote more than ${this.#o.limits.maxOutputBytes} bytes of output (limits.max_output_bytes)`,
        {
          pluginId: this.#id,
        },
      );
    }
    this.#output.append(chunk, from, to);
  }

  #takeOutput(): Uint8Array {
    return this.#output.take();
  }

  /**
   * Splits stdout/stderr into log lines of at most log_line_bytes (a longer run is cut into several). Works a
   * newline-free run at a time (Buffer's indexOf: a Uint8Array's scans ~20 times slower), copies it into the
   * stream's one line buffer (no allocation per write), and charges each write and each line before it goes on.
   */
  #line(stream: 'out' | 'err', chunk: Uint8Array): void {
    this.#charge(FUEL_PER_LOG_WRITE);
    const line = this.#lines[stream];
    const cap = this.#o.limits.logLineBytes;
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = 0;
    while (at < bytes.length) {
      const newline = bytes.indexOf(0x0a, at);
      const end = newline < 0 ? bytes.length : newline;
      while (at < end) {
        if (line.bytes >= cap) this.#emitLine(stream, true);
        const take = Math.min(cap - line.bytes, end - at);
        line.buffer ??= new Uint8Array(cap);
        line.buffer.set(bytes.subarray(at, at + take), line.bytes);
        line.bytes += take;
        at += take;
      }
      if (newline < 0) break;
      this.#emitLine(stream, true);
      at = newline + 1;
    }
  }

  #emitLine(stream: 'out' | 'err', charged: boolean): void {
    const line = this.#lines[stream];
    if (charged) this.#charge(FUEL_PER_LOG_LINE); // the split, whether the line is kept or dropped
    const bytes = line.bytes;
    line.bytes = 0;
    // (An empty line may come before the buffer was ever needed.)
    this.#log(stream === 'out' ? 1 : 2, line.buffer?.subarray(0, bytes) ?? EMPTY, false);
  }

  /**
   * A plugin's log line to the host, unless over the rate cap (the host applies it again, authoritatively),
   * decoded only once admitted (lenient decoding of non-ASCII bytes costs 6-18 ns a byte: a line dropped costs
   * nothing more); `charge`: a line that goes costs FUEL_PER_LOG_LINE first.
   */
  #log(level: number, text: string | Uint8Array, charge: boolean): void {
    const admitted = this.#logRate.admit((dropped) =>
      this.#o.host.log(2, `dropped ${dropped} log lines over the rate cap (limits.log_lines_per_second)`),
    );
    if (!admitted) return;
    if (charge) this.#charge(FUEL_PER_LOG_LINE);
    this.#o.host.log(level, typeof text === 'string' ? text : lenient.decode(text));
  }

  #flushLines(): void {
    // After every call: two field reads, no array, when (as almost always) nothing is pending.
    if (this.#lines.out.bytes > 0) this.#emitLine('out', false);
    if (this.#lines.err.bytes > 0) this.#emitLine('err', false);
  }

  // --- imports ---------------------------------------------------------------------------------------

  /**
   * The imports the module declares, each behind #guard, and nothing else: each instantiation made (and guarded)
   * every function of the host API, WASI and Extism, whatever the module imported (a module importing none: 10,000
   * plugins of bench/scale). One the host does not provide is left out, so instantiation fails as before.
   */
  #imports(): WebAssembly.Imports {
    const wanted = declaredImports(this.#o.module);
    const imports = this.#rawImports(wanted);
    const linked: Record<string, Record<string, unknown>> = {};
    for (const [moduleName, names] of wanted) {
      const provided = imports[moduleName];
      if (provided === undefined) continue;
      const module: Record<string, unknown> = {};
      for (const name of names) {
        if (!Object.hasOwn(provided, name)) continue;
        const fn = provided[name];
        // Extism's loads and stores do the guard's work themselves (ExtismIo.enter, #enterImport).
        module[name] =
          moduleName === EXTISM_MODULE && SELF_GUARDED.has(name)
            ? fn
            : this.#guard(
                fn as (...args: never[]) => unknown,
                expectedSignature(moduleName, name)?.params.length,
                importFuel(moduleName, name, this.#o.roundTripFuel ?? 0),
              );
      }
      linked[moduleName] = module;
    }
    return linked as WebAssembly.Imports;
  }

  /** Every import the host provides; WASI's only for a module that imports from it. */
  #rawImports(wanted: ReadonlyMap<string, ReadonlySet<string>>): Record<string, Record<string, unknown>> {
    const imports: Record<'env' | 'reed', Record<string, unknown>> = { env: {}, reed: {} };
    const own = this.#ownImports();
    for (const name of OWN_MARSHALLED_NAMES) imports[HOST_FUNCTIONS[name].wasm][name] = own[name];
    for (const name of TABLE_MARSHALLED_NAMES) {
      const row: HostFunction = HOST_FUNCTIONS[name];
      if (row.wasm !== undefined) imports[row.wasm][name] = this.#tableImport(name, row);
    }
    return {
      ...imports,
      ...(this.#extism ? { [EXTISM_MODULE]: this.#newKernel().imports() } : {}),
      ...(wanted.has(WASI_MODULE) ? { [WASI_MODULE]: this.#wasiImports() } : {}),
    };
  }

  #wasiImports(): Record<string, unknown> {
    if (wasi === undefined)
      throw new Error(`WASI not loaded for plugin "${this.#id}": await loadWasi(module) first`);
    return wasi.wasiImports(
      [this.#id, ...this.#wasi().args],
      this.#wasi().env,
      () => {
        this.#mem();
        return this.#memory as WebAssembly.Memory;
      },
      {
        stdin: (max) => {
          if (!this.#o.isCommand) return EMPTY;
          const chunk = this.#input.subarray(this.#stdinAt, this.#stdinAt + max);
          this.#stdinAt += chunk.length;
          return chunk;
        },
        stdout: (bytes) => (this.#outputToStdout ? this.#appendOutput(bytes) : this.#line('out', bytes)),
        stderr: (bytes) => this.#line('err', bytes),
        charge: (fuel) => this.#charge(fuel),
        stdinLeft: () => (this.#o.isCommand ? this.#input.length - this.#stdinAt : 0),
        sleep: (untilNs) => this.#sleep(untilNs),
        quotaExceeded: (kind, limit) => this.#quotaExceeded(kind, limit),
        atDrop: (close) => this.#dropHooks.push(close),
      },
      this.#o.filesystem,
    );
  }

  /** A fresh Extism kernel for the instance about to be made (its blocks die with it; the variables do not). */
  #newKernel(): ExtismKernel {
    this.#extismVars ??= new ExtismVars(this.#id, this.#o.limits.extismVarBytes);
    this.#kernel = new ExtismKernel({
      pluginId: this.#id,
      limits: this.#o.limits,
      logLevel: extismLogLevel(this.#o.logLevel),
      charge: (fuel) => this.#charge(fuel),
      enter: (fuel) => this.#enterImport(fuel),
      log: (level, text) => this.#log(level, text, true),
      config: (key) => {
        // Each key's answer made once (decoding and encoding a large value costs more than its copy).
        let value = this.#extismConfig.get(key);
        if (value === undefined) {
          const json = this.#o.host.config_get(key);
          if (json === undefined) return undefined;
          value = extismConfigValue(json);
          this.#extismConfig.set(key, value);
        }
        return value;
      },
      vars: this.#extismVars,
    });
    return this.#kernel;
  }

  /** An Extism call's output and error_set message, as the kernel holds them once the guest has returned. */
  #extismResult(kernel: ExtismKernel): void {
    const { output, error } = kernel.finish();
    if (output !== undefined) this.#output.adopt(output);
    if (error !== undefined) this.#error = { code: '', message: error };
  }

  /**
   * poll_oneoff's sleep: honest (the thread blocks, in mode none the host's event loop with it, as for any
   * running call), but never past the call's deadline: it sleeps up to the deadline and the call ends there with
   * call_timeout. A run without a deadline sleeps at most limits.call_timeout_ms in all.
   */
  #sleep(untilNs: bigint): void {
    for (;;) {
      const leftMs = Number(untilNs - process.hrtime.bigint()) / 1e6;
      if (leftMs <= 0) return;
      const capMs = this.#deadline !== 0 ? this.#deadline - now() : this.#sleepLeftMs;
      if (capMs < leftMs) {
        if (capMs > 0) Atomics.wait(SLEEPER, 0, 0, capMs);
        throw this.#timeout();
      }
      const started = now();
      Atomics.wait(SLEEPER, 0, 0, leftMs);
      this.#sleepLeftMs -= now() - started;
    }
  }

  /** A WASI quota refused a call (the guest gets EDQUOT): one warning per run and kind, with its stable code. */
  #quotaExceeded(kind: QuotaKind, limit: number): void {
    if (this.#quotaReported.has(kind)) return;
    this.#quotaReported.add(kind);
    const [code, message] =
      kind === 'filesystem'
        ? [
            'filesystem_full',
            `plugin "${this.#id}" met its file system full (ENOSPC, answered EDQUOT; its tenant's quotas.filesystem_bytes when it has one)`,
          ]
        : kind === 'disk'
          ? [
              'disk_quota_exceeded',
              `plugin "${this.#id}" reached its directory's disk quota of ${limit} bytes (limits.disk_mb)`,
            ]
          : [
              'file_quota_exceeded',
              `plugin "${this.#id}" reached its directory's quota of ${limit} files (limits.max_files)`,
            ];
    if (this.#o.warn !== undefined) this.#o.warn(code, message);
    else this.#o.host.log(2, `${code}: ${message}`);
  }

  /** The imports each runtime marshals itself (HostFunction.ownMarshalling): per-call state, and log lines. */
  #ownImports(): Record<OwnMarshalledName, (...args: number[]) => number | undefined> {
    return {
      log: (level: number, ptr: number, len: number) => {
        // Only what the host keeps is decoded (a little past the cap, so it still sees the line was cut).
        const bytes = this.#bytes(ptr, len);
        const kept = bytes.subarray(0, this.#o.limits.logLineBytes + 4);
        this.#charge(kept.length * FUEL_PER_BYTE);
        this.#log(level, kept, true);
        return undefined;
      },
      input_len: () => this.#input.length,
      input_read: (ptr: number, len: number, offset: number) => {
        const p = this.#checked(ptr, len);
        const input = this.#input;
        const start = Math.min(offset >>> 0, input.length);
        const n = Math.min(len >>> 0, input.length - start);
        this.#charge(n * FUEL_PER_BYTE);
        this.#view.set(n === input.length ? input : input.subarray(start, start + n), p);
        return n;
      },
      output_write: (ptr: number, len: number) => {
        const p = this.#checked(ptr, len);
        this.#appendOutput(this.#view, p, p + (len >>> 0));
        return 0;
      },
      error_set: (codePtr: number, codeLen: number, msgPtr: number, msgLen: number) => {
        const codeBytes = Math.min(codeLen >>> 0, MAX_ERROR_CODE_BYTES);
        const messageBytes = Math.min(msgLen >>> 0, MAX_ERROR_MESSAGE_BYTES);
        this.#charge((codeBytes + messageBytes) * FUEL_PER_ERROR_BYTE);
        // Copied (the guest may change its memory after) into the plugin's one buffer for it, decoded and escaped
        // once read (#errorText).
        const code = this.#bytes(codePtr, codeBytes);
        const message = this.#bytes(msgPtr, messageBytes);
        this.#errorBytes ??= new Uint8Array(MAX_ERROR_CODE_BYTES + MAX_ERROR_MESSAGE_BYTES);
        const kept = this.#errorBytes;
        kept.set(code, 0);
        kept.set(message, MAX_ERROR_CODE_BYTES);
        this.#error = {
          code: kept.subarray(0, codeBytes),
          message: kept.subarray(MAX_ERROR_CODE_BYTES, MAX_ERROR_CODE_BYTES + messageBytes),
        };
        return undefined;
      },
    };
  }

  /**
   * A host import marshalled from its row of the host API table: each argument's size checked against its cap
   * before it is read, text decoded (strict UTF-8) and bytes viewed, both charged; the answer copied into the
   * plugin's buffer or returned as a status.
   */
  #tableImport(name: HostApiName, row: HostFunction): (...raw: number[]) => number {
    return (...raw: number[]): number => {
      const args: HostArg[] = [];
      let buffer = { ptr: 0, cap: 0 };
      let at = 0;
      for (const param of row.params) {
        const [a = 0, b = 0] = [raw[at], raw[at + 1]];
        at += param.kind === 'i32' ? 1 : 2;
        if (param.kind === 'i32') args.push(a);
        else if (param.kind === 'buffer') buffer = { ptr: a, cap: b };
        else {
          checkArgumentSize(this.#id, param, b >>> 0);
          if (param.kind === 'text') args.push(this.#string(a, b, param.what ?? param.name));
          else {
            const value = this.#bytes(a, b);
            this.#charge(value.length * FUEL_PER_BYTE);
            args.push(value);
          }
        }
      }
      const result = invokeHostApi(this.#o.host, name, args);
      if (!fillsBuffer(row.answer)) return answerStatus(row.answer, result);
      return this.#give(bufferData(row.answer, result), buffer.ptr, buffer.cap);
    };
  }
}

/**
 * The guest's own error as a cause, cut to a few KiB: V8 writes the module's function names into every stack
 * frame, so a trap's stack is as large as the module makes it, and logs serialise causes whole.
 */
function boundedCause(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof ReedError) return error;
  const cut = new Error(error.message.slice(0, 1024));
  cut.name = error.name;
  cut.stack = (error.stack ?? '').slice(0, 4096);
  return cut;
}
