/*
 * test_blob.c - both blob backends through the one interface: the directory
 * backend in a fresh temporary directory, and Azure Blob over REST against
 * a real Azurite started here on a free loopback port (from .deps/azurite,
 * which make check installs).  Names that could leave a container are
 * refused before any I/O; a wrong account key and a stopped service are
 * errors, never silent successes; retention expires by tenant.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blob/blob.h"
#include "util/httpc.h"
#include "util/util.h"

#define AZURITE_KEY "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

static char tmp[64];
static pid_t azurite_pid;
static int azurite_port;

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static void azurite_start(int port) {
    const char *src = getenv("STAMP_SRC");
    char prog[512], ps[16], loc[128];
    snprintf(prog, sizeof(prog), "%s/.deps/azurite/node_modules/.bin/azurite-blob", src ? src : ".");
    if (access(prog, X_OK) != 0) fail_msg("%s missing: make check installs it (scripts/install-deps.sh test)", prog);
    snprintf(ps, sizeof(ps), "%d", port);
    snprintf(loc, sizeof(loc), "%s/azurite", tmp);
    mkdir(loc, 0700);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* in memory, so nothing is written; the workspace is ours anyway */
        if (chdir(loc) != 0) _exit(127);
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(prog, prog, "--disableTelemetry", "--skipApiVersionCheck", "--inMemoryPersistence",
              "--silent", "--blobHost", "127.0.0.1", "--blobPort", ps, (char *)NULL);
        _exit(127);
    }
    azurite_pid = pid;
    for (int i = 0; i < 600 && !port_open(port); i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) fail_msg("azurite exited at start");
        sleep_ms(50);
    }
    assert_true(port_open(port));
}

static void azurite_stop(void) {
    if (azurite_pid <= 0) return;
    kill(azurite_pid, SIGTERM);
    int st;
    for (int i = 0; i < 100 && waitpid(azurite_pid, &st, WNOHANG) == 0; i++) sleep_ms(50);
    kill(azurite_pid, SIGKILL);
    waitpid(azurite_pid, &st, 0);
    azurite_pid = 0;
}

static void conn_string(char *buf, size_t len, int port, const char *key) {
    snprintf(buf, len,
             "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=%s;"
             "BlobEndpoint=http://127.0.0.1:%d/devstoreaccount1;",
             key, port);
}

static int group_setup(void **st) {
    str_copy(tmp, sizeof(tmp), "/tmp/stamp-blob-XXXXXX");
    if (mkdtemp(tmp) == NULL) return -1;
    httpc_global_init();
    return 0;
}

