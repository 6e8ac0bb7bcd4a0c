import { symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import { main } from '../../src/cli/main.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { checkModule } from '../../src/runtime/wasm/check-module.js';
import { checkWasmFile } from '../../src/runtime/wasm/compile-wasm.js';
import { DEFAULT_WASM_MODULE_LIMITS } from '../../src/runtime/wasm/module-limits.js';
import { WASI_FUNCTIONS } from '../../src/runtime/wasm/wasi.js';
import { WASI_SIGNATURES } from '../../src/runtime/wasm/wasi-signatures.js';
import { startHost } from '../helpers/host.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { buildWasiC } from '../helpers/wasm-c.js';

// validate = load: every case is judged by `reed-plugins validate` and by loading it (mode none), and both must
// give the same code (undefined: valid and loaded). The module check is one function (check-module.ts) both call.

const wabt = await wabtFactory();
const wat = (text: string, features: Record<string, boolean> = {}): Buffer => {
  const m = wabt.parseWat('case.wat', text, features);
  try {
    return Buffer.from(m.toBinary({}).buffer);
  } finally {
    m.destroy();
  }
};
/** A module from raw sections: the preamble, then each [id, ...content] with its size. */
const sections = (...list: number[][]): Buffer =>
  Buffer.from([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...list.flatMap(([id, ...content]) => [id as number, content.length, ...content]),
  ]);
const OK = '(memory (export "memory") 1) (func (export "ok") (result i32) (i32.const 0))';

interface Case {
  name: string;
  module: Buffer;
  /** The code both must give; undefined: valid at validate, ready after load. */
  code: string | undefined;
  limits?: Record<string, number>;
  /** Other manifest keys. */
  manifest?: Record<string, unknown>;
  /** A warning validate gives (and load does not refuse). */
  warning?: string;
}

const CASES: Case[] = [
  {
    name: 'an unknown env import',
    module: wat(`(module (import "env" "system" (func (param i32))) ${OK})`),
    code: 'wasm_import_unknown',
  },
  {
    name: 'an import from a module no ABI has',
    module: wat(`(module (import "os" "exec" (func)) ${OK})`),
    code: 'wasm_import_unknown',
  },
  {
    name: 'a host function named like an Object property',
    module: wat(`(module (import "reed" "constructor" (func)) ${OK})`),
    code: 'wasm_import_unknown',
  },
  {
    name: 'an imported memory',
    module: wat(
      '(module (import "env" "memory" (memory 1)) (func (export "ok") (result i32) (i32.const 0)))',
    ),
    code: 'wasm_import_unknown',
  },
  {
    name: 'an imported table',
    module: wat(`(module (import "env" "table" (table 1 funcref)) ${OK})`),
    code: 'wasm_import_unknown',
  },
  {
    name: 'an imported global',
    module: wat(`(module (import "env" "g" (global i32)) ${OK})`),
    code: 'wasm_import_unknown',
  },
  {
    name: 'a host import with the wrong signature',
    module: wat(`(module (import "reed" "output_write" (func (param i64) (result i32))) ${OK})`),
    code: 'wasm_import_signature',
  },
  {
    name: 'a WASI import with the wrong signature',
    module: wat(
      `(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32))) ${OK})`,
    ),
    code: 'wasm_import_signature',
  },
  {
    name: 'a WASI import with i32 where preview1 has i64',
    module: wat(
      `(module (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i32 i32) (result i32))) ${OK})`,
    ),
    code: 'wasm_import_signature',
  },
  {
    name: 'a function preview1 does not have',
    module: wat(
      `(module (import "wasi_snapshot_preview1" "fd_frobnicate" (func (param i32) (result i32))) ${OK})`,
    ),
    code: 'wasm_import_unknown',
  },
  {
    name: 'a memory starting above limits.memory_mb',
    module: wat('(module (memory (export "memory") 17) (func (export "ok") (result i32) (i32.const 0)))'),
    limits: { memory_mb: 1 },
    code: 'wasm_memory_limit',
  },
  {
    name: 'a table starting above limits.table_elements',
    module: wat(`(module (table 11 funcref) ${OK})`),
    limits: { table_elements: 10 },
    code: 'wasm_table_limit',
  },
  {
    name: 'two memories',
    module: wat(`(module (memory 1) ${OK})`, { multi_memory: true }),
    code: 'wasm_unsupported',
  },
  {
    name: 'a shared memory',
    module: wat(
      '(module (memory (export "memory") 1 1 shared) (func (export "ok") (result i32) (i32.const 0)))',
      { threads: true },
    ),
    code: 'wasm_unsupported',
  },
  {
    name: 'a 64-bit memory',
    module: wat('(module (memory (export "memory") i64 1) (func (export "ok") (result i32) (i32.const 0)))', {
      memory64: true,
    }),
    code: 'wasm_unsupported',
  },
  {
    name: 'a GC struct type',
    module: sections([1, 1, 0x5f, 0x00]),
    code: 'wasm_unsupported',
  },
  {
    name: 'an export name the host reserves',
    module: wat(
      '(module (memory (export "memory") 1) (func (export "__reed_fuel") (result i32) (i32.const 0)))',
    ),
    code: 'wasm_invalid',
  },
  {
    name: 'an export of a function that does not exist',
    // type () -> i32; no functions; export "ok" = function 0
    module: sections([1, 1, 0x60, 0, 1, 0x7f], [7, 1, 2, 0x6f, 0x6b, 0, 0]),
    code: 'wasm_invalid',
  },
  {
    name: 'the same export name twice',
    // type () -> i32; one function; exports "ok" and "ok"; its body
    module: sections(
      [1, 1, 0x60, 0, 1, 0x7f],
      [3, 1, 0],
      [7, 2, 2, 0x6f, 0x6b, 0, 0, 2, 0x6f, 0x6b, 0, 0],
      [10, 1, 4, 0, 0x41, 0, 0x0b],
    ),
    code: 'wasm_invalid',
  },
  {
    name: 'a start function that takes a parameter',
    module: wat(`(module (func $s (param i32)) (start $s) ${OK})`),
    code: 'wasm_invalid',
  },
  {
    name: 'a component (WASI preview 2)',
    // The preamble of the component model: version 0x0d, layer 1.
    module: Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]),
    code: 'wasm_component_unsupported',
  },
  {
    name: 'a file that is not WebAssembly',
    module: Buffer.from('#!/bin/sh\necho hello\n'),
    code: 'wasm_invalid',
  },
  {
    name: 'an Extism plugin, with WASI too',
    module: wat(
      `(module (import "extism:host/env" "input_length" (func (result i64)))
         (import "extism:host/env" "output_set" (func (param i64 i64)))
         (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) ${OK})`,
    ),
    code: undefined,
  },
  {
    name: 'a function extism:host/env does not have',
    module: wat(`(module (import "extism:host/env" "frobnicate" (func (param i64))) ${OK})`),
    code: 'wasm_import_unknown',
  },
  {
    name: 'an Extism import with the wrong signature',
    module: wat(`(module (import "extism:host/env" "input_length" (func (result i32))) ${OK})`),
    code: 'wasm_import_signature',
  },
  {
    name: 'an Extism host function of the embedding application',
    module: wat(`(module (import "extism:host/user" "lookup" (func (param i64) (result i64))) ${OK})`),
    code: 'extism_host_functions_unsupported',
  },
  {
    name: 'Extism\u2019s imports and ours together',
    module: wat(
      `(module (import "extism:host/env" "input_length" (func (result i64)))
         (import "reed" "output_write" (func (param i32 i32) (result i32))) ${OK})`,
    ),
    code: 'wasm_abi_mixed',
  },
  {
    name: 'abi = "extism" for a module that speaks ours',
    module: wat(`(module (import "reed" "output_write" (func (param i32 i32) (result i32))) ${OK})`),
    manifest: { abi: 'extism' },
    code: 'wasm_abi_mismatch',
  },
  // V8's own validation, outside function bodies and in them (found by the adversarial pass H10: validate called
  // these valid, load refused them with wasm_invalid).
  {
    name: 'a data segment without a memory',
    module: wat(`(module (data (i32.const 0) "x") ${OK.replace('(memory (export "memory") 1) ', '')})`),
    code: 'wasm_invalid',
  },
  {
    name: 'a global whose initializer has another type',
    module: wat(`(module (global i32 (i64.const 0)) ${OK})`),
    code: 'wasm_invalid',
  },
  {
    name: 'an element segment without a table',
    module: wat(`(module (func $f) (elem (i32.const 0) $f) ${OK})`),
    code: 'wasm_invalid',
  },
  {
    name: 'a function body that does not type-check',
    module: wat('(module (memory (export "memory") 1) (func (export "ok") (result i32) (i64.const 0)))'),
    code: 'wasm_invalid',
  },
  {
    name: 'a module with nothing the host can call',
    module: wat('(module (memory (export "memory") 1) (func (export "_helper") (result i32) (i32.const 0)))'),
    code: undefined,
    warning: 'wasm_no_callable',
  },
];

