/*
 * log.h - leveled logging for the programs' top level (OpenBSD style).
 * log_warn appends strerror(errno); log_warnx does not.  fatal exits.
 * Lines go to stderr as "2026-01-25 01:00:00 - INFO - message" (text), or
 * with log_set_json(true) as one JSON object a line,
 * {"time":"2026-01-25T01:00:00.000Z","level":"INFO","msg":"message"}.
 * Thread safe: each line is one write(2).
 */
#ifndef STAMP_LOG_H
#define STAMP_LOG_H

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

#include <stdbool.h>

void log_init(int level);
void log_set_json(bool on);
int log_level_parse(const char *s); /* "DEBUG"/"INFO"/...; -1 when unknown */
int log_getlevel(void);
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
