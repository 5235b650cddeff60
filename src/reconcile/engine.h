/*
 * engine.h - the reconcile workers: N threads that take keys from the work
 * queue, run the controller registered for the key's kind, and requeue as
 * it answers.  A resync enqueues every resource of the kinds that ask for
 * it periodically, so nothing depends on a wake-up having been delivered.
 *
 * The engine owns retries (seed 003).  A controller returns 0 and answers
 * in *requeue_ms:
 *   CTL_DONE (-1)     nothing to do until something changes;
 *   >= 0              look again after that many ms;
 *   CTL_BACKOFF (-2)  look again after the key's backoff delay.  Counts
 *                     toward the delay, never toward Stalled: for a
 *                     controller whose domain counts its own attempts.
 * Any answer of a successful reconcile forgets the key's failures (which
 * frees its slot in the queue's bound) except CTL_BACKOFF.
 *
 * Or it returns an error, handled by its category (one table, engine.c):
 *   conflict (SE_CONFLICT)   someone wrote meanwhile: requeue now, uncounted;
 *   configuration (SE_INVAL, SE_TOOBIG, SE_PHASE, SE_UNAUTH, SE_FORBIDDEN,
 *     SE_METHOD)             retrying cannot help: Stalled at once;
 *   transient (the rest)     backoff (backoff-initial, -factor, -max); after
 *                            backoff-retries failures in a row, Stalled
 *                            (backoff-retries 0: retry for ever).
 *
 * Stalled: the engine writes status.conditions[type=Stalled] (status "True",
 * reason, message = the last error, lastTransitionTime, observedGeneration)
 * through the store, retrying a few times on a conflict, with a Warning
 * event, and stops requeueing the key with backoff.  What runs it again:
 *   - a change: the API's ctl_enqueue (apply, actions, an operator's retry)
 *     runs it at once and resets its failures, so it gets its retries again;
 *   - the periodic resync, at most once per backoff-max (it skips the key
 *     until then), so an outage longer than the retries heals by itself
 *     (a Deleting stamp allows no operator action) and nothing hot-loops;
 *     after a restart of stampd, at once (a restart is a retry);
 *   - a wake-up without a change (ctl_wake: sweeps, the front door).
 * A run of a stalled key that fails again keeps it stalled, is not
 * requeued, and writes no new event (only a changed message).  The next
 * successful reconcile sets Stalled to "False" (reason Reconciled).
 *
 * Threading: engine_register before engine_start only; the table is read
 * without a lock by the workers afterwards.
 */
#ifndef STAMP_ENGINE_H
#define STAMP_ENGINE_H

#include <stdbool.h>

#include "reconcile/ctl.h"

#define CTL_DONE (-1)
#define CTL_BACKOFF (-2)

typedef struct engine engine;

/* A controller for one kind. */
typedef int (*reconcile_fn)(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e);

/* Register the controller of kind; resync: enqueued by engine_resync.
 * SE_EXISTS if kind has one, SE_LIMIT past ENGINE_MAX_KINDS. */
#define ENGINE_MAX_KINDS 16
int engine_register(const char *kind, reconcile_fn fn, bool resync);
/* Forget every registration (tests). */
void engine_unregister_all(void);
void engine_metrics_register(void);

int engine_start(ctl_ctx *c, int workers, engine **out, serr *e);
/* Enqueue every resource of every kind registered with resync; stalled
 * ones at most once per backoff-max (see above). */
void engine_resync(engine *en);
void engine_stop(engine *en);

#endif
