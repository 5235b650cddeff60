/*
 * phases.c - the Stamp controller's table and its dispatch.
 *
 * A reconcile reads the stamp, parses what the API asked for (the intent),
 * consults the table row of the stamp's phase, and:
 *   1. when the phase's configured timeout has passed, takes the row's
 *      timeout edge (core/stamp_fsm.c names target and reason; a row may
 *      refine it: Draining forces its drain toward its own target);
 *   2. else runs the row's reconcile, which observes, asks its pure
 *      decision (decide.c) and acts.
 * Every phase change goes through sc_change: the left phase's on_leave and
 * the new phase's on_enter edit status in the same write as the phase, so
 * nothing of one phase survives into the next by accident.
 *
 * It is level-triggered: it never relies on having seen an earlier event,
 * so a kill -9 at any point followed by a restart converges:
 *   - process steps: replicas are found by scanning /proc for their unit
 *     markers, so a replica started just before a crash is adopted, never
 *     started twice;
 *   - exec steps: the run is marked Running and persisted BEFORE stamp-run
 *     starts; stamp-run writes its result file atomically (exec.c);
 *   - retirement steps run through the step runner (reconcile/steps.h),
 *     each check-then-act, archives built under ".partial" and renamed
 *     only once verified; nothing is purged before that.
 *
 * Threading: reconcile workers; the work queue guarantees one worker per
 * stamp at a time.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/jobs.h"
#include "reconcile/phase.h"
#include "stamp/internal.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"

typedef struct phase_row {
    int (*reconcile)(sctx *s, serr *e);
    void (*on_enter)(sctx *s, int from);
    void (*on_leave)(sctx *s, int to);
    /* NULL: change to the timeout row's target with its reason. */
    int (*on_timeout)(sctx *s, const fsm_timeout *t, int64_t limit, serr *e);
    /* The phase's limit when it is not the configuration key's (a drain's
     * grace period); NULL: the key. */
    int64_t (*limit)(sctx *s);
    /* Whether the timeout applies now (Ready: only in standby). */
    bool (*timeout_applies)(sctx *s);
} phase_row;

static void enter_serving_off(sctx *s, int from) {
    (void)from;
    /* The health of the Active phase goes with it. */
    json_object_del(s->r.status, "health");
}

static void leave_ready(sctx *s, int to) {
    (void)to;
    json_object_del(s->r.status, "activation");
}

static int64_t draining_limit(sctx *s) {
    int64_t c, j, t;
    sc_drain_limits(s, json_object_get(s->r.status, "drain"), &c, &j, &t);
    return t;
}

/* Standby's max age counts in standby only (not while activating, not once
 * deleted: that is retirement already). */
static bool ready_in_standby(sctx *s) { return s->in.desired == SD_STANDBY; }
/* A drain being cancelled is not forced by its limit. */
static bool draining_not_cancelled(sctx *s) { return s->in.desired != SD_ACTIVE; }
/* A Failed stamp asked to deploy again or to be deleted does that first. */
static bool failed_untouched(sctx *s) {
    return s->in.desired != SD_DELETED && s->in.retry <= jint(s->r.status, "retryObserved", 0);
}

/*
 * The table.  Which file decides each phase:
 *   Creating  creating.c   sc_creating      health gate, steps, attempts
 *   Active    serving.c    sc_active        rotation, recovery
 *   Draining  draining.c   sc_draining      connections, jobs, limits
 *   Ready     serving.c    sc_ready         standby, activation
 *   Deleting  retiring.c   sc_deleting      the retirement steps
 *   Deleted   retiring.c   sc_deleted       archive retention
 *   Failed    creating.c   sc_failed        redeploy, delete
 */
static const phase_row rows[SP_NPHASES] = {
    [SP_CREATING] = {.reconcile = sc_creating, .on_enter = sc_enter_creating,
                     .on_leave = sc_leave_creating, .on_timeout = sc_creating_timeout},
    [SP_ACTIVE] = {.reconcile = sc_active, .on_enter = sc_enter_active},
    [SP_DRAINING] = {.reconcile = sc_draining, .on_enter = sc_enter_draining,
                     .on_timeout = sc_draining_timeout, .limit = draining_limit,
                     .timeout_applies = draining_not_cancelled},
    [SP_READY] = {.reconcile = sc_ready, .on_enter = enter_serving_off, .on_leave = leave_ready,
                  .timeout_applies = ready_in_standby},
    [SP_DELETING] = {.reconcile = sc_deleting, .on_enter = enter_serving_off},
    [SP_DELETED] = {.reconcile = sc_deleted, .on_enter = sc_enter_deleted},
    [SP_FAILED] = {.reconcile = sc_failed, .on_enter = enter_serving_off,
                   .timeout_applies = failed_untouched},
};

