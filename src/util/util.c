/*
 * util.c - see util.h.
 */
#include "util/util.h"

/* Buffer for reading and copying files: on the heap, since these run on
 * worker and API threads whose stacks are not for 64 KiB frames. */
#define IO_CHUNK (64 * 1024)

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int64_t ms) {
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (s == NULL || *s == '\0') return SE_INVAL;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') return SE_INVAL;
    if (v < min || v > max) return SE_INVAL;
    *out = v;
    return 0;
}

int parse_duration_ms(const char *s, int64_t *ms) {
    if (s == NULL || *s == '\0') return SE_INVAL;
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p)) return SE_INVAL;
        errno = 0;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (errno != 0 || v < 0 || v > 1000000000LL) return SE_INVAL;
        int64_t mul;
        if (strncmp(end, "ms", 2) == 0) { mul = 1; end += 2; }
        else if (*end == 's') { mul = 1000; end++; }
        else if (*end == 'm') { mul = 60000; end++; }
        else if (*end == 'h') { mul = 3600000; end++; }
        else if (*end == 'd') { mul = 86400000; end++; }
        else if (*end == '\0' && p == s) { mul = 1000; }
        else return SE_INVAL;
        if (v > (INT64_MAX - total) / mul) return SE_INVAL;
        total += v * mul;
        p = end;
    }
    *ms = total;
    return 0;
}

/* Display text only (nothing parses it back): a buffer shorter than
 * FMT_DURATION_LEN gets a cut text rather than an error. */
char *fmt_duration(int64_t ms, char *buf, size_t len) {
    if (ms < 0) ms = 0;
    if (ms < 1000) {
        str_fmt_cut(buf, len, "%lldms", (long long)ms);
        return buf;
    }
    int64_t s = ms / 1000;
    int64_t d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
    size_t n = 0;
    buf[0] = '\0';
    if (d) n += str_fmt_cut(buf + n, len - n, "%lldd", (long long)d);
    if (h) n += str_fmt_cut(buf + n, len - n, "%lldh", (long long)h);
    if (m && !d) n += str_fmt_cut(buf + n, len - n, "%lldm", (long long)m);
    if ((sec || n == 0) && !d && !h) str_fmt_cut(buf + n, len - n, "%llds", (long long)sec);
    return buf;
}

char *fmt_time_rfc3339(int64_t ms, char *buf, size_t len) {
    assert(len >= FMT_TIME_LEN);
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        buf[0] = '\0';
    return buf;
}

char *fmt_time_rfc3339_ms(int64_t ms, char *buf, size_t len) {
    assert(len >= FMT_TIME_LEN);
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    size_t n = gmtime_r(&t, &tm) ? strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) : 0;
    /* "" rather than a time without its milliseconds or zone, which would
     * parse as something else. */
    if (n == 0 || str_fmt(buf + n, len - n, NULL, "time", ".%03dZ",
                          (int)(ms % 1000 + 1000) % 1000) != 0)
        buf[0] = '\0';
    return buf;
}

bool name_valid(const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok) return false;
    }
    return s[0] != '-' && s[n - 1] != '-';
}

bool str_copy(char *dst, size_t dstlen, const char *src) {
    if (dstlen == 0) return false;
    size_t n = src ? strlen(src) : 0;
    bool fits = n < dstlen;
    if (!fits) n = dstlen - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}

bool str_has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int str_fmt(char *buf, size_t len, serr *e, const char *what, const char *fmt, ...) {
    assert(len > 0);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < len) return 0;
    buf[0] = '\0';
    if (n < 0) return serr_set(e, SE_INVAL, "%s: cannot be formatted", what);
    return serr_set(e, SE_TOOBIG, "%s too long (at most %zu bytes)", what, len - 1);
}

/* Where a cut at len ends inside a UTF-8 sequence, the length up to that
 * sequence's lead byte; otherwise len. */
static size_t utf8_back_off(const char *s, size_t len) {
    size_t i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) i--;
    if (i == 0 || (unsigned char)s[i - 1] < 0xc0) return len;
    unsigned lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    return len - (i - 1) >= need ? len : i - 1;
}

