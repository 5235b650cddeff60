/*
 * stamp_ctl.h - the Stamp controller: one level-triggered, idempotent
 * reconcile of one stamp (see stamp_ctl.c for the phase by phase logic).
 */
#ifndef STAMP_STAMP_CTL_H
#define STAMP_STAMP_CTL_H

#include "reconcile/ctl.h"

/* Reconcile stamp `name`.  Returns 0 and sets *requeue_ms (-1: nothing to
 * do until something changes), SE_CONFLICT when the stamp changed under it
 * (requeue now), or another error (requeue with backoff). */
int stamp_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e);

/* Register the stamp_* metric families. */
void stamp_metrics_register(void);

/* Directories of a stamp under the data dir. */
int stamp_dir(const ctl_ctx *c, const char *name, const char *sub, char *buf, size_t len);

#endif
