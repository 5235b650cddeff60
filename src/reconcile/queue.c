/*
 * queue.c - the work queue: keys in a hash table, a FIFO of ready keys, and
 * a min-heap of delayed keys, all under one mutex.
 *
 * An item exists while it is ready, being processed, delayed, has
 * failures on record, or is marked stalled; it is freed as soon as none of these holds, so the
 * table never holds more than max_keys and the FIFO and heap, sized to
 * max_keys, can never overflow.
 *
 * Delays are kept apart from readiness: a key may be ready now and also
 * have a deadline later (a reconcile asked "look again in 30 s" and an event
 * arrived meanwhile); the deadline then still fires, and adds the key again
 * only if it is not already waiting.
 */
#include "reconcile/queue.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

typedef struct item {
    struct item *next; /* hash chain */
    char key[WQ_KEY_MAX];
    bool ready;      /* in the FIFO, or to be put back there at done */
    bool processing; /* handed to a worker */
    int heap_idx;    /* -1 when not delayed */
    int64_t due_ms;
    int failures;
    bool stalled; /* the engine gave up retrying; see wq_stall */
    int64_t stalled_ms; /* mono_ms of the last wq_stall(on) */
} item;

struct wq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wq_backoff bo;
    size_t max;
    size_t count;
    size_t nbuckets;
    item **buckets;
    item **fifo; /* ring of max entries */
    size_t head, nready;
    item **heap;
    size_t nheap;
    bool shutdown;
    uint64_t rng;
};

static uint64_t hash_key(const char *k) {
    uint64_t h = 1469598103934665603ull;
    for (; *k; k++) h = (h ^ (unsigned char)*k) * 1099511628211ull;
    return h;
}

static item *find(wq *q, const char *key, bool create, int *err) {
    size_t b = hash_key(key) & (q->nbuckets - 1);
    for (item *it = q->buckets[b]; it; it = it->next)
        if (strcmp(it->key, key) == 0) return it;
    if (!create) return NULL;
    if (strlen(key) >= WQ_KEY_MAX) {
        *err = SE_INVAL;
        return NULL;
    }
    if (q->count >= q->max) {
        *err = SE_LIMIT;
        return NULL;
    }
    item *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        *err = SE_NOMEM;
        return NULL;
    }
    memcpy(it->key, key, strlen(key) + 1);
    it->heap_idx = -1;
    it->next = q->buckets[b];
    q->buckets[b] = it;
    q->count++;
    return it;
}

static void release_if_idle(wq *q, item *it) {
    if (it->ready || it->processing || it->heap_idx >= 0 || it->failures > 0 || it->stalled) return;
    size_t b = hash_key(it->key) & (q->nbuckets - 1);
    for (item **pp = &q->buckets[b]; *pp; pp = &(*pp)->next) {
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    }
    q->count--;
    free(it);
}

/* ---- the heap of delayed items, ordered by due_ms ---- */

static void heap_swap(wq *q, size_t a, size_t b) {
    item *t = q->heap[a];
    q->heap[a] = q->heap[b];
    q->heap[b] = t;
    q->heap[a]->heap_idx = (int)a;
    q->heap[b]->heap_idx = (int)b;
}

