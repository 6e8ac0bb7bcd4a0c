/*
 * The runner's V8 flag setter in process mode (scripts/bundle.mjs builds it as dist/runner/v8-flags.node; main.js
 * loads it). main.js sets the heap flags to their defaults while runner.js loads, so that Node's code cache of its
 * built-ins fits; Node's permission model (process mode) denies process.binding('v8'), and node:v8, the other way
 * in, first loads 22 stream modules that then compile from source (~7 ms of a runner's CPU). Node allows addons
 * there (--allow-addons): this one is V8's own setter and nothing else (~0.25 ms to load and call).
 * Found at load (dlsym), not linked: a node that does not export it makes the load throw, and main.js falls back.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <node_api.h>
#include <stddef.h>

/* v8::V8::SetFlagsFromString(const char*, size_t), exported by the node binary (or libnode). */
typedef void (*set_flags_fn)(const char *flags, size_t length);
static set_flags_fn v8_set_flags;

static napi_value set_flags(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  /* Room for one heap flag (--max-old-space-size=N); a longer string is refused, never cut short. */
  char flags[128];
  size_t length = 0;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_string_utf8(env, arg, flags, sizeof flags, &length) != napi_ok ||
      length >= sizeof flags - 1) {
    napi_throw_type_error(env, NULL, "setFlagsFromString takes one flag of under 127 bytes");
    return NULL;
  }
  v8_set_flags(flags, length);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  v8_set_flags = (set_flags_fn)dlsym(RTLD_DEFAULT, "_ZN2v82V818SetFlagsFromStringEPKcm");
  if (v8_set_flags == NULL) {
    napi_throw_error(env, NULL, "this node does not export v8::V8::SetFlagsFromString");
    return NULL;
  }
  if (napi_create_function(env, "setFlagsFromString", NAPI_AUTO_LENGTH, set_flags, NULL, &fn) != napi_ok)
    return NULL;
  return fn;
}