/* ---- status writes ---- */

void sc_want(sctx *s, int64_t ms) {
    if (ms < 0) ms = 0;
    if (s->requeue < 0 || ms < s->requeue) s->requeue = ms;
}

void sc_set_int(sctx *s, json_t *o, const char *key, int64_t v) {
    if (jint(o, key, INT64_MIN) == v) return;
    json_object_set_new(o, key, json_integer(v));
    s->dirty = true;
}

void sc_set_str(sctx *s, json_t *o, const char *key, const char *v) {
    const char *old = jstr(o, key, NULL);
    if (old && v && strcmp(old, v) == 0) return;
    json_object_set_new(o, key, v ? json_string(v) : json_null());
    s->dirty = true;
}

void sc_event(sctx *s, const char *type, const char *reason, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    store_event ev = {.type = type, .reason = reason, .message = msg};
    store_event_add(s->c->st, "Stamp", s->name, &ev, NULL);
    if (strcmp(type, "Warning") == 0) log_warnx("stamp %s: %s: %s", s->name, reason, msg);
    else log_info("stamp %s: %s: %s", s->name, reason, msg);
}

/* Every timestamp the controller keeps in milliseconds for its own
 * arithmetic (a key ending in "Ms" whose value is a time, not a duration:
 * after 2001) gets an RFC 3339 UTC twin, "startedMs" -> "startedTime", in
 * the same write.  Durations (gracePeriodMs) are left alone. */
#define TWINS_MAX 32
static void status_times(json_t *o, int depth) {
    if (depth > 6) return;
    if (json_is_array(o)) {
        size_t i;
        json_t *v;
        json_array_foreach(o, i, v) status_times(v, depth + 1);
        return;
    }
    if (!json_is_object(o)) return;
    /* Keys are added after the walk: inserting while iterating may rehash. */
    const char *keys[TWINS_MAX];
    int64_t ms[TWINS_MAX];
    int nadd = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t n = strlen(k);
        if (json_is_integer(v) && n > 2 && n < 64 && strcmp(k + n - 2, "Ms") == 0 &&
            json_integer_value(v) > 978307200000LL) {
            if (nadd == TWINS_MAX) continue;
            keys[nadd] = k;
            ms[nadd++] = json_integer_value(v);
        } else if (json_is_object(v) || json_is_array(v)) {
            status_times(v, depth + 1);
        }
    }
    for (int i = 0; i < nadd; i++) {
        char key[72], when[40];
        size_t n = strlen(keys[i]);
        /* keys[i] stays valid: nothing was added yet for this key. */
        memcpy(key, keys[i], n - 2);
        str_copy(key + n - 2, sizeof(key) - (n - 2), "Time");
        fmt_time_rfc3339_ms(ms[i], when, sizeof(when));
        const char *old = json_string_value(json_object_get(o, key));
        if (old == NULL || strcmp(old, when) != 0) json_object_set_new(o, key, json_string(when));
    }
}

/* Persist status if it changed; a conflict means the API wrote meanwhile. */
int sc_save(sctx *s, serr *e) {
    if (!s->dirty) return 0;
    status_times(s->r.status, 0);
    int rc = store_update(s->c->st, &s->r, NULL, e);
    if (rc == 0) s->dirty = false;
    return rc;
}

int sc_change(sctx *s, int to, const char *reason, const char *msg, serr *e) {
    assert(to >= 0 && to < SP_NPHASES && s->phase >= 0 && s->phase < SP_NPHASES);
    json_t *st = s->r.status;
    /* What every phase waits for and the step it runs end with it. */
    json_object_del(st, "waitingFor");
    json_object_del(st, "step");
    if (rows[s->phase].on_leave) rows[s->phase].on_leave(s, to);
    if (rows[to].on_enter) rows[to].on_enter(s, s->phase);
    status_times(st, 0);
    int from = s->phase;
    int rc = phase_change(s->c, &stamp_fsm, &s->r, to, reason, msg, e);
    if (rc == 0) {
        log_info("stamp %s: %s -> %s (%s)", s->name, fsm_phase_name(&stamp_fsm, from),
                 fsm_phase_name(&stamp_fsm, to), reason);
        s->phase = to;
        s->dirty = false;
        sc_want(s, 0);
    }
    return rc;
}

const fsm_timeout *sc_timeout_passed(sctx *s, int64_t *limit_ms) {
    const fsm_timeout *t = fsm_timeout_find(&stamp_fsm, s->phase);
    *limit_ms = 0;
    if (t == NULL) return NULL;
    const phase_row *row = &rows[s->phase];
    if (row->timeout_applies && !row->timeout_applies(s)) return NULL;
    int64_t limit = row->limit ? row->limit(s) : config_duration(s->c->cfg, t->config_key);
    if (limit <= 0) return NULL;
    *limit_ms = limit;
    int64_t age = phase_age_ms(&s->r);
    if (age >= limit) return t;
    sc_want(s, limit - age);
    return NULL;
}

