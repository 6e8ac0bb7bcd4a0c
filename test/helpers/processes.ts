// The tests' view of processes through /proc: one module with the benches' (the soak uses it too).
export { alive, commandLines, descendants, parents, runnerNodePid } from '../../bench/processes.js';

/**
 * What test/fixtures/native-process/trace answers under a runner's seccomp filter (src/seccomp-filter.ts), in every
 * mode that has one: EPERM for each way into another process and for the kernel's keyrings.
 */
export const TRACE_DENIED = {
  attach_child: 1,
  vm_readv_self: 1,
  vm_readv_new_thread: 1,
  attach_init: 1,
  keyctl: 1,
  add_key: 1,
  request_key: 1,
};
