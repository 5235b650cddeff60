/*
 * upgrade.c - the Upgrading phase (seed 003): a version change, as an
 * operator does it with `helm upgrade` and `helm rollback`, but with the
 * data kept:
 *
 *   backup    the current state of every component whose version changes
 *             (its config dir, and its data: a Prometheus TSDB snapshot
 *             taken live, or the stopped component's files), under
 *             <platform>/backups/upgrade-<generation>, renamed from
 *             ".partial" only once complete;
 *   upgrade   one component at a time, in install order: the old unit is
 *             stopped, the new version started on the same port and data,
 *             and it must be ready (within update-replica-timeout) before
 *             the next one starts; progress is in status.upgrade;
 *   rollback  on an error: every component the upgrade touched, in
 *             reverse order, is stopped, its config and data restored from
 *             the backup, and its old version started and waited for; then
 *             Failed ("Upgrade Error") says what failed and that the old
 *             versions serve again.  A failed upgrade is not retried on
 *             its own: the platform waits for a change of the spec.
 *
 * status.upgrade = {generation, from: {comp: ver}, to: {comp: ver},
 *   order: [comp...], step: backup | upgrade | rollback | done,
 *   done: [comp...], restored: [comp...], rolledBack: [comp...],
 *   failed: {component, error}, backup, startedAt, result}
 * Each step is recorded before its job runs and after it ends, so a kill
 * -9 of stampd resumes where it was; jobs are check-then-act (unit.c).
 */
#include <stdio.h>
#include <string.h>

#include "obs/internal.h"
#include "reconcile/jobs.h"
#include "reconcile/phase.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"
#include "util/wallclock.h"

static json_t *cfind(obs_ctx *x, const char *comp) {
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(x->r.status, "components"), i, c) if (strcmp(jstr(c, "name", ""), comp) == 0) return c;
    return NULL;
}

static bool in_list(const json_t *arr, const char *s) {
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) return true;
    return false;
}

bool obs_upgrade_wanted(obs_ctx *x) {
    for (int k = 0; k < x->sp.n; k++) {
        const obs_comp_spec *cs = &x->sp.c[k];
        json_t *st = cfind(x, cs->name);
        const char *v = jstr(st, "version", NULL);
        if (cs->enabled && v && strcmp(v, cs->version) != 0) return true;
    }
    return false;
}

static json_t *begin(obs_ctx *x) {
    json_t *u = json_pack("{s:I,s:{},s:{},s:[],s:s,s:[],s:[],s:[],s:I}", "generation", (json_int_t)x->r.generation,
                          "from", "to", "order", "step", "backup", "done", "restored", "rolledBack", "startedMs",
                          (json_int_t)now_ms());
    char what[400];
    size_t n = 0;
    what[0] = '\0';
    for (int k = 0; k < x->sp.n; k++) {
        const obs_comp_spec *cs = &x->sp.c[k];
        json_t *st = cfind(x, cs->name);
        const char *v = jstr(st, "version", NULL);
        if (!cs->enabled || v == NULL || strcmp(v, cs->version) == 0) continue;
        json_object_set_new(json_object_get(u, "from"), cs->name, json_string(v));
        json_object_set_new(json_object_get(u, "to"), cs->name, json_string(cs->version));
        json_array_append_new(json_object_get(u, "order"), json_string(cs->name));
        n += str_fmt_cut(what + n, sizeof(what) - n, "%s%s %s -> %s", n ? ", " : "", cs->name, v, cs->version);
    }
    json_object_set_new(u, "summary", json_string(what));
    return u;
}

static int backup_step(obs_ctx *x, json_t *u, serr *e) {
    obs_job *j = obs_job_new(OJ_BACKUP, x->c);
    if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    snprintf(j->dir, sizeof(j->dir), "%s/backups/upgrade-%lld", x->dir,
             (long long)json_integer_value(json_object_get(u, "generation")));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(u, "order"), i, c) {
        int k = obs_comp_index(x, json_string_value(c));
        const char *from = jstr(json_object_get(u, "from"), json_string_value(c), "");
        if (k < 0 || obs_plan_make(x, &x->sp.c[k], from, &j->p[j->n], e) != 0) {
            obs_job_free(j);
            return EN_FAILED;
        }
        j->n++;
    }
    int state;
    json_t *res = NULL;
    int rc = obs_work(x, "backup", "all", j, &state, &res, e);
    if (rc == SE_NOMEM || rc == SE_LIMIT) return rc;
    if (rc) return EN_FAILED;
    if (state != JOB_DONE) {
        obs_requeue(x, 1000);
        return EN_WAIT;
    }
    obs_sset(x, u, "backup", json_string(jstr(res, "dir", "")));
    obs_event(x, "Normal", "BackupTaken", "the state of %s backed up to %s before the upgrade",
              jstr(u, "summary", ""), jstr(res, "dir", ""));
    json_decref(res);
    return EN_DONE;
}

