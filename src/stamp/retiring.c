/*
 * retiring.c - Deleting: the retirement steps, in order, through the step
 * runner (reconcile/steps.h): backup, quarantine, decommission, archive,
 * purge.  Nothing is purged before the archive is written and verified.
 * Deleted: the archive is kept for archive-retention, then the archive,
 * the backups and the record go.
 */
#include <stdio.h>
#include <string.h>

#include "core/naming.h"
#include "reconcile/queue.h"
#include "reconcile/steps.h"
#include "stamp/internal.h"
#include "util/log.h"
#include "util/util.h"

static int step_backup(void *ctx, json_t *rt, int *out, const char **redo, serr *e) {
    sctx *s = ctx;
    /* A partial copy a crash left behind is removed by the job of its own
     * id; others go with the stamp's backups at the end of retention. */
    int state;
    int rc = sc_backup(s, rt, "retire", &state, e);
    *out = state == JOB_DONE ? STEP_NEXT : STEP_WAIT;
    return rc;
}

static int step_quarantine(void *ctx, json_t *rt, int *out, const char **redo, serr *e) {
    sctx *s = ctx;
    char dir[PATH_MAX];
    int rc;
    if ((rc = str_fmt(dir, sizeof(dir), e, "path", "%s/quarantine", s->dir)) || (rc = mkdir_p(dir, 0750, e)))
        return rc;
    /* Out of rotation (the traffic driver), logs and metrics kept: take a
     * last scrape of every replica that still answers. */
    fleet_forget(s->c->fleet, s->name);
    sc_frontdoor(s, TR_MAINT);
    int state;
    if ((rc = sc_snapshot_metrics(s, rt, dir, &state, e))) return rc;
    *out = state == JOB_DONE ? STEP_NEXT : STEP_WAIT;
    if (state == JOB_DONE)
        sc_event(s, "Normal", "Quarantined", "out of rotation; logs and metrics kept");
    return 0;
}

/* The create command of step i may have run: recorded in createdSteps, or
 * (for a stamp recorded before createdSteps existed) in its progress. */
static bool create_ran(sctx *s, int i) {
    if (json_is_string(json_object_get(json_object_get(s->r.status, "createdSteps"), s->t.steps[i].name)))
        return true;
    json_t *prog = json_array_get(json_object_get(s->r.status, "steps"), (size_t)i);
    return jint(prog, "runs", 0) > 0 || strcmp(jstr(prog, "state", "Pending"), "Pending") != 0;
}

/* One template step, last first: stop its replicas, or run its delete
 * command (only if its create command may have run).  *waiting while a
 * command runs or must be retried. */
static int decommission_step(sctx *s, int i, json_t *prog, bool *waiting, serr *e) {
    const tpl_step *st = &s->t.steps[i];
    int rc;
    *waiting = false;
    if (st->kind == TK_PROCESS) {
        int alive, started;
        if ((rc = sc_ensure_step(s, st, 0, &alive, &started, e))) return rc;
        json_object_set_new(prog, "state", json_string("Done"));
        s->dirty = true;
        sc_event(s, "Normal", "Decommissioned", "step %s: workloads stopped, volumes kept", st->name);
        return 0;
    }
    if (st->del == NULL || !create_ran(s, i)) {
        json_object_set_new(prog, "state", json_string("Done"));
        if (st->del) {
            json_object_set_new(prog, "skipped", json_string("its create command never ran"));
            sc_event(s, "Normal", "Decommissioned",
                     "step %s: create command never ran; delete command not run", st->name);
        }
        s->dirty = true;
        return 0;
    }
    int result;
    if ((rc = sc_exec_follow(s, st, st->del, "delete", prog, &result, e))) return rc;
    if (result == RUN_RUNNING) {
        *waiting = true;
        return 0;
    }
    if (result == RUN_FAILED) {
        /* Run again with backoff, for ever: resources it should remove may
         * still exist, so nothing after it runs.  Not an error for the
         * engine: a Deleting stamp allows no operator action, so a Stalled
         * one could only be restarted by restarting stampd.  The delay is
         * the queue's backoff of the step's runs, which status counts. */
        json_object_set_new(prog, "state", json_string("Pending"));
        s->dirty = true;
        sc_event(s, "Warning", "DecommissionFailed", "step %s: %s; retrying", st->name,
                 jstr(prog, "message", "failed"));
        sc_want(s, wq_backoff_delay(s->c->q, (int)jint(prog, "runs", 1)));
        *waiting = true;
        return 0;
    }
    sc_event(s, "Normal", "Decommissioned", "step %s: delete command succeeded", st->name);
    return 0;
}

