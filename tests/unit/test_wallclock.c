/*
 * test_wallclock.c - ages of wall-clock timestamps (util/wallclock.h): a
 * timestamp taken now is 0 old and ages with the monotonic clock; one from
 * before (a restart) takes its age from the wall clock once; one ahead is
 * negative; many more timestamps than the table holds are all still
 * answered.  The steps of the clock themselves are t_fault_clock's (stampd
 * under libfaketime).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/util.h"
#include "util/wallclock.h"

static void test_stamp_ages(void **st) {
    (void)st;
    int64_t t = wall_stamp_ms();
    int64_t a0 = wall_age_ms(t);
    assert_true(a0 >= 0 && a0 < 1000);
    sleep_ms(30);
    int64_t a1 = wall_age_ms(t);
    assert_true(a1 >= a0 + 30);
    assert_int_equal(wall_age_ms(0), 0);
}

static void test_first_sight(void **st) {
    (void)st;
    /* Written an hour ago by an earlier stampd; a deadline 10 min ahead. */
    int64_t hour_ago = now_ms() - 3600 * 1000;
    int64_t a = wall_age_ms(hour_ago);
    assert_true(a >= 3600 * 1000 && a < 3600 * 1000 + 1000);
    int64_t ahead = now_ms() + 600 * 1000;
    int64_t b = wall_age_ms(ahead);
    assert_true(b <= -599 * 1000 && b > -601 * 1000);
    /* Seen once, it then ages on the monotonic clock. */
    sleep_ms(20);
    assert_true(wall_age_ms(hour_ago) >= a + 20);
}

static void test_many(void **st) {
    (void)st;
    /* Four times the table: evicted entries are simply seen again. */
    int64_t base = now_ms() - 10 * 1000;
    for (int64_t i = 0; i < 4 * WALL_ANCHORS; i++) {
        int64_t a = wall_age_ms(base - i);
        assert_true(a >= 10 * 1000 + i && a < 10 * 1000 + i + 5000);
    }
    int64_t t = wall_stamp_ms();
    assert_true(wall_age_ms(t) >= 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stamp_ages),
        cmocka_unit_test(test_first_sight),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
