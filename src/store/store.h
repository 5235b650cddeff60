/*
 * store.h - durable state: generic resources, append-only events and audit,
 * small metadata, and port leases.  One interface over backends: each fills
 * an ops table (store_backend.h) that store.c dispatches through.  SQLite
 * (store_sqlite.c) is the embedded backend; PostgreSQL (store_pg.c), for
 * several stampd replicas, is the second, chosen at open by the URL.
 *
 * Resources are keyed by (kind, name); tenant is an attribute that callers
 * check (a resource of another tenant is reported as not found by the API).
 * Every write bumps resource_version; an update whose resource_version does
 * not match the stored one fails with SE_CONFLICT and changes nothing.
 * generation bumps when spec changes.  A write and its event commit in one
 * transaction, so a phase change is never persisted without its event.
 *
 * Threading: a store handle may be used from several threads at once.
 * Writes are serialised inside; reads do not wait for them (nor for another
 * process's write lock).  A write is visible to every read that starts
 * after it returned, on any thread (read-your-writes).  Acknowledged writes
 * are durable (WAL, synchronous=FULL).  A write that failed is not seen by
 * later reads; after a restart it is either absent or whole: an fsync that
 * failed at commit may have come after the log had it (as a connection
 * lost during a PostgreSQL COMMIT, its outcome is unknown).
 */
#ifndef STAMP_STORE_H
#define STAMP_STORE_H

#include <jansson.h>
#include <stdint.h>

#include "util/err.h"

typedef struct store store;

#define RES_KIND_MAX 64
#define RES_NAME_MAX 128
#define RES_TENANT_MAX 128

typedef struct resource {
    char kind[RES_KIND_MAX];
    char name[RES_NAME_MAX];
    char tenant[RES_TENANT_MAX];
    json_t *labels;      /* object, owned; never NULL after store_get */
    json_t *annotations; /* object, owned */
    json_t *spec;        /* object, owned */
    json_t *status;      /* object, owned */
    json_t *finalizers;  /* array of strings, owned */
    int64_t resource_version;
    int64_t generation;
    int64_t created_ms;
    int64_t updated_ms;
    int64_t deletion_ms; /* 0 when not being deleted */
    int64_t due_ms;      /* when a periodic sweep should look at it; 0 = never.
                          * Indexed, so a sweep costs what is due, not all. */
} resource;

/* An event recorded with a write, or on its own. */
typedef struct store_event {
    const char *type;    /* "Normal" or "Warning" */
    const char *reason;  /* CamelCase, e.g. "PhaseChanged" */
    const char *message;
    /* A phase change's phases, stored as columns so nothing parses the
     * message; NULL for every other event.  Only phase_change() sets them. */
    const char *from;
    const char *to;
} store_event;

typedef struct store_audit {
    const char *user;
    const char *tenant;
    const char *operation; /* "create", "drain", "reap", ... */
    const char *kind;
    const char *name;
    const char *result;    /* "ok" or the error text */
    json_t *detail;        /* optional object (borrowed) e.g. bucket id */
} store_audit;

/* A path (or sqlite://PATH) opens the SQLite backend; postgres:// and
 * postgresql:// (libpq's URI form) the PostgreSQL one (store_pg.c);
 * another scheme is SE_INVAL. */
int store_open(const char *url_or_path, store **out, serr *e);
int store_open_pg(const char *url, store **out, serr *e);
/* "sqlite" or "postgres". */
const char *store_backend_name(const store *s);

/* Fencing (several stampd replicas on PostgreSQL).  A thread that acts
 * for the leader (a reconcile worker, a job of a controller) sets the
 * leader's epoch; every write of the PostgreSQL backend from that thread
 * then commits only if the database's leader epoch (stamp_leader.epoch)
 * is still that one, read in the write's own transaction with a share
 * lock, so an election (which bumps the epoch) and a fenced write are
 * ordered.  A stale epoch: SE_FENCED and nothing written.  0 (the
 * default): not fenced (the API's writes, which any replica may do).
 * SQLite ignores it (one stampd).  Thread-local. */
void store_fence_set(int64_t epoch);
int64_t store_fence_get(void);

/* Wake the leader's controller for (kind, name) from any replica: a
 * PostgreSQL NOTIFY on channel "stamp_wake" with payload "kind/name",
 * delivered at commit; SQLite: nothing to do (0). */
int store_notify(store *s, const char *kind, const char *name, serr *e);
int store_open_sqlite(const char *path, store **out, serr *e);
void store_close(store *s); /* NULL is fine */

