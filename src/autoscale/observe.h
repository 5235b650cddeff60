/*
 * observe.h - one observation of one stamp for the autoscaler (I/O: the
 * runtime's processes, /proc, the replicas' /metrics, the front door), and
 * the metric values (as_metric, spec.h) a series of observations gives.
 * See collect.h for what each metric is.
 */
#ifndef STAMP_AUTOSCALE_OBSERVE_H
#define STAMP_AUTOSCALE_OBSERVE_H

#include <stdbool.h>
#include <stdint.h>

#include "autoscale/collect.h"
#include "autoscale/spec.h"
#include "reconcile/ctl.h"

#define AS_LATENCY_HISTOGRAM "stamp_workload_request_duration_seconds"

typedef struct as_observation {
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
} as_observation;

/* Observe stamp r now (blocking: scrapes with probe-timeout; run it on the
 * job pool).  Never fails as a whole: what could not be read is marked in
 * the ok_ flags and why. */
void as_observe(ctl_ctx *c, const resource *r, as_observation *out);

typedef struct as_obs_values {
    double v[AM_N];
    bool have[AM_N];
    char missing[AM_N][160]; /* why a value is absent */
} as_obs_values;

/* Values from observations oldest first (h[n-1] the newest): CPU over the
 * last interval, latency p99 over window_ms (the trigger's duration; the
 * oldest observation within it), the rest from the newest. */
void as_obs_values_of(const as_observation *h, int n, int64_t latency_window_ms, as_obs_values *out);

#endif
