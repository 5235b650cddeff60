/*
 * traffic.c - the front door handle (traffic.h): picks a driver's table by
 * name at open and dispatches every call through it, so a new driver is one
 * more table in `drivers`.  The none driver lives here: every operation
 * succeeds and does nothing.  The handle itself is immutable after
 * traffic_open; whatever state a driver keeps is its own.
 */
#include "traffic/traffic.h"

#include <stdlib.h>
#include <string.h>

#include "util/metrics.h"
#include "util/util.h"

const char *const tr_state_names[4] = {"absent", "ready", "drain", "maint"};

struct traffic {
    const traffic_ops *ops;
    void *impl;
    /* Shown in the view only: the policy is reconcile/fleet.c's. */
    char policy[32];
};

/* ---- none ---- */

static int none_open(const stamp_config *cfg, const char *data_dir, struct runtime *rt, void **impl,
                     serr *e) {
    *impl = NULL;
    return 0;
}
static void none_close(void *impl) {}
static int none_set(void *impl, const char *name, const char *addr, tr_state st, serr *e) { return 0; }
static void none_forget(void *impl, const char *name) {}
static int none_stat(void *impl, const char *name, tr_stat *out, serr *e) {
    memset(out, 0, sizeof(*out));
    return 0;
}
static int none_shutdown_sessions(void *impl, const char *name, serr *e) { return 0; }
static void none_sync(void *impl, traffic_enqueue_fn enqueue, void *arg) {}
static void none_abort(void *impl) {}
static int none_stop_owned(void *impl, serr *e) { return 0; }
static int none_json(void *impl, json_t *o, serr *e) { return 0; }

static const traffic_ops none_ops = {
    .name = "none",
    .enabled = false,
    .open = none_open,
    .close = none_close,
    .set = none_set,
    .forget = none_forget,
    .stat = none_stat,
    .shutdown_sessions = none_shutdown_sessions,
    .sync = none_sync,
    .abort = none_abort,
    .stop_owned = none_stop_owned,
    .json = none_json,
};

/* What a NULL handle is. */
static const traffic none_handle = {.ops = &none_ops};

static const traffic_ops *const drivers[] = {&traffic_haproxy_ops, &none_ops};

#define T(t) ((t) ? (t) : &none_handle)

int traffic_open(const stamp_config *cfg, const char *data_dir, struct runtime *rt, traffic **out,
                 serr *e) {
    *out = NULL;
    const traffic_ops *ops = NULL;
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
        if (strcmp(drivers[i]->name, cfg->traffic_driver) == 0) ops = drivers[i];
    if (ops == NULL)
        return serr_set(e, SE_INVAL, "traffic-driver: \"%.40s\" is not haproxy or none", cfg->traffic_driver);
    metrics_register("stamp_frontdoor_up", MT_GAUGE, "1 when the front door answers on its admin socket");
    metrics_register("stamp_frontdoor_restarts_total", MT_COUNTER, "HAProxy restarts by stampd");
    traffic *t = calloc(1, sizeof(*t));
    if (t == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    t->ops = ops;
    str_copy(t->policy, sizeof(t->policy), cfg->all_unhealthy_policy);
    int rc = ops->open(cfg, data_dir, rt, &t->impl, e);
    if (rc) {
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void traffic_close(traffic *t) {
    if (t == NULL) return;
    t->ops->close(t->impl);
    free(t);
}

bool traffic_enabled(const traffic *t) { return T(t)->ops->enabled; }
const char *traffic_driver(const traffic *t) { return T(t)->ops->name; }

int traffic_set(traffic *t, const char *name, const char *addr, tr_state st, serr *e) {
    return T(t)->ops->set(T(t)->impl, name, addr, st, e);
}

void traffic_forget(traffic *t, const char *name) { T(t)->ops->forget(T(t)->impl, name); }

int traffic_stat(traffic *t, const char *name, tr_stat *out, serr *e) {
    return T(t)->ops->stat(T(t)->impl, name, out, e);
}

int traffic_shutdown_sessions(traffic *t, const char *name, serr *e) {
    return T(t)->ops->shutdown_sessions(T(t)->impl, name, e);
}

void traffic_sync(traffic *t, traffic_enqueue_fn enqueue, void *arg) {
    T(t)->ops->sync(T(t)->impl, enqueue, arg);
}

void traffic_abort(traffic *t) { T(t)->ops->abort(T(t)->impl); }

int traffic_stop_owned(traffic *t, serr *e) { return T(t)->ops->stop_owned(T(t)->impl, e); }

int traffic_json(traffic *t, json_t **out, serr *e) {
    *out = NULL;
    json_t *o = json_pack("{s:s}", "driver", traffic_driver(t));
    if (o == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    if (traffic_enabled(t)) json_object_set_new(o, "allUnhealthyPolicy", json_string(T(t)->policy));
    int rc = T(t)->ops->json(T(t)->impl, o, e);
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}
