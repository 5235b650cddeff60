/*
 * metrics.c - see metrics.h.  A flat array of series under one mutex: the
 * number of series is small (phases x phases, a few per kind), updates happen
 * on phase changes, and a scrape walks them once.
 */
#include "util/metrics.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const double buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                                  300, 600, 1800, 3600, 7200, 21600, 86400, 259200};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct family {
    char name[96];
    int type;
    char help[200];
} family;

typedef struct series {
    int fam;
    char labels[200];
    double value; /* counter, gauge; histogram sum */
    uint64_t count;
    uint64_t bucket[NBUCKETS];
} series;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static family fams[METRICS_MAX_FAMILIES];
static int nfams;
static series *ser;
static int nser;

/* Callers hold mu.  Not recursive, so a trylock by anyone fails while it
 * is held. */
#define ASSERT_MU_HELD() assert(pthread_mutex_trylock(&mu) == EBUSY)

static int fam_find(const char *name) {
    ASSERT_MU_HELD();
    assert(nfams >= 0 && nfams <= METRICS_MAX_FAMILIES);
    for (int i = 0; i < nfams; i++)
        if (strcmp(fams[i].name, name) == 0) return i;
    return -1;
}

void metrics_register(const char *name, int type, const char *help) {
    /* Names and types are the program's own constants: a name that does not
     * fit would be scraped as another metric's. */
    assert(type >= MT_COUNTER && type <= MT_HISTOGRAM);
    assert(strlen(name) < sizeof(fams[0].name));
    pthread_mutex_lock(&mu);
    if (fam_find(name) < 0 && nfams < METRICS_MAX_FAMILIES &&
        str_copy(fams[nfams].name, sizeof(fams[nfams].name), name)) {
        /* The help text is for people: a cut one is still help. */
        str_copy(fams[nfams].help, sizeof(fams[nfams].help), help);
        fams[nfams].type = type;
        nfams++;
    }
    pthread_mutex_unlock(&mu);
}

/* Caller holds mu.  A label set that does not fit is not recorded: cut, it
 * would render as malformed text and share a series with another. */
static series *series_get(const char *name, const char *labels) {
    ASSERT_MU_HELD();
    assert(nser >= 0 && nser <= METRICS_MAX_SERIES);
    int f = fam_find(name);
    if (f < 0 || strlen(labels) >= sizeof(ser[0].labels)) return NULL;
    for (int i = 0; i < nser; i++)
        if (ser[i].fam == f && strcmp(ser[i].labels, labels) == 0) return &ser[i];
    if (ser == NULL) {
        ser = calloc(METRICS_MAX_SERIES, sizeof(*ser));
        if (ser == NULL) return NULL;
    }
    if (nser >= METRICS_MAX_SERIES) return NULL;
    series *s = &ser[nser++];
    memset(s, 0, sizeof(*s));
    s->fam = f;
    memcpy(s->labels, labels, strlen(labels) + 1); /* fits: checked above */
    return s;
}

void metrics_inc(const char *name, const char *labels, double v) {
    pthread_mutex_lock(&mu);
    series *s = series_get(name, labels ? labels : "");
    if (s) s->value += v;
    pthread_mutex_unlock(&mu);
}

void metrics_set(const char *name, const char *labels, double v) {
    pthread_mutex_lock(&mu);
    series *s = series_get(name, labels ? labels : "");
    if (s) s->value = v;
    pthread_mutex_unlock(&mu);
}

void metrics_observe(const char *name, const char *labels, double v) {
    pthread_mutex_lock(&mu);
    series *s = series_get(name, labels ? labels : "");
    if (s) {
        s->value += v;
        s->count++;
        for (size_t b = 0; b < NBUCKETS; b++)
            if (v <= buckets[b]) s->bucket[b]++;
    }
    pthread_mutex_unlock(&mu);
}

double metrics_get(const char *name, const char *labels) {
    double v = 0;
    pthread_mutex_lock(&mu);
    int f = fam_find(name);
    for (int i = 0; f >= 0 && i < nser; i++)
        if (ser[i].fam == f && strcmp(ser[i].labels, labels ? labels : "") == 0)
            v = fams[f].type == MT_HISTOGRAM ? (double)ser[i].count : ser[i].value;
    pthread_mutex_unlock(&mu);
    return v;
}

static int render_series(sbuf *out, const family *f, const series *s) {
    ASSERT_MU_HELD();
    const char *l = s->labels;
    const char *sep = *l ? "," : "";
    int rc = 0;
    if (f->type != MT_HISTOGRAM) {
        if (*l) return sbuf_addf(out, "%s{%s} %.17g\n", f->name, l, s->value);
        return sbuf_addf(out, "%s %.17g\n", f->name, s->value);
    }
    for (size_t b = 0; b < NBUCKETS && rc == 0; b++)
        rc = sbuf_addf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", f->name, l, sep, buckets[b],
                       (unsigned long long)s->bucket[b]);
    if (rc == 0)
        rc = sbuf_addf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, l, sep,
                       (unsigned long long)s->count);
    if (rc == 0) {
        if (*l) rc = sbuf_addf(out, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", f->name, l, s->value,
                               f->name, l, (unsigned long long)s->count);
        else rc = sbuf_addf(out, "%s_sum %.17g\n%s_count %llu\n", f->name, s->value, f->name,
                            (unsigned long long)s->count);
    }
    return rc;
}

int metrics_render(sbuf *out) {
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int rc = 0;
    pthread_mutex_lock(&mu);
    for (int f = 0; f < nfams && rc == 0; f++) {
        assert(fams[f].type >= MT_COUNTER && fams[f].type <= MT_HISTOGRAM);
        rc = sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help,
                       fams[f].name, types[fams[f].type]);
        for (int i = 0; i < nser && rc == 0; i++)
            if (ser[i].fam == f) rc = render_series(out, &fams[f], &ser[i]);
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

void metrics_reset(void) {
    pthread_mutex_lock(&mu);
    nser = 0;
    pthread_mutex_unlock(&mu);
}
