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
#include "core/tpl_change.h"
#include "reconcile/phase.h"
#include "stamp/actions.h"
#include "stamp/revisions.h"
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

/* The new parameters: the stamp's with q->set over them (a null value
 * removes one). */
static json_t *merged_params(json_t *now, json_t *set) {
    json_t *p = json_is_object(now) ? json_deep_copy(now) : json_object();
    const char *k;
    json_t *v;
    json_object_foreach(set, k, v) {
        if (json_is_null(v)) json_object_del(p, k);
        else json_object_set(p, k, v);
    }
    return p;
}

/* Long: the update's checks (phase, update under way, infrastructure
 * changes) then one optimistic update loop. */
int stamp_update(ctl_ctx *c, const stamp_update_req *q, json_t **answer, int *status, serr *e) {
    resource r;
    resource_init(&r);
    json_t *nspec = NULL, *nparams = NULL;
    int64_t nrev = 0;
    int rc = SE_CONFLICT;
    for (int attempt = 0; attempt < UPDATE_RETRIES && rc == SE_CONFLICT; attempt++) {
        resource_free(&r);
        json_decref(nspec);
        json_decref(nparams);
        nspec = nparams = NULL;
        if ((rc = store_get(c->st, "Stamp", q->name, &r, e))) break;
        int phase = phase_of(&stamp_fsm, &r);
        if ((rc = fsm_check_op(&stamp_fsm, q->name, phase, SO_UPDATE, e))) break;
        json_t *upd = json_object_get(r.status, "update");
        const char *uph = jstr(upd, "phase", "");
        if (strcmp(uph, "Progressing") == 0 || strcmp(uph, "RollingBack") == 0 ||
            jint(r.spec, "updateGeneration", 0) > jint(upd, "generation", 0)) {
            rc = serr_set(e, SE_CONFLICT, "stamp %s: update %lld is still %s (%lld replica(s) replaced); "
                          "wait for it (stampctl describe stamp %s)", q->name,
                          (long long)jint(r.spec, "updateGeneration", 0), uph[0] ? uph : "starting",
                          (long long)jint(upd, "replaced", 0), q->name);
            break;
        }
        /* What runs now is the base: after a rollback, the spec that ran
         * before it, not the one that failed. */
        json_t *base = r.spec, *applied = json_object_get(r.status, "applied");
        if (json_is_object(applied) && jint(upd, "generation", -1) == jint(r.spec, "updateGeneration", 0) &&
            (strcmp(uph, "RolledBack") == 0 || strcmp(uph, "Failed") == 0))
            base = applied;
        json_t *ospec = json_object_get(base, "templateSpec");
        json_t *oparams = json_object_get(base, "parameters");
        if (json_is_null(oparams)) oparams = NULL;
        nrev = jint(base, "templateRevision", 0);
        if (q->revision != 0 || q->latest) {
            rc = stamp_template_revision(c, jstr(r.spec, "template", ""), q->latest ? 0 : q->revision,
                                         &nspec, &nrev, e);
            if (rc) break;
        } else {
            nspec = json_incref(ospec);
        }
        nparams = merged_params(oparams, q->set);
        if (json_object_size(nparams) > 32) {
            /* As deploy: every parameter reaches a command's environment. */
            rc = serr_set(e, SE_INVAL, "parameters: %zu after the update, at most 32", json_object_size(nparams));
            break;
        }
        tpl_change ch;
        if ((rc = tpl_change_classify(ospec, oparams, nspec, nparams, &ch, e))) break;
        if (ch.infra) {
            fsm_check_op(&stamp_fsm, q->name, phase, SO_INFRA, e);
            char head[512];
            str_copy(head, sizeof(head), e->msg);
            rc = serr_set(e, SE_PHASE, "%s: %s; deploy a new stamp with it (stampctl rollout --template %s "
                          "--to-revision %lld replaces stamps one by one)", head, ch.what,
                          jstr(r.spec, "template", "?"), (long long)nrev);
            break;
        }
        if (json_equal(ospec, nspec) && json_equal(oparams ? oparams : json_object(), nparams)) {
            *status = 200;
            *answer = json_pack("{s:s,s:o}", "result", "unchanged", "stamp", resource_to_json(&r));
            rc = 0;
            break;
        }
        json_object_set(r.spec, "templateSpec", nspec);
        json_object_set(r.spec, "parameters", nparams);
        json_object_set_new(r.spec, "templateRevision", json_integer(nrev));
        json_object_set_new(r.spec, "updateGeneration", json_integer(jint(r.spec, "updateGeneration", 0) + 1));
        if (q->dry_run) {
            *status = 200;
            *answer = stamp_dry_answer("update", resource_to_json(&r), "Active", "Active");
            break;
        }
        char msg[256]; /* an event message, for people: a cut is harmless */
        str_fmt_cut(msg, sizeof(msg), "application update %lld to revision %lld requested by %s",
                    (long long)jint(r.spec, "updateGeneration", 0), (long long)nrev, q->user);
        store_event ev = {.type = "Normal", .reason = "UpdateRequested", .message = msg};
        if ((rc = store_update(c->st, &r, &ev, e)) == 0) {
            ctl_enqueue(c, "Stamp", q->name);
            *status = 202;
            *answer = resource_to_json(&r);
        }
    }
    json_decref(nspec);
    json_decref(nparams);
    resource_free(&r);
    return rc;
}
