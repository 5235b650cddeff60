/*
 * haproxy.c - the haproxy front door driver (traffic.h).
 *
 * HAProxy's runtime API: one command per connection on the admin socket,
 * the reply read to EOF; the socket takes several connections at once.
 * Dynamic servers are created in maintenance and do not survive a restart of
 * HAProxy, which is why the applied-state table exists and why the sync
 * compares it with `show stat`.
 *
 * Locking.  `mu` protects the table (and `started`, `aborted`) and is never
 * held across socket I/O.  An entry being applied is `busy`: its commands
 * run without the lock, and another set or forget of the same server waits
 * on `idle` until it is done, so one server's commands keep their order
 * while other servers' go ahead.  Every apply that ends bumps the entry's
 * `gen`; the sync judges only entries whose gen did not move while it read
 * `show stat`, so a reply from before an apply never undoes it.  `sync_mu`
 * lets one sync run at a time (it restarts HAProxy and owns down_logged);
 * nothing else takes it.  Entries move in the table (removal swaps in the
 * last one), so they are found by name after every relock, never kept by
 * pointer or index across an unlock.
 */
#include "traffic/traffic.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/mutex.h"
#include "util/util.h"

#define TR_MAX_SERVERS 1024
#define TR_NAME_MAX 64
#define TR_ADDR_MAX 64
#define TR_REPLY_MAX (4 * 1024 * 1024)
#define TR_CMD_TIMEOUT_MS 3000 /* one admin socket command, connect to EOF */
#define TR_ORPHANS_MAX 64
#define TR_UNIT "frontdoor/haproxy"

typedef struct tr_entry {
    char name[TR_NAME_MAX];
    char addr[TR_ADDR_MAX];
    bool known;      /* `applied` is what HAProxy has */
    tr_state applied;
    bool busy;       /* an apply is under way, without the lock */
    uint64_t gen;    /* bumped when an apply ends */
} tr_entry;

typedef struct hap {
    /* Set at open, read-only after. */
    bool owned;
    runtime *rt;
    char backend[64];
    char sock[108];
    char cfg_path[PATH_MAX];
    char log_path[PATH_MAX];
    char bin[256];
    char listen[128];

    pthread_mutex_t sync_mu; /* one sync at a time; guards down_logged */
    bool down_logged;

    smutex mu;               /* guards what follows; never held across I/O */
    pthread_cond_t idle;     /* an entry stopped being busy */
    pid_t started;           /* the HAProxy this instance started at open */
    bool aborted;
    int n;
    tr_entry e[TR_MAX_SERVERS];
} hap;

/* Formats a command or path; one that does not fit is refused, never cut. */
__attribute__((format(printf, 4, 5))) static int fmt(char *buf, size_t len, serr *e, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) return serr_set(e, SE_INVAL, "front door: \"%.60s...\" too long", buf);
    return 0;
}

/* ---- the admin socket ---- */

/* SO_SNDTIMEO (which also bounds a connect that waits for room in the
 * listener's backlog) set to what is left of a command's time. */