static int group_teardown(void **st) {
    azurite_stop();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* The contract both backends keep. */
static void exercise(blob_store *b) {
    serr e = {0};
    char sha[65];
    static const char data[] = "2026-11-23 INFO worker w1 step 1\n\0binary\xff tail";
    assert_int_equal(blob_put_verified(b, "diagnostics", "acme/b1/20261123-101500/logs/w1.log", data,
                                       sizeof(data), sha, &e), 0);
    /* sha256 of the bytes, as any tool computes it. */
    char want[65];
    sha256_hex(data, sizeof(data), want);
    assert_string_equal(sha, want);
    char *got = NULL;
    size_t len = 0;
    assert_int_equal(blob_get(b, "diagnostics", "acme/b1/20261123-101500/logs/w1.log", 1 << 20, &got, &len, &e), 0);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(got, data, len);
    free(got);
    /* Too large for the caller's limit. */
    assert_int_equal(blob_get(b, "diagnostics", "acme/b1/20261123-101500/logs/w1.log", 8, &got, &len, &e), SE_TOOBIG);
    /* Overwrite, empty blob, missing blob. */
    assert_int_equal(blob_put(b, "diagnostics", "acme/b1/x.json", "[]", 2, &e), 0);
    assert_int_equal(blob_put(b, "diagnostics", "acme/b1/x.json", "[1]", 3, &e), 0);
    assert_int_equal(blob_get(b, "diagnostics", "acme/b1/x.json", 100, &got, &len, &e), 0);
    assert_string_equal(got, "[1]");
    free(got);
    assert_int_equal(blob_put_verified(b, "diagnostics", "acme/b1/empty", "", 0, NULL, &e), 0);
    assert_int_equal(blob_get(b, "diagnostics", "acme/b1/empty", 100, &got, &len, &e), 0);
    assert_int_equal(len, 0);
    free(got);
    assert_int_equal(blob_get(b, "diagnostics", "acme/nothing-here", 100, &got, &len, &e), SE_NOTFOUND);
    assert_int_equal(blob_delete(b, "diagnostics", "acme/b1/x.json", &e), 0);
    assert_int_equal(blob_get(b, "diagnostics", "acme/b1/x.json", 100, &got, &len, &e), SE_NOTFOUND);
    /* A container that did not exist is created on first use. */
    assert_int_equal(blob_put(b, "bundles-new", "acme/abc", "x", 1, &e), 0);

    /* From a file (a bundle upload): stored whole and checked against the
     * hash the caller computed while it arrived. */
    char src[128];
    snprintf(src, sizeof(src), "%s/upload.bin", tmp);
    size_t flen = 300000;
    unsigned char *fdata = malloc(flen);
    assert_non_null(fdata);
    for (size_t i = 0; i < flen; i++) fdata[i] = (unsigned char)(i * 7 + i / 251);
    assert_int_equal(write_file_atomic(src, fdata, flen, 0600, &e), 0);
    sha256_hex(fdata, flen, want);
    assert_int_equal(blob_put_file_verified(b, "bundles", "acme/fromfile", src, want, &e), 0);
    assert_int_equal(blob_get(b, "bundles", "acme/fromfile", 1 << 20, &got, &len, &e), 0);
    assert_int_equal(len, flen);
    assert_memory_equal(got, fdata, flen);
    free(got);
    free(fdata);
    serr fe = {0};
    char wrong[65];
    memset(wrong, 'a', 64);
    wrong[64] = '\0';
    assert_int_equal(blob_put_file_verified(b, "bundles", "acme/fromfile2", src, wrong, &fe), SE_IO);
    assert_int_equal(blob_get(b, "bundles", "acme/fromfile2", 1 << 20, &got, &len, &fe), SE_NOTFOUND);
    serr me = {0};
    assert_int_not_equal(blob_put_file_verified(b, "bundles", "acme/x", "/nonexistent/upload", NULL, &me), 0);
    serr ne = {0};
    assert_int_equal(blob_put_file_verified(b, "bundles", "../x", src, NULL, &ne), SE_INVAL);
    unlink(src);
    /* From another file system (tmpfs, when there is one): copied, not linked. */
    char shm[128];
    snprintf(shm, sizeof(shm), "/dev/shm/stamp-blob-upload-%d", (int)getpid());
    if (write_file_atomic(shm, "from another fs", 15, 0600, &e) == 0) {
        sha256_hex("from another fs", 15, want);
        assert_int_equal(blob_put_file_verified(b, "bundles", "acme/fromshm", shm, want, &e), 0);
        assert_int_equal(blob_get(b, "bundles", "acme/fromshm", 100, &got, &len, &e), 0);
        assert_string_equal(got, "from another fs");
        free(got);
        unlink(shm);
    }

    /* Names that could escape are refused before any I/O. */
    static const char *const bad_paths[] = {"../x", "a/../b", "a//b", "/a", "a/", "a/./b", ".", "..",
                                            "a b", "a\\b", "a%2f..", ""};
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        serr be = {0};
        if (blob_put(b, "diagnostics", bad_paths[i], "x", 1, &be) != SE_INVAL)
            fail_msg("path \"%s\" accepted", bad_paths[i]);
    }
    static const char *const bad_containers[] = {"ab", "Diagnostics", "a/b", "..", "a_b", ""};
    for (size_t i = 0; i < sizeof(bad_containers) / sizeof(bad_containers[0]); i++) {
        serr be = {0};
        if (blob_put(b, bad_containers[i], "x", "x", 1, &be) != SE_INVAL)
            fail_msg("container \"%s\" accepted", bad_containers[i]);
    }
}

static void test_dir_backend(void **st) {
    char root[128], path[256];
    snprintf(root, sizeof(root), "%s/blobs", tmp);
    blob_store *b = NULL;
    serr e = {0};
    assert_int_equal(blob_open("dir", root, NULL, 5000, &b, &e), 0);
    assert_true(blob_is_dir(b));
    exercise(b);
    /* The layout is the documented one: DIR/{container}/{path}. */
    snprintf(path, sizeof(path), "%s/diagnostics/acme/b1/20261123-101500/logs/w1.log", root);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    /* No temporary files left behind by the atomic writes. */
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "test -z \"$(find %s -name '*.tmp*')\"", root);
    assert_int_equal(system(cmd), 0);
    blob_close(b);
}

