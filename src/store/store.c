/*
 * store.c - the backend-neutral half of store.h: choosing a backend at open,
 * checking every argument once, dispatching through the backend's ops table
 * (store_backend.h), paging store_list and store_list_due so callbacks run
 * with no backend lock held, and the resource helpers.
 *
 * Invariant: an op is only called with arguments that passed the checks
 * here, so each backend checks nothing twice and a second backend inherits
 * the same refusals with the same messages.
 *
 * Threading: nothing here holds state; see the backend for its locking.
 */
#include "store/store.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_backend.h"
#include "util/util.h"

#define EVENTS_AFTER_MAX 256

static int check_key(const char *kind, const char *name, serr *e);

/* An op a backend left NULL is a missing feature, not a crash. */
#define NEED(s, op, e)                                                                          \
    do {                                                                                        \
        assert((s) != NULL && (s)->ops != NULL);                                                \
        if ((s)->ops->op == NULL)                                                               \
            return serr_set(e, SE_INTERNAL, "store: the %s backend cannot " #op, (s)->ops->name); \
    } while (0)

/* ---- open / close ----------------------------------------------------- */

/* "scheme://..." when the text starts with letters, digits, + - . and then
 * "://"; NULL for a plain path. */
static bool has_scheme(const char *u, const char *scheme) {
    size_t n = strlen(scheme);
    return strncmp(u, scheme, n) == 0 && strncmp(u + n, "://", 3) == 0;
}

static bool any_scheme(const char *u) {
    const char *p = u;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    return p > u && strncmp(p, "://", 3) == 0;
}

int store_open(const char *url_or_path, store **out, serr *e) {
    *out = NULL;
    if (url_or_path == NULL || url_or_path[0] == '\0')
        return serr_set(e, SE_INVAL, "store: empty path");
    /* The URL is not echoed: a PostgreSQL URL may carry a password. */
    if (has_scheme(url_or_path, "postgres") || has_scheme(url_or_path, "postgresql"))
        return store_open_pg(url_or_path, out, e);
    if (has_scheme(url_or_path, "sqlite")) return store_open_sqlite(url_or_path + 9, out, e);
    if (any_scheme(url_or_path))
        return serr_set(e, SE_INVAL,
                        "store: unknown store URL scheme (a path, sqlite://PATH or postgres://)");
    return store_open_sqlite(url_or_path, out, e);
}

const char *store_backend_name(const store *s) { return s && s->ops ? s->ops->name : ""; }

static _Thread_local int64_t fence_epoch;
void store_fence_set(int64_t epoch) { fence_epoch = epoch; }
int64_t store_fence_get(void) { return fence_epoch; }

int store_notify(store *s, const char *kind, const char *name, serr *e) {
    int rc = check_key(kind, name, e);
    if (rc) return rc;
    return s->ops->notify ? s->ops->notify(s, kind, name, e) : 0;
}

void store_close(store *s) {
    if (s == NULL) return;
    assert(s->ops != NULL && s->ops->close != NULL);
    s->ops->close(s);
}

/* ---- argument checks -------------------------------------------------- */

static int check_key(const char *kind, const char *name, serr *e) {
    if (kind == NULL || name == NULL || kind[0] == '\0' || name[0] == '\0')
        return serr_set(e, SE_INVAL, "store: a resource needs a kind and a name");
    if (strlen(kind) >= RES_KIND_MAX || strlen(name) >= RES_NAME_MAX)
        return serr_set(e, SE_INVAL, "store: kind or name too long");
    return 0;
}

static int check_meta_key(const char *key, serr *e) {
    if (key == NULL || key[0] == '\0' || strlen(key) > STORE_KEY_MAX)
        return serr_set(e, SE_INVAL, "store: bad metadata key");
    return 0;
}

/* ---- resources -------------------------------------------------------- */

int store_create(store *s, resource *r, const store_event *ev, serr *e) {
    int rc = check_key(r->kind, r->name, e);
    if (rc) return rc;
    NEED(s, create, e);
    return s->ops->create(s, r, ev, e);
}

/* Releases what out held and, on failure, leaves it with no allocations, so
 * both "resource_init, then get" and "get, then init on SE_NOTFOUND" are
 * leak free. */
int store_get(store *s, const char *kind, const char *name, resource *out, serr *e) {
    resource_free(out);
    memset(out, 0, sizeof(*out));
    int rc = check_key(kind, name, e);
    if (rc) return rc;
    NEED(s, get, e);
    return s->ops->get(s, kind, name, out, e);
}

int store_update(store *s, resource *r, const store_event *ev, serr *e) {
    int rc = check_key(r->kind, r->name, e);
    if (rc) return rc;
    NEED(s, update, e);
    return s->ops->update(s, r, ev, e);
}

int store_delete(store *s, const char *kind, const char *name, int64_t rv, serr *e) {
    int rc = check_key(kind, name, e);
    if (rc) return rc;
    NEED(s, remove, e);
    return s->ops->remove(s, kind, name, rv, e);
}

/* Pages through the kind by name so that memory stays bounded and the
 * callback runs with no backend lock held (it may call back into the
 * store).  A listing is therefore not one snapshot: a resource created or
 * deleted meanwhile may or may not appear. */
int store_list(store *s, const char *kind, const char *tenant, store_list_fn fn, void *arg,
               serr *e) {
    if (kind == NULL || kind[0] == '\0' || fn == NULL)
        return serr_set(e, SE_INVAL, "store: list needs a kind and a callback");
    NEED(s, list_page, e);
    resource *batch = calloc(STORE_PAGE_MAX, sizeof(*batch));
    if (batch == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    char after[RES_NAME_MAX] = "";
    int rc = 0, stop = 0;
    while (!stop) {
        int n = 0;
        if ((rc = s->ops->list_page(s, kind, tenant, after, batch, STORE_PAGE_MAX, &n, e)) != 0)
            break;
        assert(n >= 0 && n <= STORE_PAGE_MAX);
        if (n > 0) str_copy(after, sizeof(after), batch[n - 1].name);
        for (int i = 0; i < n; i++) {
            if (!stop) stop = fn(&batch[i], arg);
            resource_free(&batch[i]);
        }
        if (n < STORE_PAGE_MAX) break;
    }
    free(batch);
    return rc;
}

int store_list_due(store *s, const char *kind, int64_t after_ms, const char *after_name,
                   int64_t before_ms, int limit, store_list_fn fn, void *arg, serr *e) {
    if (kind == NULL || fn == NULL) return serr_set(e, SE_INVAL, "store: list_due needs a kind");
    NEED(s, list_due_page, e);
    if (limit <= 0 || limit > STORE_PAGE_MAX) limit = STORE_PAGE_MAX;
    resource *batch = calloc((size_t)limit, sizeof(*batch));
    if (batch == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    int n = 0;
    int rc = s->ops->list_due_page(s, kind, after_ms, after_name ? after_name : "", before_ms,
                                   batch, limit, &n, e);
    assert(n >= 0 && n <= limit);
    int stop = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && !stop) stop = fn(&batch[i], arg);
        resource_free(&batch[i]);
    }
    free(batch);
    return rc < 0 ? rc : n;
}

/* ---- events and audit ------------------------------------------------- */

int store_event_add(store *s, const char *kind, const char *name, const store_event *ev, serr *e) {
    int rc = check_key(kind, name, e);
    if (rc) return rc;
    if (ev == NULL) return serr_set(e, SE_INVAL, "store: no event");
    NEED(s, event_add, e);
    return s->ops->event_add(s, kind, name, ev, e);
}

int store_events(store *s, const char *kind, const char *name, int limit, json_t **out, serr *e) {
    *out = NULL;
    int rc = check_key(kind, name, e);
    if (rc) return rc;
    NEED(s, events, e);
    return s->ops->events(s, kind, name, limit, out, e);
}

int store_events_after(store *s, const char *kind, const char *name, const char *tenant,
                       int64_t after, int limit, json_t **out, int64_t *upto, serr *e) {
    *out = NULL;
    *upto = after;
    if (limit <= 0 || limit > EVENTS_AFTER_MAX) limit = EVENTS_AFTER_MAX;
    NEED(s, events_after, e);
    return s->ops->events_after(s, kind, name, tenant, after, limit, out, upto, e);
}

int store_events_last_id(store *s, int64_t *id, serr *e) {
    *id = 0;
    NEED(s, events_last_id, e);
    return s->ops->events_last_id(s, id, e);
}

int store_audit_add(store *s, const store_audit *a, serr *e) {
    if (a == NULL) return serr_set(e, SE_INVAL, "store: no audit record");
    if (a->detail && !json_is_object(a->detail))
        return serr_set(e, SE_INVAL, "store: audit detail must be an object");
    NEED(s, audit_add, e);
    return s->ops->audit_add(s, a, e);
}

int store_audit_list(store *s, const char *kind, const char *name, int limit, json_t **out,
                     serr *e) {
    *out = NULL;
    NEED(s, audit_list, e);
    return s->ops->audit_list(s, kind, name, limit, out, e);
}

/* ---- meta ------------------------------------------------------------- */

int store_meta_get(store *s, const char *key, char **val, serr *e) {
    *val = NULL;
    int rc = check_meta_key(key, e);
    if (rc) return rc;
    NEED(s, meta_get, e);
    return s->ops->meta_get(s, key, val, e);
}

int store_meta_init(store *s, const char *key, const char *val, char **stored, serr *e) {
    *stored = NULL;
    if (key == NULL || val == NULL || key[0] == '\0' || strlen(key) > STORE_KEY_MAX)
        return serr_set(e, SE_INVAL, "store: bad metadata key");
    if (s->ops->meta_init) return s->ops->meta_init(s, key, val, stored, e);
    int rc = store_meta_get(s, key, stored, e);
    if (rc != SE_NOTFOUND) return rc;
    serr_clear(e);
    if ((rc = store_meta_set(s, key, val, e))) return rc;
    return store_meta_get(s, key, stored, e);
}

int store_meta_set(store *s, const char *key, const char *val, serr *e) {
    int rc = check_meta_key(key, e);
    if (rc) return rc;
    if (val == NULL) return serr_set(e, SE_INVAL, "store: metadata %s: no value", key);
    NEED(s, meta_set, e);
    return s->ops->meta_set(s, key, val, e);
}

/* ---- ports ------------------------------------------------------------ */

int store_ports_lease(store *s, const char *owner, int n, int lo, int hi, store_port_ok_fn ok,
                      void *arg, int *ports, serr *e) {
    if (owner == NULL || owner[0] == '\0' || strlen(owner) > STORE_KEY_MAX)
        return serr_set(e, SE_INVAL, "store: bad port owner");
    if (lo < 1 || hi > 65535 || lo > hi)
        return serr_set(e, SE_INVAL, "store: bad port range %d-%d", lo, hi);
    if (n < 1 || n > STORE_PORTS_MAX || ports == NULL)
        return serr_set(e, SE_INVAL, "store: cannot lease %d ports (1..%d)", n, STORE_PORTS_MAX);
    NEED(s, ports_lease, e);
    return s->ops->ports_lease(s, owner, n, lo, hi, ok, arg, ports, e);
}

int store_ports_held(store *s, const char *owner, int *ports, int max, int *count, serr *e) {
    NEED(s, ports_held, e);
    return s->ops->ports_held(s, owner, ports, max, count, e);
}

int store_ports_release(store *s, const char *owner, serr *e) {
    if (owner == NULL || owner[0] == '\0')
        return serr_set(e, SE_INVAL, "store: bad port owner");
    NEED(s, ports_release, e);
    return s->ops->ports_release(s, owner, e);
}

/* ---- resource helpers ------------------------------------------------- */

void resource_init(resource *r) {
    memset(r, 0, sizeof(*r));
    /* An allocation failure leaves NULL, which every function reads as
     * empty, so there is nothing to report here. */
    r->labels = json_object();
    r->annotations = json_object();
    r->spec = json_object();
    r->status = json_object();
    r->finalizers = json_array();
}

void resource_free(resource *r) {
    if (r == NULL) return;
    json_decref(r->labels);
    json_decref(r->annotations);
    json_decref(r->spec);
    json_decref(r->status);
    json_decref(r->finalizers);
    r->labels = r->annotations = r->spec = r->status = r->finalizers = NULL;
}

static json_t *copy_or_empty(const json_t *v, bool array) {
    if (v == NULL) return array ? json_array() : json_object();
    return json_deep_copy(v);
}

/* dst, like store_get's out, must be a valid resource (zeroed, initialised
 * or filled): callers reuse one variable, so its old members are released. */
int resource_copy(resource *dst, const resource *src) {
    if (dst == src) return 0;
    resource_free(dst);
    *dst = *src;
    dst->labels = copy_or_empty(src->labels, false);
    dst->annotations = copy_or_empty(src->annotations, false);
    dst->spec = copy_or_empty(src->spec, false);
    dst->status = copy_or_empty(src->status, false);
    dst->finalizers = copy_or_empty(src->finalizers, true);
    if (!dst->labels || !dst->annotations || !dst->spec || !dst->status || !dst->finalizers) {
        resource_free(dst);
        return SE_NOMEM;
    }
    return 0;
}

json_t *resource_to_json(const resource *r) {
    json_t *doc = json_object(), *md = json_object();
    if (doc == NULL || md == NULL) goto fail;
    char rv[24], ts[40];
    /* 20 digits and a sign at most: cannot be cut. */
    int w = snprintf(rv, sizeof(rv), "%lld", (long long)r->resource_version);
    assert(w > 0 && (size_t)w < sizeof(rv));
    (void)w;
    int bad = 0;
    bad |= json_object_set_new(md, "name", json_string(r->name));
    if (r->tenant[0]) bad |= json_object_set_new(md, "tenant", json_string(r->tenant));
    bad |= json_object_set_new(md, "labels", copy_or_empty(r->labels, false));
    bad |= json_object_set_new(md, "annotations", copy_or_empty(r->annotations, false));
    bad |= json_object_set_new(md, "resourceVersion", json_string(rv));
    bad |= json_object_set_new(md, "generation", json_integer(r->generation));
    bad |= json_object_set_new(md, "creationTimestamp",
                               json_string(fmt_time_rfc3339(r->created_ms, ts, sizeof(ts))));
    if (r->deletion_ms > 0)
        bad |= json_object_set_new(md, "deletionTimestamp",
                                   json_string(fmt_time_rfc3339(r->deletion_ms, ts, sizeof(ts))));
    if (json_array_size(r->finalizers) > 0)
        bad |= json_object_set_new(md, "finalizers", json_deep_copy(r->finalizers));
    bad |= json_object_set_new(doc, "apiVersion", json_string("stamp.synaxis.io/v1"));
    bad |= json_object_set_new(doc, "kind", json_string(r->kind));
    bad |= json_object_set_new(doc, "metadata", md);
    md = NULL; /* owned by doc now, even when the set failed */
    bad |= json_object_set_new(doc, "spec", copy_or_empty(r->spec, false));
    bad |= json_object_set_new(doc, "status", copy_or_empty(r->status, false));
    if (bad) goto fail;
    return doc;
fail:
    json_decref(md);
    json_decref(doc);
    return NULL;
}
