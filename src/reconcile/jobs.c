/*
 * jobs.c - the job pool (see jobs.h for the model).
 *
 * Every job, whatever its state, is on one list (`all`); the queued ones
 * are also on a FIFO (`qhead`/`qtail`, through qnext).  The lists are
 * short (queue_max + threads + keep_max at most), so lookups by id or key
 * are scans.  One mutex guards everything; a job's function and its done
 * callbacks run without it.
 */
#include "reconcile/jobs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "store/store.h"
#include "util/metrics.h"
#include "util/util.h"

#define M_REJECTED "stamp_jobs_rejected_total"
#define M_RUNNING "stamp_jobs_running"
#define M_QUEUED "stamp_jobs_queued"

typedef struct waiter {
    struct waiter *next;
    job_done_fn fn;
    void *arg;
} waiter;

typedef struct job {
    struct job *prev, *next; /* all */
    struct job *qnext;       /* the queue */
    uint64_t id;
    char key[JOBS_KEY_MAX];
    bool has_key;
    int state;
    job_fn fn;
    void *arg;
    void (*free_arg)(void *);
    waiter *waiters;
    int nwaiters;
    int rc;
    char msg[SERR_MSG_MAX];
    json_t *result;
    int64_t queued_ms, started_ms, finished_ms;
    int64_t finished_mono;
    int64_t epoch; /* the leader's epoch when it was asked for (cluster.h) */
} job;

struct job_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* work queued, or stopping */
    job *all;
    job *qhead, *qtail;
    int nqueued, nrunning, ndone;
    int queue_max;
    int keep_max;
    int64_t keep_ms;
    uint64_t next_id;
    atomic_bool stopping;
    pthread_t *threads;
    int nthreads;
};

/* Caller holds mu. */
static void gauges(job_pool *p) {
    metrics_set(M_RUNNING, "", p->nrunning);
    metrics_set(M_QUEUED, "", p->nqueued);
}

static void waiters_free(waiter *w) {
    while (w) {
        waiter *n = w->next;
        free(w);
        w = n;
    }
}

static void waiters_call(waiter *w, uint64_t id, const char *key) {
    for (; w; w = w->next) w->fn(w->arg, id, key);
}

/* Caller holds mu. */
static void unlink_job(job_pool *p, job *j) {
    if (j->prev) j->prev->next = j->next;
    else p->all = j->next;
    if (j->next) j->next->prev = j->prev;
}

static void job_free(job *j) {
    if (j == NULL) return;
    waiters_free(j->waiters);
    json_decref(j->result);
    free(j);
}

/* Drops finished results past their time, then the oldest past keep_max.
 * Caller holds mu. */
static void prune(job_pool *p) {
    int64_t now = mono_ms();
    for (job *j = p->all, *n; j; j = n) {
        n = j->next;
        if (j->state == JOB_DONE && now - j->finished_mono >= p->keep_ms) {
            unlink_job(p, j);
            job_free(j);
            p->ndone--;
        }
    }
    while (p->ndone > p->keep_max) {
        job *oldest = NULL;
        for (job *j = p->all; j; j = j->next)
            if (j->state == JOB_DONE && (oldest == NULL || j->finished_mono < oldest->finished_mono))
                oldest = j;
        if (oldest == NULL) break;
        unlink_job(p, oldest);
        job_free(oldest);
        p->ndone--;
    }
}

/* Records the end of j and hands back its waiters (to be called without
 * the lock).  Caller holds mu. */
static waiter *finish(job_pool *p, job *j, int rc, const serr *e, json_t *result) {
    j->state = JOB_DONE;
    j->rc = rc;
    if (rc) str_copy(j->msg, sizeof(j->msg), e->msg[0] ? e->msg : se_text(rc));
    j->result = result;
    j->finished_ms = now_ms();
    j->finished_mono = mono_ms();
    p->ndone++;
    waiter *w = j->waiters;
    j->waiters = NULL;
    j->nwaiters = 0;
    return w;
}

