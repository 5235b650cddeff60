/*
 * test_fleet.c - the all-unhealthy policy (reconcile/fleet.c): an unhealthy
 * stamp leaves rotation while another is healthy; with none healthy,
 * last-healthy keeps what serves and takes nothing back, fail-open serves
 * everything and fail-closed nothing; the last healthy stamp leaving Active
 * makes the rest all-unhealthy; forget stops a stamp counting and lets it
 * come back in rotation; the gauge follows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "reconcile/fleet.h"
#include "util/metrics.h"

static fleet_health *open_fleet(const char *policy) {
    fleet_health *f = NULL;
    serr e = {0};
    if (fleet_health_new(policy, &f, &e) != 0) fail_msg("%s: %s", policy, e.msg);
    return f;
}

static tr_state rot(fleet_health *f, const char *name, bool healthy, bool *all) {
    bool a = false;
    tr_state st = fleet_rotation(f, name, healthy, &a);
    if (all) *all = a;
    return st;
}

static double gauge(void) { return metrics_get("stamp_fleet_all_unhealthy", ""); }

static void test_bad_policy(void **st) {
    fleet_health *f = (fleet_health *)1;
    serr e = {0};
    assert_int_equal(fleet_health_new("fail-sideways", &f, &e), SE_INVAL);
    assert_null(f);
    assert_non_null(strstr(e.msg, "fail-sideways"));
    fleet_health_free(NULL);
}

/* Whatever the policy: healthy serves; unhealthy leaves while another is
 * healthy. */
static void test_some_healthy(void **st) {
    const char *policies[] = {"last-healthy", "fail-open", "fail-closed"};
    for (int p = 0; p < 3; p++) {
        fleet_health *f = open_fleet(policies[p]);
        bool all = true;
        assert_int_equal(rot(f, "a", true, &all), TR_READY);
        assert_false(all);
        assert_int_equal(rot(f, "b", false, &all), TR_MAINT);
        assert_false(all);
        assert_false(fleet_all_unhealthy(f));
        assert_true(gauge() == 0);
        fleet_health_free(f);
    }
}

static void test_last_healthy(void **st) {
    fleet_health *f = open_fleet("last-healthy");
    assert_int_equal(fleet_health_policy(f), FP_LAST_HEALTHY);
    bool all;
    assert_int_equal(rot(f, "a", true, NULL), TR_READY);
    assert_int_equal(rot(f, "b", true, NULL), TR_READY);
    assert_int_equal(rot(f, "a", false, &all), TR_MAINT); /* b still healthy */
    assert_false(all);
    /* b fails too: it was serving and keeps serving; a stays out. */
    assert_int_equal(rot(f, "b", false, &all), TR_READY);
    assert_true(all);
    assert_true(fleet_all_unhealthy(f));
    assert_true(gauge() == 1);
    assert_int_equal(rot(f, "a", false, &all), TR_MAINT);
    assert_true(all);
    assert_int_equal(rot(f, "b", false, NULL), TR_READY); /* asked again: the same */
    /* a recovers: back in, and b, still unhealthy, now leaves. */
    assert_int_equal(rot(f, "a", true, &all), TR_READY);
    assert_false(all);
    assert_true(gauge() == 0);
    assert_int_equal(rot(f, "b", false, NULL), TR_MAINT);
    /* ... and is not taken back when a fails again. */
    assert_int_equal(rot(f, "a", false, &all), TR_READY);
    assert_true(all);
    assert_int_equal(rot(f, "b", false, NULL), TR_MAINT);
    fleet_health_free(f);
}

static void test_fail_open(void **st) {
    fleet_health *f = open_fleet("fail-open");
    bool all;
    assert_int_equal(rot(f, "a", true, NULL), TR_READY);
    assert_int_equal(rot(f, "b", false, NULL), TR_MAINT);
    assert_int_equal(rot(f, "a", false, &all), TR_READY);
    assert_true(all);
    /* b was out; with nothing healthy every Active stamp serves. */
    assert_int_equal(rot(f, "b", false, &all), TR_READY);
    assert_true(all);
    assert_true(gauge() == 1);
    fleet_health_free(f);
}

