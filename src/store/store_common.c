/*
 * store_common.c - what both store backends do the same way: the messages
 * they share ("stamp x not found"), limits, times, and a resource's
 * documents encoded (and bounded) for a row.  See store_backend.h.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_backend.h"
#include "util/util.h"
#include "util/yamljson.h"

/* "Stamp" -> "stamp" for messages like "stamp synaxis-weu-001 not found". */
const char *store_kind_lower(const char *kind, char *buf, size_t len) {
    size_t i = 0;
    for (; kind[i] && i + 1 < len; i++) {
        char c = kind[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    buf[i] = '\0';
    return buf;
}

int store_err_notfound(serr *e, const char *kind, const char *name) {
    char k[RES_KIND_MAX];
    return serr_set(e, SE_NOTFOUND, "%s %s not found", store_kind_lower(kind, k, sizeof(k)), name);
}

int store_clamp_limit(int limit) {
    if (limit <= 0) return STORE_LIMIT_DEFAULT;
    return limit > STORE_LIMIT_MAX ? STORE_LIMIT_MAX : limit;
}

/* RFC 3339 UTC with milliseconds: "2026-01-25T01:00:00.123Z". */
char *store_fmt_time_ms(int64_t ms, char *buf, size_t len) {
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    char base[40];
    if (gmtime_r(&t, &tm) == NULL || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        base[0] = '\0';
    /* Callers pass STORE_TIME_MS_LEN, which holds the longest base (39) and
     * ".123Z": a cut here is a caller's bug. */
    int w = snprintf(buf, len, "%s.%03dZ", base, (int)frac);
    assert(w > 0 && (size_t)w < len);
    (void)w;
    return buf;
}

/* ---- resources as text ------------------------------------------------ */

/* Canonical text of the five JSON members of a resource. */
void store_res_text_free(store_res_text *t) {
    free(t->labels);
    free(t->annotations);
    free(t->spec);
    free(t->status);
    free(t->finalizers);
    memset(t, 0, sizeof(*t));
}

static int dump_member(const json_t *v, bool array, const char *what, char **out, serr *e) {
    if (v == NULL) {
        *out = strdup(array ? "[]" : "{}");
    } else {
        if (array ? !json_is_array(v) : !json_is_object(v))
            return serr_set(e, SE_INVAL, "store: %s must be an %s", what,
                            array ? "array" : "object");
        *out = json_text(v, STORE_JSON_FLAGS); /* NULL when jansson lost a key */
    }
    if (*out == NULL) return serr_set(e, SE_NOMEM, "store: cannot encode %s", what);
    return 0;
}

int store_res_encode(const resource *r, store_res_text *t, serr *e) {
    memset(t, 0, sizeof(*t));
    int rc;
    if ((rc = dump_member(r->labels, false, "labels", &t->labels, e)) ||
        (rc = dump_member(r->annotations, false, "annotations", &t->annotations, e)) ||
        (rc = dump_member(r->spec, false, "spec", &t->spec, e)) ||
        (rc = dump_member(r->status, false, "status", &t->status, e)) ||
        (rc = dump_member(r->finalizers, true, "finalizers", &t->finalizers, e)))
        goto fail;
    size_t i;
    json_t *f;
    json_array_foreach(r->finalizers, i, f) {
        if (!json_is_string(f)) {
            rc = serr_set(e, SE_INVAL, "store: finalizers must be strings");
            goto fail;
        }
    }
    char k[RES_KIND_MAX];
    size_t doc = strlen(t->spec) + strlen(t->status);
    if (doc > STORE_DOC_MAX) {
        rc = serr_set(e, SE_TOOBIG, "%s %s: spec and status are %zu bytes, more than %d",
                      store_kind_lower(r->kind, k, sizeof(k)), r->name, doc, STORE_DOC_MAX);
        goto fail;
    }
    size_t meta = strlen(t->labels) + strlen(t->annotations) + strlen(t->finalizers);
    if (meta > STORE_METADOC_MAX) {
        rc = serr_set(e, SE_TOOBIG,
                      "%s %s: labels, annotations and finalizers are %zu bytes, more than %d",
                      store_kind_lower(r->kind, k, sizeof(k)), r->name, meta, STORE_METADOC_MAX);
        goto fail;
    }
    return 0;
fail:
    store_res_text_free(t);
    return rc;
}

