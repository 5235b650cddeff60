/*
 * test_health.c - StampHealthCheck: threshold expressions and their units,
 * type inference and the refusals of hc_parse, and the consecutive-count
 * state machine of the results table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "health/health.h"

static void test_expressions(void **st) {
    hc_expr x;
    serr e = {0};
    assert_int_equal(hc_expr_parse("stamp_workload_data_latency_seconds < 10ms", &x, &e), 0);
    assert_string_equal(x.metric, "stamp_workload_data_latency_seconds");
    assert_true(x.value > 0.0099 && x.value < 0.0101); /* converted to seconds */
    assert_true(hc_expr_holds(&x, 0.005));
    assert_false(hc_expr_holds(&x, 0.010));
    assert_int_equal(hc_expr_parse("redis_response<=5ms", &x, &e), 0);
    assert_true(x.value > 4.99 && x.value < 5.01); /* no _seconds: milliseconds */
    assert_true(hc_expr_holds(&x, 5));
    assert_int_equal(hc_expr_parse("queue_depth >= 3", &x, &e), 0);
    assert_false(hc_expr_holds(&x, 2));
    assert_int_equal(hc_expr_parse("errors != 0", &x, &e), 0);
    assert_true(hc_expr_holds(&x, 1));
    static const char *const bad[] = {"latency ~ 3", "< 3", "latency <", "latency < 3parsecs",
                                      "latency < nan", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        serr e2 = {0};
        if (hc_expr_parse(bad[i], &x, &e2) == 0) fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(e2.code, SE_INVAL);
    }
}

static int parse_text(const char *json, hc_set *set, serr *e) {
    json_t *spec = json_loads(json, 0, NULL);
    assert_non_null(spec);
    int rc = hc_parse(spec, set, e);
    json_decref(spec);
    return rc;
}

static void test_parse(void **st) {
    hc_set set;
    serr e = {0};
    assert_int_equal(parse_text("{\"checks\":[{\"name\":\"app\",\"endpoint\":\"/health\"},"
                                "{\"name\":\"port\",\"type\":\"tcp\"},{\"name\":\"x\",\"command\":\"true\"},"
                                "{\"name\":\"data\",\"checks\":[\"a < 1ms\"]},{\"name\":\"k8s\"}]}",
                                &set, &e),
                     0);
    assert_int_equal(set.n, 5);
    assert_int_equal(set.checks[0].type, HC_HTTP);
    assert_int_equal(set.checks[1].type, HC_TCP);
    assert_int_equal(set.checks[2].type, HC_EXEC);
    assert_int_equal(set.checks[3].type, HC_THRESHOLD);
    assert_int_equal(set.checks[4].type, HC_PROCESS);
    /* Seed defaults: 10s/5s, healthy 2, unhealthy 3, redeploy x3. */
    assert_int_equal(set.checks[0].interval_ms, 10000);
    assert_int_equal(set.checks[0].healthy_threshold, 2);
    assert_int_equal(set.checks[0].unhealthy_threshold, 3);
    assert_true(set.recovery);
    assert_int_equal(set.max_retries, 3);
    assert_int_equal(set.action, HA_REDEPLOY);
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"checks\":[]}", "spec.checks"},
        {"{\"checks\":[{\"name\":\"a\",\"type\":\"icmp\"}]}", "spec.checks[0].type"},
        {"{\"checks\":[{\"name\":\"a\"},{\"name\":\"a\"}]}", "used twice"},
        {"{\"checks\":[{\"name\":\"a\",\"interval\":\"soon\"}]}", "spec.checks[0].interval"},
        {"{\"checks\":[{\"name\":\"a\",\"type\":\"tcp\",\"endpoint\":\"/x\"}]}", "belong to"},
        {"{\"checks\":[{\"name\":\"a\",\"color\":\"red\"}]}", "spec.checks[0].color"},
        {"{\"checks\":[{\"name\":\"a\"}],\"recovery\":{\"action\":\"reboot\"}}", "spec.recovery.action"},
        {"{\"checks\":[{\"name\":\"a\"}],\"recovery\":{\"enabled\":\"yes\"}}", "spec.recovery.enabled"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        serr e2 = {0};
        if (parse_text(bad[i].json, &set, &e2) == 0) fail_msg("accepted %s", bad[i].json);
        if (strstr(e2.msg, bad[i].want) == NULL) fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].json, e2.msg, bad[i].want);
    }
}

static void test_thresholds(void **st) {
    hc_check c = {.name = "app", .interval_ms = 1000, .healthy_threshold = 2, .unhealthy_threshold = 3};
    hc_reset("s1");
    assert_int_equal(hc_due_in("s1", &c), 0);
    assert_int_equal(hc_record("s1", &c, true, 1, NULL), HS_UNKNOWN); /* 1 of 2 passes */
    assert_true(hc_due_in("s1", &c) > 0);
    assert_int_equal(hc_record("s1", &c, true, 1, NULL), HS_PASSING);
    assert_int_equal(hc_record("s1", &c, false, 5, "boom"), HS_PASSING); /* 1 of 3 failures */
    assert_int_equal(hc_record("s1", &c, false, 5, "boom"), HS_PASSING);
    assert_int_equal(hc_record("s1", &c, false, 5, "boom"), HS_FAILING);
    hc_result r;
    assert_true(hc_get("s1", "app", &r));
    assert_int_equal(r.fails, 3);
    assert_string_equal(r.last_error, "boom");
    assert_int_equal(hc_record("s1", &c, true, 1, NULL), HS_FAILING); /* needs 2 passes back */
    assert_int_equal(hc_record("s1", &c, true, 1, NULL), HS_PASSING);
    hc_reset("s1");
    assert_false(hc_get("s1", "app", &r));
    assert_int_equal(r.state, HS_UNKNOWN);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expressions),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_thresholds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