const io = () => {
  const out: string[] = [];
  return {
    out,
    io: {
      stdout: (t: string) => void out.push(t),
      stdoutBytes: () => {},
      stderr: (t: string) => void out.push(t),
      cwd: process.cwd(),
      env: {},
    },
  };
};

/** A search path holding one plugin, `case.p`, with `module` as its plugin.wasm. */
function pluginWith(c: Case): string {
  const root = tempDir('reed-agree-');
  writePlugin(
    root,
    'p',
    { id: 'case.p', ...c.manifest, ...(c.limits === undefined ? {} : { limits: c.limits }) },
    {
      'plugin.wasm': c.module,
    },
  );
  return root;
}

interface Validated {
  status: number;
  codes: string[];
  warnings: string[];
}

async function validate(root: string): Promise<Validated> {
  const { out, io: cliIo } = io();
  const status = await main(['validate', join(root, 'p'), '--no-default-paths', '--json'], cliIo);
  const json = JSON.parse(out.join('')) as {
    plugins: { diagnostics: { code: string; severity: string }[] }[];
  };
  const diagnostics = json.plugins[0]?.diagnostics ?? [];
  return {
    status,
    codes: diagnostics.filter((d) => d.severity === 'error').map((d) => d.code),
    warnings: diagnostics.filter((d) => d.severity === 'warning').map((d) => d.code),
  };
}

