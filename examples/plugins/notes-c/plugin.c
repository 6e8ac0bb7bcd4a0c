// A notes plugin in C, compiled to wasm32-wasi by the set-up: it exercises every host import.
// Input to `put` is "key=value"; `get` and `delete` take a key; `list` takes a prefix.
#include <stdio.h>
#include <string.h>
#include "reed_wasm.h"

static char in[4096];
static char buf[8192];

static int32_t fail(const char *code, const char *msg) {
  reed_error_set(code, (int32_t)strlen(code), msg, (int32_t)strlen(msg));
  return 1;
}

static int32_t read_input(void) {
  int32_t n = reed_input_read(in, sizeof in - 1, 0);
  in[n] = 0;
  return n;
}

REED_EXPORT(init) int32_t init(void) {
  int32_t n = reed_config_get("title", 5, buf, sizeof buf - 1);
  if (n < 0) return fail("no_title", "configuration.title is missing");
  printf("notes ready, title %.*s\n", n, buf);  // WASI stdout: goes to the plugin's log
  fflush(stdout);
  return 0;
}

REED_EXPORT(put) int32_t put(void) {
  int32_t n = read_input();
  char *eq = memchr(in, '=', (size_t)n);
  if (eq == NULL) return fail("bad_input", "expected key=value");
  int32_t key_len = (int32_t)(eq - in);
  reed_storage_put(in, key_len, eq + 1, n - key_len - 1);
  char event[256];
  int len = snprintf(event, sizeof event, "{\"key\":\"%.*s\"}", key_len, in);
  reed_event_emit("notes.saved", 11, event, len);
  return 0;
}

REED_EXPORT(get) int32_t get(void) {
  int32_t n = read_input();
  int32_t len = reed_storage_get(in, n, buf, sizeof buf);
  if (len == REED_NOT_FOUND) return fail("not_found", "no note with that key");
  reed_output_write(buf, len < (int32_t)sizeof buf ? len : (int32_t)sizeof buf);
  return 0;
}

REED_EXPORT(delete) int32_t delete_note(void) {
  int32_t n = read_input();
  if (reed_storage_delete(in, n) == REED_NOT_FOUND) return fail("not_found", "no note with that key");
  return 0;
}

REED_EXPORT(list) int32_t list(void) {
  int32_t n = read_input();
  int32_t len = reed_storage_list(in, n, buf, sizeof buf);
  for (int32_t i = 0; i < len && i < (int32_t)sizeof buf; i++) if (buf[i] == 0) buf[i] = '\n';
  reed_output_write(buf, len < (int32_t)sizeof buf ? len : (int32_t)sizeof buf);
  return 0;
}

REED_EXPORT(publish) int32_t publish(void) {
  int32_t n = read_input();
  char data[4200];
  int len = snprintf(data, sizeof data, "{\"text\":\"%.*s\"}", n, in);
  char id[64];
  int32_t id_len = reed_content_create("note", 4, data, len, id, sizeof id);
  reed_log(REED_LOG_INFO, "published a note", 16);
  int32_t got = reed_content_get(id, id_len, buf, sizeof buf);
  reed_output_write(buf, got < (int32_t)sizeof buf ? got : (int32_t)sizeof buf);
  return 0;
}
