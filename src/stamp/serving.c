/*
 * serving.c - the phases in which a stamp serves or stands by to serve:
 * Active (health checks, rotation in the front door, recovery) and Ready
 * (warm standby, activation).  Decisions: decide_active, decide_ready.
 */
#include <stdio.h>
#include <string.h>

#include "stamp/internal.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/wallclock.h"

/* Entering Active from Creating or Ready: in rotation, healthy, a fresh
 * recovery count; a stamp back from a cancelled drain keeps its health. */
void sc_enter_active(sctx *s, int from) {
    json_t *st = s->r.status;
    if (from == SP_DRAINING) {
        json_object_set_new(jchild(st, "drain"), "cancelledMs", json_integer(now_ms()));
        return;
    }
    if (from == SP_READY) json_object_del(st, "drain");
    json_object_del(st, "recoveryHold");
    json_object_set_new(st, "activeSinceMs", json_integer(now_ms()));
    json_object_set_new(st, "health", json_pack("{s:s,s:b,s:b,s:i}", "source",
                                                s->checks_loaded ? s->checks.source : "default",
                                                "healthy", 1, "inRotation", 1, "recoveries", 0));
}

/* Rotation changes and the all-unhealthy flag, as events. */
static void note_rotation(sctx *s, json_t *hs, bool serve, bool now_in, const char *reason) {
    bool was_in = sc_jbool(hs, "inRotation");
    if (was_in != now_in) {
        json_object_set_new(hs, "inRotation", json_boolean(now_in));
        s->dirty = true;
        if (now_in) sc_event(s, "Normal", "BackInRotation", "health checks pass again");
        else {
            metrics_inc("stamp_unhealthy_total", "", 1);
            sc_event(s, "Warning", "OutOfRotation", "%s", reason);
        }
    }
    if (!serve && now_in && !sc_jbool(hs, "allUnhealthy")) {
        json_object_set_new(hs, "allUnhealthy", json_true());
        s->dirty = true;
        metrics_inc("stamp_health_alerts_total", "", 1);
        sc_event(s, "Warning", "FleetAllUnhealthy",
                 "no Active stamp is healthy; policy %s keeps this one in rotation (%s)",
                 s->c->cfg->all_unhealthy_policy, reason);
    } else if ((serve || !now_in) && sc_jbool(hs, "allUnhealthy")) {
        json_object_del(hs, "allUnhealthy");
        s->dirty = true;
    }
}

/* A recovery that worked, and ten intervals healthy after one (the count
 * starts again). */
static void note_recovered(sctx *s, json_t *hs, bool serve, bool all_passing) {
    json_t *rec = json_object_get(hs, "recovery");
    if (serve && json_is_object(rec) && all_passing) {
        sc_event(s, "Normal", "Recovered", "%s: every check passes (recovery %lld of %d)",
                 hc_action_names[s->checks.action], (long long)jint(hs, "recoveries", 0),
                 s->checks.max_retries);
        json_object_del(hs, "recovery");
        json_object_set_new(hs, "healthySinceMs", json_integer(wall_stamp_ms()));
        s->dirty = true;
        return;
    }
    if (serve && !json_is_object(rec) && jint(hs, "recoveries", 0) > 0 &&
        wall_age_ms(jint(hs, "healthySinceMs", 0)) >= 10 * sc_longest_interval(s))
        sc_set_int(s, hs, "recoveries", 0);
}

static int redeploy_fn(sctx *copy, json_t **result, serr *e) {
    (void)result;
    return sc_redeploy(copy, e);
}

/* A redeploy (every replica stopped, then started) runs on the job pool:
 * its stops wait out stop-grace.  The recovery's grace period starts when
 * it has ended. */
static int redeploy_step(sctx *s, json_t *rec, bool *running, serr *e) {
    int state;
    json_t *res = NULL;
    int rc = sc_job_stamp(s, rec, "redeploy", redeploy_fn, &state, &res, e);
    json_decref(res);
    *running = rc == 0 && state != JOB_DONE;
    if (rc == 0 && state == JOB_DONE) {
        json_object_set_new(rec, "startedMs", json_integer(wall_stamp_ms()));
        json_object_set_new(rec, "redeployed", json_true());
        s->dirty = true;
        sc_want(s, 0);
    }
    return rc;
}

