/*
 * rollout.h - the StampRollout kind: blue-green rotation of a template's
 * stamps to a revision (issue 13, item 5), as Cluster API's
 * MachineDeployment rolling update or EC2's instance refresh do it, at the
 * granularity of whole stamps behind the front door.
 *
 * For each Active or Ready stamp of the template that does not run the
 * revision, a replacement is deployed in the same region (a new stamp id,
 * spec.replaces = the old stamp, spec.frontdoorServer = the old stamp's
 * server), the rollout waits for it to be Active and healthy, then retires
 * the old stamp through the operators' own delete (it drains first; the
 * fleet rule applies).  A Ready (standby) stamp is replaced by a new stamp
 * deployed wanting standby (it goes to Ready without serving), waited for
 * Ready, then the old one is retired.
 *
 * Spec (the API writes it; POST /v1/rollouts):
 *   template        the StampTemplate
 *   toRevision      the revision to run (the template's generation)
 *   maxSurge        replacements in flight at once (1..10, default 1)
 *   maxUnavailable  old stamps that may leave before their replacement is
 *                   Active (0..10, default 0): serving stamps of the
 *                   template never fall below their number at the start
 *                   minus this
 *   timeout         how long a replacement may take to be Active (default
 *                   35m: past the stamp's own Creating limit)
 *   paused          nothing new is started (deploy, drain, retire); what
 *                   runs is watched
 *   resumes         bumped by resume: a Failed rollout tries its failed
 *                   replacements again, in place (never a second one)
 *   aborted         the rollout stops for good where it is
 *
 * Status (the controller writes it): phase Progressing | Paused | Failed |
 * Complete | Aborted, message, baselineServing, items [{old, region,
 * standby, replacement, phase Pending | Deploying | WaitingActive |
 * Draining | Retiring | Done | Failed, message, sinceMs, deployedMs}].
 *
 * Crash safety: a replacement's name is written to status (and to the old
 * stamp's spec.replacedBy, stamp_mark_replaced) BEFORE it is deployed
 * (create-only); a recorded replacement that exists and is a live
 * successor (spec.replaces = the old stamp, not leaving) is adopted, never
 * deployed twice; one gone or leaving gives way to a new name.
 * Drains and retirements are checked against the old stamp's spec before
 * they are asked for, so asking twice cannot happen either.
 *
 * Threading: the engine runs one reconcile of a rollout at a time; the API
 * functions only write spec, through the store's optimistic updates.
 */
#ifndef STAMP_ROLLOUT_ROLLOUT_H
#define STAMP_ROLLOUT_ROLLOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "reconcile/ctl.h"

#define RO_KIND "StampRollout"
#define RO_MAX_SURGE 10
#define RO_MAX_ITEMS 256

typedef struct ro_spec {
    char template_name[64];
    int64_t to_revision;
    int max_surge, max_unavailable;
    int64_t timeout_ms;
    bool paused, aborted;
    int64_t resumes;
} ro_spec;

/* Validates a StampRollout spec; errors name the field. */
int ro_spec_parse(json_t *spec, ro_spec *out, serr *e);

/* A rollout in this phase still owns its template's fleet (not Complete,
 * not Aborted; a Failed or Paused one does: it resumes). */
bool ro_phase_running(const char *phase);

/* The running rollout of template tname, if any: 1 with its name in name,
 * 0 when there is none, or an error. */
int ro_running_for(ctl_ctx *c, const char *tname, char *name, size_t len, serr *e);

/* POST /v1/rollouts: validates body {template, toRevision, maxSurge,
 * maxUnavailable, timeout, name}, refuses a second running rollout of the
 * template (SE_CONFLICT naming it), stores the rollout and wakes it and the
 * autoscalers.  0 with *answer (the rollout) and its name in name. */
int ro_create(ctl_ctx *c, json_t *body, const char *user, char *name, size_t namelen,
              json_t **answer, serr *e);

/* pause, resume or abort: 0 with *answer. */
int ro_action(ctl_ctx *c, const char *name, const char *action, const char *user, json_t **answer,
              serr *e);

/* Removes the record of a finished (Complete or Aborted) rollout. */
int ro_delete(ctl_ctx *c, const char *name, json_t **answer, serr *e);

/* The controller (engine.h). */
int ro_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e);

#endif
