/*
 * test_utf8.c - the UTF-8 checks every text passes before it is stored or
 * quoted: validity (overlongs, surrogates, NUL, truncated sequences), cuts
 * on character boundaries, and the \xNN escaping of whatever is not text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "util/util.h"

static void test_valid(void **state) {
    (void)state;
    assert_true(utf8_valid("", 0));
    assert_true(utf8_valid("plain ascii", 11));
    assert_true(utf8_valid("caf\xc3\xa9", 5));                /* é */
    assert_true(utf8_valid("\xe2\x82\xac", 3));               /* € */
    assert_true(utf8_valid("\xf0\x9f\x98\x80", 4));           /* U+1F600 */
    assert_true(utf8_valid("\xef\xbb\xbf", 3));               /* U+FEFF */
    assert_true(utf8_valid("\xe2\x80\xa8", 3));               /* U+2028 */
    assert_false(utf8_valid("a\0b", 3));                      /* NUL */
    assert_false(utf8_valid("\xff", 1));
    assert_false(utf8_valid("bad\xff" "byte", 8));
    assert_false(utf8_valid("\xc0\xaf", 2));                  /* overlong '/' */
    assert_false(utf8_valid("\xe0\x80\xaf", 3));              /* overlong '/' */
    assert_false(utf8_valid("\xed\xa0\x80", 3));              /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4));          /* > U+10FFFF */
    assert_false(utf8_valid("\xc3", 1));                      /* cut short */
    assert_false(utf8_valid("\xe2\x82", 2));
    assert_false(utf8_valid("\x80", 1));                      /* lone continuation */
}

static void test_cut(void **state) {
    (void)state;
    const char *s = "\xc3\xa9\xc3\xa9\xc3\xa9"; /* 3 x é, 6 bytes */
    assert_int_equal(utf8_cut(s, 6, 10), 6);
    assert_int_equal(utf8_cut(s, 6, 6), 6);
    assert_int_equal(utf8_cut(s, 6, 5), 4);
    assert_int_equal(utf8_cut(s, 6, 4), 4);
    assert_int_equal(utf8_cut(s, 6, 1), 0);
    /* 40 two-byte characters cut at 64 bytes: 32 whole characters. */
    char b[81];
    for (int i = 0; i < 40; i++) memcpy(b + 2 * i, "\xc3\xa9", 2);
    b[80] = '\0';
    size_t n = utf8_cut(b, 80, 63);
    assert_int_equal(n, 62);
    assert_true(utf8_valid(b, n));
}

static void test_sanitize(void **state) {
    (void)state;
    char out[64];
    assert_string_equal(utf8_sanitize("ok", 2, out, sizeof(out)), "ok");
    assert_string_equal(utf8_sanitize("bad\xff" "byte", 8, out, sizeof(out)), "bad\\xffbyte");
    assert_string_equal(utf8_sanitize("a\0b", 3, out, sizeof(out)), "a\\x00b");
    assert_string_equal(utf8_sanitize("tab\tnl\n", 7, out, sizeof(out)), "tab\tnl\\x0a");
    assert_string_equal(utf8_sanitize("caf\xc3\xa9", 5, out, sizeof(out)), "caf\xc3\xa9");
    /* A cut never splits a character or an escape and is marked. */
    char small[10];
    utf8_sanitize("\xff\xff\xff\xff", 4, small, sizeof(small));
    assert_string_equal(small, "\\xff...");
    utf8_sanitize("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10, small, sizeof(small));
    assert_true(utf8_valid(small, strlen(small)));
    assert_true(strlen(small) < sizeof(small));
    /* Whatever comes in, what comes out is valid. */
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    char big[1200];
    utf8_sanitize((const char *)all, sizeof(all), big, sizeof(big));
    assert_true(utf8_valid(big, strlen(big)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_cut),
        cmocka_unit_test(test_sanitize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
