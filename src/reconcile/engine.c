/*
 * engine.c - see engine.h.  The kinds are registered into a small table;
 * the error categories are one table below.  A Stalled condition is the
 * only thing the engine writes to a resource, and only to its status.
 */
#include "reconcile/engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "store/store.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

#define ENGINE_MAX_WORKERS 64
#define STALL_WRITE_TRIES 5
#define STALLED_METRIC "stamp_reconcile_stalled_total"

static struct {
    char kind[RES_KIND_MAX];
    reconcile_fn fn;
    bool resync;
} controllers[ENGINE_MAX_KINDS];
static size_t ncontrollers;

/* Seed 003's error categories.  Resource errors (a limit reached) back off
 * like transient ones; components recover on their own (health recovery),
 * outside the engine.  A code not listed is transient. */
enum err_cat { EC_TRANSIENT, EC_CONFLICT, EC_CONFIG };

static const struct {
    int code;
    enum err_cat cat;
    const char *reason; /* the Stalled reason */
} categories[] = {
    {SE_CONFLICT, EC_CONFLICT, NULL},
    {SE_INVAL, EC_CONFIG, "ConfigurationError"},
    {SE_TOOBIG, EC_CONFIG, "ConfigurationError"},
    {SE_PHASE, EC_CONFIG, "IllegalTransition"},
    {SE_UNAUTH, EC_CONFIG, "Unauthorized"},
    {SE_FORBIDDEN, EC_CONFIG, "Forbidden"},
    {SE_METHOD, EC_CONFIG, "ConfigurationError"},
};

static enum err_cat category(int rc, const char **reason) {
    *reason = "RetriesExhausted";
    for (size_t i = 0; i < sizeof(categories) / sizeof(categories[0]); i++) {
        if (categories[i].code != rc) continue;
        if (categories[i].reason) *reason = categories[i].reason;
        return categories[i].cat;
    }
    return EC_TRANSIENT;
}

struct engine {
    ctl_ctx *c;
    int nworkers;
    pthread_t workers[ENGINE_MAX_WORKERS];
};

int engine_register(const char *kind, reconcile_fn fn, bool resync) {
    for (size_t i = 0; i < ncontrollers; i++)
        if (strcmp(controllers[i].kind, kind) == 0) return SE_EXISTS;
    if (ncontrollers == ENGINE_MAX_KINDS || strlen(kind) >= RES_KIND_MAX) return SE_LIMIT;
    str_copy(controllers[ncontrollers].kind, RES_KIND_MAX, kind);
    controllers[ncontrollers].fn = fn;
    controllers[ncontrollers].resync = resync;
    ncontrollers++;
    return 0;
}

void engine_unregister_all(void) { ncontrollers = 0; }

void engine_metrics_register(void) {
    metrics_register(CTL_DROPPED_METRIC, MT_COUNTER,
                     "Keys not queued because the work queue was full");
    metrics_register(STALLED_METRIC, MT_COUNTER,
                     "Resources the engine stopped retrying (Stalled), by kind and reason");
}

/* ---- the Stalled condition ---- */

static json_t *condition(json_t *status, const char *type, bool create) {
    json_t *conds = json_object_get(status, "conditions");
    if (!json_is_array(conds)) {
        if (!create) return NULL;
        conds = json_array();
        json_object_set_new(status, "conditions", conds);
    }
    size_t i;
    json_t *cd;
    json_array_foreach(conds, i, cd) {
        if (strcmp(jstr(cd, "type", ""), type) == 0) return cd;
    }
    if (!create) return NULL;
    cd = json_pack("{s:s}", "type", type);
    json_array_append_new(conds, cd);
    return cd;
}

static bool status_stalled(const json_t *status) {
    json_t *cd = condition((json_t *)status, "Stalled", false);
    return cd && strcmp(jstr(cd, "status", ""), "True") == 0;
}

/* Set Stalled True (with reason and the last error) or False, idempotent:
 * nothing is written when it already says so.  Retries on a conflict,
 * since a controller or the API may write the resource meanwhile. */
