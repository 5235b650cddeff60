/*
 * test_tpl_change.c - the classification of template and parameter changes
 * (core/tpl_change.h) as a table: one base template, one change per row,
 * and what the row must be classified as (application or infrastructure,
 * which steps, the words of the first infrastructure change).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/template.h"
#include "core/tpl_change.h"
#include "util/util.h"
#include "util/yamljson.h"

/* The table's rows leave their trailing fields out (zero). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* Steps by index: rg 0, cfg 1, agent 2, app 3, gpu-infra 4. */
static const char base_yaml[] =
    "spec:\n"
    "  namePrefix: syn\n"
    "  description: the base\n"
    "  healthPath: /health\n"
    "  parameters:\n"
    "    app.version: {change: application, default: \"1\", description: the version}\n"
    "    sku: {change: infrastructure, default: basic}\n"
    "    note: {}\n"
    "  pools:\n"
    "    general: {minReplicas: 1, maxReplicas: 20}\n"
    "  phases:\n"
    "  - name: network\n"
    "    steps:\n"
    "    - {name: rg, kind: exec, run: mk rg, delete: rm rg, timeout: 30s}\n"
    "    - {name: cfg, kind: exec, change: application, run: cfg v1}\n"
    "  - name: compute\n"
    "    steps:\n"
    "    - {name: agent, kind: process, pool: system, metrics: false, command: [a]}\n"
    "    - {name: app, kind: process, pool: general, replicas: 2, endpoint: true,\n"
    "       command: [w, \"${app.version}\"], env: {A: \"1\"}}\n"
    "    - {name: gpu-infra, kind: process, pool: gpu, change: infrastructure, command: [g]}\n";

static json_t *yaml_spec(const char *yaml) {
    json_t *doc = NULL;
    serr e = {0};
    if (yaml_to_json(yaml, strlen(yaml), &doc, NULL, &e) != 0) fail_msg("yaml: %s", e.msg);
    json_t *spec = json_incref(json_object_get(doc, "spec"));
    json_decref(doc);
    return spec;
}

static json_t *jparse(const char *text) {
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (v == NULL) fail_msg("bad JSON in the table: %s: %s", text, je.text);
    return v;
}

/* Sets (or with value NULL removes) what a '/'-separated path names:
 * "phases/1/steps/0/command"; numbers index arrays. */
static void set_path(json_t *root, const char *path, const char *value) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = root;
    char *p = buf;
    for (;;) {
        char *slash = strchr(p, '/');
        if (slash) *slash = '\0';
        bool last = slash == NULL;
        if (json_is_array(cur)) {
            size_t i = (size_t)strtoul(p, NULL, 10);
            if (last) {
                if (value && i == json_array_size(cur)) json_array_append_new(cur, jparse(value));
                else if (value) json_array_set_new(cur, i, jparse(value));
                else json_array_remove(cur, i);
                return;
            }
            cur = json_array_get(cur, i);
        } else {
            if (last) {
                if (value) json_object_set_new(cur, p, jparse(value));
                else json_object_del(cur, p);
                return;
            }
            json_t *next = json_object_get(cur, p);
            if (next == NULL) {
                next = json_object();
                json_object_set_new(cur, p, next);
            }
            cur = next;
        }
        if (cur == NULL) fail_msg("path %s: nothing at %s", path, p);
        p = slash + 1;
    }
}

#define STEPS(i) "phases/" #i "/steps"
enum { NONE = 0, APP = 1, INFRA = 2 };
#define B(i) (1u << (i))

typedef struct row {
    const char *name;
    const char *path, *value;   /* a change to the new spec (value NULL: remove) */
    const char *path2, *value2; /* a second one, or NULL */
    const char *old_params, *new_params; /* JSON, or NULL */
    int expect;                 /* NONE, APP, INFRA, or APP|INFRA */
    unsigned app_steps;         /* bits by step index */
    const char *what;           /* in the infrastructure (or else the application) message */
    bool template_app, pools, params;
} row;

