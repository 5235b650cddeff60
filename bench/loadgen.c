/*
 * loadgen.c - stamp-loadgen, the HTTP load generator of the benchmarks and
 * of the autoscaler's tests: it holds a request rate (open loop: requests
 * leave on schedule whatever the answers take) or a concurrency (closed
 * loop: C requests always in flight) for a duration, optionally ramping up
 * from 0, and prints requests, errors by status and latency percentiles.
 *
 *   stamp-loadgen [--rate R | --concurrency C] [--duration 60s] [--ramp 10s]
 *                 [--path '/work?cpu_ms=20'] [--header 'X-Tenant-Id: t1']
 *                 [--tenants N] [--timeout 10s] [--max-inflight N] [-o text|json]
 *                 [--body TEMPLATE] URL
 *   stamp-loadgen URL [threads] [seconds] [tenants]      (the first form; one line out)
 *
 * One thread drives every transfer through a libcurl multi handle, so a
 * thousand connections cost no thousand threads; kept-alive connections
 * are reused.  Latencies go into log-linear buckets (64 per power of two,
 * under 2% wide), so any duration fits in a fixed table.  Percentiles are
 * over the 2xx answers; the rest are errors, counted by status (or by
 * transport error: connect, timeout, ...).
 *
 * With --body, every request is a POST of TEMPLATE (application/json) with
 * each "{n}" in it replaced by the request's number, so a write benchmark
 * sends distinct objects (a name per request) and never the same one twice.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_INFLIGHT 4096
#define MAX_HEADERS 8
#define BODY_MAX 4096 /* a request body, "{n}" expanded */
#define URL_MAX 2048
#define SUB_BITS 6 /* 64 buckets per power of two */
#define LAT_BUCKETS (42 << SUB_BITS)
#define LATE_S 0.01 /* a request leaving this much after its time is late */

typedef enum { MODE_CONCURRENCY, MODE_RATE } mode;

static struct {
    mode mode;
    double target; /* requests per second, or requests in flight */
    double duration, ramp, timeout;
    long max_inflight;
    long tenants;
    const char *headers[MAX_HEADERS];
    const char *body; /* POST this (see --body), or NULL: GET */
    int n_headers;
    bool json, legacy;
    char url[URL_MAX];
} opt = {
    .mode = MODE_CONCURRENCY, .target = 4, .duration = 10, .timeout = 10, .max_inflight = 1024};

/* A transfer slot: one easy handle, reused for request after request. */
typedef struct slot {
    CURL *h;
    struct curl_slist *hdrs;
    char *body; /* BODY_MAX bytes when opt.body is set */
    bool busy;
} slot;

static struct {
    long long started, ok, errors, late;
    long long by_status[600];     /* answers that are not 2xx */
    long long by_curl[CURL_LAST]; /* transport errors */
    long long lat[LAT_BUCKETS];   /* 2xx latencies */
    long long lat_max_us, lat_sum_us;
} res;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t sz, size_t n, void *u) {
    (void)p, (void)u;
    return sz * n;
}

/* ---- latency buckets ---- */

static int lat_bucket(long long us) {
    if (us < (1 << SUB_BITS)) return (int)(us < 0 ? 0 : us);
    int log2 = 63 - __builtin_clzll((unsigned long long)us);
    int shift = log2 - SUB_BITS;
    int b = ((shift + 1) << SUB_BITS) + (int)((us >> shift) - (1 << SUB_BITS));
    return b < LAT_BUCKETS ? b : LAT_BUCKETS - 1;
}

/* The middle of bucket b, in microseconds. */
static double lat_value(int b) {
    if (b < (1 << SUB_BITS)) return b;
    int shift = (b >> SUB_BITS) - 1;
    long long lo = ((long long)((b & ((1 << SUB_BITS) - 1)) + (1 << SUB_BITS))) << shift;
    return (double)lo + (double)(1LL << shift) / 2.0;
}

/* The p-quantile (0 < p <= 1) of the 2xx latencies, in milliseconds. */
static double pct_ms(double p) {
    if (res.ok == 0) return 0;
    long long want = (long long)((double)res.ok * p + 0.999999), seen = 0;
    if (want < 1) want = 1;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        seen += res.lat[b];
        if (seen >= want) {
            double v = lat_value(b);
            return (v > (double)res.lat_max_us ? (double)res.lat_max_us : v) / 1000.0;
        }
    }
    return (double)res.lat_max_us / 1000.0;
}

