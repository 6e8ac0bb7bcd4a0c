// `npm run bench`: every benchmark, each printing its figures beside a baseline measured in the same run.
// Targets are reported, never enforced in tests: these machines are shared and noisy.
import { runApiBench } from './api.js';
import { runContainerBench } from './container.js';
import { runDiscoveryBench } from './discovery.js';
import { runEncodingBench } from './encoding.js';
import { runExtismBench } from './extism.js';
import { runIdleBench } from './idle.js';
import { runImportFuelBench } from './import-fuel.js';
import { runMetricsBench } from './metrics.js';
import { runNativeBench } from './native.js';
import { runPoolBench } from './pool.js';
import { runProcessBench } from './process.js';
import { runScaleBench } from './scale.js';
import { runScaleProcessBench } from './scale-process.js';
import { runTenantsBench } from './tenants.js';
import { runTlsTransportBench } from './tls-transport.js';
import { runWasmBench } from './wasm.js';

const benches: [string, () => boolean | Promise<boolean>][] = [
  ['discovery', runDiscoveryBench],
  ['scale', runScaleBench],
  ['wasm', runWasmBench],
  ['extism', runExtismBench],
  ['import-fuel', runImportFuelBench],
  ['metrics', runMetricsBench],
  ['native', runNativeBench],
  ['process', runProcessBench],
  ['pool', runPoolBench],
  ['idle', runIdleBench],
  ['encoding', runEncodingBench],
  ['container', runContainerBench],
  ['api', runApiBench],
  ['tenants', runTenantsBench],
  ['tls-transport', runTlsTransportBench],
  ['scale-process', runScaleProcessBench],
];
// Names select benches; `--name value` (or `--name=value`) are options a bench reads itself (scale-process).
const only = process.argv
  .slice(2)
  .filter(
    (a, i, all) => !a.startsWith('--') && !(all[i - 1]?.startsWith('--') && !all[i - 1]?.includes('=')),
  );
const missed: string[] = [];
for (const [name, run] of benches) {
  if (only.length > 0 && !only.includes(name)) continue;
  if (!(await run())) missed.push(name);
}
console.log(missed.length === 0 ? '\nall targets met' : `\ntargets missed: ${missed.join(', ')}`);
