/*
 * util.h - small helpers every module uses: clocks, durations, names, files,
 * and a bounded growable buffer.  No global state; thread safe.
 */
#ifndef STAMP_UTIL_H
#define STAMP_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

/* Wall clock and monotonic clock in milliseconds. */
int64_t now_ms(void);
int64_t mono_ms(void);
void sleep_ms(int64_t ms);

/* "1500ms", "30s", "10m", "72h", "2d", or a bare number of seconds.
 * Returns 0 and the value in *ms, or SE_INVAL. */
int parse_duration_ms(const char *s, int64_t *ms);
/* Renders 90000 as "1m30s", 0 as "0s"; returns buf.  For people, not
 * parsers: it drops the smaller units of long durations ("2d3h"), and a
 * buffer under FMT_DURATION_LEN (17 bytes hold the longest, "106751991167d23h")
 * gets a cut text. */
#define FMT_DURATION_LEN 24
char *fmt_duration(int64_t ms, char *buf, size_t len);
/* RFC 3339 UTC with seconds: "2026-01-25T01:00:00Z".  len must be at least
 * FMT_TIME_LEN (which holds any year gmtime gives); a time gmtime cannot
 * represent renders as "". */
#define FMT_TIME_LEN 32
char *fmt_time_rfc3339(int64_t ms, char *buf, size_t len);
/* The same with milliseconds: "2026-01-25T01:00:00.123Z" (25 bytes). */
char *fmt_time_rfc3339_ms(int64_t ms, char *buf, size_t len);
/* Strict integer parsing (whole string, range-checked). */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* A DNS-label-like name: [a-z0-9]([a-z0-9-]*[a-z0-9])?, 1..max chars. */
bool name_valid(const char *s, size_t max);

/* Bounded copy: always NUL-terminates; returns false when truncated. */
bool str_copy(char *dst, size_t dstlen, const char *src);
bool str_has_prefix(const char *s, const char *prefix);

/* Formatting into a fixed buffer; pick by what a cut would do.
 *
 * str_fmt: for text that is used as a name (a path, a URL, a key, a label,
 * a command, anything parsed): a result that does not fit is wrong, not
 * shorter.  Returns 0, or SE_TOOBIG with "<what> too long (at most N
 * bytes)" in e; buf then holds "" so a caller that ignores the error
 * cannot use a cut name.
 *
 * str_fmt_cut: for text only a person reads (a log line, a message, a
 * table cell): a cut is accepted on purpose and never splits a UTF-8
 * character.  Always NUL terminated (len > 0); returns the length kept,
 * always < len, so `n += str_fmt_cut(buf + n, len - n, ...)` stays inside
 * buf. */
int str_fmt(char *buf, size_t len, serr *e, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
size_t str_fmt_cut(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t str_vfmt_cut(char *buf, size_t len, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Files.  All descriptors are opened O_CLOEXEC. */
int mkdir_p(const char *path, mode_t mode, serr *e);
/* Reads at most max bytes; a larger file is SE_TOOBIG.  *out is NUL
 * terminated and must be freed. */
int read_file(const char *path, size_t max, char **out, size_t *len, serr *e);
/* The last max bytes of a file (a log that may be large), never following
 * a symlink; *truncated (may be NULL) tells whether bytes before them were
 * left out.  A missing file is SE_NOTFOUND.  *out is NUL terminated and must
 * be freed; it may hold NUL bytes (*len is its length). */
int read_file_tail(const char *path, size_t max, char **out, size_t *len, bool *truncated,
                   serr *e);
/* write to path.tmp, fsync, rename, fsync the directory. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, serr *e);
/* rm -rf; a missing path is fine. */
int remove_tree(const char *path, serr *e);
/* cp -r of regular files and directories. */
int copy_tree(const char *src, const char *dst, serr *e);
bool path_exists(const char *path);

/* Bounded growable byte buffer (curl's dynbuf idea): refuses to grow past
 * max and reports SE_TOOBIG instead. */
typedef struct sbuf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
} sbuf;

void sbuf_init(sbuf *b, size_t max);
void sbuf_free(sbuf *b);
void sbuf_reset(sbuf *b);
int sbuf_add(sbuf *b, const void *data, size_t len);
int sbuf_addf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sbuf_adds(sbuf *b, const char *s);

/* UTF-8.  utf8_valid: the n bytes are well-formed UTF-8 (no overlongs, no
 * surrogates, nothing past U+10FFFF) and hold no NUL.  utf8_cut: the
 * largest length <= max that ends on a character boundary of s (which must
 * be valid).  utf8_sanitize: a copy of s[0..n) that is valid UTF-8 and at
 * most max bytes (plus the NUL): every byte that is not part of a valid
 * character, and every NUL or other C0 control except tab, becomes "\xNN",
 * and a cut never splits a character or an escape; "..." marks a cut.
 * Returns buf. */
bool utf8_valid(const char *s, size_t n);
size_t utf8_cut(const char *s, size_t n, size_t max);
char *utf8_sanitize(const char *s, size_t n, char *buf, size_t max);

/* Lowercase hex SHA-256 of data (65 bytes with the NUL). */
void sha256_hex(const void *data, size_t len, char out[65]);
int sha256_file_hex(const char *path, char out[65], int64_t *size, serr *e);

/* tcp_addr_free: nothing listens on "ADDR:PORT" (an IPv4 address, "[IPv6]",
 * a host name, or empty or "*" for every IPv4 address, as HAProxy reads it).  A test socket is bound WITHOUT SO_REUSEPORT,
 * so a listener that set it (HAProxy does) still counts as in use: two
 * sockets sharing a port with SO_REUSEPORT split its connections between
 * them.  SO_REUSEADDR is set, so connections in TIME_WAIT do not count.
 * SE_UNAVAIL "ADDR:PORT is in use" when taken; `what` names the address in
 * the message ("front door", "API"). */
int tcp_addr_free(const char *addr, const char *what, serr *e);
/* Whether the peer of a connected socket closed it (a peek finds the end of
 * the stream, or an error): how a suspended HTTP connection, which nobody
 * reads, notices its client went away.  Reads nothing. */
bool sock_peer_gone(int fd);

#endif