static int timeout_edge(sctx *s, bool *taken, serr *e) {
    int64_t limit;
    *taken = false;
    const fsm_timeout *t = sc_timeout_passed(s, &limit);
    if (t == NULL) return 0;
    *taken = true;
    if (rows[s->phase].on_timeout) return rows[s->phase].on_timeout(s, t, limit, e);
    char d[32], msg[128];
    snprintf(msg, sizeof(msg), "%s of %s passed", t->config_key, fmt_duration(limit, d, sizeof(d)));
    return sc_change(s, t->target, t->reason, msg, e);
}

/* ---- slow work on the job pool ---- */

int sc_job(sctx *s, json_t *rec, const char *key, job_fn fn, void *arg, void (*free_arg)(void *),
           int *state, json_t **result, serr *e) {
    bool changed;
    int rc = ctl_job(s->c, rec, key, fn, arg, free_arg, state, result, &changed, e);
    if (changed) s->dirty = true;
    if (rc == 0 && *state != JOB_DONE) {
        sc_want(s, 1000); /* the job's end wakes the stamp; this is the fallback */
        if (*state == JOB_QUEUED) return sc_save(s, e);
    }
    return rc;
}

typedef struct stamp_job {
    sctx *s;
    sc_stamp_fn fn;
} stamp_job;

static int run_stamp_job(void *arg, json_t **result, serr *e) {
    stamp_job *j = arg;
    return j->fn(j->s, result, e);
}

static void free_stamp_job(void *arg) {
    stamp_job *j = arg;
    if (j == NULL) return;
    if (j->s) resource_free(&j->s->r);
    free(j->s);
    free(j);
}

int sc_job_stamp(sctx *s, json_t *rec, const char *what, sc_stamp_fn fn, int *state,
                 json_t **result, serr *e) {
    stamp_job *j = calloc(1, sizeof(*j));
    sctx *cp = calloc(1, sizeof(*cp));
    if (j == NULL || cp == NULL) {
        free(j);
        free(cp);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    cp->c = s->c;
    cp->in = s->in;
    cp->phase = s->phase;
    cp->requeue = -1;
    cp->in_job = true;
    str_copy(cp->name, sizeof(cp->name), s->name);
    str_copy(cp->dir, sizeof(cp->dir), s->dir);
    resource_init(&cp->r);
    *j = (stamp_job){.s = cp, .fn = fn};
    if (resource_copy(&cp->r, &s->r) != 0 || sc_parse(cp, e) != 0) {
        free_stamp_job(j);
        return e->code ? e->code : serr_set(e, SE_NOMEM, "out of memory");
    }
    char key[JOBS_KEY_MAX];
    if (snprintf(key, sizeof(key), "Stamp/%s/%s", s->name, what) >= (int)sizeof(key)) {
        free_stamp_job(j);
        return serr_set(e, SE_TOOBIG, "job key too long");
    }
    return sc_job(s, rec, key, run_stamp_job, j, free_stamp_job, state, result, e);
}

/* ---- the dispatch ---- */

typedef struct server_use {
    const char *server;
    bool used;
} server_use;

static int uses_server(const resource *r, void *arg) {
    server_use *u = arg;
    u->used = strcmp(stamp_frontdoor_server(r), u->server) == 0 && strcmp(r->name, u->server) != 0;
    return u->used; /* stop at the first */
}

static int gone(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    /* Gone from the store: nothing of it may stay in the front door, but a
     * server named after it that a successor took over is the successor's. */
    serr_clear(e);
    fleet_forget(c->fleet, name);
    hc_reset(name);
    server_use u = {.server = name};
    if (traffic_enabled(c->tr) && store_list(c->st, "Stamp", NULL, uses_server, &u, e) != 0) {
        /* Not knowing, keep the server: the next resync decides. */
        log_warnx("front door: %s gone, checking its successors: %s", name, e->msg);
        serr_clear(e);
        *requeue_ms = 1000;
        return 0;
    }
    if (u.used) return 0;
    if (traffic_enabled(c->tr) && traffic_set(c->tr, name, NULL, TR_ABSENT, e) != 0) {
        *requeue_ms = 1000;
        log_warnx("front door: removing %s: %s", name, e->msg);
        serr_clear(e);
    } else {
        traffic_forget(c->tr, name);
    }
    return 0;
}

/* A spec the controller cannot act on (template or intent): a configuration
 * error, said in status; the engine marks the stamp Stalled and retries
 * nothing until the spec changes. */
static int bad_spec(sctx *s, const char *what, serr *e) {
    serr_wrap(e, "%s", what);
    sc_set_str(s, s->r.status, "lastError", e->msg);
    serr se = {0};
    int src = sc_save(s, &se);
    if (src) return serr_set(e, src, "%s", se.msg);
    return SE_INVAL;
}

static int reconcile(sctx *s, serr *e) {
    int rc;
    stamp_dir(s->c, s->name, NULL, s->dir, sizeof(s->dir));
    s->phase = phase_of(&stamp_fsm, &s->r);
    if (s->phase < 0) {
        phase_init(&stamp_fsm, &s->r, SP_CREATING);
        s->phase = SP_CREATING;
        s->dirty = true;
    }
    if (stamp_intent_parse(s->r.spec, &s->in, e)) return bad_spec(s, "spec", e);
    if (sc_parse(s, e)) return bad_spec(s, "template", e);
    /* A stamp its health recovery drained into standby stays there though
     * the spec says active, until an operator activates it again. */
    json_t *hold = json_object_get(s->r.status, "recoveryHold");
    if (json_is_object(hold) && s->in.desired == SD_ACTIVE) {
        if (s->in.activations > jint(hold, "activations", 0)) {
            json_object_del(s->r.status, "recoveryHold");
            s->dirty = true;
        } else {
            s->in.desired = SD_STANDBY;
        }
    }
    if ((rc = sc_pending_backup(s, e))) return rc;
    bool taken;
    if ((rc = timeout_edge(s, &taken, e)) || taken) return rc;
    /* phase_of answers a phase of the table or -1 (handled above). */
    assert(s->phase >= 0 && s->phase < SP_NPHASES && rows[s->phase].reconcile != NULL);
    return rows[s->phase].reconcile(s, e);
}

sctx *sc_load(ctl_ctx *c, const char *name, int *rc, serr *e) {
    sctx *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        *rc = serr_set(e, SE_NOMEM, "out of memory");
        return NULL;
    }
    s->c = c;
    s->requeue = -1;
    str_copy(s->name, sizeof(s->name), name);
    resource_init(&s->r);
    *rc = store_get(c->st, "Stamp", name, &s->r, e);
    return s;
}

