/*
 * ctl.h - what every controller shares: the store, the configuration, the
 * work queue, and the places on disk.  Built once by stampd; read-only
 * after start, so any worker thread may use it.
 */
#ifndef STAMP_CTL_H
#define STAMP_CTL_H

#include "core/config.h"
#include "reconcile/queue.h"
#include "store/store.h"

struct blob_store;
struct job_pool;
struct traffic;
struct runtime;
struct fleet_health;

typedef struct ctl_ctx {
    store *st;
    struct blob_store *blobs; /* diagnostics archives and model bundles */
    struct traffic *tr;       /* the front door (traffic.h) */
    struct runtime *rt;       /* where stamps' and namespaces' processes run (runtime.h) */
    struct fleet_health *fleet; /* the all-unhealthy policy's view of the fleet (fleet.h) */
    const stamp_config *cfg;
    wq *q;
    struct job_pool *jobs; /* slow work (reconcile/jobs.h) */
    char data_dir[512];
    char libexec[512]; /* stamp-workload, stamp-run */
    unsigned char token_secret[64]; /* the local HS256 key, to mint tokens */
    size_t token_secret_len;
} ctl_ctx;

/* Queue keys are "<Kind>/<name>". */
int ctl_key(char *buf, size_t len, const char *kind, const char *name);
/* A change (the API applied a spec or an operator asked for an action):
 * enqueue the key and reset its failures, so a Stalled resource gets its
 * retries again (engine.h).  0, or SE_LIMIT when the queue is full: the
 * drop is counted (stamp_workqueue_dropped_total) and logged, at most one
 * line per 10 s; the periodic resync picks a Stamp up again. */
int ctl_enqueue(ctl_ctx *c, const char *kind, const char *name);
/* A wake-up with no change behind it (resync, sweeps, the front door):
 * enqueue only; a stalled key stays stalled unless this run succeeds. */
int ctl_wake(ctl_ctx *c, const char *kind, const char *name);
#define CTL_DROPPED_METRIC "stamp_workqueue_dropped_total"

#endif