static void sock_timeout(int fd, int64_t left_ms) {
    if (left_ms < 1) left_ms = 1;
    struct timeval tv = {.tv_sec = (time_t)(left_ms / 1000), .tv_usec = (suseconds_t)(left_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* One command, its whole reply read to EOF, all within TR_CMD_TIMEOUT_MS:
 * one deadline for connect, send and every read, not a timeout per read, so
 * that an HAProxy that is stopped (SIGSTOP: the kernel still queues the
 * connection), hung, or answering a byte at a time holds the caller (a
 * reconcile worker, the sync) for a bounded time.  A command given up on
 * may still run later, when a stopped HAProxy takes its queued connection:
 * the commands are idempotent states, applied in order, and the sync
 * compares HAProxy with the table again. */
static int hap_cmd(const hap *h, const char *cmd, char **reply, serr *e) {
    *reply = NULL;
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s\n", cmd);
    if (n < 0 || n >= (int)sizeof(line)) return serr_set(e, SE_INVAL, "haproxy command too long: %.80s", cmd);
    int64_t until = mono_ms() + TR_CMD_TIMEOUT_MS;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return serr_set(e, SE_IO, "socket: %s", strerror(errno));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    str_copy(a.sun_path, sizeof(a.sun_path), h->sock); /* checked at open */
    sock_timeout(fd, until - mono_ms());
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int err = errno;
        close(fd);
        if (err == EAGAIN || err == EINPROGRESS)
            return serr_set(e, SE_UNAVAIL, "haproxy admin socket %s: no connection accepted within %d ms "
                            "(haproxy stopped or hung?)", h->sock, TR_CMD_TIMEOUT_MS);
        return serr_set(e, SE_UNAVAIL, "haproxy admin socket %s: %s", h->sock, strerror(err));
    }
    sock_timeout(fd, until - mono_ms());
    if (write(fd, line, (size_t)n) != n) {
        close(fd);
        return serr_set(e, SE_IO, "haproxy admin socket: cannot send \"%s\"", cmd);
    }
    sbuf b;
    sbuf_init(&b, TR_REPLY_MAX + 1);
    char buf[4096];
    for (;;) {
        int64_t left = until - mono_ms();
        if (left <= 0) {
            sbuf_free(&b);
            close(fd);
            return serr_set(e, SE_UNAVAIL, "haproxy admin socket %s: no complete answer to \"%s\" "
                            "within %d ms (haproxy stopped or hung?)", h->sock, cmd, TR_CMD_TIMEOUT_MS);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr == 0 || (pr < 0 && errno == EINTR)) continue;
        ssize_t r = pr < 0 ? -1 : read(fd, buf, sizeof(buf));
        if (r < 0 && pr > 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) {
            int err = errno;
            sbuf_free(&b);
            close(fd);
            return serr_set(e, SE_IO, "haproxy admin socket: \"%s\": %s", cmd, strerror(err));
        }
        if (r == 0) break;
        if (sbuf_add(&b, buf, (size_t)r) != 0) {
            sbuf_free(&b);
            close(fd);
            return serr_set(e, SE_TOOBIG, "haproxy reply to \"%s\" too large", cmd);
        }
    }
    close(fd);
    if (sbuf_add(&b, "", 1) != 0) {
        sbuf_free(&b);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    *reply = b.data;
    return 0;
}

/* A command whose success is an empty reply; "No such server" -> SE_NOTFOUND. */
static int hap_do(const hap *h, const char *cmd, serr *e) {
    char *r;
    int rc = hap_cmd(h, cmd, &r, e);
    if (rc) return rc;
    char *p = r;
    while (*p == '\n' || *p == ' ') p++;
    /* `set server ... addr` answers what it changed (or that nothing had to). */
    if (*p == '\0' || strncmp(p, "Server deleted", 14) == 0 ||
        strncmp(p, "New server registered", 21) == 0 || strncmp(p, "IP changed from", 15) == 0 ||
        strncmp(p, "port changed from", 17) == 0 || strncmp(p, "no need to change", 17) == 0)
        rc = 0;
    else if (strstr(p, "No such server") || strstr(p, "No such backend"))
        rc = serr_set(e, SE_NOTFOUND, "haproxy: %s: %.*s", cmd, (int)strcspn(p, "\n"), p);
    else
        rc = serr_set(e, SE_CONFLICT, "haproxy refused \"%s\": %.*s", cmd, (int)strcspn(p, "\n"), p);
    free(r);
    return rc;
}

/* ---- the owned HAProxy ---- */

static int write_config(const hap *h, bool *changed, serr *e) {
    char *text = malloc(4096);
    if (text == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int n = snprintf(text, 4096,
        "# Generated by stampd; do not edit.  Servers are added at run time through\n"
        "# the admin socket, one per serving stamp, named after the stamp.\n"
        "global\n"
        "    stats socket %s mode 600 level admin\n"
        "    # The front door port is this HAProxy's alone: with SO_REUSEPORT a\n"
        "    # second HAProxy could bind it too and take a share of its requests.\n"
        "    noreuseport\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 5s\n"
        "    timeout client 1h\n"
        "    timeout server 1h\n"
        "    timeout queue 30s\n"
        "    option http-server-close\n"
        "frontend stamp-frontdoor\n"
        "    bind %s\n"
        "    http-request return status 200 content-type text/plain string \"ok\\n\" if { path /.stamp/ping }\n"
        "    default_backend %s\n"
        "backend %s\n"
        "    # Tenant affinity: one tenant's requests go to one stamp; consistent hashing keeps\n"
        "    # dynamic servers possible and moves only a new server's share.\n"
        "    balance hdr(X-Tenant-Id)\n"
        "    # avalanche: tenant ids that look alike still spread over the ring\n"
        "    hash-type consistent sdbm avalanche\n",
        h->sock, h->listen, h->backend, h->backend);
    if (n < 0 || n >= 4096) {
        free(text);
        return serr_set(e, SE_TOOBIG, "haproxy configuration too long");
    }
    char *old = NULL;
    *changed = !(read_file(h->cfg_path, 65536, &old, NULL, NULL) == 0 && strcmp(old, text) == 0);
    free(old);
    int rc = *changed ? write_file_atomic(h->cfg_path, text, (size_t)n, 0600, e) : 0;
    free(text);
    return rc;
}

static int hap_find(const hap *h, pid_t *pid) {
    rt_proc p[4];
    int n = rt_scan(h->rt, TR_UNIT, true, p, 4, NULL);
    if (n > 0) *pid = p[0].pid;
    return n;
}

static int wait_socket(const hap *h, int ms, serr *e) {
    int64_t until = mono_ms() + ms;
    for (;;) {
        char *r;
        serr e2 = {0};
        if (hap_cmd(h, "show info", &r, &e2) == 0) {
            free(r);
            return 0;
        }
        if (mono_ms() >= until) return serr_set(e, SE_UNAVAIL, "haproxy did not come up: %s", e2.msg);
        sleep_ms(20);
    }
}

static int hap_start(const hap *h, pid_t *out, serr *e) {
    const char *argv[] = {h->bin, "-f", h->cfg_path, "-db", NULL};
    /* Checked here, not left to HAProxy: its own failure to bind only
     * shows in its log, and a port someone else holds must stop us before
     * anything starts. */
    int rc = tcp_addr_free(h->listen, "front door", e);
    if (rc == SE_UNAVAIL) {
        char m[SERR_MSG_MAX];
        str_copy(m, sizeof(m), e->msg);
        return serr_set(e, rc, "%.400s; choose another with --frontdoor-listen ADDR:PORT "
                        "(the frontdoor-listen key)", m);
    }
    if (rc) return rc;
    unlink(h->sock);
    rt_spawn_spec sp = {.unit = TR_UNIT, .argv = argv, .log_path = h->log_path};
    pid_t pid;
    rc = rt_spawn(h->rt, &sp, &pid, e);
    if (rc) return serr_wrap(e, "starting haproxy (%s)", h->bin);
    rt_invalidate(h->rt);
    if ((rc = wait_socket(h, 5000, e))) {
        char *log = NULL;
        if (read_file(h->log_path, 1 << 20, &log, NULL, NULL) == 0) {
            char *last = log + strlen(log);
            while (last > log && last[-1] == '\n') *--last = '\0';
            char *nl = strrchr(log, '\n');
            /* The last line of the log, cut to what a message holds. */
            serr_set(e, SE_UNAVAIL, "haproxy did not start (log %s): %.300s", h->log_path, nl ? nl + 1 : log);
            free(log);
        }
        rt_stop(h->rt, pid, 1000, NULL);
        return SE_UNAVAIL;
    }
    log_info("front door: haproxy pid %d listening on %s (admin socket %s)", (int)pid, h->listen, h->sock);
    if (out) *out = pid;
    return 0;
}

static void hap_close(void *impl) {
    hap *h = impl;
    if (h == NULL) return;
    if (h->owned && !h->aborted) log_info("front door: haproxy keeps running (admin socket %s)", h->sock);
    pthread_cond_destroy(&h->idle);
    smutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->sync_mu);
    free(h);
}

static int hap_open(const stamp_config *cfg, const char *data_dir, runtime *rt, void **impl, serr *e) {
    *impl = NULL;
    hap *h = calloc(1, sizeof(*h));
    if (h == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    pthread_mutex_init(&h->sync_mu, NULL);
    smutex_init(&h->mu);
    pthread_cond_init(&h->idle, NULL);
    h->rt = rt;
    int rc;
    if (!str_copy(h->backend, sizeof(h->backend), cfg->haproxy_backend) ||
        !str_copy(h->bin, sizeof(h->bin), cfg->haproxy_bin) ||
        !str_copy(h->listen, sizeof(h->listen), cfg->frontdoor_listen)) {
        rc = serr_set(e, SE_INVAL, "haproxy-backend, haproxy-bin or frontdoor-listen too long");
        goto fail;
    }
    if (cfg->haproxy_socket[0]) {
        /* An existing HAProxy: it must have our backend; we only drive it. */
        h->owned = false;
        if (!str_copy(h->sock, sizeof(h->sock), cfg->haproxy_socket)) {
            rc = serr_set(e, SE_INVAL, "haproxy-socket: path longer than %zu bytes", sizeof(h->sock) - 1);
            goto fail;
        }
        /* Type 2: the backends; ours answers with its BACKEND row. */
        char *r, cmd[128], row[80];
        if ((rc = fmt(cmd, sizeof(cmd), e, "show stat %s 2 -1", h->backend)) ||
            (rc = fmt(row, sizeof(row), e, "\n%s,BACKEND,", h->backend)))
            goto fail;
        if ((rc = hap_cmd(h, cmd, &r, e))) {
            serr_wrap(e, "front door");
            goto fail;
        }
        bool ok = strstr(r, row) != NULL;
        free(r);
        if (!ok) {
            rc = serr_set(e, SE_INVAL, "haproxy at %s has no backend \"%s\"", h->sock, h->backend);
            goto fail;
        }
        metrics_set("stamp_frontdoor_up", "", 1);
        *impl = h;
        return 0;
    }
    h->owned = true;
    if (rt == NULL) {
        rc = serr_set(e, SE_INTERNAL, "front door: an owned haproxy needs a runtime");
        goto fail;
    }
    char dir[PATH_MAX];
    if ((rc = fmt(dir, sizeof(dir), e, "%s/frontdoor", data_dir))) goto fail;
    if ((rc = mkdir_p(dir, 0700, e))) goto fail;
    if (fmt(h->sock, sizeof(h->sock), NULL, "%s/admin.sock", dir)) {
        rc = serr_set(e, SE_INVAL, "data dir too long for a unix socket path (%s/admin.sock)", dir);
        goto fail;
    }
    if ((rc = fmt(h->cfg_path, sizeof(h->cfg_path), e, "%s/haproxy.cfg", dir)) ||
        (rc = fmt(h->log_path, sizeof(h->log_path), e, "%s/haproxy.log", dir)))
        goto fail;
    bool changed;
    if ((rc = write_config(h, &changed, e))) goto fail;
    pid_t pid;
    int n = hap_find(h, &pid);
    if (n > 0 && !changed && wait_socket(h, 2000, NULL) == 0) {
        log_info("front door: adopted haproxy pid %d on %s", (int)pid, h->listen);
    } else {
        if (n > 0) {
            log_info("front door: configuration changed; replacing haproxy pid %d", (int)pid);
            rt_stop(rt, pid, 2000, NULL);
            rt_invalidate(rt);
        }
        if ((rc = hap_start(h, &h->started, e))) goto fail;
    }
    metrics_set("stamp_frontdoor_up", "", 1);
    *impl = h;
    return 0;
fail:
    h->aborted = true; /* nothing to say at close */
    hap_close(h);
    return rc;
}

static void hap_abort(void *impl) {
    hap *h = impl;
    smutex_lock(&h->mu);
    pid_t pid = h->started;
    h->started = 0;
    if (pid > 0) h->aborted = true;
    smutex_unlock(&h->mu);
    if (pid <= 0) return;
    log_info("front door: stopping haproxy pid %d, started by this stampd", (int)pid);
    rt_stop(h->rt, pid, 2000, NULL);
    rt_invalidate(h->rt);
}

static int hap_stop_owned(void *impl, serr *e) {
    hap *h = impl;
    if (!h->owned) return 0;
    pid_t pid;
    int n = hap_find(h, &pid);
    if (n < 0) return serr_set(e, SE_IO, "cannot look for haproxy");
    if (n == 0) return 0;
    log_info("front door: stopping haproxy pid %d", (int)pid);
    int rc = rt_stop(h->rt, pid, 2000, e);
    rt_invalidate(h->rt);
    smutex_lock(&h->mu);
    h->started = 0;
    h->aborted = true;
    smutex_unlock(&h->mu);
    return rc;
}

/* ---- the table ---- */

/* Index of name, or -1; with create, a new entry if there is room. */
static int entry(hap *h, const char *name, bool create) {
    assert(smutex_held(&h->mu));
    assert(h->n >= 0 && h->n <= TR_MAX_SERVERS);
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->e[i].name, name) == 0) return i;
    if (!create || h->n >= TR_MAX_SERVERS) return -1;
    tr_entry *x = &h->e[h->n];
    memset(x, 0, sizeof(*x));
    str_copy(x->name, sizeof(x->name), name); /* the caller checked the length */
    return h->n++;
}

/* Waits until no apply of name is under way; returns its index (-1 when it
 * is not in the table and create is false, or the table is full). */
static int entry_idle(hap *h, const char *name, bool create) {
    assert(smutex_held(&h->mu));
    for (;;) {
        int i = entry(h, name, create);
        if (i < 0 || !h->e[i].busy) return i;
        smutex_wait(&h->mu, &h->idle);
    }
}

/* ---- servers ---- */

/* The commands that make HAProxy's server `name` be st.  No lock held. */
static int apply(const hap *h, const char *name, const char *addr, tr_state st, serr *e) {
    char cmd[512];
    int rc;
    if (st == TR_ABSENT) {
        if ((rc = fmt(cmd, sizeof(cmd), e, "set server %s/%s state maint", h->backend, name))) return rc;
        rc = hap_do(h, cmd, e);
        if (rc == SE_NOTFOUND) {
            serr_clear(e);
            return 0;
        }
        if (rc) return rc;
        if ((rc = fmt(cmd, sizeof(cmd), e, "del server %s/%s", h->backend, name))) return rc;
        rc = hap_do(h, cmd, e);
        if (rc == SE_NOTFOUND) {
            serr_clear(e);
            rc = 0;
        }
        if (rc == 0) log_info("front door: server %s removed", name);
        return rc;
    }
    if (addr != NULL && *addr != '\0') {
        /* The server follows the stamp's endpoint: a replica replaced by
         * an update, or a successor taking over its predecessor's server
         * (same ring position, so its tenants move once).  New sessions go
         * to the new address at once; sessions under way finish on the
         * old one (no keep-alive to servers: http-server-close). */
        char ip[TR_ADDR_MAX];
        const char *colon = strrchr(addr, ':');
        size_t il = colon ? (size_t)(colon - addr) : 0;
        if (colon == NULL || il == 0 || il >= sizeof(ip))
            return serr_set(e, SE_INVAL, "server %s: address %s is not host:port", name, addr);
        memcpy(ip, addr, il);
        ip[il] = '\0';
        if ((rc = fmt(cmd, sizeof(cmd), e, "set server %s/%s addr %s port %s", h->backend, name, ip,
                      colon + 1)))
            return rc;
        rc = hap_do(h, cmd, e);
        if (rc && rc != SE_NOTFOUND) return rc;
        serr_clear(e);
    }
    if ((rc = fmt(cmd, sizeof(cmd), e, "set server %s/%s state %s", h->backend, name, tr_state_names[st])))
        return rc;
    rc = hap_do(h, cmd, e);
    if (rc != SE_NOTFOUND) return rc;
    serr_clear(e);
    if (addr == NULL || *addr == '\0') return serr_set(e, SE_INVAL, "server %s: no address", name);
    char add[512];
    /* An explicit id, derived from the stamp's name: HAProxy 2.6 places a
     * dynamic server added without one on the consistent-hash ring as if it
     * were the previous one (a new stamp then takes all of one stamp's
     * tenants instead of its share), and a stable id keeps every tenant on
     * its stamp across a restart of HAProxy.  Weight 100: more points on the
     * ring than the default, so shares come out close to even. */
    uint32_t hash = 2166136261u;
    for (const char *p = name; *p; p++) hash = (hash ^ (unsigned char)*p) * 16777619u;
    rc = SE_CONFLICT;
    for (int k = 0; k < 8 && rc == SE_CONFLICT; k++) {
        unsigned id = (unsigned)((hash + (uint32_t)k) % 2000000000u) + 1;
        serr_clear(e);
        if ((rc = fmt(add, sizeof(add), e, "add server %s/%s %s weight 100 id %u", h->backend, name, addr, id)))
            return rc;
        rc = hap_do(h, add, e);
        if (rc == SE_CONFLICT && strstr(e->msg, "already used") == NULL) break;
    }
    if (rc) return rc;
    log_info("front door: server %s added at %s", name, addr);
    return hap_do(h, cmd, e);
}

static int hap_set(void *impl, const char *name, const char *addr, tr_state st, serr *e) {
    hap *h = impl;
    assert(st >= TR_ABSENT && st <= TR_MAINT);
    if (strlen(name) >= TR_NAME_MAX) return serr_set(e, SE_INVAL, "front door: server name %.64s... too long", name);
    if (addr && strlen(addr) >= TR_ADDR_MAX) return serr_set(e, SE_INVAL, "front door: address of %s too long", name);
    smutex_lock(&h->mu);
    int i = entry_idle(h, name, true);
    if (i < 0) {
        smutex_unlock(&h->mu);
        return serr_set(e, SE_TOOBIG, "more than %d servers in the front door", TR_MAX_SERVERS);
    }
    tr_entry *x = &h->e[i];
    if (x->known && x->applied == st && (addr == NULL || strcmp(x->addr, addr) == 0)) {
        smutex_unlock(&h->mu);
        return 0;
    }
    x->busy = true;
    smutex_unlock(&h->mu);

    int rc = apply(h, name, addr, st, e);

    smutex_lock(&h->mu);
    /* A busy entry is never removed (forget waits), only moved. */
    i = entry(h, name, false);
    assert(i >= 0 && h->e[i].busy);
    x = &h->e[i];
    if (rc == 0) {
        if (x->known && x->applied != st)
            log_info("front door: %s %s -> %s", name, tr_state_names[x->applied], tr_state_names[st]);
        x->known = true;
        x->applied = st;
        if (addr) str_copy(x->addr, sizeof(x->addr), addr);
    } else {
        x->known = false;
    }
    x->busy = false;
    x->gen++;
    pthread_cond_broadcast(&h->idle);
    smutex_unlock(&h->mu);
    return rc;
}

static void hap_forget(void *impl, const char *name) {
    hap *h = impl;
    smutex_lock(&h->mu);
    int i = entry_idle(h, name, false);
    if (i >= 0) h->e[i] = h->e[--h->n];
    smutex_unlock(&h->mu);
}

/* Column index of `col` in the header of a `show stat` reply. */
static int stat_col(const char *header, const char *col) {
    int idx = 0;
    size_t cl = strlen(col);
    for (const char *p = header; *p && *p != '\n'; idx++) {
        size_t fl = strcspn(p, ",\n");
        if (fl == cl && strncmp(p, col, cl) == 0) return idx;
        p += fl;
        if (*p == ',') p++;
    }
    return -1;
}

static void stat_field(const char *line, int idx, char *out, size_t len) {
    out[0] = '\0';
    if (idx < 0) return;
    const char *p = line;
    for (int i = 0; i < idx; i++) {
        p += strcspn(p, ",\n");
        if (*p != ',') return;
        p++;
    }
    size_t fl = strcspn(p, ",\n");
    if (fl >= len) fl = len - 1;
    memcpy(out, p, fl);
    out[fl] = '\0';
}

typedef struct stat_cols {
    int sv, scur, qcur, stot, rate, status, req_tot, h5xx, rtime;
} stat_cols;

static void parse_row(const char *line, const stat_cols *c, char *name, size_t nlen, tr_stat *s) {
    char f[64];
    memset(s, 0, sizeof(*s));
    s->present = true;
    stat_field(line, c->sv, name, nlen);
    stat_field(line, c->status, s->status, sizeof(s->status));
    stat_field(line, c->scur, f, sizeof(f)); s->scur = strtoll(f, NULL, 10);
    stat_field(line, c->qcur, f, sizeof(f)); s->qcur = strtoll(f, NULL, 10);
    stat_field(line, c->stot, f, sizeof(f)); s->stot = strtoll(f, NULL, 10);
    stat_field(line, c->rate, f, sizeof(f)); s->rate = strtoll(f, NULL, 10);
    stat_field(line, c->req_tot, f, sizeof(f)); s->req_tot = strtoll(f, NULL, 10);
    stat_field(line, c->h5xx, f, sizeof(f)); s->hrsp_5xx = strtoll(f, NULL, 10);
    stat_field(line, c->rtime, f, sizeof(f)); s->rtime_ms = strtoll(f, NULL, 10);
}

int haproxy_stat_parse(const char *r, void (*fn)(const char *name, const tr_stat *s, void *arg),
                       void *arg, serr *e) {
    if (strncmp(r, "# ", 2) != 0)
        return serr_set(e, SE_IO, "haproxy: unexpected reply to show stat: %.80s", r);
    const char *hd = r + 2;
    stat_cols c = {stat_col(hd, "svname"), stat_col(hd, "scur"), stat_col(hd, "qcur"),
                   stat_col(hd, "stot"), stat_col(hd, "rate"), stat_col(hd, "status"),
                   stat_col(hd, "req_tot"), stat_col(hd, "hrsp_5xx"), stat_col(hd, "rtime")};
    for (const char *line = strchr(r, '\n'); line && line[1];) {
        line++;
        if (*line != '\n' && *line != '#') {
            char name[TR_NAME_MAX];
            tr_stat s;
            parse_row(line, &c, name, sizeof(name), &s);
            if (strcmp(name, "BACKEND") != 0 && strcmp(name, "FRONTEND") != 0) fn(name, &s, arg);
        }
        line = strchr(line, '\n');
    }
    return 0;
}

/* Calls fn for every server row of the backend.  No lock held. */
static int each_server(const hap *h, void (*fn)(const char *name, const tr_stat *s, void *arg), void *arg,
                       serr *e) {
    char cmd[128], *r;
    int rc = fmt(cmd, sizeof(cmd), e, "show stat %s 4 -1", h->backend);
    if (rc || (rc = hap_cmd(h, cmd, &r, e))) return rc;
    rc = haproxy_stat_parse(r, fn, arg, e);
    free(r);
    return rc;
}

typedef struct find_arg {
    const char *name;
    tr_stat *out;
} find_arg;

static void find_one(const char *name, const tr_stat *s, void *arg) {
    find_arg *f = arg;
    if (strcmp(name, f->name) == 0) *f->out = *s;
}

static int hap_stat(void *impl, const char *name, tr_stat *out, serr *e) {
    memset(out, 0, sizeof(*out));
    find_arg f = {.name = name, .out = out};
    return each_server(impl, find_one, &f, e);
}

static int hap_shutdown_sessions(void *impl, const char *name, serr *e) {
    hap *h = impl;
    char cmd[256];
    int rc = fmt(cmd, sizeof(cmd), e, "shutdown sessions server %s/%s", h->backend, name);
    if (rc == 0) rc = hap_do(h, cmd, e);
    if (rc == SE_NOTFOUND) {
        serr_clear(e);
        rc = 0;
    }
    return rc;
}

/* ---- convergence ---- */

typedef struct sync_row {
    char name[TR_NAME_MAX];
    char status[16];
} sync_row;

#define SYNC_ROWS_MAX (TR_MAX_SERVERS + TR_ORPHANS_MAX)

typedef struct sync_rows {
    int n;
    bool overflow; /* more servers than rows: "missing" cannot be judged */
    sync_row r[SYNC_ROWS_MAX];
} sync_rows;

typedef struct sync_before {
    char name[TR_NAME_MAX];
    uint64_t gen;
    bool busy;
} sync_before;

static void collect(const char *name, const tr_stat *s, void *arg) {
    sync_rows *rows = arg;
    if (rows->n >= SYNC_ROWS_MAX) {
        rows->overflow = true;
        return;
    }
    str_copy(rows->r[rows->n].name, TR_NAME_MAX, name);
    str_copy(rows->r[rows->n].status, sizeof(rows->r[0].status), s->status);
    rows->n++;
}

static bool status_is(const char *status, tr_state st) {
    switch (st) {
    case TR_READY: return strcmp(status, "DRAIN") != 0 && strncmp(status, "MAINT", 5) != 0;
    case TR_DRAIN: return strcmp(status, "DRAIN") == 0;
    case TR_MAINT: return strncmp(status, "MAINT", 5) == 0;
    default: return false;
    }
}

static const sync_row *row_of(const sync_rows *rows, const char *name) {
    for (int i = 0; i < rows->n; i++)
        if (strcmp(rows->r[i].name, name) == 0) return &rows->r[i];
    return NULL;
}

static const sync_before *before_of(const sync_before *b, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(b[i].name, name) == 0) return &b[i];
    return NULL;
}

/* Restarts an owned HAProxy that is gone.  False if it cannot be had. */
static bool ensure_running(hap *h) {
    pid_t pid;
    if (!h->owned || hap_find(h, &pid) > 0) return true;
    serr e = {0};
    log_warnx("front door: haproxy is not running; starting it again");
    metrics_set("stamp_frontdoor_up", "", 0);
    metrics_inc("stamp_frontdoor_restarts_total", "", 1);
    bool changed;
    if (write_config(h, &changed, &e) || hap_start(h, NULL, &e)) {
        log_warnx("front door: %s", e.msg);
        return false;
    }
    return true;
}

static void hap_sync(void *impl, traffic_enqueue_fn enqueue, void *arg) {
    hap *h = impl;
    pthread_mutex_lock(&h->sync_mu);
    sync_rows *rows = NULL;
    sync_before *before = NULL;
    char (*pending)[TR_NAME_MAX] = NULL;
    if (!ensure_running(h)) goto out;
    rows = calloc(1, sizeof(*rows));
    before = calloc(TR_MAX_SERVERS, sizeof(*before));
    /* Stamps to reconcile again, named after the lock is released. */
    pending = calloc(SYNC_ROWS_MAX, sizeof(*pending));
    if (rows == NULL || before == NULL || pending == NULL) goto out;

    /* What the table says before HAProxy is asked. */
    smutex_lock(&h->mu);
    int nb = h->n;
    for (int i = 0; i < nb; i++) {
        str_copy(before[i].name, TR_NAME_MAX, h->e[i].name);
        before[i].gen = h->e[i].gen;
        before[i].busy = h->e[i].busy;
    }
    smutex_unlock(&h->mu);

    serr e = {0};
    if (each_server(h, collect, rows, &e)) {
        metrics_set("stamp_frontdoor_up", "", 0);
        if (!h->down_logged) log_warnx("front door: %s", e.msg);
        h->down_logged = true;
        goto out;
    }
    if (h->down_logged) log_info("front door: admin socket answers again");
    h->down_logged = false;
    metrics_set("stamp_frontdoor_up", "", 1);
    if (rows->overflow) log_warnx("front door: more than %d servers in %s; not checking for missing ones",
                                  SYNC_ROWS_MAX, h->backend);

    int npending = 0, norphans = 0;
    smutex_lock(&h->mu);
    for (int i = 0; i < h->n; i++) {
        tr_entry *x = &h->e[i];
        const sync_before *b = before_of(before, nb, x->name);
        /* Judged only if nothing was applied to it while HAProxy answered. */
        bool judge = b && !b->busy && !x->busy && b->gen == x->gen && x->known;
        const sync_row *row = judge ? row_of(rows, x->name) : NULL;
        if (judge && row && !status_is(row->status, x->applied)) {
            log_warnx("front door: %s is %s in haproxy, expected %s; applying again", x->name,
                      row->status, tr_state_names[x->applied]);
            x->known = false;
        } else if (judge && !row && !rows->overflow && x->applied != TR_ABSENT) {
            log_warnx("front door: server %s is missing from haproxy; adding it again", x->name);
            x->known = false;
        }
        if (!x->known && !x->busy) {
            assert(npending < SYNC_ROWS_MAX);
            str_copy(pending[npending++], TR_NAME_MAX, x->name);
        }
    }
    /* A server we have no record of (stampd restarted): its stamp's
     * reconcile decides; a stamp that no longer exists removes it. */
    for (int i = 0; i < rows->n && norphans < TR_ORPHANS_MAX; i++)
        if (entry(h, rows->r[i].name, false) < 0) {
            assert(npending < SYNC_ROWS_MAX);
            str_copy(pending[npending++], TR_NAME_MAX, rows->r[i].name);
            norphans++;
        }
    smutex_unlock(&h->mu);
    for (int i = 0; i < npending; i++) enqueue(pending[i], arg);
out:
    free(pending);
    free(before);
    free(rows);
    pthread_mutex_unlock(&h->sync_mu);
}

/* ---- the view for the API ---- */

static void list_one(const char *name, const tr_stat *s, void *arg) {
    json_array_append_new(arg, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "name", name, "status",
                                         s->status, "currentSessions", (json_int_t)s->scur, "queued",
                                         (json_int_t)s->qcur, "sessionsTotal", (json_int_t)s->stot,
                                         "sessionRate", (json_int_t)s->rate, "requestsTotal",
                                         (json_int_t)s->req_tot, "avgResponseMs", (json_int_t)s->rtime_ms));
}