void sc_free(sctx *s) {
    if (s == NULL) return;
    resource_free(&s->r);
    free(s);
}

int stamp_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    *requeue_ms = -1;
    int rc;
    sctx *s = sc_load(c, name, &rc, e);
    if (s == NULL) return rc;
    if (rc == SE_NOTFOUND) rc = gone(c, name, requeue_ms, e);
    else if (rc == 0) {
        rc = reconcile(s, e);
        if (rc == 0) rc = sc_save(s, e);
        *requeue_ms = s->requeue;
    }
    sc_free(s);
    return rc;
}

int stamp_dir(const ctl_ctx *c, const char *name, const char *sub, char *buf, size_t len) {
    int n = sub ? snprintf(buf, len, "%s/stamps/%s/%s", c->data_dir, name, sub)
                : snprintf(buf, len, "%s/stamps/%s", c->data_dir, name);
    return n < 0 || n >= (int)len ? SE_INVAL : 0;
}

void stamp_metrics_register(void) {
    metrics_register("stamp_transitions_total", MT_COUNTER, "Total number of stamp transitions");
    metrics_register("stamp_state_duration", MT_HISTOGRAM, "Time spent in each state (seconds)");
    metrics_register("stamp_creation_duration", MT_HISTOGRAM,
                     "Time from Creating to Active (seconds)");
    metrics_register("stamp_drain_duration", MT_HISTOGRAM, "Time from Active to Ready (seconds)");
    metrics_register("stamp_activation_duration", MT_HISTOGRAM,
                     "Time from Ready to Active (seconds)");
    metrics_register("stamp_drain_dropped_total", MT_COUNTER,
                     "Connections and jobs dropped by forced drains");
    metrics_register("stamp_replica_restarts_total", MT_COUNTER,
                     "Workload replicas restarted by the supervisor");
    metrics_register("stamp_health_check_failures_total", MT_COUNTER,
                     "Failed health check runs, by stamp and check");
    metrics_register("stamp_unhealthy_total", MT_COUNTER,
                     "Active stamps taken out of rotation by their health checks");
    metrics_register("stamp_recoveries_total", MT_COUNTER, "Recovery actions, by action");
    metrics_register("stamp_updates_total", MT_COUNTER, "Application updates started");
    metrics_register("stamp_update_failures_total", MT_COUNTER,
                     "Application updates that failed (and rolled back)");
    metrics_register("stamp_update_replicas_replaced_total", MT_COUNTER,
                     "Replicas replaced by application updates");
    metrics_register("stamp_health_alerts_total", MT_COUNTER,
                     "Health alerts (alert action, recovery exhausted, all stamps unhealthy)");
}
