/*
 * httpc.c - see httpc.h.
 */
#include "util/httpc.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

void httpc_global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg) {
    sbuf *b = arg;
    size_t n = size * nmemb;
    if (sbuf_add(b, ptr, n) != 0) return 0; /* makes curl fail with WRITE_ERROR */
    return n;
}

int httpc_do(const httpc_req *req, long *status, sbuf *resp, serr *e) {
    CURL *h = curl_easy_init();
    if (h == NULL) return serr_set(e, SE_NOMEM, "curl_easy_init failed");
    struct curl_slist *hdrs = NULL;
    char auth[9000];
    int rc = 0;
    sbuf_init(resp, req->max_response ? req->max_response : 4u << 20);
    /* A cut token or media type would be sent as a different one. */
    if (req->bearer) {
        if ((rc = str_fmt(auth, sizeof(auth), e, "bearer token", "Authorization: Bearer %s",
                          req->bearer)) != 0)
            goto fail;
        hdrs = curl_slist_append(hdrs, auth);
    }
    char ctype[160];
    if (req->body) {
        if ((rc = str_fmt(ctype, sizeof(ctype), e, "content type", "Content-Type: %s",
                          req->content_type ? req->content_type : "application/json")) != 0)
            goto fail;
        hdrs = curl_slist_append(hdrs, ctype);
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    for (int i = 0; req->headers && req->headers[i]; i++) hdrs = curl_slist_append(hdrs, req->headers[i]);
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms > 0 ? req->timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(req->timeout_ms > 0 && req->timeout_ms < 5000 ? req->timeout_ms : 5000));
    if (req->stall_ms > 0) { /* curl counts whole seconds */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)((req->stall_ms + 999) / 1000));
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    const char *method = req->method ? req->method : "GET";
    if (req->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
    }
    if (strcmp(method, "GET") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0 && req->body == NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        rc = serr_set(e, SE_TIMEOUT, "%s: timed out", req->url);
    } else if (cc == CURLE_WRITE_ERROR) {
        rc = serr_set(e, SE_TOOBIG, "%s: response too large", req->url);
    } else {
        rc = serr_set(e, SE_UNAVAIL, "%s: %s", req->url, curl_easy_strerror(cc));
    }
fail:
    if (rc) sbuf_free(resp);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}

int prom_value(const char *body, const char *name, double *out) {
    size_t n = strlen(name);
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (*p == '#') continue;
        if (strncmp(p, name, n) != 0) continue;
        const char *q = p + n;
        if (*q == '{') {
            q = strchr(q, '}');
            if (q == NULL) return SE_INVAL;
            q++;
        }
        if (*q != ' ') continue;
        char *end;
        double v = strtod(q + 1, &end);
        if (end == q + 1) return SE_INVAL;
        *out = v;
        return 0;
    }
    return SE_NOTFOUND;
}

char *httpc_escape(const char *s) {
    char *c = curl_easy_escape(NULL, s, 0);
    if (c == NULL) return NULL;
    char *d = strdup(c);
    curl_free(c);
    return d;
}
