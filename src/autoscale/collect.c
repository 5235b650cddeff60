/*
 * collect.c - see collect.h.
 */
#include "autoscale/collect.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

/* le="X" within a label set, as a number (+Inf as INFINITY). */
static bool label_le(const char *labels, const char *end, double *le) {
    const char *p = labels;
    while (p < end) {
        const char *k = strstr(p, "le=\"");
        if (k == NULL || k >= end) return false;
        if (k == labels || k[-1] == '{' || k[-1] == ',') {
            const char *v = k + 4;
            if (strncmp(v, "+Inf\"", 5) == 0) {
                *le = INFINITY;
                return true;
            }
            char *stop;
            *le = strtod(v, &stop);
            return stop != v && *stop == '"';
        }
        p = k + 4;
    }
    return false;
}

static int add_bucket(as_hist *h, double le, double count) {
    int i = 0;
    while (i < h->n && h->le[i] < le) i++;
    if (i < h->n && h->le[i] == le) {
        h->count[i] += count;
        return 0;
    }
    if (h->n == AS_HIST_MAX) return SE_LIMIT;
    memmove(&h->le[i + 1], &h->le[i], sizeof(double) * (size_t)(h->n - i));
    memmove(&h->count[i + 1], &h->count[i], sizeof(double) * (size_t)(h->n - i));
    h->le[i] = le;
    h->count[i] = count;
    h->n++;
    return 0;
}

int as_hist_parse(const char *body, const char *name, as_hist *out, serr *e) {
    char metric[160];
    memset(out, 0, sizeof(*out));
    if (str_fmt(metric, sizeof(metric), e, "metric name", "%s_bucket", name)) return e->code;
    size_t n = strlen(metric);
    bool found = false;
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (*p == '#' || strncmp(p, metric, n) != 0 || p[n] != '{') continue;
        const char *close = strchr(p + n, '}');
        const char *eol = strchr(p, '\n');
        if (close == NULL || (eol && close > eol)) continue;
        double le;
        if (!label_le(p + n + 1, close, &le)) continue;
        char *stop;
        double v = strtod(close + 1, &stop);
        if (stop == close + 1 || !isfinite(v) || v < 0) continue;
        if (add_bucket(out, le, v) != 0)
            return serr_set(e, SE_LIMIT, "%s: more than %d buckets", name, AS_HIST_MAX);
        found = true;
    }
    if (!found) return serr_set(e, SE_NOTFOUND, "no histogram %s", name);
    return 0;
}

int as_hist_add(as_hist *acc, const as_hist *h) {
    for (int i = 0; i < h->n; i++)
        if (add_bucket(acc, h->le[i], h->count[i]) != 0) return SE_LIMIT;
    return 0;
}

void as_hist_delta(const as_hist *now, const as_hist *before, as_hist *out) {
    *out = *now;
    for (int i = 0; i < out->n; i++) {
        double b = 0;
        for (int k = 0; k < before->n; k++)
            if (before->le[k] == out->le[i]) b = before->count[k];
        out->count[i] = out->count[i] >= b ? out->count[i] - b : out->count[i];
    }
}

double as_hist_quantile(const as_hist *h, double q) {
    if (h->n == 0) return -1;
    double total = h->count[h->n - 1];
    if (total <= 0) return -1;
    double rank = q * total;
    for (int i = 0; i < h->n; i++) {
        if (h->count[i] < rank) continue;
        if (isinf(h->le[i])) return i > 0 ? h->le[i - 1] : 0;
        double lo = i > 0 ? h->le[i - 1] : 0, below = i > 0 ? h->count[i - 1] : 0;
        double in = h->count[i] - below;
        if (in <= 0) return h->le[i];
        return lo + (h->le[i] - lo) * (rank - below) / in;
    }
    return h->le[h->n - 1];
}

int as_proc_usage(const int *pids, int n, uint64_t *ticks, uint64_t *rss_bytes) {
    *ticks = 0;
    *rss_bytes = 0;
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < n; i++) {
        char path[64], *text = NULL;
        snprintf(path, sizeof(path), "/proc/%d/stat", pids[i]);
        if (read_file(path, 4096, &text, NULL, NULL) != 0) continue;
        /* Fields after the command (which may hold spaces): state is 3,
         * utime 14, stime 15. */
        const char *rp = strrchr(text, ')');
        unsigned long long ut = 0, st = 0;
        if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            *ticks += ut + st;
        free(text);
        text = NULL;
        snprintf(path, sizeof(path), "/proc/%d/statm", pids[i]);
        if (read_file(path, 4096, &text, NULL, NULL) != 0) continue;
        unsigned long long size = 0, res = 0;
        if (sscanf(text, "%llu %llu", &size, &res) == 2) *rss_bytes += res * (uint64_t)page;
        free(text);
    }
    return 0;
}