/* Start recovery attempt n+1 by the policy's action. */
static int recover(sctx *s, json_t *hs, int act, const char *reason, serr *e) {
    const hc_set *set = &s->checks;
    int64_t n = jint(hs, "recoveries", 0);
    int rc;
    sc_set_int(s, hs, "recoveries", n + 1);
    json_object_set_new(hs, "recovery", json_pack("{s:s,s:I,s:I}", "action", hc_action_names[set->action],
                                                  "attempt", (json_int_t)(n + 1), "startedMs",
                                                  (json_int_t)now_ms()));
    s->dirty = true;
    char lbl[64];
    snprintf(lbl, sizeof(lbl), "action=\"%s\"", hc_action_names[set->action]);
    metrics_inc("stamp_recoveries_total", lbl, 1);
    sc_event(s, "Warning", "RecoveryStarted", "%s (attempt %lld of %d): %s",
             hc_action_names[set->action], (long long)(n + 1), set->max_retries, reason);
    if ((rc = sc_save(s, e))) return rc;
    if (act == AC_RECOVER_DRAIN) {
        /* Into standby, and held there: the spec still says active (only
         * the API writes spec), so the hold is what keeps Ready from
         * activating it again until an operator activates it. */
        json_object_set_new(s->r.status, "recoveryHold",
                            json_pack("{s:s,s:I}", "reason", reason, "activations",
                                      (json_int_t)s->in.activations));
        fleet_forget(s->c->fleet, s->name);
        return sc_start_drain(s, "DrainStarted", e);
    }
    bool running;
    if ((rc = redeploy_step(s, json_object_get(hs, "recovery"), &running, e))) return rc;
    return sc_save(s, e);
}

int sc_active(sctx *s, serr *e) {
    active_world w = {.desired = s->in.desired};
    decision d = decide_active(&w);
    if (d.to == SP_DRAINING) {
        fleet_forget(s->c->fleet, s->name);
        return sc_start_drain(s, d.reason, e);
    }
    health_view hv;
    sc_load_checks(s);
    json_t *hs = jchild(s->r.status, "health");
    json_t *rec = json_object_get(hs, "recovery"); /* a recovery under way */
    int rc;
    if (!json_is_object(rec) && (rc = sc_active_changes(s, e))) return rc; /* not during a recovery */
    sc_update_endpoint(s);
    if (json_is_object(rec) && json_object_get(rec, "job")) {
        /* Its redeploy still runs: nothing to judge until it has ended. */
        bool running;
        rc = redeploy_step(s, rec, &running, e);
        if (rc || running) return rc ? rc : sc_save(s, e);
    }
    sc_eval_health(s, SCALE_FULL, false, &hv);
    char gone[200] = "";
    int pools[POOL_N] = {0};
    w.missing = sc_missing_replicas(s, SCALE_FULL, gone, sizeof(gone), pools);
    json_t *jp = jchild(s->r.status, "pools");
    for (int p = 0; p < POOL_N; p++) sc_set_int(s, jp, tpl_pool_names[p], pools[p]);
    w.failing = hv.failing;
    w.all_passing = hv.all_passing;
    w.recovering = json_is_object(rec);
    w.in_grace = w.recovering &&
                 jint(rec, "startedMs", 0) > 0 &&
                 wall_age_ms(jint(rec, "startedMs", 0)) < s->c->cfg->health_recovery_grace_ms;
    w.recovery_enabled = s->checks.recovery;
    w.action_alert = s->checks.action == HA_ALERT;
    w.action_drain = s->checks.action == HA_DRAIN;
    w.recoveries = jint(hs, "recoveries", 0);
    w.max_retries = s->checks.max_retries;
    bool serve, unhealthy, all_unhealthy = false;
    active_health(&w, &serve, &unhealthy);
    tr_state rot = fleet_rotation(s->c->fleet, s->name, serve, &all_unhealthy);
    sc_frontdoor(s, rot);
    w.in_rotation = rot == TR_READY;
    const char *reason = w.missing ? gone : hv.why;
    note_rotation(s, hs, serve, w.in_rotation, reason);
    sc_set_int(s, hs, "healthy", serve && !unhealthy);
    sc_set_str(s, hs, "source", s->checks.source);
    note_recovered(s, hs, serve, hv.all_passing);

    d = decide_active(&w);
    switch (d.act) {
    case AC_ALERT:
        if (!sc_jbool(hs, "alerted")) {
            json_object_set_new(hs, "alerted", json_true());
            s->dirty = true;
            metrics_inc("stamp_health_alerts_total", "", 1);
            sc_event(s, "Warning", d.reason, "%s (recovery: %s)", reason,
                     s->checks.recovery ? "alert" : "disabled");
        }
        return sc_save(s, e);
    case AC_RECOVER_DRAIN:
    case AC_RECOVER_REDEPLOY:
        json_object_del(hs, "alerted");
        return recover(s, hs, d.act, reason, e);
    default: break;
    }
    if (d.to == SP_FAILED) {
        json_object_del(hs, "alerted");
        metrics_inc("stamp_health_alerts_total", "", 1);
        sc_event(s, "Warning", "StampRecoveryFailed", "%s after %lld recovery attempt(s)", reason,
                 (long long)w.recoveries);
        char msg[600];
        snprintf(msg, sizeof(msg), "unhealthy after %lld recovery attempt(s): %s",
                 (long long)w.recoveries, reason);
        sc_set_str(s, s->r.status, "lastError", reason);
        fleet_forget(s->c->fleet, s->name);
        return sc_change(s, d.to, d.reason, msg, e);
    }
    return sc_save(s, e);
}