static int set_stalled(ctl_ctx *c, const char *kind, const char *name, bool on,
                       const char *reason, const char *msg, serr *e) {
    int rc = 0;
    for (int attempt = 0; attempt < STALL_WRITE_TRIES; attempt++) {
        resource r;
        resource_init(&r);
        rc = store_get(c->st, kind, name, &r, e);
        if (rc) {
            resource_free(&r);
            return rc == SE_NOTFOUND ? 0 : rc;
        }
        bool was = status_stalled(r.status);
        json_t *cd = condition(r.status, "Stalled", on);
        if ((!on && !was) ||
            (on && was && strcmp(jstr(cd, "message", ""), msg) == 0)) {
            resource_free(&r);
            return 0;
        }
        if (on != was) {
            char when[40];
            fmt_time_rfc3339(now_ms(), when, sizeof(when));
            json_object_set_new(cd, "status", json_string(on ? "True" : "False"));
            json_object_set_new(cd, "lastTransitionTime", json_string(when));
        }
        json_object_set_new(cd, "reason", json_string(on ? reason : "Reconciled"));
        json_object_set_new(cd, "message", json_string(on ? msg : ""));
        json_object_set_new(cd, "observedGeneration", json_integer(r.generation));
        char text[SERR_MSG_MAX + 128];
        if (on)
            snprintf(text, sizeof(text),
                     "%s: no more retries with backoff; retried on a change, or at most every "
                     "backoff-max: %s",
                     reason, msg);
        store_event ev = {.type = "Warning", .reason = "Stalled", .message = text};
        store_event ok = {.type = "Normal", .reason = "Unstalled", .message = "reconciled again"};
        rc = store_update(c->st, &r, on ? (was ? NULL : &ev) : &ok, e);
        resource_free(&r);
        if (rc != SE_CONFLICT) return rc;
    }
    return rc;
}

/* ---- the workers ---- */

static void requeue(engine *en, const char *key, int64_t delay_ms) {
    int rc = delay_ms > 0 ? wq_add_after(en->c->q, key, delay_ms) : wq_add(en->c->q, key);
    if (rc == SE_LIMIT) {
        metrics_inc(CTL_DROPPED_METRIC, "", 1);
        log_warnx("reconcile %s: work queue full, not requeued (resync picks it up)", key);
    }
}

static void stall(engine *en, const char *key, const char *kind, const char *name,
                  const char *reason, int failures, const serr *err) {
    ctl_ctx *c = en->c;
    bool was = wq_stalled(c->q, key);
    serr e = {0};
    if (wq_stall(c->q, key, true) != 0 ||
        set_stalled(c, kind, name, true, reason, err->msg, &e) != 0) {
        /* Not recorded: keep retrying, slowly, until it is. */
        wq_stall(c->q, key, false);
        log_warnx("reconcile %s: cannot record Stalled (%s); retry in %lldms", key,
                  e.msg[0] ? e.msg : "queue full", (long long)wq_backoff_max(c->q));
        requeue(en, key, wq_backoff_max(c->q));
        return;
    }
    if (!was) {
        char labels[160];
        snprintf(labels, sizeof(labels), "kind=\"%s\",reason=\"%s\"", kind, reason);
        metrics_inc(STALLED_METRIC, labels, 1);
        log_warnx("reconcile %s stalled after %d failure(s) (%s): %s", key, failures, reason,
                  err->msg);
    }
}

static void handle(engine *en, const char *key) {
    ctl_ctx *c = en->c;
    const char *slash = strchr(key, '/');
    if (slash == NULL) return;
    char kind[RES_KIND_MAX];
    size_t kl = (size_t)(slash - key);
    if (kl >= sizeof(kind)) return;
    memcpy(kind, key, kl);
    kind[kl] = '\0';
    const char *name = slash + 1;
    for (size_t i = 0; i < ncontrollers; i++) {
        if (strcmp(controllers[i].kind, kind) != 0) continue;
        int64_t answer = CTL_DONE;
        serr e = {0};
        int64_t t0 = mono_ms();
        int rc = controllers[i].fn(c, name, &answer, &e);
        log_debug("reconcile %s: rc=%d requeue=%lld in %lldms", key, rc, (long long)answer,
                  (long long)(mono_ms() - t0));
        if (rc == 0 && answer == CTL_BACKOFF) {
            requeue(en, key, wq_backoff_next(c->q, key, NULL));
        } else if (rc == 0) {
            if (wq_stalled(c->q, key)) {
                serr se = {0};
                if (set_stalled(c, kind, name, false, NULL, NULL, &se) == 0) {
                    wq_stall(c->q, key, false);
                    log_info("reconcile %s: no longer stalled", key);
                } else {
                    log_warnx("reconcile %s: cannot clear Stalled: %s", key, se.msg);
                }
            }
            wq_forget(c->q, key);
            if (answer >= 0) requeue(en, key, answer);
        } else if (rc == SE_FENCED) {
            /* Another replica leads now: nothing of this one's is written. */
            log_warnx("reconcile %s: %s", key, e.msg);
            cluster_fenced(store_fence_get());
        } else {
            const char *reason;
            enum err_cat cat = category(rc, &reason);
            if (cat == EC_CONFLICT) {
                requeue(en, key, 0);
                return;
            }
            int failures = 0;
            int64_t delay = wq_backoff_next(c->q, key, &failures);
            int64_t limit = c->cfg ? c->cfg->backoff_retries : 0;
            if (cat == EC_CONFIG || (limit > 0 && failures >= limit)) {
                stall(en, key, kind, name, reason, failures, &e);
                return;
            }
            log_warnx("reconcile %s failed (%d in a row), retry in %lldms: %s", key, failures,
                      (long long)delay, e.msg);
            requeue(en, key, delay);
        }
        return;
    }
    log_warnx("reconcile %s: no controller for this kind", key);
}