/* ---- the schedule ---- */

/* Ramp share at t seconds in: 0 to 1 over opt.ramp. */
static double ramp_share(double t) {
    if (opt.ramp <= 0 || t >= opt.ramp) return 1;
    return t / opt.ramp;
}

/* Requests due by t seconds in, at a rate rising linearly to opt.target
 * over the ramp and flat after it: the integral of the rate. */
static double due_by(double t) {
    if (opt.ramp <= 0) return opt.target * t;
    if (t < opt.ramp) return opt.target * t * t / (2 * opt.ramp);
    return opt.target * opt.ramp / 2 + opt.target * (t - opt.ramp);
}

/* ---- transfers ---- */

/* opt.body with each "{n}" replaced by n, into out (cap bytes); its
 * length, or 0 when it does not fit. */
static size_t expand_body(char *out, size_t cap, long long n) {
    size_t o = 0;
    for (const char *p = opt.body; *p != '\0';) {
        if (strncmp(p, "{n}", 3) == 0) {
            int w = snprintf(out + o, cap - o, "%lld", n);
            if (w < 0 || (size_t)w >= cap - o) return 0;
            o += (size_t)w;
            p += 3;
        } else {
            if (o + 1 >= cap) return 0;
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return o;
}

static bool start(CURLM *m, slot *s, long long n) {
    curl_slist_free_all(s->hdrs);
    s->hdrs = NULL;
    for (int i = 0; i < opt.n_headers; i++) {
        struct curl_slist *l = curl_slist_append(s->hdrs, opt.headers[i]);
        if (l == NULL) return false;
        s->hdrs = l;
    }
    if (opt.tenants > 0) {
        char hdr[64]; /* a long long is at most 20 characters: always fits */
        int hn = snprintf(hdr, sizeof(hdr), "X-Tenant-Id: t%lld", n % opt.tenants);
        if (hn < 0 || (size_t)hn >= sizeof(hdr)) return false;
        struct curl_slist *l = curl_slist_append(s->hdrs, hdr);
        if (l == NULL) return false;
        s->hdrs = l;
    }
    if (opt.body != NULL) {
        struct curl_slist *l = curl_slist_append(s->hdrs, "Content-Type: application/json");
        if (l == NULL) return false;
        s->hdrs = l;
        size_t len = expand_body(s->body, BODY_MAX, n);
        if (len == 0) return false;
        curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)len);
        curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
    }
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdrs);
    if (curl_multi_add_handle(m, s->h) != CURLM_OK) return false;
    s->busy = true;
    res.started++;
    return true;
}

static void finished(CURLMsg *msg) {
    long code = 0;
    curl_off_t us = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(msg->easy_handle, CURLINFO_TOTAL_TIME_T, &us);
    CURLcode rc = msg->data.result;
    if (rc == CURLE_OK && code >= 200 && code < 300) {
        res.ok++;
        res.lat[lat_bucket((long long)us)]++;
        res.lat_sum_us += (long long)us;
        if ((long long)us > res.lat_max_us) res.lat_max_us = (long long)us;
    } else {
        res.errors++;
        if (rc != CURLE_OK)
            res.by_curl[rc < CURL_LAST ? rc : CURL_LAST - 1]++;
        else
            res.by_status[code > 0 && code < 600 ? code : 0]++;
    }
}

/* Long: the one event loop of the program; its steps (start what is due,
 * wait, collect what finished) only make sense together. */
