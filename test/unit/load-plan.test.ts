import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ParsedCandidate } from '../../src/discovery/candidate.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { scanPlugins } from '../../src/host/scan-plugins.js';
import { admit, planLoad, signatureRequired } from '../../src/plan/load-plan.js';
import { readSource } from '../../src/plan/read-source.js';

const EXAMPLES = join(import.meta.dirname, '../../examples/plugins');
const config = loadHostConfig({
  cwd: EXAMPLES,
  env: {},
  home: EXAMPLES,
  overrides: { pluginDirs: [EXAMPLES], defaultSearchPaths: false },
});
const candidate = (id: string) => scanPlugins(config).candidates.find((c) => c.id === id) as ParsedCandidate;
const source = { bytes: new Uint8Array([1, 2, 3]), signer: undefined };

describe('planLoad (pure)', () => {
  it('makes the plan from the candidate, the configuration and the bytes it is given, and nothing else', () => {
    // An entry point that does not exist: planning never reads it.
    const hello = { ...candidate('example.hello'), entryPoint: '/nonexistent/plugin.wasm' };
    const plan = planLoad(hello, 'process', config, source);
    expect(plan).toMatchObject({
      pluginId: 'example.hello',
      version: '0.1.0',
      mode: 'process',
      type: 'wasm',
      entryPoint: '/nonexistent/plugin.wasm',
      bytes: source.bytes,
      signer: undefined,
      limits: config.limits,
      grants: { network: false, permissions: { log: true } },
      containerRuntime: 'runc',
      spec: {
        id: 'example.hello',
        type: 'wasm',
        apiVersion: config.apiVersion,
        hostCalls: true,
        configuration: { greeting: 'Hello' },
      },
    });
    expect(planLoad(hello, 'process', config, source)).toEqual(plan);
  });

  it('grants network only when both the manifest asks and the policy allows', () => {
    const hello = candidate('example.hello');
    const asking = {
      ...hello,
      manifest: { ...hello.manifest, permissions: { ...hello.manifest.permissions, network: true } },
    };
    expect(planLoad(asking, 'process', config, source).grants.network).toBe(false);
    const open = {
      ...config,
      policy: { ...config.policy, permissions: { ...config.policy.permissions, network: true } },
    };
    expect(planLoad(asking, 'process', open, source).grants.network).toBe(true);
  });

  it('grants the data directory only as asked and allowed: the host path in the grant, the runtime view in the spec', () => {
    const hello = candidate('example.hello');
    const asking = (filesystem: 'none' | 'read' | 'readwrite', limits = {}) => ({
      ...hello,
      manifest: {
        ...hello.manifest,
        permissions: { ...hello.manifest.permissions, filesystem },
        limits: { ...hello.manifest.limits, ...limits },
      },
    });
    const allowing = {
      ...config,
      dataDir: '/srv/reed',
      policy: {
        ...config.policy,
        permissions: { ...config.policy.permissions, filesystem: 'readwrite' as const },
      },
    };
    const dir = {
      hostPath: '/srv/reed/files/example.hello',
      guestName: '/data',
      readOnly: false,
      diskBytes: 64 * 1024 * 1024,
      maxFiles: 10_000,
    };
    for (const mode of ['process', 'container'] as const) {
      const plan = planLoad(asking('readwrite'), mode, allowing, source);
      expect(plan.grants.filesystem).toEqual(dir);
      expect(plan.spec.filesystem).toEqual({ ...dir, hostPath: '/run/reed-data' });
    }
    const none = planLoad(asking('read', { diskMb: 2, maxFiles: 7 }), 'none', allowing, source);
    const read = { ...dir, readOnly: true, diskBytes: 2 * 1024 * 1024, maxFiles: 7 };
    expect(none.grants.filesystem).toEqual(read);
    expect(none.spec.filesystem).toEqual(read);
    // [wasi] preopen names the guest name (a program that opens relative paths wants "/").
    const rooted = asking('readwrite');
    const asRoot = { ...rooted, manifest: { ...rooted.manifest, wasi: { args: [], env: {}, preopen: '/' } } };
    expect(planLoad(asRoot, 'process', allowing, source).spec.filesystem).toEqual({
      ...dir,
      hostPath: '/run/reed-data',
      guestName: '/',
    });
    // Not asked: nothing granted, nothing in the spec (no preopen, nothing mounted).
    const notAsked = planLoad(asking('none'), 'process', allowing, source);
    expect(notAsked.grants.filesystem).toBeUndefined();
    expect('filesystem' in notAsked.spec).toBe(false);
  });

  it('never plans more filesystem than the policy allows, nor any for native code, with codes', () => {
    const hello = candidate('example.hello');
    const rw = {
      ...hello,
      manifest: {
        ...hello.manifest,
        permissions: { ...hello.manifest.permissions, filesystem: 'readwrite' as const },
      },
    };
    const readOnlyPolicy = {
      ...config,
      policy: {
        ...config.policy,
        permissions: { ...config.policy.permissions, filesystem: 'read' as const },
      },
    };
    expect(() => planLoad(rw, 'process', config, source)).toThrow(
      expect.objectContaining({ code: 'permission_denied_by_policy', field: 'permissions.filesystem' }),
    );
    expect(() => planLoad(rw, 'process', readOnlyPolicy, source)).toThrow(
      expect.objectContaining({ code: 'permission_denied_by_policy', pluginId: 'example.hello' }),
    );
    const native = candidate('example.native-c');
    const nativeAsking = {
      ...native,
      manifest: {
        ...native.manifest,
        permissions: { ...native.manifest.permissions, filesystem: 'read' as const },
      },
    };
    expect(() => planLoad(nativeAsking, 'process', readOnlyPolicy, source)).toThrow(
      expect.objectContaining({ code: 'filesystem_unsupported', field: 'permissions.filesystem' }),
    );
  });

  it('refuses what may not be loaded in that mode, with codes', () => {
    const native = candidate('example.native-c');
    expect(() => planLoad(native, 'none', config, source)).toThrow(
      expect.objectContaining({ code: 'native_in_process_denied' }),
    );
    const trusting = { ...config, policy: { ...config.policy, allowNativeInProcess: true } };
    expect(admit(native, 'none', trusting).type).toBe('native');
    const { entryPoint: _, ...noEntry } = candidate('example.hello');
    expect(() => planLoad(noEntry as ParsedCandidate, 'none', config, source)).toThrow(
      expect.objectContaining({ code: 'entry_point_missing' }),
    );
  });

  it('asks for a signature per [signatures] require, and always for native code in the host', () => {
    const at = (require: 'none' | 'native' | 'all') => ({
      ...config,
      signatures: { ...config.signatures, require },
    });
    expect(signatureRequired('wasm', 'none', at('native'))).toBe(false);
    expect(signatureRequired('native', 'process', at('native'))).toBe(true);
    expect(signatureRequired('wasm', 'process', at('all'))).toBe(true);
    expect(signatureRequired('native', 'process', at('none'))).toBe(false);
    expect(signatureRequired('native', 'none', at('none'))).toBe(true);
  });
});

describe('readSource (the I/O before planning)', () => {
  it('reads the entry point, bounded; no signature asked for WASM by default', () => {
    const hello = candidate('example.hello');
    const read = readSource(hello, 'none', config);
    expect(read.signer).toBeUndefined();
    expect(Buffer.from(read.bytes).equals(readFileSync(join(EXAMPLES, 'hello/plugin.wasm')))).toBe(true);
    const small = { ...config, wasm: { ...config.wasm, maxModuleBytes: 4 } };
    expect(() => readSource(hello, 'none', small)).toThrow(
      expect.objectContaining({ code: 'wasm_too_large' }),
    );
  });

  it('verifies a native plugin before reading it: an untrusted signer is refused', () => {
    expect(() => readSource(candidate('example.native-c'), 'process', config)).toThrow(
      expect.objectContaining({ code: expect.stringMatching(/^signature_/) }),
    );
  });
});
