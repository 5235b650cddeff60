/*
 * ns_int.h - what the Namespace kind's own files share and nobody else
 * uses: ns_kind.c (the kind), ns_reap.c (one reap), ns_reaper.c (the
 * controller, sweeps and retention).
 */
#ifndef STAMP_NS_INT_H
#define STAMP_NS_INT_H

#include <pthread.h>

#include "ns/ns.h"

#define NS_KIND "Namespace"

/* ns_kind.c */
/* The mirror of the phase in the "status" annotation (seed 004). */
void nsi_set_status_annotation(resource *r, int phase);
/* Into phase reaping, due at once; persisted with its event.  The caller
 * holds the namespace's lock. */
int nsi_to_reaping(ctl_ctx *c, resource *r, const char *reason, const char *why, serr *e);

/* ns_reap.c */
/* The right to reap name, waiting at most wait_ms (< 0: as long as it
 * takes) for another reap of it to end; false when it did not. */
bool nsi_reap_claim(const char *name, int64_t wait_ms);
void nsi_reap_release(const char *name);
/* One attempt of the reap of r, which is in phase reaping; the caller has
 * claimed it (nsi_reap_claim) and does not hold its lock.  0 when reaped;
 * SE_UNAVAIL (with *retry_ms) when it must be tried again; another error
 * when its state could not be written. */
int nsi_reap_step(ctl_ctx *c, resource *r, const char *user, int64_t *retry_ms, serr *e);

#endif