/* The components the rollback puts back, in reverse install order: those
 * upgraded, the one that failed, and any the backup stopped. */
static bool touched(obs_ctx *x, json_t *u, const char *comp) {
    if (in_list(json_object_get(u, "done"), comp)) return true;
    if (strcmp(jstr(json_object_get(u, "failed"), "component", ""), comp) == 0) return true;
    int k = obs_comp_index(x, comp);
    const obs_cat_comp *cc = k >= 0 && x->cat ? obs_catalog_comp(x->cat, comp) : NULL;
    const obs_cat_version *cv = cc ? obs_catalog_version(cc, jstr(json_object_get(u, "from"), comp, "")) : NULL;
    return cv && cc->stores_data && strcmp(cv->backup, "stop-copy") == 0;
}

static int to_failed(obs_ctx *x, json_t *u, const char *msg, serr *e) {
    json_t *rt = obs_sobj(x, "retry");
    obs_sset(x, rt, "category", json_string(CAT_COMPONENT));
    obs_sset(x, rt, "lastError", json_string(msg));
    obs_sset(x, rt, "failedGeneration", json_integer(x->r.generation));
    obs_sset(x, rt, "failedMs", json_integer(wall_stamp_ms()));
    obs_sset(x, rt, "waitForSpec", json_true());
    obs_sset(x, u, "step", json_string("done"));
    obs_sset(x, u, "result", json_string("RolledBack"));
    char labels[64];
    snprintf(labels, sizeof(labels), "category=\"%s\"", CAT_COMPONENT);
    metrics_inc("observability_platform_errors_total", labels, 1);
    return obs_phase(x, OP_FAILED, "UpgradeError", msg, e);
}

/* Long: the rollback's two sub-steps per component (restore, then start
 * the old version) with their bookkeeping. */
static int rollback_step(obs_ctx *x, json_t *u, serr *e) {
    json_t *order = json_object_get(u, "order");
    for (ssize_t i = (ssize_t)json_array_size(order) - 1; i >= 0; i--) {
        const char *comp = json_string_value(json_array_get(order, (size_t)i));
        if (!touched(x, u, comp) || in_list(json_object_get(u, "rolledBack"), comp)) continue;
        int k = obs_comp_index(x, comp);
        const char *from = jstr(json_object_get(u, "from"), comp, "");
        if (k < 0) continue;
        if (!in_list(json_object_get(u, "restored"), comp)) {
            obs_job *j = obs_job_new(OJ_RESTORE, x->c);
            if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
            str_copy(j->dir, sizeof(j->dir), jstr(u, "backup", ""));
            if (obs_plan_make(x, &x->sp.c[k], from, &j->p[0], e) != 0) {
                obs_job_free(j);
                return EN_FAILED;
            }
            int state;
            json_t *res = NULL;
            int rc = obs_work(x, "restore", comp, j, &state, &res, e);
            json_decref(res);
            if (rc == SE_NOMEM || rc == SE_LIMIT) return rc;
            if (rc) return EN_FAILED;
            if (state != JOB_DONE) {
                obs_requeue(x, 1000);
                return EN_WAIT;
            }
            json_array_append_new(json_object_get(u, "restored"), json_string(comp));
            x->dirty = true;
        }
        obs_cstate_set(x, comp, CS_UPGRADING, NULL);
        const char *how = "";
        int rc = obs_ensure(x, k, from, "rollback", true, true, &how, e);
        if (rc != EN_DONE) return rc;
        json_array_append_new(json_object_get(u, "rolledBack"), json_string(comp));
        x->dirty = true;
        obs_event(x, "Normal", "ComponentRolledBack", "%s %s restored from %s and ready again", comp, from,
                  jstr(u, "backup", ""));
        obs_requeue(x, 0);
        return EN_WAIT; /* the next one on the next reconcile: progress saved */
    }
    return EN_DONE;
}

