/*
 * err.h - the one table of error codes, and the error context that carries a
 * message from where a failure is found up to whoever reports it.
 *
 * Functions return 0 or a negative SE_* code and, when given a non-NULL
 * serr, leave a one-line human message in it.  Library code never logs;
 * the top level (stampd's handlers, stampctl) decides what to print.  Each
 * code carries the HTTP status the API answers with, so the mapping lives
 * here and nowhere else.
 */
#ifndef STAMP_ERR_H
#define STAMP_ERR_H

#include <stddef.h>

/*      name        value  http  text */
#define SE_TABLE(X)                                               \
    X(SE_OK,          0,  200, "ok")                              \
    X(SE_INVAL,      -1,  400, "invalid argument")                \
    X(SE_NOTFOUND,   -2,  404, "not found")                       \
    X(SE_CONFLICT,   -3,  409, "conflict")                        \
    X(SE_EXISTS,     -4,  409, "already exists")                  \
    X(SE_PHASE,      -5,  409, "not allowed in this phase")       \
    X(SE_UNAUTH,     -6,  401, "unauthorized")                    \
    X(SE_FORBIDDEN,  -7,  403, "forbidden")                       \
    X(SE_TOOBIG,     -8,  413, "too large")                       \
    X(SE_IO,         -9,  500, "i/o error")                       \
    X(SE_NOMEM,     -10,  500, "out of memory")                   \
    X(SE_TIMEOUT,   -11,  504, "timed out")                       \
    X(SE_UNAVAIL,   -12,  503, "unavailable")                     \
    X(SE_INTERNAL,  -13,  500, "internal error")                  \
    X(SE_LIMIT,     -14,  429, "limit reached")                   \
    X(SE_METHOD,    -15,  405, "method not allowed")                \
    X(SE_FENCED,    -16,  503, "fenced: no longer the leader")

enum {
#define SE_ENUM(name, val, http, text) name = val,
    SE_TABLE(SE_ENUM)
#undef SE_ENUM
};

#define SERR_MSG_MAX 512

typedef struct serr {
    int code;
    char msg[SERR_MSG_MAX];
} serr;

/* Record code and a formatted message in e (if non-NULL); returns code. */
int serr_set(serr *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix the message already in e with more context ("loading x: ..."). */
int serr_wrap(serr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void serr_clear(serr *e);
const char *se_name(int code);   /* "SE_NOTFOUND" -> "NotFound" style slug */
const char *se_text(int code);
int se_http(int code);
int se_from_http(int status);

#endif
