/*
 * revisions.h - the specs of a StampTemplate's revisions (its generation is
 * its revision).  The contract of issue 13 (notes/i13-design.md), owned by
 * the engineer "revisions".
 *
 * STAND-IN (branch "rollout" only): this version knows only the current
 * revision; the real one reads the kept revisions from the template's
 * status.revisions.  On merge, take the "revisions" branch's files.
 */
#ifndef STAMP_STAMP_REVISIONS_H
#define STAMP_STAMP_REVISIONS_H

#include <jansson.h>
#include <stdint.h>

#include "reconcile/ctl.h"

/* The spec of revision rev of template tname (0: the current one) into
 * *spec_out (owned by the caller), its number into *rev_out; SE_NOTFOUND
 * naming the revisions kept when it is absent. */
int stamp_template_revision(ctl_ctx *c, const char *tname, int64_t rev, json_t **spec_out,
                            int64_t *rev_out, serr *e);

#endif
