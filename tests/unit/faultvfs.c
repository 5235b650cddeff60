/*
 * faultvfs.c - see faultvfs.h.  Each file opened through the shim is a
 * fv_file followed by the real VFS's file; every method checks the plan
 * (open, write, sync, truncate) or passes straight through.  The test
 * includes this file (tests/unit/ builds only test_*.c, each alone).
 */
#include "faultvfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

typedef struct fv_file {
    sqlite3_file base; /* first: SQLite sees this */
    sqlite3_file *real; /* the wrapped file, in the same allocation after us */
} fv_file;

static sqlite3_vfs *fv_real;
static pthread_mutex_t fv_mu = PTHREAD_MUTEX_INITIALIZER;
static long fv_counts[FV_NOPS];
static long fv_failed;
static fv_plan fv_cur;
static bool fv_armed;

const char *faultvfs_op_name(fv_op op) {
    static const char *const names[FV_NOPS] = {"open", "write", "sync", "truncate"};
    return op < FV_NOPS ? names[op] : "?";
}

/* Counts a call of op; returns the error code the plan gives it, or 0. */
static int fv_hit(fv_op op, bool *torn) {
    pthread_mutex_lock(&fv_mu);
    long n = ++fv_counts[op];
    int code = 0;
    if (fv_armed && fv_cur.op == op && (n == fv_cur.nth || (fv_cur.sticky && n > fv_cur.nth))) {
        code = fv_cur.code;
        fv_failed++;
        if (torn) *torn = fv_cur.torn;
    }
    pthread_mutex_unlock(&fv_mu);
    return code;
}

void faultvfs_arm(const fv_plan *p) {
    pthread_mutex_lock(&fv_mu);
    memset(fv_counts, 0, sizeof(fv_counts));
    fv_failed = 0;
    fv_armed = p != NULL;
    if (p) fv_cur = *p;
    pthread_mutex_unlock(&fv_mu);
}

void faultvfs_disarm(void) {
    pthread_mutex_lock(&fv_mu);
    fv_armed = false;
    pthread_mutex_unlock(&fv_mu);
}

long faultvfs_count(fv_op op) {
    pthread_mutex_lock(&fv_mu);
    long n = op < FV_NOPS ? fv_counts[op] : 0;
    pthread_mutex_unlock(&fv_mu);
    return n;
}

long faultvfs_failed(void) {
    pthread_mutex_lock(&fv_mu);
    long n = fv_failed;
    pthread_mutex_unlock(&fv_mu);
    return n;
}

/* ---- the file methods ------------------------------------------------- */

#define REAL(f) (((fv_file *)(f))->real)

static int fv_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }

static int fv_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int fv_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
    bool torn = false;
    int code = fv_hit(FV_WRITE, &torn);
    if (code == 0) return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
    /* A disk that fills mid-write leaves part of the buffer written. */
    if (torn && n > 1) REAL(f)->pMethods->xWrite(REAL(f), buf, n / 2, off);
    return code;
}

