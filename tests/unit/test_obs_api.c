/*
 * test_obs_api.c - what the API does to an ObservabilityPlatform
 * (obs/api.c), against a real SQLite store in a temporary directory:
 * pause and resume write spec.paused once (a second pause changes nothing
 * and records no event), wake the controller, and name an unknown action;
 * deletion removes at once a platform the controller never saw, marks one
 * it did (deletionTimestamp, the finalizer kept or added) and is
 * idempotent; a platform being deleted refuses pause and accepts resume.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "obs/obs.h"
#include "reconcile/queue.h"
#include "store/store.h"
#include "util/util.h"
#include "util/yamljson.h"

#define FIN "observability.synaxis.io/finalizer"

typedef struct fx {
    char dir[64];
    char path[128];
    ctl_ctx c;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    str_copy(f->dir, sizeof(f->dir), "/tmp/test_obs_api.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/s.db", f->dir);
    serr e = {0};
    assert_int_equal(store_open_sqlite(f->path, &f->c.st, &e), 0);
    wq_backoff bo = {.initial_ms = 5, .max_ms = 20, .factor = 2.0, .jitter = 0};
    f->c.q = wq_new(64, &bo);
    assert_non_null(f->c.q);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    store_close(f->c.st);
    wq_free(f->c.q);
    serr e = {0};
    remove_tree(f->dir, &e);
    free(f);
    return 0;
}

/* A platform as apply stores it; reconciled: with the finalizer and a
 * status, as the controller leaves it after its first pass. */
static void put(fx *f, const char *name, bool reconciled) {
    resource r;
    resource_init(&r);
    str_copy(r.kind, sizeof(r.kind), OBS_KIND);
    str_copy(r.name, sizeof(r.name), name);
    json_decref(r.spec);
    r.spec = json_pack("{s:[{s:s,s:b}]}", "components", "name", "prometheus", "enabled", 0);
    if (reconciled) {
        json_array_append_new(r.finalizers, json_string(FIN));
        json_object_set_new(r.status, "phase", json_string("Ready"));
    }
    serr e = {0};
    assert_int_equal(store_create(f->c.st, &r, NULL, &e), 0);
    resource_free(&r);
}

static int nevents(fx *f, const char *name, const char *reason) {
    json_t *evs = NULL;
    serr e = {0};
    assert_int_equal(store_events(f->c.st, OBS_KIND, name, 0, &evs, &e), 0);
    int n = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev) n += strcmp(jstr(ev, "reason", ""), reason) == 0;
    json_decref(evs);
    return n;
}

static void get(fx *f, const char *name, resource *r) {
    serr e = {0};
    assert_int_equal(store_get(f->c.st, OBS_KIND, name, r, &e), 0);
}

static void test_pause_resume(void **state) {
    fx *f = *state;
    put(f, "p1", true);
    serr e = {0};
    json_t *ans = NULL;
    assert_int_equal(obs_action(&f->c, "p1", "pause", "alice", &ans, &e), 0);
    assert_true(json_is_true(json_object_get(json_object_get(ans, "spec"), "paused")));
    assert_string_equal(jstr(ans, "apiVersion", ""), OBS_API_VERSION);
    json_decref(ans);
    assert_int_equal(wq_len(f->c.q), 1); /* the controller is woken */
    /* Pausing a paused platform: fine, nothing written. */
    resource r;
    resource_init(&r);
    get(f, "p1", &r);
    int64_t rv = r.resource_version;
    assert_int_equal(obs_action(&f->c, "p1", "pause", "alice", &ans, &e), 0);
    json_decref(ans);
    get(f, "p1", &r);
    assert_int_equal(r.resource_version, rv);
    assert_int_equal(nevents(f, "p1", "Paused"), 1);
    assert_int_equal(obs_action(&f->c, "p1", "resume", "bob", &ans, &e), 0);
    json_decref(ans);
    get(f, "p1", &r);
    assert_true(json_is_false(json_object_get(r.spec, "paused")));
    assert_int_equal(nevents(f, "p1", "Resumed"), 1);
    resource_free(&r);
}

static void test_action_errors(void **state) {
    fx *f = *state;
    put(f, "p2", true);
    serr e = {0};
    json_t *ans = NULL;
    assert_int_equal(obs_action(&f->c, "p2", "restart", "alice", &ans, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "\"restart\""));
    serr e2 = {0};
    assert_int_equal(obs_action(&f->c, "nope", "pause", "alice", &ans, &e2), SE_NOTFOUND);
    assert_non_null(strstr(e2.msg, "platform nope not found"));
    serr e3 = {0};
    assert_int_equal(obs_delete(&f->c, "nope", "alice", &ans, &e3), SE_NOTFOUND);
}

static void test_delete_never_reconciled(void **state) {
    fx *f = *state;
    put(f, "p3", false);
    serr e = {0};
    json_t *ans = NULL;
    assert_int_equal(obs_delete(&f->c, "p3", "alice", &ans, &e), 0);
    assert_non_null(json_object_get(json_object_get(ans, "metadata"), "deletionTimestamp"));
    json_decref(ans);
    resource r;
    resource_init(&r);
    assert_int_equal(store_get(f->c.st, OBS_KIND, "p3", &r, &e), SE_NOTFOUND);
    resource_free(&r);
    assert_int_equal(nevents(f, "p3", "DeletionRequested"), 1);
}

static void test_delete_marks(void **state) {
    fx *f = *state;
    put(f, "p4", true);
    serr e = {0};
    json_t *ans = NULL;
    assert_int_equal(obs_delete(&f->c, "p4", "alice", &ans, &e), 0);
    json_decref(ans);
    resource r;
    resource_init(&r);
    get(f, "p4", &r);
    assert_true(r.deletion_ms > 0);
    assert_int_equal(json_array_size(r.finalizers), 1);
    int64_t rv = r.resource_version, del = r.deletion_ms;
    /* Asked again: nothing changes. */
    assert_int_equal(obs_delete(&f->c, "p4", "alice", &ans, &e), 0);
    json_decref(ans);
    get(f, "p4", &r);
    assert_int_equal(r.resource_version, rv);
    assert_int_equal(r.deletion_ms, del);
    assert_int_equal(nevents(f, "p4", "DeletionRequested"), 1);
    /* Being deleted: no pause (it would stop the uninstall); resume is fine. */
    serr e2 = {0};
    assert_int_equal(obs_action(&f->c, "p4", "pause", "alice", &ans, &e2), SE_PHASE);
    assert_non_null(strstr(e2.msg, "being deleted"));
    assert_int_equal(obs_action(&f->c, "p4", "resume", "alice", &ans, &e), 0);
    json_decref(ans);
    resource_free(&r);
}

/* A platform with a status but no finalizer (its finalizer lost, or from
 * a controller that had none) is marked, and gets the finalizer: something
 * may be installed. */
static void test_delete_adds_finalizer(void **state) {
    fx *f = *state;
    put(f, "p5", false);
    resource r;
    resource_init(&r);
    get(f, "p5", &r);
    json_object_set_new(r.status, "phase", json_string("Installing"));
    serr e = {0};
    assert_int_equal(store_update(f->c.st, &r, NULL, &e), 0);
    json_t *ans = NULL;
    assert_int_equal(obs_delete(&f->c, "p5", "alice", &ans, &e), 0);
    json_decref(ans);
    get(f, "p5", &r);
    assert_true(r.deletion_ms > 0);
    assert_string_equal(json_string_value(json_array_get(r.finalizers, 0)), FIN);
    resource_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_action_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_never_reconciled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_adds_finalizer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
