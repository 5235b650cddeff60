/*
 * stamp-workload - the small real service a stamp runs in demos and tests,
 * and the load the autoscaler scales on.
 *
 *   GET /health                 200 "ok" (503 while starting or while --unhealthy-file exists);
 *                               "ok version V" with an application version
 *   GET /metrics                Prometheus text (see metrics() for every series)
 *   GET /work?ms=N&cpu_ms=C     burns C ms of CPU, then waits N ms, on one of the
 *                               --workers; 503 when all are busy and --queue requests wait
 *   GET /jobs?n=K&ms=N&cpu_ms=C queues K jobs (each burns C ms of CPU, then waits N ms)
 *                               for the --job-workers; 202, or 503 when they do not fit
 *                               the --job-queue (all K or none)
 *   GET /job?ms=N               one job: /jobs?n=1&ms=N
 *
 * Every response names the stamp that served it in X-Stamp-Name, so a test
 * can tell where a front door sent a request, and the application version
 * (--app-version, else $APP_VERSION) in X-App-Version when it has one, so
 * a test can tell which revision answered.  SIGTERM quiesces: no new
 * connections, in-flight requests finish (up to 10 s), counters are saved;
 * jobs still queued or running are lost.
 *
 * Threads: libmicrohttpd runs a thread per connection.  /work runs on its
 * connection's thread once it holds one of the --workers slots, which are
 * handed out in arrival order (a ticket queue), so with more concurrent
 * requests than workers the rest wait and latency grows with concurrency;
 * /health and /metrics never wait for a slot, so probes and scrapes answer
 * under any load.  Jobs run on --job-workers threads of their own, fed by a
 * bounded ring.  Shared counters are C11 atomics; the pools and the latency
 * histogram each have one mutex.
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

#define MAX_MS 600000    /* /work and job wait, ms */
#define MAX_CPU_MS 10000 /* /work and job CPU burn, ms */
#define MAX_WORKERS 256
#define MAX_QUEUE 1024 /* requests waiting for a worker */
#define MAX_JOB_WORKERS 256
#define MAX_JOB_QUEUE 100000
#define METRICS_MAX 16384 /* the /metrics body, on the heap */
#define QUIESCE_WAIT_MS 10000

static struct {
    const char *name;
    const char *state_dir;
    const char *unhealthy_file;
    const char *app_version; /* may be NULL */
    long long health_delay_ms;
    long long workers, queue, job_workers, job_queue;
    int64_t started_mono;
} cfg = {.name = "stamp-workload", .workers = 8, .queue = 64, .job_workers = 4, .job_queue = 10000};

static atomic_int open_conns;
static atomic_int inflight;
static atomic_int active_jobs; /* jobs running (taken off the queue) */
static atomic_llong requests_total;
static atomic_llong jobs_total; /* jobs started */
static atomic_llong jobs_done_total;
static atomic_llong requests_rejected_total;
static atomic_llong jobs_rejected_total;
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
/* ---- CPU burn ---- */

static int64_t thread_cpu_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static volatile uint64_t burn_sink; /* keeps the loop from being optimised away */

/* Spins until this thread has used ms of CPU: CPU time, not wall time, so a
 * busy machine stretches the wait but not the work.  The clock is read every
 * few tens of microseconds of arithmetic; reading it is a system call and
 * would otherwise turn the burn into system time. */
