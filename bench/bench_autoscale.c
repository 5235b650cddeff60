/*
 * bench_autoscale.c - what one autoscaler evaluation costs as the fleet
 * grows (figures, not tests; asserts nothing):
 *
 *   1. as_decide on worlds of 100, 1000 and 4000 stamps (8 regions, every
 *      stamp with values of its own for each trigger of seed 000's spec),
 *      in three cases: steady (nothing to do), a scale-out due, a scale-in
 *      due.  CPU time per evaluation, against the reference of one plain
 *      pass over the same world in the same process, and the growth
 *      exponent between sizes (1.0: linear, 2.0: quadratic).
 *   2. The observation side, per stamp, times 1000: as_hist_parse of a real
 *      /metrics body (stamp-workload's, started here, its latency histogram
 *      filled by requests), the whole parse of one scrape as observe.c does
 *      it, as_obs_values_of over a history of 48 observations (the
 *      controller's HIST_LEN), and the controller's way of calling it (a
 *      copy of the history per trigger).  References: one pass over the
 *      body's bytes, and the HTTP scrape of the same body.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "autoscale/collect.h"
#include "autoscale/decide.h"
#include "autoscale/observe.h"
#include "autoscale/spec.h"
#include "core/naming.h"
#include "util/httpc.h"
#include "util/util.h"

#define NOW_MS 1700000000000LL
#define HIST 48            /* observations kept per stamp (controller.c's HIST_LEN) */
#define BUDGET_S 0.25      /* CPU time per figure */
#define FLEET_STAMPS 1000  /* the per-stamp costs are shown times this */

static const char *const regions[] = {"westeurope", "eastus",     "southeastasia", "northeurope",
                                      "westus2",    "japaneast",  "uksouth",       "australiaeast"};
#define NREG ((int)(sizeof(regions) / sizeof(regions[0])))

/* Seed 000's triggers, over 8 regions, maxStamps at the spec's bound. */
static const char spec_json[] =
    "{\"template\":\"synaxis-stamp\",\"regions\":[\"westeurope\",\"eastus\",\"southeastasia\",\"northeurope\","
    "\"westus2\",\"japaneast\",\"uksouth\",\"australiaeast\"],\"regionMinimums\":{\"westeurope\":2},"
    "\"interval\":\"15s\",\"step\":1,"
    "\"scaleOut\":{\"triggers\":[{\"metric\":\"cpu_utilization\",\"threshold\":70,\"duration\":\"5m\"},"
    "{\"metric\":\"memory_utilization\",\"threshold\":80,\"duration\":\"5m\"},"
    "{\"metric\":\"request_latency_p99\",\"threshold\":\"500ms\",\"duration\":\"3m\"},"
    "{\"metric\":\"active_connections\",\"threshold\":1000,\"duration\":\"5m\"}],"
    "\"cooldown\":\"10m\",\"maxStamps\":1000},"
    "\"scaleIn\":{\"triggers\":[{\"metric\":\"cpu_utilization\",\"threshold\":30,\"duration\":\"15m\"},"
    "{\"metric\":\"active_connections\",\"threshold\":10,\"duration\":\"10m\"},"
    "{\"metric\":\"queue_depth\",\"threshold\":0,\"duration\":\"10m\"}],"
    "\"cooldown\":\"30m\",\"minStamps\":2},"
    "\"standby\":{\"maxAge\":\"72h\",\"scaleDown\":{\"generalPool\":0,\"gpuPool\":0}}}";

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs fn(arg) in growing batches until BUDGET_S of CPU is spent; the CPU
 * seconds per call. */
static double per_call(void (*fn)(void *), void *arg) {
    long n = 0, batch = 1;
    double t0 = cpu_s(), t;
    do {
        for (long i = 0; i < batch; i++) fn(arg);
        n += batch;
        if (batch < 1 << 20) batch *= 2;
        t = cpu_s() - t0;
    } while (t < BUDGET_S);
    return t / (double)n;
}

static void die(const char *what, const serr *e) {
    fprintf(stderr, "bench_autoscale: %s: %s\n", what, e ? e->msg : strerror(errno));
    exit(1);
}

/* ---- 1. as_decide ---- */

