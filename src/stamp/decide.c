/*
 * decide.c - see decide.h.  Each function reads top to bottom in the order
 * the rules apply: the first that matches decides.
 */
#include "stamp/decide.h"

#include "core/stamp_fsm.h"

static decision stay(int act, const char *reason) { return (decision){.to = -1, .act = act, .reason = reason}; }
static decision go(int to, const char *reason) { return (decision){.to = to, .act = 0, .reason = reason}; }

decision decide_creating(const creating_world *w) {
    if (w->desired == SD_DELETED) return go(SP_DELETING, "DeploymentCancelled");
    switch (w->steps) {
    case STEPS_UNSEEN: return stay(CR_RUN_STEPS, NULL);
    case STEPS_RUNNING: return stay(CR_WAIT_STEP, NULL);
    case STEPS_FAILED:
        if (w->attempt >= w->attempts_max) return go(SP_FAILED, "CreationFailed");
        return stay(CR_RETRY, "AttemptFailed");
    default: break;
    }
    /* Health gate: every check of the stamp's StampHealthCheck passes. */
    if (!w->all_passing) return stay(CR_WAIT_HEALTH, NULL);
    return go(SP_ACTIVE, "HealthChecksPassed");
}

void active_health(const active_world *w, bool *serve, bool *unhealthy) {
    /* A replica that has exited is a failure for certain: no waiting for
     * thresholds.  Within a recovery's grace period nothing is unhealthy. */
    *unhealthy = (w->failing || w->missing > 0) && !(w->recovering && w->in_grace);
    /* Healthy enough to serve: nothing failing, nothing missing, and after
     * a recovery every check passing again.  Unknown results (stampd just
     * restarted) keep the stamp where it was. */
    *serve = !w->failing && w->missing == 0 && (!w->recovering || w->all_passing);
}

decision decide_active(const active_world *w) {
    if (w->desired == SD_STANDBY || w->desired == SD_DELETED) return go(SP_DRAINING, "DrainStarted");
    bool serve, unhealthy;
    active_health(w, &serve, &unhealthy);
    if (!unhealthy) return stay(AC_NONE, NULL);
    /* Kept serving by the all-unhealthy policy: a redeploy or drain now
     * would take away the last capacity the fleet has, so recovery waits
     * until another stamp is healthy again. */
    if (!serve && w->in_rotation) return stay(AC_HOLD_LAST, "FleetAllUnhealthy");
    if (!w->recovery_enabled || w->action_alert) return stay(AC_ALERT, "StampUnhealthy");
    if (w->recoveries >= w->max_retries) return go(SP_FAILED, "RecoveryFailed");
    return stay(w->action_drain ? AC_RECOVER_DRAIN : AC_RECOVER_REDEPLOY, "RecoveryStarted");
}

decision decide_draining(const draining_world *w, int *why) {
    *why = DRW_NONE;
    if (w->desired == SD_ACTIVE) return go(SP_ACTIVE, "DrainCancelled");
    int target = w->for_delete || w->desired == SD_DELETED ? SP_DELETING : SP_READY;
    decision d = go(target, NULL);
    if (w->force) {
        *why = DRW_FORCE;
        d.act = DR_FORCE;
        d.reason = target == SP_DELETING ? "ForceDelete" : "DrainForced";
        return d;
    }
    bool conns = w->connections > 0 || w->frontdoor_unknown;
    if (!conns && w->jobs == 0) {
        d.act = DR_FINISH;
        d.reason = "Drained";
        return d;
    }
    if (w->elapsed_ms >= w->limit_total_ms) *why = DRW_TOTAL;
    else if (conns && w->elapsed_ms >= w->limit_conn_ms) *why = DRW_CONNECTIONS;
    else if (w->jobs > 0 && w->elapsed_ms >= w->limit_jobs_ms) *why = DRW_JOBS;
    else return stay(DR_WAIT, NULL);
    d.act = DR_FORCE;
    d.reason = target == SP_DELETING ? "ForceDelete" : "DrainForced";
    return d;
}

decision decide_ready(const ready_world *w) {
    if (w->desired == SD_DELETED) return go(SP_DELETING, "Retired");
    if (w->desired != SD_ACTIVE || w->held) return stay(RD_STANDBY, NULL);
    if (!w->activating) return stay(RD_START_ACTIVATION, "Activating");
    if (w->all_passing) return go(SP_ACTIVE, "Activated");
    if (w->activation_age_ms < w->activation_timeout_ms) return stay(RD_WAIT_HEALTH, NULL);
    if (w->attempt >= w->attempts_max) return go(SP_FAILED, "ActivationFailed");
    return stay(RD_RETRY_ACTIVATION, "ActivationAttemptFailed");
}

decision decide_failed(const failed_world *w) {
    if (w->retry) return go(SP_CREATING, "Redeploy");
    if (w->desired == SD_DELETED) return go(SP_DELETING, "Delete");
    return stay(0, NULL);
}
