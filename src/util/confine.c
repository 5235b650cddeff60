/*
 * confine.c - see confine.h.  Pure helpers, no logging, no stamp error
 * table: stamp-run is built from this file and its own main only.
 */
#include "util/confine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- Landlock ---- */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

int confine_landlock_abi(void) {
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v > 0 ? (int)v : 0;
}

uint64_t confine_landlock_fs_mask(int abi) {
    if (abi < 1) return 0;
    uint64_t m = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0-12 */
    if (abi >= 2) m |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) m |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5) m |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return m;
}

/* ---- disk usage ---- */
static int du_fd(int dfd, int64_t *bytes, long *entries, int depth) {
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (*entries <= 0) {
            rc = -1;
            break;
        }
        (*entries)--;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        int64_t b = (int64_t)st.st_blocks * 512;
        *bytes += b > CONFINE_ENTRY_COST ? b : CONFINE_ENTRY_COST;
        if (S_ISDIR(st.st_mode) && depth < 64) {
            int sub = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) rc = du_fd(sub, bytes, entries, depth + 1);
        }
    }
    closedir(d);
    return rc;
}

int confine_du(const char *path, int64_t *bytes, long *entries) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    *bytes += (int64_t)st.st_blocks * 512;
    if (!S_ISDIR(st.st_mode)) return 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    return du_fd(fd, bytes, entries, 0);
}

int64_t confine_free_bytes(const char *dir) {
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0) return INT64_MAX;
    int64_t bytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    /* Some filesystems (btrfs) report no inode count: only bytes count. */
    if (sv.f_files > 0) {
        int64_t inodes = (int64_t)sv.f_favail * CONFINE_ENTRY_COST;
        if (inodes < bytes) bytes = inodes;
    }
    return bytes;
}

/* ---- logcap ---- */
static int pwrite_all(int fd, const char *p, size_t n, uint64_t off) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

void logcap_init(logcap *l, int fd, uint64_t max) {
    memset(l, 0, sizeof(*l));
    l->fd = fd;
    l->max = max < 2 ? 2 : max;
    l->head_max = l->max / 2;
    l->tail_cap = l->max - l->head_max;
}

static void ring_add(logcap *l, const char *p, size_t n) {
    size_t cap = (size_t)l->tail_cap;
    if (n >= cap) { /* only the last cap bytes can stay */
        memcpy(l->ring, p + (n - cap), cap);
        l->ring_pos = 0;
        l->ring_len = cap;
        return;
    }
    size_t at = (l->ring_pos + l->ring_len) % cap; /* where the next byte goes */
    size_t first = cap - at < n ? cap - at : n;
    memcpy(l->ring + at, p, first);
    memcpy(l->ring, p + first, n - first);
    l->ring_len += n;
    if (l->ring_len > cap) {
        l->ring_pos = (l->ring_pos + (l->ring_len - cap)) % cap;
        l->ring_len = cap;
    }
}

/* The file holds exactly the first max bytes: keep the head there and move
 * the rest (the start of the tail) into the ring. */
static int start_cut(logcap *l) {
    l->ring = malloc((size_t)l->tail_cap);
    if (l->ring == NULL) return -1;
    size_t want = (size_t)(l->max - l->head_max), got = 0;
    while (got < want) {
        ssize_t r = pread(l->fd, l->ring + got, want - got, (off_t)(l->head_max + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    /* Bytes the file never took (write errors) are not in it to read back. */
    memset(l->ring + got, 0, want - got);
    l->ring_pos = 0;
    l->ring_len = want;
    l->cut = true;
    return 0;
}

int logcap_write(logcap *l, const void *data, size_t n) {
    const char *p = data;
    if (!l->cut) {
        uint64_t room = l->total < l->max ? l->max - l->total : 0;
        size_t now = n < room ? n : (size_t)room;
        if (now > 0 && pwrite_all(l->fd, p, now, l->total) != 0) l->lost += now;
        l->total += now;
        p += now;
        n -= now;
        if (n == 0) return 0;
        if (start_cut(l) != 0) {
            l->total += n;
            l->lost += n;
            return -1;
        }
    }
    ring_add(l, p, n);
    l->total += n;
    l->dirty = true;
    return 0;
}

size_t logcap_marker(uint64_t dropped, char *buf, size_t len) {
    int n = snprintf(buf, len, "\n[stamp: %llu bytes of output cut here]\n",
                     (unsigned long long)dropped);
    return n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
}

uint64_t logcap_dropped(const logcap *l) {
    uint64_t cut = l->cut ? l->total - l->head_max - l->ring_len : 0;
    return cut + l->lost;
}

int logcap_flush(logcap *l) {
    if (!l->cut || !l->dirty || l->ring == NULL) return 0;
    char m[LOGCAP_MARKER_MAX];
    size_t mlen = logcap_marker(logcap_dropped(l), m, sizeof(m));
    uint64_t off = l->head_max;
    size_t cap = (size_t)l->tail_cap;
    size_t first = cap - l->ring_pos < l->ring_len ? cap - l->ring_pos : l->ring_len;
    int rc = pwrite_all(l->fd, m, mlen, off);
    off += mlen;
    if (rc == 0) rc = pwrite_all(l->fd, l->ring + l->ring_pos, first, off);
    off += first;
    if (rc == 0) rc = pwrite_all(l->fd, l->ring, l->ring_len - first, off);
    off += l->ring_len - first;
    if (rc == 0 && ftruncate(l->fd, (off_t)off) != 0) rc = -1;
    if (rc == 0) l->dirty = false;
    return rc;
}

void logcap_done(logcap *l) {
    free(l->ring);
    l->ring = NULL;
}
