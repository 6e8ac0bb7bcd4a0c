// What the sandbox-runner does to itself on Linux, through libc (koffi): die with the host, and deny tracing.
import koffi, { type LibraryHandle } from 'koffi';
import { ReedError } from '../src/errors.js';
import { SECCOMP_ARCHES, tracingFilter } from '../src/seccomp-filter.js';

const libc = () => {
  libcHandle ??= koffi.load('libc.so.6');
  return libcHandle;
};
let libcHandle: LibraryHandle | undefined;

const PR_SET_PDEATHSIG = 1;
const PR_SET_NO_NEW_PRIVS = 38;
const SECCOMP_SET_MODE_FILTER = 1;
const SECCOMP_FILTER_FLAG_TSYNC = 1;

let prctlFn: ReturnType<LibraryHandle['func']> | undefined;
const prctl = (option: number, arg: number) => {
  prctlFn ??= libc().func(
    'int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)',
  );
  return prctlFn(option, arg, 0, 0, 0) as number;
};

/** Die with the host even if a thread is stuck in a plugin (PR_SET_PDEATHSIG). */
export function dieWithParent(): void {
  prctl(PR_SET_PDEATHSIG, 9 /* SIGKILL */);
  if (process.ppid === 1) process.exit(0); // the host died before prctl took effect
}

/**
 * Installs the seccomp filter of src/seccomp-filter.ts on every thread of this process (TSYNC; threads made
 * later inherit it): it fails ptrace, process_vm_readv and process_vm_writev with EPERM, and every syscall of a
 * foreign ABI (i386 or x32 on x86-64). Container mode and native plugins' workers; in process mode bubblewrap has
 * installed the same filter before the runner started. It stacks on whatever filter the process already has (Docker's default profile in container
 * mode), which allows ptrace; filters only ever add restrictions. Throws `sandbox_start_failed` when the
 * kernel refuses: the runner then does not load the plugin.
 */
export function denyTracing(): void {
  const arch = SECCOMP_ARCHES[process.arch];
  const program = tracingFilter();
  if (arch === undefined || program === undefined)
    throw new ReedError(
      'sandbox_start_failed',
      `no seccomp filter for ${process.arch}: ptrace cannot be denied`,
    );
  // Anonymous types: koffi's named types are per process, and this may run in more than one thread.
  const filter = koffi.struct({ code: 'uint16', jt: 'uint8', jf: 'uint8', k: 'uint32' });
  const fprog = koffi.struct({ len: 'uint16', filter: koffi.pointer(filter) });
  const syscall = libc().func('long syscall(long number, ...)');
  if (prctl(PR_SET_NO_NEW_PRIVS, 1) !== 0)
    throw new ReedError('sandbox_start_failed', `prctl(PR_SET_NO_NEW_PRIVS) failed (errno ${koffi.errno()})`);
  const result = syscall(
    arch.seccomp,
    'uint',
    SECCOMP_SET_MODE_FILTER,
    'uint',
    SECCOMP_FILTER_FLAG_TSYNC,
    koffi.pointer(fprog),
    { len: program.length, filter: program },
  ) as number;
  if (result !== 0) {
    throw new ReedError(
      'sandbox_start_failed',
      `the kernel refused the seccomp filter that denies ptrace (result ${result}, errno ${koffi.errno()})`,
    );
  }
}