const hosts: PluginHost[] = [];
afterAll(async () => {
  for (const h of hosts) await h.close();
});

async function load(root: string): Promise<{ state: string | undefined; code: string | undefined }> {
  const { host } = await startHost([root]);
  hosts.push(host);
  const status = host.status().find((s) => s.id === 'case.p');
  return { state: status?.state, code: status?.error?.code };
}

describe.each(CASES)('$name', (c) => {
  it(`validate: ${c.code ?? 'valid'}`, async () => {
    const v = await validate(pluginWith(c));
    expect(v.codes).toEqual(c.code === undefined ? [] : [c.code]);
    expect(v.status).toBe(c.code === undefined ? 0 : 1);
    if (c.warning !== undefined) expect(v.warnings).toContain(c.warning);
  });

  it(`load: ${c.code ?? 'ready'}`, async () => {
    const loaded = await load(pluginWith(c));
    expect(loaded.code).toBe(c.code);
    expect(loaded.state).toBe(c.code === undefined ? 'ready' : 'failed');
  });
});

describe('what validate reads', () => {
  it('makes a plugin that depends on a refused module invalid too, as loading fails it', async () => {
    const root = tempDir('reed-agree-');
    writePlugin(root, 'base', { id: 'case.base' }, { 'plugin.wasm': CASES[0]?.module as Buffer });
    writePlugin(
      root,
      'user',
      { id: 'case.user', requirements: { dependencies: [{ id: 'case.base' }] } },
      { 'plugin.wasm': wat(`(module ${OK})`) },
    );
    const { out, io: cliIo } = io();
    expect(
      await main(
        ['validate', join(root, 'user'), '--plugin-dir', root, '--no-default-paths', '--json'],
        cliIo,
      ),
    ).toBe(1);
    const json = JSON.parse(out.join('')) as { plugins: { id: string; diagnostics: { code: string }[] }[] };
    expect(json.plugins.find((p) => p.id === 'case.user')?.diagnostics.map((d) => d.code)).toEqual([
      'dependency_invalid',
    ]);
  });

  it('does not follow a link swapped in for the module after discovery', () => {
    const root = tempDir('reed-agree-');
    const dir = writePlugin(root, 'p', { id: 'case.p' }, { 'plugin.wasm': wat(`(module ${OK})`) });
    const outside = join(tempDir(), 'outside.wasm');
    writeFileSync(outside, wat(`(module (import "env" "system" (func)) ${OK})`));
    unlinkSync(join(dir, 'plugin.wasm'));
    symlinkSync(outside, join(dir, 'plugin.wasm'));
    const checked = checkWasmFile(join(dir, 'plugin.wasm'), {
      pluginId: 'case.p',
      memoryMb: 64,
      tableElements: 10,
    });
    expect(checked.error?.code).toBe('symlink_escape');
  });
});

describe('WASI preview1 signatures', () => {
  it('are the ones wasi-libc imports, for every function it has', () => {
    // wasi-libc's wrappers import each function; taking every wrapper's address keeps every import.
    const names = Object.keys(WASI_SIGNATURES).filter((n) => n !== 'proc_raise'); // gone from wasi-libc
    const bytes = buildWasiC(
      [
        '#include <stdio.h>',
        '#include <wasi/api.h>',
        `void *volatile all[] = { ${names.map((n) => `(void *)__wasi_${n}`).join(', ')} };`,
        'int main(void) { for (unsigned i = 0; i < sizeof all / sizeof *all; i++) printf("%p", all[i]); return 0; }',
      ].join('\n'),
    );
    const facts = checkModule(
      bytes,
      {
        maxModuleBytes: 1 << 26,
        limits: DEFAULT_WASM_MODULE_LIMITS,
        memoryCapPages: 1024,
        tableCapElements: 10_000,
      },
      { pluginId: 'wasi.all', file: 'all.wasm' },
    );
    const imported = Object.fromEntries(
      facts.imports.filter((i) => i.module === 'wasi_snapshot_preview1').map((i) => [i.name, i.type]),
    );
    expect(Object.keys(imported).sort()).toEqual([...names].sort());
    for (const name of names) expect(imported[name], name).toEqual(WASI_SIGNATURES[name]);
    expect(Object.keys(WASI_SIGNATURES).sort()).toEqual([...WASI_FUNCTIONS].sort());
  });
});
