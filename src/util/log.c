/*
 * log.c - see log.h.
 */
#include "util/log.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util/util.h"

static int log_lvl = LOG_INFO;
static bool log_as_json;

void log_init(int level) { log_lvl = level; }
void log_set_json(bool on) { log_as_json = on; }
int log_getlevel(void) { return log_lvl; }

int log_level_parse(const char *s) {
    static const char *names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};
    if (s == NULL) return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    if (strcasecmp(s, "WARN") == 0) return LOG_WARN;
    return -1;
}

/* A line longer than its buffer is cut (str_fmt_cut: never inside a UTF-8
 * character): a log line is for a person, and a cut one still says what
 * happened. */
__attribute__((format(printf, 2, 0))) static void log_vline(int level, const char *fmt, va_list ap, int err) {
    static const char *names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};
    assert(level >= LOG_ERROR && level <= LOG_DEBUG);
    if (level > log_lvl) return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (log_as_json) {
        /* jansson escapes the message; bytes that are not UTF-8 are
         * written as \xNN first (jansson refuses them). */
        char msg[1536], safe[2048], when[40];
        size_t m = str_vfmt_cut(msg, sizeof(msg), fmt, ap);
        if (err) m += str_fmt_cut(msg + m, sizeof(msg) - m, ": %s", strerror(err));
        utf8_sanitize(msg, m, safe, sizeof(safe) - 1);
        size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        str_fmt_cut(when + w, sizeof(when) - w, ".%03ldZ", ts.tv_nsec / 1000000);
        json_t *o = json_pack("{s:s,s:s,s:s}", "time", when, "level", names[level], "msg", safe);
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (text == NULL) return;
        size_t tl = strlen(text);
        char *out = realloc(text, tl + 2);
        if (out == NULL) {
            free(text);
            return;
        }
        out[tl] = '\n';
        ssize_t wr = write(STDERR_FILENO, out, tl + 1);
        (void)wr;
        free(out);
        return;
    }
    /* room is one short of the buffer: the newline always fits. */
    size_t room = sizeof(line) - 1;
    size_t n = strftime(line, room, "%Y-%m-%d %H:%M:%S", &tm);
    n += str_fmt_cut(line + n, room - n, ".%03ld - %s - ", ts.tv_nsec / 1000000, names[level]);
    n += str_vfmt_cut(line + n, room - n, fmt, ap);
    if (err) n += str_fmt_cut(line + n, room - n, ": %s", strerror(err));
    assert(n < room);
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

#define LOG_FN(fn, level, witherr)                  \
    void fn(const char *fmt, ...) {                 \
        int saved = errno;                          \
        va_list ap;                                 \
        va_start(ap, fmt);                          \
        log_vline(level, fmt, ap, witherr ? saved : 0); \
        va_end(ap);                                 \
        errno = saved;                              \
    }

LOG_FN(log_warn, LOG_WARN, 1)
LOG_FN(log_warnx, LOG_WARN, 0)
LOG_FN(log_error, LOG_ERROR, 0)
LOG_FN(log_info, LOG_INFO, 0)
LOG_FN(log_debug, LOG_DEBUG, 0)

_Noreturn void fatal(const char *fmt, ...) {
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    log_vline(LOG_ERROR, fmt, ap, saved);
    va_end(ap);
    exit(1);
}

_Noreturn void fatalx(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vline(LOG_ERROR, fmt, ap, 0);
    va_end(ap);
    exit(1);
}
