// A native plugin in C (native.c -> plugin.so by the set-up): the same notes as notes-c, through the C ABI,
// exercising every host callback. Input to `put` is "key=value"; get/delete take a key; list a prefix.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "reed_plugin.h"

typedef struct { const reed_host_api *host; long calls; } state;

static int32_t fail(state *s, const char *code, const char *msg) {
  s->host->error_set(s->host->ctx, code, strlen(code), msg, strlen(msg));
  return 1;
}

static int32_t give(reed_output *out, const void *data, size_t len) {
  out->data = malloc(len ? len : 1);
  if (out->data == NULL) return 1;
  memcpy(out->data, data, len);
  out->len = len;
  return 0;
}

static int32_t init(void *self, const reed_host_api *host) {
  state *s = self;
  s->host = host;
  char title[256];
  int64_t n = host->config_get(host->ctx, "title", 5, (uint8_t *)title, sizeof title);
  if (n < 0) return fail(s, "no_title", "configuration.title is missing");
  char line[300];
  int len = snprintf(line, sizeof line, "native notes ready, title %.*s", (int)(n < 256 ? n : 256), title);
  host->log(host->ctx, REED_LOG_INFO, line, (size_t)len);
  return 0;
}

static int32_t call(void *self, const char *fn, const uint8_t *in, size_t in_len, reed_output *out) {
  state *s = self;
  const reed_host_api *h = s->host;
  const char *text = (const char *)in;
  s->calls++;
  if (strcmp(fn, "echo") == 0) return give(out, in, in_len);
  if (strcmp(fn, "greet") == 0) {
    char buf[512];
    int len = snprintf(buf, sizeof buf, "Hello from C, %.*s!", (int)(in_len < 400 ? in_len : 400), text);
    return give(out, buf, (size_t)len);
  }
  if (strcmp(fn, "put") == 0) {
    const char *eq = memchr(text, '=', in_len);
    if (eq == NULL) return fail(s, "bad_input", "expected key=value");
    size_t key_len = (size_t)(eq - text);
    if (h->storage_put(h->ctx, text, key_len, (const uint8_t *)eq + 1, in_len - key_len - 1) < 0) return 1;
    char event[300];
    int len = snprintf(event, sizeof event, "{\"key\":\"%.*s\"}", (int)(key_len < 200 ? key_len : 200), text);
    return h->event_emit(h->ctx, "notes.saved", 11, event, (size_t)len) < 0;
  }
  if (strcmp(fn, "get") == 0) {
    uint8_t buf[4096];
    int64_t n = h->storage_get(h->ctx, text, in_len, buf, sizeof buf);
    if (n == REED_NOT_FOUND) return fail(s, "not_found", "no note with that key");
    if (n < 0) return 1;
    return give(out, buf, (size_t)(n < (int64_t)sizeof buf ? n : (int64_t)sizeof buf));
  }
  if (strcmp(fn, "delete") == 0) {
    if (h->storage_delete(h->ctx, text, in_len) == REED_NOT_FOUND) return fail(s, "not_found", "no note with that key");
    return 0;
  }
  if (strcmp(fn, "list") == 0) {
    uint8_t buf[4096];
    int64_t n = h->storage_list(h->ctx, text, in_len, buf, sizeof buf);
    if (n < 0) return 1;
    for (int64_t i = 0; i < n && i < (int64_t)sizeof buf; i++) if (buf[i] == 0) buf[i] = '\n';
    return give(out, buf, (size_t)(n < (int64_t)sizeof buf ? n : (int64_t)sizeof buf));
  }
  if (strcmp(fn, "publish") == 0) {
    char data[600], id[64];
    uint8_t item[1024];
    int len = snprintf(data, sizeof data, "{\"text\":\"%.*s\"}", (int)(in_len < 500 ? in_len : 500), text);
    int64_t id_len = h->content_create(h->ctx, "note", 4, data, (size_t)len, id, sizeof id);
    if (id_len < 0) return 1;
    int64_t n = h->content_get(h->ctx, id, (size_t)id_len, item, sizeof item);
    if (n < 0) return 1;
    h->log(h->ctx, REED_LOG_INFO, "published a note", 16);
    return give(out, item, (size_t)(n < (int64_t)sizeof item ? n : (int64_t)sizeof item));
  }
  if (strcmp(fn, "calls") == 0) {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld", s->calls);
    return give(out, buf, (size_t)len);
  }
  return fail(s, "unknown_function", fn);
}

static int32_t deactivate(void *self) {
  state *s = self;
  s->host->log(s->host->ctx, REED_LOG_INFO, "native notes stopping", 21);
  return 0;
}

static void free_output(void *self, uint8_t *data, size_t len) {
  (void)self;
  (void)len;
  free(data);
}

static void destroy(void *self) { free(self); }

REED_PLUGIN_EXPORT const char *_reed_plugin_api_version(void) { return REED_PLUGIN_API_VERSION; }

REED_PLUGIN_EXPORT reed_plugin *_reed_plugin_create(void) {
  static reed_plugin plugin;
  state *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  plugin = (reed_plugin){REED_NATIVE_ABI, s, "echo greet put get delete list publish calls", init, call, deactivate, free_output, destroy};
  return &plugin;
}
