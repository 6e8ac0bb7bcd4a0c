import type { PluginSpec } from '../../protocol/messages.js';
import { prepareWasm } from '../../runtime/wasm/compile-wasm.js';
import type { BackendContext, LoadPlan } from '../backend.js';
import { wasmOptions } from './wasm-options.js';

/**
 * What a runner is sent for a plan: the spec and the bytes it loads. A native library goes as checked; a WASM
 * module is prepared first (checked, instrumented, through the compile cache), and its exports join the spec.
 */
export async function runnerPayload(
  plan: LoadPlan,
  context: BackendContext<unknown>,
): Promise<{ spec: PluginSpec; bytes: Uint8Array }> {
  if (plan.type === 'native') return { spec: { ...plan.spec }, bytes: plan.bytes };
  const prepared = await prepareWasm(plan.entryPoint, wasmOptions(plan, context));
  return {
    spec: {
      ...plan.spec,
      exports: prepared.exports,
      isCommand: prepared.isCommand,
      hostCalls: prepared.hostCalls,
      logLevel: context.logger.level,
    },
    bytes: prepared.bytes,
  };
}
