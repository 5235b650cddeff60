/*
 * test_traffic.c - the front door drivers against a real HAProxy, started
 * by the haproxy driver itself (owned, through the local runtime):
 *   - none: every call succeeds, nothing is present, nothing is enqueued;
 *   - haproxy: servers are added, drained, put in maintenance and removed;
 *     the sync enqueues a server removed behind its back and one it has no
 *     record of;
 *   - no lock across I/O: a second handle drives the same HAProxy through a
 *     relay the test runs on a unix socket.  The relay passes connections
 *     through to HAProxy's admin socket, but holds one of them silent (a
 *     stalled HAProxy answering nothing).  While a command for server a
 *     hangs on it, a command for server b, a stat, the JSON view and a
 *     forget all complete; then the held command is passed on and completes
 *     too, and a later command for a, issued while it hung, is applied
 *     after it.
 * Nothing here is timed: "while it hangs" is a flag the hanging call sets
 * when it returns, and it cannot return before the relay lets it go (its
 * only other way out is the driver's 3 s socket timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "runtime/runtime.h"
#include "traffic/traffic.h"
#include "util/util.h"

static char dir[200];
static char real_sock[300];
static stamp_config cfg;
static runtime *rt;
static traffic *owner; /* the handle that started HAProxy */

/* ---- helpers ---- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0)
        fail_msg("free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static int unix_connect(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (fd < 0 || !str_copy(a.sun_path, sizeof(a.sun_path), path) ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static bool write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* The test's own command to the real HAProxy (not through the driver). */
static char *admin(const char *cmd) {
    int fd = unix_connect(real_sock);
    if (fd < 0) fail_msg("admin socket %s: %s", real_sock, strerror(errno));
    char line[512];
    int n = snprintf(line, sizeof(line), "%s\n", cmd);
    assert_true(n > 0 && n < (int)sizeof(line));
    assert_true(write_all(fd, line, (size_t)n));
    sbuf b;
    sbuf_init(&b, 1 << 20);
    char buf[4096];
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0) assert_int_equal(sbuf_add(&b, buf, (size_t)r), 0);
    close(fd);
    assert_int_equal(sbuf_add(&b, "", 1), 0);
    return b.data;
}

/* The server's status in the handle's JSON view, "" when absent; its
 * "applied" into applied (may be NULL). */
static void view(traffic *t, const char *name, char *status, size_t slen, char *applied, size_t alen) {
    json_t *o = NULL;
    serr e = {0};
    if (traffic_json(t, &o, &e) != 0) fail_msg("traffic_json: %s", e.msg);
    status[0] = '\0';
    if (applied) applied[0] = '\0';
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(o, "servers"), i, s) {
        if (strcmp(json_string_value(json_object_get(s, "name")), name) != 0) continue;
        str_copy(status, slen, json_string_value(json_object_get(s, "status")));
        const char *ap = json_string_value(json_object_get(s, "applied"));
        if (applied && ap) str_copy(applied, alen, ap);
    }
    json_decref(o);
}

static void set_ok(traffic *t, const char *name, const char *addr, tr_state st) {
    serr e = {0};
    if (traffic_set(t, name, addr, st, &e) != 0) fail_msg("traffic_set %s %s: %s", name, tr_state_names[st], e.msg);
}

#define MAX_NAMES 16
typedef struct enq {
    int n;
    char names[MAX_NAMES][64];
} enq;

static void on_enqueue(const char *name, void *arg) {
    enq *q = arg;
    if (q->n < MAX_NAMES) str_copy(q->names[q->n++], 64, name);
}

static bool enqueued(const enq *q, const char *name) {
    for (int i = 0; i < q->n; i++)
        if (strcmp(q->names[i], name) == 0) return true;
    return false;
}

/* ---- the relay: HAProxy's admin socket, one connection held silent ---- */

typedef struct relay {
    int lfd, wake[2];
    char path[300];
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stall_next; /* hold the next connection */
    int held;        /* the held connection, or -1 */
    bool release;    /* pass the held connection on */
    bool stop;
} relay;

