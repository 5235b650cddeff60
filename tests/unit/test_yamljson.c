/*
 * test_yamljson.c - manifests in, YAML out: typing of plain scalars, the
 * refusals (duplicates, aliases, tags, depth, size) with line and column,
 * several documents, and json_to_yaml read back to the same value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/yamljson.h"

static json_t *parse_ok(const char *y) {
    json_t *v = NULL;
    serr e = {0};
    if (yaml_to_json(y, strlen(y), &v, NULL, &e) != 0) fail_msg("%s: %s", y, e.msg);
    return v;
}

static void parse_bad(const char *y, const char *reason) {
    json_t *v = NULL;
    serr e = {0};
    int rc = yaml_to_json(y, strlen(y), &v, NULL, &e);
    if (rc == 0) fail_msg("accepted: %s", y);
    assert_null(v);
    if (strstr(e.msg, reason) == NULL) fail_msg("\"%s\": got \"%s\", wanted \"%s\"", y, e.msg, reason);
}

static void test_typing(void **st) {
    json_t *v = parse_ok("a: 1\nb: -2\nc: 1.5\nd: true\ne: False\nf: ~\ng: null\nh: text\n"
                         "i: \"1\"\nj: 'true'\nk: 0x1f\nl: 1e3\nm: 01:02\nn: !!str 5\no:\n");
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "b")), -2);
    assert_true(json_is_real(json_object_get(v, "c")));
    assert_true(json_is_true(json_object_get(v, "d")));
    assert_true(json_is_false(json_object_get(v, "e")));
    assert_true(json_is_null(json_object_get(v, "f")));
    assert_true(json_is_null(json_object_get(v, "g")));
    assert_string_equal(json_string_value(json_object_get(v, "h")), "text");
    assert_string_equal(json_string_value(json_object_get(v, "i")), "1");
    assert_string_equal(json_string_value(json_object_get(v, "j")), "true");
    assert_int_equal(json_integer_value(json_object_get(v, "k")), 31);
    assert_true(json_is_real(json_object_get(v, "l")));
    assert_string_equal(json_string_value(json_object_get(v, "m")), "01:02");
    assert_string_equal(json_string_value(json_object_get(v, "n")), "5");
    assert_true(json_is_null(json_object_get(v, "o")));
    json_decref(v);
}

static void test_json_is_yaml(void **st) {
    json_t *v = parse_ok("{\"kind\": \"StampTemplate\", \"steps\": [1, 2, {\"x\": null}]}");
    assert_int_equal(json_array_size(json_object_get(v, "steps")), 3);
    json_decref(v);
}

static void test_refusals(void **st) {
    parse_bad("a: 1\nb: 2\na: 3\n", "line 3, column 1: duplicate key \"a\"");
    parse_bad("a: &x 1\nb: *x\n", "anchors are not supported");
    parse_bad("a: [1, *x]\n", "line 1");
    parse_bad("a: !custom 1\n", "tags are not supported");
    parse_bad("? [1, 2]\n: v\n", "mapping keys must be scalars");
    parse_bad("a: [1, 2\n", "line");
    parse_bad("", "empty document");
    parse_bad("a: 1\n---\nb: 2\n", "2 documents");
}

static void test_nonfinite_are_strings(void **st) {
    json_t *v = parse_ok("a: 1e400\nb: .inf\n");
    assert_true(json_is_string(json_object_get(v, "a")));
    assert_true(json_is_string(json_object_get(v, "b")));
    json_decref(v);
}

static void test_depth_and_size(void **st) {
    char deep[200];
    size_t n = 0;
    for (int i = 0; i < MANIFEST_MAX_DEPTH + 2; i++) deep[n++] = '[';
    for (int i = 0; i < MANIFEST_MAX_DEPTH + 2; i++) deep[n++] = ']';
    deep[n] = '\0';
    parse_bad(deep, "nested deeper than");
    json_t *v = NULL;
    serr e = {0};
    assert_int_equal(json_parse_user(deep, strlen(deep), &v, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "nested deeper"));
    size_t big = MANIFEST_MAX_BYTES + 1;
    char *b = malloc(big + 1);
    memset(b, ' ', big);
    b[big] = '\0';
    assert_int_equal(yaml_to_json(b, big, &v, NULL, &e), SE_TOOBIG);
    assert_int_equal(json_parse_user(b, big, &v, &e), SE_TOOBIG);
    free(b);
}

static void test_json_user(void **st) {
    json_t *v = NULL;
    serr e = {0};
    const char *dup = "{\"a\": 1, \"a\": 2}";
    assert_int_equal(json_parse_user(dup, strlen(dup), &v, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "duplicate"));
    const char *bad = "{\"a\": 1,\n \"b\": }";
    assert_int_equal(json_parse_user(bad, strlen(bad), &v, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "line 2"));
    const char *ok = "{\"a\": [1, {\"b\": 2}]}";
    assert_int_equal(json_parse_user(ok, strlen(ok), &v, &e), 0);
    assert_int_equal(json_depth(v), 4); /* object, array, object, scalar */
    json_decref(v);
}

static void test_multi(void **st) {
    const char *y = "kind: A\n---\nkind: B\n---\n";
    json_t *v = NULL;
    int multi = 0;
    serr e = {0};
    assert_int_equal(yaml_to_json(y, strlen(y), &v, &multi, &e), 0);
    assert_int_equal(multi, 1);
    assert_true(json_is_array(v));
    assert_int_equal(json_array_size(v), 3); /* the last, empty one is null */
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 1), "kind")), "B");
    json_decref(v);
}

static void test_yaml_roundtrip(void **st) {
    const char *src =
        "{\"name\": \"synaxis-weu-001\", \"n\": 3, \"r\": 2.5, \"on\": true, \"nil\": null,"
        " \"looks\": [\"true\", \"010\", \"1.5\", \"no\", \"a: b\", \"- x\", \"#c\", \"\", \" sp\"],"
        " \"nested\": {\"list\": [{\"a\": 1, \"b\": [1, 2]}, [3, 4], {}], \"empty\": []},"
        " \"text\": \"line1\\nline2\", \"uni\": \"caf\\u00e9\"}";
    json_t *v = NULL;
    serr e = {0};
    assert_int_equal(json_parse_user(src, strlen(src), &v, &e), 0);
    char *y = NULL;
    assert_int_equal(json_to_yaml(v, &y, &e), 0);
    json_t *back = NULL;
    if (yaml_to_json(y, strlen(y), &back, NULL, &e) != 0) fail_msg("%s\n%s", e.msg, y);
    if (!json_equal(v, back)) {
        char *a = json_dumps(back, 0);
        fail_msg("round trip differs:\n%s\n%s", y, a);
    }
    json_decref(back);
    json_decref(v);
    free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typing),        cmocka_unit_test(test_json_is_yaml),
        cmocka_unit_test(test_refusals),      cmocka_unit_test(test_nonfinite_are_strings),
        cmocka_unit_test(test_depth_and_size), cmocka_unit_test(test_json_user),
        cmocka_unit_test(test_multi),         cmocka_unit_test(test_yaml_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
