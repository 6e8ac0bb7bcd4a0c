import { join } from 'node:path';
import { NativePlugin } from '../../runtime/native/native-plugin.js';
import { compileWasm } from '../../runtime/wasm/compile-wasm.js';
import { loadWasi, WasmPlugin } from '../../runtime/wasm/wasm-plugin.js';
import type { TenantIdentity } from '../../tenant-quotas.js';
import type { BackendFactory, LoadPlan } from '../backend.js';
import { wasmOptions } from '../shared/wasm-options.js';
import { InProcessSandbox } from './in-process-sandbox.js';
import { tenantBudgets } from './tenant-budget.js';

/**
 * Mode `none`: the runtime in the host process. Nothing outlives the host, so there is nothing to sweep. Under a
 * tenant (`tenant`), its WASM instances share its memory_mb and its calls its fuel_per_second (tenant-budget.ts).
 */
export const inProcessBackend: BackendFactory<{ tenant?: TenantIdentity }> = (context) => {
  const budgets = tenantBudgets(context.options.tenant);
  return {
    sandbox(plan: LoadPlan, host) {
      const { pluginId, limits } = plan;
      const idle = { timeoutMs: plan.idleTimeoutMs ?? 0, session: context.session };
      if (plan.type === 'native') {
        context.logger.warn(
          { pluginId, sandbox: plan.mode, signer: plan.signer },
          'native plugin runs inside the host process with the host\u2019s full rights: a crash in it takes the host down',
        );
        return new InProcessSandbox(
          pluginId,
          async () =>
            new NativePlugin({
              pluginId,
              bytes: plan.bytes,
              privateDir: join(context.settings.runtimeDir, 'native'),
              host,
              limits,
              hostApiVersion: plan.spec.apiVersion,
              warn: (message) => context.logger.warn({ pluginId }, message),
            }),
          limits.callTimeoutMs,
          budgets.fuel,
          idle,
        );
      }
      return new InProcessSandbox(
        pluginId,
        async () => {
          const compiled = await compileWasm(plan.entryPoint, wasmOptions(plan, context));
          await loadWasi(compiled.module);
          const memory = budgets.memory;
          const plugin = new WasmPlugin({
            pluginId,
            module: compiled.module,
            exports: compiled.exports,
            isCommand: compiled.isCommand,
            host,
            limits,
            wasi: plan.spec.wasi,
            logLevel: context.logger.level,
            // The data directory on the host itself (plan.grants.filesystem), when granted: WASI confines every path.
            ...(plan.spec.filesystem === undefined ? {} : { filesystem: plan.spec.filesystem }),
            // The runtime's own warnings (a WASI quota reached) with their code, whatever the plugin's log permission.
            warn: (code, message) => context.logger.warn({ pluginId, code }, message),
            ...(memory === undefined ? {} : { memoryBudget: memory }),
          });
          const remove = memory?.add(plugin);
          return remove === undefined ? plugin : withRelease(plugin, remove);
        },
        limits.callTimeoutMs,
        budgets.fuel,
        idle,
      );
    },
    sweep: async () => {},
  };
};

/** The runtime, which leaves its tenant's memory ledger when it is deactivated. */
function withRelease(plugin: WasmPlugin, release: () => void): WasmPlugin {
  const deactivate = plugin.deactivate.bind(plugin);
  plugin.deactivate = () => {
    try {
      deactivate();
    } finally {
      release();
    }
  };
  return plugin;
}