/* One command: the client's line to HAProxy, HAProxy's reply to the client. */
static void pass_on(int cfd, const char *target) {
    char line[1024];
    size_t n = 0;
    while (n < sizeof(line) - 1) {
        ssize_t r = read(cfd, line + n, 1);
        if (r <= 0) break;
        if (line[n++] == '\n') break;
    }
    int hfd = unix_connect(target);
    if (hfd >= 0 && write_all(hfd, line, n)) {
        char buf[4096];
        ssize_t r;
        while ((r = read(hfd, buf, sizeof(buf))) > 0)
            if (!write_all(cfd, buf, (size_t)r)) break;
    }
    if (hfd >= 0) close(hfd);
    close(cfd);
}

static void *relay_main(void *arg) {
    relay *R = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = R->lfd, .events = POLLIN}, {.fd = R->wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[1].revents) {
            char c;
            if (read(R->wake[0], &c, 1) < 0) break;
        }
        pthread_mutex_lock(&R->mu);
        if (R->stop) {
            pthread_mutex_unlock(&R->mu);
            break;
        }
        int pass = -1;
        if (R->release && R->held >= 0) {
            pass = R->held;
            R->held = -1;
            R->release = false;
        }
        pthread_mutex_unlock(&R->mu);
        if (pass >= 0) pass_on(pass, real_sock);
        if (!(p[0].revents & POLLIN)) continue;
        int cfd = accept4(R->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) continue;
        pthread_mutex_lock(&R->mu);
        bool hold = R->stall_next;
        if (hold) {
            R->stall_next = false;
            R->held = cfd;
            pthread_cond_broadcast(&R->cv);
        }
        pthread_mutex_unlock(&R->mu);
        if (!hold) pass_on(cfd, real_sock);
    }
    return NULL;
}

