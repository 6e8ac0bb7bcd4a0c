// The host API table (src/runtime/host-api.ts) is the one declaration of every host function: what is derived
// from it must follow it, and what is written by hand (the C headers, the AssemblyScript SDK, the ABI docs) must
// agree with it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { runnerHostApi } from '../../sandbox-runner/runner-host-api.js';
import {
  answerHostCall,
  hostCallFrame,
  hostCallResult,
  readHostReply,
} from '../../src/protocol/host-calls.js';
import {
  HOST_API_NAMES,
  HOST_CALL_NAMES,
  HOST_FUNCTION_NAMES,
  HOST_FUNCTIONS,
  type HostApi,
  type HostFunction,
  type HostFunctionName,
} from '../../src/runtime/host-api.js';
import { NATIVE_NAMES, nativePrototype } from '../../src/runtime/native/koffi-types.js';
import { HOST_IMPORTS, HOST_ROUND_TRIP_IMPORTS } from '../../src/runtime/wasm/abi.js';
import { REPO } from '../helpers/cli.js';

const read = (path: string) => readFileSync(join(REPO, path), 'utf8');
const rows = HOST_FUNCTION_NAMES.map((name) => [name, HOST_FUNCTIONS[name] as HostFunction] as const);
/** A C or AssemblyScript parameter list as its entries ('void' and '' are none). */
const paramList = (text: string) =>
  text
    .split(',')
    .map((p) => p.trim().replace(/\s+/g, ' '))
    .filter((p) => p !== '' && p !== 'void');

describe('the host API table', () => {
  it('rows are consistent: buffers last and only for answers that fill one; call scope stays in the runtime', () => {
    for (const [name, row] of rows) {
      const buffers = row.params.filter((p) => p.kind === 'buffer');
      const fills = ['bytes', 'text', 'list'].includes(row.answer);
      expect(buffers.length, name).toBe(fills ? 1 : name === 'input_read' ? 1 : 0);
      if (fills) expect(row.params.at(-1)?.kind, name).toBe('buffer');
      if (row.scope === 'call') {
        expect(row.ownMarshalling, name).toBe(true);
        expect(row.reply, name).toBe(false);
      }
    }
  });

  it('functions a runner asks for take text and at most one bytes argument (what a HostCall frame carries)', () => {
    for (const name of HOST_CALL_NAMES) {
      const kinds = HOST_FUNCTIONS[name].params.map((p) => p.kind).filter((k) => k !== 'buffer');
      expect(
        kinds.every((k) => k === 'text' || k === 'bytes'),
        name,
      ).toBe(true);
      expect(kinds.filter((k) => k === 'bytes').length, name).toBeLessThanOrEqual(1);
    }
  });

  it('derives the WASM imports, the round trips and the native struct from the rows', () => {
    expect(HOST_IMPORTS.env?.log).toEqual({ params: ['i32', 'i32', 'i32'], results: [] });
    expect(HOST_IMPORTS.reed?.content_create).toEqual({ params: Array(6).fill('i32'), results: ['i32'] });
    expect([...HOST_ROUND_TRIP_IMPORTS].sort()).toEqual([
      'content_create',
      'content_get',
      'event_emit',
      'storage_delete',
      'storage_get',
      'storage_list',
      'storage_put',
    ]);
    expect(NATIVE_NAMES[0]).toBe('log');
    expect(nativePrototype('storage_get')).toBe(
      'int64_t reed_storage_get_fn(void *ctx, const void *key, size_t key_len, void *buf, size_t buf_cap)',
    );
    expect(HOST_API_NAMES).not.toContain('input_read');
  });

  it('types each HostApi method from its row', () => {
    expectTypeOf<HostApi['storage_get']>().toEqualTypeOf<(key: string) => Uint8Array | undefined>();
    expectTypeOf<HostApi['storage_put']>().toEqualTypeOf<(key: string, value: Uint8Array) => void>();
    expectTypeOf<HostApi['storage_delete']>().toEqualTypeOf<(key: string) => boolean>();
    expectTypeOf<HostApi['storage_list']>().toEqualTypeOf<(prefix: string) => string[]>();
    expectTypeOf<HostApi['log']>().toEqualTypeOf<(level: number, message: string) => void>();
  });
});