static const row rows[] = {
    {"identical", NULL, NULL, NULL, NULL, NULL, NULL, NONE, 0, NULL, false, false, false},
    {"description only", "description", "\"another\"", NULL, NULL, NULL, NULL, NONE, 0, NULL},
    {"default spelt out", STEPS(1) "/0/replicas", "1", STEPS(1) "/0/ports", "1", NULL, NULL, NONE, 0, NULL},
    {"a step's change class itself", STEPS(1) "/1/change", "\"application\"", NULL, NULL, NULL, NULL, NONE, 0, NULL},
    {"application step declared infrastructure", STEPS(1) "/1/change", "\"infrastructure\"", NULL, NULL, NULL, NULL, NONE, 0, NULL},
    /* relabelling an infrastructure step application is infrastructure */
    {"infrastructure step declared application", STEPS(0) "/0/change", "\"application\"", NULL, NULL, NULL, NULL, INFRA, 0, "step rg (exec): declared application, was infrastructure"},
    {"relabelled and its command changed", STEPS(0) "/0/change", "\"application\"", STEPS(0) "/0/run", "\"mk rg2\"", NULL, NULL, INFRA, 0, "step rg (exec): declared application"},
    {"infrastructure parameter declared application", "parameters/sku/change", "\"application\"", NULL, NULL, "{\"sku\": \"basic\"}", "{\"sku\": \"premium\"}", INFRA, 0, "parameter sku: declared application, was infrastructure"},
    /* application fields of application steps */
    {"command", STEPS(1) "/1/command", "[\"w2\"]", NULL, NULL, NULL, NULL, APP, B(3), "step app (process, application): command changed"},
    {"env", STEPS(1) "/1/env/A", "\"2\"", NULL, NULL, NULL, NULL, APP, B(3), "env changed"},
    {"env added", STEPS(1) "/0/env", "{\"X\": \"y\"}", NULL, NULL, NULL, NULL, APP, B(2), "step agent"},
    {"resources", STEPS(1) "/1/resources", "{\"cpu\": \"500m\"}", NULL, NULL, NULL, NULL, APP, B(3), "resources changed"},
    {"health", STEPS(1) "/1/health", "false", NULL, NULL, NULL, NULL, APP, B(3), "health changed"},
    {"metrics", STEPS(1) "/0/metrics", "true", NULL, NULL, NULL, NULL, APP, B(2), "metrics changed"},
    {"replicas", STEPS(1) "/1/replicas", "3", NULL, NULL, NULL, NULL, APP, B(3), "replicas changed"},
    {"exec application step run", STEPS(0) "/1/run", "\"cfg v2\"", NULL, NULL, NULL, NULL, APP, B(1), "step cfg (exec, application): run changed"},
    {"two application steps", STEPS(0) "/1/timeout", "\"1m\"", STEPS(1) "/1/replicas", "4", NULL, NULL, APP, B(1) | B(3), "timeout changed"},
    /* template-level application fields */
    {"healthPath", "healthPath", "\"/ready\"", NULL, NULL, NULL, NULL, APP, 0, "healthPath", true},
    {"metricsPath", "metricsPath", "\"/m\"", NULL, NULL, NULL, NULL, APP, 0, "metricsPath", true},
    {"healthCheck", "healthCheck", "\"hc\"", NULL, NULL, NULL, NULL, APP, 0, "healthCheck", true},
    {"pools bounds", "pools/general/maxReplicas", "10", NULL, NULL, NULL, NULL, APP, 0, "pools.general", false, true},
    /* application fields of infrastructure steps */
    {"exec run", STEPS(0) "/0/run", "\"mk rg2\"", NULL, NULL, NULL, NULL, INFRA, 0, "step rg (exec, infrastructure): run changed"},
    {"exec delete", STEPS(0) "/0/delete", "\"rm -r rg\"", NULL, NULL, NULL, NULL, INFRA, 0, "step rg (exec, infrastructure): delete changed"},
    {"exec timeout", STEPS(0) "/0/timeout", "\"5m\"", NULL, NULL, NULL, NULL, INFRA, 0, "step rg (exec, infrastructure): timeout changed"},
    {"exec env", STEPS(0) "/0/env", "{\"R\": \"1\"}", NULL, NULL, NULL, NULL, INFRA, 0, "step rg (exec, infrastructure): env changed"},
    {"infrastructure process command", STEPS(1) "/2/command", "[\"g2\"]", NULL, NULL, NULL, NULL, INFRA, 0, "step gpu-infra (process, infrastructure): command changed"},
    /* infrastructure fields of any step */
    {"pool", STEPS(1) "/0/pool", "\"gpu\"", NULL, NULL, NULL, NULL, INFRA, 0, "step agent (process): pool changed"},
    {"ports", STEPS(1) "/1/ports", "2", NULL, NULL, NULL, NULL, INFRA, 0, "step app (process): ports changed"},
    {"endpoint", STEPS(1) "/1/endpoint", "false", NULL, NULL, NULL, NULL, INFRA, 0, "step app (process): endpoint changed"},
    {"kind", STEPS(1) "/2", "{\"name\": \"gpu-infra\", \"kind\": \"exec\", \"run\": \"x\"}", NULL, NULL, NULL, NULL, INFRA, 0, "step gpu-infra (exec): kind changed"},
    {"phase", "phases/0/name", "\"security\"", NULL, NULL, NULL, NULL, INFRA, 0, "step rg (exec): phase changed"},
    {"namePrefix", "namePrefix", "\"other\"", NULL, NULL, NULL, NULL, INFRA, 0, "namePrefix changed"},
    {"namePrefix removed", "namePrefix", NULL, NULL, NULL, NULL, NULL, INFRA, 0, "namePrefix changed"},
    {"step added", STEPS(1) "/3", "{\"name\": \"extra\", \"kind\": \"process\", \"pool\": \"gpu\", \"command\": [\"e\"]}", NULL, NULL, NULL, NULL, INFRA, 0, "step extra added"},
    {"step removed", STEPS(1) "/2", NULL, NULL, NULL, NULL, NULL, INFRA, 0, "step gpu-infra removed"},
    {"step renamed", STEPS(1) "/2/name", "\"gpu-two\"", NULL, NULL, NULL, NULL, INFRA, 0, "step gpu-infra removed"},
    {"steps reordered", STEPS(1) "/0", "{\"name\": \"app\", \"kind\": \"process\", \"pool\": \"general\", \"replicas\": 2, \"endpoint\": true, \"command\": [\"w\", \"${app.version}\"], \"env\": {\"A\": \"1\"}}",
     STEPS(1) "/1", "{\"name\": \"agent\", \"kind\": \"process\", \"pool\": \"system\", \"metrics\": false, \"command\": [\"a\"]}",
     NULL, NULL, INFRA, 0, "step app moved"},
    {"infrastructure wins over application", STEPS(1) "/1/replicas", "5", "namePrefix", "\"x\"", NULL, NULL, APP | INFRA, B(3), "namePrefix changed"},
    /* parameters */
    {"declared application parameter given", NULL, NULL, NULL, NULL, NULL, "{\"app.version\": \"2\"}", APP, B(1) | B(2) | B(3), "parameter app.version (application): changed", false, false, true},
    {"its default changed", "parameters/app.version/default", "\"2\"", NULL, NULL, NULL, NULL, APP, B(1) | B(2) | B(3), "parameter app.version", false, false, true},
    {"given as its default", NULL, NULL, NULL, NULL, NULL, "{\"app.version\": \"1\"}", NONE, 0, NULL},
    {"integer as the same text", NULL, NULL, NULL, NULL, "{\"app.version\": \"7\"}", "{\"app.version\": 7}", NONE, 0, NULL},
    {"given then dropped (back to the default)", NULL, NULL, NULL, NULL, "{\"app.version\": \"2\"}", NULL, APP, B(1) | B(2) | B(3), "parameter app.version", false, false, true},
    {"declared without a class: application", NULL, NULL, NULL, NULL, NULL, "{\"note\": \"hi\"}", APP, B(1) | B(2) | B(3), "parameter note (application)", false, false, true},
    {"declared infrastructure parameter", NULL, NULL, NULL, NULL, NULL, "{\"sku\": \"premium\"}", INFRA, 0, "parameter sku (infrastructure): changed"},
    {"infrastructure default changed", "parameters/sku/default", "\"premium\"", NULL, NULL, NULL, NULL, INFRA, 0, "parameter sku (infrastructure)"},
    {"undeclared parameter", NULL, NULL, NULL, NULL, NULL, "{\"SKU\": \"premium\"}", INFRA, 0, "parameter SKU (undeclared, infrastructure): changed"},
    {"undeclared parameter dropped", NULL, NULL, NULL, NULL, "{\"SKU\": \"premium\"}", "{}", INFRA, 0, "parameter SKU (undeclared"},
    {"undeclared parameter unchanged", NULL, NULL, NULL, NULL, "{\"SKU\": \"premium\"}", "{\"SKU\": \"premium\"}", NONE, 0, NULL},
    {"declaration made infrastructure, value changed", "parameters/app.version/change", "\"infrastructure\"", NULL, NULL, NULL, "{\"app.version\": \"3\"}", INFRA, 0, "parameter app.version (infrastructure)"},
    {"declaration removed, value unchanged", "parameters/note", NULL, NULL, NULL, NULL, NULL, NONE, 0, NULL},
};

