/*
 * test_steps.c - the step runner: a sequence resumes after a failure at
 * every step (and after a "crash": progress reloaded from what was last
 * persisted), steps before the failure never run again, a waiting step is
 * run again, a redo goes back and is bounded, and an unknown step in status
 * is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "reconcile/steps.h"

#define N 5

typedef struct world {
    int runs[N];       /* how often each step's run was called */
    int fail_at;       /* step that fails once, -1: none */
    int wait_at;       /* step that waits once, -1: none */
    int redo_from;     /* step that asks to redo step 1 once, -1: none */
    int redo_always;   /* 1: the redo step asks every time */
    int persists;
    char saved[512];   /* the progress as last persisted (what survives a crash) */
    json_t *progress;
} world;

static int run_step(world *w, int i, int *outcome, const char **redo, serr *e) {
    w->runs[i]++;
    if (i == w->fail_at) {
        w->fail_at = -1;
        return serr_set(e, SE_IO, "step %d failed", i);
    }
    if (i == w->wait_at) {
        w->wait_at = -1;
        *outcome = STEP_WAIT;
        return 0;
    }
    if (i == w->redo_from) {
        if (!w->redo_always) w->redo_from = -1;
        *outcome = STEP_REDO;
        *redo = "s1";
        return 0;
    }
    *outcome = STEP_NEXT;
    return 0;
}

#define STEP(k)                                                                              \
    static int run##k(void *ctx, json_t *p, int *o, const char **r, serr *e) {                \
        (void)p;                                                                             \
        return run_step(ctx, k, o, r, e);                                                    \
    }
STEP(0)
STEP(1)
STEP(2)
STEP(3)
STEP(4)

static int persist(void *ctx, serr *e) {
    (void)e;
    world *w = ctx;
    w->persists++;
    char *s = json_dumps(w->progress, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(s);
    assert_true(strlen(s) < sizeof(w->saved));
    memcpy(w->saved, s, strlen(s) + 1);
    free(s);
    return 0;
}

static const step_def defs[N] = {{"s0", run0}, {"s1", run1}, {"s2", run2}, {"s3", run3}, {"s4", run4}};
static const step_seq seq = {.what = "test", .steps = defs, .n = N, .persist = persist};

static void world_init(world *w) {
    memset(w, 0, sizeof(*w));
    w->fail_at = w->wait_at = w->redo_from = -1;
    w->progress = json_object();
}

/* A crash: what is in memory is lost, what was persisted comes back. */
static void crash(world *w) {
    json_decref(w->progress);
    w->progress = json_loads(w->saved, 0, NULL);
    assert_non_null(w->progress);
}

static void test_runs_in_order_once(void **state) {
    (void)state;
    world w;
    world_init(&w);
    bool done;
    serr e = {0};
    assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), 0);
    assert_true(done);
    for (int i = 0; i < N; i++) assert_int_equal(w.runs[i], 1);
    assert_string_equal(steps_current(&seq, w.progress), "done");
    for (int i = 0; i < N; i++) assert_true(steps_done(w.progress, defs[i].name));
    /* Before and after each step. */
    assert_int_equal(w.persists, N + 1); /* one write is both a step's after and the next one's before */
    /* Done is done: running again runs nothing. */
    assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), 0);
    assert_true(done);
    for (int i = 0; i < N; i++) assert_int_equal(w.runs[i], 1);
    json_decref(w.progress);
}

static void test_failure_at_every_step_resumes(void **state) {
    (void)state;
    for (int k = 0; k < N; k++) {
        for (int crashed = 0; crashed < 2; crashed++) {
            world w;
            world_init(&w);
            w.fail_at = k;
            bool done;
            serr e = {0};
            assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), SE_IO);
            assert_false(done);
            assert_string_equal(steps_current(&seq, w.progress), defs[k].name);
            if (crashed) crash(&w);
            assert_string_equal(steps_current(&seq, w.progress), defs[k].name);
            serr_clear(&e);
            assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), 0);
            assert_true(done);
            for (int i = 0; i < N; i++) assert_int_equal(w.runs[i], i == k ? 2 : 1);
            json_decref(w.progress);
        }
    }
}

/* A crash after a step's work but before its "after" write: the step runs
 * again (check-then-act), nothing before it does. */
static void test_crash_between_act_and_record(void **state) {
    (void)state;
    for (int k = 0; k < N; k++) {
        world w;
        world_init(&w);
        w.fail_at = k; /* stop the run right after step k's "before" write */
        bool done;
        serr e = {0};
        steps_run(&seq, w.progress, &w, &done, &e);
        crash(&w);
        w.runs[k] = 1; /* pretend its work was done before the crash */
        serr_clear(&e);
        assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), 0);
        assert_true(done);
        for (int i = 0; i < N; i++) assert_int_equal(w.runs[i], i == k ? 2 : 1);
        json_decref(w.progress);
    }
}

static void test_wait_returns_and_reruns(void **state) {
    (void)state;
    world w;
    world_init(&w);
    w.wait_at = 2;
    bool done;
    serr e = {0};
    assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), 0);
    assert_false(done);
    assert_string_equal(steps_current(&seq, w.progress), "s2");
    assert_int_equal(w.runs[3], 0);
    assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), 0);
    assert_true(done);
    assert_int_equal(w.runs[2], 2);
    assert_int_equal(w.runs[1], 1);
    json_decref(w.progress);
}

static void test_redo_goes_back_and_is_bounded(void **state) {
    (void)state;
    world w;
    world_init(&w);
    w.redo_from = 4;
    bool done;
    serr e = {0};
    assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), 0);
    assert_true(done);
    assert_int_equal(w.runs[0], 1);
    assert_int_equal(w.runs[1], 2);
    assert_int_equal(w.runs[4], 2);
    json_decref(w.progress);

    world_init(&w);
    w.redo_from = 4;
    w.redo_always = 1;
    assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), SE_INTERNAL);
    assert_false(done);
    json_decref(w.progress);
}

static void test_unknown_and_legacy_steps(void **state) {
    (void)state;
    world w;
    world_init(&w);
    json_object_set_new(w.progress, "step", json_string("teleport"));
    bool done;
    serr e = {0};
    assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "teleport"));
    for (int i = 0; i < N; i++) assert_int_equal(w.runs[i], 0);
    /* An index (the old encoding) resumes at that step. */
    json_object_set_new(w.progress, "step", json_integer(3));
    assert_int_equal(steps_index(&seq, w.progress), 3);
    serr_clear(&e);
    assert_int_equal(steps_run(&seq, w.progress, &w, &done, &e), 0);
    assert_true(done);
    assert_int_equal(w.runs[2], 0);
    assert_int_equal(w.runs[3], 1);
    json_object_set_new(w.progress, "step", json_integer(9));
    assert_int_equal(steps_index(&seq, w.progress), -1);
    json_decref(w.progress);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_in_order_once),
        cmocka_unit_test(test_failure_at_every_step_resumes),
        cmocka_unit_test(test_crash_between_act_and_record),
        cmocka_unit_test(test_wait_returns_and_reruns),
        cmocka_unit_test(test_redo_goes_back_and_is_bounded),
        cmocka_unit_test(test_unknown_and_legacy_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
