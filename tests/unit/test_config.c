/*
 * test_config.c - the configuration file parser: comments and blank lines,
 * "key value" and "key = value", and errors that name the line they are on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "util/util.h"

static char path[64];

static void write_conf(const char *text) {
    str_copy(path, sizeof(path), "/tmp/stamp-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_values(void **state) {
    (void)state;
    write_conf("# a comment\n\nworkers 7\n  reap-interval = 90s\t\n\nlog-level DEBUG");
    stamp_config c;
    config_defaults(&c);
    serr e = {0};
    assert_int_equal(config_load_file(&c, path, &e), 0);
    assert_int_equal(c.workers, 7);
    assert_int_equal(c.reap_interval_ms, 90000);
    assert_string_equal(c.log_level, "DEBUG");
    unlink(path);
}

static void test_error_names_its_line(void **state) {
    (void)state;
    /* Blank lines and comments before the bad one still count. */
    write_conf("workers 2\n\n# comment\n\nworkers many\n");
    stamp_config c;
    config_defaults(&c);
    serr e = {0};
    assert_int_not_equal(config_load_file(&c, path, &e), 0);
    char want[96];
    snprintf(want, sizeof(want), "%s:5", path);
    assert_non_null(strstr(e.msg, want));
    unlink(path);

    write_conf("\n\n\nno-such-key 1\n");
    config_defaults(&c);
    serr e2 = {0};
    assert_int_not_equal(config_load_file(&c, path, &e2), 0);
    snprintf(want, sizeof(want), "%s:4", path);
    assert_non_null(strstr(e2.msg, want));
    assert_non_null(strstr(e2.msg, "no-such-key"));
    unlink(path);

    write_conf("workers\n");
    config_defaults(&c);
    serr e3 = {0};
    assert_int_not_equal(config_load_file(&c, path, &e3), 0);
    snprintf(want, sizeof(want), "%s:1", path);
    assert_non_null(strstr(e3.msg, want));
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_error_names_its_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
