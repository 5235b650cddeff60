/*
 * stamp-workload - the small real service a stamp runs in demos and tests.
 *
 *   GET /health        200 "ok" (503 while starting or while --unhealthy-file exists)
 *   GET /metrics       Prometheus text: active connections and in-flight requests
 *                      (not counting the scrape itself), active jobs, totals
 *   GET /work?ms=N     answers after N ms; an active connection meanwhile
 *   GET /job?ms=N      starts an N ms background job, answers 202 at once
 *
 * Every response names the stamp that served it in X-Stamp-Name, so a test
 * can tell where a front door sent a request.  SIGTERM quiesces: no new
 * connections, in-flight requests finish (up to 10 s), counters are saved.
 *
 * libmicrohttpd runs a thread per connection, so a slow /work holds only
 * its own thread; the counters are C11 atomics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_MS 600000
#define MAX_JOBS 1024
#define QUIESCE_WAIT_MS 10000

static struct {
    const char *name;
    const char *state_dir;
    const char *unhealthy_file;
    long long health_delay_ms;
    int64_t started_mono;
} cfg = {.name = "stamp-workload"};

static atomic_int open_conns;
static atomic_int inflight;
static atomic_int active_jobs;
static atomic_llong requests_total;
static atomic_llong jobs_total;
static atomic_llong saved_generation; /* bumped on every change */

static int64_t mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(long long ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool parse_ll(const char *s, long long min, long long max, long long *out) {
    if (s == NULL || *s == '\0') return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

/* ---- counters on disk ---- */

/* Paths are used whole or not at all: false when the state directory's
 * name leaves no room (a cut path is another file). */
static bool counters_path(char *buf, size_t len) {
    int n = snprintf(buf, len, "%s/counters.json", cfg.state_dir);
    return n >= 0 && (size_t)n < len;
}

/* The data latency: how long the last durable write of the counters took
 * (write, fsync, rename), plus whatever a test injects through the file
 * STATE_DIR/inject-data-latency-ms.  Microseconds. */
static atomic_llong data_latency_us;

static long long injected_latency_ms(void) {
    char path[PATH_MAX], buf[32];
    int pn = snprintf(path, sizeof(path), "%s/inject-data-latency-ms", cfg.state_dir);
    if (pn < 0 || (size_t)pn >= sizeof(path)) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    long long v = strtoll(buf, NULL, 10);
    return v > 0 && v < 3600000 ? v : 0;
}

static void save_counters(void) {
    if (cfg.state_dir == NULL) return;
    int64_t t0 = mono_now_us();
    char path[PATH_MAX], tmp[PATH_MAX + 8], text[512];
    if (!counters_path(path, sizeof(path))) {
        fprintf(stderr, "stamp-workload: state directory path too long\n");
        return;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path); /* fits: 8 more than path holds */
    /* Read back at start: written whole or not at all. */
    int n = snprintf(text, sizeof(text),
                     "{\"name\":\"%s\",\"requestsTotal\":%lld,\"jobsTotal\":%lld,\"updatedMs\":%lld}\n",
                     cfg.name, (long long)atomic_load(&requests_total),
                     (long long)atomic_load(&jobs_total), (long long)wall_now());
    if (n < 0 || (size_t)n >= sizeof(text)) {
        fprintf(stderr, "stamp-workload: the counters do not fit %zu bytes\n", sizeof(text));
        return;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        fprintf(stderr, "stamp-workload: %s: %s\n", tmp, strerror(errno));
        return;
    }
    bool ok = n > 0 && write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0)
        fprintf(stderr, "stamp-workload: saving %s: %s\n", path, strerror(errno));
    atomic_store(&data_latency_us, (long long)(mono_now_us() - t0) + injected_latency_ms() * 1000);
}

static bool field_ll(const char *text, const char *key, long long *out) {
    const char *p = strstr(text, key);
    if (p == NULL) return false;
    p += strlen(key);
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p || v < 0) return false;
    *out = v;
    return true;
}

static void load_counters(void) {
    char path[PATH_MAX], text[1024];
    if (!counters_path(path, sizeof(path))) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    long long r, j;
    if (n <= 0) return;
    text[n] = '\0';
    if (!field_ll(text, "\"requestsTotal\":", &r) || !field_ll(text, "\"jobsTotal\":", &j)) {
        fprintf(stderr, "stamp-workload: %s is malformed; counting from zero\n", path);
        return;
    }
    atomic_store(&requests_total, r);
    atomic_store(&jobs_total, j);
}

