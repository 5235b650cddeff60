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

/* v -> YAML -> JSON gives v back, or the test fails showing the YAML. */
static void roundtrip(json_t *v, const char *what) {
    char *y = NULL;
    serr e = {0};
    if (json_to_yaml(v, &y, &e) != 0) fail_msg("%s: emit: %s", what, e.msg);
    json_t *back = NULL;
    if (yaml_to_json(y, strlen(y), &back, NULL, &e) != 0) {
        fail_msg("%s: does not read back: %s\n%.400s", what, e.msg, y);
    }
    if (!json_equal(v, back)) {
        char *a = json_dumps(v, JSON_ENCODE_ANY), *b = json_dumps(back, JSON_ENCODE_ANY);
        fail_msg("%s: round trip differs:\n%.400s\nwas %.300s\ngot %.300s", what, y, a, b);
    }
    json_decref(back);
    free(y);
}

/* Every string survives JSON -> YAML -> JSON as a value, as a key, in a
 * sequence, nested, and as the whole document. */
static void test_string_roundtrip(void **st) {
    static const char *const cases[] = {
        /* found by a round-trip fuzzer */
        "\xc2\x85", "a\xc2\x85" "b", "\xc2\x85" "a", "\xef\xbb\xbf", "\xef\xbb\xbf" "a",
        "\xe2\x80\xa8", "\xe2\x80\xa9", "a\xe2\x80\xa8" "b", "...", "... x", "...a", "..",
        /* document markers and indicators */
        "---", "--- a", "-", "- ", "- a", "-a", ": ", "a: b", "a:", ":", "?", "? a", "#", "a #b",
        "a#b", "[a]", "{a}", "a, b", "*a", "&a", "!a", "!!str", "|", ">", "'", "\"", "%YAML",
        "@a", "`a", "<<", "=", ",",
        /* typed words as strings */
        "true", "false", "True", "null", "Null", "~", "yes", "no", "on", "off", "y", "n",
        "0", "123", "-1", "+1", "1.5", "1e3", "0x1f", "0o17", "010", ".5", "1.", ".inf", "-.inf",
        ".nan", "1_000",
        /* empty, spaces, controls */
        "", " ", "  ", " a", "a ", "\t", "a\tb", "\n", "a\nb", "a\n", "\r\n", "\x01", "\x1f",
        "\x7f", "a\x1b[0m", "\\", "\\n", "\xc2\x80", "\xc2\x9f", "\xc2\xa0", "\xef\xbf\xbe",
        "\xef\xbf\xbf", "\xef\xbf\xbd",
        /* beyond ASCII */
        "caf\xc3\xa9", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "a\xf0\x90\x80\x80" "b",
        "\xe6\x97\xa5\xe6\x9c\xac",
    };
    char what[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *c = cases[i];
        snprintf(what, sizeof(what), "case %zu", i);
        json_t *s = json_string(c);
        assert_non_null(s);
        json_t *v = json_pack("{s:O,s:[O,O],s:{s:[O]}}", "value", s, "list", s, s, "nested", c, s);
        json_object_set(v, c, s);
        roundtrip(v, what);
        roundtrip(s, what);
        json_t *arr = json_pack("[{s:O}]", c, s);
        roundtrip(arr, what);
        json_decref(arr);
        json_decref(v);
        json_decref(s);
    }
}

/* Long keys (libyaml takes implicit keys of up to 1024 characters), long
 * values, and keys whose escaped form is long. */
static void test_long_roundtrip(void **st) {
    static const size_t lens[] = {1000, 1023, 1024, 1025, 2000, 100000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        char *k = malloc(lens[i] + 1), *ctl = malloc(lens[i] / 4 + 1);
        assert_non_null(k);
        assert_non_null(ctl);
        memset(k, 'k', lens[i]);
        k[lens[i]] = '\0';
        memset(ctl, '\x01', lens[i] / 4); /* \x01 is written as 4 characters */
        ctl[lens[i] / 4] = '\0';
        json_t *v = json_pack("{s:s,s:{s:i},s:[s]}", k, k, ctl, "a", 1, "x", k);
        json_object_set_new(v, "scalar", json_string(ctl));
        json_t *inner = json_pack("[{s:[i,i]}]", k, 1, 2);
        json_object_set_new(v, "seq", inner);
        roundtrip(v, "long");
        json_decref(v);
        free(k);
        free(ctl);
    }
}

static void test_reals_shortest(void **st) {
    json_t *v = json_pack("{s:f,s:f,s:f}", "a", 0.073, "b", 0.1, "c", 1e300);
    char *y = NULL;
    serr e = {0};
    assert_int_equal(json_to_yaml(v, &y, &e), 0);
    assert_non_null(strstr(y, "a: 0.073\n"));
    assert_non_null(strstr(y, "b: 0.1\n"));
    free(y);
    roundtrip(v, "reals");
    json_decref(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typing),        cmocka_unit_test(test_json_is_yaml),
        cmocka_unit_test(test_refusals),      cmocka_unit_test(test_nonfinite_are_strings),
        cmocka_unit_test(test_depth_and_size), cmocka_unit_test(test_json_user),
        cmocka_unit_test(test_multi),         cmocka_unit_test(test_yaml_roundtrip),
        cmocka_unit_test(test_string_roundtrip), cmocka_unit_test(test_long_roundtrip),
        cmocka_unit_test(test_reals_shortest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
