/*
 * test_cli_output.c - exact text of stampctl tables and ages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cli/cli_output.h"

static void test_table_basic(void **state) {
    const char *h[] = {"name", "PHASE", "AGE"};
    table *t = table_new(3, h);
    assert_non_null(t);
    const char *r1[] = {"synaxis-weu-001", "Active", "5m"};
    const char *r2[] = {"s2", NULL, "45s"};
    assert_int_equal(table_add(t, r1), 0);
    assert_int_equal(table_add(t, r2), 0);
    sbuf b;
    sbuf_init(&b, 4096);
    assert_int_equal(table_render(t, &b), 0);
    assert_string_equal(b.data,
                        "NAME              PHASE    AGE\n"
                        "synaxis-weu-001   Active   5m\n"
                        "s2                <none>   45s\n");
    sbuf_free(&b);
    table_free(t);
}

static void test_table_cells(void **state) {
    const char *h[] = {"NAME", "MESSAGE", "X"};
    table *t = table_new(3, h);
    assert_non_null(t);
    /* Control characters become spaces; an empty last cell leaves no
     * trailing blanks; widths count characters, not bytes. */
    const char *r1[] = {"a\nb", "tab\there", ""};
    const char *r2[] = {"\xc3\xa9t\xc3\xa9", "x", "y"};
    assert_int_equal(table_add(t, r1), 0);
    assert_int_equal(table_add(t, r2), 0);
    sbuf b;
    sbuf_init(&b, 4096);
    assert_int_equal(table_render(t, &b), 0);
    assert_string_equal(b.data,
                        "NAME   MESSAGE    X\n"
                        "a b    tab here\n"
                        "\xc3\xa9t\xc3\xa9    x          y\n");
    sbuf_free(&b);
    table_free(t);
}

static void test_table_header_only_and_bounds(void **state) {
    const char *h[] = {"NAME", "AGE"};
    table *t = table_new(2, h);
    sbuf b;
    sbuf_init(&b, 4096);
    assert_int_equal(table_render(t, &b), 0);
    assert_string_equal(b.data, "NAME   AGE\n");
    sbuf_free(&b);

    /* The caller's buffer bounds the output. */
    const char *r[] = {"a-rather-long-name", "1d"};
    assert_int_equal(table_add(t, r), 0);
    sbuf_init(&b, 16);
    assert_int_equal(table_render(t, &b), SE_TOOBIG);
    sbuf_free(&b);
    table_free(t);

    const char *many[TABLE_MAX_COLS + 1] = {0};
    assert_null(table_new(TABLE_MAX_COLS + 1, many));
    assert_null(table_new(0, many));
    table_free(NULL);
}

static void test_table_row_limit(void **state) {
    const char *h[] = {"N"};
    table *t = table_new(1, h);
    const char *r[] = {"x"};
    for (int i = 0; i < TABLE_MAX_ROWS; i++) assert_int_equal(table_add(t, r), 0);
    assert_int_equal(table_add(t, r), SE_LIMIT);
    table_free(t);
}

static void check_age(int64_t ms, const char *want) {
    char buf[32];
    assert_string_equal(fmt_age(ms, buf, sizeof(buf)), want);
}

static void test_fmt_age(void **state) {
    check_age(-5000, "0s");
    check_age(0, "0s");
    check_age(999, "0s");
    check_age(45 * 1000, "45s");
    check_age(119 * 1000 + 999, "119s");
    check_age(120 * 1000, "2m");
    check_age(5 * 60 * 1000, "5m");
    check_age((120 * 60 - 1) * 1000LL, "119m");
    check_age(120 * 60 * 1000LL, "2h");
    check_age(3 * 3600 * 1000LL, "3h");
    check_age((48 * 3600 - 1) * 1000LL, "47h");
    check_age(48 * 3600 * 1000LL, "2d");
    check_age(400 * 86400 * 1000LL, "400d");
    char small[3];
    assert_string_equal(fmt_age(400 * 86400 * 1000LL, small, sizeof(small)), "40");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_basic),
        cmocka_unit_test(test_table_cells),
        cmocka_unit_test(test_table_header_only_and_bounds),
        cmocka_unit_test(test_table_row_limit),
        cmocka_unit_test(test_fmt_age),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
