/*
 * test_openapi.c - the OpenAPI document generated from the route table:
 * every row of stampd's real table is in it (method and path), operation
 * ids are unique, path parameters match the pattern, query parameters and
 * dryRun appear as the rows declare them, routes without auth say so; and
 * a watch line names the phase change of an event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/watch.h"

static void lower(const char *m, char *out, size_t n) {
    size_t i = 0;
    for (; m[i] && i + 1 < n; i++) out[i] = (char)(m[i] | 0x20);
    out[i] = '\0';
}

static int count_params(const char *pattern) {
    int n = 0;
    for (const char *p = pattern; *p; p++) n += *p == '{';
    return n;
}

static void test_every_route_is_documented(void **st) {
    (void)st;
    size_t n = 0;
    const api_route *rows = api_routes(&n);
    assert_true(n > 20);
    json_t *doc = api_openapi(rows, n, "9.9.9");
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "info"), "version")),
                        "9.9.9");
    json_t *paths = json_object_get(doc, "paths");
    json_t *ids = json_object();
    size_t ops = 0;
    for (size_t i = 0; i < n; i++) {
        char m[8];
        lower(rows[i].method, m, sizeof(m));
        json_t *op = json_object_get(json_object_get(paths, rows[i].pattern), m);
        if (op == NULL) fail_msg("%s %s is not in the document", rows[i].method, rows[i].pattern);
        ops++;
        const char *id = json_string_value(json_object_get(op, "operationId"));
        assert_non_null(id);
        if (json_object_get(ids, id)) fail_msg("operationId %s twice", id);
        json_object_set_new(ids, id, json_true());
        assert_true(strlen(json_string_value(json_object_get(op, "summary"))) > 0);
        /* path and query parameters as the row declares them */
        int path_n = 0, query_n = 0;
        bool dry = false;
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(op, "parameters"), k, p) {
            const char *in = json_string_value(json_object_get(p, "in"));
            const char *name = json_string_value(json_object_get(p, "name"));
            if (strcmp(in, "path") == 0) {
                path_n++;
                char want[80];
                snprintf(want, sizeof(want), "{%s}", name);
                assert_non_null(strstr(rows[i].pattern, want));
            } else {
                query_n++;
                if (strcmp(name, "dryRun") == 0) dry = true;
                else {
                    char want[80];
                    snprintf(want, sizeof(want), "%s:", name);
                    assert_non_null(rows[i].query);
                    assert_non_null(strstr(rows[i].query, want));
                }
            }
        }
        assert_int_equal(path_n, count_params(rows[i].pattern));
        assert_int_equal(dry, rows[i].dry_run);
        (void)query_n;
        char st_s[8];
        snprintf(st_s, sizeof(st_s), "%d", rows[i].status);
        assert_non_null(json_object_get(json_object_get(op, "responses"), st_s));
        assert_non_null(json_object_get(json_object_get(op, "responses"), "default"));
        json_t *sec = json_object_get(op, "security");
        if (rows[i].auth == API_AUTH_NONE) assert_true(json_is_array(sec) && json_array_size(sec) == 0);
        else assert_null(sec);
    }
    /* nothing documented that the table does not have */
    size_t documented = 0;
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item) documented += json_object_size(item);
    assert_int_equal(documented, ops);
    json_decref(ids);
    json_decref(doc);
}

static void test_watch_line(void **st) {
    (void)st;
    /* from and to are the store's columns, as phase_change() wrote them. */
    json_t *ev = json_pack("{s:I,s:s,s:s,s:s,s:s,s:I,s:s,s:s}", "id", (json_int_t)7, "kind", "Stamp",
                           "name", "synaxis-weu-001", "reason", "DrainComplete", "message",
                           "Draining -> Ready: connections closed (all done)", "resourceVersion",
                           (json_int_t)9, "from", "Draining", "to", "Ready");
    json_t *l = watch_line(ev);
    assert_string_equal(json_string_value(json_object_get(l, "type")), "MODIFIED");
    json_t *e = json_object_get(l, "event");
    assert_string_equal(json_string_value(json_object_get(e, "from")), "Draining");
    assert_string_equal(json_string_value(json_object_get(e, "to")), "Ready");
    json_decref(l);
    json_object_set_new(ev, "message", json_string("Deleting -> Deleted: purged"));
    json_object_set_new(ev, "from", json_string("Deleting"));
    json_object_set_new(ev, "to", json_string("Deleted"));
    l = watch_line(ev);
    assert_string_equal(json_string_value(json_object_get(l, "type")), "DELETED");
    json_decref(l);
    /* Not a phase change: no from or to, whatever the message says. */
    json_object_del(ev, "from");
    json_object_del(ev, "to");
    json_object_set_new(ev, "message", json_string("deploy requested by x: region a -> b"));
    json_object_set_new(ev, "resourceVersion", json_integer(1));
    l = watch_line(ev);
    assert_string_equal(json_string_value(json_object_get(l, "type")), "ADDED");
    assert_null(json_object_get(json_object_get(l, "event"), "to"));
    json_decref(l);
    json_decref(ev);
}

static void test_reals_as_written(void **st) {
    (void)st;
    static const struct {
        double v;
        const char *want;
    } cases[] = {{0.073, "0.073"}, {0.1 + 0.2, "0.3"}, {1234.5678, "1234.5678"},
                 {99.95, "99.95"}, {1e-7, "1e-7"}, {2.0, "2.0"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *a = json_pack("[f]", cases[i].v);
        char *s = json_dumps(a, (API_JSON_DUMP_FLAGS & ~(size_t)JSON_MAX_INDENT) | JSON_COMPACT);
        char want[64];
        snprintf(want, sizeof(want), "[%s]", cases[i].want);
        if (strcmp(s, want) != 0) fail_msg("%.17g printed %s, want %s", cases[i].v, s, want);
        free(s);
        json_decref(a);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_is_documented),
        cmocka_unit_test(test_watch_line),
        cmocka_unit_test(test_reals_as_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
