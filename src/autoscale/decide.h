/*
 * decide.h - the StampAutoscaler's decision as a pure function: the spec,
 * the world (every stamp, its phase, its metric values) and the state kept
 * between evaluations in; the new state and a decision record out.  No I/O,
 * no clock (now is an argument), no global state; thread safe.  The
 * controller and `stampctl autoscaler simulate` call the same functions, so
 * a replay cannot drift from what the controller does.
 *
 * The rules (shared design, docs in spec.h for the fields):
 *  - A scale-out trigger breaches when the fleet value > threshold; a
 *    scale-in trigger holds when value < threshold (value <= 0 for a
 *    threshold of 0).  The fleet value is the mean over the governed Active
 *    stamps of their per-stamp values, or a fleet-wide value the world
 *    gives (a prometheus query).  A breach (hold) must be seen at every
 *    evaluation: a value that is not breaching, or missing, restarts it.
 *  - Scale out when ANY scale-out trigger has breached for its whole
 *    duration.  Scale in when EVERY scale-in trigger has held for its
 *    duration and no scale-out trigger breaches.
 *  - Missing data: a stamp with no value is left out of the mean and named
 *    ("no metric for cpu_utilization from synaxis-sea-002").  A scale-out
 *    trigger still counts on the stamps that report (one stopped replica
 *    must not hide an overload); a scale-in trigger with any value missing
 *    does not hold, so missing data always blocks scale-in.  A trigger with
 *    no value at all counts for neither.
 *  - Cooldowns: no scale-out within scaleOut.cooldown of the last one; no
 *    scale-in within scaleIn.cooldown of the last scale-in OR scale-out.  A
 *    scale-out may happen during the scale-in cooldown.
 *  - Scale-out, per step: a warm stamp first (governed, Ready, not held by a
 *    recovery, no activation under way; in a region under its minimum
 *    first, then the most loaded region, then the one Ready longest), else
 *    a deploy with the next free stamp id in a region under its minimum
 *    (largest deficit), else the most loaded region (highest mean of the
 *    first fired trigger over its Active stamps), else the region with the
 *    fewest serving stamps; ties go to spec.regions' order.  Never above
 *    maxStamps counting Active + Creating + activating + Draining.
 *  - Below the floor: fewer serving stamps (Active + Creating + activating)
 *    than minStamps, or than a region's minimum, is a scale-out with no
 *    trigger needed and no cooldown (what HPA does with minReplicas).
 *  - Scale-in, per step: drain the least loaded Active stamp (by the first
 *    scale-in trigger with per-stamp values, then the next; ties: the
 *    highest name) whose removal keeps minStamps Active, its region's
 *    minimum, and the fleet rule (>= 2 Active stamps, of every template, in
 *    >= fleet_min_regions regions; 0 turns the rule off).
 *  - A failed activation (a stamp this autoscaler activated is now Failed)
 *    is reported once (activation_failed: event/alert ActivationFailed); the
 *    next scale-out deploys a new stamp instead of activating, and its
 *    cooldown is waived (the capacity asked for never came).
 *  - Standby: a governed Ready stamp in standby longer than standby.maxAge
 *    is retired.
 *  - paused: everything is evaluated and recorded, nothing is acted on;
 *    the actions it would take show in the blocked reason.
 */
#ifndef STAMP_AUTOSCALE_DECIDE_H
#define STAMP_AUTOSCALE_DECIDE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autoscale/spec.h"
#include "core/naming.h"
#include "util/err.h"

#define AS_ID_MAX 24       /* a stamp id, with the NUL */
#define AS_MAX_RETIRE 16   /* retirements per decision */
#define AS_WORLD_MAX 4096  /* stamps in a world (every template) */

/* The Stamp phases decide() tells apart (seed 000's names). */
typedef enum as_phase {
    AP_CREATING, AP_ACTIVE, AP_DRAINING, AP_READY, AP_FAILED, AP_DELETING, AP_DELETED, AP_N
} as_phase;
extern const char *const as_phase_names[AP_N];
int as_phase_parse(const char *name); /* -1 when unknown */

