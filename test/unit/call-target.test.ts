// The call fast path's reading of a request target (src/server/call-fast-path.ts plainCallTarget), written with
// indexOf and slices for speed (the API bench, issue 14): for every target it must take the calls the split('/')
// reading took before, with the same tenant, plugin and function, and leave every other target to fastify. And the
// call bodies' counts (CallBodies), which keep a tenant's 0 rather than delete it: still exact past their sweep.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { plainCallTarget } from '../../src/server/call-fast-path.js';
import { CallBodies, DEFAULT_BODIES_PER_TENANT } from '../../src/server/call-route.js';
import { DEFAULT_TENANT, type Tenant } from '../../src/tenants/tenant.js';

/** The reading before (split('/')), with the same NOT_PLAIN. */
function reference(url: string) {
  if (!url.startsWith('/v1/') || /[^!-~]|[%\\#"'<>`{}^|?]|\/\.|\/\//.test(url)) return undefined;
  const parts = url.split('/');
  let target: { tenantId: string; id: string; fn: string };
  if (parts.length === 6 && parts[2] === 'plugins' && parts[4] === 'call')
    target = { tenantId: DEFAULT_TENANT, id: parts[3] as string, fn: parts[5] as string };
  else if (parts.length === 8 && parts[2] === 'tenants' && parts[4] === 'plugins' && parts[6] === 'call')
    target = { tenantId: parts[3] as string, id: parts[5] as string, fn: parts[7] as string };
  else return undefined;
  return target.fn === '' ? undefined : target;
}

describe('plainCallTarget', () => {
  it('reads every target as the split reading did', () => {
    const segments = [
      '',
      'v1',
      'plugins',
      'tenants',
      'call',
      'a',
      'x.y-z',
      'calls',
      'plugin',
      '.',
      '..',
      '%2e',
      'a?q',
    ];
    const urls = new Set<string>([
      '/v1/plugins/example.hello/call/echo',
      '/v1/tenants/acme/plugins/seo/call/run',
      '/v1/plugins/call/call/call',
      '/v1/tenants/plugins/plugins/tenants/call/plugins',
      '/v1/plugins/a/call/',
      '/v1/plugins/a/call',
      '/v1/plugins/a/call/b/',
      '/v1/plugins/a/call/b/c',
      '/v1/plugins//call/b',
      '/v1/tenants/t/plugins/a/call/b?x=1',
      '/v1/tenants/t/plugins/a/call/b#f',
      '/v1/tenants/t/call/b',
      '/v1/tenants//plugins/a/call/b',
      '/v1/tenants/t/plugins/a/call/',
      '/v1/plugins/a%2fb/call/c',
      '/v1/plugins/a/./call/b',
      '/v2/plugins/a/call/b',
      'v1/plugins/a/call/b',
      '/v1/plugins/a/call/b\u00e9',
      '/v1/',
      '/v1/plugins/',
      '/v1/tenants/t',
      '',
    ]);
    // Paths of up to 8 segments from a small alphabet of segments, under /v1/.
    const grow = (prefix: string, depth: number) => {
      if (depth === 0) return;
      for (const s of segments) {
        const url = `${prefix}/${s}`;
        urls.add(url);
        grow(url, depth - 1);
      }
    };
    for (const second of ['plugins', 'tenants'])
      for (const a of segments)
        for (const b of ['plugins', 'call', 'a'])
          for (const c of segments) {
            const base = `/v1/${second}/${a}/${b}/${c}`;
            urls.add(base);
            grow(base, 2);
          }
    let taken = 0;
    const differ: string[] = [];
    for (const url of urls) {
      const expected = reference(url);
      if (expected !== undefined) taken++;
      if (JSON.stringify(plainCallTarget(url)) !== JSON.stringify(expected)) differ.push(url);
    }
    expect(differ).toEqual([]);
    // The cases include calls of both routes, not only refusals.
    expect(taken).toBeGreaterThan(100);
  });
});

describe('CallBodies', () => {
  const tenant = (id: string, max?: number) =>
    ({
      id,
      spec: { quotas: max === undefined ? undefined : { max_concurrent_calls: max } },
    }) as unknown as Tenant;
  const request = () => {
    const req = new PassThrough() as unknown as PassThrough & { headers: Record<string, string> };
    req.headers = {};
    return req;
  };
  const read = (bodies: CallBodies, t: Tenant, outcome?: Promise<unknown>) => {
    const req = request();
    const body = new Promise<Buffer | undefined>((resolve, reject) =>
      bodies.read(t, req as never, 1024, (error, got) => {
        if (error === undefined) resolve(got);
        else reject(error);
        return outcome;
      }),
    );
    return { req, body };
  };

  it('counts a body as held until the call it was read for is answered', async () => {
    const bodies = new CallBodies();
    const t = tenant('slow', 1);
    let answer = () => {};
    const outcome = new Promise<void>((resolve) => {
      answer = resolve;
    });
    const { req, body } = read(bodies, t, outcome);
    req.end('x');
    await body;
    // Read, but its call not answered: a second body is refused.
    expect(bodies.refusal(t, 'p')?.code).toBe('quota_exceeded');
    answer();
    await outcome;
    await Promise.resolve();
    expect(bodies.refusal(t, 'p')).toBeUndefined();
  });

  it('counts the bodies being received per tenant, exact after many tenants came and went', async () => {
    const bodies = new CallBodies();
    // More tenants than the counts kept at 0 before a sweep, each reading one body to its end.
    for (let i = 0; i < 200; i++) {
      const t = tenant(`t${i}`, 1);
      const { req, body } = read(bodies, t);
      expect(bodies.refusal(t, 'p')?.code).toBe('quota_exceeded');
      req.end('x');
      await expect(body).resolves.toEqual(Buffer.from('x'));
      expect(bodies.refusal(t, 'p')).toBeUndefined();
    }
    // Tenants reading across a sweep keep their counts.
    const busy = tenant('busy', 2);
    const first = read(bodies, busy);
    for (let i = 0; i < 100; i++) {
      const t = tenant(`u${i}`);
      const { req, body } = read(bodies, t);
      req.end();
      await body;
    }
    expect(bodies.refusal(busy, 'p')).toBeUndefined();
    const second = read(bodies, busy);
    expect(bodies.refusal(busy, 'p')?.details?.limit).toBe(2);
    first.req.end('a');
    second.req.destroy();
    await first.body;
    await expect(second.body).rejects.toThrow();
    expect(bodies.refusal(busy, 'p')).toBeUndefined();
    // The host-wide default for a tenant without max_concurrent_calls.
    const open = tenant('open');
    const held = Array.from({ length: DEFAULT_BODIES_PER_TENANT }, () => read(bodies, open));
    expect(bodies.refusal(open, 'p')?.code).toBe('quota_exceeded');
    for (const h of held) h.req.end();
    await Promise.all(held.map((h) => h.body));
    expect(bodies.refusal(open, 'p')).toBeUndefined();
  });
});