static void *worker(void *arg) {
    engine *en = arg;
    char key[WQ_KEY_MAX];
    for (;;) {
        int rc = wq_get(en->c->q, key, sizeof(key), -1);
        if (rc == SE_UNAVAIL) break;
        if (rc != 0) continue;
        /* A follower's queue is drained, not run: the leader resyncs what
         * it takes over (cluster.h).  The leader's writes carry its epoch. */
        int64_t ep = cluster_epoch();
        if (!cluster_leading() || (cluster_enabled() && ep == 0)) {
            wq_forget(en->c->q, key);
            wq_done(en->c->q, key);
            continue;
        }
        store_fence_set(ep);
        handle(en, key);
        wq_done(en->c->q, key);
    }
    return NULL;
}

/* A stalled resource is woken at most once per backoff-max: a transient
 * outage longer than the retries heals by itself (a Deleting stamp allows
 * no operator action), and nothing hot-loops.  One the engine has no mark
 * for (stampd restarted) is marked, so its success clears the condition,
 * and woken now: a restart is a retry. */
static int enqueue_one(const resource *r, void *arg) {
    ctl_ctx *c = arg;
    char key[WQ_KEY_MAX];
    if (ctl_key(key, sizeof(key), r->kind, r->name) != 0) return 0;
    /* Paced: a key the queue marks stalled (the mark comes before the
     * Stalled status is written, and a read may not see that write yet),
     * or whose status says Stalled (after a restart, the queue knows
     * nothing: it is marked now and run once). */
    int64_t since = wq_stalled_since(c->q, key);
    if (since >= 0 || status_stalled(r->status)) {
        int64_t pace = c->cfg ? c->cfg->backoff_max_ms : wq_backoff_max(c->q);
        if (since >= 0 && mono_ms() - since < pace) return 0;
        if (since < 0) wq_stall(c->q, key, true);
    }
    ctl_wake(c, r->kind, r->name);
    return 0;
}

void engine_resync(engine *en) {
    /* A follower has nothing to resync (the leader does). */
    if (!cluster_leading()) return;
    for (size_t i = 0; i < ncontrollers; i++)
        if (controllers[i].resync)
            store_list(en->c->st, controllers[i].kind, NULL, enqueue_one, en->c, NULL);
}

int engine_start(ctl_ctx *c, int workers, engine **out, serr *e) {
    engine_metrics_register();
    engine *en = calloc(1, sizeof(*en));
    if (en == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    en->c = c;
    if (workers > ENGINE_MAX_WORKERS) workers = ENGINE_MAX_WORKERS;
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&en->workers[i], NULL, worker, en) != 0) {
            wq_shutdown(c->q);
            for (int j = 0; j < en->nworkers; j++) pthread_join(en->workers[j], NULL);
            free(en);
            return serr_set(e, SE_INTERNAL, "cannot start reconcile workers");
        }
        en->nworkers++;
    }
    *out = en;
    engine_resync(en);
    return 0;
}

void engine_stop(engine *en) {
    if (en == NULL) return;
    wq_shutdown(en->c->q);
    for (int i = 0; i < en->nworkers; i++) pthread_join(en->workers[i], NULL);
    free(en);
}
