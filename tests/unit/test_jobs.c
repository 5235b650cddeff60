/*
 * test_jobs.c - the job pool: a full queue refuses (and counts it), a key
 * already queued or running starts nothing new, done callbacks fire with
 * the id, results can be read and then expire (by age and by count), an
 * unknown id is unknown, and stop waits for running jobs and ends queued
 * ones unrun.  Real threads; jobs wait on a gate the test opens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "reconcile/jobs.h"
#include "util/metrics.h"
#include "util/util.h"

/* A gate jobs wait on, and what they and their callbacks saw. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int ran, running, freed, dones;
static uint64_t last_done_id;
static char last_done_key[64];

static void reset(void) {
    pthread_mutex_lock(&mu);
    gate_open = false;
    ran = running = freed = dones = 0;
    last_done_id = 0;
    last_done_key[0] = '\0';
    pthread_mutex_unlock(&mu);
}

static void open_gate(void) {
    pthread_mutex_lock(&mu);
    gate_open = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int counter(int *what) {
    pthread_mutex_lock(&mu);
    int n = *what;
    pthread_mutex_unlock(&mu);
    return n;
}

/* Waits (bounded) until *what reaches n. */
static void await(int *what, int n) {
    for (int i = 0; i < 500 && counter(what) < n; i++) sleep_ms(10);
    assert_int_equal(counter(what), n);
}

/* arg: an int the job returns as {"n": arg}; waits for the gate. */
static int gated(void *arg, json_t **result, serr *e) {
    pthread_mutex_lock(&mu);
    running++;
    while (!gate_open) pthread_cond_wait(&cv, &mu);
    ran++;
    running--;
    pthread_mutex_unlock(&mu);
    int n = *(int *)arg;
    *result = json_pack("{s:i}", "n", n);
    if (n < 0) return serr_set(e, SE_IO, "job %d failed", n);
    return 0;
}

/* Sleeps 200 ms, then marks that it ended. */
static int slow(void *arg, json_t **result, serr *e) {
    (void)arg;
    (void)result;
    (void)e;
    sleep_ms(200);
    pthread_mutex_lock(&mu);
    ran++;
    pthread_mutex_unlock(&mu);
    return 0;
}

static void free_int(void *p) {
    pthread_mutex_lock(&mu);
    freed++;
    pthread_mutex_unlock(&mu);
    free(p);
}

static int *int_new(int v) {
    int *p = malloc(sizeof(*p));
    assert_non_null(p);
    *p = v;
    return p;
}

static void on_done(void *arg, uint64_t id, const char *key) {
    (void)arg;
    pthread_mutex_lock(&mu);
    dones++;
    last_done_id = id;
    str_copy(last_done_key, sizeof(last_done_key), key);
    pthread_mutex_unlock(&mu);
}

static int submit(job_pool *p, const char *key, int v, uint64_t *id, serr *e) {
    return jobs_submit(p, key, gated, int_new(v), free_int, on_done, NULL, id, e);
}

static void test_full_queue_refuses(void **state) {
    (void)state;
    reset();
    job_pool *p;
    serr e = {0};
    assert_int_equal(jobs_start(1, 2, &p, &e), 0);
    double before = metrics_get("stamp_jobs_rejected_total", "");
    uint64_t id1, id2, id3, id4;
    assert_int_equal(submit(p, "a", 1, &id1, &e), 0);
    await(&running, 1); /* a runs; the queue is empty again */
    assert_int_equal(submit(p, "b", 2, &id2, &e), 0);
    assert_int_equal(submit(p, "c", 3, &id3, &e), 0);
    assert_int_equal(metrics_get("stamp_jobs_queued", ""), 2);
    assert_int_equal(metrics_get("stamp_jobs_running", ""), 1);
    assert_int_equal(submit(p, "d", 4, &id4, &e), SE_LIMIT);
    assert_non_null(strstr(e.msg, "queue is full"));
    assert_int_equal(id4, 0);
    assert_int_equal(metrics_get("stamp_jobs_rejected_total", ""), before + 1);
    assert_int_equal(counter(&freed), 1); /* the refused job's argument */
    assert_int_equal(jobs_poll(p, id1, NULL), JOB_RUNNING);
    assert_int_equal(jobs_poll(p, id2, NULL), JOB_QUEUED);
    open_gate();
    await(&dones, 3);
    assert_int_equal(counter(&ran), 3);
    assert_int_equal(counter(&freed), 4);
    assert_int_equal(metrics_get("stamp_jobs_queued", ""), 0);
    assert_int_equal(metrics_get("stamp_jobs_running", ""), 0);
    jobs_free(p);
}

static void test_same_key_runs_once(void **state) {
    (void)state;
    reset();
    job_pool *p;
    serr e = {0};
    assert_int_equal(jobs_start(2, 8, &p, &e), 0);
    uint64_t a1, a2, b1, a3;
    int w1 = 0, w2 = 0;
    assert_int_equal(jobs_submit(p, "reap/ns1", gated, int_new(7), free_int, on_done, &w1, &a1, &e), 0);
    /* while queued or running: the same id, nothing new started */
    assert_int_equal(jobs_submit(p, "reap/ns1", gated, int_new(8), free_int, on_done, &w2, &a2, &e), 0);
    assert_true(a1 == a2);
    assert_int_equal(counter(&freed), 1); /* the second one's argument, at once */
    assert_true(jobs_find(p, "reap/ns1") == a1);
    assert_true(jobs_find(p, "reap/other") == 0);
    assert_int_equal(submit(p, "reap/ns2", 9, &b1, &e), 0);
    assert_true(b1 != a1);
    await(&running, 2);
    open_gate();
    await(&dones, 3); /* both submitters of ns1 told, and ns2's */
    assert_int_equal(counter(&ran), 2);
    job_result r;
    assert_int_equal(jobs_poll(p, a1, &r), JOB_DONE);
    assert_int_equal(json_integer_value(json_object_get(r.result, "n")), 7); /* the first one's */
    job_result_free(&r);
    /* ended: the key starts a new job */
    reset();
    open_gate();
    assert_int_equal(submit(p, "reap/ns1", 10, &a3, &e), 0);
    assert_true(a3 != a1);
    await(&dones, 1);
    assert_int_equal(counter(&ran), 1);
    jobs_free(p);
}

