/*
 * test_autoscale_spec.c - the StampAutoscaler spec: seed 000's YAML parses
 * as written, the example in deploy/autoscaler parses with its decided
 * fields, thresholds are read in the seed's units, and every bad field is
 * refused with its path in the message.  The bad cases are a table of
 * (field path, value, words the message must hold) applied to the seed's
 * spec one at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "autoscale/spec.h"
#include "util/util.h"
#include "util/yamljson.h"

/* Seed 000's StampAutoscaler, exactly as the seed writes it. */
static const char seed_yaml[] =
    "apiVersion: autoscaling.synaxis.io/v1\n"
    "kind: StampAutoscaler\n"
    "metadata:\n"
    "  name: synaxis-autoscaler\n"
    "spec:\n"
    "  scaleOut:\n"
    "    triggers:\n"
    "      - metric: cpu_utilization\n"
    "        threshold: 70\n"
    "        duration: 5m\n"
    "      - metric: memory_utilization\n"
    "        threshold: 80\n"
    "        duration: 5m\n"
    "      - metric: request_latency_p99\n"
    "        threshold: 500ms\n"
    "        duration: 3m\n"
    "    cooldown: 10m\n"
    "    maxStamps: 10\n"
    "  \n"
    "  scaleIn:\n"
    "    triggers:\n"
    "      - metric: cpu_utilization\n"
    "        threshold: 30\n"
    "        duration: 15m\n"
    "      - metric: active_connections\n"
    "        threshold: 10\n"
    "        duration: 10m\n"
    "    cooldown: 30m\n"
    "    minStamps: 2\n"
    "  \n"
    "  standby:\n"
    "    maxAge: 72h\n"
    "    scaleDown:\n"
    "      generalPool: 0\n"
    "      gpuPool: 0\n";

static json_t *seed_spec(void) {
    json_t *m = NULL;
    serr e = {0};
    if (yaml_to_json(seed_yaml, strlen(seed_yaml), &m, NULL, &e) != 0) fail_msg("seed YAML: %s", e.msg);
    json_t *spec = json_incref(json_object_get(m, "spec"));
    json_decref(m);
    return spec;
}

static as_spec *new_spec(void) {
    as_spec *sp = malloc(sizeof(*sp));
    assert_non_null(sp);
    return sp;
}

static void test_seed_parses(void **st) {
    as_spec *sp = new_spec();
    json_t *spec = seed_spec();
    serr e = {0};
    if (as_spec_parse(spec, sp, &e) != 0) fail_msg("the seed's YAML is refused: %s", e.msg);
    assert_int_equal(sp->out.n, 3);
    assert_int_equal(sp->out.t[0].metric, AM_CPU);
    assert_true(sp->out.t[0].threshold == 70);
    assert_int_equal(sp->out.t[0].duration_ms, 5 * 60000);
    assert_int_equal(sp->out.t[1].metric, AM_MEMORY);
    assert_true(sp->out.t[1].threshold == 80);
    assert_int_equal(sp->out.t[2].metric, AM_LATENCY_P99);
    assert_true(sp->out.t[2].threshold > 0.4999 && sp->out.t[2].threshold < 0.5001); /* seconds */
    assert_int_equal(sp->out.t[2].duration_ms, 3 * 60000);
    assert_int_equal(sp->out.cooldown_ms, 10 * 60000);
    assert_int_equal(sp->out.limit, 10);
    assert_int_equal(sp->in.n, 2);
    assert_int_equal(sp->in.t[1].metric, AM_CONNECTIONS);
    assert_true(sp->in.t[1].threshold == 10);
    assert_int_equal(sp->in.t[0].duration_ms, 15 * 60000);
    assert_int_equal(sp->in.cooldown_ms, 30 * 60000);
    assert_int_equal(sp->in.limit, 2);
    assert_int_equal(sp->standby_max_age_ms, 72LL * 3600 * 1000);
    assert_int_equal(sp->general_pool, 0);
    assert_int_equal(sp->gpu_pool, 0);
    /* What the seed leaves open takes its documented default. */
    assert_string_equal(sp->template_name, "");
    assert_int_equal(sp->nregions, 0);
    assert_int_equal(sp->nmins, 0);
    assert_false(sp->paused);
    assert_int_equal(sp->interval_ms, 15000);
    assert_int_equal(sp->step, 1);
    json_decref(spec);
    free(sp);
}

