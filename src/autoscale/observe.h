/*
 * observe.h - one observation of one stamp for the autoscaler (I/O: the
 * runtime's processes, /proc, the replicas' /metrics, the front door), and
 * the metric values a series of observations gives.  See collect.h for
 * what each metric is.
 */
#ifndef STAMP_AUTOSCALE_OBSERVE_H
#define STAMP_AUTOSCALE_OBSERVE_H

#include <stdbool.h>
#include <stdint.h>

#include "autoscale/collect.h"
#include "reconcile/ctl.h"

enum as_metric_id {
    ASM_CPU,
    ASM_MEMORY,
    ASM_LATENCY_P99,
    ASM_CONNECTIONS,
    ASM_QUEUE_DEPTH,
    ASM_ACTIVE_JOBS,
    ASM_N
};
extern const char *const as_metric_names[ASM_N];

#define AS_LATENCY_HISTOGRAM "stamp_workload_request_duration_seconds"

typedef struct as_sample {
    int64_t mono_ms;
    /* processes */
    bool ok_proc;
    uint64_t cpu_ticks, rss_bytes;
    int64_t cpu_millis_cap, memory_cap;
    /* the workloads' /metrics, summed over replicas */
    bool ok_workload;
    int replicas, unreachable;
    bool ok_latency;
    as_hist latency;
    double connections, queue, jobs, job_capacity;
    /* the front door */
    bool ok_frontdoor;
    double fd_sessions;
    char why[200]; /* the first source that did not answer, and why */
} as_sample;

/* Observe stamp r now (blocking: scrapes with probe-timeout; run it on the
 * job pool).  Never fails as a whole: what could not be read is marked in
 * the ok_ flags and why. */
void as_observe(ctl_ctx *c, const resource *r, as_sample *out);

typedef struct as_values {
    double v[ASM_N];
    bool have[ASM_N];
    char missing[ASM_N][160]; /* why a value is absent */
} as_values;

/* Values from observations oldest first (h[n-1] the newest): CPU over the
 * last interval, latency p99 over window_ms (the trigger's duration; the
 * oldest observation within it), the rest from the newest. */
void as_values_of(const as_sample *h, int n, int64_t latency_window_ms, as_values *out);

#endif
