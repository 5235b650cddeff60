/*
 * phase.h - the one function through which every phase change of every kind
 * goes: it checks the transition against the kind's table, writes the new
 * phase (with phaseSince, message and the previous phase) into status,
 * persists the resource and its event in one transaction (optimistic
 * concurrency: a stale resource gets SE_CONFLICT and nothing changes), and
 * counts the transition and the time spent in the old phase.  It is the only
 * writer of an event's from and to, which metrics and watches read.
 */
#ifndef STAMP_PHASE_H
#define STAMP_PHASE_H

#include "core/fsm.h"
#include "reconcile/ctl.h"

/* Current phase of r per the table, -1 when unset/unknown. */
int phase_of(const fsm_def *d, const resource *r);
/* ms since the current phase began (0 when unknown). */
int64_t phase_age_ms(const resource *r);

/* reason: CamelCase event reason; message: free text appended to
 * "Creating -> Active: <trigger>". */
int phase_change(ctl_ctx *c, const fsm_def *d, resource *r, int to, const char *reason,
                 const char *message, serr *e);

/* Initial phase for a new resource (status.phase set, no transition). */
void phase_init(const fsm_def *d, resource *r, int phase);

#endif
