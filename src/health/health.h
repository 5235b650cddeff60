/*
 * health.h - StampHealthCheck (seed 000): what to check, and the results.
 *
 * A StampHealthCheck lists checks and a recovery policy:
 *
 *   checks:
 *     - name: application         # http: GET endpoint on every replica that
 *       endpoint: /health         #   has a health port; expectedStatus (200)
 *       interval: 30s
 *       timeout: 10s
 *       healthyThreshold: 2       # consecutive passes to count as passing
 *       unhealthyThreshold: 3     # consecutive failures to count as failing
 *     - name: port                # tcp: a connection to the same ports
 *       type: tcp
 *     - name: migrations          # exec: /bin/sh -c command, exit 0 passes,
 *       command: ./check.sh       #   the stamp's variables in its environment
 *     - name: data                # threshold: figures the stamp reports on
 *       checks:                   #   its /metrics (the worst replica counts);
 *         - stamp_workload_data_latency_seconds < 10ms
 *     - name: kubernetes          # process: no type-specific field means
 *                                 #   "every replica of the stamp is running"
 *   recovery:
 *     enabled: true
 *     maxRetries: 3
 *     action: redeploy            # or drain, alert
 *
 * The type is inferred from the fields (endpoint: http, command: exec,
 * checks: threshold, none: process) or given with `type`.  A template names
 * its StampHealthCheck with `healthCheck: NAME`; without one, a stamp gets
 * the default: an http check of the template's healthPath every
 * health-interval, failing after health-unhealthy-threshold failures,
 * recovered by redeploy.
 *
 * Results live in memory (a restart of stampd starts counting again) in a
 * bounded table keyed by stamp and check; the transitions they cause are
 * persisted by the Stamp controller.  Thread safe.
 */
#ifndef STAMP_HEALTH_H
#define STAMP_HEALTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "util/err.h"

#define HC_MAX_CHECKS 16
#define HC_MAX_EXPRS 8
#define HC_NAME_MAX 64

enum hc_type { HC_HTTP, HC_TCP, HC_EXEC, HC_THRESHOLD, HC_PROCESS, HC_NTYPES };
enum hc_action { HA_REDEPLOY, HA_DRAIN, HA_ALERT };
enum hc_state { HS_UNKNOWN, HS_PASSING, HS_FAILING };
enum hc_op { OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ, OP_NE };

extern const char *const hc_type_names[HC_NTYPES];
extern const char *const hc_action_names[3];
extern const char *const hc_state_names[3];

typedef struct hc_expr {
    char metric[128];
    int op;
    double value;     /* in the metric's unit (seconds for *_seconds) */
    char text[192];   /* as written */
} hc_expr;

typedef struct hc_check {
    char name[HC_NAME_MAX];
    int type;
    char path[256];        /* http */
    int expect_status;     /* http */
    char command[1024];    /* exec */
    int nexprs;            /* threshold */
    hc_expr exprs[HC_MAX_EXPRS];
    int64_t interval_ms, timeout_ms;
    int healthy_threshold, unhealthy_threshold;
} hc_check;

typedef struct hc_set {
    char source[HC_NAME_MAX + 32]; /* "StampHealthCheck/NAME" or "default" */
    int n;
    hc_check checks[HC_MAX_CHECKS];
    bool recovery;
    int max_retries;
    int action;
} hc_set;

/* Validates a StampHealthCheck spec, naming the offending field. */
int hc_parse(json_t *spec, hc_set *out, serr *e);
void hc_default(const stamp_config *cfg, const char *health_path, hc_set *out);

/* "name OP number[unit]" with OP one of < <= > >= == != and unit ns, us,
 * ms, s (a time is converted to the metric's unit: seconds when the name
 * ends in _seconds, else milliseconds). */
int hc_expr_parse(const char *text, hc_expr *x, serr *e);
bool hc_expr_holds(const hc_expr *x, double v);

/* Results. */
typedef struct hc_result {
    int state;
    int passes, fails;     /* consecutive */
    int64_t latency_ms;
    int64_t last_ms;       /* wall clock of the last run, 0 = never */
    int64_t last_mono;     /* mono_ms() of the last run, for waits (a step of the wall clock moves none) */
    int64_t runs;
    char last_error[256];
} hc_result;

/* How long until the check is due (0 = now). */
int64_t hc_due_in(const char *stamp, const hc_check *c);
/* Records a run; returns the check's state afterwards. */
int hc_record(const char *stamp, const hc_check *c, bool ok, int64_t latency_ms, const char *err);
bool hc_get(const char *stamp, const char *check, hc_result *out);
/* Forget the counts of a stamp (after a redeploy, or when it is gone). */
/* hc_record of a probe that started at started_mono (mono_ms): dropped
 * (-1) when the stamp's results were reset after it started. */
int hc_record_since(const char *stamp, const hc_check *c, int64_t started_mono, bool ok,
                    int64_t latency_ms, const char *err);
void hc_reset(const char *stamp);
/* {"checks":[{name,type,state,passes,fails,latencyMs,lastError,lastTime,runs}]} */
json_t *hc_snapshot(const char *stamp, const hc_set *set);

#endif
