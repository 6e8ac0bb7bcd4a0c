// The tests' view of processes through /proc: one module with the benches' (the soak uses it too).
export { alive, commandLines, descendants, parents, runnerNodePid } from '../../bench/processes.js';