static void burn_cpu_ms(long long ms) {
    if (ms <= 0) return;
    int64_t until = thread_cpu_us() + ms * 1000;
    uint64_t x = (uint64_t)mono_now_us() | 1;
    do {
        for (int i = 0; i < 20000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        burn_sink = x;
    } while (thread_cpu_us() < until);
}

/* One unit of work, for a request or a job: the CPU first, then the wait. */
static void do_work(long long ms, long long cpu_ms) {
    burn_cpu_ms(cpu_ms);
    nap_ms(ms);
}

/* ---- the request workers ----
 *
 * A request takes ticket t and may run while t < done + workers: at most
 * `workers` run at once, and they start in arrival order.  Waiters past
 * `queue` are turned away at once. */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long long issued, done;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static long long pool_running_locked(void) {
    long long cap = pool.done + cfg.workers;
    return (pool.issued < cap ? pool.issued : cap) - pool.done;
}

static long long pool_waiting_locked(void) {
    long long w = pool.issued - pool.done - cfg.workers;
    return w > 0 ? w : 0;
}

/* false: the queue is full. */
static bool pool_enter(void) {
    pthread_mutex_lock(&pool.mu);
    if (pool_waiting_locked() >= cfg.queue && pool.issued - pool.done >= cfg.workers) {
        pthread_mutex_unlock(&pool.mu);
        return false;
    }
    long long ticket = pool.issued++;
    while (ticket >= pool.done + cfg.workers)
        pthread_cond_wait(&pool.cv, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    return true;
}

static void pool_leave(void) {
    pthread_mutex_lock(&pool.mu);
    pool.done++;
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
}

static void pool_figures(long long *running, long long *waiting) {
    pthread_mutex_lock(&pool.mu);
    *running = pool_running_locked();
    *waiting = pool_waiting_locked();
    pthread_mutex_unlock(&pool.mu);
}

/* ---- the job queue ----
 *
 * A ring of cfg.job_queue jobs.  A job worker counts a job active while
 * still holding the lock it took it off the ring with, so a job is always
 * either queued or active to a reader of both figures (drains read them). */

typedef struct job {
    int32_t ms, cpu_ms;
} job;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *ring;
    long long head, len;
} jq = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* All n or none; false when they do not fit. */
static bool jobs_push(long long n, long long ms, long long cpu_ms) {
    pthread_mutex_lock(&jq.mu);
    if (jq.len + n > cfg.job_queue) {
        pthread_mutex_unlock(&jq.mu);
        return false;
    }
    for (long long i = 0; i < n; i++)
        jq.ring[(jq.head + jq.len + i) % cfg.job_queue] = (job){(int32_t)ms, (int32_t)cpu_ms};
    jq.len += n;
    pthread_cond_broadcast(&jq.cv);
    pthread_mutex_unlock(&jq.mu);
    return true;
}

static long long jobs_queued(void) {
    pthread_mutex_lock(&jq.mu);
    long long n = jq.len;
    pthread_mutex_unlock(&jq.mu);
    return n;
}

static void *job_worker(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&jq.mu);
        while (jq.len == 0)
            pthread_cond_wait(&jq.cv, &jq.mu);
        job j = jq.ring[jq.head];
        jq.head = (jq.head + 1) % cfg.job_queue;
        jq.len--;
        atomic_fetch_add(&active_jobs, 1);
        pthread_mutex_unlock(&jq.mu);
        atomic_fetch_add(&jobs_total, 1);
        atomic_fetch_add(&saved_generation, 1);
        do_work(j.ms, j.cpu_ms);
        atomic_fetch_sub(&active_jobs, 1);
        atomic_fetch_add(&jobs_done_total, 1);
    }
    return NULL;
}

/* ---- the latency histogram ----
 *
 * Every request, from its handling on to its answer being queued (the wait
 * for a worker included).  One lock, so a scrape sees buckets, sum and
 * count that agree. */

static const double le_seconds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_LE (sizeof(le_seconds) / sizeof(le_seconds[0]))

static struct {
    pthread_mutex_t mu;
    long long bucket[N_LE + 1]; /* per bucket, not cumulative; the last is +Inf */
    long long count;
    double sum;
} hist = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void hist_observe(double seconds) {
    size_t b = 0;
    while (b < N_LE && seconds > le_seconds[b])
        b++;
    pthread_mutex_lock(&hist.mu);
    hist.bucket[b]++;
    hist.count++;
    hist.sum += seconds;
    pthread_mutex_unlock(&hist.mu);
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

static enum MHD_Result answer(struct MHD_Connection *c, unsigned int status, const char *ctype,
                              char *body, size_t len, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "X-Stamp-Name", cfg.name);
    if (cfg.app_version) MHD_add_response_header(r, "X-App-Version", cfg.app_version);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status, const char *fmt, ...) {
    char body[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    /* Short messages for people; a cut one still reads. */
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(body)) n = (int)sizeof(body) - 1;
    return answer(c, status, "text/plain", body, (size_t)n, MHD_RESPMEM_MUST_COPY);
}

/* A query parameter: absent gives def; present must be an integer in
 * [min, max].  false (and a 400 answer by the caller) otherwise. */
