/*
 * creating.c - Creating (the template's steps in order, then the health
 * gate) and Failed (deploy again, or delete).  The decisions are
 * decide_creating and decide_failed; this file observes and acts.
 */
#include <stdio.h>
#include <string.h>

#include "reconcile/queue.h"
#include "stamp/internal.h"
#include "util/metrics.h"
#include "util/util.h"

json_t *sc_steps_status(sctx *s) {
    json_t *arr = json_object_get(s->r.status, "steps");
    if (json_is_array(arr) && (int)json_array_size(arr) == s->t.nsteps) return arr;
    arr = json_array();
    for (int i = 0; i < s->t.nsteps; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s}", "name", s->t.steps[i].name,
                                             "phase", tpl_phase_names[s->t.steps[i].phase], "kind",
                                             s->t.steps[i].kind == TK_EXEC ? "exec" : "process",
                                             "state", "Pending"));
    json_object_set_new(s->r.status, "steps", arr);
    s->dirty = true;
    return arr;
}

/* Entering Creating again (a redeploy of a Failed stamp): a fresh attempt
 * count and step progress; createdSteps stays (it decides which delete
 * commands a retirement runs). */
void sc_enter_creating(sctx *s, int from) {
    json_t *st = s->r.status;
    if (from < 0) return;
    json_object_set_new(st, "retryObserved", json_integer(s->in.retry));
    json_object_set_new(st, "attempt", json_integer(1));
    json_object_set_new(st, "restarts", json_integer(0));
    json_object_set_new(st, "creatingSinceMs", json_integer(now_ms()));
    json_object_del(st, "activation");
    json_object_del(st, "steps");
    /* A redeploy runs the spec it was given: what ran before and an
     * update of it are history. */
    json_object_del(st, "applied");
    json_object_del(st, "update");
    json_object_del(st, "poolsApplied");
    sc_steps_status(s);
}

/* An exec step still Running when Creating ends was cancelled: its command
 * is stopped (retiring.c) before any delete command runs. */
void sc_leave_creating(sctx *s, int to) {
    (void)to;
    size_t i;
    json_t *prog;
    json_array_foreach(json_object_get(s->r.status, "steps"), i, prog) {
        if (strcmp(jstr(prog, "state", ""), "Running") == 0) {
            json_object_set_new(prog, "state", json_string("Cancelled"));
            json_object_set_new(prog, "message",
                                json_string("the deployment ended while the command ran"));
        }
    }
}

int sc_creating_timeout(sctx *s, const fsm_timeout *t, int64_t limit, serr *e) {
    if (s->in.desired == SD_DELETED)
        return sc_change(s, SP_DELETING, "DeploymentCancelled", "cancelled by delete", e);
    char d[32], msg[700];
    snprintf(msg, sizeof(msg), "not Active after %s: %s", fmt_duration(limit, d, sizeof(d)),
             jstr(s->r.status, "waitingFor", "deployment did not finish"));
    sc_event(s, "Warning", "StampCreationFailed", "%s", msg);
    return sc_change(s, t->target, t->reason, msg, e);
}

/* One attempt failed: retry its failed steps after a backoff that grows
 * with the attempt, or (attempts exhausted) Failed. */
static int attempt_failed(sctx *s, const char *why, serr *e) {
    int64_t attempt = jint(s->r.status, "attempt", 1);
    sc_event(s, "Warning", "AttemptFailed", "deployment attempt %lld of %lld failed: %s",
             (long long)attempt, (long long)s->c->cfg->creating_attempts, why);
    sc_set_str(s, s->r.status, "lastError", why);
    creating_world w = {.desired = s->in.desired, .steps = STEPS_FAILED, .attempt = attempt,
                        .attempts_max = s->c->cfg->creating_attempts};
    decision d = decide_creating(&w);
    if (d.to >= 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%lld attempts failed; last: %s", (long long)attempt, why);
        return sc_change(s, d.to, d.reason, msg, e);
    }
    sc_set_int(s, s->r.status, "attempt", attempt + 1);
    sc_set_int(s, s->r.status, "restarts", 0);
    /* Retry the failed steps; finished ones stay done (idempotent). */
    size_t i;
    json_t *st;
    json_array_foreach(sc_steps_status(s), i, st) {
        if (strcmp(jstr(st, "state", ""), "Failed") == 0)
            json_object_set_new(st, "state", json_string("Pending"));
    }
    s->dirty = true;
    /* The attempt count lives in status (creating-attempts ends in
     * Failed), so the controller answers the queue's delay of the n-th
     * failure rather than an error. */
    sc_want(s, wq_backoff_delay(s->c->q, (int)attempt));
    return sc_save(s, e);
}

/* A process step: its replicas run.  Replicas of a step already Done that
 * had to be started again count as restarts; past restart-limit the
 * attempt fails. */
