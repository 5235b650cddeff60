/*
 * spec.h - the StampAutoscaler spec: seed 000's YAML as the contract, plus
 * the fields the seed leaves open, parsed and validated into a typed struct.
 * Every error names the field ("spec.scaleOut.triggers[1].threshold: ...").
 * Pure: no I/O, no clock, no global state; thread safe.
 *
 *   spec:
 *     template: synaxis-stamp     # the StampTemplate new stamps use
 *     regions: [westeurope, eastus]   # where it may deploy, in preference order
 *     regionMinimums: {westeurope: 1} # never scale a region below this
 *     paused: false               # evaluate and record, never act
 *     interval: 15s               # evaluation interval (1s..1h)
 *     step: 1                     # stamps added or removed per decision (1..10)
 *     scaleOut:
 *       triggers:                 # 1..16; fires when value > threshold
 *         - {metric: cpu_utilization, threshold: 70, duration: 5m}
 *         - {metric: request_latency_p99, threshold: 500ms, duration: 3m}
 *         - {metric: prometheus, query: 'sum(rate(x[1m]))', threshold: 42, duration: 1m}
 *       cooldown: 10m             # 0..24h, default 10m (the seed's)
 *       maxStamps: 10             # required, 1..1000
 *     scaleIn:
 *       triggers:                 # 1..16; holds when value < threshold
 *         - {metric: queue_depth, threshold: 0, duration: 10m}   # 0: value <= 0
 *       cooldown: 30m             # 0..24h, default 30m (the seed's)
 *       minStamps: 2              # 0..maxStamps, default 2
 *     standby:
 *       maxAge: 72h               # Ready this long -> retired (1m..90d, default 72h)
 *       scaleDown: {generalPool: 0, gpuPool: 0}   # pools in standby (0..100, default 0)
 *
 * Metrics and the units of their thresholds (as the seed writes them):
 *   cpu_utilization, memory_utilization  percent of capacity: 70 or "70%" (0..100)
 *   active_jobs                           percent of job capacity: 80 or "80%" (0..100)
 *   request_latency_p99                   seconds, written with a unit: 500ms, 1s,
 *                                         1.5s, 250us; a bare number is refused
 *   active_connections, queue_depth       a count: 1000 (0..1e9)
 *   prometheus                            the query's own unit, a plain number;
 *                                         needs `query` (PromQL, at most 1023 bytes)
 * Durations (duration, cooldown, interval, maxAge) are strings with a unit
 * ("5m", "90s", "1h30m"); trigger durations are 0..24h.
 *
 * Defaults for what may be absent:
 *   template        "" after parsing: the controller resolves it with
 *                   as_spec_resolve_template (the only StampTemplate there is;
 *                   with several, template is required).
 *   regions         none after parsing: the governed stamps are the
 *                   template's stamps in every region, and decisions use the
 *                   regions where governed stamps exist (as_regions), in
 *                   alphabetical order.
 *   regionMinimums  none (0 in every region).
 * scaleOut and scaleIn are both required, each with at least one trigger (a
 * scale-in with no triggers would hold vacuously and drain to minStamps).
 */
#ifndef STAMP_AUTOSCALE_SPEC_H
#define STAMP_AUTOSCALE_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define AS_MAX_TRIGGERS 16
#define AS_MAX_REGIONS 16
#define AS_MAX_STAMPS 1000
#define AS_MAX_STEP 10
#define AS_QUERY_MAX 1024   /* with the NUL */
#define AS_REGION_MAX 24    /* with the NUL; the longest known region has 18 characters */
#define AS_TEMPLATE_MAX 64  /* with the NUL */

typedef enum as_metric {
    AM_CPU,         /* cpu_utilization */
    AM_MEMORY,      /* memory_utilization */
    AM_LATENCY_P99, /* request_latency_p99 */
    AM_CONNECTIONS, /* active_connections */
    AM_QUEUE_DEPTH, /* queue_depth */
    AM_ACTIVE_JOBS, /* active_jobs */
    AM_PROMETHEUS,  /* prometheus (query) */
    AM_N
} as_metric;

typedef enum as_unit { AU_PERCENT, AU_SECONDS, AU_COUNT, AU_PLAIN } as_unit;
typedef enum as_dir { AS_OUT, AS_IN } as_dir;

extern const char *const as_metric_names[AM_N];
extern const char *const as_dir_names[2]; /* "scaleOut", "scaleIn" */

/* The metric for a name, or -1. */
int as_metric_parse(const char *name);
as_unit as_metric_unit(int metric);

typedef struct as_trigger {
    int metric;
    double threshold;     /* base units: percent, seconds, count */
    int64_t duration_ms;
    char query[AS_QUERY_MAX]; /* prometheus only, else "" */
} as_trigger;

typedef struct as_direction {
    int n;
    as_trigger t[AS_MAX_TRIGGERS];
    int64_t cooldown_ms;
    int limit; /* scaleOut: maxStamps; scaleIn: minStamps */
} as_direction;

typedef struct as_region_min {
    char region[AS_REGION_MAX];
    int min;
} as_region_min;

/* Large (about 40 KiB with the queries): allocate it on the heap. */
typedef struct as_spec {
    char template_name[AS_TEMPLATE_MAX]; /* "" until resolved */
    int nregions;                        /* 0: every region of the governed stamps */
    char regions[AS_MAX_REGIONS][AS_REGION_MAX];
    int nmins;
    as_region_min mins[AS_MAX_REGIONS];
    bool paused;
    int64_t interval_ms;
    int step;
    as_direction out, in;
    int64_t standby_max_age_ms;
    int general_pool, gpu_pool;
} as_spec;

/* Validates a StampAutoscaler spec (the JSON the API stores) into *out. */
int as_spec_parse(json_t *spec, as_spec *out, serr *e);

/* Fills an empty template_name with the only one of templates[0..n), or
 * checks a given one is among them.  Errors name spec.template. */
int as_spec_resolve_template(as_spec *sp, const char *const *templates, int n, serr *e);

/* The region's minimum (0 when none is set). */
int as_spec_region_min(const as_spec *sp, const char *region);

/* The direction's triggers (sp->out or sp->in). */
const as_direction *as_spec_dir(const as_spec *sp, int dir);

/* A value (or threshold) of the metric for people, in the seed's units:
 * "70%", "500ms", "1.2s", "1000", "0.25".  Returns buf. */
char *as_value_fmt(int metric, double v, char *buf, size_t len);

/* A fingerprint of a trigger (metric, threshold, duration, query): a
 * breach timer kept for one trigger is not carried over to another. */
uint64_t as_trigger_sig(const as_trigger *t);

#endif
