/**
 * `work`, or a rejection with `message` once `ms` passed without it settling. For work a remote party paces (an
 * engine's answers, a swarm manager's): a client's own timeout counts idle time only, so a party answering a byte
 * now and then would hold the caller for ever. The work itself runs on; only the wait ends.
 */
export function within<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