static bool query_ll(struct MHD_Connection *c, const char *key, long long min, long long max,
                     long long def, long long *out) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
    if (v == NULL) {
        *out = def;
        return true;
    }
    return parse_ll(v, min, max, out);
}

/* The /metrics body, built on the heap: every series or none (a cut body
 * would be parsed wrong by a scraper). */
typedef struct text {
    char *p;
    size_t len;
    bool over;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...) {
    if (t->over) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, METRICS_MAX - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= METRICS_MAX - t->len)
        t->over = true;
    else
        t->len += (size_t)n;
}

static void put_metric(text *t, const char *name, const char *type, const char *help) {
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_histogram(text *t) {
    long long bucket[N_LE + 1], count;
    double sum;
    pthread_mutex_lock(&hist.mu);
    memcpy(bucket, hist.bucket, sizeof(bucket));
    count = hist.count;
    sum = hist.sum;
    pthread_mutex_unlock(&hist.mu);
    const char *n = "stamp_workload_request_duration_seconds";
    put_metric(t, n, "histogram",
               "Time from a request's handling to its answer, the wait for a worker included; "
               "every request, probes and scrapes too.");
    long long cum = 0;
    for (size_t b = 0; b < N_LE; b++) {
        cum += bucket[b];
        put(t, "%s_bucket{le=\"%g\"} %lld\n", n, le_seconds[b], cum);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %.6f\n%s_count %lld\n", n, cum + bucket[N_LE], n,
        sum, n, count);
}

/* Long: one line per series, each with its HELP and TYPE; a flat list
 * reads better than a table of pointers to counters of different types. */
static enum MHD_Result metrics(struct MHD_Connection *c) {
    text t = {.p = malloc(METRICS_MAX)};
    if (t.p == NULL) return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n");
    int conns = atomic_load(&open_conns), inf = atomic_load(&inflight) - 1;
    long long busy, waiting;
    pool_figures(&busy, &waiting);
    put_metric(&t, "stamp_workload_active_connections", "gauge",
               "Open client connections (those that asked for more than /health or /metrics).");
    put(&t, "stamp_workload_active_connections %d\n", conns < 0 ? 0 : conns);
    put_metric(&t, "stamp_workload_inflight_requests", "gauge",
               "Requests being handled, not counting this scrape.");
    put(&t, "stamp_workload_inflight_requests %d\n", inf < 0 ? 0 : inf);
    put_metric(&t, "stamp_workload_workers", "gauge", "Requests /work runs at once (--workers).");
    put(&t, "stamp_workload_workers %lld\n", cfg.workers);
    put_metric(&t, "stamp_workload_busy_workers", "gauge", "Workers running a /work request.");
    put(&t, "stamp_workload_busy_workers %lld\n", busy);
    put_metric(&t, "stamp_workload_request_queue_depth", "gauge",
               "/work requests waiting for a worker.");
    put(&t, "stamp_workload_request_queue_depth %lld\n", waiting);
    put_metric(&t, "stamp_workload_request_queue_capacity", "gauge",
               "/work requests that may wait for a worker before more get 503 (--queue).");
    put(&t, "stamp_workload_request_queue_capacity %lld\n", cfg.queue);
    put_metric(&t, "stamp_workload_rejected_requests_total", "counter",
               "/work requests answered 503 because the queue was full.");
    put(&t, "stamp_workload_rejected_requests_total %lld\n",
        (long long)atomic_load(&requests_rejected_total));
    put_histogram(&t);
    put_metric(&t, "stamp_workload_active_jobs", "gauge", "Background jobs running.");
    put(&t, "stamp_workload_active_jobs %d\n", atomic_load(&active_jobs));
    put_metric(&t, "stamp_workload_queue_depth", "gauge",
               "Background jobs waiting for a job worker.");
    put(&t, "stamp_workload_queue_depth %lld\n", jobs_queued());
    put_metric(&t, "stamp_workload_job_capacity", "gauge",
               "Background jobs that can run at once (--job-workers).");
    put(&t, "stamp_workload_job_capacity %lld\n", cfg.job_workers);
    put_metric(&t, "stamp_workload_job_queue_capacity", "gauge",
               "Background jobs that may wait before more are refused (--job-queue).");
    put(&t, "stamp_workload_job_queue_capacity %lld\n", cfg.job_queue);
    put_metric(&t, "stamp_workload_rejected_jobs_total", "counter",
               "Background jobs refused (503) because the queue was full.");
    put(&t, "stamp_workload_rejected_jobs_total %lld\n",
        (long long)atomic_load(&jobs_rejected_total));
    put_metric(&t, "stamp_workload_requests_total", "counter", "Requests served.");
    put(&t, "stamp_workload_requests_total %lld\n", (long long)atomic_load(&requests_total));
    put_metric(&t, "stamp_workload_jobs_total", "counter", "Background jobs started.");
    put(&t, "stamp_workload_jobs_total %lld\n", (long long)atomic_load(&jobs_total));
    put_metric(&t, "stamp_workload_jobs_completed_total", "counter",
               "Background jobs finished since start.");
    put(&t, "stamp_workload_jobs_completed_total %lld\n", (long long)atomic_load(&jobs_done_total));
    put_metric(&t, "stamp_workload_data_latency_seconds", "gauge",
               "Duration of the last durable write of its state.");
    put(&t, "stamp_workload_data_latency_seconds %.6f\n",
        (double)atomic_load(&data_latency_us) / 1e6);
    put_metric(&t, "stamp_workload_uptime_seconds", "gauge", "Seconds since start.");
    put(&t, "stamp_workload_uptime_seconds %.3f\n",
        (double)(mono_now() - cfg.started_mono) / 1000.0);
    if (t.over) {
        free(t.p);
        return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics larger than %d bytes\n",
                     METRICS_MAX);
    }
    return answer(c, MHD_HTTP_OK, "text/plain; version=0.0.4", t.p, t.len, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result work(struct MHD_Connection *c) {
    long long ms, cpu_ms;
    if (!query_ll(c, "ms", 0, MAX_MS, 0, &ms))
        return reply(c, MHD_HTTP_BAD_REQUEST, "ms must be an integer from 0 to %d\n", MAX_MS);
    if (!query_ll(c, "cpu_ms", 0, MAX_CPU_MS, 0, &cpu_ms))
        return reply(c, MHD_HTTP_BAD_REQUEST, "cpu_ms must be an integer from 0 to %d\n",
                     MAX_CPU_MS);
    if (!pool_enter()) {
        atomic_fetch_add(&requests_rejected_total, 1);
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "busy: %lld workers busy and %lld waiting\n",
                     cfg.workers, cfg.queue);
    }
    do_work(ms, cpu_ms);
    pool_leave();
    if (cpu_ms == 0) return reply(c, MHD_HTTP_OK, "done %lldms by %s\n", ms, cfg.name);
    return reply(c, MHD_HTTP_OK, "done %lldms cpu %lldms by %s\n", ms, cpu_ms, cfg.name);
}

/* /jobs?n=K&ms=N&cpu_ms=C, and /job?ms=N (one job) as before. */
static enum MHD_Result jobs(struct MHD_Connection *c, bool one) {
    long long n = 1, ms, cpu_ms;
    if (!one && !query_ll(c, "n", 1, cfg.job_queue, 1, &n))
        return reply(c, MHD_HTTP_BAD_REQUEST, "n must be an integer from 1 to %lld (--job-queue)\n",
                     cfg.job_queue);
    if (!query_ll(c, "ms", 0, MAX_MS, 0, &ms))
        return reply(c, MHD_HTTP_BAD_REQUEST, "ms must be an integer from 0 to %d\n", MAX_MS);
    if (!query_ll(c, "cpu_ms", 0, MAX_CPU_MS, 0, &cpu_ms))
        return reply(c, MHD_HTTP_BAD_REQUEST, "cpu_ms must be an integer from 0 to %d\n",
                     MAX_CPU_MS);
    if (!jobs_push(n, ms, cpu_ms)) {
        atomic_fetch_add(&jobs_rejected_total, n);
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                     "job queue full: %lld job(s) do not fit a queue of %lld\n", n, cfg.job_queue);
    }
    if (one) return reply(c, MHD_HTTP_ACCEPTED, "job started %lldms by %s\n", ms, cfg.name);
    return reply(c, MHD_HTTP_ACCEPTED, "queued %lld job(s) of %lldms cpu %lldms by %s\n", n, ms,
                 cpu_ms, cfg.name);
}

