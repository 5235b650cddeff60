/*
 * mutex.h - a mutex that knows its holder, so that functions which must be
 * called with it held can assert so (assert(smutex_held(&m))).  The holder
 * is recorded only when assertions are compiled in (no NDEBUG): the Debug
 * and sanitizer builds check, the release build pays nothing.
 */
#ifndef STAMP_MUTEX_H
#define STAMP_MUTEX_H

#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

typedef struct smutex {
    pthread_mutex_t mu;
#ifndef NDEBUG
    _Atomic int holder; /* the holding thread's id, 0 when free */
#endif
} smutex;

static inline void smutex_init(smutex *m) {
    pthread_mutex_init(&m->mu, NULL);
#ifndef NDEBUG
    m->holder = 0;
#endif
}

static inline void smutex_destroy(smutex *m) { pthread_mutex_destroy(&m->mu); }

static inline void smutex_lock(smutex *m) {
    pthread_mutex_lock(&m->mu);
#ifndef NDEBUG
    m->holder = (int)gettid();
#endif
}

static inline void smutex_unlock(smutex *m) {
#ifndef NDEBUG
    m->holder = 0;
#endif
    pthread_mutex_unlock(&m->mu);
}

/* pthread_cond_wait on the mutex, keeping the holder right. */
static inline void smutex_wait(smutex *m, pthread_cond_t *cv) {
#ifndef NDEBUG
    m->holder = 0;
#endif
    pthread_cond_wait(cv, &m->mu);
#ifndef NDEBUG
    m->holder = (int)gettid();
#endif
}

/* Only meaningful in assertions (always true under NDEBUG). */
static inline bool smutex_held(smutex *m) {
#ifndef NDEBUG
    return m->holder == (int)gettid();
#else
    (void)m;
    return true;
#endif
}

#endif