static int step_decommission(void *ctx, json_t *rt, int *out, const char **redo, serr *e) {
    sctx *s = ctx;
    json_t *dc = jchild(rt, "decommission");
    int rc, left;
    *out = STEP_WAIT;
    /* Create commands still running (a deployment cancelled mid-step) stop
     * before any delete command runs. */
    if ((rc = sc_stop_units(s, "x/", true, &left, e))) return rc;
    if (left > 0) return 0; /* woken when they are gone */
    for (int i = s->t.nsteps - 1; i >= 0; i--) {
        json_t *prog = jchild(dc, s->t.steps[i].name);
        if (strcmp(jstr(prog, "state", ""), "Done") == 0) continue;
        bool waiting;
        if ((rc = decommission_step(s, i, prog, &waiting, e))) return rc;
        if (waiting) return sc_save(s, e);
    }
    /* A process could only be left if something restarted it: stop it,
     * and look again. */
    if ((rc = sc_stop_units(s, "", false, &left, e))) return rc;
    if (left > 0) return 0; /* stops queued; woken when they end */
    *out = STEP_NEXT;
    return 0;
}

static int step_archive(void *ctx, json_t *rt, int *out, const char **redo, serr *e) {
    int state;
    int rc = sc_archive(ctx, rt, &state, e);
    *out = state == JOB_DONE ? STEP_NEXT : STEP_WAIT;
    return rc;
}

static int step_purge(void *ctx, json_t *rt, int *out, const char **redo, serr *e) {
    sctx *s = ctx;
    /* Only with a verified archive on disk. */
    const char *ap = jstr(json_object_get(rt, "archive"), "path", NULL);
    char mp[PATH_MAX];
    snprintf(mp, sizeof(mp), "%s/manifest.json", ap ? ap : "/nonexistent");
    if (ap == NULL || !path_exists(mp)) {
        *out = STEP_REDO;
        *redo = stamp_retire_steps[SR_ARCHIVE];
        return 0;
    }
    int rc;
    if (traffic_enabled(s->c->tr) && sc_frontdoor_owner(s)) {
        /* Off the front door before the port can go to another stamp (a
         * server a successor took over is the successor's). */
        const char *ep = jstr(s->r.status, "endpoint", NULL);
        if ((rc = traffic_set(s->c->tr, s->server, ep, TR_ABSENT, e))) return serr_wrap(e, "front door");
    }
    if ((rc = remove_tree(s->dir, e))) return rc;
    char owner[RES_NAME_MAX + 80];
    for (int i = 0; i < s->t.nsteps; i++) {
        snprintf(owner, sizeof(owner), "%s/%s", s->name, s->t.steps[i].name);
        store_ports_release(s->c->st, owner, NULL);
    }
    sc_event(s, "Normal", "Purged", "volumes, logs and ports released");
    *out = STEP_NEXT;
    return 0;
}

static int persist(void *ctx, serr *e) {
    sctx *s = ctx;
    s->dirty = true;
    return sc_save(s, e);
}

static const step_def retire_steps[SR_NSTEPS] = {
    [SR_BACKUP] = {"backup", step_backup},
    [SR_QUARANTINE] = {"quarantine", step_quarantine},
    [SR_DECOMMISSION] = {"decommission", step_decommission},
    [SR_ARCHIVE] = {"archive", step_archive},
    [SR_PURGE] = {"purge", step_purge},
};

static const step_seq retirement = {
    .what = "retirement", .steps = retire_steps, .n = SR_NSTEPS, .persist = persist};

int sc_deleting(sctx *s, serr *e) {
    json_t *rt = jchild(s->r.status, "retire");
    bool complete;
    int rc = steps_run(&retirement, rt, s, &complete, e);
    if (rc || !complete) return rc;
    return sc_change(s, SP_DELETED, "RetirementComplete",
                     "backup, quarantine, decommission, archive, purge", e);
}

/* Entering Deleted: nothing of a server that is gone. */
void sc_enter_deleted(sctx *s, int from) {
    (void)from;
    json_t *st = s->r.status;
    json_object_del(st, "health");
    json_object_del(st, "frontdoor");
    json_object_del(st, "endpoint");
    json_t *pools = jchild(st, "pools");
    for (int p = 0; p < POOL_N; p++) json_object_set_new(pools, tpl_pool_names[p], json_integer(0));
}

int sc_deleted(sctx *s, serr *e) {
    if (traffic_enabled(s->c->tr) && sc_frontdoor_owner(s) &&
        traffic_set(s->c->tr, s->server, NULL, TR_ABSENT, NULL) == 0)
        traffic_forget(s->c->tr, s->server);
    hc_reset(s->name);
    int64_t until = jint(json_object_get(jchild(s->r.status, "retire"), "archive"), "retainUntilMs", 0);
    if (until == 0) return 0;
    int64_t left = until - now_ms();
    if (left > 0) {
        sc_want(s, left < 3600000 ? left : 3600000);
        return 0;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/archive/%s", s->c->data_dir, s->name);
    int rc = remove_tree(dir, e);
    if (rc == 0) {
        snprintf(dir, sizeof(dir), "%s/backups/%s", s->c->data_dir, s->name);
        rc = remove_tree(dir, e);
    }
    if (rc == 0) rc = store_delete(s->c->st, "Stamp", s->name, s->r.resource_version, e);
    if (rc == 0) log_info("stamp %s: archive retention passed; archive and record removed", s->name);
    return rc;
}