static enum MHD_Result route(struct MHD_Connection *c, const char *url) {
    if (strcmp(url, "/health") == 0) {
        if (mono_now() - cfg.started_mono < cfg.health_delay_ms)
            return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting\n");
        if (cfg.unhealthy_file && access(cfg.unhealthy_file, F_OK) == 0)
            return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unhealthy\n");
        if (cfg.app_version) return reply(c, MHD_HTTP_OK, "ok version %s\n", cfg.app_version);
        return reply(c, MHD_HTTP_OK, "ok\n");
    }
    if (strcmp(url, "/metrics") == 0) return metrics(c);
    if (strcmp(url, "/work") == 0) return work(c);
    if (strcmp(url, "/jobs") == 0) return jobs(c, false);
    if (strcmp(url, "/job") == 0) return jobs(c, true);
    return reply(c, MHD_HTTP_NOT_FOUND, "no such path: %s\n", url);
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
    int64_t t0 = mono_now_us();
    /* A connection counts as a client's from its first request that is not
     * a probe or a scrape: Prometheus and the health checks keep their
     * connections open between runs, and a drain must not wait for them. */
    if (strcmp(url, "/metrics") != 0 && strcmp(url, "/health") != 0) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        bool *counted = ci ? ci->socket_context : NULL; /* from on_conn */
        if (counted && !*counted) {
            *counted = true;
            atomic_fetch_add(&open_conns, 1);
        }
    }
    atomic_fetch_add(&requests_total, 1);
    atomic_fetch_add(&saved_generation, 1);
    enum MHD_Result r;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        r = reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "%s is not allowed\n", method);
    } else {
        atomic_fetch_add(&inflight, 1);
        r = route(c, url);
        atomic_fetch_sub(&inflight, 1);
    }
    hist_observe((double)(mono_now_us() - t0) / 1e6);
    return r;
}

