/*
 * reserve.h - disk space held back for stampd's own store.
 *
 * A tenant's pod can fill the data directory's filesystem; the store must
 * still commit (a failed commit loses the very state change that would stop
 * the pod).  stampd keeps DATA/reserve, a file of disk-reserve bytes
 * allocated with posix_fallocate.  When a store write fails with "disk
 * full", the store releases it (unlink) and retries once; stampd's periodic
 * loop logs the release as an ERROR and refills the file when the space is
 * back.
 *
 * Threading: all functions are thread safe (one process-wide reserve).
 */
#ifndef STAMP_UTIL_RESERVE_H
#define STAMP_UTIL_RESERVE_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

/* Once at start: path of the file and its size (0: no reserve).  Fills it
 * now; a failure to fill (no room) is reported but the reserve stays armed
 * and reserve_refill tries again. */
int reserve_init(const char *path, int64_t bytes, serr *e);
/* Frees the reserve (disk full); true when it was held until now. */
bool reserve_release(void);
/* If released and min_free bytes would remain free after refilling,
 * allocates it again; 1 when refilled now, 0 when nothing to do, negative
 * on failure. */
int reserve_refill(int64_t min_free, serr *e);
/* Times the reserve was released since the last call (for the log). */
int reserve_take_releases(void);
bool reserve_held(void);

#endif