static void relay_start(relay *R) {
    memset(R, 0, sizeof(*R));
    R->held = -1;
    pthread_mutex_init(&R->mu, NULL);
    pthread_cond_init(&R->cv, NULL);
    snprintf(R->path, sizeof(R->path), "%s/relay.sock", dir);
    R->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true(str_copy(a.sun_path, sizeof(a.sun_path), R->path));
    unlink(R->path);
    assert_int_equal(bind(R->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(R->lfd, 16), 0);
    assert_int_equal(pipe2(R->wake, O_CLOEXEC), 0);
    assert_int_equal(pthread_create(&R->th, NULL, relay_main, R), 0);
}

static void relay_poke(relay *R) { assert_int_equal(write(R->wake[1], "x", 1), 1); }

static void relay_stop(relay *R) {
    pthread_mutex_lock(&R->mu);
    R->stop = true;
    pthread_mutex_unlock(&R->mu);
    relay_poke(R);
    pthread_join(R->th, NULL);
    if (R->held >= 0) close(R->held);
    close(R->lfd);
    close(R->wake[0]);
    close(R->wake[1]);
    unlink(R->path);
}

/* ---- fixtures ---- */

static int setup(void **st) {
    config_defaults(&cfg);
    if (access(cfg.haproxy_bin, X_OK) != 0) return 0; /* each test skips */
    snprintf(dir, sizeof(dir), "/tmp/stamp-test-traffic-%d", (int)getpid());
    if (mkdir_p(dir, 0700, NULL)) return -1;
    char owner_id[64];
    snprintf(owner_id, sizeof(owner_id), "test-traffic-%d", (int)getpid());
    serr e = {0};
    if (runtime_open("local", owner_id, &rt, &e)) {
        fprintf(stderr, "runtime: %s\n", e.msg);
        return -1;
    }
    snprintf(cfg.frontdoor_listen, sizeof(cfg.frontdoor_listen), "127.0.0.1:%d", free_port());
    str_copy(cfg.traffic_driver, sizeof(cfg.traffic_driver), "haproxy");
    if (traffic_open(&cfg, dir, rt, &owner, &e)) {
        fprintf(stderr, "traffic_open: %s\n", e.msg);
        return -1;
    }
    snprintf(real_sock, sizeof(real_sock), "%s/frontdoor/admin.sock", dir);
    return 0;
}

static int teardown(void **st) {
    if (owner) {
        serr e = {0};
        if (traffic_stop_owned(owner, &e)) fprintf(stderr, "stopping haproxy: %s\n", e.msg);
        traffic_close(owner);
    }
    runtime_close(rt);
    if (dir[0]) remove_tree(dir, NULL);
    return 0;
}

#define NEED_HAPROXY() \
    do { \
        if (owner == NULL) skip(); \
    } while (0)

/* A handle on the same HAProxy through an admin socket path. */
static traffic *open_on(const char *sock) {
    stamp_config c = cfg;
    assert_true(str_copy(c.haproxy_socket, sizeof(c.haproxy_socket), sock));
    traffic *t = NULL;
    serr e = {0};
    if (traffic_open(&c, dir, NULL, &t, &e)) fail_msg("traffic_open on %s: %s", sock, e.msg);
    return t;
}

/* ---- tests ---- */

static void test_none(void **st) {
    stamp_config c;
    config_defaults(&c);
    str_copy(c.traffic_driver, sizeof(c.traffic_driver), "none");
    traffic *t = NULL;
    serr e = {0};
    assert_int_equal(traffic_open(&c, "/nonexistent", NULL, &t, &e), 0);
    traffic *handles[2] = {t, NULL}; /* NULL is the none driver too */
    for (int i = 0; i < 2; i++) {
        traffic *h = handles[i];
        assert_false(traffic_enabled(h));
        assert_string_equal(traffic_driver(h), "none");
        assert_int_equal(traffic_set(h, "s1", "127.0.0.1:1", TR_READY, &e), 0);
        tr_stat s = {.present = true};
        assert_int_equal(traffic_stat(h, "s1", &s, &e), 0);
        assert_false(s.present);
        assert_int_equal(traffic_shutdown_sessions(h, "s1", &e), 0);
        traffic_forget(h, "s1");
        enq q = {0};
        traffic_sync(h, on_enqueue, &q);
        assert_int_equal(q.n, 0);
        json_t *o = NULL;
        assert_int_equal(traffic_json(h, &o, &e), 0);
        assert_string_equal(json_string_value(json_object_get(o, "driver")), "none");
        assert_null(json_object_get(o, "servers"));
        json_decref(o);
        assert_int_equal(traffic_stop_owned(h, &e), 0);
        traffic_abort(h);
    }
    traffic_close(t);
    traffic_close(NULL);
    str_copy(c.traffic_driver, sizeof(c.traffic_driver), "nginx");
    assert_int_equal(traffic_open(&c, "/nonexistent", NULL, &t, &e), SE_INVAL);
    assert_null(t);
}

static void test_servers(void **st) {
    NEED_HAPROXY();
    traffic *t = owner;
    assert_true(traffic_enabled(t));
    assert_string_equal(traffic_driver(t), "haproxy");
    char status[32], applied[16];
    set_ok(t, "srv-a", "127.0.0.1:1", TR_READY);
    view(t, "srv-a", status, sizeof(status), applied, sizeof(applied));
    assert_true(strcmp(status, "no check") == 0 || strncmp(status, "UP", 2) == 0);
    assert_string_equal(applied, "ready");
    set_ok(t, "srv-a", NULL, TR_DRAIN);
    view(t, "srv-a", status, sizeof(status), applied, sizeof(applied));
    assert_string_equal(status, "DRAIN");
    assert_string_equal(applied, "drain");
    tr_stat s;
    serr e = {0};
    assert_int_equal(traffic_stat(t, "srv-a", &s, &e), 0);
    assert_true(s.present);
    assert_string_equal(s.status, "DRAIN");
    assert_int_equal(traffic_shutdown_sessions(t, "srv-a", &e), 0);
    set_ok(t, "srv-a", NULL, TR_MAINT);
    view(t, "srv-a", status, sizeof(status), NULL, 0);
    assert_string_equal(status, "MAINT");
    set_ok(t, "srv-a", NULL, TR_ABSENT);
    view(t, "srv-a", status, sizeof(status), NULL, 0);
    assert_string_equal(status, "");
    traffic_forget(t, "srv-a");
    assert_int_equal(traffic_stat(t, "srv-a", &s, &e), 0);
    assert_false(s.present);
    /* A server that is not there: no address, no server. */
    assert_int_equal(traffic_set(t, "srv-x", NULL, TR_READY, &e), SE_INVAL);
    traffic_forget(t, "srv-x");
    /* An existing HAProxy without our backend is refused. */
    stamp_config c = cfg;
    str_copy(c.haproxy_backend, sizeof(c.haproxy_backend), "other");
    str_copy(c.haproxy_socket, sizeof(c.haproxy_socket), real_sock);
    traffic *t2 = NULL;
    assert_int_equal(traffic_open(&c, dir, NULL, &t2, &e), SE_INVAL);
    assert_null(t2);
}

static void test_sync(void **st) {
    NEED_HAPROXY();
    traffic *t = owner;
    set_ok(t, "srv-b", "127.0.0.1:2", TR_READY);
    enq q = {0};
    traffic_sync(t, on_enqueue, &q);
    assert_false(enqueued(&q, "srv-b")); /* as applied: nothing to do */
    /* Removed behind the driver's back, and one it never added. */
    free(admin("set server stamps/srv-b state maint"));
    free(admin("del server stamps/srv-b"));
    free(admin("add server stamps/stranger 127.0.0.1:3"));
    memset(&q, 0, sizeof(q));
    traffic_sync(t, on_enqueue, &q);
    assert_true(enqueued(&q, "srv-b"));
    assert_true(enqueued(&q, "stranger"));
    /* The reconcile applies it again. */
    set_ok(t, "srv-b", "127.0.0.1:2", TR_READY);
    char status[32];
    view(t, "srv-b", status, sizeof(status), NULL, 0);
    assert_true(strcmp(status, "no check") == 0 || strncmp(status, "UP", 2) == 0);
    /* A state changed behind its back is applied again too. */
    free(admin("set server stamps/srv-b state drain"));
    memset(&q, 0, sizeof(q));
    traffic_sync(t, on_enqueue, &q);
    assert_true(enqueued(&q, "srv-b"));
    set_ok(t, "srv-b", NULL, TR_ABSENT);
    set_ok(t, "stranger", NULL, TR_ABSENT);
    traffic_forget(t, "srv-b");
    traffic_forget(t, "stranger");
}

typedef struct call {
    traffic *t;
    const char *name;
    tr_state st;
    int rc;
    serr e;
    atomic_bool done;
} call;

static void *do_set(void *arg) {
    call *c = arg;
    c->rc = traffic_set(c->t, c->name, NULL, c->st, &c->e);
    atomic_store(&c->done, true);
    return NULL;
}

static void test_no_lock_across_io(void **st) {
    NEED_HAPROXY();
    relay R;
    relay_start(&R);
    traffic *t = open_on(R.path);
    set_ok(t, "srv-a", "127.0.0.1:4", TR_READY);
    set_ok(t, "srv-b", "127.0.0.1:5", TR_READY);

    /* The next connection is held: HAProxy, for this command, is stalled. */
    pthread_mutex_lock(&R.mu);
    R.stall_next = true;
    pthread_mutex_unlock(&R.mu);
    call x = {.t = t, .name = "srv-a", .st = TR_DRAIN};
    atomic_init(&x.done, false);
    pthread_t tx;
    assert_int_equal(pthread_create(&tx, NULL, do_set, &x), 0);
    pthread_mutex_lock(&R.mu);
    while (R.held < 0) pthread_cond_wait(&R.cv, &R.mu);
    pthread_mutex_unlock(&R.mu);
    /* x is now in its socket I/O, and stays there until released. */

    /* A later command for the same server, which must come after x's. */
    call y = {.t = t, .name = "srv-a", .st = TR_MAINT};
    atomic_init(&y.done, false);
    pthread_t ty;
    assert_int_equal(pthread_create(&ty, NULL, do_set, &y), 0);

    /* Everything about other servers answers meanwhile. */
    set_ok(t, "srv-b", NULL, TR_MAINT);
    set_ok(t, "srv-b", NULL, TR_MAINT); /* nothing to do: the table only */
    tr_stat s;
    serr e = {0};
    assert_int_equal(traffic_stat(t, "srv-b", &s, &e), 0);
    assert_true(s.present);
    assert_string_equal(s.status, "MAINT");
    char status[32], applied[16];
    view(t, "srv-b", status, sizeof(status), applied, sizeof(applied));
    assert_string_equal(status, "MAINT");
    assert_string_equal(applied, "maint");
    traffic_forget(t, "srv-c");
    enq q = {0};
    traffic_sync(t, on_enqueue, &q);
    assert_false(enqueued(&q, "srv-b"));
    assert_false(enqueued(&q, "srv-a")); /* being applied: not judged */
    /* ... all while x was still waiting for HAProxy. */
    assert_false(atomic_load(&x.done));

    pthread_mutex_lock(&R.mu);
    R.release = true;
    pthread_mutex_unlock(&R.mu);
    relay_poke(&R);
    pthread_join(tx, NULL);
    if (x.rc != 0) fail_msg("the held command: %s", x.e.msg);
    pthread_join(ty, NULL);
    if (y.rc != 0) fail_msg("the later command: %s", y.e.msg);
    /* Applied in the order asked: the later one wins. */
    view(t, "srv-a", status, sizeof(status), applied, sizeof(applied));
    assert_string_equal(status, "MAINT");
    assert_string_equal(applied, "maint");

    set_ok(t, "srv-a", NULL, TR_ABSENT);
    set_ok(t, "srv-b", NULL, TR_ABSENT);
    traffic_close(t);
    relay_stop(&R);
}

/* The show-stat parser on its own (the fuzz harness's entry): server rows
 * only, fields by header name, short rows and missing columns read as
 * empty, a reply without the header refused. */
typedef struct stat_rows {
    int n;
    char name[4][64];
    tr_stat s[4];
} stat_rows;

static void stat_row(const char *name, const tr_stat *s, void *arg) {
    stat_rows *r = arg;
    if (r->n < 4) {
        snprintf(r->name[r->n], sizeof(r->name[0]), "%s", name);
        r->s[r->n++] = *s;
    }
}

static void test_stat_parse(void **st) {
    (void)st;
    stat_rows r = {0};
    serr e = {0};
    assert_int_equal(haproxy_stat_parse("# pxname,svname,scur,status,rtime\n"
                                        "b,srv-a,3,UP,12\n"
                                        "b,BACKEND,3,UP,12\n"
                                        "b,srv-b,99999999999999999999999\n"
                                        "\n",
                                        stat_row, &r, &e),
                     0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.name[0], "srv-a");
    assert_int_equal(r.s[0].scur, 3);
    assert_string_equal(r.s[0].status, "UP");
    assert_int_equal(r.s[0].rtime_ms, 12);
    assert_int_equal(r.s[0].qcur, 0); /* no such column */
    assert_string_equal(r.name[1], "srv-b");
    assert_true(r.s[1].scur == INT64_MAX); /* saturated, not wrapped */
    assert_string_equal(r.s[1].status, "");
    r.n = 0;
    assert_int_equal(haproxy_stat_parse("Unknown command\n", stat_row, &r, &e), SE_IO);
    assert_int_equal(r.n, 0);
    assert_int_equal(haproxy_stat_parse("# svname", stat_row, &r, &e), 0);
    assert_int_equal(r.n, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stat_parse),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_servers),
        cmocka_unit_test(test_sync),
        cmocka_unit_test(test_no_lock_across_io),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
