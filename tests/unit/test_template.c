/*
 * test_template.c - StampTemplate validation: the shipped example parses,
 * and each kind of mistake is refused with the field named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/template.h"
#include "util/util.h"
#include "util/yamljson.h"

static json_t *spec_of(const char *yaml) {
    json_t *doc = NULL;
    serr e = {0};
    if (yaml_to_json(yaml, strlen(yaml), &doc, NULL, &e) != 0) fail_msg("yaml: %s", e.msg);
    json_t *spec = json_incref(json_object_get(doc, "spec"));
    json_decref(doc);
    return spec;
}

static void shipped_example(void **state) {
    (void)state;
    char *text;
    size_t len;
    serr e = {0};
    const char *src = getenv("STAMP_SRC");
    char path[1024];
    snprintf(path, sizeof(path), "%s/deploy/templates/synaxis-stamp.yaml", src ? src : "..");
    assert_int_equal(read_file(path, 1 << 20, &text, &len, &e), 0);
    json_t *doc;
    assert_int_equal(yaml_to_json(text, len, &doc, NULL, &e), 0);
    free(text);
    tpl t;
    int rc = tpl_parse(json_object_get(doc, "spec"), &t, &e);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(t.nsteps, 8);
    assert_string_equal(t.steps[t.endpoint_step].name, "app");
    assert_int_equal(t.steps[0].phase, TP_NETWORK);
    assert_int_equal(t.steps[t.nsteps - 1].phase, TP_VALIDATION);
    json_decref(doc);
}

static void expect_error(const char *yaml, const char *needle) {
    json_t *spec = spec_of(yaml);
    tpl t;
    serr e = {0};
    int rc = tpl_parse(spec, &t, &e);
    json_decref(spec);
    if (rc == 0) fail_msg("accepted, expected an error with \"%s\"", needle);
    if (strstr(e.msg, needle) == NULL) fail_msg("error \"%s\" lacks \"%s\"", e.msg, needle);
}

static void mistakes(void **state) {
    (void)state;
    expect_error("spec:\n  phases: []\n", "spec.phases");
    expect_error("spec:\n  phases:\n  - name: compute\n    steps:\n    - {name: a, kind: exec, run: x}\n"
                 "  - name: network\n    steps:\n    - {name: b, kind: exec, run: x}\n",
                 "spec.phases[1].name");
    expect_error("spec:\n  phases:\n  - name: storage\n    steps:\n    - {name: a, kind: exec, run: x}\n",
                 "is not one of network");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: exec, run: x, replicas: 2}\n",
                 "spec.phases[0].steps[0].replicas: only for process steps");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: process, pool: tpu, command: [x]}\n",
                 "spec.phases[0].steps[0].pool");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: process, pool: gpu, command: [x], replicas: 99}\n",
                 "replicas: must be an integer from 0 to 32");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: exec, run: x, colour: red}\n",
                 "spec.phases[0].steps[0].colour: unknown field");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: exec, run: x}\n    - {name: a, kind: exec, run: y}\n",
                 "is used twice");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: exec, run: x, timeout: soon}\n",
                 "timeout");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: A_b, kind: exec, run: x}\n",
                 "steps[0].name");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: process, pool: gpu, command: [x], resources: {cpu: lots}}\n",
                 "steps[0].resources.cpu: not a CPU quantity");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: process, pool: gpu, command: [x], resources: {memory: 5Zi}}\n",
                 "steps[0].resources.memory");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: process, pool: gpu, command: [x], resources: {disk: 1}}\n",
                 "resources.disk: unknown field");
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: exec, run: x, resources: {cpu: 1}}\n",
                 "resources: only for process steps");
}

/* Issue 13's schema: change classes, parameter declarations, pool bounds. */
#define ONE_STEP "  phases:\n  - name: compute\n    steps:\n    - {name: a, kind: process, pool: general, command: [x], replicas: 3}\n"
static void revisions_schema(void **state) {
    (void)state;
    expect_error("spec:\n  phases:\n  - name: data\n    steps:\n    - {name: a, kind: exec, run: x, change: app}\n",
                 "spec.phases[0].steps[0].change: \"app\" is not one of application, infrastructure");
    expect_error("spec:\n  parameters: {.x: {}}\n" ONE_STEP, "spec.parameters: \".x\" is not a parameter name");
    expect_error("spec:\n  parameters: {x.: {}}\n" ONE_STEP, "is not a parameter name");
    expect_error("spec:\n  parameters: {a..b: {}}\n" ONE_STEP, "is not a parameter name");
    expect_error("spec:\n  parameters: {v: {change: later}}\n" ONE_STEP, "spec.parameters.v.change");
    expect_error("spec:\n  parameters: {v: {default: [1]}}\n" ONE_STEP, "spec.parameters.v.default");
    expect_error("spec:\n  parameters: {v: {deflt: 1}}\n" ONE_STEP, "spec.parameters.v.deflt: unknown field");
    expect_error("spec:\n  parameters: {v: 1}\n" ONE_STEP, "spec.parameters.v: must be a mapping");
    expect_error("spec:\n  pools: {tpu: {}}\n" ONE_STEP, "spec.pools.tpu: unknown field");
    expect_error("spec:\n  pools: {general: {minReplicas: 5, maxReplicas: 2}}\n" ONE_STEP,
                 "spec.pools.general: minReplicas 5 is above maxReplicas 2");
    expect_error("spec:\n  pools: {general: {maxReplicas: 33}}\n" ONE_STEP,
                 "spec.pools.general.maxReplicas: must be an integer from 0 to 32");
    expect_error("spec:\n  pools: {general: {maxReplicas: 2}}\n" ONE_STEP,
                 "spec.phases[0].steps[0].replicas: 3 is above spec.pools.general.maxReplicas 2");
    expect_error("spec:\n  pools: {general: {minReplicas: 4}}\n" ONE_STEP,
                 "spec.phases[0].steps[0].replicas: 3 is below spec.pools.general.minReplicas 4");
    /* the default maximum is 20, the hard one 32 */
    expect_error("spec:\n  phases:\n  - name: compute\n    steps:\n    - {name: a, kind: process, pool: general, command: [x], replicas: 21}\n",
                 "replicas: 21 is above spec.pools.general.maxReplicas 20");
    json_t *spec = spec_of("spec:\n  pools: {general: {minReplicas: 3, maxReplicas: 32}}\n"
                           "  parameters: {app.version: {default: \"1\"}, sku: {change: infrastructure}}\n"
                           "  phases:\n  - name: compute\n    steps:\n"
                           "    - {name: a, kind: process, pool: general, command: [x], replicas: 32}\n"
                           "    - {name: b, kind: exec, run: x}\n"
                           "    - {name: c, kind: exec, run: x, change: application}\n");
    tpl *t = malloc(sizeof(*t));
    serr e = {0};
    int rc = tpl_parse(spec, t, &e);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(t->steps[0].replicas, 32);
    assert_int_equal(t->steps[0].change, TCC_APPLICATION);
    assert_int_equal(t->steps[1].change, TCC_INFRASTRUCTURE);
    assert_int_equal(t->steps[2].change, TCC_APPLICATION);
    assert_int_equal(t->pool_min[POOL_GENERAL], 3);
    assert_int_equal(t->pool_max[POOL_GENERAL], 32);
    assert_int_equal(t->pool_min[POOL_SYSTEM], 1);
    assert_int_equal(t->pool_max[POOL_SYSTEM], 20);
    assert_int_equal(t->pool_min[POOL_GPU], 0);
    assert_int_equal(t->nparams, 2);
    const tpl_param *p = tpl_param_find(t, "app.version");
    assert_non_null(p);
    assert_int_equal(p->change, TCC_APPLICATION);
    assert_string_equal(json_string_value(p->dflt), "1");
    assert_int_equal(tpl_param_find(t, "sku")->change, TCC_INFRASTRUCTURE);
    assert_null(tpl_param_find(t, "other"));
    assert_true(tpl_param_name_ok("app.version"));
    assert_true(tpl_param_name_ok("SKU_2"));
    assert_false(tpl_param_name_ok("2x"));
    assert_false(tpl_param_name_ok("a-b"));
    free(t);
    json_decref(spec);
}