static void test_example_parses(void **st) {
    const char *src = getenv("STAMP_SRC");
    if (src == NULL) skip();
    char path[1024], *text;
    size_t len;
    serr e = {0};
    snprintf(path, sizeof(path), "%s/deploy/autoscaler/synaxis-autoscaler.yaml", src);
    assert_int_equal(read_file(path, 1 << 20, &text, &len, &e), 0);
    json_t *m = NULL;
    assert_int_equal(yaml_to_json(text, len, &m, NULL, &e), 0);
    free(text);
    as_spec *sp = new_spec();
    if (as_spec_parse(json_object_get(m, "spec"), sp, &e) != 0) fail_msg("example refused: %s", e.msg);
    assert_string_equal(sp->template_name, "synaxis-stamp");
    assert_int_equal(sp->nregions, 2);
    assert_string_equal(sp->regions[0], "westeurope");
    assert_string_equal(sp->regions[1], "eastus");
    assert_int_equal(as_spec_region_min(sp, "westeurope"), 1);
    assert_int_equal(as_spec_region_min(sp, "eastus"), 1);
    assert_int_equal(as_spec_region_min(sp, "southeastasia"), 0);
    assert_int_equal(sp->interval_ms, 15000);
    /* The example is the seed's YAML plus decided fields: the seed's own
     * fields are the same. */
    as_spec *seed = new_spec();
    json_t *ss = seed_spec();
    assert_int_equal(as_spec_parse(ss, seed, &e), 0);
    assert_memory_equal(&seed->out, &sp->out, sizeof(sp->out));
    assert_memory_equal(&seed->in, &sp->in, sizeof(sp->in));
    json_decref(ss);
    json_decref(m);
    free(seed);
    free(sp);
}

/* Sets (or with v NULL removes) the member at a path like
 * "scaleOut.triggers[2].threshold"; takes v's reference. */
static void set_path(json_t *root, const char *path, json_t *v) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = root;
    char *seg = buf;
    for (;;) {
        char *dot = strchr(seg, '.');
        if (dot) *dot = '\0';
        char *br = strchr(seg, '[');
        int idx = -1;
        if (br) {
            *br = '\0';
            idx = (int)strtol(br + 1, NULL, 10);
        }
        bool last = dot == NULL;
        if (last && idx < 0) {
            if (v) json_object_set_new(cur, seg, v);
            else json_object_del(cur, seg);
            return;
        }
        json_t *next = json_object_get(cur, seg);
        assert_non_null(next);
        if (idx >= 0) {
            if (last) {
                if (v) json_array_set_new(next, (size_t)idx, v);
                else json_array_remove(next, (size_t)idx);
                return;
            }
            next = json_array_get(next, (size_t)idx);
            assert_non_null(next);
        }
        cur = next;
        seg = dot + 1;
    }
}

static json_t *many_triggers(int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:i,s:s}", "metric", "cpu_utilization", "threshold", 70, "duration",
                                           "5m"));
    return a;
}