static int drive(double *elapsed) {
    CURLM *m = curl_multi_init();
    slot *slots = calloc((size_t)opt.max_inflight, sizeof(slot));
    slot **idle = calloc((size_t)opt.max_inflight, sizeof(slot *));
    int rc = 1, n_idle = 0;
    if (m == NULL || slots == NULL || idle == NULL) goto done;
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, opt.max_inflight);
    for (long i = 0; i < opt.max_inflight; i++) {
        slot *s = &slots[i];
        if ((s->h = curl_easy_init()) == NULL) goto done;
        if (opt.body != NULL && (s->body = malloc(BODY_MAX)) == NULL) goto done;
        curl_easy_setopt(s->h, CURLOPT_URL, opt.url);
        curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, (long)(opt.timeout * 1000));
        curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
        idle[n_idle++] = s;
    }
    double t0 = mono(), end = t0 + opt.duration;
    int running = 0;
    for (;;) {
        double now = mono(), t = now - t0;
        if (now < end) {
            double want = opt.mode == MODE_RATE ? due_by(t) : opt.target * ramp_share(t);
            long long have = opt.mode == MODE_RATE ? res.started : opt.max_inflight - n_idle;
            while ((double)have < want && n_idle > 0) {
                /* Late: it was due a poll or more ago (no slot was free). */
                if (opt.mode == MODE_RATE && due_by(t - LATE_S) >= (double)res.started + 1)
                    res.late++;
                slot *s = idle[--n_idle];
                if (!start(m, s, res.started)) goto done;
                have++;
            }
        } else if (n_idle == opt.max_inflight) {
            break;
        }
        if (curl_multi_perform(m, &running) != CURLM_OK) goto done;
        CURLMsg *msg;
        int left;
        bool freed = false;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            char *priv = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            slot *s = (slot *)(void *)priv;
            finished(msg);
            curl_multi_remove_handle(m, msg->easy_handle);
            s->busy = false;
            idle[n_idle++] = s;
            freed = true;
        }
        /* Closed loop: a slot just freed takes its next request at once (a
         * wait here would add up to 2 ms to every request of one client). */
        if (freed && opt.mode == MODE_CONCURRENCY) continue;
        /* Wakes on any transfer's progress, else after 2 ms: requests leave
         * on schedule to within that (several at once above 500 req/s). */
        if (curl_multi_poll(m, NULL, 0, 2, NULL) != CURLM_OK) goto done;
    }
    *elapsed = mono() - t0;
    rc = 0;
done:
    for (long i = 0; slots != NULL && i < opt.max_inflight; i++) {
        if (slots[i].h == NULL) continue;
        if (slots[i].busy) curl_multi_remove_handle(m, slots[i].h);
        curl_easy_cleanup(slots[i].h);
        curl_slist_free_all(slots[i].hdrs);
        free(slots[i].body);
    }
    free(idle);
    free(slots);
    if (m) curl_multi_cleanup(m);
    return rc;
}

/* ---- output ---- */

/* What an error is called: the status, or curl's short name for it. */
static const char *curl_short(CURLcode c) {
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_GOT_NOTHING: return "empty";
    case CURLE_RECV_ERROR: return "recv";
    case CURLE_SEND_ERROR: return "send";
    case CURLE_COULDNT_RESOLVE_HOST: return "resolve";
    default: return "other";
    }
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* Errors as "503": n pairs, text or JSON. */
static void print_errors(bool json) {
    const char *sep = "";
    for (int code = 0; code < 600; code++) {
        if (res.by_status[code] == 0) continue;
        printf(json ? "%s\"%d\":%lld" : "%s%d: %lld", sep, code, res.by_status[code]);
        sep = json ? "," : ", ";
    }
    /* Transport errors by short name; several codes may share "other". */
    static const char *names[] = {"timeout", "connect", "empty", "recv",
                                  "send",    "resolve", "other"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        long long n = 0;
        for (int c = 1; c < CURL_LAST; c++)
            if (strcmp(curl_short((CURLcode)c), names[k]) == 0) n += res.by_curl[c];
        if (n == 0) continue;
        printf(json ? "%s\"%s\":%lld" : "%s%s: %lld", sep, names[k], n);
        sep = json ? "," : ", ";
    }
}