static void on_conn(void *cls, struct MHD_Connection *c, void **sock_ctx,
                    enum MHD_ConnectionNotificationCode code) {
    (void)cls, (void)c;
    /* Per connection: whether it counts as a client's (see handler). */
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *sock_ctx = calloc(1, sizeof(bool));
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        bool *counted = *sock_ctx;
        if (counted && *counted) atomic_fetch_sub(&open_conns, 1);
        free(counted);
        *sock_ctx = NULL;
    }
}
static const char help_text[] =
    "usage: stamp-workload --port N [options]\n"
    "\n"
    "A small real HTTP service for stamps: /health, /metrics, /work, /jobs, /job.\n"
    "\n"
    "  --port N              port to listen on (required)\n"
    "  --bind ADDR           IPv4 address to listen on (default 127.0.0.1)\n"
    "  --name NAME           the stamp's name, sent in X-Stamp-Name (default stamp-workload)\n"
    "  --state-dir DIR       keeps counters.json there, written every second\n"
    "  --health-delay-ms N   /health answers 503 for the first N ms\n"
    "  --unhealthy-file PATH /health answers 503 while PATH exists\n"
    "  --app-version V       the application version, in /health and X-App-Version\n"
    "                        (default: $APP_VERSION; none when unset or empty)\n"
    "  --workers N           /work requests run at once (1-256, default 8)\n"
    "  --queue N             /work requests that wait for a worker; more get 503\n"
    "                        (0-1024, default 64)\n"
    "  --job-workers N       background jobs run at once (1-256, default 4)\n"
    "  --job-queue N         background jobs that wait; more are refused with 503\n"
    "                        (1-100000, default 10000)\n"
    "  -h, --help            this text\n"
    "\n"
    "  GET /work?ms=N&cpu_ms=C      on a worker: burn C ms of CPU (0-10000), then wait\n"
    "                               N ms (0-600000); 200\n"
    "  GET /jobs?n=K&ms=N&cpu_ms=C  queue K jobs of the same work; 202, or 503 if not all fit\n"
    "  GET /job?ms=N                one job\n"
    "  GET /metrics                 Prometheus text: connections, workers and their queue,\n"
    "                               stamp_workload_request_duration_seconds (histogram),\n"
    "                               active jobs, job queue depth and capacity, counters\n";

