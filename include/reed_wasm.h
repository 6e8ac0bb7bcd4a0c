/*
 * reed_wasm.h: the host imports of the ReedCMS WASM plugin ABI, version 1, for C plugins compiled with
 * `clang --target=wasm32-wasi`. The contract is docs/ABI-wasm.md.
 *
 * Callable functions are exports of type `int32_t name(void)`: return 0 for success, anything else for an
 * error (after reed_error_set). Optional hooks: `init` and `deactivate`, same type.
 * Functions that fill a buffer return the full length of the data (which may exceed `cap`: call again with a
 * larger buffer) or REED_NOT_FOUND. Permission and limit violations end the call with a typed error.
 */
#ifndef REED_WASM_H
#define REED_WASM_H

#include <stdint.h>

#define REED_NOT_FOUND (-1)
#define REED_EXPORT(name) __attribute__((export_name(#name)))
#define REED_IMPORT(module, name) __attribute__((import_module(#module), import_name(#name)))

enum reed_log_level { REED_LOG_DEBUG = 0, REED_LOG_INFO = 1, REED_LOG_WARN = 2, REED_LOG_ERROR = 3 };

REED_IMPORT(env, log) void reed_log(int32_t level, const char *msg, int32_t len);

REED_IMPORT(reed, input_len) int32_t reed_input_len(void);
REED_IMPORT(reed, input_read) int32_t reed_input_read(void *buf, int32_t len, int32_t offset);
REED_IMPORT(reed, output_write) int32_t reed_output_write(const void *buf, int32_t len);
REED_IMPORT(reed, error_set) void reed_error_set(const char *code, int32_t code_len, const char *msg, int32_t msg_len);

REED_IMPORT(reed, storage_get) int32_t reed_storage_get(const char *key, int32_t key_len, void *buf, int32_t cap);
REED_IMPORT(reed, storage_put) int32_t reed_storage_put(const char *key, int32_t key_len, const void *val, int32_t val_len);
REED_IMPORT(reed, storage_delete) int32_t reed_storage_delete(const char *key, int32_t key_len);
/* Keys starting with prefix, each followed by a NUL byte. */
REED_IMPORT(reed, storage_list) int32_t reed_storage_list(const char *prefix, int32_t prefix_len, void *buf, int32_t cap);

/* data: JSON. Writes the new content id into id_buf. */
REED_IMPORT(reed, content_create) int32_t reed_content_create(const char *type, int32_t type_len, const char *data,
                                                              int32_t data_len, char *id_buf, int32_t id_cap);
/* The item as JSON: {"id","type","data","createdBy"}. */
REED_IMPORT(reed, content_get) int32_t reed_content_get(const char *id, int32_t id_len, void *buf, int32_t cap);
/* data: JSON, or empty for none. */
REED_IMPORT(reed, event_emit) int32_t reed_event_emit(const char *topic, int32_t topic_len, const char *data, int32_t data_len);
/* The [configuration] value at key as JSON; key_len 0 for the whole table. */
REED_IMPORT(reed, config_get) int32_t reed_config_get(const char *key, int32_t key_len, void *buf, int32_t cap);

#endif
