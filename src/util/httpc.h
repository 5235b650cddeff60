/*
 * httpc.h - one small HTTP client over libcurl for everything stamp asks
 * over HTTP: health probes, /metrics scrapes, and stampctl's API calls.
 * Response bodies are bounded.  Thread safe (one easy handle per call;
 * httpc_global_init once at program start).
 */
#ifndef STAMP_HTTPC_H
#define STAMP_HTTPC_H

#include <stdint.h>

#include "util/util.h"

typedef struct httpc_req {
    const char *method;       /* "GET" when NULL */
    const char *url;
    const char *bearer;       /* Authorization: Bearer ... when set */
    const char *body;         /* request body when set (may be empty, body_len 0) */
    size_t body_len;
    const char *const *headers; /* extra "Name: value", NULL terminated */
    int64_t timeout_ms;
    int64_t stall_ms;         /* > 0: give up when under 1 KiB/s moved for this long */
    size_t max_response;      /* default 4 MiB */
    const char *content_type; /* of body; default application/json */
} httpc_req;

void httpc_global_init(void);
/* 0 with *status and the body in resp (caller sbuf_free's), or SE_UNAVAIL
 * (connection refused, reset), SE_TIMEOUT, SE_TOOBIG. */
int httpc_do(const httpc_req *req, long *status, sbuf *resp, serr *e);
/* Value of the first sample of metric `name` in a Prometheus text body. */
int prom_value(const char *body, const char *name, double *out);
/* s percent-encoded for a URL (libcurl's escape), malloc'd; NULL when out
 * of memory. */
char *httpc_escape(const char *s);

#endif
