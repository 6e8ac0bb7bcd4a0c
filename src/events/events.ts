// Lifecycle and call events, published through node:diagnostics_channel (one named channel per event, as undici
// does): logs subscribe today (log-subscriber.ts), metrics, audit and the API's status will. A publisher never
// knows who listens, and a channel nobody subscribes to costs one property read. One exception, every call's event:
// `reed:call:finished`'s in-process subscribers live in a list of this module (callListeners, below).
import diagnosticsChannel from 'node:diagnostics_channel';
import type { Code } from '../codes.js';
import type { ReedError } from '../errors.js';
import type { PluginType, SandboxMode } from '../manifest/types.js';

/**
 * What every event carries. Channels are process-wide: `session` (the publishing host's `session.id`) lets a
 * subscriber keep to one host when several run in the same process.
 */
export interface EventBase {
  session: string;
  /** The publishing host's tenant (src/tenants/registry.ts gives every host one; `default` for the default tenant). */
  tenant?: string;
  pluginId: string;
  mode: SandboxMode;
}

/** A plugin's sandbox started and its `init` ran: it takes calls. */
export interface PluginLoadedEvent extends EventBase {
  version: string;
  /** From the start of its sandbox (plan, runtime, runner or container) to `init` done: the cold start. */
  startMs?: number;
  /** What runs it: `wasm` or `native`. */
  runtime?: PluginType;
}

/** A plugin could not be loaded (validation passed; its start, signature check or a dependency failed). */
export interface PluginFailedEvent extends EventBase {
  error: ReedError;
}

/**
 * A plugin's sandbox was stopped (its `deactivate` ran, or failed: then `error` says how, with its code when it had
 * one): at close, at removal, or an old version after an upgrade (then another version goes on serving).
 */
export interface PluginStoppedEvent extends EventBase {
  /** The version stopped. */
  version?: string;
  /** Calls were still in flight when the drain's time (`[lifecycle] drain_timeout_ms`) ran out. */
  drainTimedOut?: boolean;
  error?: { code: string | undefined; message: string };
}

/** A new version serves in place of `fromVersion` (which now drains and stops). */
export interface PluginUpgradedEvent extends EventBase {
  version: string;
  fromVersion: string;
  /** The new version's cold start, as `reed:plugin:loaded`'s `startMs`. */
  startMs?: number;
  runtime?: PluginType;
}

/** A new version did not validate, load or init: `fromVersion` keeps serving (or stays failed). */
export interface PluginUpgradeFailedEvent extends EventBase {
  version: string;
  fromVersion: string;
  error: ReedError;
}

/** The version on probation (`fromVersion`) tripped its breaker; `version` was restored and serves. */
export interface PluginRolledBackEvent extends EventBase {
  version: string;
  fromVersion: string;
  /** The breaker's `plugin_failed`, its cause the last crash. */
  error: ReedError;
}

/** A plugin was drained, stopped and forgotten by the host. */
export interface PluginRemovedEvent extends EventBase {
  version: string;
}

/** A runner (process or container) connected, authenticated and loaded its plugin. */
export interface SandboxStartedEvent extends EventBase {
  /** The runner's pid, or the container's init's. */
  pid: number | undefined;
  /** Whether it replaces a runner that was lost (then `reed:sandbox:restarted` follows). */
  restart: boolean;
  /** From the runner's spawn (or the container's creation) to its plugin loaded: this runner's cold start. */
  startMs?: number;
  /** A warm runner of a pool was handed out (`startMs` is then its hand-out), not one started for the plugin. */
  pooled?: boolean;
  /** The isolation that holds for this runner, and what does not (docs/SECURITY.md). */
  enforced: string[];
  notEnforced: string[];
}

/**
 * A runner was lost (it exited, was killed for a deadline or a health ping, or ran out of memory) or a new one
 * failed to start. `restartInMs` is set when another is started after that delay; absent when the breaker opens.
 */
