/*
 * local.h - the local runtime: real processes on this machine, supervised
 * by stampd but not its children, so they outlive a restart of stampd.
 *
 * Every process stampd starts is detached (double fork, setsid, its own
 * process group, stdin from /dev/null, stdout+stderr appended to a log file)
 * and carries two environment markers:
 *   STAMPD_OWNER=<owner id>   (one per data dir; from lrt_init)
 *   STAMP_UNIT=<unit>         (e.g. "synaxis-weu-001/general/0")
 * lrt_scan reads /proc/<pid>/environ to find every live process of this
 * owner, whatever happened to stampd in between (kill -9 right after fork
 * included), so adoption never depends on a pidfile being written.
 *
 * Threading: all functions are thread safe; lrt_scan results are cached for
 * at most LRT_SCAN_TTL_MS so that many reconcilers can ask cheaply.
 */
#ifndef STAMP_RUNTIME_LOCAL_H
#define STAMP_RUNTIME_LOCAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

#define LRT_UNIT_MAX 256
#define LRT_SCAN_TTL_MS 200
#define LRT_MAX_PROCS 4096

typedef struct lrt_proc {
    pid_t pid;
    char unit[LRT_UNIT_MAX];
    int64_t start_ticks; /* /proc/<pid>/stat field 22, tells pid reuse apart */
} lrt_proc;

typedef struct lrt_spawn_spec {
    const char *unit;             /* required, printable, no spaces */
    const char *const *argv;      /* argv[0] is the program path (execv, not a shell) */
    const char *const *env;       /* extra "K=V" entries, NULL terminated; may be NULL */
    const char *log_path;         /* stdout+stderr appended here; required */
    const char *cwd;              /* may be NULL */
    bool env_clear;               /* true: not stampd's environment, only env + markers */
} lrt_spawn_spec;

/* Once per process: owner id (e.g. a hash of the data dir). */
int lrt_init(const char *owner_id, serr *e);

/* Start one detached process.  Returns its pid (the real program's pid, not
 * an intermediate) once it has been exec'd, or an error if exec failed. */
int lrt_spawn(const lrt_spawn_spec *spec, pid_t *pid, serr *e);

/* All live processes of this owner whose unit starts with prefix (NULL or ""
 * = all).  Zombies are not live.  fresh=true bypasses the cache.  Returns
 * the count (>= 0) and fills at most max entries, or a negative code. */
int lrt_scan(const char *prefix, bool fresh, lrt_proc *out, int max, serr *e);

/* SIGTERM the process group of pid, wait up to grace_ms for it to go, then
 * SIGKILL.  A process that is already gone is success.  Blocks at most
 * grace_ms + 200 ms. */
int lrt_stop(pid_t pid, int grace_ms, serr *e);

/* True if pid is alive and not a zombie. */
bool lrt_alive(pid_t pid);

/* Invalidate the scan cache (after a spawn or stop). */
void lrt_invalidate(void);

#endif
