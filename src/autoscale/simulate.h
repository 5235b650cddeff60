/*
 * simulate.h - what-if replay of a StampAutoscaler against a metric trace:
 * `stampctl autoscaler simulate`.  Each evaluation tick (spec.interval)
 * calls as_decide, the function the controller calls, on a model fleet,
 * and applies what it decides to the model.  Time is compressed: ticks are
 * iterated, nothing waits (the CLI may pace them with --speed).  Pure but
 * for sim_trace_load, which reads the trace file.
 *
 * The trace (CSV, one row a line; '#' starts a comment; an optional header
 * line "t,metric,value[,stamp]"):
 *     t,metric,value[,stamp]
 *   t       seconds from the start (a number, rows in time order)
 *   metric  a trigger metric (cpu_utilization, ..., prometheus)
 *   value   in the metric's base unit (percent, seconds, count, or the
 *           query's unit); empty or "missing": the source is down from t on
 *   stamp   optional: the value of that one stamp, as written, from t on
 *           (overrides the fleet-wide value for it); without it the value
 *           is fleet-wide.
 * A value holds until the next row of the same metric (and stamp).  The
 * replay runs from t=0 to the last row's t.
 *
 * The model:
 *  - The fleet starts from `initial`: "westeurope:2,eastus:1,ready:1" is
 *    two Active stamps in westeurope, one in eastus, and one warm Ready
 *    stamp in the first region of spec.regions (or of the list);
 *    "eastus:ready:2" puts Ready stamps in a named region.  Ids count from
 *    001 in each region.  Without it: minStamps Active stamps spread
 *    round-robin over spec.regions.  At least one stamp must be Active.
 *  - A fleet-wide value is the demand as the initial fleet (n0 Active
 *    stamps) shows it.  Load spreads evenly over the Active stamps: with n
 *    Active, each shows v * n0 / n for cpu_utilization, memory_utilization
 *    and active_jobs (capped at 100%), active_connections and queue_depth.
 *    request_latency_p99 and prometheus values are used as written (the
 *    model does not guess how latency falls with capacity).
 *  - An activation takes `warm_ms`, a deploy `cold_ms`, a drain `drain_ms`;
 *    meanwhile the stamp counts toward maxStamps but carries no load.  A
 *    retired stamp is gone (its id stays taken).  Nothing fails.
 *  - The fleet rule counts the model's Active stamps (fleet_min_regions).
 */
#ifndef STAMP_AUTOSCALE_SIMULATE_H
#define STAMP_AUTOSCALE_SIMULATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autoscale/decide.h"
#include "autoscale/spec.h"
#include "util/err.h"

#define SIM_TRACE_MAX_BYTES (16u << 20)
#define SIM_TRACE_MAX_ROWS 200000
#define SIM_MAX_TICKS 2000000         /* about a year at 15s */
#define SIM_EPOCH_MS 1767225600000LL  /* t=0 is 2026-01-01T00:00:00Z */
#define SIM_EVENTS_MAX 16
#define SIM_WARM_MS 90000       /* seed 000: warm standby 1-2 min */
#define SIM_COLD_MS (7 * 60000) /* seed 000: cold start 5-10 min */
#define SIM_DRAIN_MS 60000

typedef struct sim_trace sim_trace;

/* Parses trace text; errors name the line ("trace line 12: ..."). */
int sim_trace_parse(const char *text, size_t len, sim_trace **out, serr *e);
/* Reads and parses a trace file (at most SIM_TRACE_MAX_BYTES). */
int sim_trace_load(const char *path, sim_trace **out, serr *e);
void sim_trace_free(sim_trace *t); /* accepts NULL */
int64_t sim_trace_end_ms(const sim_trace *t);

typedef struct sim_opts {
    const char *initial;     /* NULL: minStamps Active over spec.regions */
    int64_t warm_ms;         /* 0: SIM_WARM_MS */
    int64_t cold_ms;         /* 0: SIM_COLD_MS */
    int64_t drain_ms;        /* 0: SIM_DRAIN_MS */
    int fleet_min_regions;   /* < 0: 2 (stampd's default) */
    const char *name_prefix; /* NULL: "synaxis" */
} sim_opts;

typedef struct sim sim;

/* The spec is copied; the trace is borrowed and must outlive the sim. */
int sim_new(const as_spec *sp, const sim_trace *tr, const sim_opts *o, sim **out, serr *e);
void sim_free(sim *s); /* accepts NULL */

/* One tick.  Returns 1 when a tick ran (and *tick describes it, valid
 * until the next call), 0 when the trace is over. */
typedef struct sim_tick {
    int64_t t_ms;                  /* from the start */
    const as_decision *d;
    bool decided;                  /* the decision is news: an action, a failed activation, or a
                                    * block by another rule than the tick before */
    bool notable;                  /* decided, or an event */
    int nevents;                   /* the model's transitions at this tick */
    char events[SIM_EVENTS_MAX][160];
} sim_tick;
int sim_step(sim *s, sim_tick *tick);

/* The model fleet now: [{name, region, stampId, phase, activating}]. */
json_t *sim_fleet_json(const sim *s);

/* The summary so far:
 * {durationS, evaluations, stampHours{total,active,standby,starting,draining},
 *  warmActivations, coldDeploys, drains, retirements, peakCounted,
 *  blocked{Rule: evaluations}, overThreshold[{metric,threshold,minutes}],
 *  final{active,ready,creating,draining}} */
json_t *sim_summary_json(const sim *s);

#endif