static void run_row(const row *r) {
    json_t *old_spec = yaml_spec(base_yaml), *new_spec = json_deep_copy(old_spec);
    if (r->path) set_path(new_spec, r->path, r->value);
    if (r->path2) set_path(new_spec, r->path2, r->value2);
    json_t *op = r->old_params ? jparse(r->old_params) : NULL;
    json_t *np = r->new_params ? jparse(r->new_params) : NULL;
    tpl_change c;
    serr e = {0};
    if (tpl_change_classify(old_spec, op, new_spec, np, &c, &e) != 0)
        fail_msg("%s: classify failed: %s", r->name, e.msg);
    if (c.infra != ((r->expect & INFRA) != 0))
        fail_msg("%s: infra %d, expected %d (what: %s)", r->name, c.infra, (r->expect & INFRA) != 0, c.what);
    if (c.app != ((r->expect & APP) != 0))
        fail_msg("%s: app %d, expected %d (app_what: %s)", r->name, c.app, (r->expect & APP) != 0, c.app_what);
    unsigned got = 0;
    int n = 0;
    for (int i = 0; i < TPL_MAX_STEPS; i++)
        if (c.app_steps[i]) {
            got |= 1u << i;
            n++;
        }
    if (got != r->app_steps) fail_msg("%s: application steps 0x%x, expected 0x%x", r->name, got, r->app_steps);
    if (n != c.napp_steps) fail_msg("%s: napp_steps %d for %d steps", r->name, c.napp_steps, n);
    const char *msg = c.infra ? c.what : c.app_what;
    if (r->what && strstr(msg, r->what) == NULL)
        fail_msg("%s: message \"%s\" lacks \"%s\"", r->name, msg, r->what);
    if (c.template_app != r->template_app) fail_msg("%s: template_app %d", r->name, c.template_app);
    if (c.pools_changed != r->pools) fail_msg("%s: pools_changed %d", r->name, c.pools_changed);
    if (c.params_changed != r->params) fail_msg("%s: params_changed %d", r->name, c.params_changed);
    json_decref(old_spec);
    json_decref(new_spec);
    json_decref(op);
    json_decref(np);
}