/* Long: the table of bad fields, one row each. */
static void test_bad_fields(void **st) {
    struct {
        const char *path;
        const char *value; /* JSON text; NULL removes the field */
        const char *want1, *want2;
    } rows[] = {
        {"scaleOut.triggers[2].threshold", "500", "spec.scaleOut.triggers[2].threshold: 500 has no unit", "500ms"},
        {"scaleOut.triggers[2].threshold", "\"500\"", "spec.scaleOut.triggers[2].threshold: 500 has no unit", "500ms"},
        {"scaleOut.triggers[2].threshold", "\"500parsecs\"", "spec.scaleOut.triggers[2].threshold", "unknown unit"},
        {"scaleOut.triggers[2].threshold", "\"2h\"", "spec.scaleOut.triggers[2].threshold", "unknown unit"},
        {"scaleOut.triggers[2].threshold", "\"0ms\"", "spec.scaleOut.triggers[2].threshold", "out of range"},
        {"scaleOut.triggers[0].threshold", "170", "spec.scaleOut.triggers[0].threshold: 170% is not a percentage", NULL},
        {"scaleOut.triggers[0].threshold", "\"70ms\"", "spec.scaleOut.triggers[0].threshold", "is a percentage"},
        {"scaleOut.triggers[0].threshold", "\"lots\"", "spec.scaleOut.triggers[0].threshold: must be a number", NULL},
        {"scaleOut.triggers[0].threshold", "true", "spec.scaleOut.triggers[0].threshold: must be a number", NULL},
        {"scaleOut.triggers[0].threshold", NULL, "spec.scaleOut.triggers[0].threshold: required", NULL},
        {"scaleIn.triggers[1].threshold", "\"10%\"", "spec.scaleIn.triggers[1].threshold", "is a count"},
        {"scaleIn.triggers[1].threshold", "-1", "spec.scaleIn.triggers[1].threshold", "not a count"},
        {"scaleOut.triggers[1].metric", "\"gpu_utilization\"", "spec.scaleOut.triggers[1].metric: \"gpu_utilization\"",
         "cpu_utilization"},
        {"scaleOut.triggers[1].metric", NULL, "spec.scaleOut.triggers[1].metric: required", NULL},
        {"scaleOut.triggers[0].duration", "300", "spec.scaleOut.triggers[0].duration: 300 has no unit", NULL},
        {"scaleOut.triggers[0].duration", "\"300\"", "spec.scaleOut.triggers[0].duration: \"300\" has no unit", NULL},
        {"scaleOut.triggers[0].duration", "\"25h\"", "spec.scaleOut.triggers[0].duration", "out of range"},
        {"scaleOut.triggers[0].duration", NULL, "spec.scaleOut.triggers[0].duration: required", NULL},
        {"scaleOut.triggers[0].query", "\"up\"", "spec.scaleOut.triggers[0].query: only a prometheus trigger", NULL},
        {"scaleOut.triggers[0].metric", "\"prometheus\"", "spec.scaleOut.triggers[0].query: required", NULL},
        {"scaleOut.triggers[0].extra", "1", "spec.scaleOut.triggers[0].extra: unknown field", NULL},
        {"scaleOut.triggers[0]", "\"cpu > 70\"", "spec.scaleOut.triggers[0]: must be a mapping", NULL},
        {"scaleOut.triggers", "[]", "spec.scaleOut.triggers: a list of 1 to 16 triggers", NULL},
        {"scaleOut.triggers", "17", "spec.scaleOut.triggers: a list of 1 to 16 triggers", NULL}, /* many_triggers */
        {"scaleIn.triggers", NULL, "spec.scaleIn.triggers: a list of 1 to 16", NULL},
        {"scaleOut.maxStamps", "1001", "spec.scaleOut.maxStamps: must be an integer from 1 to 1000", NULL},
        {"scaleOut.maxStamps", "0", "spec.scaleOut.maxStamps", NULL},
        {"scaleOut.maxStamps", NULL, "spec.scaleOut.maxStamps: required", NULL},
        {"scaleIn.minStamps", "11", "spec.scaleIn.minStamps: 11 is more than spec.scaleOut.maxStamps (10)", NULL},
        {"scaleIn.minStamps", "\"2\"", "spec.scaleIn.minStamps: must be an integer", NULL},
        {"scaleOut.cooldown", "\"soon\"", "spec.scaleOut.cooldown: not a duration", NULL},
        {"scaleIn.cooldown", "\"2d\"", "spec.scaleIn.cooldown", "out of range"},
        {"scaleOut.maxReplicas", "3", "spec.scaleOut.maxReplicas: unknown field", NULL},
        {"scaleIn", NULL, "spec.scaleIn: required", NULL},
        {"scaleOut", "[]", "spec.scaleOut: must be a mapping", NULL},
        {"regions", "[\"westeurope\",\"atlantis\"]", "spec.regions[1]: \"atlantis\" is not a region", "eastus"},
        {"regions", "[\"westeurope\",\"westeurope\"]", "spec.regions[1]: \"westeurope\" is listed twice", NULL},
        {"regions", "[]", "spec.regions: a list of 1 to 16", NULL},
        {"regions", "[3]", "spec.regions[0]: must be a region name", NULL},
        {"regionMinimums", "{\"atlantis\":1}", "spec.regionMinimums.atlantis: \"atlantis\" is not a region", NULL},
        {"regionMinimums", "{\"westeurope\":11}", "spec.regionMinimums.westeurope: must be an integer from 0 to maxStamps",
         NULL},
        {"regionMinimums", "{\"westeurope\":6,\"eastus\":5}", "spec.regionMinimums: they add up to 11", NULL},
        {"regionMinimums", "[1]", "spec.regionMinimums: a mapping", NULL},
        {"interval", "\"0s\"", "spec.interval", "out of range"},
        {"interval", "\"2h\"", "spec.interval", "out of range"},
        {"step", "11", "spec.step: must be an integer from 1 to 10", NULL},
        {"step", "0", "spec.step", NULL},
        {"paused", "\"no\"", "spec.paused: must be true or false", NULL},
        {"template", "\"Bad Name\"", "spec.template: \"Bad Name\" is not a StampTemplate name", NULL},
        {"template", "\"\"", "spec.template: must be a non-empty string", NULL},
        {"standby.maxAge", "\"100d\"", "spec.standby.maxAge", "out of range"},
        {"standby.maxAge", "\"30s\"", "spec.standby.maxAge", "out of range"},
        {"standby.scaleDown.gpuPool", "-1", "spec.standby.scaleDown.gpuPool: must be an integer from 0 to 100", NULL},
        {"standby.scaleDown.cpuPool", "0", "spec.standby.scaleDown.cpuPool: unknown field", NULL},
        {"standby.warm", "true", "spec.standby.warm: unknown field", NULL},
        {"replicas", "3", "spec.replicas: unknown field", NULL},
    };
    as_spec *sp = new_spec();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *spec = seed_spec();
        if (strcmp(rows[i].path, "regionMinimums") == 0 && strstr(rows[i].value, "atlantis") == NULL &&
            strstr(rows[i].value, "[") == NULL)
            set_path(spec, "regions", json_pack("[s,s]", "westeurope", "eastus"));
        json_t *v = NULL;
        if (rows[i].value && strcmp(rows[i].value, "17") == 0 && strcmp(rows[i].path, "scaleOut.triggers") == 0)
            v = many_triggers(17);
        else if (rows[i].value) {
            v = json_loads(rows[i].value, JSON_DECODE_ANY, NULL);
            assert_non_null(v);
        }
        set_path(spec, rows[i].path, v);
        serr e = {0};
        int rc = as_spec_parse(spec, sp, &e);
        if (rc != SE_INVAL) fail_msg("%s = %s: accepted (rc %d)", rows[i].path, rows[i].value ? rows[i].value : "(removed)", rc);
        if (strstr(e.msg, rows[i].want1) == NULL || (rows[i].want2 && strstr(e.msg, rows[i].want2) == NULL))
            fail_msg("%s = %s: message \"%s\" lacks \"%s\"%s%s", rows[i].path, rows[i].value ? rows[i].value : "(removed)",
                     e.msg, rows[i].want1, rows[i].want2 ? " and " : "", rows[i].want2 ? rows[i].want2 : "");
        json_decref(spec);
    }
    json_t *nospec = json_string("x");
    serr e = {0};
    assert_int_equal(as_spec_parse(nospec, sp, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "spec: required mapping"));
    assert_int_equal(as_spec_parse(NULL, sp, &e), SE_INVAL);
    json_decref(nospec);
    free(sp);
}

