// bwrap's starter for a root host on cgroup v1 (runner-process.ts, #spawn; built into dist/starter/ by
// scripts/build-starter.mjs). It joins the runner's cgroup in each hierarchy by writing "0" to the cgroup's `tasks`
// (a single-threaded process moving itself takes no lock that waits for an RCU grace period: cgroup.ts,
// selfJoinFiles), then becomes the runner's uid and gid (real, effective and saved; no supplementary groups, so no
// capabilities left) and execs bwrap with the environment it was given. It does what `/bin/sh -c 'echo 0 >...'`
// then util-linux's `setpriv --reuid --regid --clear-groups` did, in one static exec instead of three dynamically
// linked ones: ~3 ms of CPU less on every cold start's path (docs/BENCHMARKS.md, session 12).
//
// Usage: reed-starter N TASKS_FILE... UID GID PROGRAM ARG...
// Any failure ends it before PROGRAM runs, with a line on stderr (the host shows a start's stderr in its error).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what) {
  dprintf(2, "reed-starter: %s: %s\n", what, strerror(errno));
  return 127;
}

/** A decimal number up to `max`, digits only; -1 for anything else. */
static int number(const char *text, unsigned long max, unsigned long *out) {
  char *end;
  if (*text < '0' || *text > '9') return -1;
  errno = 0;
  unsigned long value = strtoul(text, &end, 10);
  if (errno != 0 || *end != '\0' || value > max) return -1;
  *out = value;
  return 0;
}

int main(int argc, char **argv) {
  unsigned long n, uid, gid;
  if (argc < 2 || number(argv[1], 16, &n) != 0 || (unsigned long)argc < 2 + n + 3) {
    dprintf(2, "reed-starter: usage: reed-starter N TASKS_FILE... UID GID PROGRAM ARG...\n");
    return 127;
  }
  // Never root: the starter exists to leave it (0 is refused by the host's uid range as well).
  if (number(argv[2 + n], 4294967294UL, &uid) != 0 || number(argv[3 + n], 4294967294UL, &gid) != 0 || uid == 0 ||
      gid == 0) {
    errno = EINVAL;
    return fail("uid and gid");
  }
  for (unsigned long i = 0; i < n; i++) {
    int fd = open(argv[2 + i], O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return fail(argv[2 + i]);
    if (write(fd, "0", 1) != 1) return fail(argv[2 + i]);
    close(fd);
  }
  // Groups first (setgroups and setresgid need the privilege setresuid gives up).
  if (setgroups(0, NULL) != 0) return fail("setgroups");
  if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) return fail("setresgid");
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) return fail("setresuid");
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != uid || eu != uid || su != uid ||
      rg != gid || eg != gid || sg != gid || getgroups(0, NULL) != 0) {
    errno = EPERM;
    return fail("ids not dropped");
  }
  execv(argv[4 + n], argv + 4 + n);
  return fail(argv[4 + n]);
}
