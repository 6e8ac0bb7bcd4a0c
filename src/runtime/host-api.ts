// The host API, declared once (issue 11, point 6): every function a plugin can call, with what each layer needs
// to know of it. The WASM imports (wasm/abi.ts), the native callbacks (native/koffi-types.ts), the host's checks
// (host/plugin-host-api.ts), the wire (protocol/host-calls.ts) and the runner (sandbox-runner/) read this table,
// through what host-api-calls.ts shares; the C headers in include/ and the AssemblyScript SDK are checked against
// it (test/unit/host-api-table.test.ts).
// docs/ARCHITECTURE.md, "Add a host API function", lists the steps.
import { MAX_TOPIC_LENGTH } from '../manifest/topic-pattern.js';
import type { AccessLevel } from '../manifest/types.js';

// Size caps on what a plugin passes the host (issue 10, class 7), part of the host API's contract: each is
// checked before the argument is decoded, looked up or parsed, and reported as `argument_too_large`. Storage
// values count against storage_quota_bytes, content against content_quota_bytes/items, log lines against the
// log limits.
/** Storage keys and prefixes, and configuration keys. */
export const MAX_KEY_BYTES = 1_024;
/** Content ids (the host makes them; anything longer is not one). */
export const MAX_CONTENT_ID_BYTES = 256;
export const MAX_CONTENT_TYPE_BYTES = 200;
/** Event data: an event is delivered synchronously to every subscriber, so its size is bounded per emit. */
export const MAX_EVENT_DATA_BYTES = 1_048_576;

/**
 * How a parameter crosses the ABI. `i32`: one 32-bit integer. `text`: pointer and length of UTF-8 (refused when
 * not valid UTF-8), a string to the host. `bytes`: pointer and length, a Uint8Array to the host. `buffer`: pointer
 * and capacity of a buffer the plugin named for the answer (always last; see Answer).
 */
export type ParamKind = 'i32' | 'text' | 'bytes' | 'buffer';

export interface Param {
  readonly name: string;
  readonly kind: ParamKind;
  /** How messages name it ("passed a storage key that ..."). */
  readonly what?: string;
  /** The most bytes the host takes (argument_too_large above). */
  readonly max?: number;
}

/**
 * What the function gives back, and how the ABIs return it. `nothing`: no return value. `status`: 0.
 * `found`: 0, or NOT_FOUND for false. `bytes`, `text`, `list` (strings, each followed by a NUL byte): copied
 * into the `buffer` parameter as far as it fits; the full length is returned (NOT_FOUND for undefined).
 * `length`: a count the runtime computes.
 */
export type Answer = 'nothing' | 'status' | 'found' | 'length' | 'bytes' | 'text' | 'list';

/**
 * What the host checks before it acts. `log`: lines are dropped, not refused, without permissions.log (as in
 * the seed). `access`: permissions[field] must grant `level`. `topic`: the first argument is a topic the
 * manifest's events.emit patterns cover, and no pattern itself.
 */
export type Permission =
  | { readonly kind: 'log' }
  | {
      readonly kind: 'access';
      readonly field: 'storage' | 'content';
      readonly level: Exclude<AccessLevel, 'none'>;
      /** What the plugin may not do, for the message ("may not write storage"). */
      readonly action: string;
    }
  | { readonly kind: 'topic' };

export interface HostFunction {
  /** The WASM import module (its name is the table's key), or undefined when WASM plugins do not import it. */
  readonly wasm: 'env' | 'reed' | undefined;
  /** Whether reed_host_api (include/reed_plugin.h) carries it, as a field named by the table's key. */
  readonly native: boolean;
  /**
   * `call`: per-call state each runtime keeps itself (the input, the output, the error): never reaches the
   * host. `host`: a HostApi method, answered on the host side whatever the sandbox mode.
   */
  readonly scope: 'call' | 'host';
  /**
   * Whether each runtime marshals it by hand (call scope, and `log`, whose text is decoded leniently and cut
   * to the log limit before it is even decoded) instead of from the parameter kinds.
   */
  readonly ownMarshalling: boolean;
  /** Whether a runner must ask the host (a HostCall frame); otherwise it answers itself (sandbox-runner/). */
  readonly reply: boolean;
  readonly params: readonly Param[];
  readonly answer: Answer;
  readonly permission?: Permission;
  /**
   * Fuel a WASM plugin's call pays before the host does anything, beyond what it pays per byte (default
   * FUEL_PER_IMPORT, wasm/abi.ts): what the host's fixed work for it costs, at fuel's rate (issue 10, class 6;
   * measured by bench/import-fuel.ts). A runner's call that asks the host (`reply`) pays FUEL_PER_ROUND_TRIP on top.
   */
  readonly fuel?: number;
}

