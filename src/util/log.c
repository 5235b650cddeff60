/*
 * log.c - see log.h.
 */
#include "util/log.h"

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

static void log_vline(int level, const char *fmt, va_list ap, int err) {
    static const char *names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};
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
        int m = vsnprintf(msg, sizeof(msg), fmt, ap);
        if (m < 0) m = 0;
        if (m >= (int)sizeof(msg)) m = (int)sizeof(msg) - 1;
        if (err) {
            int k = snprintf(msg + m, sizeof(msg) - (size_t)m, ": %s", strerror(err));
            m = k > 0 && m + k < (int)sizeof(msg) ? m + k : (int)sizeof(msg) - 1;
        }
        utf8_sanitize(msg, (size_t)m, safe, sizeof(safe) - 1);
        size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + w, sizeof(when) - w, ".%03ldZ", ts.tv_nsec / 1000000);
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
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ld - %s - ",
                  ts.tv_nsec / 1000000, names[level]);
    if (n < (int)sizeof(line)) n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    if (err && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, ": %s", strerror(err));
    if (n >= (int)sizeof(line) - 1) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
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
