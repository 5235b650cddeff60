/*
 * runtime.c - the runtime handle (runtime.h): picks an implementation's
 * table by name at open and dispatches every call through it, so a new
 * runtime is one more table in `drivers`.  The handle is immutable after
 * runtime_open; the implementation's instance holds whatever state it has.
 */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/local.h"

struct runtime {
    const runtime_ops *ops;
    void *impl;
};

static const runtime_ops *const drivers[] = {&rt_local_ops};

int runtime_open(const char *driver, const char *owner_id, runtime **out, serr *e) {
    *out = NULL;
    const runtime_ops *ops = NULL;
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
        if (driver && strcmp(drivers[i]->name, driver) == 0) ops = drivers[i];
    if (ops == NULL) return serr_set(e, SE_INVAL, "runtime: unknown driver \"%.64s\"", driver ? driver : "");
    runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    rt->ops = ops;
    int rc = ops->open(owner_id, &rt->impl, e);
    if (rc) {
        free(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

void runtime_close(runtime *rt) {
    if (rt == NULL) return;
    rt->ops->close(rt->impl);
    free(rt);
}

const char *runtime_driver(const runtime *rt) { return rt ? rt->ops->name : "none"; }

int rt_spawn(runtime *rt, const rt_spawn_spec *spec, pid_t *pid, serr *e) {
    if (rt == NULL) return serr_set(e, SE_INTERNAL, "runtime: not open");
    return rt->ops->spawn(rt->impl, spec, pid, e);
}

int rt_scan(runtime *rt, const char *prefix, bool fresh, rt_proc *out, int max, serr *e) {
    if (rt == NULL) return serr_set(e, SE_INTERNAL, "runtime: not open");
    if (max < 0) return serr_set(e, SE_INVAL, "runtime: negative scan size");
    return rt->ops->scan(rt->impl, prefix, fresh, out, max, e);
}

int rt_stop(runtime *rt, pid_t pid, int grace_ms, serr *e) {
    if (rt == NULL) return serr_set(e, SE_INTERNAL, "runtime: not open");
    return rt->ops->stop(rt->impl, pid, grace_ms, e);
}

bool rt_alive(runtime *rt, pid_t pid) { return rt != NULL && rt->ops->alive(rt->impl, pid); }

void rt_invalidate(runtime *rt) {
    if (rt) rt->ops->invalidate(rt->impl);
}