static int hap_json(void *impl, json_t *o, serr *e) {
    hap *h = impl;
    json_object_set_new(o, "owned", json_boolean(h->owned));
    json_object_set_new(o, "listen", json_string(h->owned ? h->listen : ""));
    json_object_set_new(o, "adminSocket", json_string(h->sock));
    json_object_set_new(o, "backend", json_string(h->backend));
    json_t *arr = json_array();
    int rc = each_server(h, list_one, arr, e);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    /* Beside what HAProxy says, what stampd last applied. */
    size_t k;
    json_t *s;
    smutex_lock(&h->mu);
    json_array_foreach(arr, k, s) {
        int i = entry(h, json_string_value(json_object_get(s, "name")), false);
        if (i >= 0 && h->e[i].known)
            json_object_set_new(s, "applied", json_string(tr_state_names[h->e[i].applied]));
    }
    smutex_unlock(&h->mu);
    json_object_set_new(o, "servers", arr);
    return 0;
}

const traffic_ops traffic_haproxy_ops = {
    .name = "haproxy",
    .enabled = true,
    .open = hap_open,
    .close = hap_close,
    .set = hap_set,
    .forget = hap_forget,
    .stat = hap_stat,
    .shutdown_sessions = hap_shutdown_sessions,
    .sync = hap_sync,
    .abort = hap_abort,
    .stop_owned = hap_stop_owned,
    .json = hap_json,
};
