/*
 * test_strfmt.c - formatting into fixed buffers: str_fmt refuses what does
 * not fit (SE_TOOBIG naming it, and leaves "" so a cut name cannot be
 * used), str_fmt_cut cuts on purpose but never inside a UTF-8 character and
 * never lets an appending caller run past the buffer; serr messages and
 * durations, which are built with them, stay valid UTF-8 when cut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "util/util.h"

static void test_fmt_checked(void **state) {
    (void)state;
    char buf[8];
    serr e = {0};
    assert_int_equal(str_fmt(buf, sizeof(buf), &e, "key", "%s-%d", "ab", 42), 0);
    assert_string_equal(buf, "ab-42");
    /* Exactly full: 7 characters and the NUL. */
    assert_int_equal(str_fmt(buf, sizeof(buf), &e, "key", "%s", "1234567"), 0);
    assert_string_equal(buf, "1234567");
    /* One more is an error, not a shorter key. */
    assert_int_equal(str_fmt(buf, sizeof(buf), &e, "blob path", "%s", "12345678"), SE_TOOBIG);
    assert_int_equal(e.code, SE_TOOBIG);
    assert_non_null(strstr(e.msg, "blob path too long"));
    assert_non_null(strstr(e.msg, "7 bytes"));
    assert_string_equal(buf, "");
    /* Without an error context it still refuses. */
    assert_int_equal(str_fmt(buf, sizeof(buf), NULL, "x", "%s", "far too long"), SE_TOOBIG);
    assert_string_equal(buf, "");
}

static void test_fmt_cut(void **state) {
    (void)state;
    char buf[8];
    assert_int_equal(str_fmt_cut(buf, sizeof(buf), "%s", "short"), 5);
    assert_string_equal(buf, "short");
    assert_int_equal(str_fmt_cut(buf, sizeof(buf), "%s", "0123456789"), 7);
    assert_string_equal(buf, "0123456");
    /* "abcde" then "é" (2 bytes) would end at byte 7: é fits whole. */
    assert_int_equal(str_fmt_cut(buf, sizeof(buf), "abcde\xc3\xa9xyz"), 7);
    assert_string_equal(buf, "abcde\xc3\xa9");
    /* "abcdef" then "é": only its first byte fits, so it goes. */
    assert_int_equal(str_fmt_cut(buf, sizeof(buf), "abcdef\xc3\xa9"), 6);
    assert_string_equal(buf, "abcdef");
    /* A 4-byte character cut after 1, 2 or 3 of its bytes. */
    for (int lead = 4; lead <= 6; lead++) {
        char in[16];
        memset(in, 'a', (size_t)lead);
        memcpy(in + lead, "\xf0\x9f\x98\x80", 5);
        size_t n = str_fmt_cut(buf, sizeof(buf), "%s", in);
        assert_int_equal(n, (size_t)lead);
        assert_true(utf8_valid(buf, n));
    }
    /* Appending: the length kept is always < len, so n never passes the end. */
    char list[16];
    size_t n = 0;
    list[0] = '\0';
    for (int i = 0; i < 10; i++) n += str_fmt_cut(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", "item");
    assert_true(n < sizeof(list));
    assert_int_equal(strlen(list), n);
    assert_string_equal(list, "item, item, ite");
}

static void test_serr_cut(void **state) {
    (void)state;
    serr e = {0};
    char big[SERR_MSG_MAX * 2];
    /* é repeated: any cut at an odd byte count would split one. */
    for (size_t i = 0; i + 1 < sizeof(big); i += 2) memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof(big) - 1] = '\0';
    serr_set(&e, SE_INVAL, "x%s", big);
    assert_true(strlen(e.msg) < SERR_MSG_MAX);
    assert_true(utf8_valid(e.msg, strlen(e.msg)));
    serr_set(&e, SE_INVAL, "%s", "inner");
    serr_wrap(&e, "%s", big);
    assert_true(utf8_valid(e.msg, strlen(e.msg)));
    assert_int_equal(e.code, SE_INVAL);
}

static void test_durations_and_times(void **state) {
    (void)state;
    char d[FMT_DURATION_LEN], small[4], t[FMT_TIME_LEN];
    assert_string_equal(fmt_duration(90000, d, sizeof(d)), "1m30s");
    assert_string_equal(fmt_duration(INT64_MAX, d, sizeof(d)), "106751991167d7h");
    /* Too small a buffer: cut, NUL terminated, never past it. */
    assert_string_equal(fmt_duration(INT64_MAX, small, sizeof(small)), "106");
    assert_string_equal(fmt_time_rfc3339_ms(1769302800123, t, sizeof(t)), "2026-01-25T01:00:00.123Z");
    assert_string_equal(fmt_time_rfc3339(1769302800123, t, sizeof(t)), "2026-01-25T01:00:00Z");
    /* FMT_TIME_LEN holds the latest time an int64 of milliseconds can be. */
    assert_string_equal(fmt_time_rfc3339(INT64_MAX, t, sizeof(t)), "292278994-08-17T07:12:55Z");
    assert_string_equal(fmt_time_rfc3339_ms(INT64_MAX, t, sizeof(t)), "292278994-08-17T07:12:55.807Z");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_checked),
        cmocka_unit_test(test_fmt_cut),
        cmocka_unit_test(test_serr_cut),
        cmocka_unit_test(test_durations_and_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
