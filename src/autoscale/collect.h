/*
 * collect.h - the autoscaler's measurements of one stamp, all real:
 *
 *   cpu_utilization     % of the stamp's declared CPU used by its
 *                       processes (utime+stime from /proc, between two
 *                       samples);
 *   memory_utilization  % of its declared memory (resident set sizes);
 *   request_latency_p99 seconds, from the workload's latency histogram
 *                       merged across replicas, over a window (the
 *                       difference of two cumulative samples);
 *   active_connections  the front door's sessions plus the workload's own;
 *   queue_depth         jobs waiting in the workload;
 *   active_jobs         % of the workload's job capacity in use.
 *
 * Histograms are Prometheus text: NAME_bucket{...,le="X"} lines, summed
 * over every other label (replicas, paths).  Pure functions here; the
 * sampler (collect.c) keeps a bounded history per stamp.
 */
#ifndef STAMP_AUTOSCALE_COLLECT_H
#define STAMP_AUTOSCALE_COLLECT_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define AS_HIST_MAX 40

typedef struct as_hist {
    int n;                      /* buckets, le ascending, the last +Inf */
    double le[AS_HIST_MAX];
    double count[AS_HIST_MAX];  /* cumulative */
} as_hist;

/* The histogram NAME (NAME_bucket lines) in a /metrics body, summed over
 * label sets.  SE_NOTFOUND when absent, SE_LIMIT past AS_HIST_MAX bounds. */
int as_hist_parse(const char *body, const char *name, as_hist *out, serr *e);
/* acc += h (same bounds; a bucket acc lacks is added in order). */
int as_hist_add(as_hist *acc, const as_hist *h);
/* out = now - before, for a window; a counter that went down (a replica
 * restarted) counts from zero. */
void as_hist_delta(const as_hist *now, const as_hist *before, as_hist *out);
/* The q-quantile (0..1) as Prometheus's histogram_quantile computes it
 * (linear within the bucket); -1 when the window saw no observation. */
double as_hist_quantile(const as_hist *h, double q);

/* CPU ticks (utime+stime) and resident bytes of the processes with these
 * pids (gone ones are skipped). */
int as_proc_usage(const int *pids, int n, uint64_t *ticks, uint64_t *rss_bytes);

#endif