size_t str_vfmt_cut(char *buf, size_t len, const char *fmt, va_list ap) {
    assert(len > 0);
    int n = vsnprintf(buf, len, fmt, ap);
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    if ((size_t)n < len) return (size_t)n;
    size_t kept = utf8_back_off(buf, len - 1);
    buf[kept] = '\0';
    return kept;
}

size_t str_fmt_cut(char *buf, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t n = str_vfmt_cut(buf, len, fmt, ap);
    va_end(ap);
    return n;
}

int mkdir_p(const char *path, mode_t mode, serr *e) {
    char tmp[PATH_MAX];
    if (!str_copy(tmp, sizeof(tmp), path))
        return serr_set(e, SE_INVAL, "mkdir: path too long (at most %zu bytes)", sizeof(tmp) - 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, mode) == -1 && errno != EEXIST)
            return serr_set(e, SE_IO, "mkdir %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, mode) == -1 && errno != EEXIST)
        return serr_set(e, SE_IO, "mkdir %s: %s", tmp, strerror(errno));
    return 0;
}

bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int read_file(const char *path, size_t max, char **out, size_t *len, serr *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return serr_set(e, errno == ENOENT ? SE_NOTFOUND : SE_IO, "%s: %s", path, strerror(errno));
    sbuf b;
    sbuf_init(&b, max + 1);
    char *chunk = malloc(IO_CHUNK); /* off the stack: callers run on worker threads */
    if (chunk == NULL) {
        close(fd);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    for (;;) {
        ssize_t n = read(fd, chunk, IO_CHUNK);
        if (n == -1 && errno == EINTR) continue;
        if (n == -1) {
            int err = errno;
            close(fd);
            free(chunk);
            sbuf_free(&b);
            return serr_set(e, SE_IO, "read %s: %s", path, strerror(err));
        }
        if (n == 0) break;
        int arc = b.len + (size_t)n > max ? SE_TOOBIG : sbuf_add(&b, chunk, (size_t)n);
        if (arc) {
            close(fd);
            free(chunk);
            sbuf_free(&b);
            /* A buffer that cannot grow is not a file that is too big. */
            if (arc == SE_NOMEM) return serr_set(e, SE_NOMEM, "%s: out of memory", path);
            return serr_set(e, SE_TOOBIG, "%s: larger than %zu bytes", path, max);
        }
    }
    free(chunk);
    close(fd);
    int arc = sbuf_add(&b, "", 1);
    if (arc) {
        sbuf_free(&b);
        if (arc == SE_NOMEM) return serr_set(e, SE_NOMEM, "%s: out of memory", path);
        return serr_set(e, SE_TOOBIG, "%s: larger than %zu bytes", path, max);
    }
    *out = b.data;
    if (len) *len = b.len - 1;
    return 0;
}

/* The last component of path: error texts that may reach a tenant name
 * the file, not the server's directories. */
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int read_file_tail(const char *path, size_t max, char **out, size_t *len, bool *truncated,
                   serr *e) {
    *out = NULL;
    *len = 0;
    if (truncated) *truncated = false;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return serr_set(e, errno == ENOENT ? SE_NOTFOUND : SE_IO, "%s: %s", base_name(path),
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return serr_set(e, SE_IO, "%s: %s", base_name(path), strerror(err));
    }
    size_t size = (size_t)st.st_size, want = size < max ? size : max;
    if (truncated) *truncated = size > max;
    char *buf = malloc(want + 1);
    if (buf == NULL) {
        close(fd);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    size_t got = 0;
    off_t off = (off_t)(size - want);
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static int fsync_dir_of(const char *path) {
    char dir[PATH_MAX];
    if (!str_copy(dir, sizeof(dir), path)) return -1;
    char *slash = strrchr(dir, '/');
    if (slash == NULL) str_copy(dir, sizeof(dir), ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}


int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, serr *e) {
    /* A temporary name of its own per call (mkostemp): threads writing the
     * same file at once each rename a whole file, the last one wins. */
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return serr_set(e, SE_INVAL, "%s: path too long for its temporary file", base_name(path));
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd == -1) return serr_set(e, SE_IO, "create %s: %s", base_name(path), strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n == -1 && errno == EINTR) continue;
        if (n == -1) {
            int err = errno;
            close(fd);
            unlink(tmp);
            return serr_set(e, SE_IO, "write %s: %s", base_name(path), strerror(err));
        }
        p += n;
        left -= (size_t)n;
    }
    if (fchmod(fd, mode) == -1 || fsync(fd) == -1) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return serr_set(e, SE_IO, "sync %s: %s", base_name(path), strerror(err));
    }
    close(fd);
    if (rename(tmp, path) == -1) {
        int err = errno;
        unlink(tmp);
        return serr_set(e, SE_IO, "rename %s: %s", base_name(path), strerror(err));
    }
    fsync_dir_of(path);
    return 0;
}