static void *worker_main(void *arg) {
    job_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->qhead == NULL && !atomic_load(&p->stopping)) pthread_cond_wait(&p->cv, &p->mu);
        job *j = p->qhead;
        if (j == NULL) break; /* stopping, and jobs_stop emptied the queue */
        p->qhead = j->qnext;
        if (p->qhead == NULL) p->qtail = NULL;
        j->qnext = NULL;
        p->nqueued--;
        p->nrunning++;
        j->state = JOB_RUNNING;
        j->started_ms = now_ms();
        gauges(p);
        job_fn fn = j->fn;
        void *farg = j->arg;
        void (*free_arg)(void *) = j->free_arg;
        int64_t epoch = j->epoch;
        j->arg = NULL;
        pthread_mutex_unlock(&p->mu);

        json_t *result = NULL;
        serr e = {0};
        int rc;
        /* Replicas: a job acts for the leader that asked for it, with its
         * epoch as the fence; asked for under another term (or none), it
         * does nothing: the leader of now decides again (cluster.h). */
        if (cluster_enabled() && (epoch == 0 || epoch != cluster_epoch())) {
            /* Not SE_FENCED: nothing was refused by the database, and a
             * reconcile of a new term of this replica reading this answer
             * must not take it for its own fencing. */
            rc = serr_set(&e, SE_UNAVAIL, "not run: asked for under leader epoch %lld, which this replica no longer holds",
                          (long long)epoch);
        } else {
            store_fence_set(epoch);
            rc = fn(farg, &result, &e);
            if (rc == SE_FENCED) cluster_fenced(epoch);
        }
        if (free_arg) free_arg(farg);

        pthread_mutex_lock(&p->mu);
        p->nrunning--;
        uint64_t id = j->id;
        char key[JOBS_KEY_MAX];
        str_copy(key, sizeof(key), j->key);
        waiter *w = finish(p, j, rc, &e, result);
        prune(p); /* may free j: only the copies are used below */
        gauges(p);
        pthread_mutex_unlock(&p->mu);
        waiters_call(w, id, key);
        waiters_free(w);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int jobs_start(int threads, int queue_max, job_pool **out, serr *e) {
    *out = NULL;
    if (threads < 1 || threads > 64) return serr_set(e, SE_INVAL, "jobs: threads %d not in 1-64", threads);
    if (queue_max < 1 || queue_max > 65536)
        return serr_set(e, SE_INVAL, "jobs: queue %d not in 1-65536", queue_max);
    metrics_register(M_REJECTED, MT_COUNTER, "Jobs refused because the job queue was full");
    metrics_register(M_RUNNING, MT_GAUGE, "Jobs running now");
    metrics_register(M_QUEUED, MT_GAUGE, "Jobs waiting for a thread");
    job_pool *p = calloc(1, sizeof(*p));
    if (p == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    p->threads = calloc((size_t)threads, sizeof(pthread_t));
    if (p->threads == NULL) {
        free(p);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->queue_max = queue_max;
    p->keep_max = JOBS_KEEP_MAX;
    p->keep_ms = JOBS_KEEP_MS;
    /* 2^20 ids per start of stampd before they run into the next start's
     * (a start a millisecond later); the time takes 41 bits until 2039 and
     * 44 until long after. */
    p->next_id = ((uint64_t)now_ms() << 20) + 1;
    atomic_init(&p->stopping, false);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            jobs_free(p);
            return serr_set(e, SE_INTERNAL, "jobs: cannot start thread %d of %d", i + 1, threads);
        }
        p->nthreads++;
    }
    pthread_mutex_lock(&p->mu);
    gauges(p);
    pthread_mutex_unlock(&p->mu);
    *out = p;
    return 0;
}

void jobs_keep(job_pool *p, int keep_max, int64_t keep_ms) {
    pthread_mutex_lock(&p->mu);
    p->keep_max = keep_max < 0 ? 0 : keep_max;
    p->keep_ms = keep_ms < 0 ? 0 : keep_ms;
    prune(p);
    pthread_mutex_unlock(&p->mu);
}

bool jobs_stopping(job_pool *p) { return p != NULL && atomic_load(&p->stopping); }

void jobs_stop(job_pool *p) {
    if (p == NULL) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stopping, true);
    /* The queued jobs end here, unrun; their waiters are told. */
    typedef struct ended {
        struct ended *next;
        waiter *w;
        uint64_t id;
        char key[JOBS_KEY_MAX];
        void *arg;
        void (*free_arg)(void *);
    } ended;
    ended *list = NULL;
    serr se = {SE_UNAVAIL, "stampd is stopping: the job did not run"};
    for (job *j = p->qhead, *n; j; j = n) {
        n = j->qnext;
        j->qnext = NULL;
        p->nqueued--;
        ended *x = calloc(1, sizeof(*x));
        waiter *w = finish(p, j, SE_UNAVAIL, &se, NULL);
        if (x == NULL) { /* cannot tell them; still free what is theirs */
            waiters_free(w);
            if (j->free_arg) j->free_arg(j->arg);
            j->arg = NULL;
            continue;
        }
        x->w = w;
        x->id = j->id;
        str_copy(x->key, sizeof(x->key), j->key);
        x->arg = j->arg;
        x->free_arg = j->free_arg;
        j->arg = NULL;
        x->next = list;
        list = x;
    }
    p->qhead = p->qtail = NULL;
    gauges(p);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    while (list) {
        ended *n = list->next;
        if (list->free_arg) list->free_arg(list->arg);
        waiters_call(list->w, list->id, list->key);
        waiters_free(list->w);
        free(list);
        list = n;
    }
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    p->nthreads = 0;
}