/* Long: the three steps of an upgrade and their outcomes in one place. */
int obs_upgrading(obs_ctx *x, serr *e) {
    json_t *u = json_object_get(x->r.status, "upgrade");
    if (!json_is_object(u) || strcmp(jstr(u, "step", "done"), "done") == 0) {
        u = begin(x);
        json_object_set_new(x->r.status, "upgrade", u);
        x->dirty = true;
        if (json_array_size(json_object_get(u, "order")) == 0) {
            obs_sset(x, u, "step", json_string("done"));
            return obs_phase(x, OP_READY, "Success", "no version to change", e);
        }
        obs_event(x, "Normal", "UpgradeStarted", "%s", jstr(u, "summary", ""));
        for (size_t i = 0; i < json_array_size(json_object_get(u, "order")); i++)
            obs_cstate_set(x, json_string_value(json_array_get(json_object_get(u, "order"), i)), CS_UPGRADING, NULL);
    }
    const char *step = jstr(u, "step", "backup");
    int rc;
    if (strcmp(step, "backup") == 0) {
        rc = backup_step(x, u, e);
        if (rc < 0) return rc;
        if (rc == EN_WAIT) return 0;
        if (rc == EN_FAILED) {
            char msg[SERR_MSG_MAX];
            str_fmt_cut(msg, sizeof(msg), "the backup before the upgrade failed, nothing was upgraded: %s", e->msg);
            serr_clear(e);
            obs_event(x, "Warning", "UpgradeFailed", "%s", msg);
            json_object_set_new(u, "failed", json_pack("{s:s,s:s}", "component", "", "error", msg));
            obs_sset(x, u, "step", json_string("done"));
            obs_sset(x, u, "result", json_string("BackupFailed"));
            /* Nothing to roll back: Failed, retried as any component error
             * (a component the backup stopped is started again). */
            return obs_fail(x, CAT_COMPONENT, NULL, "%s", msg);
        }
        obs_sset(x, u, "step", json_string("upgrade"));
        obs_requeue(x, 0);
        return 0;
    }
    if (strcmp(step, "upgrade") == 0) {
        json_t *order = json_object_get(u, "order");
        size_t total = json_array_size(order);
        for (size_t i = 0; i < total; i++) {
            const char *comp = json_string_value(json_array_get(order, i));
            if (in_list(json_object_get(u, "done"), comp)) continue;
            int k = obs_comp_index(x, comp);
            const char *to = jstr(json_object_get(u, "to"), comp, "");
            const char *how = "";
            obs_cstate_set(x, comp, CS_UPGRADING, NULL);
            rc = k < 0 ? serr_set(e, SE_INVAL, "%s is no longer in the spec", comp), EN_FAILED
                       : obs_ensure(x, k, to, "upgrade", true, false, &how, e);
            if (rc < 0) return rc;
            if (rc == EN_WAIT) return 0;
            if (rc == EN_FAILED) {
                char msg[SERR_MSG_MAX];
                str_copy(msg, sizeof(msg), e->msg);
                serr_clear(e);
                json_object_set_new(u, "failed", json_pack("{s:s,s:s}", "component", comp, "error", msg));
                obs_cstate_set(x, comp, CS_FAILED, msg);
                obs_event(x, "Warning", "UpgradeFailed", "%s %s -> %s failed: %s; rolling back to the backup %s",
                          comp, jstr(json_object_get(u, "from"), comp, ""), to, msg, jstr(u, "backup", ""));
                obs_sset(x, u, "step", json_string("rollback"));
                obs_requeue(x, 0);
                return 0;
            }
            json_array_append_new(json_object_get(u, "done"), json_string(comp));
            x->dirty = true;
            obs_event(x, "Normal", "ComponentUpgraded", "%s %s -> %s, ready (%zu of %zu)", comp,
                      jstr(json_object_get(u, "from"), comp, ""), to, json_array_size(json_object_get(u, "done")),
                      total);
            obs_requeue(x, 0);
            return 0;
        }
        obs_sset(x, u, "step", json_string("done"));
        obs_sset(x, u, "result", json_string("Succeeded"));
        obs_record_good(x);
        obs_event(x, "Normal", "UpgradeSucceeded", "%s", jstr(u, "summary", ""));
        return obs_phase(x, OP_READY, "Success", jstr(u, "summary", ""), e);
    }
    if (strcmp(step, "rollback") == 0) {
        rc = rollback_step(x, u, e);
        if (rc < 0) return rc;
        if (rc == EN_WAIT) return 0;
        json_t *f = json_object_get(u, "failed");
        char msg[SERR_MSG_MAX + 200];
        if (rc == EN_FAILED) {
            str_fmt_cut(msg, sizeof(msg), "upgrade failed (%s) and its rollback failed too: %s; the backup is kept in %s",
                     jstr(f, "error", ""), e->msg, jstr(u, "backup", ""));
            serr_clear(e);
            obs_event(x, "Warning", "RollbackFailed", "%s", msg);
        } else {
            str_fmt_cut(msg, sizeof(msg), "upgrade (%s) failed: %s; rolled back to the backup %s: the previous versions "
                     "serve again with their data", jstr(u, "summary", ""), jstr(f, "error", ""), jstr(u, "backup", ""));
            json_object_set_new(u, "rolledBackAt", json_integer(now_ms()));
            obs_event(x, "Warning", "RolledBack", "%s", msg);
        }
        return to_failed(x, u, msg, e);
    }
    return serr_set(e, SE_INVAL, "status.upgrade.step \"%s\" is unknown", step);
}
