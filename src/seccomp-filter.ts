// The seccomp filter every runner lives under (docs/SECURITY.md, "tracing"): as BPF instructions, with no native
// code, so that both who install it can share it. In process mode bubblewrap installs it (`--seccomp FD`, from
// these bytes) before the runner's first instruction; in container mode, and for a native plugin's worker, the
// runner installs it on itself through koffi (sandbox-runner/confine.ts).

/** One classic-BPF instruction (struct sock_filter). */
export interface BpfInstruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

const SECCOMP_RET_ALLOW = 0x7fff0000;
const SECCOMP_RET_ERRNO_EPERM = 0x00050000 | 1;
const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_RET_K = 0x06;

/**
 * Per machine: the audit arch, the seccomp syscall, and the syscalls denied: those that reach into another process
 * (ptrace, process_vm_readv, process_vm_writev), and the kernel's keyrings (add_key, request_key, keyctl). A runner
 * in its own user namespace still has the session keyring of the host that started it (a service under systemd has
 * one of its own): every runner of every tenant could read and add keys there, a channel between tenants that
 * outlived a deleted tenant (the seventh review, session 22). Docker's default profile denies them too.
 */
export const SECCOMP_ARCHES: Partial<
  Record<NodeJS.Architecture, { audit: number; seccomp: number; denied: number[]; x32?: true }>
> = {
  // ptrace, process_vm_readv, process_vm_writev; add_key, request_key, keyctl
  x64: { audit: 0xc000003e, seccomp: 317, denied: [101, 310, 311, 248, 249, 250], x32: true },
  arm64: { audit: 0xc00000b7, seccomp: 277, denied: [117, 270, 271, 217, 218, 219] },
};

/**
 * The filter that fails the denied syscalls above with EPERM, and every syscall of a foreign ABI (i386 or x32 on
 * x86-64); everything else is allowed. Undefined on a machine it has no numbers for.
 */
export function tracingFilter(arch: NodeJS.Architecture = process.arch): BpfInstruction[] | undefined {
  const a = SECCOMP_ARCHES[arch];
  if (a === undefined) return undefined;
  const ins = (code: number, k: number, jt = 0, jf = 0): BpfInstruction => ({ code, jt, jf, k });
  const deny = ins(BPF_RET_K, SECCOMP_RET_ERRNO_EPERM);
  return [
    ins(BPF_LD_W_ABS, 4), // seccomp_data.arch
    ins(BPF_JEQ_K, a.audit, 1, 0),
    deny,
    ins(BPF_LD_W_ABS, 0), // seccomp_data.nr
    ...(a.x32 ? [ins(BPF_JGE_K, 0x40000000, 0, 1), deny] : []),
    ...a.denied.map((nr, i) => ins(BPF_JEQ_K, nr, a.denied.length - i, 0)),
    ins(BPF_RET_K, SECCOMP_RET_ALLOW),
    deny,
  ];
}

/** The program as the kernel reads it (an array of struct sock_filter, 8 bytes each, in the machine's byte order). */
export function filterBytes(program: readonly BpfInstruction[]): Buffer {
  const bytes = Buffer.alloc(program.length * 8);
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  program.forEach((insn, i) => {
    const at = i * 8;
    if (le) bytes.writeUInt16LE(insn.code, at);
    else bytes.writeUInt16BE(insn.code, at);
    bytes.writeUInt8(insn.jt, at + 2);
    bytes.writeUInt8(insn.jf, at + 3);
    if (le) bytes.writeUInt32LE(insn.k >>> 0, at + 4);
    else bytes.writeUInt32BE(insn.k >>> 0, at + 4);
  });
  return bytes;
}