int remove_tree(const char *path, serr *e) {
    struct stat st;
    if (lstat(path, &st) == -1) {
        if (errno == ENOENT) return 0;
        return serr_set(e, SE_IO, "stat %s: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d == NULL) return serr_set(e, SE_IO, "opendir %s: %s", path, strerror(errno));
        struct dirent *de;
        int rc = 0;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            char child[PATH_MAX];
            if (snprintf(child, sizeof(child), "%s/%s", path, de->d_name) >= (int)sizeof(child)) {
                rc = serr_set(e, SE_INVAL, "path too long under %s", path);
                break;
            }
            if ((rc = remove_tree(child, e)) != 0) break;
        }
        closedir(d);
        if (rc != 0) return rc;
        if (rmdir(path) == -1 && errno != ENOENT)
            return serr_set(e, SE_IO, "rmdir %s: %s", path, strerror(errno));
        return 0;
    }
    if (unlink(path) == -1 && errno != ENOENT)
        return serr_set(e, SE_IO, "unlink %s: %s", path, strerror(errno));
    return 0;
}

static int copy_file(const char *src, const char *dst, mode_t mode, serr *e) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    /* Gone since it was listed (a tree that is written while copied): not
     * part of the copy. */
    if (in == -1) return errno == ENOENT ? 0 : serr_set(e, SE_IO, "open %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 0777);
    if (out == -1) {
        close(in);
        return serr_set(e, SE_IO, "create %s: %s", dst, strerror(errno));
    }
    char *buf = malloc(IO_CHUNK);
    if (buf == NULL) {
        close(in);
        close(out);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, IO_CHUNK);
        if (n == -1 && errno == EINTR) continue;
        if (n <= 0) {
            if (n < 0) rc = serr_set(e, SE_IO, "read %s: %s", src, strerror(errno));
            break;
        }
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w == -1 && errno == EINTR) continue;
            if (w == -1) {
                rc = serr_set(e, SE_IO, "write %s: %s", dst, strerror(errno));
                break;
            }
            off += w;
        }
        if (rc) break;
    }
    free(buf);
    if (rc == 0 && fsync(out) == -1) rc = serr_set(e, SE_IO, "fsync %s: %s", dst, strerror(errno));
    close(in);
    close(out);
    return rc;
}

int copy_tree(const char *src, const char *dst, serr *e) {
    struct stat st;
    if (lstat(src, &st) == -1) return errno == ENOENT ? 0 : serr_set(e, SE_IO, "stat %s: %s", src, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (!S_ISREG(st.st_mode)) return 0; /* sockets, fifos, links: not state */
        return copy_file(src, dst, st.st_mode, e);
    }
    int rc = mkdir_p(dst, 0700, e);
    if (rc) return rc;
    DIR *d = opendir(src);
    if (d == NULL) return serr_set(e, SE_IO, "opendir %s: %s", src, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        /* The paths on the heap: this recurses once per directory level. */
        char *a = NULL, *b = NULL;
        if (asprintf(&a, "%s/%s", src, de->d_name) < 0) a = NULL;
        if (asprintf(&b, "%s/%s", dst, de->d_name) < 0) b = NULL;
        if (a == NULL || b == NULL || strlen(a) >= PATH_MAX || strlen(b) >= PATH_MAX) {
            free(a);
            free(b);
            rc = serr_set(e, SE_INVAL, "path too long under %s", src);
            break;
        }
        rc = copy_tree(a, b, e);
        free(a);
        free(b);
        if (rc != 0) break;
    }
    closedir(d);
    return rc;
}

