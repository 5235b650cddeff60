/*
 * faultvfs.h - a test-only SQLite VFS that wraps the real default VFS,
 * counts the file operations that change a database (open, write, sync,
 * truncate) and fails one of them, or every one from some point on, as a
 * plan says.  Installed as the default VFS before a store opens, so the
 * store under test runs the code stampd runs, on real files, and meets the
 * errors a failing disk would give it.
 *
 * Counting: a test arms a plan (or none), runs one store call, and reads the
 * counters: the call's injection points.  Everything else passes through.
 *
 * Threading: the counters and the plan are under one mutex, so a store's
 * reader and writer threads may use the VFS at once; the test arms and
 * disarms between calls.
 */
#ifndef STAMP_TEST_FAULTVFS_H
#define STAMP_TEST_FAULTVFS_H

#include <stdbool.h>

typedef enum fv_op { FV_OPEN, FV_WRITE, FV_SYNC, FV_TRUNCATE, FV_NOPS } fv_op;

typedef struct fv_plan {
    fv_op op;
    long nth;    /* fail the nth call of op since the plan was armed (1-based) */
    int code;    /* what it returns: SQLITE_IOERR_WRITE, SQLITE_FULL, ... */
    bool sticky; /* and every call of op after it (a disk that stays full) */
    bool torn;   /* a failing write writes its first half first */
} fv_plan;

/* Registers the shim as the default VFS, around the one that was default.
 * Once per process; again is a no-op. */
int faultvfs_install(void);
/* Counters to zero and the plan, if any, armed (NULL: count only). */
void faultvfs_arm(const fv_plan *p);
/* No more failures; counters keep counting. */
void faultvfs_disarm(void);
long faultvfs_count(fv_op op);
/* Calls the plan failed since it was armed. */
long faultvfs_failed(void);
const char *faultvfs_op_name(fv_op op);

#endif
