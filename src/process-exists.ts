/** Whether process `pid` exists (EPERM: it does, as another user's). For sweeps of what dead processes left. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
