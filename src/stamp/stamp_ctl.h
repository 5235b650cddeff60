/*
 * stamp_ctl.h - the Stamp controller: one level-triggered, idempotent
 * reconcile of one stamp (src/stamp/internal.h says which file decides each phase).
 */
#ifndef STAMP_STAMP_CTL_H
#define STAMP_STAMP_CTL_H

#include <jansson.h>

#include "reconcile/ctl.h"

/* Reconcile stamp `name`.  Returns 0 and sets *requeue_ms (-1: nothing to
 * do until something changes), SE_CONFLICT when the stamp changed under it
 * (requeue now), or another error (requeue with backoff). */
int stamp_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e);

/* What `stampctl health` shows: every check with its live result. */
int stamp_health_json(ctl_ctx *c, const char *name, json_t **out, serr *e);
/* What `stampctl metrics` shows: transitions, time in phase, drain and
 * activation durations over the last period_ms, and the front door's figures. */
int stamp_metrics_json(ctl_ctx *c, const char *name, int64_t period_ms, json_t **out, serr *e);

/* Step logs (the output of exec steps' create and delete commands), in
 * every phase: from the stamp's directory, or from its archive once it is
 * Deleted.  stamp_step_logs_json lists them, newest last:
 * {stamp, items: [{step, run, command, bytes, modified}]}.  stamp_step_log
 * reads the last `tail` bytes of one run's log (run NULL: the step's
 * latest); SE_NOTFOUND when the step has no log. */
int stamp_step_logs_json(ctl_ctx *c, const char *name, json_t **out, serr *e);
int stamp_step_log(ctl_ctx *c, const char *name, const char *step, const char *run, size_t tail,
                   char **data, size_t *len, serr *e);

/* What a stamp can carry and where its workloads report: the CPU and
 * memory its template declares for its process steps (at full scale), and
 * the metrics addresses of its replicas. */
#define STAMP_CAP_PORTS 128
typedef struct stamp_capacity_view {
    int64_t cpu_millis;
    int64_t memory_bytes;
    int nports;
    int metrics_ports[STAMP_CAP_PORTS];
    char metrics_path[256];
} stamp_capacity_view;
int stamp_capacity(ctl_ctx *c, const resource *r, stamp_capacity_view *out, serr *e);

/* Register the stamp_* metric families. */
void stamp_metrics_register(void);

/* The front-door server a stamp serves through: spec.frontdoorServer (a
 * rollout's replacement takes over its predecessor's), else its name. */
const char *stamp_frontdoor_server(const resource *r);

/* Directories of a stamp under the data dir. */
int stamp_dir(const ctl_ctx *c, const char *name, const char *sub, char *buf, size_t len);

#endif