static void table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) run_row(&rows[i]);
}

/* The same change the other way round is the same class. */
static void symmetric(void **state) {
    (void)state;
    json_t *a = yaml_spec(base_yaml), *b = json_deep_copy(a);
    set_path(b, STEPS(1) "/1/replicas", "3");
    tpl_change c;
    serr e = {0};
    assert_int_equal(tpl_change_classify(b, NULL, a, NULL, &c, &e), 0);
    assert_true(c.app);
    assert_false(c.infra);
    assert_true(c.app_steps[3]);
    set_path(b, STEPS(0) "/0/run", "\"other\"");
    assert_int_equal(tpl_change_classify(b, NULL, a, NULL, &c, &e), 0);
    assert_true(c.infra);
    json_decref(a);
    json_decref(b);
}

static void invalid(void **state) {
    (void)state;
    json_t *a = yaml_spec(base_yaml), *b = json_deep_copy(a);
    set_path(b, STEPS(1) "/1/change", "\"sometimes\"");
    tpl_change c;
    serr e = {0};
    assert_int_equal(tpl_change_classify(a, NULL, b, NULL, &c, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "new template"));
    assert_non_null(strstr(e.msg, "spec.phases[1].steps[1].change"));
    assert_int_equal(tpl_change_classify(b, NULL, a, NULL, &c, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "old template"));
    json_t *bad = jparse("[1]");
    assert_int_equal(tpl_change_classify(a, NULL, a, bad, &c, &e), SE_INVAL);
    json_decref(bad);
    json_decref(a);
    json_decref(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table),
        cmocka_unit_test(symmetric),
        cmocka_unit_test(invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
