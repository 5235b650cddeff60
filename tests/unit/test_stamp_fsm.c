/*
 * test_stamp_fsm.c - every (phase, operation) pair of the Stamp table,
 * checked against seed 000's lists as written out here by hand, plus the
 * transitions of the seed's diagram and the timeouts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/naming.h"
#include "core/stamp_fsm.h"

/* Rows: phases in enum order.  Columns: view deploy drain activate standby
 * delete force-delete backup update scale infrastructure-change restore
 * rollout.  1 = allowed. */
static const int expected[SP_NPHASES][SO_NOPS] = {
    /* Creating: view logs, cancel deployment (-> Deleted) */
    [SP_CREATING] = {1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0},
    /* Active: all normal operations, deploy application updates, scale node
     * pools; blocked: infrastructure changes (requires new stamp) */
    [SP_ACTIVE] = {1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1},
    /* Draining: monitor, force completion, cancel (-> Active), force delete;
     * blocked: new deployments, scale, configuration changes, plain delete */
    [SP_DRAINING] = {1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0},
    /* Ready: activate, retire (also as a rollout's replacement), view (+
     * backup before retiring); blocked: infrastructure modifications */
    [SP_READY] = {1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1},
    /* Deleting: view only; Deleted: view, restore from backup */
    [SP_DELETING] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    [SP_DELETED] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
    /* Failed: view, retry/redeploy, delete */
    [SP_FAILED] = {1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0},
};

static void every_pair(void **state) {
    (void)state;
    for (int p = 0; p < SP_NPHASES; p++)
        for (int op = 0; op < SO_NOPS; op++) {
            int got = fsm_op_allowed(&stamp_fsm, p, op);
            if (got != expected[p][op])
                fail_msg("%s / %s: table says %d, seed says %d", fsm_phase_name(&stamp_fsm, p),
                         fsm_op_name(&stamp_fsm, op), got, expected[p][op]);
            serr e = {0};
            int rc = fsm_check_op(&stamp_fsm, "synaxis-weu-001", p, op, &e);
            assert_int_equal(rc, expected[p][op] ? 0 : SE_PHASE);
            if (!expected[p][op]) {
                /* The refusal names the phase and what it allows. */
                assert_non_null(strstr(e.msg, fsm_phase_name(&stamp_fsm, p)));
                assert_non_null(strstr(e.msg, "allows: view"));
                assert_non_null(strstr(e.msg, fsm_op_name(&stamp_fsm, op)));
            }
        }
}

static void refusal_text(void **state) {
    (void)state;
    serr e = {0};
    fsm_check_op(&stamp_fsm, "synaxis-weu-003", SP_CREATING, SO_DRAIN, &e);
    assert_string_equal(e.msg, "stamp synaxis-weu-003 is Creating: drain is not allowed "
                               "(Creating blocks routing traffic and accepting connections; it "
                               "allows: view, delete, delete --force)");
    serr e2 = {0};
    fsm_check_op(&stamp_fsm, "synaxis-weu-003", SP_DRAINING, SO_SCALE, &e2);
    assert_string_equal(e2.msg, "stamp synaxis-weu-003 is Draining: scale is not allowed "
                                "(Draining blocks new deployments, scale operations and "
                                "configuration changes; it allows: view, drain, activate, "
                                "standby, delete --force)");
    serr e3 = {0};
    fsm_check_op(&stamp_fsm, "synaxis-weu-003", SP_ACTIVE, SO_INFRA, &e3);
    assert_non_null(strstr(e3.msg, "infrastructure change is not allowed (Active blocks "
                                    "infrastructure changes (requires new stamp)"));
}

static void transitions(void **state) {
    (void)state;
    static const int yes[][2] = {
        {SP_CREATING, SP_ACTIVE},  {SP_CREATING, SP_FAILED},  {SP_CREATING, SP_DELETING},
        {SP_ACTIVE, SP_DRAINING},  {SP_DRAINING, SP_READY},   {SP_DRAINING, SP_ACTIVE},
        {SP_DRAINING, SP_DELETING}, {SP_READY, SP_ACTIVE},    {SP_READY, SP_DELETING},
        {SP_READY, SP_FAILED},     {SP_FAILED, SP_CREATING},  {SP_FAILED, SP_DELETING},
        {SP_DELETING, SP_DELETED}, {SP_ACTIVE, SP_FAILED},
    };
    int count = 0;
    for (int f = 0; f < SP_NPHASES; f++)
        for (int t = 0; t < SP_NPHASES; t++) {
            bool want = false;
            for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
                if (yes[i][0] == f && yes[i][1] == t) want = true;
            bool got = fsm_transition_find(&stamp_fsm, f, t) != NULL;
            if (got != want)
                fail_msg("%s -> %s: got %d want %d", fsm_phase_name(&stamp_fsm, f),
                         fsm_phase_name(&stamp_fsm, t), got, want);
            count += got;
        }
    assert_int_equal(count, 14);
    /* Nothing leaves Deleted; nothing goes Active -> Ready directly. */
    assert_null(fsm_transition_find(&stamp_fsm, SP_DELETED, SP_CREATING));
    assert_null(fsm_transition_find(&stamp_fsm, SP_ACTIVE, SP_READY));
}

static void timeouts(void **state) {
    (void)state;
    const fsm_timeout *t = fsm_timeout_find(&stamp_fsm, SP_CREATING);
    assert_non_null(t);
    assert_int_equal(t->target, SP_FAILED);
    t = fsm_timeout_find(&stamp_fsm, SP_READY);
    assert_non_null(t);
    assert_int_equal(t->target, SP_DELETING);
    assert_string_equal(t->config_key, "standby-max-age");
    assert_null(fsm_timeout_find(&stamp_fsm, SP_ACTIVE));
}

static void names(void **state) {
    (void)state;
    char n[64];
    serr e = {0};
    assert_int_equal(stamp_name_build(NULL, "westeurope", "3", n, sizeof(n), &e), 0);
    assert_string_equal(n, "synaxis-weu-003");
    assert_int_equal(stamp_name_build("synaxis", "southeastasia", "002", n, sizeof(n), &e), 0);
    assert_string_equal(n, "synaxis-sea-002");
    assert_int_equal(stamp_name_build("synaxis", "eastus", "001", n, sizeof(n), &e), 0);
    assert_string_equal(n, "synaxis-eus-001");
    assert_int_equal(stamp_name_build("synaxis", "marsnorth", "1", n, sizeof(n), &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "unknown region"));
    assert_int_equal(stamp_name_build("synaxis", "eastus", "../x", n, sizeof(n), &e), SE_INVAL);
    assert_int_equal(stamp_name_build("synaxis", "eastus", "ABC", n, sizeof(n), &e), SE_INVAL);
    assert_int_equal(stamp_name_build("Syn", "eastus", "1", n, sizeof(n), &e), SE_INVAL);
    assert_int_equal(stamp_name_build("synaxis", "eastus", "12345678901234567", n, sizeof(n), &e),
                     SE_INVAL);
    assert_string_equal(region_code("westeurope"), "weu");
    assert_string_equal(region_from_code("sea"), "southeastasia");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_pair), cmocka_unit_test(refusal_text),
        cmocka_unit_test(transitions), cmocka_unit_test(timeouts), cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