static int fv_truncate(sqlite3_file *f, sqlite3_int64 size) {
    int code = fv_hit(FV_TRUNCATE, NULL);
    return code ? code : REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int fv_sync(sqlite3_file *f, int flags) {
    int code = fv_hit(FV_SYNC, NULL);
    return code ? code : REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int fv_size(sqlite3_file *f, sqlite3_int64 *size) {
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int fv_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int fv_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }

static int fv_reserved(sqlite3_file *f, int *out) {
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int fv_fcntl(sqlite3_file *f, int op, void *arg) {
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int fv_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }

static int fv_devchar(sqlite3_file *f) {
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

/* The WAL index (shared memory) and memory-mapped reads: passed through
 * when the real file has them (version 2 and 3 of the methods). */
static int fv_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp) {
    const sqlite3_io_methods *m = REAL(f)->pMethods;
    return m->iVersion >= 2 ? m->xShmMap(REAL(f), pg, sz, extend, pp) : SQLITE_IOERR_SHMMAP;
}

static int fv_shm_lock(sqlite3_file *f, int off, int n, int flags) {
    const sqlite3_io_methods *m = REAL(f)->pMethods;
    return m->iVersion >= 2 ? m->xShmLock(REAL(f), off, n, flags) : SQLITE_IOERR_SHMLOCK;
}

static void fv_shm_barrier(sqlite3_file *f) {
    const sqlite3_io_methods *m = REAL(f)->pMethods;
    if (m->iVersion >= 2) m->xShmBarrier(REAL(f));
}

static int fv_shm_unmap(sqlite3_file *f, int del) {
    const sqlite3_io_methods *m = REAL(f)->pMethods;
    return m->iVersion >= 2 ? m->xShmUnmap(REAL(f), del) : SQLITE_OK;
}

static int fv_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
    const sqlite3_io_methods *m = REAL(f)->pMethods;
    if (m->iVersion >= 3) return m->xFetch(REAL(f), off, n, pp);
    *pp = NULL;
    return SQLITE_OK;
}

static int fv_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    const sqlite3_io_methods *m = REAL(f)->pMethods;
    return m->iVersion >= 3 ? m->xUnfetch(REAL(f), off, p) : SQLITE_OK;
}

static const sqlite3_io_methods fv_io = {
    .iVersion = 3,
    .xClose = fv_close,
    .xRead = fv_read,
    .xWrite = fv_write,
    .xTruncate = fv_truncate,
    .xSync = fv_sync,
    .xFileSize = fv_size,
    .xLock = fv_lock,
    .xUnlock = fv_unlock,
    .xCheckReservedLock = fv_reserved,
    .xFileControl = fv_fcntl,
    .xSectorSize = fv_sector,
    .xDeviceCharacteristics = fv_devchar,
    .xShmMap = fv_shm_map,
    .xShmLock = fv_shm_lock,
    .xShmBarrier = fv_shm_barrier,
    .xShmUnmap = fv_shm_unmap,
    .xFetch = fv_fetch,
    .xUnfetch = fv_unfetch,
};

/* ---- the VFS ---------------------------------------------------------- */

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out) {
    (void)vfs;
    fv_file *ff = (fv_file *)f;
    ff->base.pMethods = NULL; /* SQLite closes only what has methods */
    ff->real = (sqlite3_file *)(ff + 1);
    int code = fv_hit(FV_OPEN, NULL);
    if (code) return code;
    int rc = fv_real->xOpen(fv_real, name, ff->real, flags, out);
    if (rc != SQLITE_OK) {
        if (ff->real->pMethods) ff->real->pMethods->xClose(ff->real);
        return rc;
    }
    ff->base.pMethods = &fv_io;
    return SQLITE_OK;
}

static int fv_delete(sqlite3_vfs *v, const char *name, int dirsync) {
    (void)v;
    return fv_real->xDelete(fv_real, name, dirsync);
}

static int fv_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
    (void)v;
    return fv_real->xAccess(fv_real, name, flags, out);
}

static int fv_fullpath(sqlite3_vfs *v, const char *name, int n, char *out) {
    (void)v;
    return fv_real->xFullPathname(fv_real, name, n, out);
}

static void *fv_dlopen(sqlite3_vfs *v, const char *name) {
    (void)v;
    return fv_real->xDlOpen(fv_real, name);
}

static void fv_dlerror(sqlite3_vfs *v, int n, char *msg) {
    (void)v;
    fv_real->xDlError(fv_real, n, msg);
}

static void (*fv_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) {
    (void)v;
    return fv_real->xDlSym(fv_real, h, sym);
}

static void fv_dlclose(sqlite3_vfs *v, void *h) {
    (void)v;
    fv_real->xDlClose(fv_real, h);
}

static int fv_random(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    return fv_real->xRandomness(fv_real, n, out);
}

static int fv_sleep(sqlite3_vfs *v, int us) {
    (void)v;
    return fv_real->xSleep(fv_real, us);
}

static int fv_time(sqlite3_vfs *v, double *out) {
    (void)v;
    return fv_real->xCurrentTime(fv_real, out);
}

static int fv_lasterr(sqlite3_vfs *v, int n, char *msg) {
    (void)v;
    return fv_real->xGetLastError(fv_real, n, msg);
}

static int fv_time64(sqlite3_vfs *v, sqlite3_int64 *out) {
    (void)v;
    return fv_real->xCurrentTimeInt64(fv_real, out);
}

static sqlite3_vfs fv_vfs = {
    .iVersion = 2,
    .zName = "faultvfs",
    .xOpen = fv_open,
    .xDelete = fv_delete,
    .xAccess = fv_access,
    .xFullPathname = fv_fullpath,
    .xDlOpen = fv_dlopen,
    .xDlError = fv_dlerror,
    .xDlSym = fv_dlsym,
    .xDlClose = fv_dlclose,
    .xRandomness = fv_random,
    .xSleep = fv_sleep,
    .xCurrentTime = fv_time,
    .xGetLastError = fv_lasterr,
    .xCurrentTimeInt64 = fv_time64,
};

int faultvfs_install(void) {
    if (fv_real) return SQLITE_OK;
    int rc = sqlite3_initialize();
    if (rc != SQLITE_OK) return rc;
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);
    if (real == NULL || real->iVersion < 2) return SQLITE_ERROR;
    fv_real = real;
    fv_vfs.szOsFile = (int)sizeof(fv_file) + real->szOsFile;
    fv_vfs.mxPathname = real->mxPathname;
    return sqlite3_vfs_register(&fv_vfs, 1);
}