static void config_table(void **state) {
    (void)state;
    stamp_config c;
    serr e = {0};
    config_defaults(&c);
    assert_int_equal(c.creating_timeout_ms, 30 * 60 * 1000);
    assert_int_equal(c.drain_connections_timeout_ms, 10 * 60 * 1000);
    assert_int_equal(c.drain_jobs_timeout_ms, 30 * 60 * 1000);
    assert_int_equal(c.drain_total_timeout_ms, 40 * 60 * 1000);
    assert_int_equal(c.standby_max_age_ms, 72LL * 3600 * 1000);
    assert_int_equal(c.creating_attempts, 3);
    assert_int_equal(c.backoff_initial_ms, 10000);
    assert_int_equal(c.backoff_max_ms, 300000);
    assert_int_equal(config_set(&c, "creating-timeout", "5s", &e), 0);
    assert_int_equal(config_duration(&c, "creating-timeout"), 5000);
    assert_int_equal(config_set(&c, "creating-timeout", "soon", &e), SE_INVAL);
    assert_int_equal(config_set(&c, "no-such-key", "1", &e), SE_INVAL);
    assert_int_equal(config_set(&c, "port-range", "30000-20000", &e), SE_INVAL);
    assert_int_equal(config_set(&c, "workers", "0", &e), SE_INVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shipped_example),
        cmocka_unit_test(mistakes),
        cmocka_unit_test(revisions_schema),
        cmocka_unit_test(config_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
