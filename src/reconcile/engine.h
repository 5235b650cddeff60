/*
 * engine.h - the reconcile workers: N threads that take keys from the work
 * queue, run the controller of the key's kind, and requeue as it answers
 * (after a delay, now on a conflict, or with backoff on an error).  A resync
 * enqueues every resource periodically, so nothing depends on a wake-up
 * having been delivered.
 */
#ifndef STAMP_ENGINE_H
#define STAMP_ENGINE_H

#include "reconcile/ctl.h"

typedef struct engine engine;

/* A controller for one kind. */
typedef int (*reconcile_fn)(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e);

int engine_start(ctl_ctx *c, int workers, engine **out, serr *e);
/* Enqueue every resource of every registered kind. */
void engine_resync(engine *en);
void engine_stop(engine *en);

#endif
