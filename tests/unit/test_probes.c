/*
 * test_probes.c - the health probes against listeners the test starts: a
 * TCP socket that accepts (then is closed), an HTTP server (libmicrohttpd)
 * answering 200, 503 or metrics, and commands that pass, fail and hang.
 * No stamp is involved: the probes know addresses and commands only.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "health/probes.h"

static int listen_any(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_tcp(void **state) {
    (void)state;
    int port;
    int fd = listen_any(&port);
    char err[256] = "";
    assert_int_equal(probe_tcp(port, 1000, err, sizeof(err)), 0);
    close(fd);
    assert_int_equal(probe_tcp(port, 1000, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "refused"));
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **ptr) {
    (void)cls, (void)method, (void)version, (void)data, (void)size, (void)ptr;
    static const char metrics[] = "# TYPE queue_depth gauge\nqueue_depth 7\nlatency_seconds 0.2\n";
    const char *body = strcmp(url, "/metrics") == 0 ? metrics : "ok\n";
    unsigned status = strcmp(url, "/sick") == 0 ? 503 : 200;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static void test_http_and_scrape(void **state) {
    (void)state;
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, answer,
                                            NULL, MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info->port;
    char url[128], err[256] = "";
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", port);
    assert_int_equal(probe_http(url, 200, 2000, err, sizeof(err)), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/sick", port);
    assert_int_equal(probe_http(url, 200, 2000, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "503"));

    hc_check c;
    memset(&c, 0, sizeof(c));
    serr e = {0};
    assert_int_equal(hc_expr_parse("queue_depth < 10", &c.exprs[0], &e), 0);
    assert_int_equal(hc_expr_parse("latency_seconds < 100ms", &c.exprs[1], &e), 0);
    c.nexprs = 2;
    double worst[HC_MAX_EXPRS];
    bool seen[HC_MAX_EXPRS] = {false};
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    assert_int_equal(probe_scrape(url, 2000, &c, worst, seen, err, sizeof(err)), 0);
    assert_true(seen[0] && seen[1]);
    /* queue_depth holds, the latency of 200 ms breaks its 100 ms rule. */
    assert_int_equal(probe_threshold_verdict(&c, worst, seen, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "latency_seconds"));
    c.nexprs = 1;
    assert_int_equal(probe_threshold_verdict(&c, worst, seen, err, sizeof(err)), 0);
    MHD_stop_daemon(d);
    /* Gone: the scrape fails, the HTTP probe too. */
    assert_int_equal(probe_scrape(url, 500, &c, worst, seen, err, sizeof(err)), -1);
    assert_int_equal(probe_http(url, 200, 500, err, sizeof(err)), -1);
}

static void test_exec(void **state) {
    (void)state;
    const char *env[] = {"PATH=/usr/bin:/bin", "PROBE_X=42", NULL};
    char err[256] = "", log[] = "/tmp/stamp-test-probe-XXXXXX";
    int lfd = mkstemp(log);
    assert_true(lfd >= 0);
    close(lfd);
    assert_int_equal(probe_exec("test \"$PROBE_X\" = 42", env, "/", log, 2000, err, sizeof(err)), 0);
    assert_int_equal(probe_exec("echo broken; exit 3", env, "/", log, 2000, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "exited 3"));
    assert_int_equal(probe_exec("sleep 5", env, "/", log, 100, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "timed out"));
    /* Its output went to the log. */
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[64] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_string_equal(line, "broken\n");
    unlink(log);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_http_and_scrape),
        cmocka_unit_test(test_exec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
