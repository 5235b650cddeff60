/*
 * test_stamp_decide.c - each stamp phase's decision with a fake world: a
 * table of what the controller observed -> the edge it must take (or none)
 * and the action.  The real controller calls exactly these functions, so a
 * change of what a phase does shows here first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/stamp_fsm.h"
#include "stamp/decide.h"

#define STAY (-1)

static void check(const char *what, decision d, int to, int act, const char *reason) {
    if (d.to != to || d.act != act || (reason && (!d.reason || strcmp(d.reason, reason) != 0))) {
        print_error("%s: got to=%d act=%d reason=%s, want to=%d act=%d reason=%s\n", what, d.to,
                    d.act, d.reason ? d.reason : "-", to, act, reason ? reason : "-");
        fail();
    }
    /* Every edge a decision takes is in the table. */
    if (d.to >= 0) assert_true(d.to < SP_NPHASES);
}

static void test_creating(void **state) {
    (void)state;
    static const struct {
        const char *what;
        creating_world w;
        int to, act;
        const char *reason;
    } rows[] = {
        {"delete cancels before anything runs", {SD_DELETED, STEPS_UNSEEN, 1, 3, false},
         SP_DELETING, 0, "DeploymentCancelled"},
        {"delete cancels a running step", {SD_DELETED, STEPS_RUNNING, 1, 3, false}, SP_DELETING, 0,
         "DeploymentCancelled"},
        {"steps not looked at: run them", {SD_ACTIVE, STEPS_UNSEEN, 1, 3, false}, STAY, CR_RUN_STEPS, NULL},
        {"an exec step runs: wait", {SD_ACTIVE, STEPS_RUNNING, 1, 3, false}, STAY, CR_WAIT_STEP, NULL},
        {"a step failed, attempts left: retry", {SD_ACTIVE, STEPS_FAILED, 1, 3, false}, STAY, CR_RETRY,
         "AttemptFailed"},
        {"a step failed on the last attempt", {SD_ACTIVE, STEPS_FAILED, 3, 3, false}, SP_FAILED, 0,
         "CreationFailed"},
        {"steps done, health not yet", {SD_ACTIVE, STEPS_DONE, 1, 3, false}, STAY, CR_WAIT_HEALTH, NULL},
        {"steps done, every check passes", {SD_ACTIVE, STEPS_DONE, 2, 3, true}, SP_ACTIVE, 0,
         "HealthChecksPassed"},
        {"standby asked while creating: Active first", {SD_STANDBY, STEPS_DONE, 1, 3, true}, SP_ACTIVE,
         0, "HealthChecksPassed"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        check(rows[i].what, decide_creating(&rows[i].w), rows[i].to, rows[i].act, rows[i].reason);
}

static active_world healthy(void) {
    return (active_world){.desired = SD_ACTIVE, .all_passing = true, .in_rotation = true,
                          .recovery_enabled = true, .max_retries = 3};
}

static void test_active(void **state) {
    (void)state;
    typedef struct {
        const char *what;
        active_world w;
        int to, act;
        const char *reason;
    } row;
    row rows[16];
    int n = 0;
    active_world w = healthy();
    rows[n++] = (row){"healthy: nothing", w, STAY, AC_NONE, NULL};
    w.desired = SD_STANDBY;
    rows[n++] = (row){"standby asked: drain", w, SP_DRAINING, 0, "DrainStarted"};
    w.desired = SD_DELETED;
    rows[n++] = (row){"delete asked: drain first", w, SP_DRAINING, 0, "DrainStarted"};
    w = healthy();
    w.failing = true;
    w.all_passing = false;
    w.in_rotation = false;
    rows[n++] = (row){"failing: redeploy", w, STAY, AC_RECOVER_REDEPLOY, "RecoveryStarted"};
    w.action_drain = true;
    rows[n++] = (row){"failing, action drain", w, STAY, AC_RECOVER_DRAIN, "RecoveryStarted"};
    w.action_drain = false;
    w.action_alert = true;
    rows[n++] = (row){"failing, action alert", w, STAY, AC_ALERT, "StampUnhealthy"};
    w.action_alert = false;
    w.recovery_enabled = false;
    rows[n++] = (row){"failing, recovery off: alert", w, STAY, AC_ALERT, "StampUnhealthy"};
    w.recovery_enabled = true;
    w.recoveries = 3;
    rows[n++] = (row){"recoveries exhausted", w, SP_FAILED, 0, "RecoveryFailed"};
    w.recoveries = 0;
    w.in_rotation = true;
    rows[n++] = (row){"last capacity of the fleet: hold", w, STAY, AC_HOLD_LAST,
                                  "FleetAllUnhealthy"};
    w = healthy();
    w.missing = 1;
    w.in_rotation = false;
    rows[n++] = (row){"a replica exited: recover at once", w, STAY, AC_RECOVER_REDEPLOY,
                                  "RecoveryStarted"};
    w.recovering = true;
    w.in_grace = true;
    rows[n++] = (row){"within a recovery's grace: wait", w, STAY, AC_NONE, NULL};
    for (int i = 0; i < n; i++)
        check(rows[i].what, decide_active(&rows[i].w), rows[i].to, rows[i].act, rows[i].reason);

    /* Serving: after a recovery only when every check passes again. */
    bool serve, unhealthy;
    w = healthy();
    w.recovering = true;
    w.all_passing = false;
    active_health(&w, &serve, &unhealthy);
    assert_false(serve);
    assert_false(unhealthy);
    w.all_passing = true;
    active_health(&w, &serve, &unhealthy);
    assert_true(serve);
}

static void test_draining(void **state) {
    (void)state;
    const draining_world base = {.desired = SD_STANDBY, .connections = 3, .jobs = 1,
                                 .elapsed_ms = 1000, .limit_conn_ms = 10000,
                                 .limit_jobs_ms = 20000, .limit_total_ms = 40000};
    typedef struct {
        const char *what;
        draining_world w;
        int to, act, why;
        const char *reason;
    } row;
    row rows[16];
    int n = 0;
    draining_world w = base;
    rows[n++] = (row){"work left, within limits: wait", w, STAY, DR_WAIT, DRW_NONE, NULL};
    w.desired = SD_ACTIVE;
    rows[n++] = (row){"activate cancels", w, SP_ACTIVE, 0, DRW_NONE, "DrainCancelled"};
    w = base;
    w.connections = w.jobs = 0;
    rows[n++] = (row){"nothing left: Ready", w, SP_READY, DR_FINISH, DRW_NONE, "Drained"};
    w.for_delete = true;
    rows[n++] = (row){"nothing left, for delete", w, SP_DELETING, DR_FINISH, DRW_NONE,
                                  "Drained"};
    w = base;
    w.force = true;
    rows[n++] = (row){"--force", w, SP_READY, DR_FORCE, DRW_FORCE, "DrainForced"};
    w.desired = SD_DELETED;
    rows[n++] = (row){"delete --force", w, SP_DELETING, DR_FORCE, DRW_FORCE, "ForceDelete"};
    w = base;
    w.elapsed_ms = 10000;
    rows[n++] = (row){"connections past their limit", w, SP_READY, DR_FORCE,
                                  DRW_CONNECTIONS, "DrainForced"};
    w.connections = 0;
    rows[n++] = (row){"jobs only, within theirs", w, STAY, DR_WAIT, DRW_NONE, NULL};
    w.elapsed_ms = 20000;
    rows[n++] = (row){"jobs past their limit", w, SP_READY, DR_FORCE, DRW_JOBS,
                                  "DrainForced"};
    w = base;
    w.elapsed_ms = 40000;
    rows[n++] = (row){"total limit", w, SP_READY, DR_FORCE, DRW_TOTAL, "DrainForced"};
    /* HAProxy did not answer (stopped, hung): its sessions are not known to
     * be gone, so the drain is not done, and the connections' limit holds. */
    w = base;
    w.connections = w.jobs = 0;
    w.frontdoor_unknown = true;
    rows[n++] = (row){"front door unknown, nothing else left: wait", w, STAY, DR_WAIT, DRW_NONE, NULL};
    w.elapsed_ms = 10000;
    rows[n++] = (row){"front door unknown past the connections' limit", w, SP_READY, DR_FORCE,
                      DRW_CONNECTIONS, "DrainForced"};
    w.elapsed_ms = 1000;
    w.force = true;
    rows[n++] = (row){"front door unknown, --force", w, SP_READY, DR_FORCE, DRW_FORCE, "DrainForced"};
    for (int i = 0; i < n; i++) {
        int why;
        check(rows[i].what, decide_draining(&rows[i].w, &why), rows[i].to, rows[i].act, rows[i].reason);
        assert_int_equal(why, rows[i].why);
    }
}

static void test_ready(void **state) {
    (void)state;
    const ready_world base = {.desired = SD_ACTIVE, .activating = true,
                              .activation_timeout_ms = 60000, .attempt = 1, .attempts_max = 3};
    typedef struct {
        const char *what;
        ready_world w;
        int to, act;
        const char *reason;
    } row;
    row rows[10];
    int n = 0;
    ready_world w = base;
    w.desired = SD_STANDBY;
    w.activating = false;
    rows[n++] = (row){"standby", w, STAY, RD_STANDBY, NULL};
    w.desired = SD_DELETED;
    rows[n++] = (row){"retire", w, SP_DELETING, 0, "Retired"};
    w = base;
    w.activating = false;
    rows[n++] = (row){"activate: start", w, STAY, RD_START_ACTIVATION, "Activating"};
    w.held = true;
    rows[n++] = (row){"held by its recovery: stays", w, STAY, RD_STANDBY, NULL};
    w = base;
    rows[n++] = (row){"activating, not healthy yet", w, STAY, RD_WAIT_HEALTH, NULL};
    w.all_passing = true;
    rows[n++] = (row){"activating, healthy", w, SP_ACTIVE, 0, "Activated"};
    w = base;
    w.activation_age_ms = 60000;
    rows[n++] = (row){"activation timed out, attempts left", w, STAY, RD_RETRY_ACTIVATION,
                                  "ActivationAttemptFailed"};
    w.attempt = 3;
    rows[n++] = (row){"activation failed 3 times", w, SP_FAILED, 0, "ActivationFailed"};
    for (int i = 0; i < n; i++)
        check(rows[i].what, decide_ready(&rows[i].w), rows[i].to, rows[i].act, rows[i].reason);
}

static void test_failed(void **state) {
    (void)state;
    failed_world w = {.desired = SD_ACTIVE};
    check("failed: stays", decide_failed(&w), STAY, 0, NULL);
    w.retry = true;
    check("deploy again", decide_failed(&w), SP_CREATING, 0, "Redeploy");
    w.desired = SD_DELETED;
    check("deploy again wins over delete", decide_failed(&w), SP_CREATING, 0, "Redeploy");
    w.retry = false;
    check("delete", decide_failed(&w), SP_DELETING, 0, "Delete");
}

/* Every edge the decisions can take is one the table allows. */
static void test_edges_in_table(void **state) {
    (void)state;
    static const int edges[][2] = {
        {SP_CREATING, SP_DELETING}, {SP_CREATING, SP_FAILED}, {SP_CREATING, SP_ACTIVE},
        {SP_ACTIVE, SP_DRAINING},   {SP_ACTIVE, SP_FAILED},   {SP_DRAINING, SP_ACTIVE},
        {SP_DRAINING, SP_READY},    {SP_DRAINING, SP_DELETING}, {SP_READY, SP_DELETING},
        {SP_READY, SP_ACTIVE},      {SP_READY, SP_FAILED},    {SP_FAILED, SP_CREATING},
        {SP_FAILED, SP_DELETING},
    };
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        assert_non_null(fsm_transition_find(&stamp_fsm, edges[i][0], edges[i][1]));
    /* And every timeout row's target is an edge of the table. */
    for (int i = 0; i < stamp_fsm.ntimeouts; i++)
        assert_non_null(fsm_transition_find(&stamp_fsm, stamp_fsm.timeouts[i].phase,
                                            stamp_fsm.timeouts[i].target));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creating), cmocka_unit_test(test_active),
        cmocka_unit_test(test_draining), cmocka_unit_test(test_ready),
        cmocka_unit_test(test_failed),   cmocka_unit_test(test_edges_in_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
