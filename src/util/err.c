/*
 * err.c - see err.h.  The table is the only place codes are defined.
 */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

static const struct {
    int code;
    int http;
    const char *name;
    const char *text;
} se_tab[] = {
#define SE_ROW(name, val, http, text) {val, http, #name, text},
    SE_TABLE(SE_ROW)
#undef SE_ROW
};

#define SE_NTAB (sizeof(se_tab) / sizeof(se_tab[0]))

static int se_index(int code) {
    for (size_t i = 0; i < SE_NTAB; i++)
        if (se_tab[i].code == code) return (int)i;
    return -1;
}

int serr_set(serr *e, int code, const char *fmt, ...) {
    if (e == NULL) return code;
    /* A message longer than SERR_MSG_MAX is cut (never inside a UTF-8
     * character, so it still goes out as JSON): it is for a person. */
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->code = code;
    return code;
}

int serr_wrap(serr *e, const char *fmt, ...) {
    if (e == NULL) return SE_INTERNAL;
    char prefix[SERR_MSG_MAX], old[SERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof(old));
    /* Cut like serr_set: the end of a long message goes first. */
    str_fmt_cut(e->msg, sizeof(e->msg), "%s: %s", prefix, old);
    return e->code;
}

void serr_clear(serr *e) {
    if (e == NULL) return;
    e->code = 0;
    e->msg[0] = '\0';
}

const char *se_name(int code) {
    int i = se_index(code);
    return i < 0 ? "SE_UNKNOWN" : se_tab[i].name;
}

const char *se_text(int code) {
    int i = se_index(code);
    return i < 0 ? "unknown error" : se_tab[i].text;
}

int se_http(int code) {
    int i = se_index(code);
    return i < 0 ? 500 : se_tab[i].http;
}

int se_from_http(int status) {
    if (status >= 200 && status < 300) return SE_OK;
    switch (status) {
    case 400: return SE_INVAL;
    case 401: return SE_UNAUTH;
    case 403: return SE_FORBIDDEN;
    case 404: return SE_NOTFOUND;
    case 405: return SE_METHOD;
    case 409: return SE_CONFLICT;
    case 413: return SE_TOOBIG;
    case 429: return SE_LIMIT;
    case 503: return SE_UNAVAIL;
    case 504: return SE_TIMEOUT;
    default: return SE_INTERNAL;
    }
}
