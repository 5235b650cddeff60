/*
 * runtime.h - where units run: one interface, an instance handle, and a
 * table of operations per runtime (DESIGN.md, "Runtimes").  Stamps' replicas
 * and exec steps, namespaces' pods (through stamp-run) and the front door's
 * HAProxy are all started, found, and stopped through a `runtime *`.
 *
 *   local   real detached processes on this machine, found again through
 *           /proc after a restart of stampd (local.h says how).
 *
 * A unit is a name ("synaxis-weu-001/p/general/0", "ns/b1/pod-a",
 * "frontdoor/haproxy"); a process belongs to the runtime's owner (one per
 * data dir), so two stampd on two data dirs never see each other's units.
 *
 * Every rt_* function takes the handle; a NULL handle is a runtime that was
 * never opened: spawn, scan and stop answer SE_INTERNAL, alive is false and
 * invalidate does nothing (a tool or test that never runs units needs none).
 *
 * Threading: an instance may be used from any thread at once; what each
 * implementation locks is its own business (local: one mutex around the
 * scan cache).  runtime_close must come after every other call.
 */
#ifndef STAMP_RUNTIME_H
#define STAMP_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

#define RT_UNIT_MAX 256
#define RT_MAX_PROCS 4096

typedef struct runtime runtime;

typedef struct rt_proc {
    pid_t pid;
    char unit[RT_UNIT_MAX];
    int64_t start_ticks; /* /proc/<pid>/stat field 22, tells pid reuse apart */
} rt_proc;

typedef struct rt_spawn_spec {
    const char *unit;             /* required, printable, no spaces */
    const char *const *argv;      /* argv[0] is the program path (execv, not a shell) */
    const char *const *env;       /* extra "K=V" entries, NULL terminated; may be NULL */
    const char *log_path;         /* stdout+stderr appended here; required */
    const char *cwd;              /* may be NULL */
    bool env_clear;               /* true: not stampd's environment, only env + markers */
} rt_spawn_spec;

/* An implementation: a table of these, and an instance it allocates at
 * open.  The rt_* functions check the handle and dispatch. */
typedef struct runtime_ops {
    const char *name;
    int (*open)(const char *owner_id, void **impl, serr *e);
    void (*close)(void *impl);
    int (*spawn)(void *impl, const rt_spawn_spec *spec, pid_t *pid, serr *e);
    int (*scan)(void *impl, const char *prefix, bool fresh, rt_proc *out, int max, serr *e);
    int (*stop)(void *impl, pid_t pid, int grace_ms, serr *e);
    bool (*alive)(void *impl, pid_t pid);
    void (*invalidate)(void *impl);
} runtime_ops;

/* driver: "local".  owner_id: one per data dir (stampd keeps it in the
 * store), printable, no spaces or '=', at most 128 bytes. */
int runtime_open(const char *driver, const char *owner_id, runtime **out, serr *e);
/* Accepts NULL.  Processes keep running: they outlive stampd. */
void runtime_close(runtime *rt);
const char *runtime_driver(const runtime *rt);

/* Start one unit.  Returns once the program has been exec'd (its pid, the
 * real program's, not an intermediate), or an error if exec failed. */
int rt_spawn(runtime *rt, const rt_spawn_spec *spec, pid_t *pid, serr *e);

/* All live units of this owner whose unit name starts with prefix (NULL or
 * "" = all).  fresh=true bypasses any cache.  Returns the count (>= 0) and
 * fills at most max entries, or a negative code. */
int rt_scan(runtime *rt, const char *prefix, bool fresh, rt_proc *out, int max, serr *e);

/* Stop the unit whose process is pid: SIGTERM to its group, grace_ms to go,
 * then SIGKILL.  Already gone is success.  Blocks at most grace_ms + 200 ms. */
int rt_stop(runtime *rt, pid_t pid, int grace_ms, serr *e);

/* True if pid is alive and not a zombie. */
bool rt_alive(runtime *rt, pid_t pid);

/* Forget cached scans (after a spawn or stop done outside this runtime). */
void rt_invalidate(runtime *rt);

#endif
