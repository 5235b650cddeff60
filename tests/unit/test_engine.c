/*
 * test_engine.c - the engine's requeue policy, driven through a fake
 * controller registered for a test kind against a temporary SQLite store:
 * success forgets failures, transient failures exhaust into one Stalled
 * condition and stop, a configuration error stalls at once, an enqueue from
 * the API (a change) runs a stalled key again and its success clears the
 * condition, the resync wakes a stalled key at most once per backoff-max,
 * and a full queue is an error the caller sees and a metric.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/config.h"
#include "reconcile/engine.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

#define KIND "Fake"
#define KEY "Fake/a"
#define RETRIES 3

/* The fake controller: returns `rc` on its first `fail_n` calls, then 0,
 * and answers `answer`. */
static pthread_mutex_t fmu = PTHREAD_MUTEX_INITIALIZER;
static int calls, fake_rc, fail_n = INT32_MAX;
static int64_t fake_answer = CTL_DONE;

static int fake_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    (void)c;
    pthread_mutex_lock(&fmu);
    int n = ++calls, rc = n <= fail_n ? fake_rc : 0;
    *requeue_ms = fake_answer;
    pthread_mutex_unlock(&fmu);
    if (rc) return serr_set(e, rc, "fake failure %d of %s", n, name);
    return 0;
}

static void fake_set(int rc, int64_t answer) {
    pthread_mutex_lock(&fmu);
    fake_rc = rc;
    fake_answer = answer;
    pthread_mutex_unlock(&fmu);
}

static int fake_calls(void) {
    pthread_mutex_lock(&fmu);
    int n = calls;
    pthread_mutex_unlock(&fmu);
    return n;
}

typedef struct fixture {
    char dir[64];
    char path[128];
    stamp_config cfg;
    ctl_ctx c;
    engine *en;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    str_copy(f->dir, sizeof(f->dir), "/tmp/stamp-engine-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/stamp.db", f->dir);
    serr e = {0};
    assert_int_equal(store_open_sqlite(f->path, &f->c.st, &e), 0);
    config_defaults(&f->cfg);
    f->cfg.backoff_retries = RETRIES;
    f->c.cfg = &f->cfg;
    wq_backoff bo = {.initial_ms = 5, .max_ms = 20, .factor = 2.0, .jitter = 0};
    f->c.q = wq_new(64, &bo);
    assert_non_null(f->c.q);
    pthread_mutex_lock(&fmu);
    calls = 0;
    fake_rc = 0;
    fail_n = INT32_MAX;
    fake_answer = CTL_DONE;
    pthread_mutex_unlock(&fmu);
    engine_unregister_all();
    assert_int_equal(engine_register(KIND, fake_reconcile, true), 0);
    assert_int_equal(engine_register(KIND, fake_reconcile, true), SE_EXISTS);
    resource r;
    resource_init(&r);
    str_copy(r.kind, sizeof(r.kind), KIND);
    str_copy(r.name, sizeof(r.name), "a");
    assert_int_equal(store_create(f->c.st, &r, NULL, &e), 0);
    resource_free(&r);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    engine_stop(f->en);
    wq_free(f->c.q);
    store_close(f->c.st);
    assert_int_equal(remove_tree(f->dir, NULL), 0);
    engine_unregister_all();
    free(f);
    return 0;
}

/* The Stalled condition's status ("True", "False") or "" when absent;
 * its reason and message into the buffers when given. */
static void stalled(fixture *f, char *st, size_t stlen, char *reason, size_t rlen, char *msg,
                    size_t mlen) {
    resource r;
    resource_init(&r);
    serr e = {0};
    assert_int_equal(store_get(f->c.st, KIND, "a", &r, &e), 0);
    str_copy(st, stlen, "");
    size_t i;
    json_t *cd;
    json_array_foreach(json_object_get(r.status, "conditions"), i, cd) {
        if (strcmp(jstr(cd, "type", ""), "Stalled") != 0) continue;
        str_copy(st, stlen, jstr(cd, "status", ""));
        if (reason) str_copy(reason, rlen, jstr(cd, "reason", ""));
        if (msg) str_copy(msg, mlen, jstr(cd, "message", ""));
        assert_true(strlen(jstr(cd, "lastTransitionTime", "")) >= 20);
    }
    resource_free(&r);
}

static bool stalled_is(fixture *f, const char *want) {
    char st[16];
    stalled(f, st, sizeof(st), NULL, 0, NULL, 0);
    return strcmp(st, want) == 0;
}

static int events_with_reason(fixture *f, const char *reason) {
    json_t *evs = NULL;
    serr e = {0};
    assert_int_equal(store_events(f->c.st, KIND, "a", 0, &evs, &e), 0);
    int n = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev) n += strcmp(jstr(ev, "reason", ""), reason) == 0;
    json_decref(evs);
    return n;
}