typedef enum { C_STEADY, C_OUT, C_IN, C_N } load_case;
static const char *const case_names[C_N] = {"steady (no action)", "scale-out due", "scale-in due"};

/* A world of n stamps, all of the autoscaler's template, round-robin over
 * the regions: 2% Ready (warm), 2% Creating, 2% Draining, the rest Active.
 * Each stamp's values differ; the case moves them all above the scale-out
 * thresholds or below the scale-in ones.  With governed_every k > 1 only
 * every k-th stamp is governed: the others are another template's. */
static void world_fill(const as_spec *sp, as_stamp *st, int n, load_case lc, int governed_every) {
    for (int i = 0; i < n; i++) {
        as_stamp *s = &st[i];
        memset(s, 0, sizeof(*s));
        const char *reg = regions[i % NREG];
        char id[16]; /* up to 4000 stamps: 3 or 4 digits */
        serr e = {0};
        snprintf(id, sizeof(id), "%03d", i / NREG + 1);
        if (stamp_name_build("synaxis", reg, id, s->name, sizeof(s->name), &e)) die("stamp name", &e);
        str_copy(s->region, sizeof(s->region), reg);
        str_copy(s->id, sizeof(s->id), id);
        s->governed = i % governed_every == 0;
        int k = i % 50;
        s->phase = k == 0 ? AP_READY : k == 1 ? AP_CREATING : k == 2 ? AP_DRAINING : AP_ACTIVE;
        if (s->phase == AP_READY) s->ready_since_ms = NOW_MS - 3600000 - i;
        double f = (double)((i * 37) % 100) / 100.0; /* 0..0.99, spread over the stamps */
        double cpu = lc == C_OUT ? 72 + 20 * f : lc == C_IN ? 5 + 20 * f : 35 + 30 * f;
        as_stamp_set(sp, s, AM_CPU, true, cpu);
        as_stamp_set(sp, s, AM_MEMORY, true, 40 + 30 * f);
        as_stamp_set(sp, s, AM_LATENCY_P99, true, 0.05 + 0.3 * f);
        as_stamp_set(sp, s, AM_CONNECTIONS, true, lc == C_IN ? 9 * f : 100 + 800 * f);
        as_stamp_set(sp, s, AM_QUEUE_DEPTH, true, lc == C_IN ? 0 : 10 * f);
    }
}

/* The state a case starts from: the scale-out (scale-in) triggers of the
 * case breaching (holding) for longer than their durations, no cooldown. */
static void state_for(const as_spec *sp, load_case lc, as_state *st) {
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < sp->out.n; i++) {
        st->out_sig[i] = as_trigger_sig(&sp->out.t[i]);
        if (lc == C_OUT) st->out_since_ms[i] = NOW_MS - 3600000;
    }
    for (int i = 0; i < sp->in.n; i++) {
        st->in_sig[i] = as_trigger_sig(&sp->in.t[i]);
        if (lc == C_IN) st->in_since_ms[i] = NOW_MS - 3600000;
    }
}

typedef struct decide_arg {
    const as_spec *sp;
    as_world w;
    as_state prev, next;
    as_decision *d;
    double sink;
} decide_arg;

static void one_decide(void *p) {
    decide_arg *a = p;
    /* prev is never written: every call is the same evaluation. */
    as_decide(a->sp, &a->w, NOW_MS, &a->prev, &a->next, a->d);
}

/* The reference: one pass over the world reading a value per stamp, the
 * least any evaluation of it must do. */
static void one_pass(void *p) {
    decide_arg *a = p;
    double sum = 0;
    for (int i = 0; i < a->w.n; i++) {
        const as_stamp *s = &a->w.stamps[i];
        if (s->governed && s->phase == AP_ACTIVE && s->out[0].ok) sum += s->out[0].v;
    }
    a->sink += sum;
}

static double exponent(double t1, int n1, double t2, int n2) { return log(t2 / t1) / log((double)n2 / n1); }

