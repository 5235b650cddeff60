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
    /* A restore: the template spec the backed-up stamp ran, deployed
     * instead of the template's current one.  Borrowed; may be NULL. */
    json_t *template_spec;
    /* Create a new stamp or nothing: a stamp of the name (whatever its
     * phase, a Failed one too) is SE_EXISTS naming it, never a redeploy.
     * A rollout's replacement and a restore ask for this. */
    bool create_only;
    /* The stamp is wanted in standby (spec.desired standby): once its
     * health checks pass it goes Active and at once Draining -> Ready
     * without being taken into the front door (a successor takes over a
     * shared server only while its desired is active).  A rollout's
     * replacement of a Ready stamp; a redeploy keeps it standby too. */
    bool standby;
} stamp_deploy_req;

/* Deploy (or deploy again a Failed stamp, unless create_only).  name gets
 * the stamp's name; 0 with *answer (the stamp as stored, or what a dry run
 * would store) and *status (201 created, 200 deployed again). */
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
 * successor is recorded).  With replace_stale, a recorded successor that
 * is stale (absent from the store, Deleting or Deleted, asked to be
 * deleted, or not recording spec.replaces = name) is overwritten, checked
 * and written in one optimistic update of name; a live one is still
 * SE_CONFLICT.  The old stamp keeps its front-door server until the
 * successor is Active, then leaves it to the successor. */
int stamp_mark_replaced(ctl_ctx *c, const char *name, const char *successor, const char *user,
                        bool replace_stale, serr *e);

/* Whether stamp `succ` (as stored) is a live successor of `name`: its
 * spec.replaces is name and it is neither Deleting nor Deleted nor asked
 * to be deleted. */
bool stamp_successor_live(const resource *succ, const char *name);

/* Restore from backup (restore.c): deploys stamp `as` from the verified
 * backup of the Deleted stamp `name` (same region, template spec and
 * parameters), after the phase table (restore is allowed in Deleted only),
 * the archive's retention and the SHA-256 of every file of the backup
 * against its manifest; a refusal names why (the file, for a failed hash)
 * and creates nothing.  Blocks while it hashes: call it on the job pool.
 * 0 with *answer and *status as stamp_deploy (201). */
typedef struct stamp_restore_req {
    const char *name;   /* the Deleted stamp */
    const char *as;     /* the new stamp's name (required: see restore.c) */
    const char *backup; /* one of its backup ids; NULL: the retirement's */
    const char *user;
    bool dry_run;
} stamp_restore_req;
int stamp_restore(ctl_ctx *c, const stamp_restore_req *q, json_t **answer, int *status, serr *e);

/* kubectl's server-side dry run answer: object with dryRun, operation and
 * the transition it would start. */
json_t *stamp_dry_answer(const char *op, json_t *object, const char *from, const char *to);

#endif