static void report(double elapsed) {
    /* Due within the duration but never sent: every slot was busy. */
    long long missed = 0;
    if (opt.mode == MODE_RATE && (long long)due_by(opt.duration) > res.started)
        missed = (long long)due_by(opt.duration) - res.started;
    double rate = elapsed > 0 ? (double)(res.ok + res.errors) / elapsed : 0;
    double mean = res.ok ? (double)res.lat_sum_us / (double)res.ok / 1000.0 : 0;
    const char *mname = opt.mode == MODE_RATE ? "rate" : "concurrency";
    if (opt.legacy) {
        printf("%.0f req/s  ok %lld  errors %lld  p50 %.1f ms  p99 %.1f ms\n",
               elapsed > 0 ? (double)res.ok / elapsed : 0, res.ok, res.errors, pct_ms(0.50),
               pct_ms(0.99));
        return;
    }
    if (opt.json) {
        printf("{\"url\":");
        json_str(opt.url);
        printf(",\"mode\":\"%s\",\"target\":%g,\"durationSeconds\":%g,\"rampSeconds\":%g,"
               "\"elapsedSeconds\":%.3f,\"requests\":%lld,\"ok\":%lld,\"errors\":%lld,"
               "\"errorsByStatus\":{",
               mname, opt.target, opt.duration, opt.ramp, elapsed, res.ok + res.errors, res.ok,
               res.errors);
        print_errors(true);
        printf("},\"late\":%lld,\"missed\":%lld,\"achievedRate\":%.2f,\"latencyMs\":{\"p50\":%.3f,"
               "\"p90\":%.3f,"
               "\"p99\":%.3f,\"max\":%.3f,\"mean\":%.3f}}\n",
               res.late, missed, rate, pct_ms(0.50), pct_ms(0.90), pct_ms(0.99),
               (double)res.lat_max_us / 1000.0, mean);
        return;
    }
    printf("%s %g%s for %gs (ramp %gs): %s\n", mname, opt.target,
           opt.mode == MODE_RATE ? " req/s" : "", opt.duration, opt.ramp, opt.url);
    printf("requests %lld  ok %lld  errors %lld", res.ok + res.errors, res.ok, res.errors);
    if (res.errors) {
        printf(" (");
        print_errors(false);
        printf(")");
    }
    printf("  %.1f req/s", rate);
    if (res.late || missed)
        printf("  late %lld, never sent %lld (--max-inflight %ld reached)", res.late, missed,
               opt.max_inflight);
    printf("\nlatency ms (2xx)  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  mean %.1f\n", pct_ms(0.50),
           pct_ms(0.90), pct_ms(0.99), (double)res.lat_max_us / 1000.0, mean);
}

/* ---- arguments ---- */

static void usage(FILE *f, int code) {
    fputs("usage: stamp-loadgen [--rate R | --concurrency C] [--duration 60s] [--ramp 10s]\n"
          "                     [--path PATH] [--header 'Name: value']... [--tenants N]\n"
          "                     [--timeout 10s] [--max-inflight N] [-o text|json] [--body TEMPLATE] URL\n"
          "       stamp-loadgen URL [threads] [seconds] [tenants]\n"
          "\n"
          "  --rate R          hold R requests per second (open loop; up to 100000)\n"
          "  --concurrency C   keep C requests in flight (closed loop; default 4)\n"
          "  --duration D      how long to load (default 10s; 500ms, 30s, 2m; at most 1h)\n"
          "  --ramp D          rise linearly from 0 to the target over D (default 0)\n"
          "  --path PATH       appended to URL, e.g. '/work?cpu_ms=20'\n"
          "  --header H        an extra request header, e.g. 'X-Tenant-Id: t1' (up to 8)\n"
          "  --tenants N       X-Tenant-Id: t0 .. t(N-1), one per request in turn, so a\n"
          "                    front door spreads them as it would real tenants\n"
          "  --body TEMPLATE   POST TEMPLATE (application/json; under 4096 bytes), each\n"
          "                    {n} in it replaced by the request's number\n"
          "  --timeout D       per request (default 10s); a request past it is an error\n"
          "  --max-inflight N  requests in flight at most in --rate mode (default 10 x R + 16,\n"
          "                    at most 1024); past it requests leave late or never,\n"
          "                    and the summary says how many\n"
          "  -o text|json      the summary's form (default text)\n"
          "\n"
          "Prints requests, errors by status (or timeout, connect, ...), the achieved rate\n"
          "and p50/p90/p99/max latency of the 2xx answers.  Exit 1 when errors outnumber\n"
          "successes, 2 on bad arguments.\n",
          f);
    exit(code);
}

static void bad(const char *flag, const char *v) {
    fprintf(stderr, "stamp-loadgen: bad %s '%s' (see --help)\n", flag, v);
    exit(2);
}

static double num(const char *flag, const char *v, double min, double max) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= min && d <= max)) bad(flag, v);
    return d;
}

/* "500ms", "30s", "2m", "1h" or bare seconds, into seconds. */
static double dur(const char *flag, const char *v, double max) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || !(d >= 0)) bad(flag, v);
    if (strcmp(end, "ms") == 0)
        d /= 1000;
    else if (strcmp(end, "m") == 0)
        d *= 60;
    else if (strcmp(end, "h") == 0)
        d *= 3600;
    else if (*end != '\0' && strcmp(end, "s") != 0)
        bad(flag, v);
    if (d > max) bad(flag, v);
    return d;
}