/* Ready: warm standby (system pool only), or an activation under way. */
int sc_ready(sctx *s, serr *e) {
    json_t *act = json_object_get(s->r.status, "activation");
    /* A recovery hold shows as desired standby (phases.c). */
    ready_world w = {.desired = s->in.desired,
                     .activating = json_is_object(act),
                     .activation_timeout_ms = s->c->cfg->activation_timeout_ms,
                     .attempt = jint(act, "attempt", 1),
                     .attempts_max = s->c->cfg->activation_attempts};
    decision d = decide_ready(&w);
    int rc, started;
    if (d.to == SP_DELETING) return sc_change(s, d.to, d.reason, "retire signal", e);
    /* Standby is out of rotation; an activation goes back in only once
     * Active. */
    fleet_forget(s->c->fleet, s->name);
    sc_frontdoor(s, TR_MAINT);
    if (d.act == RD_STANDBY) {
        if (json_object_del(s->r.status, "activation") == 0) s->dirty = true;
        if ((rc = sc_scale_all(s, SCALE_STANDBY, false, &started, e))) return rc;
        sc_want(s, s->c->cfg->health_interval_ms * 5);
        return sc_save(s, e);
    }
    if (d.act == RD_START_ACTIVATION) {
        act = json_pack("{s:I,s:i}", "startedMs", (json_int_t)wall_stamp_ms(), "attempt", 1);
        json_object_set_new(s->r.status, "activation", act);
        hc_reset(s->name); /* results from before the standby do not count */
        s->dirty = true;
        sc_event(s, "Normal", d.reason, "scaling general and gpu pools up");
        w.activating = true;
    }
    if ((rc = sc_scale_all(s, SCALE_FULL, false, &started, e))) return rc;
    health_view hv;
    sc_load_checks(s);
    sc_eval_health(s, SCALE_FULL, true, &hv);
    w.all_passing = hv.all_passing;
    w.activation_age_ms = wall_age_ms(jint(act, "startedMs", 0));
    d = decide_ready(&w);
    if (d.to == SP_ACTIVE) {
        int64_t took = wall_age_ms(jint(act, "startedMs", 0));
        rc = sc_change(s, d.to, d.reason, "pools scaled up and healthy", e);
        if (rc == 0) {
            metrics_observe("stamp_activation_duration", "", (double)took / 1000.0);
            sc_frontdoor(s, TR_READY);
            sc_save(s, NULL);
        }
        return rc;
    }
    if (d.to == SP_FAILED || d.act == RD_RETRY_ACTIVATION) {
        sc_event(s, "Warning", "ActivationAttemptFailed", "activation attempt %lld failed: %s",
                 (long long)w.attempt, hv.why);
        if (d.to == SP_FAILED) {
            sc_event(s, "Warning", "StampActivationFailed", "activation failed %lld times",
                     (long long)w.attempt);
            char msg[600];
            snprintf(msg, sizeof(msg), "activation failed %lld times: %s", (long long)w.attempt, hv.why);
            return sc_change(s, d.to, d.reason, msg, e);
        }
        json_object_set_new(act, "attempt", json_integer(w.attempt + 1));
        json_object_set_new(act, "startedMs", json_integer(wall_stamp_ms()));
        s->dirty = true;
    }
    char wf[600];
    snprintf(wf, sizeof(wf), "health: %s", hv.why);
    sc_set_str(s, s->r.status, "waitingFor", wf);
    return sc_save(s, e);
}
