/*
 * test_confine.c - the pure parts of pod confinement: which environment
 * variables a tenant may set (and that the refusal names them), and the
 * capped log writer: output that fits is kept whole; past the cap the file
 * is the head, one marker line with the count, and the tail, byte for byte,
 * whatever the sizes of the writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ns/ns.h"
#include "util/confine.h"

static void test_env_names(void **st) {
    static const char *const denied[] = {
        "LD_PRELOAD", "LD_AUDIT",   "LD_LIBRARY_PATH", "GCONV_PATH", "BASH_ENV",      "PATH",
        "HOME",       "IFS",        "ENV",             "SHELLOPTS",  "PS4",           "LOCPATH",
        "NLSPATH",    "HOSTALIASES", "RES_OPTIONS",    "TZDIR",      "TMPDIR",        "LANG",
        "LC_ALL",     "LC_CTYPE",   "MALLOC_CHECK_",   "GLIBC_TUNABLES", "DYLD_INSERT_LIBRARIES",
        "PYTHONPATH", "PYTHONSTARTUP", "PERL5LIB",     "PERL5OPT",   "RUBYOPT",       "NODE_OPTIONS",
        "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "STAMP_POD", "STAMPD_OWNER", "STAMP_UNIT",
        "LUA_INIT",   "OPENSSL_CONF", "CDPATH", "GLOBIGNORE", "PROMPT_COMMAND", "PERLLIB",
    };
    static const char *const allowed[] = {"MY_VAR", "SCENARIOS", "A", "_X", "TZ", "LOG_LEVEL",
                                          "LDAP_HOST", "PATHS_FILE", "HOMER", "X1"};
    static const char *const invalid[] = {"", "ld_preload", "1ABC", "A-B", "A=B", "A B",
                                          "ÄB", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        serr e = {0};
        if (nsrt_env_check(denied[i], &e) != SE_INVAL) fail_msg("%s was allowed", denied[i]);
        assert_non_null(strstr(e.msg, denied[i]));
    }
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        serr e = {0};
        if (nsrt_env_check(allowed[i], &e)) fail_msg("%s refused: %s", allowed[i], e.msg);
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        assert_int_equal(nsrt_env_check(invalid[i], NULL), SE_INVAL);
}

/* Feeds total bytes of a known pattern (byte i = i*7 mod 251, with a NUL
 * every so often) in chunks of chunk bytes, flushing every flush_every
 * writes, and checks the file. */
static void run_cap(uint64_t max, size_t total, size_t chunk, int flush_every) {
    char path[] = "/tmp/test_confine.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    unsigned char *src = malloc(total + 1);
    for (size_t i = 0; i < total; i++) src[i] = (unsigned char)(i * 7 % 251);
    logcap l;
    logcap_init(&l, fd, max);
    int writes = 0;
    for (size_t off = 0; off < total;) {
        size_t n = total - off < chunk ? total - off : chunk;
        assert_int_equal(logcap_write(&l, src + off, n), 0);
        off += n;
        if (flush_every && ++writes % flush_every == 0) assert_int_equal(logcap_flush(&l), 0);
    }
    assert_int_equal(logcap_flush(&l), 0);
    struct stat sb;
    fstat(fd, &sb);
    size_t size = (size_t)sb.st_size;
    unsigned char *got = malloc(size + 1);
    assert_int_equal(pread(fd, got, size, 0), (ssize_t)size);
    if (total <= max) {
        assert_int_equal(size, total);
        assert_memory_equal(got, src, total);
        assert_int_equal(logcap_dropped(&l), 0);
    } else {
        uint64_t head = max / 2, tail = max - head, dropped = total - max;
        char m[LOGCAP_MARKER_MAX];
        size_t ml = logcap_marker(dropped, m, sizeof(m));
        assert_int_equal(logcap_dropped(&l), dropped);
        assert_int_equal(size, max + ml);
        assert_memory_equal(got, src, head);
        assert_memory_equal(got + head, m, ml);
        assert_memory_equal(got + head + ml, src + total - tail, tail);
    }
    logcap_done(&l);
    close(fd);
    free(src);
    free(got);
}

static void test_logcap(void **st) {
    run_cap(1024, 100, 7, 0);        /* fits */
    run_cap(1024, 1024, 1024, 0);    /* exactly the cap: nothing cut */
    run_cap(1024, 1025, 1025, 0);    /* one byte over, one write */
    run_cap(1024, 1025, 1, 100);     /* one byte at a time */
    run_cap(1024, 100000, 333, 5);   /* many wraps of the ring, flushed as it goes */
    run_cap(1025, 5000, 4096, 1);    /* odd cap; a write larger than the tail */
    run_cap(4096, 1 << 20, 65536, 3);
    char m[LOGCAP_MARKER_MAX];
    logcap_marker(123456, m, sizeof(m));
    assert_string_equal(m, "\n[stamp: 123456 bytes of output cut here]\n");
}

static void test_du(void **st) {
    char dir[] = "/tmp/test_confine_du.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof(p), "%s/f", dir);
    FILE *f = fopen(p, "w");
    for (int i = 0; i < 100000; i++) fputc('x', f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/loop", dir);
    assert_int_equal(symlink("/", p), 0); /* never followed */
    int64_t b = 0;
    long entries = 1000;
    assert_int_equal(confine_du(dir, &b, &entries), 0);
    assert_true(b >= 100000 && b < 1000000);
    entries = 1;
    b = 0;
    assert_int_equal(confine_du(dir, &b, &entries), -1); /* budget ran out */
    unlink(p);
    snprintf(p, sizeof(p), "%s/f", dir);
    unlink(p);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_names),
        cmocka_unit_test(test_logcap),
        cmocka_unit_test(test_du),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