#define WAIT_UNTIL(cond)                                                                    \
    do {                                                                                   \
        int64_t limit_ = mono_ms() + 5000;                                                 \
        while (!(cond) && mono_ms() < limit_) sleep_ms(2);                                 \
        assert_true(cond);                                                                 \
    } while (0)

static void start(fixture *f) {
    serr e = {0};
    assert_int_equal(engine_start(&f->c, 1, &f->en, &e), 0);
}

static void test_success_forgets(void **state) {
    fixture *f = *state;
    fake_set(SE_IO, CTL_DONE);
    pthread_mutex_lock(&fmu);
    fail_n = RETRIES - 1;
    pthread_mutex_unlock(&fmu);
    start(f); /* the resync at start enqueues Fake/a */
    WAIT_UNTIL(fake_calls() == RETRIES);
    WAIT_UNTIL(wq_failures(f->c.q, KEY) == 0);
    sleep_ms(60); /* longer than backoff-max: nothing is retried */
    assert_int_equal(fake_calls(), RETRIES);
    /* Failures start again from zero: RETRIES - 1 more do not stall. */
    pthread_mutex_lock(&fmu);
    fail_n = 2 * RETRIES - 1;
    pthread_mutex_unlock(&fmu);
    assert_int_equal(ctl_wake(&f->c, KIND, "a"), 0);
    WAIT_UNTIL(fake_calls() == 2 * RETRIES);
    WAIT_UNTIL(wq_failures(f->c.q, KEY) == 0);
    assert_true(stalled_is(f, ""));
    assert_false(wq_stalled(f->c.q, KEY));
}

static void test_retries_exhaust_into_stalled(void **state) {
    fixture *f = *state;
    fake_set(SE_IO, CTL_DONE);
    start(f);
    WAIT_UNTIL(stalled_is(f, "True"));
    sleep_ms(80); /* four times backoff-max */
    assert_int_equal(fake_calls(), RETRIES);
    char st[16], reason[64], msg[128];
    stalled(f, st, sizeof(st), reason, sizeof(reason), msg, sizeof(msg));
    assert_string_equal(reason, "RetriesExhausted");
    assert_string_equal(msg, "fake failure 3 of a");
    assert_int_equal(events_with_reason(f, "Stalled"), 1);
    /* The periodic resync leaves it alone. */
    engine_resync(f->en);
    sleep_ms(40);
    assert_int_equal(fake_calls(), RETRIES);
    /* A wake-up without a change runs it once; failing again writes
     * nothing new and does not requeue it. */
    assert_int_equal(ctl_wake(&f->c, KIND, "a"), 0);
    WAIT_UNTIL(fake_calls() == RETRIES + 1);
    sleep_ms(60);
    assert_int_equal(fake_calls(), RETRIES + 1);
    assert_int_equal(events_with_reason(f, "Stalled"), 1);
    assert_true(stalled_is(f, "True"));
}

static void test_config_error_stalls_at_once(void **state) {
    fixture *f = *state;
    fake_set(SE_INVAL, CTL_DONE);
    start(f);
    WAIT_UNTIL(stalled_is(f, "True"));
    sleep_ms(60);
    assert_int_equal(fake_calls(), 1);
    char st[16], reason[64], msg[128];
    stalled(f, st, sizeof(st), reason, sizeof(reason), msg, sizeof(msg));
    assert_string_equal(reason, "ConfigurationError");
    assert_string_equal(msg, "fake failure 1 of a");
}

static void test_resync_paces_stalled(void **state) {
    fixture *f = *state;
    f->cfg.backoff_max_ms = 150;
    fake_set(SE_INVAL, CTL_DONE);
    start(f);
    WAIT_UNTIL(wq_stalled(f->c.q, KEY));
    engine_resync(f->en); /* within backoff-max: skipped */
    sleep_ms(40);
    assert_int_equal(fake_calls(), 1);
    sleep_ms(150);
    engine_resync(f->en); /* past it: one run, which stalls again */
    WAIT_UNTIL(fake_calls() == 2);
    WAIT_UNTIL(wq_stalled_since(f->c.q, KEY) >= 0 &&
               mono_ms() - wq_stalled_since(f->c.q, KEY) < 100);
    engine_resync(f->en);
    sleep_ms(40);
    assert_int_equal(fake_calls(), 2);
    assert_int_equal(events_with_reason(f, "Stalled"), 1);
    /* A stampd that restarted has no mark: the resync runs it at once and
     * marks it, so that a success clears the condition. */
    wq_stall(f->c.q, KEY, false);
    fake_set(0, CTL_DONE);
    engine_resync(f->en);
    WAIT_UNTIL(stalled_is(f, "False"));
    assert_int_equal(fake_calls(), 3);
}