typedef struct as_sample {
    bool ok;  /* false: no value (the source is down or has not reported) */
    double v; /* in the metric's base unit */
} as_sample;

/* One stamp of the world.  Every Stamp resource is given (any template,
 * any phase): the fleet rule counts every Active stamp, and next-id skips
 * every name in use.  Only governed stamps are scaled and averaged. */
typedef struct as_stamp {
    char name[STAMP_NAME_MAX + 1];
    char region[AS_REGION_MAX];
    char id[AS_ID_MAX];
    int phase;             /* as_phase */
    bool governed;         /* the autoscaler's template, in its regions */
    bool activating;       /* Ready with an activation under way */
    bool held;             /* Ready, held there by its health recovery */
    int64_t ready_since_ms; /* Ready: when its standby began (0: unknown) */
    as_sample out[AS_MAX_TRIGGERS]; /* value per scaleOut trigger */
    as_sample in[AS_MAX_TRIGGERS];  /* value per scaleIn trigger */
} as_stamp;

/* A trigger's value for the whole fleet (a prometheus query): used instead
 * of the mean of the per-stamp values when given. */
typedef struct as_fleet_sample {
    bool given;
    bool ok;
    double v;
    char why[96]; /* !ok: what failed ("prometheus: connection refused") */
} as_fleet_sample;

typedef struct as_world {
    const as_stamp *stamps;
    int n;                       /* at most AS_WORLD_MAX */
    as_fleet_sample fleet_out[AS_MAX_TRIGGERS], fleet_in[AS_MAX_TRIGGERS];
    int fleet_min_regions;       /* the fleet-min-regions config key; 0: rule off */
    const char *name_prefix;     /* new stamps' names; NULL: "synaxis" */
} as_world;

/* Sets the stamp's value of every trigger (both directions) on the metric;
 * not prometheus triggers, whose values are fleet-wide. */
void as_stamp_set(const as_spec *sp, as_stamp *s, int metric, bool ok, double v);

/* What persists between evaluations (the controller keeps it in the
 * autoscaler's status, simulate in memory).  All zero is the start. */
typedef struct as_state {
    int64_t out_since_ms[AS_MAX_TRIGGERS]; /* breaching since (0: not) */
    int64_t in_since_ms[AS_MAX_TRIGGERS];  /* holding since (0: not) */
    uint64_t out_sig[AS_MAX_TRIGGERS], in_sig[AS_MAX_TRIGGERS]; /* as_trigger_sig of their trigger */
    int64_t last_out_ms, last_in_ms;       /* last scale-out / scale-in acted on (0: never) */
    int nactivated;                        /* stamps activated, until Active or Failed */
    char activated[AS_MAX_STEP][STAMP_NAME_MAX + 1];
    bool replace;                          /* an activation failed: deploy next, no cooldown */
} as_state;

json_t *as_state_to_json(const as_state *st);
/* Reads what as_state_to_json wrote; unknown or bad input is SE_INVAL
 * (and *st is then all zero, a fresh start). */
int as_state_from_json(const json_t *j, as_state *st, serr *e);

typedef enum as_act { AA_NONE, AA_ACTIVATE, AA_DEPLOY, AA_DRAIN, AA_RETIRE, AA_N } as_act;
extern const char *const as_act_names[AA_N]; /* none, activate, deploy, drain, retire */

typedef struct as_action {
    int act;                         /* as_act */
    char stamp[STAMP_NAME_MAX + 1];  /* the stamp (a deploy: the name it will have) */
    char region[AS_REGION_MAX];
    char id[AS_ID_MAX];
} as_action;

/* Why an action that was wanted was not taken. */
typedef enum as_block {
    AB_NONE, AB_PAUSED, AB_COOLDOWN, AB_MAX_STAMPS, AB_MIN_STAMPS, AB_REGION_MIN, AB_FLEET_RULE,
    AB_MISSING, AB_NO_ROOM, AB_N
} as_block;
extern const char *const as_block_names[AB_N];

