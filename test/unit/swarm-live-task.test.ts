// Which task a swarm runner watches once it has dialed in (src/backends/swarm/swarm-runner.ts, liveTask): the one
// the swarm wants running that has not ended, whatever the manager says of it yet. CI once met a runner that dialed
// in while the manager still said `starting`: taking only `running` tasks left it unwatched, and its node, lost
// without a FIN, was never seen (test/integration/swarm-conformance.test.ts, "a node lost").
import { describe, expect, it } from 'vitest';
import { liveTask, type TaskView } from '../../src/backends/swarm/swarm-runner.js';

const task = (ID: string, DesiredState: string, State: string): TaskView => ({
  ID,
  DesiredState,
  Status: { State },
});

describe('the task a swarm runner watches', () => {
  it('is the task wanted running, in any state the manager reports before it has heard of the start', () => {
    for (const state of ['assigned', 'accepted', 'preparing', 'starting', 'running'])
      expect(liveTask([task('a', 'running', state)])).toBe('a');
  });

  it('is never a task that ended or that the swarm wants shut down (an earlier, failed dial)', () => {
    const earlier = [
      task('failed', 'shutdown', 'failed'),
      task('ended', 'running', 'complete'),
      task('rejected', 'running', 'rejected'),
      task('going', 'shutdown', 'running'),
    ];
    expect(liveTask(earlier)).toBeUndefined();
    expect(liveTask([...earlier, task('live', 'running', 'starting')])).toBe('live');
  });
});
