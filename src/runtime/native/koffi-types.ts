import koffi, { type TypeObject } from 'koffi';
import {
  HOST_FUNCTION_NAMES,
  HOST_FUNCTIONS,
  type HostFunction,
  type HostFunctionName,
  type NativeName,
  type Param,
} from '../host-api.js';

/**
 * The C ABI of include/reed_plugin.h as koffi types; the host API callbacks from the host API table. Declared once
 * per process: koffi registers named types globally. The header is checked against the table
 * (test/unit/host-api-table.test.ts; docs/ABI-native.md).
 */
export const NATIVE_ABI = 1;

export const Output = koffi.struct('reed_output', { data: 'void *', len: 'size_t' });

/** A parameter's C types as koffi reads them: pointers as `void *`, lengths and capacities as `size_t`. */
function cParams(param: Param): string[] {
  if (param.kind === 'i32') return [`int32_t ${param.name}`];
  const pointer = param.kind === 'buffer' ? 'void *' : 'const void *';
  return [`${pointer}${param.name}`, `size_t ${param.name}_${param.kind === 'buffer' ? 'cap' : 'len'}`];
}

/** The C prototype of a reed_host_api field, from its row: ctx first, an int64_t back unless it answers nothing. */
export function nativePrototype(name: NativeName): string {
  const row: HostFunction = HOST_FUNCTIONS[name];
  const params = ['void *ctx', ...row.params.flatMap(cParams)].join(', ');
  return `${row.answer === 'nothing' ? 'void' : 'int64_t'} reed_${name}_fn(${params})`;
}

export function isNativeName(name: HostFunctionName): name is NativeName {
  return HOST_FUNCTIONS[name].native;
}

export const NATIVE_NAMES = HOST_FUNCTION_NAMES.filter(isNativeName);

/** Each callback's koffi prototype, by name. */
export const CALLBACKS: Readonly<Record<NativeName, TypeObject>> = Object.fromEntries(
  NATIVE_NAMES.map((name) => [name, koffi.proto(nativePrototype(name))]),
) as Record<NativeName, TypeObject>;

/** reed_host_api: the ABI number, the context, then the callbacks in table order. */
export const HostApi = koffi.struct('reed_host_api', {
  abi: 'uint32_t',
  ctx: 'void *',
  ...Object.fromEntries(NATIVE_NAMES.map((name) => [name, koffi.pointer(CALLBACKS[name])])),
});

export const Plugin = koffi.struct('reed_plugin', {
  abi: 'uint32_t',
  self: 'void *',
  functions: 'const char *',
  init: 'void *',
  call: 'void *',
  deactivate: 'void *',
  free_output: 'void *',
  destroy: 'void *',
});

export const InitFn = koffi.proto('int32_t reed_init_fn(void *self, void *host)');
export const CallFn = koffi.proto(
  'int32_t reed_call_fn(void *self, const char *fn, const void *input, size_t input_len, _Out_ reed_output *output)',
);
export const SelfFn = koffi.proto('int32_t reed_self_fn(void *self)');
export const FreeOutputFn = koffi.proto('void reed_free_output_fn(void *self, void *data, size_t len)');
export const DestroyFn = koffi.proto('void reed_destroy_fn(void *self)');