describe('what is written by hand agrees with the table', () => {
  it('include/reed_wasm.h declares every WASM import, with its signature', () => {
    const declared = new Map<string, { params: number; results: number }>();
    for (const m of read('include/reed_wasm.h').matchAll(
      /REED_IMPORT\((\w+), (\w+)\)\s+(\w+)\s+\w+\(([^)]*)\);/g,
    )) {
      const [, module, name, ret, params] = m as unknown as string[];
      declared.set(`${module}.${name}`, {
        params: paramList(params ?? '').length,
        results: ret === 'void' ? 0 : 1,
      });
    }
    const expected = new Map<string, { params: number; results: number }>();
    for (const [module, functions] of Object.entries(HOST_IMPORTS)) {
      for (const [name, sig] of Object.entries(functions)) {
        expected.set(`${module}.${name}`, { params: sig.params.length, results: sig.results.length });
      }
    }
    expect(declared).toEqual(expected);
  });

  it('include/reed_plugin.h lays out reed_host_api as the native rows, in order, with their C types', () => {
    const header = read('include/reed_plugin.h');
    const struct = header.slice(
      header.indexOf('typedef struct reed_host_api {'),
      header.indexOf('} reed_host_api;'),
    );
    const fields = [...struct.matchAll(/(\w+) \(\*(\w+)\)\(([^)]*)\);/g)].map((m) => ({
      name: m[2] as HostFunctionName,
      ret: m[1],
      params: paramList(m[3] ?? '').map(cClass),
    }));
    expect(fields.map((f) => f.name)).toEqual(NATIVE_NAMES);
    for (const field of fields) {
      const row: HostFunction = HOST_FUNCTIONS[field.name];
      expect(field.ret, field.name).toBe(row.answer === 'nothing' ? 'void' : 'int64_t');
      const expected = [
        'pointer',
        ...row.params.flatMap((p) => (p.kind === 'i32' ? ['int32'] : ['pointer', 'size'])),
      ];
      expect(field.params, field.name).toEqual(expected);
    }
  });

  it('the AssemblyScript SDK declares only table imports, with their signatures', () => {
    const sdk = read('sdk/assemblyscript/index.ts');
    const externals = [
      ...sdk.matchAll(/@external\('(\w+)', '(\w+)'\) declare function \w+\(([^)]*)\): (\w+);/g),
    ];
    expect(externals.length).toBeGreaterThan(5);
    for (const [, module, name, params, ret] of externals) {
      const sig = HOST_IMPORTS[module as string]?.[name as string];
      expect(sig, `${module}.${name}`).toBeDefined();
      expect(paramList(params ?? '').length, `${module}.${name}`).toBe(sig?.params.length);
      expect(ret === 'void' ? 0 : 1, `${module}.${name}`).toBe(sig?.results.length);
    }
  });

  it('docs/ABI-wasm.md, ABI-native.md and PROTOCOL.md list every function with its parameters', () => {
    const wasmDoc = read('docs/ABI-wasm.md');
    for (const [module, functions] of Object.entries(HOST_IMPORTS)) {
      for (const [name, sig] of Object.entries(functions)) {
        const row = wasmDoc.match(new RegExp(`\\| \`${module}\\.${name}\`\\s+\\| \`\\(([^)]*)\\)`));
        expect(row, `${module}.${name}`).not.toBeNull();
        expect(paramList(row?.[1] ?? '').length, `${module}.${name}`).toBe(sig.params.length);
      }
    }
    const nativeDoc = read('docs/ABI-native.md');
    for (const name of NATIVE_NAMES) {
      const row = nativeDoc.match(new RegExp(`\\| \`${name}\\(([^)]*)\\)\``));
      expect(row, name).not.toBeNull();
      const cParams = HOST_FUNCTIONS[name].params.reduce((n, p) => n + (p.kind === 'i32' ? 1 : 2), 1);
      expect(paramList(row?.[1] ?? '').length, name).toBe(cParams);
    }
    const protocol = read('docs/PROTOCOL.md');
    for (const name of HOST_CALL_NAMES) expect(protocol, name).toContain(`\`${name}\``);
  });
});

