/*
 * test_obs_controller.c - the ObservabilityPlatform controller's pure
 * parts: its phase table against seed 003's diagram (written out here by
 * hand), the conditions computed for a table of worlds and written only
 * when they change (lastTransitionTime moving only when a status flips),
 * and prometheus-url=platform:NAME read from a real SQLite store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "obs/internal.h"
#include "util/util.h"
#include "util/yamljson.h"

/* Seed 003's state diagram, edge by edge. */
static const struct {
    const char *from, *to;
} seed[] = {
    {"Pending", "Installing"}, {"Pending", "Failed"},    {"Installing", "Ready"}, {"Installing", "Failed"},
    {"Ready", "Upgrading"},    {"Ready", "Failed"},      {"Ready", "Ready"},      {"Failed", "Installing"},
    {"Upgrading", "Ready"},    {"Upgrading", "Failed"},
};

static void test_table_is_the_seed(void **st) {
    (void)st;
    const char *names[] = {"Pending", "Installing", "Ready", "Failed", "Upgrading"};
    assert_int_equal(obs_fsm.nphases, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(fsm_phase_parse(&obs_fsm, names[i]), i);
    int found = 0;
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) {
            bool in_seed = false;
            for (size_t k = 0; k < sizeof(seed) / sizeof(seed[0]); k++)
                if (strcmp(seed[k].from, names[a]) == 0 && strcmp(seed[k].to, names[b]) == 0) in_seed = true;
            const fsm_transition *t = fsm_transition_find(&obs_fsm, a, b);
            if (in_seed != (t != NULL)) fail_msg("%s -> %s: seed %d, table %d", names[a], names[b], in_seed, t != NULL);
            found += t != NULL;
        }
    assert_int_equal(found, (int)(sizeof(seed) / sizeof(seed[0])));
    assert_string_equal(fsm_transition_find(&obs_fsm, OP_READY, OP_READY)->trigger, "Minor Update");
    assert_string_equal(fsm_transition_find(&obs_fsm, OP_FAILED, OP_INSTALLING)->trigger, "Retry/Fix");
    assert_string_equal(obs_fsm.transitions_metric, "observability_platform_state_transitions_total");
}

/* A world: the phase, each enabled component's state, the retry record. */
typedef struct world {
    const char *phase;
    const char *prom, *am; /* component states */
    const char *retry;     /* JSON or NULL */
    bool paused;
    const char *ready, *progressing, *degraded, *available; /* "True"/"False" */
    const char *degraded_reason;
} world;

static const world worlds[] = {
    {"Pending", "Pending", "Pending", NULL, false, "False", "False", "False", "False", "AsExpected"},
    {"Installing", "Ready", "Installing", NULL, false, "False", "True", "False", "True", "AsExpected"},
    {"Ready", "Ready", "Ready", NULL, false, "True", "False", "False", "True", "AsExpected"},
    {"Ready", "Ready", "Failed", NULL, false, "False", "False", "True", "True", "ComponentFailed"},
    {"Failed", "Failed", "Ready", "{\"category\":\"component\"}", false, "False", "False", "True", "False",
     "ComponentFailed"},
    {"Failed", "Ready", "Ready", "{\"category\":\"configuration\"}", false, "False", "False", "True", "True",
     "ConfigurationRejected"},
    {"Failed", "Ready", "Ready", "{\"category\":\"component\",\"waitForSpec\":true}", false, "False", "False", "True",
     "True", "RolledBack"},
    {"Upgrading", "Upgrading", "Ready", NULL, false, "False", "True", "False", "False", "AsExpected"},
    {"Ready", "Ready", "Ready", NULL, true, "True", "False", "False", "True", "Paused"},
};

static obs_ctx *ctx_of(const world *w) {
    obs_ctx *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    resource_init(&x->r);
    str_copy(x->r.name, sizeof(x->r.name), "p");
    x->r.generation = 3;
    json_decref(x->r.spec);
    x->r.spec = json_pack("{s:[{s:s},{s:s},{s:s,s:b}]}", "components", "name", "prometheus", "name", "alertmanager",
                          "name", "loki", "enabled", 0);
    serr e = {0};
    assert_int_equal(obs_spec_parse(x->r.spec, NULL, &x->sp, &e), 0);
    json_object_set_new(x->r.status, "phase", json_string(w->phase));
    json_object_set_new(x->r.status, "paused", json_boolean(w->paused));
    json_object_set_new(x->r.status, "components",
                        json_pack("[{s:s,s:s},{s:s,s:s}]", "name", "prometheus", "state", w->prom, "name",
                                  "alertmanager", "state", w->am));
    if (w->retry) json_object_set_new(x->r.status, "retry", json_loads(w->retry, 0, NULL));
    return x;
}

