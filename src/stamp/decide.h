/*
 * decide.h - each phase's decision as a pure function: what the controller
 * observed (the "world": intent, health, replicas, drain counters, ages) in,
 * the edge to take and the action to perform out.  No I/O, no clock, no
 * status: the phase files observe, call these, and act; the unit test
 * test_stamp_decide drives each with a table of worlds.
 *
 * A decision: to >= 0 is the phase to change to, with reason (the event's
 * CamelCase reason); act is what to do when staying (or before changing).
 */
#ifndef STAMP_STAMP_DECIDE_H
#define STAMP_STAMP_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#include "stamp/intent.h"

typedef struct decision {
    int to;             /* enum stamp_phase, or -1: stay */
    int act;            /* the phase's enum below */
    const char *reason; /* event reason for the edge or the action */
} decision;

/* ---- Creating ---- */
enum { STEPS_UNSEEN, STEPS_RUNNING, STEPS_FAILED, STEPS_DONE };
enum { CR_NONE, CR_RUN_STEPS, CR_WAIT_STEP, CR_RETRY, CR_WAIT_HEALTH };
typedef struct creating_world {
    stamp_desired desired;
    int steps;            /* STEPS_*: STEPS_UNSEEN before the steps were looked at */
    int64_t attempt, attempts_max;
    bool all_passing;     /* every health check passes */
} creating_world;
decision decide_creating(const creating_world *w);

/* ---- Active ---- */
enum { AC_NONE, AC_HOLD_LAST, AC_ALERT, AC_RECOVER_REDEPLOY, AC_RECOVER_DRAIN };
typedef struct active_world {
    stamp_desired desired;
    bool failing;         /* some check Failing */
    bool all_passing;
    int missing;          /* replicas that should run and do not */
    bool recovering;      /* a recovery is under way */
    bool in_grace;        /* ... and still inside its grace period */
    bool in_rotation;     /* the fleet policy's answer for this stamp */
    bool recovery_enabled;
    bool action_alert;    /* the recovery action is "alert" */
    bool action_drain;    /* ... is "drain" */
    int64_t recoveries, max_retries;
} active_world;
/* serve: healthy enough to be in rotation; unhealthy: recovery is due. */
void active_health(const active_world *w, bool *serve, bool *unhealthy);
decision decide_active(const active_world *w);

/* ---- Draining ---- */
enum { DR_NONE, DR_WAIT, DR_FINISH, DR_FORCE };
enum { DRW_NONE, DRW_FORCE, DRW_TOTAL, DRW_CONNECTIONS, DRW_JOBS };
typedef struct draining_world {
    stamp_desired desired;
    bool force;                  /* a --force of a generation not yet acted on, or delete --force */
    bool for_delete;             /* the drain's target is Deleting */
    int64_t connections, jobs;   /* incl. the front door's sessions and queue */
    bool frontdoor_unknown;      /* the front door's sessions could not be read: as
                                  * if it still had some (never drained on a guess) */
    int64_t elapsed_ms, limit_conn_ms, limit_jobs_ms, limit_total_ms;
} draining_world;
/* d.act DR_FORCE: forced, why in *why (DRW_*). */
decision decide_draining(const draining_world *w, int *why);

/* ---- Ready ---- */
enum { RD_NONE, RD_STANDBY, RD_START_ACTIVATION, RD_WAIT_HEALTH, RD_RETRY_ACTIVATION };
typedef struct ready_world {
    stamp_desired desired;
    bool held;                   /* drained by its health recovery, not activated since */
    bool activating;             /* an activation is under way */
    bool all_passing;
    int64_t activation_age_ms, activation_timeout_ms;
    int64_t attempt, attempts_max;
} ready_world;
decision decide_ready(const ready_world *w);

/* ---- Failed ---- */
typedef struct failed_world {
    stamp_desired desired;
    bool retry;                  /* a deploy again not yet acted on */
} failed_world;
decision decide_failed(const failed_world *w);

#endif