void jobs_free(job_pool *p) {
    if (p == NULL) return;
    jobs_stop(p);
    for (job *j = p->all, *n; j; j = n) {
        n = j->next;
        job_free(j);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

/* Caller holds mu. */
static job *find_live(job_pool *p, const char *key) {
    for (job *j = p->all; j; j = j->next)
        if (j->has_key && j->state != JOB_DONE && strcmp(j->key, key) == 0) return j;
    return NULL;
}

/* Adds a done callback to j unless the same one is there.  Caller holds mu. */
static int add_waiter(job *j, job_done_fn fn, void *arg, serr *e) {
    if (fn == NULL) return 0;
    for (waiter *w = j->waiters; w; w = w->next)
        if (w->fn == fn && w->arg == arg) return 0;
    if (j->nwaiters >= JOBS_WAITERS_MAX)
        return serr_set(e, SE_LIMIT, "job %s has %d waiters already", j->key, JOBS_WAITERS_MAX);
    waiter *w = calloc(1, sizeof(*w));
    if (w == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    w->fn = fn;
    w->arg = arg;
    w->next = j->waiters;
    j->waiters = w;
    j->nwaiters++;
    return 0;
}

/* The body of jobs_submit under the lock; the caller frees arg unless
 * *taken.  Caller holds mu. */
static int submit_locked(job_pool *p, const char *key, job_fn fn, void *arg,
                         void (*free_arg)(void *), job_done_fn done, void *done_arg, uint64_t *id,
                         bool *taken, serr *e) {
    if (atomic_load(&p->stopping)) return serr_set(e, SE_UNAVAIL, "stampd is stopping");
    job *j = key ? find_live(p, key) : NULL;
    if (j) {
        int rc = add_waiter(j, done, done_arg, e);
        if (rc == 0) *id = j->id;
        return rc;
    }
    if (p->nqueued >= p->queue_max) {
        metrics_inc(M_REJECTED, "", 1);
        return serr_set(e, SE_LIMIT, "the job queue is full (%d jobs waiting); try again later",
                        p->queue_max);
    }
    prune(p); /* room for this one's result later */
    j = calloc(1, sizeof(*j));
    if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = add_waiter(j, done, done_arg, e);
    if (rc) {
        job_free(j);
        return rc;
    }
    j->id = p->next_id++;
    j->has_key = key != NULL;
    if (key) str_copy(j->key, sizeof(j->key), key);
    j->state = JOB_QUEUED;
    j->fn = fn;
    j->arg = arg;
    j->free_arg = free_arg;
    j->epoch = cluster_epoch();
    j->queued_ms = now_ms();
    j->next = p->all;
    if (p->all) p->all->prev = j;
    p->all = j;
    if (p->qtail) p->qtail->qnext = j;
    else p->qhead = j;
    p->qtail = j;
    p->nqueued++;
    gauges(p);
    pthread_cond_signal(&p->cv);
    *taken = true;
    *id = j->id;
    return 0;
}

int jobs_submit(job_pool *p, const char *key, job_fn fn, void *arg, void (*free_arg)(void *),
                job_done_fn done, void *done_arg, uint64_t *id, serr *e) {
    *id = 0;
    bool taken = false;
    int rc;
    if (key && strlen(key) >= JOBS_KEY_MAX) {
        rc = serr_set(e, SE_INVAL, "job key of %zu bytes (at most %d)", strlen(key), JOBS_KEY_MAX - 1);
    } else {
        pthread_mutex_lock(&p->mu);
        rc = submit_locked(p, key, fn, arg, free_arg, done, done_arg, id, &taken, e);
        pthread_mutex_unlock(&p->mu);
    }
    if (!taken && free_arg) free_arg(arg);
    return rc;
}

int jobs_poll(job_pool *p, uint64_t id, job_result *out) {
    if (out) memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->mu);
    prune(p);
    job *j = p->all;
    while (j && j->id != id) j = j->next;
    int state = j ? j->state : JOB_UNKNOWN;
    if (j && out) {
        out->queued_ms = j->queued_ms;
        out->started_ms = j->started_ms;
    }
    if (j && out && state == JOB_DONE) {
        out->rc = j->rc;
        str_copy(out->message, sizeof(out->message), j->msg);
        /* A copy: the caller may change it while others read theirs. */
        out->result = j->result ? json_deep_copy(j->result) : NULL;
        out->finished_ms = j->finished_ms;
    }
    pthread_mutex_unlock(&p->mu);
    return state;
}

void job_result_free(job_result *r) {
    if (r == NULL) return;
    json_decref(r->result);
    r->result = NULL;
}

uint64_t jobs_find(job_pool *p, const char *key) {
    if (key == NULL) return 0;
    pthread_mutex_lock(&p->mu);
    job *j = find_live(p, key);
    uint64_t id = j ? j->id : 0;
    pthread_mutex_unlock(&p->mu);
    return id;
}
