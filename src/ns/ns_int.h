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
/* The namespace's lock: one of a fixed set, chosen by the name's hash. */
pthread_mutex_t *nsi_lock_of(const char *name);
/* The mirror of the phase in the "status" annotation (seed 004). */
void nsi_set_status_annotation(resource *r, int phase);
/* Into phase reaping, due at once; persisted with its event. */
int nsi_to_reaping(ctl_ctx *c, resource *r, const char *reason, const char *why, serr *e);

/* ns_reap.c */
/* One attempt of the reap of r, which is in phase reaping; the caller holds
 * the namespace's lock.  0 when reaped; SE_UNAVAIL (with *retry_ms) when it
 * must be tried again; another error when its state could not be written. */
int nsi_reap_step(ctl_ctx *c, resource *r, const char *user, int64_t *retry_ms, serr *e);

#endif
