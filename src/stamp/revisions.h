/*
 * revisions.h - StampTemplate revisions (issue 13).  A template's
 * generation is its revision: it grows by one with every change of its
 * spec.  Applying a changed spec keeps the revisions before it in the
 * template's status.revisions, [{revision, spec, appliedAt, appliedBy}]
 * oldest first, the current one last, written in the same store write as
 * the spec (one transaction: a crash never leaves a spec without its
 * revision).  status.revision is the current one.
 *
 * Bounded: the newest STAMP_REVISIONS_KEEP, plus older ones a stamp not
 * yet Deleted records (spec.templateRevision or status.templateRevision),
 * and never more than STAMP_REVISIONS_MAX in all (beyond that the oldest
 * go even if a stamp records them: the stamp keeps its own copy of the
 * spec in spec.templateSpec, so it runs on regardless).
 *
 * A stamp records the revision it was deployed from in
 * spec.templateRevision (stamp_deploy).
 */
#ifndef STAMP_STAMP_REVISIONS_H
#define STAMP_STAMP_REVISIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "reconcile/ctl.h"
#include "store/store.h"

#define STAMP_REVISIONS_KEEP 10
#define STAMP_REVISIONS_MAX 32

/* The spec of template tname's revision rev (0: the current one): *spec_out
 * a new reference, *rev_out the revision.  SE_NOTFOUND naming the
 * revisions kept when the template has no such revision (or the template
 * does not exist). */
int stamp_template_revision(ctl_ctx *c, const char *tname, int64_t rev, json_t **spec_out,
                            int64_t *rev_out, serr *e);

/* Called by apply before it writes new_spec into the template r (as read
 * from the store; created: r is new, not stored yet): records the revision
 * new_spec becomes in r->status (the caller's store write then makes it
 * durable with the spec).  Nothing when the spec is unchanged. */
int stamp_template_revisions_apply(ctl_ctx *c, resource *r, json_t *new_spec, bool created,
                                   const char *user, serr *e);

/* GET /v1/templates/{name}/revisions: {kind: StampTemplateRevisionList,
 * template, current, items: [{revision, current, appliedAt, appliedBy,
 * stamps, spec}]} newest first; stamps counts the stamps not Deleted that
 * run (or are deployed from) each revision. */
int stamp_template_revisions_list(ctl_ctx *c, const char *tname, json_t **out, serr *e);

#endif
