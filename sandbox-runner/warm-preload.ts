// Loaded before the runner's main module (`node --import`) in a warm runner of a pool (src/backends/pool/) only:
// it marks the runner warm, and the runner (main.ts) then loads and warms the WASM runtime up before it dials the
// host (warm-up.ts says what and why). The runner is one CommonJS file (scripts/bundle.mjs), and this mark is how a
// module loaded before it reaches it: the warm-up has to run on that file's own copy of the runtime, the one the
// Welcome then uses.
import { WARM_RUNNER } from './warm-up.js';

(globalThis as Record<symbol, unknown>)[WARM_RUNNER] = true;