static void test_done_result_expiry(void **state) {
    (void)state;
    reset();
    job_pool *p;
    serr e = {0};
    assert_int_equal(jobs_start(1, 8, &p, &e), 0);
    jobs_keep(p, 2, 60000);
    open_gate();
    uint64_t ok_id, bad_id;
    assert_int_equal(submit(p, "ok", 5, &ok_id, &e), 0);
    await(&dones, 1);
    assert_true(last_done_id == ok_id);
    assert_string_equal(last_done_key, "ok");
    job_result r;
    assert_int_equal(jobs_poll(p, ok_id, &r), JOB_DONE);
    assert_int_equal(r.rc, 0);
    assert_int_equal(json_integer_value(json_object_get(r.result, "n")), 5);
    assert_true(r.finished_ms >= r.started_ms && r.started_ms >= r.queued_ms && r.queued_ms > 0);
    /* each poll hands out its own copy */
    json_object_set_new(r.result, "n", json_integer(99));
    job_result_free(&r);
    assert_int_equal(jobs_poll(p, ok_id, &r), JOB_DONE);
    assert_int_equal(json_integer_value(json_object_get(r.result, "n")), 5);
    job_result_free(&r);
    /* a failure keeps its code, message and result */
    assert_int_equal(submit(p, "bad", -1, &bad_id, &e), 0);
    await(&dones, 2);
    assert_int_equal(jobs_poll(p, bad_id, &r), JOB_DONE);
    assert_int_equal(r.rc, SE_IO);
    assert_string_equal(r.message, "job -1 failed");
    assert_non_null(r.result);
    job_result_free(&r);
    /* by count: a third result pushes out the oldest */
    uint64_t third;
    assert_int_equal(submit(p, "third", 3, &third, &e), 0);
    await(&dones, 3);
    assert_int_equal(jobs_poll(p, ok_id, NULL), JOB_UNKNOWN);
    assert_int_equal(jobs_poll(p, bad_id, NULL), JOB_DONE);
    /* by age */
    jobs_keep(p, 2, 100);
    sleep_ms(150);
    assert_int_equal(jobs_poll(p, bad_id, &r), JOB_UNKNOWN);
    assert_null(r.result);
    assert_int_equal(jobs_poll(p, third, NULL), JOB_UNKNOWN);
    assert_int_equal(jobs_poll(p, 12345, NULL), JOB_UNKNOWN);
    jobs_free(p);
}

static void test_stop_waits(void **state) {
    (void)state;
    reset();
    job_pool *p;
    serr e = {0};
    assert_int_equal(jobs_start(1, 8, &p, &e), 0);
    uint64_t s1, q1;
    assert_int_equal(jobs_submit(p, "slow", slow, NULL, NULL, on_done, NULL, &s1, &e), 0);
    assert_int_equal(submit(p, "queued", 1, &q1, &e), 0);
    for (int i = 0; i < 100 && jobs_poll(p, s1, NULL) != JOB_RUNNING; i++) sleep_ms(5);
    assert_int_equal(jobs_poll(p, s1, NULL), JOB_RUNNING);
    jobs_stop(p);
    /* the running one ended before stop returned; the queued one never ran */
    assert_int_equal(counter(&ran), 1);
    assert_int_equal(counter(&dones), 2);
    assert_int_equal(counter(&freed), 1);
    assert_true(jobs_stopping(p));
    job_result r;
    assert_int_equal(jobs_poll(p, q1, &r), JOB_DONE);
    assert_int_equal(r.rc, SE_UNAVAIL);
    job_result_free(&r);
    assert_int_equal(jobs_poll(p, s1, &r), JOB_DONE);
    assert_int_equal(r.rc, 0);
    job_result_free(&r);
    uint64_t late;
    assert_int_equal(submit(p, "late", 1, &late, &e), SE_UNAVAIL);
    assert_int_equal(counter(&freed), 2);
    jobs_free(p);
    jobs_free(NULL);
}

static void test_ids_differ_across_starts(void **state) {
    (void)state;
    reset();
    open_gate();
    job_pool *p1, *p2;
    serr e = {0};
    uint64_t i1, i2;
    assert_int_equal(jobs_start(1, 4, &p1, &e), 0);
    assert_int_equal(submit(p1, "k", 1, &i1, &e), 0);
    jobs_free(p1);
    sleep_ms(2);
    assert_int_equal(jobs_start(1, 4, &p2, &e), 0);
    assert_int_equal(jobs_poll(p2, i1, NULL), JOB_UNKNOWN);
    assert_int_equal(submit(p2, "k", 1, &i2, &e), 0);
    assert_true(i2 > i1);
    jobs_free(p2);
    char big[JOBS_KEY_MAX + 8];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(jobs_start(1, 4, &p1, &e), 0);
    assert_int_equal(submit(p1, big, 1, &i1, &e), SE_INVAL);
    assert_int_equal(jobs_start(0, 4, &p2, &e), SE_INVAL);
    jobs_free(p1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_queue_refuses),
        cmocka_unit_test(test_same_key_runs_once),
        cmocka_unit_test(test_done_result_expiry),
        cmocka_unit_test(test_stop_waits),
        cmocka_unit_test(test_ids_differ_across_starts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