static void *saver(void *arg) {
    (void)arg;
    for (;;) {
        /* Every second, changed or not: the write is also the data latency
         * probe (stamp_workload_data_latency_seconds). */
        nap_ms(1000);
        save_counters();
    }
    return NULL;
}

/* ---- HTTP ---- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status, const char *ctype,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status, const char *ctype,
                             const char *fmt, ...) {
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    /* Bodies are parsed (metrics): a cut one would be wrong, so a body that
     * does not fit is an error answer instead. */
    if (n < 0 || (size_t)n >= sizeof(body)) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        ctype = "text/plain";
        n = snprintf(body, sizeof(body), "response larger than %zu bytes\n", sizeof(body) - 1);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) return MHD_NO;
    MHD_add_response_header(r, "X-Stamp-Name", cfg.name);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static bool want_ms(struct MHD_Connection *c, long long *ms) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ms");
    return parse_ll(v, 0, MAX_MS, ms);
}

static void *job_thread(void *arg) {
    nap_ms((long long)(intptr_t)arg);
    atomic_fetch_sub(&active_jobs, 1);
    return NULL;
}

static enum MHD_Result metrics(struct MHD_Connection *c) {
    int conns = atomic_load(&open_conns) - 1, inf = atomic_load(&inflight) - 1;
    return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4",
                 "# HELP stamp_workload_active_connections Open client connections, not counting this scrape.\n"
                 "# TYPE stamp_workload_active_connections gauge\n"
                 "stamp_workload_active_connections %d\n"
                 "# HELP stamp_workload_inflight_requests Requests being handled, not counting this scrape.\n"
                 "# TYPE stamp_workload_inflight_requests gauge\n"
                 "stamp_workload_inflight_requests %d\n"
                 "# HELP stamp_workload_active_jobs Background jobs running.\n"
                 "# TYPE stamp_workload_active_jobs gauge\n"
                 "stamp_workload_active_jobs %d\n"
                 "# HELP stamp_workload_requests_total Requests served.\n"
                 "# TYPE stamp_workload_requests_total counter\n"
                 "stamp_workload_requests_total %lld\n"
                 "# HELP stamp_workload_jobs_total Background jobs started.\n"
                 "# TYPE stamp_workload_jobs_total counter\n"
                 "stamp_workload_jobs_total %lld\n"
                 "# HELP stamp_workload_data_latency_seconds Duration of the last durable write of its state.\n"
                 "# TYPE stamp_workload_data_latency_seconds gauge\n"
                 "stamp_workload_data_latency_seconds %.6f\n"
                 "# HELP stamp_workload_uptime_seconds Seconds since start.\n"
                 "# TYPE stamp_workload_uptime_seconds gauge\n"
                 "stamp_workload_uptime_seconds %.3f\n",
                 conns < 0 ? 0 : conns, inf < 0 ? 0 : inf, atomic_load(&active_jobs),
                 (long long)atomic_load(&requests_total), (long long)atomic_load(&jobs_total),
                 (double)atomic_load(&data_latency_us) / 1e6,
                 (double)(mono_now() - cfg.started_mono) / 1000.0);
}

static enum MHD_Result route(struct MHD_Connection *c, const char *url) {
    long long ms;
    if (strcmp(url, "/health") == 0) {
        if (mono_now() - cfg.started_mono < cfg.health_delay_ms)
            return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", "starting\n");
        if (cfg.unhealthy_file && access(cfg.unhealthy_file, F_OK) == 0)
            return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", "unhealthy\n");
        return reply(c, MHD_HTTP_OK, "text/plain", "ok\n");
    }
    if (strcmp(url, "/metrics") == 0) return metrics(c);
    if (strcmp(url, "/work") == 0) {
        if (!want_ms(c, &ms))
            return reply(c, MHD_HTTP_BAD_REQUEST, "text/plain",
                         "ms must be an integer from 0 to %d\n", MAX_MS);
        nap_ms(ms);
        return reply(c, MHD_HTTP_OK, "text/plain", "done %lldms by %s\n", ms, cfg.name);
    }
    if (strcmp(url, "/job") == 0) {
        if (!want_ms(c, &ms))
            return reply(c, MHD_HTTP_BAD_REQUEST, "text/plain",
                         "ms must be an integer from 0 to %d\n", MAX_MS);
        if (atomic_fetch_add(&active_jobs, 1) >= MAX_JOBS) {
            atomic_fetch_sub(&active_jobs, 1);
            return reply(c, MHD_HTTP_TOO_MANY_REQUESTS, "text/plain", "too many jobs\n");
        }
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &at, job_thread, (void *)(intptr_t)ms);
        pthread_attr_destroy(&at);
        if (rc != 0) {
            atomic_fetch_sub(&active_jobs, 1);
            return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", "cannot start job\n");
        }
        atomic_fetch_add(&jobs_total, 1);
        return reply(c, MHD_HTTP_ACCEPTED, "text/plain", "job started %lldms by %s\n", ms,
                     cfg.name);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", "no such path: %s\n", url);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **ctx) {
    (void)cls, (void)version, (void)upload;
    if (*ctx == NULL) { /* headers only; wait for the body, if any */
        *ctx = c;
        return MHD_YES;
    }
    if (*upload_size != 0) { /* bodies are not wanted; drop them */
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&requests_total, 1);
    atomic_fetch_add(&saved_generation, 1);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "%s is not allowed\n",
                     method);
    atomic_fetch_add(&inflight, 1);
    enum MHD_Result r = route(c, url);
    atomic_fetch_sub(&inflight, 1);
    return r;
}

