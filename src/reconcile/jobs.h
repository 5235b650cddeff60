/*
 * jobs.h - a bounded pool of threads for slow work (reaps, MTTC pipelines,
 * probes, backups): whoever must not block (an API thread, a controller)
 * submits a job and comes back for its result.
 *
 * A job is a function with its argument, named by a key.  While a job of a
 * key is queued or running, a second submit of that key starts nothing: it
 * answers the same id (and adds its done callback), so a controller that
 * requeues, or a client that retries, never starts the work twice.  Once
 * the job has ended a submit of the key starts a new one: jobs must be
 * check-then-act, which also makes it safe to start again a job that
 * jobs_poll no longer knows (stampd restarted, or its result expired).
 *
 * The intended use by a controller: submit, record the id in status,
 * requeue; on the next reconcile poll the id (JOB_QUEUED / JOB_RUNNING:
 * requeue; JOB_DONE: act on the result; JOB_UNKNOWN: submit again).  The
 * done callback can wake the controller (ctl_wake from the key) so that it
 * does not have to poll on a timer.
 *
 * Bounded: `threads` jobs run at once, at most `queue_max` wait (a submit
 * past that is SE_LIMIT, counted in stamp_jobs_rejected_total), at most
 * JOBS_WAITERS_MAX done callbacks per job, and finished results are kept
 * for JOBS_KEEP_MS and at most JOBS_KEEP_MAX of them, oldest dropped
 * first.  Gauges: stamp_jobs_running, stamp_jobs_queued.
 *
 * Ids are unique across restarts (the pool's start time is in their high
 * bits), so an id recorded before a restart is JOB_UNKNOWN after it, never
 * another job's.
 *
 * Threading: every function is thread safe.  A job runs on a pool thread;
 * its done callbacks run on that thread right after its result is
 * recorded, with no lock of the pool held (they may call jobs_poll or
 * jobs_submit), and must be quick.
 */
#ifndef STAMP_JOBS_H
#define STAMP_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define JOBS_KEY_MAX 192
#define JOBS_WAITERS_MAX 256
#define JOBS_KEEP_MS (10 * 60 * 1000)
#define JOBS_KEEP_MAX 1024

typedef struct job_pool job_pool;

enum job_state { JOB_UNKNOWN, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

typedef struct job_result {
    int rc;                     /* what the job returned: 0 or an SE_* code */
    char message[SERR_MSG_MAX]; /* its error message when rc != 0 */
    json_t *result;             /* the caller's copy (free it), or NULL */
    int64_t queued_ms, started_ms, finished_ms; /* epoch ms */
} job_result;

/* The work, on a pool thread.  *result starts NULL; whatever the job puts
 * there (also on failure) is what jobs_poll hands out.  Returns 0 or an
 * SE_* code with the message in e.  A long job should look at
 * jobs_stopping() now and then and end early when it is true. */
typedef int (*job_fn)(void *arg, json_t **result, serr *e);
/* A job of key ended (id is its id): called once per submit that asked. */
typedef void (*job_done_fn)(void *done_arg, uint64_t id, const char *key);

/* threads: 1-64; queue_max: 1-65536. */
int jobs_start(int threads, int queue_max, job_pool **out, serr *e);
/* How long and how many finished results are kept (tests shorten them). */
void jobs_keep(job_pool *p, int keep_max, int64_t keep_ms);
/* Stops taking jobs (submit answers SE_UNAVAIL), ends the queued ones
 * without running them (JOB_DONE with SE_UNAVAIL, done callbacks called),
 * sets jobs_stopping(), and waits for the running ones to end.  The pool
 * can still be polled until jobs_free.  NULL is fine. */
void jobs_stop(job_pool *p);
void jobs_free(job_pool *p); /* stops it first if need be; NULL is fine */
bool jobs_stopping(job_pool *p);

/* Queues fn(arg) under key (NULL: a job no other submit can join).  The
 * pool owns arg from the call on, whatever the answer: free_arg (may be
 * NULL) is called once the job has run, at once when the key's job was
 * already there or the submit failed.  done (may be NULL) is called with
 * done_arg when the job ends; done_arg must live until then.  *id is the
 * job's id.  0, SE_LIMIT (queue full, or too many done callbacks on the
 * key's job), SE_UNAVAIL (stopping), SE_INVAL (key too long). */
int jobs_submit(job_pool *p, const char *key, job_fn fn, void *arg, void (*free_arg)(void *),
                job_done_fn done, void *done_arg, uint64_t *id, serr *e);
/* The state of job id; at JOB_DONE *out is filled (free it with
 * job_result_free), otherwise zeroed.  out may be NULL. */
int jobs_poll(job_pool *p, uint64_t id, job_result *out);
void job_result_free(job_result *r);
/* The id of the queued or running job of key; 0 when there is none. */
uint64_t jobs_find(job_pool *p, const char *key);

#endif