static void bench_decide(const as_spec *sp) {
    static const int sizes[] = {100, 1000, 4000};
    enum { NS = sizeof(sizes) / sizeof(sizes[0]) };
    double t[C_N][NS], ref[NS];
    as_stamp *st = calloc(AS_WORLD_MAX, sizeof(*st));
    decide_arg *a = calloc(1, sizeof(*a));
    if (st == NULL || a == NULL || (a->d = calloc(1, sizeof(*a->d))) == NULL) die("out of memory", NULL);
    a->sp = sp;
    printf("-- 1. as_decide, CPU per evaluation (%d scale-out and %d scale-in triggers, %d regions, "
           "each stamp its own values)\n",
           sp->out.n, sp->in.n, NREG);
    for (int k = 0; k < NS; k++) {
        int n = sizes[k];
        a->w = (as_world){.stamps = st, .n = n, .fleet_min_regions = 2};
        for (int c = 0; c < C_N; c++) {
            world_fill(sp, st, n, (load_case)c, 1);
            state_for(sp, (load_case)c, &a->prev);
            t[c][k] = per_call(one_decide, a);
            char line[400];
            as_decision_line(sp, a->d, line, sizeof(line));
            if (strlen(line) > 110) str_copy(line + 104, sizeof(line) - 104, " ...");
            printf("  %5d stamps  %-19s %9.1f us   %s\n", n, case_names[c], t[c][k] * 1e6, line);
        }
        ref[k] = per_call(one_pass, a);
        printf("  %5d stamps  %-19s %9.2f us   decide = %.0f to %.0f passes; %.4f%% of a 15s interval at most\n",
               n, "reference: one pass", ref[k] * 1e6, t[C_STEADY][k] / ref[k], fmax(t[C_OUT][k], t[C_IN][k]) / ref[k],
               100 * fmax(t[C_STEADY][k], fmax(t[C_OUT][k], t[C_IN][k])) / 15.0);
    }
    /* maxStamps is at most 1000: an autoscaler governs that many of a
     * larger world at most. */
    a->w.n = 4000;
    world_fill(sp, st, 4000, C_OUT, 4);
    state_for(sp, C_OUT, &a->prev);
    double t_mixed = per_call(one_decide, a);
    char line[400];
    as_decision_line(sp, a->d, line, sizeof(line));
    printf("   4000 stamps, 1000 governed (the rest another template's), scale-out due: %.1f us   %s\n",
           t_mixed * 1e6, line);
    printf("  growth (exponent of n: 1.0 linear, 2.0 quadratic; ratio per 10x = 10^exponent)\n");
    for (int c = 0; c < C_N; c++) {
        double e1 = exponent(t[c][0], sizes[0], t[c][1], sizes[1]);
        double e2 = exponent(t[c][1], sizes[1], t[c][2], sizes[2]);
        printf("    %-19s 100->1000: x%.1f (exponent %.2f)   1000->4000: x%.1f (exponent %.2f, x%.1f per 10x)%s\n",
               case_names[c], t[c][1] / t[c][0], e1, t[c][2] / t[c][1], e2, pow(10, e2),
               c == C_OUT ? "  (4000: refused by maxStamps)" : "");
    }
    double r1 = exponent(ref[0], sizes[0], ref[1], sizes[1]), r2 = exponent(ref[1], sizes[1], ref[2], sizes[2]);
    printf("    %-19s 100->1000: x%.1f (exponent %.2f)   1000->4000: x%.1f (exponent %.2f)\n", "reference pass",
           ref[1] / ref[0], r1, ref[2] / ref[1], r2);
    free(a->d);
    free(a);
    free(st);
}

/* ---- 2. the observation side ---- */

/* A free loopback port (nothing listens on it now). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* GET url: 0 with the body (caller frees) when it answered 200. */
static int get(const char *url, sbuf *body) {
    httpc_req rq = {.url = url, .timeout_ms = 5000, .max_response = 1 << 20};
    long status = 0;
    serr e = {0};
    if (httpc_do(&rq, &status, body, &e) != 0) return -1;
    if (status != 200) {
        sbuf_free(body);
        return -1;
    }
    return 0;
}