static void heap_up(wq *q, size_t i) {
    while (i > 0 && q->heap[(i - 1) / 2]->due_ms > q->heap[i]->due_ms) {
        heap_swap(q, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(wq *q, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->nheap && q->heap[l]->due_ms < q->heap[m]->due_ms) m = l;
        if (r < q->nheap && q->heap[r]->due_ms < q->heap[m]->due_ms) m = r;
        if (m == i) return;
        heap_swap(q, i, m);
        i = m;
    }
}

static void heap_remove(wq *q, item *it) {
    size_t i = (size_t)it->heap_idx;
    q->nheap--;
    if (i != q->nheap) {
        q->heap[i] = q->heap[q->nheap];
        q->heap[i]->heap_idx = (int)i;
        heap_down(q, i);
        heap_up(q, i);
    }
    it->heap_idx = -1;
}

/* ---- core operations, called with the lock held ---- */

static void make_ready(wq *q, item *it) {
    if (it->ready) return;
    it->ready = true;
    if (it->processing) return; /* wq_done puts it back */
    q->fifo[(q->head + q->nready) % q->max] = it;
    q->nready++;
    pthread_cond_signal(&q->cv);
}

static void promote_due(wq *q, int64_t now) {
    while (q->nheap > 0 && q->heap[0]->due_ms <= now) {
        item *it = q->heap[0];
        heap_remove(q, it);
        make_ready(q, it);
    }
}

wq *wq_new(size_t max_keys, const wq_backoff *bo) {
    if (max_keys == 0) return NULL;
    wq *q = calloc(1, sizeof(*q));
    if (q == NULL) return NULL;
    q->max = max_keys;
    q->nbuckets = 16;
    while (q->nbuckets < max_keys) q->nbuckets *= 2;
    q->buckets = calloc(q->nbuckets, sizeof(item *));
    q->fifo = calloc(max_keys, sizeof(item *));
    q->heap = calloc(max_keys, sizeof(item *));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (q->buckets == NULL || q->fifo == NULL || q->heap == NULL ||
        pthread_cond_init(&q->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        free(q->buckets);
        free(q->fifo);
        free(q->heap);
        free(q);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&q->mu, NULL);
    q->bo = *bo;
    if (q->bo.initial_ms <= 0) q->bo.initial_ms = 1;
    if (q->bo.max_ms < q->bo.initial_ms) q->bo.max_ms = q->bo.initial_ms;
    if (q->bo.factor < 1.0) q->bo.factor = 1.0;
    if (q->bo.jitter < 0 || q->bo.jitter >= 1.0) q->bo.jitter = 0;
    q->rng = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)q;
    if (q->rng == 0) q->rng = 88172645463325252ull;
    return q;
}

void wq_free(wq *q) {
    if (q == NULL) return;
    for (size_t b = 0; b < q->nbuckets; b++) {
        item *it = q->buckets[b];
        while (it) {
            item *n = it->next;
            free(it);
            it = n;
        }
    }
    free(q->buckets);
    free(q->fifo);
    free(q->heap);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

int wq_add(wq *q, const char *key) {
    int err = 0;
    pthread_mutex_lock(&q->mu);
    if (q->shutdown) err = SE_UNAVAIL;
    item *it = err ? NULL : find(q, key, true, &err);
    if (it) make_ready(q, it);
    pthread_mutex_unlock(&q->mu);
    return err;
}

int wq_add_after(wq *q, const char *key, int64_t delay_ms) {
    if (delay_ms <= 0) return wq_add(q, key);
    int err = 0;
    pthread_mutex_lock(&q->mu);
    if (q->shutdown) err = SE_UNAVAIL;
    item *it = err ? NULL : find(q, key, true, &err);
    if (it) {
        int64_t due = mono_ms() + delay_ms;
        if (it->heap_idx < 0) {
            it->due_ms = due;
            it->heap_idx = (int)q->nheap;
            q->heap[q->nheap++] = it;
            heap_up(q, (size_t)it->heap_idx);
        } else if (due < it->due_ms) {
            it->due_ms = due;
            heap_up(q, (size_t)it->heap_idx);
        }
        /* A waiting worker may need to wake earlier than it planned. */
        if (q->heap[0] == it) pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return err;
}

static void deadline_ts(int64_t mono_deadline, struct timespec *ts) {
    ts->tv_sec = (time_t)(mono_deadline / 1000);
    ts->tv_nsec = (long)(mono_deadline % 1000) * 1000000L;
}

int wq_get(wq *q, char *buf, size_t len, int timeout_ms) {
    int64_t limit = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->shutdown) {
            rc = SE_UNAVAIL;
            break;
        }
        int64_t now = mono_ms();
        promote_due(q, now);
        if (q->nready > 0) {
            item *it = q->fifo[q->head];
            q->head = (q->head + 1) % q->max;
            q->nready--;
            it->ready = false;
            it->processing = true;
            str_copy(buf, len, it->key);
            break;
        }
        if (limit >= 0 && now >= limit) {
            rc = SE_TIMEOUT;
            break;
        }
        int64_t wake = limit;
        if (q->nheap > 0 && (wake < 0 || q->heap[0]->due_ms < wake)) wake = q->heap[0]->due_ms;
        if (wake < 0) {
            pthread_cond_wait(&q->cv, &q->mu);
        } else {
            struct timespec ts;
            deadline_ts(wake, &ts);
            pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        }
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void wq_done(wq *q, const char *key) {
    pthread_mutex_lock(&q->mu);
    item *it = find(q, key, false, NULL);
    if (it && it->processing) {
        it->processing = false;
        if (it->ready) {
            it->ready = false;
            make_ready(q, it);
        }
        release_if_idle(q, it);
    }
    pthread_mutex_unlock(&q->mu);
}

static double rand_unit(wq *q) {
    /* xorshift64*: plenty for spreading retries apart. */
    q->rng ^= q->rng >> 12;
    q->rng ^= q->rng << 25;
    q->rng ^= q->rng >> 27;
    return (double)((q->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* The delay of the n-th failure, with jitter; lock held. */
static int64_t delay_of(wq *q, int n) {
    double d = (double)q->bo.initial_ms;
    for (int i = 1; i < n && d < (double)q->bo.max_ms; i++) d *= q->bo.factor;
    if (d > (double)q->bo.max_ms) d = (double)q->bo.max_ms;
    if (q->bo.jitter > 0) d *= 1.0 + q->bo.jitter * (2.0 * rand_unit(q) - 1.0);
    return d < 1 ? 1 : (int64_t)d;
}

int64_t wq_backoff_next(wq *q, const char *key, int *failures) {
    int err = 0;
    pthread_mutex_lock(&q->mu);
    item *it = find(q, key, true, &err);
    int n = 1;
    if (it) n = ++it->failures;
    int64_t d = delay_of(q, n);
    pthread_mutex_unlock(&q->mu);
    if (failures) *failures = n;
    return d;
}

void wq_forget(wq *q, const char *key) {
    pthread_mutex_lock(&q->mu);
    item *it = find(q, key, false, NULL);
    if (it) {
        it->failures = 0;
        release_if_idle(q, it);
    }
    pthread_mutex_unlock(&q->mu);
}

int wq_failures(wq *q, const char *key) {
    pthread_mutex_lock(&q->mu);
    item *it = find(q, key, false, NULL);
    int n = it ? it->failures : 0;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int wq_stall(wq *q, const char *key, bool on) {
    int err = 0;
    pthread_mutex_lock(&q->mu);
    item *it = find(q, key, on, &err);
    if (it) {
        it->stalled = on;
        it->stalled_ms = mono_ms();
        release_if_idle(q, it);
    }
    pthread_mutex_unlock(&q->mu);
    return err;
}

bool wq_stalled(wq *q, const char *key) { return wq_stalled_since(q, key) >= 0; }

int64_t wq_stalled_since(wq *q, const char *key) {
    pthread_mutex_lock(&q->mu);
    item *it = find(q, key, false, NULL);
    int64_t t = it && it->stalled ? it->stalled_ms : -1;
    pthread_mutex_unlock(&q->mu);
    return t;
}

int64_t wq_backoff_delay(wq *q, int n) {
    pthread_mutex_lock(&q->mu);
    int64_t d = delay_of(q, n < 1 ? 1 : n);
    pthread_mutex_unlock(&q->mu);
    return d;
}

int64_t wq_backoff_max(const wq *q) { return q->bo.max_ms; }

size_t wq_len(wq *q) {
    pthread_mutex_lock(&q->mu);
    size_t n = q->nready;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void wq_shutdown(wq *q) {
    pthread_mutex_lock(&q->mu);
    q->shutdown = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