export interface SandboxCrashedEvent extends EventBase {
  error: ReedError;
  /** Crashes within the breaker's window, this one included (0 when it does not count: the engine was away). */
  crashes: number;
  restartInMs?: number;
}

/** A runner started again after a crash and serves calls. */
export interface SandboxRestartedEvent extends EventBase {
  pid: number | undefined;
  /** From the loss to ready again. */
  downtimeMs: number;
}

/**
 * Scale to zero: the sandbox took no call for its `idle_timeout` and was stopped (its `deactivate` ran, its runner or
 * container or WASM instance is gone; its storage and data directory stay). Its status says `idle`; the next call
 * wakes it (`reed:sandbox:woke`). Not a crash: the breaker does not count it.
 */
export interface SandboxIdledEvent extends EventBase {
  /** The runner's pid that was stopped (process and container modes). */
  pid: number | undefined;
  idleTimeoutMs: number;
  /** Why, in words: `no call for 300000 ms (idle_timeout)`. */
  reason: string;
}

/** An idle sandbox started again for a call (`reason`: `call "fn"`), through the normal start path. */
export interface SandboxWokeEvent extends EventBase {
  pid: number | undefined;
  reason: string;
  /** From the call that woke it to ready again (waiting for the idle stop to finish included). */
  wakeMs: number;
}

/**
 * Too many crashes within the window (or a failed trial start while half-open): the plugin is marked failed and
 * calls fail at once with `plugin_failed` (`error`) until `retryAt`, when the breaker half-opens.
 */
export interface BreakerOpenedEvent extends EventBase {
  error: ReedError;
  crashes: number;
  windowMs: number;
  /** How long it stays open: the first cool-down, doubled for each opening in a row, up to its cap. */
  cooldownMs: number;
  /** When it half-opens (ISO 8601). */
  retryAt: string;
}

/** The cool-down is over: one trial start follows (`reed:breaker:closed` when it succeeds, else opened again). */
export type BreakerHalfOpenEvent = EventBase;

/** The trial start succeeded: the plugin serves calls again, its crash count starts over. */
export interface BreakerClosedEvent extends EventBase {
  pid: number | undefined;
}

/** One call through `PluginHost.call`, whatever its outcome. */
export interface CallFinishedEvent extends Omit<EventBase, 'mode'> {
  /** Undefined when no plugin with that id is loaded. */
  mode: SandboxMode | undefined;
  fn: string;
  /** `ok`, or the error's code. */
  code: 'ok' | Code;
  durationMs: number;
  /** WASM instructions charged; 0 where fuel does not apply or the call failed. */
  fuelConsumed: number;
}

/**
 * A container image was built (or its build failed), on the channel `reed:image:built`: process-wide, not one
 * plugin's or one host's (an image serves every host of the process), so it is not among `ReedEvents`, whose events
 * all carry a session and a plugin. `kind`: `runner` (the Node base and the runner) or `plugin`.
 */
export interface ImageBuiltEvent {
  kind: 'runner' | 'plugin';
  image: string;
  durationMs: number;
  /** `ok`, or the build's error code. */
  code: 'ok' | Code;
}

/** Every channel's name and what it carries. */
export interface ReedEvents {
  'reed:plugin:loaded': PluginLoadedEvent;
  'reed:plugin:failed': PluginFailedEvent;
  'reed:plugin:stopped': PluginStoppedEvent;
  'reed:plugin:upgraded': PluginUpgradedEvent;
  'reed:plugin:upgrade-failed': PluginUpgradeFailedEvent;
  'reed:plugin:rolled-back': PluginRolledBackEvent;
  'reed:plugin:removed': PluginRemovedEvent;
  'reed:sandbox:started': SandboxStartedEvent;
  'reed:sandbox:crashed': SandboxCrashedEvent;
  'reed:sandbox:restarted': SandboxRestartedEvent;
  'reed:sandbox:idled': SandboxIdledEvent;
  'reed:sandbox:woke': SandboxWokeEvent;
  'reed:breaker:opened': BreakerOpenedEvent;
  'reed:breaker:half-open': BreakerHalfOpenEvent;
  'reed:breaker:closed': BreakerClosedEvent;
  'reed:call:finished': CallFinishedEvent;
}

