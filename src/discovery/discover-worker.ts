// A discovery worker thread (src/discovery/parallel.ts): analyses the plugin directories of the chunks it claims,
// with the same code as the calling thread, and posts the candidates back as JSON. It serves every run of the
// calling thread while it is kept.
import { isMainThread, workerData } from 'node:worker_threads';
import { useManifestValidator } from '../manifest/parse-manifest.js';
import { analyzeJob, type DirJob, type DiscoveryContext, portableCandidate } from './discover.js';
import { type ChunkWorkerData, serveChunks } from './parallel.js';

if (!isMainThread && workerData !== null && typeof workerData === 'object') {
  // The validator's code is loaded once: the same code again would only make a new function V8 has not compiled.
  let loaded: string | undefined;
  const prepare = (context: DiscoveryContext) => {
    const source = context?.manifestValidator;
    if (typeof source === 'string' && source !== loaded) {
      useManifestValidator(source);
      loaded = source;
    }
  };
  serveChunks(
    workerData as ChunkWorkerData<DirJob, DiscoveryContext>,
    analyzeJob,
    portableCandidate,
    true,
    prepare,
  );
}
