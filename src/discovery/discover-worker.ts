// A discovery worker thread (src/discovery/parallel.ts): analyses the plugin directories of the chunks it claims,
// with the same code as the calling thread, and posts the candidates back as JSON.
import { isMainThread, workerData } from 'node:worker_threads';
import { useManifestValidator } from '../manifest/parse-manifest.js';
import { analyzeJob, type DirJob, type DiscoveryContext, portableCandidate } from './discover.js';
import { type ChunkWorkerData, serveChunks } from './parallel.js';

if (!isMainThread && workerData !== null && typeof workerData === 'object') {
  const data = workerData as ChunkWorkerData<DirJob, DiscoveryContext>;
  const source = data.context?.manifestValidator;
  if (typeof source === 'string') useManifestValidator(source);
  serveChunks(data, analyzeJob, portableCandidate, true);
}