static void test_units(void **st) {
    struct {
        const char *metric;
        const char *threshold; /* JSON */
        double want;
    } rows[] = {
        {"request_latency_p99", "\"1s\"", 1},       {"request_latency_p99", "\"1.5s\"", 1.5},
        {"request_latency_p99", "\"250us\"", 250e-6}, {"request_latency_p99", "\"500ms\"", 0.5},
        {"active_jobs", "\"80%\"", 80},             {"active_jobs", "80", 80},
        {"cpu_utilization", "\"70\"", 70},          {"cpu_utilization", "70.5", 70.5},
        {"queue_depth", "1000", 1000},              {"queue_depth", "0", 0},
        {"active_connections", "\"10\"", 10},       {"memory_utilization", "\"80%\"", 80},
    };
    as_spec *sp = new_spec();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *spec = seed_spec();
        set_path(spec, "scaleOut.triggers[0].metric", json_string(rows[i].metric));
        set_path(spec, "scaleOut.triggers[0].threshold", json_loads(rows[i].threshold, JSON_DECODE_ANY, NULL));
        serr e = {0};
        if (as_spec_parse(spec, sp, &e) != 0) fail_msg("%s %s refused: %s", rows[i].metric, rows[i].threshold, e.msg);
        double got = sp->out.t[0].threshold;
        if (got < rows[i].want * 0.9999 - 1e-12 || got > rows[i].want * 1.0001 + 1e-12)
            fail_msg("%s %s: got %g, want %g", rows[i].metric, rows[i].threshold, got, rows[i].want);
        json_decref(spec);
    }
    /* A prometheus trigger: its query, a plain number in its own unit. */
    json_t *spec = seed_spec();
    set_path(spec, "scaleOut.triggers[0]",
             json_pack("{s:s,s:s,s:f,s:s}", "metric", "prometheus", "query",
                       "sum(rate(stamp_workload_requests_total[1m]))", "threshold", 42.5, "duration", "1m"));
    serr e = {0};
    assert_int_equal(as_spec_parse(spec, sp, &e), 0);
    assert_int_equal(sp->out.t[0].metric, AM_PROMETHEUS);
    assert_string_equal(sp->out.t[0].query, "sum(rate(stamp_workload_requests_total[1m]))");
    assert_true(sp->out.t[0].threshold == 42.5);
    json_decref(spec);
    /* Values for people in the seed's units. */
    char b[32];
    assert_string_equal(as_value_fmt(AM_LATENCY_P99, 0.5, b, sizeof(b)), "500ms");
    assert_string_equal(as_value_fmt(AM_LATENCY_P99, 1.25, b, sizeof(b)), "1.25s");
    assert_string_equal(as_value_fmt(AM_CPU, 70, b, sizeof(b)), "70%");
    assert_string_equal(as_value_fmt(AM_CONNECTIONS, 1000, b, sizeof(b)), "1000");
    assert_string_equal(as_value_fmt(AM_CONNECTIONS, 6.6666, b, sizeof(b)), "6.67");
    free(sp);
}

