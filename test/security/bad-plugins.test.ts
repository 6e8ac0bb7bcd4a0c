import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Code } from '../../src/codes.js';
import type { FileLimits } from '../../src/discovery/plugin-inventory.js';
import type { ValidationContext } from '../../src/validation/context.js';
import { policyWith } from '../helpers/context.js';
import { EMPTY_WASM, manifestToml, tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { scan } from '../helpers/scan.js';

const HEADER = '[metadata]\nname = "P"\nversion = "1.0.0"\napi_version = "1.0.0"\n';

interface Case {
  name: string;
  /** Builds the plugin(s) under `root`; the one asserted on lives in directory `p`. */
  build: (root: string) => void;
  code: Code;
  severity?: 'error' | 'warning';
  field?: string;
  context?: Partial<ValidationContext>;
  fileLimits?: Partial<FileLimits>;
}

const p = (
  root: string,
  manifest: Parameters<typeof writePlugin>[2],
  files?: Parameters<typeof writePlugin>[3],
) => writePlugin(root, 'p', manifest, files);

const CASES: Case[] = [
  { name: 'TOML syntax error', build: (r) => p(r, 'id = "p"\n[metadata\n'), code: 'manifest_syntax' },
  {
    name: 'invalid UTF-8',
    build: (r) =>
      p(r, Buffer.concat([Buffer.from(`${HEADER}id = "p`), Buffer.from([0xff, 0xfe]), Buffer.from('"\n')])),
    code: 'manifest_syntax',
  },
  {
    name: 'missing [metadata]',
    build: (r) => p(r, 'entry_point = "plugin.wasm"\n'),
    code: 'manifest_missing_field',
    field: 'metadata',
  },
  { name: 'missing id', build: (r) => p(r, HEADER), code: 'manifest_missing_field', field: 'metadata.id' },
  {
    name: 'missing name',
    build: (r) => p(r, '[metadata]\nid="p"\nversion="1.0.0"\napi_version="1.0.0"\n'),
    code: 'manifest_missing_field',
    field: 'metadata.name',
  },
  {
    name: 'missing version',
    build: (r) => p(r, '[metadata]\nid="p"\nname="P"\napi_version="1.0.0"\n'),
    code: 'manifest_missing_field',
    field: 'metadata.version',
  },
  {
    name: 'empty name',
    build: (r) => p(r, { id: 'p', name: '' }),
    code: 'manifest_invalid_value',
    field: 'metadata.name',
  },
  {
    name: 'id with spaces and capitals',
    build: (r) => p(r, { id: 'My Plugin' }),
    code: 'manifest_invalid_value',
    field: 'metadata.id',
  },
  {
    name: 'id ending in a dot',
    build: (r) => p(r, { id: 'p.' }),
    code: 'manifest_invalid_value',
    field: 'metadata.id',
  },
  {
    name: 'version not semver',
    build: (r) => p(r, { id: 'p', version: '1.0' }),
    code: 'invalid_semver',
    field: 'metadata.version',
  },
  {
    name: 'api_version not semver',
    build: (r) => p(r, { id: 'p', api_version: 'one' }),
    code: 'invalid_semver',
    field: 'metadata.api_version',
  },
  {
    name: 'api major mismatch',
    build: (r) => p(r, { id: 'p', api_version: '2.0.0' }),
    code: 'api_version_mismatch',
    field: 'metadata.api_version',
  },
  {
    name: 'api newer minor',
    build: (r) => p(r, { id: 'p', api_version: '1.7.0' }),
    code: 'api_version_newer',
    severity: 'warning',
  },
  {
    name: 'min_reed_version above the host',
    build: (r) => p(r, { id: 'p', requirements: { min_reed_version: '9.0.0' } }),
    code: 'reed_version_unmet',
    field: 'requirements.min_reed_version',
  },
  {
    name: 'priority of the wrong type',
    build: (r) => p(r, `${HEADER}id = "p"\npriority = "high"\n`),
    code: 'manifest_invalid_type',
    field: 'metadata.priority',
  },
  {
    name: 'metadata not a table',
    build: (r) => p(r, 'metadata = "p"\n'),
    code: 'manifest_invalid_type',
    field: 'metadata',
  },
  {
    name: 'dependencies not an array',
    build: (r) => p(r, `${HEADER}id = "p"\n[requirements.dependencies]\nid = "x"\n`),
    code: 'manifest_invalid_type',
    field: 'requirements.dependencies',
  },
  {
    name: 'authors not strings',
    build: (r) => p(r, `${HEADER}id = "p"\nauthors = [1, 2]\n`),
    code: 'manifest_invalid_type',
    field: 'metadata.authors[0]',
  },
  {
    name: 'unknown key',
    build: (r) => p(r, { id: 'p', permisions: { storage: 'read' } }),
    code: 'manifest_unknown_key',
    severity: 'warning',
    field: 'permisions',
  },
  {
    name: 'plugin_type script',
    build: (r) => p(r, { id: 'p', plugin_type: 'script' }),
    code: 'plugin_type_unsupported',
    field: 'plugin_type',
  },
  {
    name: 'plugin_type unknown',
    build: (r) => p(r, { id: 'p', plugin_type: 'python' }),
    code: 'manifest_invalid_value',
    field: 'plugin_type',
  },
  {
    name: 'no plugin file to detect the type',
    build: (r) => p(r, { id: 'p' }, { 'README.md': 'hi' }),
    code: 'plugin_type_undetected',
  },
  {
    name: 'both wasm and native files',
    build: (r) => p(r, { id: 'p' }, { 'plugin.wasm': EMPTY_WASM, 'plugin.so': 'x' }),
    code: 'plugin_type_ambiguous',
  },
  {
    name: 'entry_point with ..',
    build: (r) => p(r, { id: 'p', entry_point: '../other/plugin.wasm' }),
    code: 'path_traversal',
    field: 'entry_point',
  },
  {
    name: 'entry_point absolute',
    build: (r) => p(r, { id: 'p', entry_point: '/etc/passwd' }),
    code: 'path_traversal',
    field: 'entry_point',
  },
  {
    name: 'entry_point hidden traversal',
    build: (r) => p(r, { id: 'p', entry_point: 'lib/../../../x.wasm' }),
    code: 'path_traversal',
    field: 'entry_point',
  },
  {
    name: 'entry_point symlink leaving the directory',
    build: (r) => {
      writeFileSync(join(r, 'outside.wasm'), EMPTY_WASM);
      const dir = p(r, { id: 'p', entry_point: 'link.wasm' }, {});
      symlinkSync(join(r, 'outside.wasm'), join(dir, 'link.wasm'));
    },
    code: 'path_traversal',
    field: 'entry_point',
  },
  {
    name: 'entry_point missing',
    build: (r) => p(r, { id: 'p', entry_point: 'build/plugin.wasm' }),
    code: 'entry_point_missing',
    field: 'entry_point',
  },
  {
    name: 'entry_point a directory',
    build: (r) => p(r, { id: 'p', entry_point: 'lib.wasm' }, { 'lib.wasm/x': 'x' }),
    code: 'entry_point_not_file',
  },
  {
    name: 'symlink to /etc',
    build: (r) => symlinkSync('/etc', join(p(r, { id: 'p' }), 'etc')),
    code: 'symlink_escape',
  },
  {
    name: 'relative symlink climbing out',
    build: (r) => symlinkSync('../../../../../../etc/passwd', join(p(r, { id: 'p' }), 'passwd')),
    code: 'symlink_escape',
  },
  {
    name: 'plugin.toml a symlink outside',
    build: (r) => {
      writeFileSync(join(r, 'elsewhere.toml'), manifestToml({ id: 'p' }));
      const dir = join(r, 'p');
      mkdirSync(dir);
      writeFileSync(join(dir, 'plugin.wasm'), EMPTY_WASM);
      symlinkSync(join(r, 'elsewhere.toml'), join(dir, 'plugin.toml'));
    },
    code: 'symlink_escape',
  },
  {
    name: 'dangling symlink inside',
    build: (r) => symlinkSync('missing-file', join(p(r, { id: 'p' }), 'gone')),
    code: 'symlink_dangling',
    severity: 'warning',
  },
  {
    name: 'world-writable file',
    build: (r) => chmodSync(join(p(r, { id: 'p' }), 'plugin.wasm'), 0o666),
    code: 'world_writable',
  },
  {
    name: 'world-writable plugin directory',
    build: (r) => chmodSync(p(r, { id: 'p' }), 0o777),
    code: 'world_writable',
  },
  {
    name: 'world-writable subdirectory',
    build: (r) =>
      chmodSync(join(p(r, { id: 'p' }, { 'plugin.wasm': EMPTY_WASM, 'assets/a.txt': 'a' }), 'assets'), 0o777),
    code: 'world_writable',
  },
  {
    name: 'FIFO in the plugin directory',
    build: (r) => execFileSync('mkfifo', [join(p(r, { id: 'p' }), 'pipe')]),
    code: 'special_file',
  },
  {
    name: 'oversized manifest',
    build: (r) => p(r, `${manifestToml({ id: 'p' })}\n# ${'x'.repeat(2048)}\n`),
    code: 'manifest_too_large',
    fileLimits: { maxManifestBytes: 1024 },
  },
  {
    name: 'oversized file',
    build: (r) => p(r, { id: 'p' }, { 'plugin.wasm': EMPTY_WASM, 'big.bin': Buffer.alloc(4096) }),
    code: 'file_too_large',
    fileLimits: { maxFileBytes: 1024 },
  },
  {
    name: 'files too large together',
    build: (r) =>
      p(
        r,
        { id: 'p' },
        { 'plugin.wasm': EMPTY_WASM, 'a.bin': Buffer.alloc(800), 'b.bin': Buffer.alloc(800) },
      ),
    code: 'plugin_too_large',
    fileLimits: { maxPluginBytes: 1024 },
  },
  {
    name: 'too many files',
    build: (r) => p(r, { id: 'p' }, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`f${i}`, 'x']))),
    code: 'too_many_files',
    fileLimits: { maxFiles: 10 },
  },
  {
    name: 'nested too deep',
    build: (r) => p(r, { id: 'p' }, { 'plugin.wasm': EMPTY_WASM, 'a/b/c/d/e/f.txt': 'x' }),
    code: 'too_deep',
    fileLimits: { maxDepth: 3 },
  },
  {
    name: 'same id twice in one search path',
    build: (r) => {
      writePlugin(r, 'p', { id: 'twin' });
      writePlugin(r, 'q', { id: 'twin' });
    },
    code: 'duplicate_id',
  },
  {
    name: 'dependency cycle',
    build: (r) => {
      p(r, { id: 'p', requirements: { dependencies: [{ id: 'q' }] } });
      writePlugin(r, 'q', { id: 'q', requirements: { dependencies: [{ id: 'p' }] } });
    },
    code: 'dependency_cycle',
  },
  {
    name: 'missing dependency',
    build: (r) => p(r, { id: 'p', requirements: { dependencies: [{ id: 'ghost' }] } }),
    code: 'dependency_missing',
    field: 'requirements.dependencies[0].id',
  },
  {
    name: 'dependency out of range',
    build: (r) => {
      p(r, { id: 'p', requirements: { dependencies: [{ id: 'q', version: '^2.0.0' }] } });
      writePlugin(r, 'q', { id: 'q', version: '1.4.0' });
    },
    code: 'dependency_version_mismatch',
    field: 'requirements.dependencies[0].version',
  },
  {
    name: 'dependency range not semver',
    build: (r) => p(r, { id: 'p', requirements: { dependencies: [{ id: 'q', version: 'latest!' }] } }),
    code: 'invalid_semver',
    field: 'requirements.dependencies[0].version',
  },
  {
    name: 'depends on itself',
    build: (r) => p(r, { id: 'p', requirements: { dependencies: [{ id: 'p' }] } }),
    code: 'dependency_self',
  },
  {
    name: 'dependency listed twice',
    build: (r) => {
      p(r, { id: 'p', requirements: { dependencies: [{ id: 'q' }, { id: 'q' }] } });
      writePlugin(r, 'q', { id: 'q' });
    },
    code: 'dependency_duplicate',
  },
  {
    name: 'dependency that is invalid',
    build: (r) => {
      p(r, { id: 'p', requirements: { dependencies: [{ id: 'q' }] } });
      writePlugin(r, 'q', { id: 'q', api_version: '9.0.0' });
    },
    code: 'dependency_invalid',
  },
  {
    name: 'dependency whose manifest is broken',
    build: (r) => {
      p(r, { id: 'p', requirements: { dependencies: [{ id: 'q' }] } });
      writePlugin(r, 'q', '[metadata]\nid = "q"\nname = 5\n');
    },
    code: 'dependency_invalid',
  },
  {
    name: 'network beyond policy',
    build: (r) => p(r, { id: 'p', permissions: { network: true } }),
    code: 'permission_denied_by_policy',
    field: 'permissions.network',
  },
  {
    name: 'filesystem beyond policy',
    build: (r) => p(r, { id: 'p', permissions: { filesystem: 'read' } }),
    code: 'permission_denied_by_policy',
    field: 'permissions.filesystem',
  },
  {
    name: 'filesystem asked by a native plugin, even where the policy allows it',
    build: (r) => p(r, { id: 'p', permissions: { filesystem: 'read' } }, { 'plugin.so': 'x' }),
    code: 'filesystem_unsupported',
    field: 'permissions.filesystem',
    context: { policy: policyWith({ permissions: { filesystem: 'readwrite' } }) },
  },
  {
    name: 'data directory quota above the ceiling',
    build: (r) => p(r, { id: 'p', limits: { disk_mb: 16_385 } }),
    code: 'limit_exceeds_policy',
    field: 'limits.disk_mb',
  },
  {
    name: 'data directory entries above the ceiling',
    build: (r) => p(r, { id: 'p', limits: { max_files: 1_000_001 } }),
    code: 'limit_exceeds_policy',
    field: 'limits.max_files',
  },
  {
    name: 'event topic beyond policy',
    build: (r) => p(r, { id: 'p', permissions: { events: { emit: ['system.shutdown'] } } }),
    code: 'permission_denied_by_policy',
    field: 'permissions.events.emit[0]',
    context: { policy: policyWith({ permissions: { events: { emit: ['content.*'], subscribe: [] } } }) },
  },
  {
    name: 'capability the host lacks',
    build: (r) => p(r, { id: 'p', requirements: { capabilities: ['gpu'] } }),
    code: 'capability_unavailable',
    field: 'requirements.capabilities[0]',
  },
  {
    name: 'limit above the ceiling',
    build: (r) => p(r, { id: 'p', limits: { memory_mb: 65_536 } }),
    code: 'limit_exceeds_policy',
    field: 'limits.memory_mb',
  },
  {
    name: 'limit of zero',
    build: (r) => p(r, { id: 'p', limits: { call_timeout_ms: 0 } }),
    code: 'manifest_invalid_value',
    field: 'limits.call_timeout_ms',
  },
  {
    name: 'replicas above the default ceiling',
    build: (r) => p(r, { id: 'p', sandbox: { mode: 'process', replicas: 5 } }),
    code: 'limit_exceeds_policy',
    field: 'sandbox.replicas',
  },
  {
    name: 'replicas above the policy\u2019s ceiling',
    build: (r) => p(r, { id: 'p', sandbox: { mode: 'process', replicas: 2 } }),
    code: 'limit_exceeds_policy',
    field: 'sandbox.replicas',
    context: { policy: { ...policyWith({}), maxReplicas: 1 } },
  },
  {
    name: 'sandbox mode the policy forbids',
    build: (r) => p(r, { id: 'p', sandbox: { mode: 'none' } }),
    code: 'sandbox_mode_denied',
    field: 'sandbox.mode',
    context: { policy: policyWith({ allowedSandboxModes: ['process', 'container'] }) },
  },
  {
    name: 'too many dependencies',
    build: (r) =>
      p(r, {
        id: 'p',
        requirements: { dependencies: Array.from({ length: 300 }, (_, i) => ({ id: `d${i}` })) },
      }),
    code: 'manifest_invalid_value',
    field: 'requirements.dependencies',
  },
  {
    name: 'plugin.toml that is a directory',
    build: (r) => mkdirSync(join(r, 'p', 'plugin.toml'), { recursive: true }),
    code: 'manifest_unreadable',
  },
  {
    name: 'date where a string belongs',
    build: (r) => p(r, `${HEADER}id = "p"\nlicense = 1979-05-27\n`),
    code: 'manifest_invalid_type',
    field: 'metadata.license',
  },
  {
    name: 'integer past 64 bits',
    build: (r) => p(r, `${HEADER}id = "p"\npriority = 99999999999999999999\n`),
    code: 'manifest_invalid_type',
    field: 'metadata.priority',
  },
];