static void usage(void) {
    fputs(help_text, stderr);
    exit(2);
}

/* A flag's integer value in [min, max], or a message and exit 2. */
static long long flag_ll(const char *flag, const char *v, long long min, long long max) {
    long long out;
    if (!parse_ll(v, min, max, &out)) {
        fprintf(stderr, "stamp-workload: %s must be an integer from %lld to %lld\n", flag, min,
                max);
        exit(2);
    }
    return out;
}

static void parse_flags(int argc, char **argv, long long *port, const char **bind_addr) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help_text, stdout);
            exit(0);
        }
        if (v == NULL) usage();
        if (strcmp(a, "--port") == 0)
            *port = flag_ll(a, v, 1, 65535);
        else if (strcmp(a, "--bind") == 0)
            *bind_addr = v;
        else if (strcmp(a, "--name") == 0)
            cfg.name = v;
        else if (strcmp(a, "--state-dir") == 0)
            cfg.state_dir = v;
        else if (strcmp(a, "--health-delay-ms") == 0)
            cfg.health_delay_ms = flag_ll(a, v, 0, 3600000);
        else if (strcmp(a, "--unhealthy-file") == 0)
            cfg.unhealthy_file = v;
        else if (strcmp(a, "--app-version") == 0)
            cfg.app_version = v;
        else if (strcmp(a, "--workers") == 0)
            cfg.workers = flag_ll(a, v, 1, MAX_WORKERS);
        else if (strcmp(a, "--queue") == 0)
            cfg.queue = flag_ll(a, v, 0, MAX_QUEUE);
        else if (strcmp(a, "--job-workers") == 0)
            cfg.job_workers = flag_ll(a, v, 1, MAX_JOB_WORKERS);
        else if (strcmp(a, "--job-queue") == 0)
            cfg.job_queue = flag_ll(a, v, 1, MAX_JOB_QUEUE);
        else
            usage();
        i++;
    }
    if (*port < 0) usage();
}

static bool start_job_workers(void) {
    jq.ring = calloc((size_t)cfg.job_queue, sizeof(job));
    if (jq.ring == NULL) return false;
    for (long long i = 0; i < cfg.job_workers; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, job_worker, NULL) != 0) return false;
        pthread_detach(t);
    }
    return true;
}

/* Long: the server's start and stop in order, each step a few lines. */
int main(int argc, char **argv) {
    long long port = -1;
    const char *bind_addr = "127.0.0.1";
    const char *env_version = getenv("APP_VERSION");
    if (env_version && *env_version) cfg.app_version = env_version;
    parse_flags(argc, argv, &port, &bind_addr);
    if (cfg.app_version && (*cfg.app_version == '\0' || strlen(cfg.app_version) > 64 ||
                            strpbrk(cfg.app_version, "\r\n"))) {
        fprintf(stderr, "stamp-workload: bad --app-version (1-64 characters, one line)\n");
        return 2;
    }
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

    if (!start_job_workers()) {
        fprintf(stderr, "stamp-workload: cannot start %lld job workers\n", cfg.job_workers);
        return 1;
    }
    /* A thread per connection: room for every worker and waiter, plus
     * probes, scrapes and idle kept-alive connections. */
    unsigned int conn_limit = (unsigned int)(cfg.workers + cfg.queue + 256);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
            MHD_USE_ITC,
        (uint16_t)port, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)15, MHD_OPTION_CONNECTION_LIMIT, conn_limit,
        MHD_OPTION_NOTIFY_CONNECTION, on_conn, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "stamp-workload: cannot listen on %s:%lld (in use?)\n", bind_addr, port);
        return 1;
    }
    pthread_t st;
    if (cfg.state_dir) {
        pthread_create(&st, NULL, saver, NULL);
        pthread_detach(st);
    }
    printf("stamp-workload %s listening on %s:%lld (%lld workers, queue %lld; %lld job workers, "
           "job queue %lld)\n",
           cfg.name, bind_addr, port, cfg.workers, cfg.queue, cfg.job_workers, cfg.job_queue);
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
    while (atomic_load(&inflight) > 0 && mono_now() < until)
        nap_ms(10);
    save_counters();
    MHD_stop_daemon(d);
    return 0;
}