void sbuf_init(sbuf *b, size_t max) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void sbuf_free(sbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void sbuf_reset(sbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

int sbuf_add(sbuf *b, const void *data, size_t len) {
    if (len > b->max || b->len > b->max - len) return SE_TOOBIG;
    if (b->len + len + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + len + 1) ncap *= 2;
        if (ncap > b->max + 1) ncap = b->max + 1;
        char *n = realloc(b->data, ncap);
        if (n == NULL) return SE_NOMEM;
        b->data = n;
        b->cap = ncap;
    }
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int sbuf_adds(sbuf *b, const char *s) { return sbuf_add(b, s, strlen(s)); }

int sbuf_addf(sbuf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) return SE_INVAL;
    if ((size_t)n < sizeof(small)) return sbuf_add(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL) return SE_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = sbuf_add(b, big, (size_t)n);
    free(big);
    return rc;
}

static void hex32(const unsigned char md[32], char out[65]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

void sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    hex32(md, out);
}

int sha256_file_hex(const char *path, char out[65], int64_t *size, serr *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) return serr_set(e, SE_IO, "open %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        close(fd);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    char *buf = malloc(IO_CHUNK);
    if (buf == NULL) {
        EVP_MD_CTX_free(ctx);
        close(fd);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    int64_t total = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, IO_CHUNK);
        if (n == -1 && errno == EINTR) continue;
        if (n < 0) {
            rc = serr_set(e, SE_IO, "read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += n;
    }
    free(buf);
    close(fd);
    if (rc == 0) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        EVP_DigestFinal_ex(ctx, md, &mdlen);
        hex32(md, out);
        if (size) *size = total;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Length of the valid UTF-8 character at s (n bytes left), 0 if none. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c == 0) return 0;
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

bool utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_char(p + i, n - i);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

size_t utf8_cut(const char *s, size_t n, size_t max) {
    if (n <= max) return n;
    size_t i = max;
    while (i > 0 && (((unsigned char)s[i]) & 0xc0) == 0x80) i--;
    return i;
}

char *utf8_sanitize(const char *s, size_t n, char *buf, size_t max) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    if (max == 0) return buf;
    while (i < n) {
        size_t k = utf8_char(p + i, n - i);
        bool esc = k == 0 || (p[i] < 0x20 && p[i] != '\t');
        size_t need = esc ? 4 : k;
        if (o + need + 3 >= max) { /* room for "..." and the NUL */
            if (o + 3 < max) memcpy(buf + o, "...", 3), o += 3;
            break;
        }
        if (esc) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[p[i] >> 4];
            buf[o++] = hex[p[i] & 15];
            i++;
        } else {
            memcpy(buf + o, p + i, k);
            o += k;
            i += k;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* ---- addresses ---- */

int tcp_addr_free(const char *addr, const char *what, serr *e) {
    char host[128];
    if (!str_copy(host, sizeof(host), addr)) return serr_set(e, SE_INVAL, "%s address too long", what);
    char *colon = strrchr(host, ':');
    if (colon == NULL) return serr_set(e, SE_INVAL, "%s address \"%s\" is not ADDR:PORT", what, addr);
    *colon = '\0';
    const char *port = colon + 1, *h = host;
    int64_t pn;
    if (parse_i64(port, 1, 65535, &pn) != 0)
        return serr_set(e, SE_INVAL, "%s address \"%s\": bad port", what, addr);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [::1]:7481 */
        host[hl - 1] = '\0';
        h = host + 1;
    }
    if (*h == '\0' || strcmp(h, "*") == 0) h = NULL; /* every address, as HAProxy reads it */
    struct addrinfo hints = {.ai_family = h ? AF_UNSPEC : AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(h, port, &hints, &ai);
    if (g != 0 || ai == NULL)
        return serr_set(e, SE_INVAL, "%s address \"%s\": %s", what, addr, gai_strerror(g));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        freeaddrinfo(ai);
        return serr_set(e, SE_IO, "socket: %s", strerror(err));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = 0;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int err = errno;
        if (err == EADDRINUSE)
            rc = serr_set(e, SE_UNAVAIL, "%s address %s is in use by another process", what, addr);
        else
            rc = serr_set(e, SE_IO, "%s address %s: cannot bind: %s", what, addr, strerror(err));
    }
    close(fd);
    freeaddrinfo(ai);
    return rc;
}

bool sock_peer_gone(int fd) {
    if (fd < 0) return false;
    char ch;
    ssize_t n = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
