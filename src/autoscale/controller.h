/*
 * controller.h - the StampAutoscaler kind's controller: every spec.interval
 * it observes the stamps it governs (on the job pool), asks as_decide()
 * (the same function `stampctl autoscaler simulate` replays), acts through
 * the operators' own paths (stamp/actions.h) and records the decision, its
 * inputs and its reason in status.  See controller.c.
 */
#ifndef STAMP_AUTOSCALE_CONTROLLER_H
#define STAMP_AUTOSCALE_CONTROLLER_H

#include "reconcile/ctl.h"

int as_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e);
void as_metrics_register(void);

#endif