static int process_step(sctx *s, const tpl_step *st, json_t *prog, int *state, char *why,
                        size_t whylen, serr *e) {
    int alive, started, rc;
    bool done = strcmp(jstr(prog, "state", "Pending"), "Done") == 0;
    if ((rc = sc_ensure_step(s, st, st->replicas, &alive, &started, e))) {
        if (rc != SE_INVAL && rc != SE_TOOBIG && rc != SE_IO) return rc;
        snprintf(why, whylen, "%s", e->msg);
        serr_clear(e);
        *state = STEPS_FAILED;
        return 0;
    }
    if (done && started > 0) {
        int64_t restarts = jint(s->r.status, "restarts", 0) + started;
        sc_set_int(s, s->r.status, "restarts", restarts);
        sc_event(s, "Warning", "ReplicaRestarted", "step %s: restarted %d replica(s)", st->name,
                 started);
        if (restarts > s->c->cfg->restart_limit) {
            snprintf(why, whylen, "step %s: replicas keep exiting (%lld restarts)", st->name,
                     (long long)restarts);
            sc_set_str(s, prog, "state", "Failed");
            *state = STEPS_FAILED;
            return 0;
        }
    }
    if (!done) {
        sc_set_str(s, prog, "state", "Done");
        sc_event(s, "Normal", "StepDone", "%s/%s: %d replica(s) of pool %s running",
                 tpl_phase_names[st->phase], st->name, alive, tpl_pool_names[st->pool]);
    }
    return 0;
}

/* Runs the steps in order until one runs, fails, or all are done. */
static int run_steps(sctx *s, int *state, char *why, size_t whylen, serr *e) {
    json_t *steps = sc_steps_status(s);
    int rc;
    *state = STEPS_DONE;
    sc_update_endpoint(s); /* exec steps (smoke tests) get STAMP_ENDPOINT */
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        json_t *prog = json_array_get(steps, (size_t)i);
        const char *pstate = jstr(prog, "state", "Pending");
        json_t *cur = jchild(s->r.status, "step");
        sc_set_str(s, cur, "phase", tpl_phase_names[st->phase]);
        sc_set_str(s, cur, "name", st->name);
        sc_set_int(s, cur, "index", i);
        if (st->kind == TK_PROCESS) {
            if ((rc = process_step(s, st, prog, state, why, whylen, e)) || *state == STEPS_FAILED)
                return rc;
            continue;
        }
        if (strcmp(pstate, "Done") == 0) continue;
        if (strcmp(pstate, "Failed") == 0) {
            snprintf(why, whylen, "%s", jstr(prog, "message", "failed"));
            *state = STEPS_FAILED;
            return 0;
        }
        int result;
        if ((rc = sc_exec_follow(s, st, st->run, "create", prog, &result, e))) return rc;
        if (result == RUN_RUNNING) {
            *state = STEPS_RUNNING;
            return 0;
        }
        if (result == RUN_FAILED) {
            snprintf(why, whylen, "step %s: %s (log %s)", st->name, jstr(prog, "message", "failed"),
                     jstr(prog, "log", ""));
            *state = STEPS_FAILED;
            return 0;
        }
        sc_event(s, "Normal", "StepDone", "%s/%s: command succeeded", tpl_phase_names[st->phase],
                 st->name);
    }
    return 0;
}

int sc_creating(sctx *s, serr *e) {
    creating_world w = {.desired = s->in.desired, .steps = STEPS_UNSEEN,
                        .attempt = jint(s->r.status, "attempt", 1),
                        .attempts_max = s->c->cfg->creating_attempts};
    decision d = decide_creating(&w);
    if (d.to >= 0) return sc_change(s, d.to, d.reason, "cancelled by delete", e);
    /* A restore puts the backup's volumes back before any step (restore.c). */
    bool go_on;
    int rc = sc_restore(s, &go_on, e);
    if (rc || !go_on) return rc;
    char why[600] = "";
    rc = run_steps(s, &w.steps, why, sizeof(why), e);
    if (rc) return rc;
    if (w.steps == STEPS_DONE) {
        sc_update_endpoint(s);
        sc_frontdoor(s, TR_ABSENT);
        health_view hv;
        sc_load_checks(s);
        sc_eval_health(s, SCALE_FULL, true, &hv);
        w.all_passing = hv.all_passing;
        snprintf(why, sizeof(why), "health: %s", hv.why);
    }
    d = decide_creating(&w);
    switch (d.act) {
    case CR_RETRY: return attempt_failed(s, why, e);
    case CR_WAIT_STEP:
        sc_set_str(s, s->r.status, "waitingFor", "exec step running");
        return sc_save(s, e);
    case CR_WAIT_HEALTH:
        sc_set_str(s, s->r.status, "waitingFor", why);
        return sc_save(s, e);
    default: break;
    }
    if (d.to == SP_FAILED) return attempt_failed(s, why, e);
    int64_t since = jint(s->r.status, "creatingSinceMs", jint(s->r.status, "phaseSince", now_ms()));
    rc = sc_change(s, d.to, d.reason, "all health checks pass", e);
    if (rc == 0) {
        metrics_observe("stamp_creation_duration", "", (double)(now_ms() - since) / 1000.0);
        sc_frontdoor(s, TR_READY);
        sc_save(s, NULL);
    }
    return rc;
}

int sc_failed(sctx *s, serr *e) {
    fleet_forget(s->c->fleet, s->name);
    sc_frontdoor(s, TR_ABSENT);
    failed_world w = {.desired = s->in.desired,
                      .retry = s->in.retry > jint(s->r.status, "retryObserved", 0)};
    decision d = decide_failed(&w);
    if (d.to == SP_CREATING) return sc_change(s, d.to, d.reason, "deploy requested again", e);
    if (d.to >= 0) return sc_change(s, d.to, d.reason, "delete", e);
    return sc_save(s, e);
}