static int64_t retention(const char *tenant, void *arg) {
    return strcmp(tenant, "locked") == 0 ? 2557LL * 86400000 : 30LL * 86400000;
}

static void age(const char *root, const char *rel, int64_t days) {
    char p[300];
    snprintf(p, sizeof(p), "%s/diagnostics/%s", root, rel);
    struct timeval tv[2];
    tv[0].tv_sec = tv[1].tv_sec = (time_t)(now_ms() / 1000 - days * 86400);
    tv[0].tv_usec = tv[1].tv_usec = 0;
    assert_int_equal(utimes(p, tv), 0);
}

static void test_dir_retention(void **st) {
    char root[128];
    snprintf(root, sizeof(root), "%s/retention", tmp);
    blob_store *b = NULL;
    serr e = {0};
    assert_int_equal(blob_open("dir", root, NULL, 5000, &b, &e), 0);
    const char *files[] = {"acme/b1/t/logs/a.log", "acme/b2/t/logs/a.log", "locked/b1/t/logs/a.log",
                           "locked/b2/t/logs/a.log"};
    for (int i = 0; i < 4; i++) assert_int_equal(blob_put(b, "diagnostics", files[i], "x", 1, &e), 0);
    age(root, files[0], 31);   /* standard tenant, past 30 days: expires */
    age(root, files[1], 29);   /* standard, inside: kept */
    age(root, files[2], 400);  /* regulatory-locked, inside 7 years: kept */
    age(root, files[3], 2600); /* past 7 years: expires */
    assert_int_equal(blob_expire(b, "diagnostics", now_ms(), retention, NULL, &e), 2);
    char *got = NULL;
    size_t len;
    assert_int_equal(blob_get(b, "diagnostics", files[0], 10, &got, &len, &e), SE_NOTFOUND);
    assert_int_equal(blob_get(b, "diagnostics", files[3], 10, &got, &len, &e), SE_NOTFOUND);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(blob_get(b, "diagnostics", files[i], 10, &got, &len, &e), 0);
        free(got);
    }
    /* Nothing more to expire. */
    assert_int_equal(blob_expire(b, "diagnostics", now_ms(), retention, NULL, &e), 0);
    blob_close(b);
}

static void test_azure_backend(void **st) {
    azurite_port = free_port();
    assert_true(azurite_port > 0);
    azurite_start(azurite_port);
    char conn[512];
    conn_string(conn, sizeof(conn), azurite_port, AZURITE_KEY);
    blob_store *b = NULL;
    serr e = {0};
    assert_int_equal(blob_open("azure", NULL, conn, 5000, &b, &e), 0);
    assert_false(blob_is_dir(b));
    exercise(b);
    blob_close(b);

    /* The wrong account key: the service refuses, and we say so. */
    conn_string(conn, sizeof(conn), azurite_port,
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==");
    assert_int_equal(blob_open("azure", NULL, conn, 5000, &b, &e), 0);
    serr pe = {0};
    assert_int_not_equal(blob_put_verified(b, "diagnostics", "acme/k", "x", 1, NULL, &pe), 0);
    assert_non_null(strstr(pe.msg, "403"));
    blob_close(b);

    /* The service gone: an error, quickly, not a hang or a success. */
    conn_string(conn, sizeof(conn), azurite_port, AZURITE_KEY);
    assert_int_equal(blob_open("azure", NULL, conn, 2000, &b, &e), 0);
    azurite_stop();
    serr ge = {0};
    assert_int_not_equal(blob_put_verified(b, "diagnostics", "acme/gone", "x", 1, NULL, &ge), 0);
    blob_close(b);

    /* Malformed connection strings are refused at open. */
    static const char *const bad[] = {"", "AccountName=a", "AccountName=a;AccountKey=!!;BlobEndpoint=http://x",
                                      "garbage"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        serr oe = {0};
        blob_store *x = NULL;
        if (blob_open("azure", NULL, bad[i], 1000, &x, &oe) == 0) {
            blob_close(x);
            fail_msg("connection string \"%s\" accepted", bad[i]);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dir_backend),
        cmocka_unit_test(test_dir_retention),
        cmocka_unit_test(test_azure_backend),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