export type EventName = keyof ReedEvents;

export const EVENT_NAMES: readonly EventName[] = [
  'reed:plugin:loaded',
  'reed:plugin:failed',
  'reed:plugin:stopped',
  'reed:plugin:upgraded',
  'reed:plugin:upgrade-failed',
  'reed:plugin:rolled-back',
  'reed:plugin:removed',
  'reed:sandbox:started',
  'reed:sandbox:crashed',
  'reed:sandbox:restarted',
  'reed:sandbox:idled',
  'reed:sandbox:woke',
  'reed:breaker:opened',
  'reed:breaker:half-open',
  'reed:breaker:closed',
  'reed:call:finished',
];

/** The channels, made once: `channel(name)` returns the same object each time, and holding it here is cheaper. */
const CHANNELS = Object.fromEntries(
  EVENT_NAMES.map((name) => [name, diagnosticsChannel.channel(name)]),
) as Record<EventName, diagnosticsChannel.Channel>;

/**
 * Where `reed:call:finished`'s subscribers live. It is every call's event: those subscribed through
 * `subscribeEvent` (metrics, tests, an embedder) sit in this plain list, which `publishCallFinished` calls directly,
 * one call site in our own code (the registry's function inlined into the call's reaction, where
 * `diagnostics_channel`'s shared `publish` calls every channel's subscribers from one site, with a try/catch and a
 * getter around it). The channel of that name still carries the event to whoever subscribes to it directly
 * (`diagnostics_channel.subscribe`). Replaced, never changed in place: a publish under way keeps the list it began.
 */
let callListeners: readonly ((event: CallFinishedEvent) => void)[] = [];
const CALL_CHANNEL = CHANNELS['reed:call:finished'];

/**
 * Where a call's outcome is added up (a metrics registry's series of one tenant, plugin and mode): `add` is the one
 * place that says what a finished call records there, whether it came as an event or directly.
 */
export interface CallSink {
  add(code: string, durationMs: number, fuelConsumed: number): void;
}

/**
 * A subscriber of `reed:call:finished` that can also be given a call without its event (the metrics registry).
 * When it is the only subscriber (no other in the list, none on the channel), a call settled at once (mode none)
 * adds to the sink it hands out instead of building and publishing the event; everything else gets the event.
 */
export interface CallRecorder {
  readonly onCall: (event: CallFinishedEvent) => void;
  /** The sink of a host's (session, tenant) calls to a plugin in a mode; undefined when it does not count them. */
  sinkOf(
    session: string,
    tenant: string | undefined,
    pluginId: string,
    mode: SandboxMode,
  ): CallSink | undefined;
}

/** The recorders subscribed, by their listener. */
const recorders = new WeakMap<(event: CallFinishedEvent) => void, CallRecorder>();
/** The recorder whose listener is the list's only one. */
let soleRecorder: CallRecorder | undefined;
/**
 * Changes whenever the list does: a sink kept by a generation is good while this has not changed since it was
 * taken (a recorder unsubscribed, or another subscriber came, and the sink must no longer be added to directly).
 */
let callListenersVersion = 0;

function setCallListeners(listeners: readonly ((event: CallFinishedEvent) => void)[]): void {
  callListeners = listeners;
  callListenersVersion++;
  soleRecorder =
    listeners.length === 1 ? recorders.get(listeners[0] as (event: CallFinishedEvent) => void) : undefined;
}

/** The recorder that may be given a call directly (the only subscriber), or undefined: then publish the event. */
export function soleCallRecorder(): CallRecorder | undefined {
  return soleRecorder === undefined || CALL_CHANNEL.hasSubscribers ? undefined : soleRecorder;
}

