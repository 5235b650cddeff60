/*
 * ops.c - the operations that change an Active stamp in place: scale a
 * node pool, update the application.  Each checks the phase table (the
 * refusal quotes what the phase blocks), the template's bounds and change
 * classes, writes the stamp's spec, records the event and wakes the
 * controller (src/stamp/update.c does the work).
 */
#include "stamp/ops.h"

#include <stdio.h>
#include <string.h>

#include "core/template.h"
#include "reconcile/phase.h"
#include "stamp/actions.h"
#include "util/util.h"
#include "util/yamljson.h"

#define UPDATE_RETRIES 8

/* Seed 001's example bounds are 3-5 (system), 3-20 (general), 0-10 (gpu)
 * nodes; a template states its own (pools.<pool>.minReplicas/maxReplicas),
 * else 1 (system) or 0 up to 20. */
static void pool_bounds(json_t *tspec, int pool, int64_t *lo, int64_t *hi) {
    json_t *b = json_object_get(json_object_get(tspec, "pools"), tpl_pool_names[pool]);
    *lo = jint(b, "minReplicas", pool == POOL_SYSTEM ? 1 : 0);
    *hi = jint(b, "maxReplicas", 20);
    if (*hi > TPL_MAX_REPLICAS) *hi = TPL_MAX_REPLICAS;
}

static bool pool_used(json_t *tspec, int pool) {
    tpl *t = malloc(sizeof(*t));
    bool used = false;
    if (t && tpl_parse(tspec, t, NULL) == 0)
        for (int i = 0; i < t->nsteps && !used; i++)
            used = t->steps[i].kind == TK_PROCESS && t->steps[i].pool == pool;
    free(t);
    return used;
}

/* Long: checks (pool, bounds, phase) then one optimistic update loop. */
int stamp_scale(ctl_ctx *c, const stamp_scale_req *q, json_t **answer, int *status, serr *e) {
    int pool = tpl_pool_parse(q->pool);
    if (pool < 0) return serr_set(e, SE_INVAL, "pool: \"%s\" is not one of system, general, gpu", q->pool);
    resource r;
    resource_init(&r);
    int rc = SE_CONFLICT;
    for (int attempt = 0; attempt < UPDATE_RETRIES && rc == SE_CONFLICT; attempt++) {
        resource_free(&r);
        if ((rc = store_get(c->st, "Stamp", q->name, &r, e))) break;
        int phase = phase_of(&stamp_fsm, &r);
        if ((rc = fsm_check_op(&stamp_fsm, q->name, phase, SO_SCALE, e))) break;
        json_t *tspec = json_object_get(r.spec, "templateSpec");
        if (!pool_used(tspec, pool)) {
            rc = serr_set(e, SE_INVAL, "pool %s: the template of stamp %s runs nothing in it", q->pool, q->name);
            break;
        }
        int64_t lo, hi;
        pool_bounds(tspec, pool, &lo, &hi);
        if (q->replicas < lo || q->replicas > hi) {
            rc = serr_set(e, SE_INVAL, "replicas: %lld is outside pool %s's bounds %lld-%lld (template %s)",
                          (long long)q->replicas, q->pool, (long long)lo, (long long)hi,
                          jstr(r.spec, "template", "?"));
            break;
        }
        json_t *pools = json_object_get(r.spec, "pools");
        if (!json_is_object(pools)) {
            pools = json_object();
            json_object_set_new(r.spec, "pools", pools);
        }
        json_object_set_new(pools, q->pool, json_integer(q->replicas));
        if (q->dry_run) {
            *status = 200;
            *answer = stamp_dry_answer("scale", resource_to_json(&r), "Active", "Active");
            break;
        }
        char msg[256]; /* an event message, for people: a cut is harmless */
        str_fmt_cut(msg, sizeof(msg), "pool %s to %lld replica(s), requested by %s", q->pool,
                    (long long)q->replicas, q->user);
        store_event ev = {.type = "Normal", .reason = "ScaleRequested", .message = msg};
        if ((rc = store_update(c->st, &r, &ev, e)) == 0) {
            ctl_enqueue(c, "Stamp", q->name);
            *status = 202;
            *answer = resource_to_json(&r);
        }
    }
    resource_free(&r);
    return rc;
}

