/*
 * actions.h - deploy and the operator verbs on stamps, shared by the API
 * and the autoscaler (see actions.c).
 */
#ifndef STAMP_STAMP_ACTIONS_H
#define STAMP_STAMP_ACTIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/stamp_fsm.h"
#include "reconcile/ctl.h"

typedef struct stamp_deploy_req {
    const char *region, *stamp_id, *tname;
    json_t *params; /* may be NULL */
    const char *user;
    bool dry_run;
    /* The template revision to deploy (0: the template's current one); the
     * stamp records it in spec.templateRevision. */
    int64_t revision;
    /* A rollout's replacement: the stamp it replaces (spec.replaces) and the
     * front-door server it takes over once Active (spec.frontdoorServer;
     * NULL: a server of its own, named after the stamp). */
    const char *replaces;
    const char *frontdoor_server;
    /* A restore: {stamp, backup, sha256, ...} of the Deleted stamp's
     * verified backup, put back before the workloads start
     * (spec.restoreFrom).  Borrowed; may be NULL. */
    json_t *restore_from;
} stamp_deploy_req;

/* Deploy (or deploy again a Failed stamp).  name gets the stamp's name;
 * 0 with *answer (the stamp as stored, or what a dry run would store) and
 * *status (201 created, 200 deployed again). */
int stamp_deploy(ctl_ctx *c, const stamp_deploy_req *q, char *name, size_t namelen, json_t **answer,
                 int *status, serr *e);

typedef struct stamp_action_req {
    const char *name;
    const char *action; /* its word, for messages */
    int op;             /* enum stamp_op */
    bool force, skip_fleet, dry_run;
    int64_t grace_ms;
    const char *user;
} stamp_action_req;

/* One verb: 0 with *answer and *status (202, or 200 for a dry run). */
int stamp_action_run(ctl_ctx *c, const stamp_action_req *q, json_t **answer, int *status, serr *e);

/* A rollout is about to deploy `successor` to replace `name`: records it
 * in name's spec.replacedBy (idempotent; SE_CONFLICT when another
 * successor is recorded).  The old stamp keeps its front-door server until
 * the successor is Active, then leaves it to the successor. */
int stamp_mark_replaced(ctl_ctx *c, const char *name, const char *successor, const char *user,
                        serr *e);

/* kubectl's server-side dry run answer: object with dryRun, operation and
 * the transition it would start. */
json_t *stamp_dry_answer(const char *op, json_t *object, const char *from, const char *to);

#endif