const text = (name: string, what: string, max?: number) =>
  ({ name, kind: 'text', what, ...(max === undefined ? {} : { max }) }) as const;
const bytes = (name: string) => ({ name, kind: 'bytes' }) as const;
const buffer = (name = 'buf') => ({ name, kind: 'buffer' }) as const;
const i32 = (name: string) => ({ name, kind: 'i32' }) as const;

/** Own marshalling, call scope: each runtime implements these itself. */
const perCall = { scope: 'call', ownMarshalling: true, reply: false } as const;
/** Host scope, marshalled from the table; `reply`: the runner must ask the host. */
const asked = { scope: 'host', ownMarshalling: false, reply: true, native: true, wasm: 'reed' } as const;

/**
 * Every function of the plugin ABI, version 1, in ABI order: reed_host_api's fields are the `native` rows in
 * this order, so a new function is appended, never inserted (a plugin built against an older header knows
 * the older prefix of the struct).
 */
export const HOST_FUNCTIONS = {
  log: {
    wasm: 'env',
    native: true,
    scope: 'host',
    ownMarshalling: true,
    reply: false,
    params: [i32('level'), text('msg', 'a log line')],
    answer: 'nothing',
    permission: { kind: 'log' },
    fuel: 4_096,
  },
  input_len: { ...perCall, wasm: 'reed', native: false, params: [], answer: 'length' },
  input_read: {
    ...perCall,
    wasm: 'reed',
    native: false,
    params: [buffer(), i32('offset')],
    answer: 'length',
  },
  output_write: { ...perCall, wasm: 'reed', native: false, params: [bytes('buf')], answer: 'status' },
  error_set: {
    ...perCall,
    wasm: 'reed',
    native: true,
    params: [text('code', 'an error code'), text('msg', 'an error message')],
    answer: 'nothing',
  },
  storage_get: {
    ...asked,
    params: [text('key', 'a storage key', MAX_KEY_BYTES), buffer()],
    answer: 'bytes',
    permission: { kind: 'access', field: 'storage', level: 'read', action: 'read storage' },
    fuel: 32_768,
  },
  storage_put: {
    ...asked,
    params: [text('key', 'a storage key', MAX_KEY_BYTES), bytes('value')],
    answer: 'status',
    permission: { kind: 'access', field: 'storage', level: 'readwrite', action: 'write storage' },
    fuel: 32_768,
  },
  storage_delete: {
    ...asked,
    params: [text('key', 'a storage key', MAX_KEY_BYTES)],
    answer: 'found',
    permission: { kind: 'access', field: 'storage', level: 'readwrite', action: 'write storage' },
    fuel: 32_768,
  },
  storage_list: {
    ...asked,
    params: [text('prefix', 'a storage prefix', MAX_KEY_BYTES), buffer()],
    answer: 'list',
    permission: { kind: 'access', field: 'storage', level: 'read', action: 'read storage' },
    fuel: 32_768,
  },
  content_create: {
    ...asked,
    params: [
      text('type', 'a content type', MAX_CONTENT_TYPE_BYTES),
      text('data', 'content data'),
      buffer('id'),
    ],
    answer: 'text',
    permission: { kind: 'access', field: 'content', level: 'readwrite', action: 'create content' },
    fuel: 32_768,
  },
  content_get: {
    ...asked,
    params: [text('id', 'a content id', MAX_CONTENT_ID_BYTES), buffer()],
    answer: 'text',
    permission: { kind: 'access', field: 'content', level: 'read', action: 'read content' },
    fuel: 32_768,
  },
  event_emit: {
    ...asked,
    params: [
      text('topic', 'an event topic', MAX_TOPIC_LENGTH),
      text('data', 'event data', MAX_EVENT_DATA_BYTES),
    ],
    answer: 'status',
    permission: { kind: 'topic' },
    fuel: 32_768,
  },
  config_get: {
    ...asked,
    // Its own configuration, which the runner holds (the Welcome's spec): no need to ask the host.
    reply: false,
    params: [text('key', 'a configuration key', MAX_KEY_BYTES), buffer()],
    answer: 'text',
    fuel: 16_384,
  },
} as const satisfies Record<string, HostFunction>;

