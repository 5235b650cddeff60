/*
 * wallclock.c - ages of wall-clock timestamps measured on the monotonic
 * clock (wallclock.h).  One table, open addressing over a window of
 * PROBE slots, under one mutex (held for a few dozen comparisons).
 */
#include "util/wallclock.h"

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "util/util.h"

#define PROBE 16
#define SAME_INSTANT_MS 1000 /* two readings of one wall time this close are one instant */

typedef struct anchor {
    int64_t wall; /* 0: free */
    int64_t mono; /* the same instant on wall_mono_ms() */
    int64_t used; /* wall_mono_ms() of the last use, for eviction */
} anchor;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static anchor table[WALL_ANCHORS];

int64_t wall_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t slot_of(int64_t wall) {
    uint64_t h = (uint64_t)wall * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) % WALL_ANCHORS;
}

/* The entry of wall, or NULL; with a free or least recently used slot of
 * its window in *room. */
static anchor *find(int64_t wall, anchor **room) {
    size_t s = slot_of(wall);
    *room = NULL;
    for (int i = 0; i < PROBE; i++) {
        anchor *a = &table[(s + (size_t)i) % WALL_ANCHORS];
        if (a->wall == wall) return a;
        if (*room == NULL) *room = a;
        else if ((*room)->wall != 0 && (a->wall == 0 || a->used < (*room)->used)) *room = a;
    }
    return NULL;
}

static void put(anchor *room, int64_t wall, int64_t mono, int64_t now_mono) {
    room->wall = wall;
    room->mono = mono;
    room->used = now_mono;
}

int64_t wall_stamp_ms(void) {
    pthread_mutex_lock(&mu);
    int64_t m = wall_mono_ms(), w = now_ms();
    /* After a step back, w may be a time already known as an earlier
     * instant: take the next free millisecond instead (bounded; past it,
     * the old instant is forgotten). */
    for (int k = 0; k < 1000; k++) {
        anchor *room, *a = find(w, &room);
        if (a == NULL) {
            put(room, w, m, m);
            break;
        }
        if (m - a->mono < SAME_INSTANT_MS) {
            a->used = m;
            break;
        }
        if (k == 999) {
            put(a, w, m, m);
            break;
        }
        w++;
    }
    pthread_mutex_unlock(&mu);
    return w;
}

int64_t wall_age_ms(int64_t t) {
    if (t <= 0) return 0;
    pthread_mutex_lock(&mu);
    int64_t m = wall_mono_ms();
    anchor *room, *a = find(t, &room);
    if (a == NULL) {
        /* First sight: its age by the wall clock, once. */
        a = room;
        put(a, t, m - (now_ms() - t), m);
    }
    a->used = m;
    int64_t age = m - a->mono;
    pthread_mutex_unlock(&mu);
    return age;
}