describe('bad manifests and layouts', () => {
  it('covers at least 30 cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(30);
  });

  it.each(CASES)('$name -> $code', (c) => {
    const root = tempDir();
    c.build(root);
    const result = scan([root], {
      ...(c.context ? { context: c.context } : {}),
      ...(c.fileLimits ? { fileLimits: c.fileLimits } : {}),
    });
    const candidate = result.byDir('p');
    const match = candidate.diagnostics.find((d) => d.code === c.code);
    expect(match, `diagnostics were: ${JSON.stringify(candidate.diagnostics, null, 1)}`).toBeDefined();
    expect(match?.severity).toBe(c.severity ?? 'error');
    if (c.field !== undefined) expect(match?.field).toBe(c.field);
    expect(match?.file).toMatch(/\/p(\/|$)/);
    expect(match?.message.length).toBeGreaterThan(10);
    expect(candidate.status).toBe((c.severity ?? 'error') === 'error' ? 'invalid' : 'valid');
  });
});

describe('hostile manifests cannot reach past their own plugin', () => {
  it('a __proto__ key pollutes nothing and is only an unknown key', () => {
    const root = tempDir();
    writePlugin(
      root,
      'p',
      `__proto__ = { polluted = true }\n${HEADER}id = "p"\n[metadata.__proto__]\npolluted = true\n`,
    );
    const result = scan([root]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(result.byDir('p').status).toBe('valid');
    expect(result.codes('p')).toContain('manifest_unknown_key');
  });

  it('an id carrying terminal escapes is rejected and never echoed raw', () => {
    const root = tempDir();
    writePlugin(root, 'p', `${HEADER}id = "evil\\u001b[31m"\n"evil\\u001b" = 1\n`);
    const candidate = scan([root]).byDir('p');
    expect(candidate.id).toBeUndefined();
    expect(candidate.diagnostics.map((d) => d.code)).toContain('manifest_invalid_value');
    for (const d of candidate.diagnostics) expect(d.message).not.toContain('\u001b');
  });

  it('a plugin reading a manifest outside its directory never parses it', () => {
    const root = tempDir();
    writeFileSync(join(root, 'secret.toml'), manifestToml({ id: 'stolen' }));
    mkdirSync(join(root, 'p'));
    symlinkSync(join(root, 'secret.toml'), join(root, 'p', 'plugin.toml'));
    const candidate = scan([root]).byDir('p');
    expect(candidate.id).toBeUndefined();
    expect(candidate.manifest).toBeUndefined();
  });

  it('a world-writable search path is skipped with an error', () => {
    const root = tempDir();
    writePlugin(root, 'p', { id: 'p' });
    chmodSync(root, 0o777);
    const result = scan([root]);
    expect(result.candidates).toHaveLength(0);
    expect(result.diagnostics.map((d) => d.code)).toEqual(['search_path_insecure']);
    expect(result.searchPaths[0]?.status).toBe('insecure');
  });

  it('one broken plugin never stops the others', () => {
    const root = tempDir();
    writePlugin(root, 'a-broken', 'this is [ not toml');
    writePlugin(root, 'b-fine', { id: 'fine' });
    mkdirSync(join(root, 'c-empty'));
    writeFileSync(join(root, 'stray-file'), 'x');
    const result = scan([root]);
    expect(result.byDir('a-broken').status).toBe('invalid');
    expect(result.byDir('b-fine').status).toBe('valid');
    expect(result.candidates).toHaveLength(2);
  });
});