/* resource lifecycle helpers */
void resource_init(resource *r);            /* zero + empty json objects */
void resource_free(resource *r);            /* frees owned json; r reusable */
int resource_copy(resource *dst, const resource *src);
/* Full JSON form: {kind, metadata{name,tenant,labels,annotations,
 * resourceVersion,generation,creationTimestamp,...}, spec, status} */
json_t *resource_to_json(const resource *r);

/* Create: fails with SE_EXISTS if (kind,name) exists.  Sets
 * resource_version=1, generation=1 and timestamps in r.  ev may be NULL. */
int store_create(store *s, resource *r, const store_event *ev, serr *e);
/* Get into out, which must be resource_init'ed or hold a resource to
 * reuse: its old contents are released first. */
int store_get(store *s, const char *kind, const char *name, resource *out, serr *e);
/* Update spec/status/labels/annotations/finalizers/deletion of r if
 * r->resource_version equals the stored one; bumps it in r on success. */
int store_update(store *s, resource *r, const store_event *ev, serr *e);
/* Remove the row (and keep its events); rv 0 means unconditional. */
int store_delete(store *s, const char *kind, const char *name, int64_t rv, serr *e);

/* List: calls fn for each resource of kind (tenant NULL = all tenants), in
 * name order.  The resource is freed after fn returns; fn returns non-zero
 * to stop.  */
typedef int (*store_list_fn)(const resource *r, void *arg);
int store_list(store *s, const char *kind, const char *tenant, store_list_fn fn, void *arg,
               serr *e);

/* Resources of kind with 0 < due_ms <= before_ms, in (due_ms, name) order,
 * after the cursor (after_ms, after_name; start with 0, ""), at most limit
 * (<= 64).  Returns how many were passed to fn, or an error. */
int store_list_due(store *s, const char *kind, int64_t after_ms, const char *after_name,
                   int64_t before_ms, int limit, store_list_fn fn, void *arg, serr *e);

/* Events of one resource, oldest first, at most limit (0 = 1000).  Each
 * event is {time, type, reason, message, resourceVersion}, with from and to
 * when it is a phase change. */
int store_event_add(store *s, const char *kind, const char *name, const store_event *ev, serr *e);
int store_events(store *s, const char *kind, const char *name, int limit, json_t **out, serr *e);

/* Events after id `after`, oldest first, at most limit (<= 256): of kind
 * (NULL: every kind), of name (NULL: every name), of resources of tenant
 * (NULL: every tenant; with a tenant, events of rows gone are not shown).
 * Each is {id, time, kind, name, type, reason, message, resourceVersion}, with
 * from and to when it is a phase change.
 * *upto gets the largest event id at the time of the read: the caller may
 * resume after it when fewer than limit came back.  A watch reads with
 * this. */
int store_events_after(store *s, const char *kind, const char *name, const char *tenant,
                       int64_t after, int limit, json_t **out, int64_t *upto, serr *e);
/* The largest event id (0 when there is none). */
int store_events_last_id(store *s, int64_t *id, serr *e);

/* Audit log: append-only. */
int store_audit_add(store *s, const store_audit *a, serr *e);
/* Newest last; filter by kind/name when non-NULL. */
int store_audit_list(store *s, const char *kind, const char *name, int limit, json_t **out,
                     serr *e);

/* Small metadata (secrets, ids).  get returns SE_NOTFOUND when unset; *val
 * must be freed. */
int store_meta_get(store *s, const char *key, char **val, serr *e);
int store_meta_set(store *s, const char *key, const char *val, serr *e);
/* Sets key to val unless it is set; *stored gets the value stored (val, or
 * what another replica stored first), to be freed.  Atomic across the
 * processes sharing a store. */
int store_meta_init(store *s, const char *key, const char *val, char **stored, serr *e);

/* Port leases: take n free ports in [lo,hi] for owner (all or nothing), or
 * return the ones owner already holds if it holds exactly n.  ok() may
 * veto a port (for example one already bound by something else); it runs
 * inside the lease's write transaction, so it may read the store but must
 * not write to it. */
typedef int (*store_port_ok_fn)(int port, void *arg);
int store_ports_lease(store *s, const char *owner, int n, int lo, int hi, store_port_ok_fn ok,
                      void *arg, int *ports, serr *e);
/* Releases owner's ports and those of every owner below it ("owner/..."). */
int store_ports_release(store *s, const char *owner, serr *e);
/* The ports owner holds, sorted (a read: no write transaction); *count may
 * exceed max, only max are stored. */
int store_ports_held(store *s, const char *owner, int *ports, int max, int *count, serr *e);

#endif
