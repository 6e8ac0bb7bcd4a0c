/*
 * reed_plugin.h: the C ABI of ReedCMS native plugins (plugin API 1.0.0, native ABI 1). docs/ABI-native.md
 * explains it; this header is the contract.
 *
 * A native plugin is a shared library exporting two symbols, as in the seed:
 *
 *   const char *_reed_plugin_api_version(void);   the plugin API version it was built for, e.g. "1.0.0"
 *   reed_plugin *_reed_plugin_create(void);        a new plugin instance, or NULL on failure
 *
 * The seed's `*mut dyn ReedPlugin` (a Rust trait object) is not FFI-safe; the instance is a struct of plain
 * function pointers instead. The host calls them from one thread at a time, never concurrently.
 *
 * Memory: the plugin owns what it allocates. Output buffers it returns are released by the host calling
 * free_output; the instance by destroy. Host callbacks never keep pointers the plugin passed them.
 */
#ifndef REED_PLUGIN_H
#define REED_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REED_PLUGIN_API_VERSION "1.0.0"
#define REED_NATIVE_ABI 1

/* Results of host callbacks: >= 0 success (a length where the callback fills a buffer), < 0 failure. */
#define REED_NOT_FOUND (-1)        /* no such key or item */
#define REED_E_PERMISSION (-2)     /* the manifest does not permit this: the call will fail with permission_denied */
#define REED_E_QUOTA (-3)          /* storage quota: the call will fail with storage_quota_exceeded */
#define REED_E_INVALID (-4)        /* bad argument (bad UTF-8, bad JSON, bad key, NULL pointer) */
#define REED_E_HOST (-5)           /* any other host failure */

enum reed_log_level { REED_LOG_DEBUG = 0, REED_LOG_INFO = 1, REED_LOG_WARN = 2, REED_LOG_ERROR = 3 };

/*
 * The host API, handed to init and valid until deactivate returns. Pass `ctx` back unchanged. Functions that
 * fill a buffer write at most `cap` bytes and return the full length of the data (call again with a larger
 * buffer when it is larger than `cap`), or REED_NOT_FOUND. Permission and quota violations return a negative
 * code AND make the current call fail with that error, whatever the plugin returns.
 */
typedef struct reed_host_api {
  uint32_t abi;  /* REED_NATIVE_ABI */
  void *ctx;
  void (*log)(void *ctx, int32_t level, const char *msg, size_t len);
  void (*error_set)(void *ctx, const char *code, size_t code_len, const char *msg, size_t msg_len);
  int64_t (*storage_get)(void *ctx, const char *key, size_t key_len, uint8_t *buf, size_t cap);
  int64_t (*storage_put)(void *ctx, const char *key, size_t key_len, const uint8_t *value, size_t value_len);
  int64_t (*storage_delete)(void *ctx, const char *key, size_t key_len);
  /* keys starting with prefix, each followed by a NUL byte */
  int64_t (*storage_list)(void *ctx, const char *prefix, size_t prefix_len, uint8_t *buf, size_t cap);
  /* data: JSON; fills id_buf with the new content id */
  int64_t (*content_create)(void *ctx, const char *type, size_t type_len, const char *data, size_t data_len,
                            char *id_buf, size_t id_cap);
  /* the item as JSON {"id","type","data","createdBy"} */
  int64_t (*content_get)(void *ctx, const char *id, size_t id_len, uint8_t *buf, size_t cap);
  /* data: JSON, or empty for none */
  int64_t (*event_emit)(void *ctx, const char *topic, size_t topic_len, const char *data, size_t data_len);
  /* the [configuration] value at key as JSON; key_len 0 for the whole table */
  int64_t (*config_get)(void *ctx, const char *key, size_t key_len, uint8_t *buf, size_t cap);
} reed_host_api;

/* What a call returns: a buffer the plugin allocated (released through free_output), or NULL and 0. */
typedef struct reed_output {
  uint8_t *data;
  size_t len;
} reed_output;

typedef struct reed_plugin {
  uint32_t abi;               /* REED_NATIVE_ABI */
  void *self;                 /* the plugin's own state, passed to every function below */
  const char *functions;      /* names of the callable functions, separated by single spaces */
  /* the seed's ReedPlugin::init; non-zero fails the load (init_failed) */
  int32_t (*init)(void *self, const reed_host_api *host);
  /* 0: success, *output set (or left NULL/0 for no output); non-zero: a plugin error (see error_set) */
  int32_t (*call)(void *self, const char *function, const uint8_t *input, size_t input_len, reed_output *output);
  /* the seed's ReedPlugin::deactivate */
  int32_t (*deactivate)(void *self);
  void (*free_output)(void *self, uint8_t *data, size_t len);
  /* releases self; the instance is not used afterwards */
  void (*destroy)(void *self);
} reed_plugin;

#define REED_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif

#endif
