/*
 * test_autoscale_collect.c - the autoscaler's measurements: a latency
 * histogram parsed from /metrics text (summed over replicas and labels),
 * the difference of two samples for a window, its p99 as Prometheus's
 * histogram_quantile computes it, and CPU ticks of a process that burns.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "autoscale/collect.h"

static const char *body_a =
    "# HELP stamp_workload_request_duration_seconds Request latency\n"
    "# TYPE stamp_workload_request_duration_seconds histogram\n"
    "stamp_workload_request_duration_seconds_bucket{le=\"0.1\"} 90\n"
    "stamp_workload_request_duration_seconds_bucket{le=\"0.5\"} 98\n"
    "stamp_workload_request_duration_seconds_bucket{le=\"1\"} 100\n"
    "stamp_workload_request_duration_seconds_bucket{le=\"+Inf\"} 100\n"
    "stamp_workload_request_duration_seconds_sum 12.5\n"
    "stamp_workload_request_duration_seconds_count 100\n"
    "stamp_workload_active_connections 3\n";

static const char *body_b =
    "stamp_workload_request_duration_seconds_bucket{path=\"/work\",le=\"0.1\"} 0\n"
    "stamp_workload_request_duration_seconds_bucket{path=\"/work\",le=\"0.5\"} 0\n"
    "stamp_workload_request_duration_seconds_bucket{path=\"/work\",le=\"1\"} 100\n"
    "stamp_workload_request_duration_seconds_bucket{path=\"/work\",le=\"+Inf\"} 100\n";

static void test_parse_merge_quantile(void **state) {
    (void)state;
    as_hist a, b;
    serr e = {0};
    assert_int_equal(as_hist_parse(body_a, "stamp_workload_request_duration_seconds", &a, &e), 0);
    assert_int_equal(a.n, 4);
    assert_true(isinf(a.le[3]));
    /* 99th of 100 observations: the 99th is in (0.5, 1]: 0.5 + 0.5 * (99-98)/2. */
    assert_true(fabs(as_hist_quantile(&a, 0.99) - 0.75) < 1e-9);
    /* 50th: within (0, 0.1]. */
    assert_true(as_hist_quantile(&a, 0.5) <= 0.1);
    assert_int_equal(as_hist_parse(body_b, "stamp_workload_request_duration_seconds", &b, &e), 0);
    assert_int_equal(as_hist_add(&a, &b), 0);
    assert_true(fabs(a.count[3] - 200) < 1e-9);
    /* Merged: 100 slow ones pull the p99 toward 1 s. */
    assert_true(as_hist_quantile(&a, 0.99) > 0.9);
    assert_int_equal(as_hist_parse(body_a, "no_such_histogram", &b, &e), SE_NOTFOUND);
}

static void test_window_delta(void **state) {
    (void)state;
    as_hist before, now, w;
    serr e = {0};
    assert_int_equal(as_hist_parse(body_a, "stamp_workload_request_duration_seconds", &before, &e), 0);
    now = before;
    /* In the window: 10 more requests, all slow (in (0.5, 1]). */
    now.count[2] += 10;
    now.count[3] += 10;
    as_hist_delta(&now, &before, &w);
    assert_true(fabs(w.count[3] - 10) < 1e-9);
    assert_true(as_hist_quantile(&w, 0.99) > 0.5);
    /* No request in the window: no quantile. */
    as_hist_delta(&before, &before, &w);
    assert_true(as_hist_quantile(&w, 0.99) < 0);
    /* A replica restarted (counters went down): counted from zero. */
    as_hist_delta(&before, &now, &w);
    assert_true(w.count[3] >= 0);
}

static void test_proc_usage(void **state) {
    (void)state;
    int pid = (int)getpid();
    uint64_t t0, t1, rss;
    assert_int_equal(as_proc_usage(&pid, 1, &t0, &rss), 0);
    assert_true(rss > 0);
    /* Burn CPU until the tick count moves (a property, not a timing). */
    volatile double x = 0;
    do {
        for (int i = 0; i < 1000000; i++) x += i * 0.5;
        as_proc_usage(&pid, 1, &t1, &rss);
    } while (t1 == t0);
    assert_true(t1 > t0);
    int gone = 0x7ffffff0;
    assert_int_equal(as_proc_usage(&gone, 1, &t1, &rss), 0);
    assert_true(t1 == 0 && rss == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_merge_quantile),
        cmocka_unit_test(test_window_delta),
        cmocka_unit_test(test_proc_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
