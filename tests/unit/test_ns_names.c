/*
 * test_ns_names.c - seed 004's names and the Namespace state table: what a
 * bucket id, namespace, tenant and pod may be (nothing that could become a
 * path outside its directory or blob prefix), and which operations each
 * phase allows, with the phase named in the refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ns/ns.h"

static void test_bucket_ids(void **st) {
    static const char *const good[] = {"b1", "2024-q3-batch", "a", "0123456789012345678901234567890123456789"};
    static const char *const bad[] = {"", "../x", "a/b", "..", "Bucket", "a_b", "-a", "a-", "a b",
                                      "01234567890123456789012345678901234567890", /* 41 */
                                      "a.b", "a%2fb", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        serr e = {0};
        if (ns_bucket_check(good[i], &e)) fail_msg("refused %s: %s", good[i], e.msg);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        serr e = {0};
        assert_int_equal(ns_bucket_check(bad[i], &e), SE_INVAL);
        assert_non_null(strstr(e.msg, "bucket_id"));
    }
    assert_int_equal(ns_bucket_check(NULL, NULL), SE_INVAL);
}

static void test_namespace_names(void **st) {
    assert_int_equal(ns_name_check("livecalc-bucket-b1", NULL), 0);
    assert_int_equal(ns_name_check("livecalc-mttc-0a1b2c3d", NULL), 0);
    static const char *const bad[] = {"b1", "kube-system", "livecalc-bucket-../x", "livecalc-bucket-B1",
                                      "livecalc-bucket-b1/pods", "", "livecalc-other-b1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ns_name_check(bad[i], NULL) != SE_INVAL) fail_msg("accepted %s", bad[i]);
}

static void test_tenants_and_pods(void **st) {
    static const char *const tenants[] = {"acme", "Acme_Corp.eu-1", "t"};
    for (size_t i = 0; i < 3; i++) assert_int_equal(ns_tenant_check(tenants[i], NULL), 0);
    static const char *const bad_tenants[] = {"", ".", "..", "a..b", ".hidden", "a/b", "a b", "-x"};
    for (size_t i = 0; i < sizeof(bad_tenants) / sizeof(bad_tenants[0]); i++)
        if (ns_tenant_check(bad_tenants[i], NULL) != SE_INVAL) fail_msg("tenant %s accepted", bad_tenants[i]);
    assert_int_equal(ns_pod_check("worker-1", NULL), 0);
    static const char *const bad_pods[] = {"", "..", "a/b", "W1", "pod.x"};
    for (size_t i = 0; i < sizeof(bad_pods) / sizeof(bad_pods[0]); i++)
        if (ns_pod_check(bad_pods[i], NULL) != SE_INVAL) fail_msg("pod %s accepted", bad_pods[i]);
    assert_true(ns_hash_valid("f7fa2853be3d73d7d285aeb4c884019809be1a4da5d6b94a82716f75b52605ee"));
    assert_false(ns_hash_valid("F7FA2853BE3D73D7D285AEB4C884019809BE1A4DA5D6B94A82716F75B52605EE"));
    assert_false(ns_hash_valid("f7fa"));
    assert_false(ns_hash_valid("../../../../etc/passwd000000000000000000000000000000000000000000"));
}

static void test_phase_table(void **st) {
    /* Active allows everything; reaped only viewing; finalized and reaping
     * refuse new work. */
    for (int op = 0; op < NO_NOPS; op++) assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_ACTIVE, op, NULL), 0);
    serr e = {0};
    assert_int_equal(fsm_check_op(&ns_fsm, "livecalc-bucket-b1", NP_REAPED, NO_POD, &e), SE_PHASE);
    assert_non_null(strstr(e.msg, "reaped"));
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_REAPED, NO_VIEW, NULL), 0);
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_REAPED, NO_ACTIVITY, NULL), SE_PHASE);
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_FINALIZED, NO_POD, NULL), SE_PHASE);
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_FINALIZED, NO_ACTIVITY, NULL), SE_PHASE);
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_REAPING, NO_RUN, NULL), SE_PHASE);
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_FINALIZED, NO_REAP, NULL), 0);
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_REAPING, NO_REAP, NULL), 0);
    /* Annotations reach the archive until the reap begins, not after. */
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_FINALIZED, NO_ANNOTATE, NULL), 0);
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_REAPING, NO_ANNOTATE, NULL), SE_PHASE);
    assert_int_equal(fsm_check_op(&ns_fsm, "n", NP_REAPED, NO_ANNOTATE, NULL), SE_PHASE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_ids),
        cmocka_unit_test(test_namespace_names),
        cmocka_unit_test(test_tenants_and_pods),
        cmocka_unit_test(test_phase_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