/* stamp-workload from this program's directory (the build tree). */
static pid_t start_workload(int port) {
    char self[4096], exe[4200], ports[16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    if (str_fmt(exe, sizeof(exe), NULL, "path", "%s/stamp-workload", self) ||
        str_fmt(ports, sizeof(ports), NULL, "port", "%d", port))
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(exe, exe, "--port", ports, "--name", "bench-autoscale", "--workers", "4", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The workload's /metrics after requests of 0..57 ms filled its latency
 * histogram; SE_UNAVAIL when it could not be had. */
static int real_metrics(int port, sbuf *body) {
    char url[128];
    sbuf b;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", port);
    int up = -1;
    for (int i = 0; i < 100 && up != 0; i++) {
        if ((up = get(url, &b)) == 0) sbuf_free(&b);
        else usleep(50000);
    }
    if (up != 0) return SE_UNAVAIL;
    for (int i = 0; i < 200; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/work?ms=%d", port, i % 10 == 0 ? (i / 10) * 3 : 0);
        if (get(url, &b) == 0) sbuf_free(&b);
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    return get(url, body) == 0 ? 0 : SE_UNAVAIL;
}

typedef struct obs_arg {
    const char *body;
    size_t len;
    as_hist h;
    as_observation *hist;  /* HIST, oldest first */
    as_observation *copy;  /* the controller's per-call copy */
    as_obs_values v;
    double sink;
    const char *url;
} obs_arg;

static void one_hist_parse(void *p) {
    obs_arg *a = p;
    serr e = {0};
    if (as_hist_parse(a->body, AS_LATENCY_HISTOGRAM, &a->h, &e) != 0) die("as_hist_parse", &e);
}

/* What observe.c's observe_replica does with one scrape's body. */
static void one_scrape_parse(void *p) {
    obs_arg *a = p;
    as_observation o;
    memset(&o, 0, sizeof(o));
    double v;
    if (prom_value(a->body, "stamp_workload_active_connections", &v) == 0) o.connections += v;
    if (prom_value(a->body, "stamp_workload_queue_depth", &v) == 0) o.queue += v;
    if (prom_value(a->body, "stamp_workload_active_jobs", &v) == 0) o.jobs += v;
    if (prom_value(a->body, "stamp_workload_job_capacity", &v) == 0) o.job_capacity += v;
    as_hist h;
    serr e = {0};
    if (as_hist_parse(a->body, AS_LATENCY_HISTOGRAM, &h, &e) == 0 && as_hist_add(&o.latency, &h) == 0)
        o.ok_latency = true;
    a->sink += o.connections + o.latency.count[0];
}

/* The reference: one pass over the body's bytes (counting lines). */
static void one_body_pass(void *p) {
    obs_arg *a = p;
    long lines = 0;
    for (const char *q = a->body; (q = memchr(q, '\n', a->len - (size_t)(q - a->body))) != NULL; q++) lines++;
    a->sink += (double)lines;
}

static void one_values(void *p) {
    obs_arg *a = p;
    as_obs_values_of(a->hist, HIST, 180000, &a->v);
}

/* As controller.c's hist_values calls it, once per trigger per stamp: a
 * heap copy of the history, then the values. */
static void one_values_copied(void *p) {
    obs_arg *a = p;
    as_observation *tmp = malloc(sizeof(as_observation) * HIST);
    if (tmp == NULL) die("out of memory", NULL);
    memcpy(tmp, a->hist, sizeof(as_observation) * HIST);
    as_obs_values_of(tmp, HIST, 180000, &a->v);
    free(tmp);
}

/* A model (not the controller's code, which is static there) of
 * controller.c's hist_find: the stamp's history row found by a linear
 * strcmp over the rows of every stamp observed. */
static as_stamp *rows_model;
static int rows_next;
static void one_row_find(void *p) {
    obs_arg *a = p;
    const char *want = rows_model[rows_next].name;
    rows_next = (rows_next + 1) % FLEET_STAMPS;
    int i = 0;
    while (i < FLEET_STAMPS && strcmp(rows_model[i].name, want) != 0) i++;
    a->sink += i;
}

static void one_scrape(void *p) {
    obs_arg *a = p;
    sbuf b;
    if (get(a->url, &b) == 0) sbuf_free(&b);
}

/* 48 observations 15 s apart: CPU ticks, memory and the latency histogram
 * (the real one, its counts growing) as a loaded stamp's would. */
static void history_fill(obs_arg *a) {
    for (int i = 0; i < HIST; i++) {
        as_observation *o = &a->hist[i];
        memset(o, 0, sizeof(*o));
        o->mono_ms = 1000000 + (int64_t)i * 15000;
        o->ok_proc = o->ok_workload = o->ok_frontdoor = o->ok_latency = true;
        o->cpu_ticks = (uint64_t)i * 900;
        o->rss_bytes = 300u << 20;
        o->cpu_millis_cap = 1000;
        o->memory_cap = 1 << 30;
        o->replicas = 2;
        o->latency = a->h;
        for (int b = 0; b < o->latency.n; b++) o->latency.count[b] *= (double)(i + 1);
        o->connections = 120;
        o->fd_sessions = 40;
        o->job_capacity = 8;
    }
}

static void bench_observe(const as_spec *sp) {
    int triggers = sp->out.n + sp->in.n;
    printf("-- 2. the observation side, per stamp and x%d stamps (CPU; %d triggers -> %d values per stamp)\n",
           FLEET_STAMPS, triggers, triggers);
    int port = free_port();
    pid_t pid = port > 0 ? start_workload(port) : -1;
    sbuf body = {0};
    int rc = pid > 0 ? real_metrics(port, &body) : SE_UNAVAIL;
    if (rc != 0) {
        printf("  skipped: stamp-workload did not give its /metrics (port %d)\n", port);
        if (pid > 0) {
            kill(pid, SIGTERM);
            waitpid(pid, NULL, 0);
        }
        return;
    }
    obs_arg *a = calloc(1, sizeof(*a));
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    if (a == NULL || (a->hist = calloc(HIST, sizeof(*a->hist))) == NULL) die("out of memory", NULL);
    a->body = body.data;
    a->len = body.len;
    a->url = url;
    one_hist_parse(a);
    printf("  /metrics of a real stamp-workload: %zu bytes, histogram of %d buckets, as_observation %zu bytes\n",
           body.len, a->h.n, sizeof(as_observation));
    history_fill(a);
    struct {
        const char *what;
        void (*fn)(void *);
        int per_stamp; /* calls per stamp per evaluation */
    } rows[] = {
        {"as_hist_parse (one body)", one_hist_parse, 1},
        {"  reference: one pass over the body", one_body_pass, 1},
        {"a scrape's parse as observe.c does it", one_scrape_parse, 1},
        {"as_obs_values_of, 48 observations", one_values, 1},
        {"  as the controller calls it: per trigger, copied", one_values_copied, triggers},
        {"  its row found (model of hist_find, 1000 rows)", one_row_find, triggers + 1},
    };
    rows_model = calloc(FLEET_STAMPS, sizeof(*rows_model));
    if (rows_model == NULL) die("out of memory", NULL);
    world_fill(sp, rows_model, FLEET_STAMPS, C_STEADY, 1);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        double t = per_call(rows[i].fn, a) * rows[i].per_stamp;
        printf("  %-50s %9.2f us/stamp   x%d: %8.2f ms\n", rows[i].what, t * 1e6, FLEET_STAMPS,
               t * FLEET_STAMPS * 1e3);
    }
    double w0 = wall_s();
    for (int i = 0; i < 200; i++) one_scrape(a);
    double scrape = (wall_s() - w0) / 200;
    printf("  %-50s %9.2f us/stamp   x%d: %8.2f ms  (wall, sequential, loopback)\n",
           "  reference: the HTTP scrape of that body", scrape * 1e6, FLEET_STAMPS, scrape * FLEET_STAMPS * 1e3);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    sbuf_free(&body);
    free(rows_model);
    free(a->hist);
    free(a);
}

int main(void) {
    httpc_global_init();
    json_error_t je;
    json_t *j = json_loads(spec_json, 0, &je);
    as_spec *sp = calloc(1, sizeof(*sp));
    serr e = {0};
    if (j == NULL || sp == NULL) die("spec", NULL);
    if (as_spec_parse(j, sp, &e) != 0) die("spec", &e);
    json_decref(j);
    bench_decide(sp);
    bench_observe(sp);
    free(sp);
    return 0;
}
