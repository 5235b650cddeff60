/*
 * log.h - leveled logging for the programs' top level (OpenBSD style).
 * log_warn appends strerror(errno); log_warnx does not.  fatal exits.
 * Lines go to stderr as "2026-01-25 01:00:00 - INFO - message", the shape of
 * seed 004's sample.  Thread safe: each line is one write(2).
 */
#ifndef STAMP_LOG_H
#define STAMP_LOG_H

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_init(int level);
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
