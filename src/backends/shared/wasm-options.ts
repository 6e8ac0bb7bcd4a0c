import type { WasmCompileOptions } from '../../runtime/wasm/compile-wasm.js';
import type { BackendContext, LoadPlan } from '../backend.js';

/** How every backend prepares a plan's WASM module: the plan's checked bytes, its limits, the host's settings. */
export function wasmOptions(plan: LoadPlan, context: BackendContext<unknown>): WasmCompileOptions {
  const { limits } = plan;
  return {
    ...context.settings.wasm,
    pluginId: plan.pluginId,
    memoryMb: limits.memoryMb,
    tableElements: limits.tableElements,
    fuelPerCall: limits.fuelPerCall,
    bytes: plan.bytes,
    ...(plan.abi === undefined ? {} : { abi: plan.abi }),
    ...(context.cache === undefined ? {} : { cache: context.cache }),
  };
}
