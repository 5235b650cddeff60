/*
 * ops.h - in-place operations on an Active stamp: pool scaling and
 * application updates (see ops.c; the controller's side is update.c).
 */
#ifndef STAMP_STAMP_OPS_H
#define STAMP_STAMP_OPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "reconcile/ctl.h"

typedef struct stamp_scale_req {
    const char *name;
    const char *pool;  /* system, general, gpu */
    int64_t replicas;  /* per process step of the pool */
    const char *user;
    bool dry_run;
} stamp_scale_req;

/* 0 with *answer (the stamp as stored) and *status 202 (200: dry run). */
int stamp_scale(ctl_ctx *c, const stamp_scale_req *q, json_t **answer, int *status, serr *e);

typedef struct stamp_update_req {
    const char *name;
    json_t *set;      /* parameters to change (null removes one); borrowed, may be NULL */
    int64_t revision; /* a template revision whose application part to run; 0: keep */
    bool latest;      /* the template's current revision */
    const char *user;
    bool dry_run;
} stamp_update_req;

/* Refused (SE_PHASE) when the change touches infrastructure, naming what;
 * 200 "unchanged" when nothing changes; else 202. */
int stamp_update(ctl_ctx *c, const stamp_update_req *q, json_t **answer, int *status, serr *e);

#endif