/** See callListenersVersion. */
export function callSubscribersVersion(): number {
  return callListenersVersion;
}

/** Subscribes a recorder to `reed:call:finished` (its `onCall`); returns the unsubscribe. */
export function subscribeCallRecorder(recorder: CallRecorder): () => void {
  recorders.set(recorder.onCall, recorder);
  return subscribeEvent('reed:call:finished', recorder.onCall);
}

/** Whether anyone listens: hot paths check this before they build a payload or read a clock. */
export function hasSubscribers(name: EventName): boolean {
  return name === 'reed:call:finished' ? hasCallSubscribers() : CHANNELS[name].hasSubscribers;
}

/**
 * `hasSubscribers('reed:call:finished')`, for the call path: a function this small is inlined into the host's call
 * where the general one, with its test of the name, was not (V8's budget: ~40 instructions a call more).
 */
export function hasCallSubscribers(): boolean {
  return callListeners.length !== 0 || CALL_CHANNEL.hasSubscribers;
}

/**
 * Publishes to everyone subscribed, synchronously. A subscriber that throws does not stop the publisher, but
 * its error is rethrown on the next tick (an uncaught exception), as `diagnostics_channel` does: subscribers must
 * not throw.
 */
export function publish<N extends EventName>(name: N, event: ReedEvents[N]): void {
  if (name === 'reed:call:finished') publishCallFinished(event as CallFinishedEvent);
  else {
    const channel = CHANNELS[name];
    if (channel.hasSubscribers) channel.publish(event);
  }
}

/** `publish('reed:call:finished', event)`, for the call path: the subscribers of the list, then the channel's. */
export function publishCallFinished(event: CallFinishedEvent): void {
  const listeners = callListeners;
  // One listener (a registry) is the common case: called without the loop.
  if (listeners.length === 1) notify(listeners[0] as (event: CallFinishedEvent) => void, event);
  else for (const listener of listeners) notify(listener, event);
  if (CALL_CHANNEL.hasSubscribers) CALL_CHANNEL.publish(event);
}

function notify(listener: (event: CallFinishedEvent) => void, event: CallFinishedEvent): void {
  try {
    listener(event);
  } catch (error) {
    process.nextTick(() => {
      throw error;
    });
  }
}

/**
 * Subscribes with the payload's type; returns the unsubscribe. The same as `diagnostics_channel.subscribe(name, fn)`
 * (for `reed:call:finished`, the list above): the listener itself is subscribed (no wrapper: one call less on every
 * call's path when metrics listen).
 */
export function subscribeEvent<N extends EventName>(
  name: N,
  listener: (event: ReedEvents[N]) => void,
): () => void {
  if (name === 'reed:call:finished') {
    const onCall = listener as (event: CallFinishedEvent) => void;
    setCallListeners([...callListeners, onCall]);
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      const at = callListeners.indexOf(onCall);
      setCallListeners(callListeners.filter((_, i) => i !== at));
    };
  }
  const onMessage = listener as (message: unknown, name: string | symbol) => void;
  diagnosticsChannel.subscribe(name, onMessage);
  return () => {
    diagnosticsChannel.unsubscribe(name, onMessage);
  };
}

const IMAGE_BUILT = diagnosticsChannel.channel('reed:image:built');

export function publishImageBuilt(event: ImageBuiltEvent): void {
  if (IMAGE_BUILT.hasSubscribers) IMAGE_BUILT.publish(event);
}

export function subscribeImageBuilt(listener: (event: ImageBuiltEvent) => void): () => void {
  const onMessage = (message: unknown) => listener(message as ImageBuiltEvent);
  diagnosticsChannel.subscribe('reed:image:built', onMessage);
  return () => {
    diagnosticsChannel.unsubscribe('reed:image:built', onMessage);
  };
}