typedef enum as_want { AW_NONE, AW_OUT, AW_IN } as_want;
extern const char *const as_want_names[3]; /* none, scaleOut, scaleIn */

/* One trigger at this evaluation. */
typedef struct as_eval {
    int dir, index, metric;
    bool has_value;
    double value, threshold;
    int reporting, expected; /* Active stamps with a value, Active stamps */
    bool fleet;              /* the value is fleet-wide */
    bool breaching;          /* out: above; in: holding below */
    int64_t since_ms;        /* since when (0: not) */
    bool met;                /* ... for the trigger's whole duration */
    char missing[192];       /* "no metric for X from A, B (+3 more)" or "" */
} as_eval;

/* Large (about 10 KiB): allocate it on the heap. */
typedef struct as_decision {
    int64_t now_ms;
    bool paused;
    int want;                         /* as_want: what the triggers (or the floor) ask */
    bool floor;                       /* the scale-out restores minStamps or a region minimum */
    int nactions;                     /* to do now (none when blocked or paused) */
    as_action actions[AS_MAX_STEP];
    int nretire;
    as_action retire[AS_MAX_RETIRE];
    int block;                        /* as_block; AB_NONE when nothing wanted was refused */
    int block_dir;                    /* AS_OUT or AS_IN, with block */
    char blocked[256];                /* "scale-out blocked: maxStamps 10 reached" */
    int nevals;
    as_eval evals[2 * AS_MAX_TRIGGERS]; /* scaleOut's, then scaleIn's */
    int nfailed;                      /* activations found failed at this evaluation */
    char activation_failed[AS_MAX_STEP][STAMP_NAME_MAX + 1];
    /* Governed stamps by phase, and the count maxStamps limits. */
    int active, creating, activating, draining, ready, counted;
    int desired;                      /* serving stamps once the actions are done */
    char reason[512];                 /* why, for people */
} as_decision;

/* One evaluation.  prev may be the same object as next.  SE_INVAL when the
 * world is larger than AS_WORLD_MAX, SE_NOMEM when out of memory (the
 * reason says so); *d and *next are always filled.  Its cost grows
 * linearly with the stamps (times the triggers). */
int as_decide(const as_spec *sp, const as_world *w, int64_t now_ms, const as_state *prev, as_state *next,
              as_decision *d);

/* The regions decisions use: spec.regions, or (when absent) every region
 * of a governed stamp, alphabetically.  Returns how many (<= max). */
int as_regions(const as_spec *sp, const as_world *w, char (*out)[AS_REGION_MAX], int max);

/* The smallest stamp id ("001".."999") no stamp of the world uses in the
 * region, nor any of planned[0..nplanned).  SE_LIMIT when all are taken. */
int as_next_stamp_id(const as_world *w, const char *region, const as_action *planned, int nplanned, char *out,
                     size_t len, serr *e);

/* The region whose Active governed stamps have the highest mean of the
 * trigger (dir, index), among as_regions; "" when no region has a value. */
void as_most_loaded_region(const as_spec *sp, const as_world *w, int dir, int index, char *out, size_t len);

/* The decision as JSON (for status, describe and simulate -o json):
 * {time, paused, want, actions[], retire[], blocked{reason,why,direction},
 *  triggers[{direction,index,metric,value,threshold,breaching,since,met,
 *  duration,reporting,expected,missing}], activationFailed[], counts{},
 *  desired, reason, conditions[{type,status,reason,message}]}.
 * Conditions as HPA names them: AbleToScale (False when paused or in a
 * cooldown), ScalingActive (False when every trigger lacks a value),
 * ScalingLimited (True when maxStamps, minStamps, a region minimum or the
 * fleet rule refused what the triggers asked). */
json_t *as_decision_to_json(const as_spec *sp, const as_decision *d);

/* One line for people: "activate synaxis-weu-003: cpu_utilization 82% >
 * 70% for 5m" or "none: scale-out blocked: cooldown 4m12s left".
 * Returns the length kept (< len). */
size_t as_decision_line(const as_spec *sp, const as_decision *d, char *buf, size_t len);

#endif