static void test_fail_closed(void **st) {
    fleet_health *f = open_fleet("fail-closed");
    bool all;
    assert_int_equal(rot(f, "a", true, NULL), TR_READY);
    assert_int_equal(rot(f, "b", true, NULL), TR_READY);
    assert_int_equal(rot(f, "a", false, NULL), TR_MAINT);
    /* b, the last one serving, fails: out as well. */
    assert_int_equal(rot(f, "b", false, &all), TR_MAINT);
    assert_true(all);
    assert_true(gauge() == 1);
    fleet_health_free(f);
}

/* The last healthy stamp leaves Active (drain, standby, delete): the ones
 * left are all unhealthy, at once for the gauge and for the next answers. */
static void test_last_healthy_leaves(void **st) {
    fleet_health *f = open_fleet("last-healthy");
    bool all;
    assert_int_equal(rot(f, "a", true, NULL), TR_READY);
    assert_int_equal(rot(f, "b", false, NULL), TR_MAINT);
    assert_int_equal(rot(f, "c", false, NULL), TR_MAINT);
    assert_true(gauge() == 0);
    fleet_forget(f, "a");
    assert_true(fleet_all_unhealthy(f));
    assert_true(gauge() == 1);
    /* b and c were out of rotation: last-healthy does not take them back. */
    assert_int_equal(rot(f, "b", false, &all), TR_MAINT);
    assert_true(all);
    assert_int_equal(rot(f, "c", false, NULL), TR_MAINT);
    /* One of them recovers. */
    assert_int_equal(rot(f, "c", true, &all), TR_READY);
    assert_false(all);
    assert_true(gauge() == 0);
    fleet_health_free(f);

    /* fail-open: the same departure puts the unhealthy ones back. */
    f = open_fleet("fail-open");
    assert_int_equal(rot(f, "a", true, NULL), TR_READY);
    assert_int_equal(rot(f, "b", false, NULL), TR_MAINT);
    fleet_forget(f, "a");
    assert_int_equal(rot(f, "b", false, &all), TR_READY);
    assert_true(all);
    fleet_health_free(f);
}

static void test_forget(void **st) {
    fleet_health *f = open_fleet("last-healthy");
    bool all;
    assert_int_equal(rot(f, "a", true, NULL), TR_READY);
    assert_int_equal(rot(f, "b", false, NULL), TR_MAINT);
    /* A forgotten unhealthy stamp no longer counts ... */
    fleet_forget(f, "b");
    assert_false(fleet_all_unhealthy(f));
    /* ... and forgetting what is not there is nothing. */
    fleet_forget(f, "never-seen");
    fleet_forget(f, "b");
    /* Back in Active (an activation puts it in rotation), then failing
     * while a is unhealthy: it is in rotation, so it keeps serving. */
    assert_int_equal(rot(f, "a", false, &all), TR_READY); /* alone and was serving */
    assert_true(all);
    assert_int_equal(rot(f, "b", false, &all), TR_READY);
    assert_true(all);
    /* Everything forgotten: no Active stamp, so not "all unhealthy". */
    fleet_forget(f, "a");
    fleet_forget(f, "b");
    assert_false(fleet_all_unhealthy(f));
    assert_true(gauge() == 0);
    fleet_health_free(f);
}

/* A full table: a stamp beyond it still gets an answer (it does not count). */
static void test_full(void **st) {
    fleet_health *f = open_fleet("fail-closed");
    char name[32];
    for (int i = 0; i < FLEET_MAX; i++) {
        snprintf(name, sizeof(name), "s-%d", i);
        assert_int_equal(rot(f, name, true, NULL), TR_READY);
    }
    assert_int_equal(rot(f, "one-more", true, NULL), TR_READY);
    assert_int_equal(rot(f, "one-more", false, NULL), TR_MAINT);
    snprintf(name, sizeof(name), "s-%d", FLEET_MAX / 2);
    fleet_forget(f, name);
    assert_int_equal(rot(f, "one-more", false, NULL), TR_MAINT); /* now counted */
    assert_false(fleet_all_unhealthy(f));
    fleet_health_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_policy),
        cmocka_unit_test(test_some_healthy),
        cmocka_unit_test(test_last_healthy),
        cmocka_unit_test(test_fail_open),
        cmocka_unit_test(test_fail_closed),
        cmocka_unit_test(test_last_healthy_leaves),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