static const char *cond(obs_ctx *x, const char *type, const char *field) {
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(x->r.status, "conditions"), i, c) if (strcmp(jstr(c, "type", ""), type) == 0) return jstr(c, field, "");
    return "";
}

static void test_conditions_worlds(void **st) {
    (void)st;
    for (size_t k = 0; k < sizeof(worlds) / sizeof(worlds[0]); k++) {
        const world *w = &worlds[k];
        obs_ctx *x = ctx_of(w);
        obs_conditions(x);
        if (strcmp(cond(x, "Ready", "status"), w->ready) || strcmp(cond(x, "Progressing", "status"), w->progressing) ||
            strcmp(cond(x, "Degraded", "status"), w->degraded) || strcmp(cond(x, "Available", "status"), w->available) ||
            strcmp(cond(x, "Degraded", "reason"), w->degraded_reason))
            fail_msg("world %zu (%s %s/%s): Ready %s Progressing %s Degraded %s (%s) Available %s", k, w->phase, w->prom,
                     w->am, cond(x, "Ready", "status"), cond(x, "Progressing", "status"),
                     cond(x, "Degraded", "status"), cond(x, "Degraded", "reason"), cond(x, "Available", "status"));
        assert_true(x->dirty);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(x->r.status, "conditions"), 0),
                                                            "observedGeneration")),
                         3);
        resource_free(&x->r);
        free(x);
    }
}

static void test_conditions_written_only_on_change(void **st) {
    (void)st;
    obs_ctx *x = ctx_of(&worlds[2]); /* Ready */
    obs_conditions(x);
    assert_true(x->dirty);
    /* Pretend the first write was long ago. */
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(x->r.status, "conditions"), i, c)
        json_object_set_new(c, "lastTransitionTime", json_string("2020-01-01T00:00:00.000Z"));
    x->dirty = false;
    obs_conditions(x);
    assert_false(x->dirty); /* nothing changed: nothing to write */
    /* Alertmanager fails: Ready and Degraded flip, Available does not. */
    json_object_set_new(json_array_get(json_object_get(x->r.status, "components"), 1), "state", json_string("Failed"));
    obs_conditions(x);
    assert_true(x->dirty);
    assert_string_equal(cond(x, "Ready", "status"), "False");
    assert_string_not_equal(cond(x, "Ready", "lastTransitionTime"), "2020-01-01T00:00:00.000Z");
    assert_string_equal(cond(x, "Degraded", "status"), "True");
    assert_string_equal(cond(x, "Available", "status"), "True");
    assert_string_equal(cond(x, "Available", "lastTransitionTime"), "2020-01-01T00:00:00.000Z");
    assert_int_equal(json_array_size(json_object_get(x->r.status, "conditions")), 4);
    resource_free(&x->r);
    free(x);
}

static void test_prometheus_url(void **st) {
    (void)st;
    char dir[] = "/tmp/test_obs_ctl.XXXXXX", path[64], buf[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s.db", dir);
    ctl_ctx c = {0};
    serr e = {0};
    assert_int_equal(store_open_sqlite(path, &c.st, &e), 0);
    assert_int_equal(obs_prometheus_url(&c, "http://127.0.0.1:9090", buf, sizeof(buf), &e), 0);
    assert_string_equal(buf, "http://127.0.0.1:9090");
    assert_int_equal(obs_prometheus_url(&c, "platform:mon", buf, sizeof(buf), &e), SE_NOTFOUND);
    resource r;
    resource_init(&r);
    str_copy(r.kind, sizeof(r.kind), OBS_KIND);
    str_copy(r.name, sizeof(r.name), "mon");
    json_object_set_new(r.status, "components",
                        json_pack("[{s:s,s:s,s:s}]", "name", "prometheus", "state", "Installing", "endpoint",
                                  "http://127.0.0.1:20001"));
    assert_int_equal(store_create(c.st, &r, NULL, &e), 0);
    assert_int_equal(obs_prometheus_url(&c, "platform:mon", buf, sizeof(buf), &e), SE_UNAVAIL);
    assert_non_null(strstr(e.msg, "Installing"));
    json_object_set_new(json_array_get(json_object_get(r.status, "components"), 0), "state", json_string("Ready"));
    assert_int_equal(store_update(c.st, &r, NULL, &e), 0);
    assert_int_equal(obs_prometheus_url(&c, "platform:mon", buf, sizeof(buf), &e), 0);
    assert_string_equal(buf, "http://127.0.0.1:20001");
    resource_free(&r);
    store_close(c.st);
    remove_tree(dir, &e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_the_seed),
        cmocka_unit_test(test_conditions_worlds),
        cmocka_unit_test(test_conditions_written_only_on_change),
        cmocka_unit_test(test_prometheus_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