describe('host calls over the wire, from the table', () => {
  const store = new Map<string, Uint8Array>([['k', Buffer.from('v')]]);
  const host = {
    storage_get: (key: string) => store.get(key),
    storage_put: (key: string, value: Uint8Array) => void store.set(key, value),
    storage_delete: (key: string) => store.delete(key),
    storage_list: (prefix: string) => [...store.keys()].filter((k) => k.startsWith(prefix)),
    content_create: () => 'c1',
    content_get: (id: string) => (id === 'c1' ? '{"id":"c1"}' : undefined),
    event_emit: () => {
      throw new Error('not a ReedError');
    },
  } as unknown as HostApi;
  /** A runner's HostApi whose asks go straight to `host` through both ends of the encoding. */
  const runner = runnerHostApi({
    log: () => {},
    configuration: { a: { b: 1 } },
    ask: (call) => {
      const reply = answerHostCall(host, { ...call.meta }, call.body ?? new Uint8Array(0));
      return readHostReply(reply.meta, reply.body ?? new Uint8Array(0));
    },
  });

  it('every answer kind arrives as the method returns it', () => {
    expect(Buffer.from(runner.storage_get('k') ?? []).toString()).toBe('v');
    expect(runner.storage_get('none')).toBeUndefined();
    runner.storage_put('k2', Buffer.from('w'));
    expect(Buffer.from(store.get('k2') ?? []).toString()).toBe('w');
    expect(runner.storage_list('k')).toEqual(['k', 'k2']);
    expect(runner.storage_delete('k2')).toBe(true);
    expect(runner.storage_delete('k2')).toBe(false);
    expect(runner.content_create('t', '{}')).toBe('c1');
    expect(runner.content_get('c1')).toBe('{"id":"c1"}');
    expect(runner.content_get('c2')).toBeUndefined();
    expect(() => runner.event_emit('t', '')).toThrow(expect.objectContaining({ code: 'invalid_argument' }));
  });

  it('config_get is answered by the runner itself, BigInt-safe, without asking', () => {
    expect(runner.config_get('a')).toBe('{"b":1}');
    expect(runner.config_get('')).toBe('{"a":{"b":1}}');
    expect(runner.config_get('missing')).toBeUndefined();
    const alone = runnerHostApi({ log: () => {}, configuration: { n: 1n } });
    expect(alone.config_get('n')).toBe('"1"');
    expect(() => alone.storage_get('k')).toThrow(expect.objectContaining({ code: 'sandbox_crashed' }));
  });

  it('a HostCall for a function the runner answers itself, or no function, is a protocol violation', () => {
    for (const op of ['config_get', 'log', 'input_read', 'storageGet', '__proto__']) {
      expect(() => answerHostCall(host, { op, args: ['k'] }, new Uint8Array(0)), op).toThrow(
        /malformed HostCall/,
      );
    }
    expect(hostCallFrame('storage_put', ['k', Buffer.from('v')])).toEqual({
      meta: { op: 'storage_put', args: ['k'] },
      body: Buffer.from('v'),
    });
    expect(() =>
      hostCallResult('storage_get', { meta: { ok: false, code: 'permission_denied', message: 'm' } }),
    ).toThrow(expect.objectContaining({ code: 'permission_denied' }));
  });
});

/** A C parameter's class: a pointer, a size_t, an int32_t. */
function cClass(param: string): string {
  if (param.includes('*')) return 'pointer';
  if (param.startsWith('size_t')) return 'size';
  if (param.startsWith('int32_t')) return 'int32';
  return param;
}
