/*
 * ctl.h - what every controller shares: the store, the configuration, the
 * work queue, and the places on disk.  Built once by stampd; read-only
 * after start, so any worker thread may use it.
 */
#ifndef STAMP_CTL_H
#define STAMP_CTL_H

#include <jansson.h>
#include <stdbool.h>

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

/* Slow work of a resource on the job pool (reconcile/jobs.h), its id kept
 * in rec.job so that a restart finds it (or, unknown then, starts it
 * again: every job is check-then-act).  Keys are "<Kind>/<name>/<what>":
 * the job's end wakes the resource.  *state: JOB_QUEUED / JOB_RUNNING
 * (requeue; woken when it ends) or JOB_DONE (*result is the job's, or its
 * error is returned).  *changed: rec was changed (save it).  arg is
 * consumed.  Without a pool the job runs here. */
typedef int (*ctl_job_fn)(void *arg, json_t **result, serr *e);
int ctl_job(ctl_ctx *c, json_t *rec, const char *key, ctl_job_fn fn, void *arg,
            void (*free_arg)(void *), int *state, json_t **result, bool *changed, serr *e);
/* A job done callback: wakes "<Kind>/<name>" of the job's key. */
void ctl_job_wake(void *done_arg, uint64_t id, const char *key);

#endif
