/*
 * test_queue.c - the work queue's contract: de-duplication, one worker per
 * key, re-add during processing, earliest delay wins, bounded size,
 * backoff growth, cap and jitter, and shutdown waking a blocked worker.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "reconcile/queue.h"
#include "util/util.h"

static const wq_backoff bo = {.initial_ms = 100, .max_ms = 1000, .factor = 2.0, .jitter = 0};

static void test_dedup(void **st) {
    wq *q = wq_new(16, &bo);
    char k[WQ_KEY_MAX];
    assert_int_equal(wq_add(q, "a"), 0);
    assert_int_equal(wq_add(q, "a"), 0);
    assert_int_equal(wq_add(q, "b"), 0);
    assert_int_equal(wq_len(q), 2);
    assert_int_equal(wq_get(q, k, sizeof(k), 0), 0);
    assert_string_equal(k, "a");
    assert_int_equal(wq_get(q, k, sizeof(k), 0), 0);
    assert_string_equal(k, "b");
    assert_int_equal(wq_get(q, k, sizeof(k), 0), SE_TIMEOUT);
    wq_done(q, "a");
    wq_done(q, "b");
    wq_free(q);
}

static void test_readd_while_processing(void **st) {
    wq *q = wq_new(16, &bo);
    char k[WQ_KEY_MAX];
    wq_add(q, "a");
    assert_int_equal(wq_get(q, k, sizeof(k), 0), 0);
    /* Added while a worker holds it: not handed to a second worker... */
    wq_add(q, "a");
    assert_int_equal(wq_get(q, k, sizeof(k), 0), SE_TIMEOUT);
    /* ...but handed out again once the first is done. */
    wq_done(q, "a");
    assert_int_equal(wq_get(q, k, sizeof(k), 0), 0);
    assert_string_equal(k, "a");
    wq_done(q, "a");
    assert_int_equal(wq_get(q, k, sizeof(k), 0), SE_TIMEOUT);
    wq_free(q);
}

static void test_delay(void **st) {
    wq *q = wq_new(16, &bo);
    char k[WQ_KEY_MAX];
    wq_add_after(q, "late", 10000);
    wq_add_after(q, "soon", 150);
    wq_add_after(q, "soon", 5000); /* later deadline: ignored */
    assert_int_equal(wq_get(q, k, sizeof(k), 0), SE_TIMEOUT);
    int64_t t0 = mono_ms();
    assert_int_equal(wq_get(q, k, sizeof(k), 3000), 0);
    assert_string_equal(k, "soon");
    int64_t took = mono_ms() - t0;
    assert_true(took >= 100); /* not before its time (ordering, not speed) */
    wq_done(q, "soon");
    /* An earlier deadline replaces a later one. */
    wq_add_after(q, "late", 50);
    assert_int_equal(wq_get(q, k, sizeof(k), 3000), 0);
    assert_string_equal(k, "late");
    wq_done(q, "late");
    wq_free(q);
}

static void test_bounded(void **st) {
    wq *q = wq_new(3, &bo);
    assert_int_equal(wq_add(q, "a"), 0);
    assert_int_equal(wq_add(q, "b"), 0);
    assert_int_equal(wq_add_after(q, "c", 1000), 0);
    assert_int_equal(wq_add(q, "d"), SE_LIMIT);
    assert_int_equal(wq_add(q, "a"), 0); /* known keys still fine */
    char k[WQ_KEY_MAX];
    wq_get(q, k, sizeof(k), 0);
    wq_done(q, k); /* frees a slot */
    assert_int_equal(wq_add(q, "d"), 0);
    char longkey[WQ_KEY_MAX + 10];
    memset(longkey, 'x', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    wq_get(q, k, sizeof(k), 0);
    wq_done(q, k);
    assert_int_equal(wq_add(q, longkey), SE_INVAL);
    wq_free(q);
}

static void test_backoff(void **st) {
    wq *q = wq_new(16, &bo);
    int f = 0;
    assert_int_equal(wq_backoff_next(q, "a", &f), 100);
    assert_int_equal(f, 1);
    assert_int_equal(wq_backoff_next(q, "a", &f), 200);
    assert_int_equal(wq_backoff_next(q, "a", &f), 400);
    assert_int_equal(wq_backoff_next(q, "a", &f), 800);
    assert_int_equal(wq_backoff_next(q, "a", &f), 1000);
    assert_int_equal(wq_backoff_next(q, "a", &f), 1000);
    assert_int_equal(f, 6);
    assert_int_equal(wq_backoff_next(q, "b", &f), 100); /* per key */
    wq_forget(q, "a");
    assert_int_equal(wq_backoff_next(q, "a", &f), 100);
    assert_int_equal(f, 1);
    wq_free(q);

    wq_backoff j = bo;
    j.jitter = 0.1;
    q = wq_new(16, &j);
    bool differ = false;
    int64_t first = -1;
    for (int i = 0; i < 50; i++) {
        wq_forget(q, "a");
        int64_t d = wq_backoff_next(q, "a", NULL);
        assert_true(d >= 90 && d <= 110);
        if (first < 0) first = d;
        else if (d != first) differ = true;
    }
    assert_true(differ);
    wq_free(q);
}

static void *getter(void *arg) {
    char k[WQ_KEY_MAX];
    return (void *)(intptr_t)wq_get(arg, k, sizeof(k), -1);
}

static void test_shutdown(void **st) {
    wq *q = wq_new(4, &bo);
    pthread_t t;
    pthread_create(&t, NULL, getter, q);
    sleep_ms(50);
    wq_shutdown(q);
    void *rv;
    pthread_join(t, &rv);
    assert_int_equal((int)(intptr_t)rv, SE_UNAVAIL);
    assert_int_equal(wq_add(q, "a"), SE_UNAVAIL);
    wq_free(q);
}

typedef struct race {
    wq *q;
    int concurrent[4];
    int max_seen;
    int handled;
    pthread_mutex_t mu;
} race;

static void *worker(void *arg) {
    race *r = arg;
    char k[WQ_KEY_MAX];
    while (wq_get(r->q, k, sizeof(k), 300) == 0) {
        int idx = k[0] - 'a';
        pthread_mutex_lock(&r->mu);
        int c = ++r->concurrent[idx];
        if (c > r->max_seen) r->max_seen = c;
        r->handled++;
        pthread_mutex_unlock(&r->mu);
        sleep_ms(1);
        pthread_mutex_lock(&r->mu);
        r->concurrent[idx]--;
        pthread_mutex_unlock(&r->mu);
        wq_done(r->q, k);
    }
    return NULL;
}

static void test_one_worker_per_key(void **st) {
    race r = {.q = wq_new(8, &bo)};
    pthread_mutex_init(&r.mu, NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, &r);
    for (int i = 0; i < 400; i++) {
        char k[2] = {(char)('a' + i % 4), 0};
        wq_add(r.q, k);
        if (i % 16 == 0) sleep_ms(1);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_int_equal(r.max_seen, 1);
    assert_true(r.handled >= 4);
    wq_free(r.q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup),   cmocka_unit_test(test_readd_while_processing),
        cmocka_unit_test(test_delay),   cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_backoff), cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_one_worker_per_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
