/*
 * engine.c - see engine.h.  The kinds and their controllers are a table.
 */
#include "reconcile/engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ns/ns.h"
#include "reconcile/stamp_ctl.h"
#include "util/log.h"
#include "util/util.h"

#define ENGINE_MAX_WORKERS 64

/* resync: enqueued by the periodic resync.  Namespaces are not: there may
 * be 100k of them, and the reaper's sweep reads only those that are due. */
static const struct {
    const char *kind;
    reconcile_fn fn;
    bool resync;
} controllers[] = {
    {"Stamp", stamp_reconcile, true},
    {"Namespace", ns_reconcile, false},
};

#define NCONTROLLERS (sizeof(controllers) / sizeof(controllers[0]))

struct engine {
    ctl_ctx *c;
    int nworkers;
    pthread_t workers[ENGINE_MAX_WORKERS];
};

static void handle(engine *en, const char *key) {
    const char *slash = strchr(key, '/');
    if (slash == NULL) return;
    for (size_t i = 0; i < NCONTROLLERS; i++) {
        size_t kl = strlen(controllers[i].kind);
        if ((size_t)(slash - key) != kl || strncmp(key, controllers[i].kind, kl) != 0) continue;
        int64_t requeue = -1;
        serr e = {0};
        int64_t t0 = mono_ms();
        int rc = controllers[i].fn(en->c, slash + 1, &requeue, &e);
        log_debug("reconcile %s: rc=%d requeue=%lld in %lldms", key, rc, (long long)requeue,
                  (long long)(mono_ms() - t0));
        if (rc == SE_CONFLICT) {
            wq_add(en->c->q, key);
        } else if (rc != 0) {
            int failures = 0;
            int64_t delay = wq_backoff_next(en->c->q, key, &failures);
            log_warnx("reconcile %s failed (%d in a row), retry in %lldms: %s", key, failures,
                      (long long)delay, e.msg);
            wq_add_after(en->c->q, key, delay);
        } else if (requeue >= 0) {
            wq_add_after(en->c->q, key, requeue);
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
        handle(en, key);
        wq_done(en->c->q, key);
    }
    return NULL;
}

static int enqueue_one(const resource *r, void *arg) {
    ctl_ctx *c = arg;
    ctl_enqueue(c, r->kind, r->name);
    return 0;
}

void engine_resync(engine *en) {
    for (size_t i = 0; i < NCONTROLLERS; i++)
        if (controllers[i].resync)
            store_list(en->c->st, controllers[i].kind, NULL, enqueue_one, en->c, NULL);
}

int engine_start(ctl_ctx *c, int workers, engine **out, serr *e) {
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