static void test_template_and_sig(void **st) {
    as_spec *sp = new_spec();
    json_t *spec = seed_spec();
    serr e = {0};
    assert_int_equal(as_spec_parse(spec, sp, &e), 0);
    const char *one[] = {"synaxis-stamp"}, *two[] = {"synaxis-stamp", "slow-stamp"};
    assert_int_equal(as_spec_resolve_template(sp, two, 0, &e), SE_NOTFOUND);
    assert_non_null(strstr(e.msg, "spec.template: no StampTemplate"));
    assert_int_equal(as_spec_resolve_template(sp, two, 2, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "spec.template: required when there are several StampTemplates (synaxis-stamp, slow-stamp)"));
    assert_int_equal(as_spec_resolve_template(sp, one, 1, &e), 0);
    assert_string_equal(sp->template_name, "synaxis-stamp");
    set_path(spec, "template", json_string("gpu-stamp"));
    assert_int_equal(as_spec_parse(spec, sp, &e), 0);
    assert_int_equal(as_spec_resolve_template(sp, two, 2, &e), SE_NOTFOUND);
    assert_non_null(strstr(e.msg, "spec.template: StampTemplate gpu-stamp not found"));
    /* A changed trigger has another fingerprint; the same one the same. */
    as_trigger a = sp->out.t[0], b = a;
    assert_true(as_trigger_sig(&a) == as_trigger_sig(&b));
    b.threshold = 71;
    assert_true(as_trigger_sig(&a) != as_trigger_sig(&b));
    b = a;
    b.duration_ms += 1000;
    assert_true(as_trigger_sig(&a) != as_trigger_sig(&b));
    assert_true(as_trigger_sig(&a) != 0);
    json_decref(spec);
    free(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_parses), cmocka_unit_test(test_example_parses),
        cmocka_unit_test(test_bad_fields),  cmocka_unit_test(test_units),
        cmocka_unit_test(test_template_and_sig),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