/** What a function answering `found`, `bytes`, `text` or `list` returns for "no such key or item". */
export const NOT_FOUND = -1;

export type HostFunctionName = keyof typeof HOST_FUNCTIONS;
type Row<N extends HostFunctionName> = (typeof HOST_FUNCTIONS)[N];

/** Host-scope functions: the HostApi's methods. */
export type HostApiName = {
  [N in HostFunctionName]: Row<N>['scope'] extends 'host' ? N : never;
}[HostFunctionName];
/** Functions each runtime marshals by hand (HostFunction.ownMarshalling). */
export type OwnMarshalledName = {
  [N in HostFunctionName]: Row<N>['ownMarshalling'] extends true ? N : never;
}[HostFunctionName];
/** Fields of reed_host_api. */
export type NativeName = {
  [N in HostFunctionName]: Row<N>['native'] extends true ? N : never;
}[HostFunctionName];
/** Functions a runner asks the host for (HostCall frames). */
export type HostCallName = { [N in HostApiName]: Row<N>['reply'] extends true ? N : never }[HostApiName];
/** Host-scope functions a runner answers itself. */
export type RunnerAnsweredName = Exclude<HostApiName, HostCallName>;

type ArgValue<K> = K extends 'i32'
  ? number
  : K extends 'text'
    ? string
    : K extends 'bytes'
      ? Uint8Array
      : never;
/** The parameters a HostApi method takes: every parameter but the answer's buffer, in order. */
type ArgsOf<P> = P extends readonly [infer First extends Param, ...infer Rest]
  ? First['kind'] extends 'buffer'
    ? ArgsOf<Rest>
    : [ArgValue<First['kind']>, ...ArgsOf<Rest>]
  : [];
type ResultOf<A> = A extends 'found'
  ? boolean
  : A extends 'bytes'
    ? Uint8Array | undefined
    : A extends 'text'
      ? string | undefined
      : A extends 'list'
        ? string[]
        : // biome-ignore lint/suspicious/noConfusingVoidType: a method's return type (implementations return nothing)
          void;

/**
 * What a runtime may ask the host for, on behalf of one plugin: one method per host-scope row of
 * HOST_FUNCTIONS, named as in the ABI. Synchronous: a WASM plugin calls it in the middle of its own execution.
 * Implemented on the host side by PluginHostApi, which checks permissions and limits; in process and container
 * modes the runner asks the host over the socket. Methods throw ReedError (`permission_denied`,
 * `storage_quota_exceeded`, `invalid_argument`, ...). log's level: 0 debug, 1 info, 2 warn, 3 error (others
 * count as info, as in the seed). JSON travels as text: content data and items
 * (`{"id","type","data","createdBy"}`), event data (empty for none), configuration values (key "" for the table).
 */
export type HostApi = {
  [N in HostApiName]: (...args: ArgsOf<Row<N>['params']>) => ResultOf<Row<N>['answer']>;
};

/** An argument as it arrives at any layer, before the method's own types are known. */
export type HostArg = number | string | Uint8Array;

export const HOST_FUNCTION_NAMES = Object.keys(HOST_FUNCTIONS) as HostFunctionName[];
export const HOST_API_NAMES = HOST_FUNCTION_NAMES.filter(
  (name): name is HostApiName => HOST_FUNCTIONS[name].scope === 'host',
);
/** The functions each runtime marshals by hand, and the host-scope ones marshalled from their rows. */
export const OWN_MARSHALLED_NAMES = HOST_FUNCTION_NAMES.filter(
  (name): name is OwnMarshalledName => HOST_FUNCTIONS[name].ownMarshalling,
);
export const TABLE_MARSHALLED_NAMES = HOST_API_NAMES.filter((name) => !HOST_FUNCTIONS[name].ownMarshalling);
export const HOST_CALL_NAMES = HOST_API_NAMES.filter(
  (name): name is HostCallName => HOST_FUNCTIONS[name].reply,
);

/** The row of `name`, own properties only (names come from plugins and runners: `__proto__` is none). */
export function hostFunction(name: string): HostFunction | undefined {
  return Object.hasOwn(HOST_FUNCTIONS, name) ? HOST_FUNCTIONS[name as HostFunctionName] : undefined;
}

export function isHostCallName(name: unknown): name is HostCallName {
  return typeof name === 'string' && hostFunction(name)?.reply === true;
}
