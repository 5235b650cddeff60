/*
 * queue.h - the reconciler's work queue (the client-go contract).
 *
 * Keys, not events: adding a key that is already waiting does nothing; a key
 * being processed by a worker is never handed to a second worker, and if it
 * is added meanwhile it is handed out again once the first worker calls
 * wq_done.  wq_add_after keeps the earliest deadline per key.  Per-key
 * failures give exponential backoff with jitter (initial * factor^n, capped),
 * reset by wq_forget.  Bounded: past max_keys, adds fail with SE_LIMIT; a
 * key holds a slot while it is waiting, processed, delayed, has failures on
 * record or is marked stalled, and frees it as soon as none holds.
 *
 * Threading: all functions thread safe; wq_get blocks.
 */
#ifndef STAMP_QUEUE_H
#define STAMP_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define WQ_KEY_MAX 192

typedef struct wq wq;

typedef struct wq_backoff {
    int64_t initial_ms; /* seed 003: 10 s */
    int64_t max_ms;     /* 5 min */
    double factor;      /* 2.0 */
    double jitter;      /* 0.1 = +-10 % */
} wq_backoff;

wq *wq_new(size_t max_keys, const wq_backoff *bo);
void wq_free(wq *q);
int wq_add(wq *q, const char *key);
int wq_add_after(wq *q, const char *key, int64_t delay_ms);
/* Wait for a key; 0 and the key in buf, SE_TIMEOUT after timeout_ms
 * (-1 = forever), SE_UNAVAIL once shut down. */
int wq_get(wq *q, char *buf, size_t len, int timeout_ms);
void wq_done(wq *q, const char *key);
/* Next delay for key (counts a failure) and how many failures so far. */
int64_t wq_backoff_next(wq *q, const char *key, int *failures);
/* Reset the key's failures (its slot is freed if nothing else holds it). */
void wq_forget(wq *q, const char *key);
/* Failures on record for key (0 if none). */
int wq_failures(wq *q, const char *key);
/* The delay of the n-th failure (n >= 1) with jitter, counting nothing: for
 * a controller whose domain keeps its own count of attempts. */
int64_t wq_backoff_delay(wq *q, int n);
int64_t wq_backoff_max(const wq *q);
/* A mark the engine keeps on a key it stopped retrying (see engine.h),
 * with the time (mono_ms) it was last set.  Setting it may fail with
 * SE_LIMIT; a marked key holds its slot. */
int wq_stall(wq *q, const char *key, bool on);
bool wq_stalled(wq *q, const char *key);
/* mono_ms of the last wq_stall(on), or -1 when not marked. */
int64_t wq_stalled_since(wq *q, const char *key);
size_t wq_len(wq *q);
void wq_shutdown(wq *q);

#endif