static void test_change_after_stall_runs_again(void **state) {
    fixture *f = *state;
    fake_set(SE_INVAL, CTL_DONE);
    start(f);
    WAIT_UNTIL(stalled_is(f, "True"));
    WAIT_UNTIL(wq_stalled(f->c.q, KEY));
    /* Still failing: the change gets its own try, and stalls again. */
    assert_int_equal(ctl_enqueue(&f->c, KIND, "a"), 0);
    WAIT_UNTIL(fake_calls() == 2);
    /* Fixed: the next change runs it, and its success clears Stalled. */
    fake_set(0, CTL_DONE);
    assert_int_equal(ctl_enqueue(&f->c, KIND, "a"), 0);
    WAIT_UNTIL(stalled_is(f, "False"));
    WAIT_UNTIL(!wq_stalled(f->c.q, KEY));
    assert_int_equal(fake_calls(), 3);
    assert_int_equal(events_with_reason(f, "Unstalled"), 1);
    WAIT_UNTIL(wq_failures(f->c.q, KEY) == 0);
}

static void test_transient_change_gets_retries_again(void **state) {
    fixture *f = *state;
    fake_set(SE_UNAVAIL, CTL_DONE);
    start(f);
    WAIT_UNTIL(stalled_is(f, "True"));
    WAIT_UNTIL(wq_stalled(f->c.q, KEY));
    assert_int_equal(fake_calls(), RETRIES);
    assert_int_equal(ctl_enqueue(&f->c, KIND, "a"), 0);
    WAIT_UNTIL(fake_calls() == 2 * RETRIES);
    sleep_ms(60);
    assert_int_equal(fake_calls(), 2 * RETRIES);
    assert_int_equal(events_with_reason(f, "Stalled"), 1);
}

static void test_conflict_requeues_now_uncounted(void **state) {
    fixture *f = *state;
    fake_set(SE_CONFLICT, CTL_DONE);
    start(f);
    WAIT_UNTIL(fake_calls() >= 2 * RETRIES);
    fake_set(0, CTL_DONE);
    sleep_ms(20);
    assert_true(stalled_is(f, ""));
    WAIT_UNTIL(wq_failures(f->c.q, KEY) == 0);
}

static void test_backoff_answer_does_not_stall(void **state) {
    fixture *f = *state;
    fake_set(0, CTL_BACKOFF);
    start(f);
    WAIT_UNTIL(fake_calls() >= RETRIES + 2);
    assert_true(wq_failures(f->c.q, KEY) >= RETRIES);
    fake_set(0, CTL_DONE);
    WAIT_UNTIL(wq_failures(f->c.q, KEY) == 0);
    assert_true(stalled_is(f, ""));
}

static void test_full_queue_reported(void **state) {
    (void)state;
    engine_metrics_register();
    wq_backoff bo = {.initial_ms = 5, .max_ms = 20, .factor = 2.0, .jitter = 0};
    ctl_ctx c = {.q = wq_new(2, &bo)};
    assert_non_null(c.q);
    double before = metrics_get(CTL_DROPPED_METRIC, "");
    assert_int_equal(ctl_enqueue(&c, KIND, "a"), 0);
    assert_int_equal(ctl_wake(&c, KIND, "b"), 0);
    assert_int_equal(ctl_enqueue(&c, KIND, "c"), SE_LIMIT);
    assert_int_equal(ctl_wake(&c, KIND, "d"), SE_LIMIT);
    assert_true(metrics_get(CTL_DROPPED_METRIC, "") == before + 2);
    /* A forgotten key frees its slot: fail "a" once, take both keys off,
     * and only the failure on record still holds one. */
    char k[WQ_KEY_MAX];
    wq_backoff_next(c.q, "Fake/a", NULL);
    assert_int_equal(wq_get(c.q, k, sizeof(k), 0), 0);
    wq_done(c.q, k);
    assert_int_equal(wq_get(c.q, k, sizeof(k), 0), 0);
    wq_done(c.q, k);
    assert_int_equal(ctl_wake(&c, KIND, "c"), 0);
    assert_int_equal(ctl_wake(&c, KIND, "d"), SE_LIMIT);
    wq_forget(c.q, "Fake/a");
    assert_int_equal(ctl_wake(&c, KIND, "d"), 0);
    wq_free(c.q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_exhaust_into_stalled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_error_stalls_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_paces_stalled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_after_stall_runs_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transient_change_gets_retries_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_requeues_now_uncounted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_answer_does_not_stall, setup, teardown),
        cmocka_unit_test(test_full_queue_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