static void on_conn(void *cls, struct MHD_Connection *c, void **sock_ctx,
                    enum MHD_ConnectionNotificationCode code) {
    (void)cls, (void)c, (void)sock_ctx;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&open_conns, 1);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED) atomic_fetch_sub(&open_conns, 1);
}

static void usage(void) {
    fprintf(stderr,
            "usage: stamp-workload --port N [--bind ADDR] [--name NAME] [--state-dir DIR]\n"
            "                      [--health-delay-ms N] [--unhealthy-file PATH]\n");
    exit(2);
}

/* Long: flag parsing and the server loop of a small test program. */
int main(int argc, char **argv) {
    long long port = -1;
    const char *bind_addr = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) usage();
        if (strcmp(a, "--port") == 0) {
            if (!parse_ll(v, 1, 65535, &port)) usage();
        } else if (strcmp(a, "--bind") == 0) {
            bind_addr = v;
        } else if (strcmp(a, "--name") == 0) {
            cfg.name = v;
        } else if (strcmp(a, "--state-dir") == 0) {
            cfg.state_dir = v;
        } else if (strcmp(a, "--health-delay-ms") == 0) {
            if (!parse_ll(v, 0, 3600000, &cfg.health_delay_ms)) usage();
        } else if (strcmp(a, "--unhealthy-file") == 0) {
            cfg.unhealthy_file = v;
        } else {
            usage();
        }
        i++;
    }
    if (port < 0) usage();
    if (strlen(cfg.name) > 200 || strpbrk(cfg.name, "\r\n\"\\")) {
        fprintf(stderr, "stamp-workload: bad --name\n");
        return 2;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "stamp-workload: --bind %s is not an IPv4 address\n", bind_addr);
        return 2;
    }
    if (cfg.state_dir) {
        if (mkdir(cfg.state_dir, 0750) != 0 && errno != EEXIST) {
            fprintf(stderr, "stamp-workload: %s: %s\n", cfg.state_dir, strerror(errno));
            return 1;
        }
        load_counters();
    }
    cfg.started_mono = mono_now();

    /* Signals go to main's sigwait only: block them before any thread. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
            MHD_USE_ITC,
        (uint16_t)port, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)15, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)512, MHD_OPTION_NOTIFY_CONNECTION, on_conn, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "stamp-workload: cannot listen on %s:%lld (in use?)\n", bind_addr, port);
        return 1;
    }
    pthread_t st;
    if (cfg.state_dir) {
        pthread_create(&st, NULL, saver, NULL);
        pthread_detach(st);
    }
    printf("stamp-workload %s listening on %s:%lld\n", cfg.name, bind_addr, port);
    fflush(stdout);

    int sig = 0;
    for (;;) {
        if (sigwait(&sigs, &sig) == 0 && sig != SIGPIPE) break;
    }
    printf("stamp-workload %s: signal %d, finishing %d request(s)\n", cfg.name, sig,
           atomic_load(&inflight));
    fflush(stdout);
    MHD_quiesce_daemon(d);
    int64_t until = mono_now() + QUIESCE_WAIT_MS;
    while (atomic_load(&inflight) > 0 && mono_now() < until) nap_ms(10);
    save_counters();
    MHD_stop_daemon(d);
    return 0;
}
