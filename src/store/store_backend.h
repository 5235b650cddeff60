/*
 * store_backend.h - what a store backend implements: the ops table behind
 * store.h.  Callers include store.h only.  store.c checks every argument,
 * then dispatches through s->ops; a backend (store_sqlite.c; PostgreSQL
 * later) fills one table, and its handle begins with `struct store`, so
 * two backends can live in one binary and be chosen at open.
 *
 * What an op may take for granted, because store.c checked it: the key of
 * a single resource (create, get, update, delete, event_add, events) is a
 * non-empty kind and name shorter than RES_KIND_MAX / RES_NAME_MAX; pointers
 * the store.h contract requires are non-NULL; out parameters are already
 * reset (NULL, 0); limits are clamped (list pages to STORE_PAGE_MAX,
 * events_after to 1..256); metadata keys and leasing owners are
 * 1..STORE_KEY_MAX bytes; a lease is 1..STORE_PORTS_MAX ports in a valid
 * range.  Filters of listings (kind, tenant, name) are caller text of any
 * length, which the backend bounds (a filter too long matches nothing).
 * Everything else (encoding, sizes of documents, the semantics in store.h)
 * is the backend's.  An op may be NULL: the call then fails with SE_INTERNAL,
 * naming the backend and what it lacks.
 *
 * Threading: ops are called from any thread, concurrently; a backend does
 * its own locking.
 */
#ifndef STAMP_STORE_BACKEND_H
#define STAMP_STORE_BACKEND_H

#include "store/store.h"

#define STORE_PAGE_MAX 64   /* resources in one list page */
#define STORE_KEY_MAX 256   /* meta keys, port owners */
#define STORE_PORTS_MAX 1024 /* ports in one lease */

typedef struct store_ops {
    const char *name; /* "sqlite": for messages */
    void (*close)(store *s);

    int (*create)(store *s, resource *r, const store_event *ev, serr *e);
    /* out is zeroed; on failure it must hold no allocations. */
    int (*get)(store *s, const char *kind, const char *name, resource *out, serr *e);
    int (*update)(store *s, resource *r, const store_event *ev, serr *e);
    int (*remove)(store *s, const char *kind, const char *name, int64_t rv, serr *e);
    /* Up to max resources of kind (tenant NULL: every tenant) named after
     * `after`, in name order, into batch[0..*n) (treated as uninitialised).
     * On failure nothing is left allocated and *n is 0.  store_list pages
     * with this and runs the caller's callback with no backend lock held. */
    int (*list_page)(store *s, const char *kind, const char *tenant, const char *after,
                     resource *batch, int max, int *n, serr *e);
    /* The same for store_list_due's order and window. */
    int (*list_due_page)(store *s, const char *kind, int64_t after_ms, const char *after_name,
                         int64_t before_ms, resource *batch, int max, int *n, serr *e);

    int (*event_add)(store *s, const char *kind, const char *name, const store_event *ev,
                     serr *e);
    int (*events)(store *s, const char *kind, const char *name, int limit, json_t **out,
                  serr *e);
    int (*events_after)(store *s, const char *kind, const char *name, const char *tenant,
                        int64_t after, int limit, json_t **out, int64_t *upto, serr *e);
    int (*events_last_id)(store *s, int64_t *id, serr *e);

    int (*audit_add)(store *s, const store_audit *a, serr *e);
    int (*audit_list)(store *s, const char *kind, const char *name, int limit, json_t **out,
                      serr *e);

    int (*meta_get)(store *s, const char *key, char **val, serr *e);
    int (*meta_set)(store *s, const char *key, const char *val, serr *e);
    /* May be NULL (one process: get, then set): set unless set, *stored
     * gets what is stored (allocated). */
    int (*meta_init)(store *s, const char *key, const char *val, char **stored, serr *e);

    int (*ports_lease)(store *s, const char *owner, int n, int lo, int hi, store_port_ok_fn ok,
                       void *arg, int *ports, serr *e);
    int (*ports_release)(store *s, const char *owner, serr *e);
    int (*ports_held)(store *s, const char *owner, int *ports, int max, int *count, serr *e);
    /* May be NULL: nothing to notify (one process). */
    int (*notify)(store *s, const char *kind, const char *name, serr *e);
} store_ops;

/* ---- shared by the backends (store_common.c) ---- */

#define STORE_DOC_MAX (1024 * 1024)    /* spec + status text */
#define STORE_METADOC_MAX (256 * 1024) /* labels + annotations + finalizers */
#define STORE_LIMIT_DEFAULT 1000
#define STORE_LIMIT_MAX 10000
#define STORE_META_VAL_MAX (1024 * 1024)
#define STORE_WORD_MAX 256             /* event type/reason, audit names */
#define STORE_TEXT_MAX 8192            /* event message, audit result */
#define STORE_DETAIL_MAX (64 * 1024)
#define STORE_JSON_FLAGS (JSON_SORT_KEYS | JSON_COMPACT)
#define STORE_TIME_MS_LEN 48

/* "Stamp" -> "stamp" for messages like "stamp synaxis-weu-001 not found". */
const char *store_kind_lower(const char *kind, char *buf, size_t len);
int store_err_notfound(serr *e, const char *kind, const char *name);
int store_clamp_limit(int limit);
/* RFC 3339 UTC with milliseconds into buf (STORE_TIME_MS_LEN). */
char *store_fmt_time_ms(int64_t ms, char *buf, size_t len);

/* A resource's documents as the text a row holds, checked and bounded. */
typedef struct store_res_text {
    char *labels, *annotations, *spec, *status, *finalizers;
} store_res_text;
void store_res_text_free(store_res_text *t);
int store_res_encode(const resource *r, store_res_text *t, serr *e);

/* The head of every backend's handle. */
struct store {
    const store_ops *ops;
};

/* ---- the SQLite backend's own figures (tests, bench) ------------------ */

typedef struct store_sqlite_stats {
    int readers;           /* read-only connections beside the writer */
    long prepared;         /* statements compiled since open */
    long reused;           /* statements taken from the cache instead */
    long cached;           /* statements held in the caches now */
} store_sqlite_stats;

/* SE_INVAL when s is not a SQLite store. */
int store_sqlite_stats_get(store *s, store_sqlite_stats *out, serr *e);

#endif
