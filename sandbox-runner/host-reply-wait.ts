// How the worker thread waits for the host's reply to one of its host calls (sandbox-runner/worker.ts), while the
// main thread (which owns the connection) fetches it: the main thread posts the reply on the port, stores 1 in the
// flag, then notifies.
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';

/**
 * Blocks until a message is on `port`, and returns it. `flag` is 0 while the worker waits (the caller stores 0
 * before it posts its request).
 *
 * A wake is not a reply: a notify wakes a waiter whatever the flag holds, and the main thread's store and notify of
 * one reply are two steps. When the worker found that reply on its own (the flag was already 1 as it began to wait)
 * and went on to its next host call, a notify left over from the previous reply woke it with no message there yet.
 * Taking that wake as the reply failed the call, and left the real reply on the port to be taken as the answer to
 * the host call after it: every reply after that was one behind (a get answered with the value of the get before).
 * So the port, not the wake, says when the reply is there; the timed wait only bounds a wake that never comes.
 */
export function awaitMessage<T>(flag: Int32Array, port: MessagePort): T {
  for (;;) {
    const received = receiveMessageOnPort(port);
    if (received !== undefined) return received.message as T;
    Atomics.wait(flag, 0, 0, 1_000);
  }
}
