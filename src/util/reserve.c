/*
 * reserve.c - see reserve.h.  The release path runs inside the store's
 * commit, under the store's lock: it only unlinks a file and sets flags.
 */
#include "util/reserve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util/util.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char rpath[PATH_MAX];
static int64_t rbytes;
static bool held;
static int releases;

static int fill(serr *e) {
    char tmp[PATH_MAX + 8]; /* rpath is under PATH_MAX: ".tmp" always fits */
    snprintf(tmp, sizeof(tmp), "%s.tmp", rpath);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return serr_set(e, SE_IO, "store reserve: open: %s", strerror(errno));
    int err = posix_fallocate(fd, 0, (off_t)rbytes);
    if (err == 0 && fsync(fd) != 0) err = errno;
    close(fd);
    if (err == 0 && rename(tmp, rpath) != 0) err = errno;
    if (err) {
        unlink(tmp);
        return serr_set(e, SE_IO, "store reserve of %lld bytes: %s", (long long)rbytes,
                        strerror(err));
    }
    held = true;
    return 0;
}

int reserve_init(const char *path, int64_t bytes, serr *e) {
    pthread_mutex_lock(&mu);
    int rc = 0;
    if (!str_copy(rpath, sizeof(rpath), path)) rc = serr_set(e, SE_INVAL, "store reserve: path too long");
    rbytes = bytes;
    held = false;
    if (rc == 0 && bytes <= 0) unlink(rpath);
    else if (rc == 0) rc = fill(e);
    pthread_mutex_unlock(&mu);
    return rc;
}

bool reserve_release(void) {
    pthread_mutex_lock(&mu);
    bool was = held;
    if (held && unlink(rpath) == 0) {
        held = false;
        releases++;
    }
    pthread_mutex_unlock(&mu);
    return was;
}

int reserve_refill(int64_t min_free, serr *e) {
    pthread_mutex_lock(&mu);
    int rc = 0;
    if (!held && rbytes > 0 && rpath[0]) {
        /* The file is gone: ask about its directory. */
        char dir[PATH_MAX];
        str_copy(dir, sizeof(dir), rpath);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        struct statvfs sv;
        if (statvfs(slash ? dir : ".", &sv) != 0) {
            pthread_mutex_unlock(&mu);
            return serr_set(e, SE_IO, "store reserve: statvfs: %s", strerror(errno));
        }
        int64_t avail = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
        if (avail - rbytes >= min_free) rc = fill(e) == 0 ? 1 : SE_IO;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

int reserve_take_releases(void) {
    pthread_mutex_lock(&mu);
    int n = releases;
    releases = 0;
    pthread_mutex_unlock(&mu);
    return n;
}

bool reserve_held(void) {
    pthread_mutex_lock(&mu);
    bool h = held;
    pthread_mutex_unlock(&mu);
    return h;
}
