import { describe, expect, it } from 'vitest';
import { ReedError } from '../../src/errors.js';
import { statusOf } from '../../src/server/answers.js';

describe('HTTP status of a call that failed', () => {
  it('is 503 for a wedged runner (a retry may succeed) and for a stopping host, 429 for a quota, 422 otherwise', () => {
    const status = (code: ConstructorParameters<typeof ReedError>[0]) => statusOf(new ReedError(code, 'x'));
    expect(status('runner_backlogged')).toBe(503);
    expect(status('host_closed')).toBe(503);
    expect(status('quota_exceeded')).toBe(429);
    expect(status('sandbox_crashed')).toBe(422);
  });
});
