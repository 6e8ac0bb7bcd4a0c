import { MessageChannel, Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { awaitMessage } from '../../sandbox-runner/host-reply-wait.js';

/**
 * The runner's worker waits for each host reply on a shared flag (sandbox-runner/host-reply-wait.ts). A notify that
 * comes while no reply is on the port (the main thread's late notify of the previous reply) must not be taken for
 * the reply: before, the host call failed with "the runner lost its host connection", and the real reply, left on
 * the port, answered the next host call, so every later reply was one behind (found by the soak: gets answered with
 * older values).
 */
describe("the runner worker's wait for a host reply", () => {
  it('a wake with no message on the port is not a reply: it waits on, and gets the reply that follows', () => {
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const { port1, port2 } = new MessageChannel();
    // The other thread: a stray notify once someone waits (it loops until one woke), then the reply the real way.
    const helper = new Worker(
      `
      const { workerData } = require('node:worker_threads');
      const { flag, port } = workerData;
      const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      while (Atomics.notify(flag, 0) === 0) pause(1);
      pause(50);
      port.postMessage({ type: 'hostReply', reply: 'the reply' });
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      `,
      { eval: true, workerData: { flag, port: port1 }, transferList: [port1] },
    );
    try {
      expect(awaitMessage<{ reply: string }>(flag, port2)).toEqual({ type: 'hostReply', reply: 'the reply' });
    } finally {
      void helper.terminate();
      port2.close();
    }
  });
});
