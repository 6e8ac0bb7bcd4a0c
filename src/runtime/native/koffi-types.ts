import koffi from 'koffi';

/**
 * The C ABI of include/reed_plugin.h as koffi types. Declared once per process: koffi registers named types
 * globally. Keep in step with the header (docs/ABI-native.md).
 */
export const NATIVE_ABI = 1;

export const Output = koffi.struct('reed_output', { data: 'void *', len: 'size_t' });

export const LogFn = koffi.proto('void reed_log_fn(void *ctx, int32_t level, const void *msg, size_t len)');
export const ErrorSetFn = koffi.proto(
  'void reed_error_set_fn(void *ctx, const void *code, size_t code_len, const void *msg, size_t msg_len)',
);
/** (ctx, a, a_len, buf, cap): storage_get, storage_list, content_get, config_get. */
export const FillFn = koffi.proto(
  'int64_t reed_fill_fn(void *ctx, const void *a, size_t a_len, void *buf, size_t cap)',
);
/** (ctx, a, a_len, b, b_len): storage_put, event_emit. */
export const PairFn = koffi.proto(
  'int64_t reed_pair_fn(void *ctx, const void *a, size_t a_len, const void *b, size_t b_len)',
);
export const OneFn = koffi.proto('int64_t reed_one_fn(void *ctx, const void *a, size_t a_len)');
export const CreateFn = koffi.proto(
  'int64_t reed_content_create_fn(void *ctx, const void *type, size_t type_len, const void *data, size_t data_len, void *id_buf, size_t id_cap)',
);

export const HostApi = koffi.struct('reed_host_api', {
  abi: 'uint32_t',
  ctx: 'void *',
  log: koffi.pointer(LogFn),
  error_set: koffi.pointer(ErrorSetFn),
  storage_get: koffi.pointer(FillFn),
  storage_put: koffi.pointer(PairFn),
  storage_delete: koffi.pointer(OneFn),
  storage_list: koffi.pointer(FillFn),
  content_create: koffi.pointer(CreateFn),
  content_get: koffi.pointer(FillFn),
  event_emit: koffi.pointer(PairFn),
  config_get: koffi.pointer(FillFn),
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