/* The first form: URL [threads] [seconds] [tenants], as bench scripts
 * call it; its one-line answer is unchanged. */
static void legacy_args(int argc, char **argv) {
    opt.legacy = true;
    opt.target = argc > 2 ? num("threads", argv[2], 1, 64) : 4;
    opt.duration = argc > 3 ? num("seconds", argv[3], 0.001, 600) : 3;
    opt.tenants = argc > 4 ? (long)num("tenants", argv[4], 0, 1e9) : 0;
    opt.max_inflight = (long)opt.target;
}

static void parse_args(int argc, char **argv, const char **base, const char **path) {
    bool flags = false;
    for (int i = 1; i < argc; i++)
        flags = flags || argv[i][0] == '-';
    if (!flags) {
        *base = argv[1];
        legacy_args(argc, argv);
        return;
    }
    bool rate = false, conc = false, inflight = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage(stdout, 0);
        if (a[0] != '-') {
            if (*base != NULL) usage(stderr, 2);
            *base = a;
            continue;
        }
        if (i + 1 >= argc) usage(stderr, 2);
        const char *v = argv[++i];
        if (strcmp(a, "--rate") == 0)
            opt.target = num(a, v, 0.001, 100000), rate = true;
        else if (strcmp(a, "--concurrency") == 0)
            opt.target = (double)(long)num(a, v, 1, MAX_INFLIGHT), conc = true;
        else if (strcmp(a, "--duration") == 0)
            opt.duration = dur(a, v, 3600);
        else if (strcmp(a, "--ramp") == 0)
            opt.ramp = dur(a, v, 3600);
        else if (strcmp(a, "--timeout") == 0)
            opt.timeout = dur(a, v, 600);
        else if (strcmp(a, "--path") == 0)
            *path = v;
        else if (strcmp(a, "--tenants") == 0)
            opt.tenants = (long)num(a, v, 0, 1e9);
        else if (strcmp(a, "--max-inflight") == 0)
            opt.max_inflight = (long)num(a, v, 1, MAX_INFLIGHT), inflight = true;
        else if (strcmp(a, "-o") == 0 && (strcmp(v, "json") == 0 || strcmp(v, "text") == 0))
            opt.json = strcmp(v, "json") == 0;
        else if (strcmp(a, "--body") == 0 && strlen(v) < BODY_MAX)
            opt.body = v;
        else if (strcmp(a, "--header") == 0 && opt.n_headers < MAX_HEADERS && strchr(v, ':'))
            opt.headers[opt.n_headers++] = v;
        else
            bad(a, v);
    }
    if (rate && conc) {
        fprintf(stderr, "stamp-loadgen: --rate and --concurrency exclude each other\n");
        exit(2);
    }
    if (*base == NULL || opt.duration <= 0 || opt.timeout <= 0) usage(stderr, 2);
    if (rate) opt.mode = MODE_RATE;
    /* Closed loop: exactly C slots. */
    if (!rate)
        opt.max_inflight = (long)opt.target;
    else if (!inflight && opt.max_inflight > (long)opt.target * 10 + 16)
        opt.max_inflight = (long)opt.target * 10 + 16;
    if (opt.ramp > opt.duration) opt.ramp = opt.duration;
}

int main(int argc, char **argv) {
    const char *base = NULL, *path = "";
    if (argc < 2) usage(stderr, 2);
    parse_args(argc, argv, &base, &path);
    size_t bl = strlen(base);
    if (*path != '\0' && bl > 0 && base[bl - 1] == '/') bl--; /* "host/" + "/work" */
    int n = snprintf(opt.url, sizeof(opt.url), "%.*s%s", (int)bl, base, path);
    if (n < 0 || (size_t)n >= sizeof(opt.url)) {
        fprintf(stderr, "stamp-loadgen: the URL is longer than %d bytes\n", URL_MAX - 1);
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    double elapsed = 0;
    if (drive(&elapsed) != 0) {
        fprintf(stderr, "stamp-loadgen: libcurl failed (out of memory or file descriptors?)\n");
        curl_global_cleanup();
        return 1;
    }
    report(elapsed);
    curl_global_cleanup();
    return res.errors > res.ok ? 1 : 0;
}
