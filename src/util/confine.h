/*
 * confine.h - the pure parts of confining a tenant's pod, shared by stampd
 * (which checks a request and prepares a pod) and stamp-run (the supervisor
 * that applies the confinement in the child and bounds what it writes).
 *
 * Nothing here logs or uses stamp's error table: stamp-run links this file
 * alone, without the rest of the library.
 *
 *   - Landlock: the ABI version and the access masks of each ABI;
 *   - disk usage: a bounded walk that never follows symlinks;
 *   - logcap: an output log with a hard size cap (head, marker, tail).
 *
 * Threading: no shared state; a logcap belongs to one thread.
 */
#ifndef STAMP_UTIL_CONFINE_H
#define STAMP_UTIL_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Landlock ---- */
/* The kernel's Landlock ABI version, or 0 when Landlock is unavailable
 * (not built, disabled at boot, or too old). */
int confine_landlock_abi(void);
/* Filesystem access rights that exist in ABI abi (what a ruleset can handle). */
uint64_t confine_landlock_fs_mask(int abi);

/* ---- disk usage ---- */
/* Adds to *bytes the space allocated (st_blocks * 512) under path, each
 * entry counted as at least CONFINE_ENTRY_COST (an empty file still takes
 * an inode: a budget in bytes then also bounds how many files a namespace
 * makes), walking at most *entries entries (decremented; the walk stops at
 * 0) and depth 64, never following a symlink.  A missing path adds nothing.
 * Returns 0, or -1 when the entry budget ran out: callers treat that as
 * over any budget, since the walk could not see everything. */
#define CONFINE_ENTRY_COST 4096
int confine_du(const char *path, int64_t *bytes, long *entries);
/* Free space of the filesystem holding dir, in bytes, with free inodes
 * counted as CONFINE_ENTRY_COST each when they are the scarcer: a disk out
 * of inodes is as full as one out of blocks.  INT64_MAX when unknown. */
int64_t confine_free_bytes(const char *dir);

/* ---- logcap: a log file that never grows past max bytes + a marker ----
 * While the output fits, every byte goes to the file as it comes (the log
 * is live).  Past max, the file keeps the first max/2 bytes (the head),
 * then a marker line, then the last max - max/2 bytes (the tail, kept in a
 * ring buffer in memory and rewritten into the file by logcap_flush).
 * Bytes are never interpreted: binary output stays faithful. */
#define LOGCAP_MARKER_MAX 64
typedef struct logcap {
    int fd;
    uint64_t max, head_max, tail_cap;
    uint64_t total; /* bytes received */
    uint64_t lost;  /* bytes the file refused (write errors) */
    bool cut, dirty;
    char *ring; /* tail_cap bytes, allocated at the first cut */
    size_t ring_len, ring_pos; /* ring_pos: the oldest byte */
} logcap;

/* fd: the log, opened for writing, empty (logcap writes by offset). */
void logcap_init(logcap *l, int fd, uint64_t max);
/* Takes n bytes of output; 0, or -1 when out of memory (bytes then lost). */
int logcap_write(logcap *l, const void *data, size_t n);
/* Rewrites marker and tail after the head when they changed; 0 or -1. */
int logcap_flush(logcap *l);
uint64_t logcap_dropped(const logcap *l);
/* The marker for dropped bytes: "\n[stamp: N bytes of output cut here]\n". */
size_t logcap_marker(uint64_t dropped, char *buf, size_t len);
void logcap_done(logcap *l); /* frees the ring; does not close fd */

#endif
