/*
 * test_store.c - the store against both backends: SQLite on a real database
 * file in a fresh temporary directory per test, and PostgreSQL (when
 * STAMP_TEST_PG_URL names a server, as tests/unit/with_pg.sh sets it) on a
 * fresh database per test.  The same tests run on each: round trips,
 * optimistic concurrency, atomic write+event, listing, audit, metadata, port
 * leases, persistence; reads beside a writer in the middle of a transaction,
 * read-your-writes across threads, every op across errors.  SQLite's own:
 * migrations of old files, the statement cache, ":memory:".  PostgreSQL's
 * own: fencing, two writers racing on one row, migrations run twice and by
 * two stores at once, NOTIFY, a connection killed under the pool.  And, at
 * unit level, that store.h dispatches through a backend's ops table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libpq-fe.h>
#include <poll.h>
#include <sqlite3.h>
#include <unistd.h>

#include "util/metrics.h"

#include "store/store.h"
#include "store/store_backend.h"
#include "util/util.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    store *s;
    bool pg;       /* PostgreSQL: db and url below, no dir */
    char db[64];   /* the test's own database */
    char url[1024];
} fixture;

/* ---- PostgreSQL from STAMP_TEST_PG_URL ---------------------------------- */

static const char *pg_base_url(void) {
    const char *u = getenv("STAMP_TEST_PG_URL");
    return u && u[0] ? u : NULL;
}

/* A raw connection (the test's own, beside the store's pool). */
static PGconn *pg_raw(const char *url) {
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) fail_msg("connect: %s", PQerrorMessage(c));
    return c;
}

/* Runs constant SQL on c; fails the test on an error. */
static void pg_do(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* The first column of the first row of sql, as an integer. */
static int64_t pg_int(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* A fresh database t_<pid>_<n> on the server, and a URL naming it. */
static void pg_new_db(char *db, size_t dblen, char *url, size_t urllen) {
    static atomic_int seq;
    const char *base = pg_base_url();
    assert_non_null(base);
    snprintf(db, dblen, "t_%ld_%d", (long)getpid(), atomic_fetch_add(&seq, 1));
    PGconn *c = pg_raw(base);
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
    pg_do(c, sql);
    PQfinish(c);
    /* libpq takes the last dbname given: the query's wins over the path's. */
    int w = snprintf(url, urllen, "%s%sdbname=%s", base, strchr(base, '?') ? "&" : "?", db);
    assert_true(w > 0 && (size_t)w < urllen);
}

static void pg_drop_db(const char *db) {
    PGconn *c = pg_raw(pg_base_url());
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    pg_do(c, sql);
    PQfinish(c);
}

static int setup_pg(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->pg = true;
    pg_new_db(f->db, sizeof(f->db), f->url, sizeof(f->url));
    serr e = {0};
    if (store_open(f->url, &f->s, &e) != 0) fail_msg("store_open: %s", e.msg);
    assert_string_equal(store_backend_name(f->s), "postgres");
    *state = f;
    return 0;
}

/* Opens the fixture's store again (after a close). */
static int reopen(fixture *f, serr *e) {
    return f->pg ? store_open_pg(f->url, &f->s, e) : store_open_sqlite(f->path, &f->s, e);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    str_copy(f->dir, sizeof(f->dir), "/tmp/stamp-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    /* A missing parent directory is created by open. */
    snprintf(f->path, sizeof(f->path), "%s/state/stamp.db", f->dir);
    serr e = {0};
    assert_int_equal(store_open_sqlite(f->path, &f->s, &e), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    store_close(f->s);
    store_fence_set(0);
    if (f->pg) pg_drop_db(f->db);
    else assert_int_equal(remove_tree(f->dir, NULL), 0);
    free(f);
    return 0;
}

static void make(resource *r, const char *kind, const char *name, const char *tenant) {
    resource_init(r);
    str_copy(r->kind, sizeof(r->kind), kind);
    str_copy(r->name, sizeof(r->name), name);
    str_copy(r->tenant, sizeof(r->tenant), tenant);
}

static void create_simple(store *s, const char *kind, const char *name, const char *tenant) {
    resource r;
    make(&r, kind, name, tenant);
    serr e = {0};
    assert_int_equal(store_create(s, &r, NULL, &e), 0);
    resource_free(&r);
}

static void test_roundtrip(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "synaxis-weu-001", "contoso");
    json_object_set_new(r.labels, "region", json_string("westeurope"));
    json_object_set_new(r.annotations, "note", json_string("first"));
    json_object_set_new(r.spec, "replicas", json_integer(3));
    json_object_set_new(r.spec, "ratio", json_real(0.25));
    json_object_set_new(r.status, "phase", json_string("Creating"));
    json_array_append_new(r.finalizers, json_string("stamp.synaxis.io/backup"));
    store_event ev = {.type = "Normal", .reason = "Created", .message = "stamp created"};
    assert_int_equal(store_create(f->s, &r, &ev, &e), 0);
    assert_int_equal(r.resource_version, 1);
    assert_int_equal(r.generation, 1);
    assert_true(r.created_ms > 0);
    assert_int_equal(r.created_ms, r.updated_ms);

    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "synaxis-weu-001", &g, &e), 0);
    assert_string_equal(g.kind, "Stamp");
    assert_string_equal(g.name, "synaxis-weu-001");
    assert_string_equal(g.tenant, "contoso");
    assert_true(json_equal(g.labels, r.labels));
    assert_true(json_equal(g.annotations, r.annotations));
    assert_true(json_equal(g.spec, r.spec));
    assert_true(json_equal(g.status, r.status));
    assert_true(json_equal(g.finalizers, r.finalizers));
    assert_int_equal(g.resource_version, 1);
    assert_int_equal(g.generation, 1);
    assert_int_equal(g.created_ms, r.created_ms);
    assert_int_equal(g.updated_ms, r.updated_ms);
    assert_int_equal(g.deletion_ms, 0);

    resource c;
    resource_init(&c);
    assert_int_equal(resource_copy(&c, &g), 0);
    assert_true(json_equal(c.spec, g.spec));
    assert_ptr_not_equal(c.spec, g.spec);

    json_t *j = resource_to_json(&g);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "apiVersion")), "stamp.synaxis.io/v1");
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "Stamp");
    json_t *md = json_object_get(j, "metadata");
    assert_string_equal(json_string_value(json_object_get(md, "name")), "synaxis-weu-001");
    assert_string_equal(json_string_value(json_object_get(md, "tenant")), "contoso");
    assert_string_equal(json_string_value(json_object_get(md, "resourceVersion")), "1");
    assert_int_equal(json_integer_value(json_object_get(md, "generation")), 1);
    const char *ts = json_string_value(json_object_get(md, "creationTimestamp"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 20);
    assert_null(json_object_get(md, "deletionTimestamp"));
    assert_int_equal(json_array_size(json_object_get(md, "finalizers")), 1);
    assert_true(json_equal(json_object_get(j, "spec"), g.spec));
    json_decref(j);

    /* Optional members disappear when empty. */
    c.tenant[0] = '\0';
    json_array_clear(c.finalizers);
    c.deletion_ms = 1769302800000; /* 2026-01-25T01:00:00Z */
    j = resource_to_json(&c);
    md = json_object_get(j, "metadata");
    assert_null(json_object_get(md, "tenant"));
    assert_null(json_object_get(md, "finalizers"));
    assert_string_equal(json_string_value(json_object_get(md, "deletionTimestamp")),
                        "2026-01-25T01:00:00Z");
    json_decref(j);

    resource_free(&c);
    resource_free(&g);
    resource_free(&r);
    resource_free(&r); /* idempotent */
}

static void test_duplicate(void **state) {
    fixture *f = *state;
    serr e = {0};
    create_simple(f->s, "Stamp", "a", "");
    resource r;
    make(&r, "Stamp", "a", "");
    assert_int_equal(store_create(f->s, &r, NULL, &e), SE_EXISTS);
    assert_string_equal(e.msg, "stamp a already exists");
    resource_free(&r);
    /* Same name, other kind: a different key. */
    create_simple(f->s, "Namespace", "a", "");
}

static void test_notfound(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "nope", &g, &e), SE_NOTFOUND);
    assert_string_equal(e.msg, "stamp nope not found");
    /* A failed get leaves nothing allocated, whatever out held before. */
    assert_null(g.spec);
    create_simple(f->s, "Stamp", "yes", "");
    assert_int_equal(store_get(f->s, "Stamp", "yes", &g, &e), 0);
    assert_int_equal(store_get(f->s, "Stamp", "yes", &g, &e), 0);
    assert_int_equal(store_get(f->s, "Stamp", "nope", &g, &e), SE_NOTFOUND);
    assert_null(g.spec);
    assert_null(g.finalizers);
    resource_free(&g);
    resource r;
    make(&r, "Stamp", "nope", "");
    r.resource_version = 1;
    assert_int_equal(store_update(f->s, &r, NULL, &e), SE_NOTFOUND);
    resource_free(&r);
    assert_int_equal(store_get(f->s, "", "x", &g, &e), SE_INVAL);
}

static void test_stale_update(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "synaxis-weu-001", "");
    json_object_set_new(r.spec, "v", json_integer(1));
    assert_int_equal(store_create(f->s, &r, NULL, &e), 0);

    resource a, b;
    resource_init(&a);
    resource_init(&b);
    assert_int_equal(store_get(f->s, "Stamp", "synaxis-weu-001", &a, &e), 0);
    assert_int_equal(store_get(f->s, "Stamp", "synaxis-weu-001", &b, &e), 0);
    json_object_set_new(a.spec, "v", json_integer(2));
    assert_int_equal(store_update(f->s, &a, NULL, &e), 0);
    assert_int_equal(a.resource_version, 2);

    json_object_set_new(b.spec, "v", json_integer(3));
    store_event ev = {.type = "Normal", .reason = "Lost", .message = "must not appear"};
    assert_int_equal(store_update(f->s, &b, &ev, &e), SE_CONFLICT);
    assert_string_equal(e.msg,
                        "stamp synaxis-weu-001 was modified (resourceVersion 2, you had 1)");
    assert_int_equal(b.resource_version, 1);

    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "synaxis-weu-001", &g, &e), 0);
    assert_int_equal(g.resource_version, 2);
    assert_int_equal(json_integer_value(json_object_get(g.spec, "v")), 2);
    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "synaxis-weu-001", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 0);
    json_decref(evs);
    resource_free(&g);
    resource_free(&a);
    resource_free(&b);
    resource_free(&r);
}

static void test_generation(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "g", "");
    json_object_set_new(r.spec, "a", json_integer(1));
    json_object_set_new(r.spec, "b", json_integer(2));
    assert_int_equal(store_create(f->s, &r, NULL, &e), 0);

    json_object_set_new(r.status, "phase", json_string("Active"));
    assert_int_equal(store_update(f->s, &r, NULL, &e), 0);
    assert_int_equal(r.resource_version, 2);
    assert_int_equal(r.generation, 1);

    /* The same spec built in another key order is the same spec. */
    json_t *spec = json_object();
    json_object_set_new(spec, "b", json_integer(2));
    json_object_set_new(spec, "a", json_integer(1));
    json_decref(r.spec);
    r.spec = spec;
    assert_int_equal(store_update(f->s, &r, NULL, &e), 0);
    assert_int_equal(r.resource_version, 3);
    assert_int_equal(r.generation, 1);

    json_object_set_new(r.spec, "a", json_integer(5));
    assert_int_equal(store_update(f->s, &r, NULL, &e), 0);
    assert_int_equal(r.resource_version, 4);
    assert_int_equal(r.generation, 2);

    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "g", &g, &e), 0);
    assert_int_equal(g.generation, 2);
    assert_int_equal(g.resource_version, 4);
    assert_true(g.updated_ms >= g.created_ms);
    resource_free(&g);
    resource_free(&r);
}

static void test_update_event_atomic(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "ev", "");
    store_event created = {.type = "Normal", .reason = "Created", .message = "created"};
    assert_int_equal(store_create(f->s, &r, &created, &e), 0);
    json_object_set_new(r.status, "phase", json_string("Active"));
    store_event phase = {.type = "Normal", .reason = "PhaseChanged", .message = "Creating -> Active"};
    assert_int_equal(store_update(f->s, &r, &phase, &e), 0);

    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "ev", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 2);
    json_t *last = json_array_get(evs, 1);
    assert_string_equal(json_string_value(json_object_get(last, "reason")), "PhaseChanged");
    assert_string_equal(json_string_value(json_object_get(last, "message")), "Creating -> Active");
    assert_string_equal(json_string_value(json_object_get(last, "type")), "Normal");
    assert_int_equal(json_integer_value(json_object_get(last, "resourceVersion")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "resourceVersion")),
                     1);
    json_decref(evs);

    /* A failed create records no event either. */
    resource dup;
    make(&dup, "Stamp", "ev", "");
    assert_int_equal(store_create(f->s, &dup, &created, &e), SE_EXISTS);
    assert_int_equal(store_events(f->s, "Stamp", "ev", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 2);
    json_decref(evs);
    resource_free(&dup);
    resource_free(&r);
}

static void test_events_order(void **state) {
    fixture *f = *state;
    serr e = {0};
    create_simple(f->s, "Stamp", "o", "");
    for (int i = 0; i < 5; i++) {
        char msg[16];
        snprintf(msg, sizeof(msg), "m%d", i);
        store_event ev = {.type = i == 4 ? "Warning" : "Normal", .reason = "Step", .message = msg};
        assert_int_equal(store_event_add(f->s, "Stamp", "o", &ev, &e), 0);
    }
    /* Events of a resource that is gone (or never was) are still kept. */
    store_event gone = {.type = NULL, .reason = "Purged", .message = "gone"};
    assert_int_equal(store_event_add(f->s, "Stamp", "ghost", &gone, &e), 0);

    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "o", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 5);
    for (int i = 0; i < 5; i++) {
        char msg[16];
        snprintf(msg, sizeof(msg), "m%d", i);
        json_t *ev = json_array_get(evs, (size_t)i);
        assert_string_equal(json_string_value(json_object_get(ev, "message")), msg);
        assert_int_equal(json_integer_value(json_object_get(ev, "resourceVersion")), 1);
        const char *t = json_string_value(json_object_get(ev, "time"));
        assert_non_null(t);
        assert_int_equal(strlen(t), 24); /* 2026-01-25T01:00:00.123Z */
        assert_int_equal(t[19], '.');
        assert_int_equal(t[23], 'Z');
        assert_true(json_integer_value(json_object_get(ev, "timeMs")) > 0);
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 4), "type")),
                        "Warning");
    json_decref(evs);

    /* A limit keeps the newest, still oldest first. */
    assert_int_equal(store_events(f->s, "Stamp", "o", 2, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 0), "message")),
                        "m3");
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 1), "message")),
                        "m4");
    json_decref(evs);

    assert_int_equal(store_events(f->s, "Stamp", "ghost", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 1);
    json_t *g = json_array_get(evs, 0);
    assert_string_equal(json_string_value(json_object_get(g, "type")), "Normal");
    assert_int_equal(json_integer_value(json_object_get(g, "resourceVersion")), 0);
    json_decref(evs);
}

typedef struct list_acc {
    store *s;
    char names[300][RES_NAME_MAX];
    int n;
    int stop_after; /* 0 = never */
} list_acc;

static int collect(const resource *r, void *arg) {
    list_acc *a = arg;
    /* Calling back into the store from the callback must not deadlock. */
    resource g;
    resource_init(&g);
    serr e = {0};
    assert_int_equal(store_get(a->s, r->kind, r->name, &g, &e), 0);
    resource_free(&g);
    if (a->n < 300) str_copy(a->names[a->n], RES_NAME_MAX, r->name);
    a->n++;
    return a->stop_after && a->n >= a->stop_after;
}

static void test_list(void **state) {
    fixture *f = *state;
    serr e = {0};
    create_simple(f->s, "Stamp", "delta", "b");
    create_simple(f->s, "Stamp", "alpha", "a");
    create_simple(f->s, "Stamp", "echo", "a");
    create_simple(f->s, "Stamp", "charlie", "b");
    create_simple(f->s, "Stamp", "bravo", "a");
    create_simple(f->s, "Namespace", "alpha", "a");

    list_acc *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->s = f->s;
    assert_int_equal(store_list(f->s, "Stamp", NULL, collect, a, &e), 0);
    assert_int_equal(a->n, 5);
    const char *all[] = {"alpha", "bravo", "charlie", "delta", "echo"};
    for (int i = 0; i < 5; i++) assert_string_equal(a->names[i], all[i]);

    memset(a, 0, sizeof(*a));
    a->s = f->s;
    assert_int_equal(store_list(f->s, "Stamp", "a", collect, a, &e), 0);
    assert_int_equal(a->n, 3);
    assert_string_equal(a->names[0], "alpha");
    assert_string_equal(a->names[1], "bravo");
    assert_string_equal(a->names[2], "echo");

    memset(a, 0, sizeof(*a));
    a->s = f->s;
    a->stop_after = 2;
    assert_int_equal(store_list(f->s, "Stamp", NULL, collect, a, &e), 0);
    assert_int_equal(a->n, 2);

    memset(a, 0, sizeof(*a));
    a->s = f->s;
    assert_int_equal(store_list(f->s, "Nothing", NULL, collect, a, &e), 0);
    assert_int_equal(a->n, 0);
    free(a);
}

static void test_list_many(void **state) {
    fixture *f = *state;
    serr e = {0};
    /* More than one internal batch. */
    for (int i = 0; i < 150; i++) {
        char name[32];
        snprintf(name, sizeof(name), "ns-%03d", (i * 37) % 150);
        create_simple(f->s, "Namespace", name, "t");
    }
    list_acc *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->s = f->s;
    assert_int_equal(store_list(f->s, "Namespace", "t", collect, a, &e), 0);
    assert_int_equal(a->n, 150);
    for (int i = 0; i < 150; i++) {
        char name[32];
        snprintf(name, sizeof(name), "ns-%03d", i);
        assert_string_equal(a->names[i], name);
    }
    free(a);
}

static void test_delete(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "d", "");
    store_event ev = {.type = "Normal", .reason = "Created", .message = "x"};
    assert_int_equal(store_create(f->s, &r, &ev, &e), 0);
    assert_int_equal(store_update(f->s, &r, NULL, &e), 0); /* rv 2 */
    assert_int_equal(store_delete(f->s, "Stamp", "d", 1, &e), SE_CONFLICT);
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "d", &g, &e), 0);
    resource_free(&g);
    assert_int_equal(store_delete(f->s, "Stamp", "d", 2, &e), 0);
    assert_int_equal(store_get(f->s, "Stamp", "d", &g, &e), SE_NOTFOUND);
    assert_int_equal(store_delete(f->s, "Stamp", "d", 0, &e), SE_NOTFOUND);
    assert_string_equal(e.msg, "stamp d not found");

    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "d", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 1);
    json_decref(evs);

    create_simple(f->s, "Stamp", "u", "");
    assert_int_equal(store_delete(f->s, "Stamp", "u", 0, &e), 0);
    /* The name is free again. */
    create_simple(f->s, "Stamp", "u", "");
    resource_free(&r);
}

static void test_audit(void **state) {
    fixture *f = *state;
    serr e = {0};
    json_t *detail = json_pack("{s:s}", "bucket", "b-1");
    store_audit a1 = {"alice", "contoso", "create", "Stamp", "s1", "ok", NULL};
    store_audit a2 = {"bob", "contoso", "drain", "Stamp", "s2", "ok", detail};
    store_audit a3 = {"alice", "", "reap", "Namespace", "n1", "stamp s1 not found", NULL};
    assert_int_equal(store_audit_add(f->s, &a1, &e), 0);
    assert_int_equal(store_audit_add(f->s, &a2, &e), 0);
    assert_int_equal(store_audit_add(f->s, &a3, &e), 0);
    json_decref(detail);

    json_t *l = NULL;
    assert_int_equal(store_audit_list(f->s, NULL, NULL, 0, &l, &e), 0);
    assert_int_equal(json_array_size(l), 3);
    json_t *x = json_array_get(l, 1);
    assert_string_equal(json_string_value(json_object_get(x, "user")), "bob");
    assert_string_equal(json_string_value(json_object_get(x, "tenant")), "contoso");
    assert_string_equal(json_string_value(json_object_get(x, "operation")), "drain");
    assert_string_equal(json_string_value(json_object_get(x, "kind")), "Stamp");
    assert_string_equal(json_string_value(json_object_get(x, "name")), "s2");
    assert_string_equal(json_string_value(json_object_get(x, "result")), "ok");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(x, "detail"), "bucket")), "b-1");
    assert_true(json_is_null(json_object_get(json_array_get(l, 0), "detail")));
    assert_int_equal(strlen(json_string_value(json_object_get(x, "time"))), 24);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 2), "result")),
                        "stamp s1 not found");
    json_decref(l);

    assert_int_equal(store_audit_list(f->s, "Stamp", NULL, 0, &l, &e), 0);
    assert_int_equal(json_array_size(l), 2);
    json_decref(l);
    assert_int_equal(store_audit_list(f->s, "Stamp", "s1", 0, &l, &e), 0);
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);
    assert_int_equal(store_audit_list(f->s, NULL, NULL, 2, &l, &e), 0);
    assert_int_equal(json_array_size(l), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "name")), "s2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "name")), "n1");
    json_decref(l);
}

/* Bytes that are not UTF-8 (a query value, a cut mid-character) must
 * neither be lost from the audit log nor make it unreadable; rows written
 * raw by an older version are listed too. */
static void test_audit_bad_bytes(void **state) {
    fixture *f = *state;
    serr e = {0};
    char cut[81];
    for (int i = 0; i < 40; i++) memcpy(cut + 2 * i, "\xc3\xa9", 2);
    cut[63] = '\0'; /* mid-character, as a %.63s would have left it */
    store_audit a1 = {"alice", "contoso", "create", "Namespace", "livecalc-bucket-\xff", cut, NULL};
    assert_int_equal(store_audit_add(f->s, &a1, &e), 0);
    json_t *l = NULL;
    if (f->pg) {
        /* PostgreSQL checks the encoding: no row can hold such bytes. */
        assert_int_equal(store_audit_list(f->s, NULL, NULL, 0, &l, &e), 0);
        assert_int_equal(json_array_size(l), 1);
        const char *nm = json_string_value(json_object_get(json_array_get(l, 0), "name"));
        assert_string_equal(nm, "livecalc-bucket-\\xff");
        const char *rs = json_string_value(json_object_get(json_array_get(l, 0), "result"));
        assert_true(utf8_valid(rs, strlen(rs)));
        assert_true(strncmp(rs, cut, 62) == 0);
        json_decref(l);
        return;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO audit(time_ms, \"user\", tenant, operation, kind, name, "
                                  "result, detail) VALUES(1, 'bob', 't', 'create', 'Namespace', "
                                  "CAST(X'6e73ff00' AS TEXT), 'ok', NULL)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_audit_list(f->s, NULL, NULL, 0, &l, &e), 0);
    assert_int_equal(json_array_size(l), 2);
    const char *name = json_string_value(json_object_get(json_array_get(l, 0), "name"));
    assert_string_equal(name, "livecalc-bucket-\\xff");
    const char *res = json_string_value(json_object_get(json_array_get(l, 0), "result"));
    assert_true(utf8_valid(res, strlen(res)));
    assert_true(strncmp(res, cut, 62) == 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "name")), "ns\\xff\\x00");
    char *text = json_dumps(l, 0);
    assert_non_null(text);
    free(text);
    json_decref(l);
}

static void test_meta(void **state) {
    fixture *f = *state;
    serr e = {0};
    char *v = NULL;
    assert_int_equal(store_meta_get(f->s, "jwt-secret", &v, &e), SE_NOTFOUND);
    assert_null(v);
    assert_int_equal(store_meta_set(f->s, "jwt-secret", "one", &e), 0);
    assert_int_equal(store_meta_get(f->s, "jwt-secret", &v, &e), 0);
    assert_string_equal(v, "one");
    free(v);
    assert_int_equal(store_meta_set(f->s, "jwt-secret", "two", &e), 0);
    assert_int_equal(store_meta_get(f->s, "jwt-secret", &v, &e), 0);
    assert_string_equal(v, "two");
    free(v);
    assert_int_equal(store_meta_get(f->s, "schema_version", &v, &e), 0);
    assert_string_equal(v, "1");
    free(v);
    assert_int_equal(store_meta_set(f->s, "", "x", &e), SE_INVAL);
}

static int veto_even(int port, void *arg) {
    int *calls = arg;
    (*calls)++;
    return port % 2 == 1;
}

static void test_ports(void **state) {
    fixture *f = *state;
    serr e = {0};
    int a[3], a2[3], b[3];
    assert_int_equal(store_ports_lease(f->s, "stamp-a", 3, 20000, 20009, NULL, NULL, a, &e), 0);
    assert_int_equal(a[0], 20000);
    assert_int_equal(a[1], 20001);
    assert_int_equal(a[2], 20002);
    /* Idempotent for the same owner and count. */
    assert_int_equal(store_ports_lease(f->s, "stamp-a", 3, 20000, 20009, NULL, NULL, a2, &e), 0);
    assert_memory_equal(a, a2, sizeof(a));
    assert_int_equal(store_ports_lease(f->s, "stamp-b", 3, 20000, 20009, NULL, NULL, b, &e), 0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) assert_int_not_equal(a[i], b[j]);
    assert_true(b[0] < b[1] && b[1] < b[2]);

    /* 4 left in the range: 5 is too many, and the failure changes nothing. */
    int c[5];
    assert_int_equal(store_ports_lease(f->s, "stamp-c", 5, 20000, 20009, NULL, NULL, c, &e),
                     SE_LIMIT);
    assert_int_equal(store_ports_lease(f->s, "stamp-b", 3, 20000, 20009, NULL, NULL, a2, &e), 0);
    assert_memory_equal(b, a2, sizeof(b));

    /* A different count for an owner replaces its lease. */
    int a1[1];
    assert_int_equal(store_ports_lease(f->s, "stamp-a", 1, 20000, 20009, NULL, NULL, a1, &e), 0);
    assert_int_equal(a1[0], 20000);

    /* The veto is honoured: only odd ports, none held by others. */
    int calls = 0;
    int d[3];
    assert_int_equal(store_ports_lease(f->s, "stamp-d", 3, 20000, 20019, veto_even, &calls, d, &e),
                     0);
    assert_true(calls > 0);
    /* 20000 is stamp-a's, 20003..20005 stamp-b's. */
    assert_int_equal(d[0], 20001);
    assert_int_equal(d[1], 20007);
    assert_int_equal(d[2], 20009);

    assert_int_equal(store_ports_release(f->s, "stamp-b", &e), 0);
    assert_int_equal(store_ports_release(f->s, "nobody", &e), 0);
    int g[3];
    assert_int_equal(store_ports_lease(f->s, "stamp-g", 3, 20000, 20009, NULL, NULL, g, &e), 0);
    assert_int_equal(g[0], 20002);
    assert_int_equal(g[1], 20003);
    assert_int_equal(g[2], 20004);

    assert_int_equal(store_ports_lease(f->s, "x", 0, 20000, 20009, NULL, NULL, g, &e), SE_INVAL);
    assert_int_equal(store_ports_lease(f->s, "x", 1, 20009, 20000, NULL, NULL, g, &e), SE_INVAL);

    /* A read of what an owner holds; release takes the owners below it. */
    int h[3], n = -1;
    assert_int_equal(store_ports_held(f->s, "stamp-g", h, 3, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(h[0], 20002);
    assert_int_equal(h[2], 20004);
    assert_int_equal(store_ports_held(f->s, "stamp-g", h, 1, &n, &e), 0);
    assert_int_equal(n, 3); /* counted past max */
    assert_int_equal(store_ports_held(f->s, "nobody", h, 3, &n, &e), 0);
    assert_int_equal(n, 0);
    int sub[1];
    assert_int_equal(store_ports_lease(f->s, "stamp-g/app/0@x", 1, 20000, 20009, NULL, NULL, sub, &e), 0);
    assert_int_equal(store_ports_lease(f->s, "stamp-gx", 1, 20000, 20009, NULL, NULL, sub, &e), 0);
    assert_int_equal(store_ports_release(f->s, "stamp-g", &e), 0);
    assert_int_equal(store_ports_held(f->s, "stamp-g/app/0@x", h, 3, &n, &e), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_ports_held(f->s, "stamp-gx", h, 3, &n, &e), 0);
    assert_int_equal(n, 1); /* a name that only starts alike is another owner */
}

static void test_reopen(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "persist", "t1");
    json_object_set_new(r.spec, "k", json_string("v"));
    store_event ev = {.type = "Normal", .reason = "Created", .message = "x"};
    assert_int_equal(store_create(f->s, &r, &ev, &e), 0);
    assert_int_equal(store_update(f->s, &r, NULL, &e), 0);
    assert_int_equal(store_meta_set(f->s, "id", "42", &e), 0);
    int p[2];
    assert_int_equal(store_ports_lease(f->s, "persist", 2, 30000, 30010, NULL, NULL, p, &e), 0);
    store_close(f->s);
    f->s = NULL;

    if (!f->pg) {
        struct stat st;
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }

    assert_int_equal(reopen(f, &e), 0);
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "persist", &g, &e), 0);
    assert_string_equal(g.tenant, "t1");
    assert_int_equal(g.resource_version, 2);
    assert_true(json_equal(g.spec, r.spec));
    char *v = NULL;
    assert_int_equal(store_meta_get(f->s, "id", &v, &e), 0);
    assert_string_equal(v, "42");
    free(v);
    int q[2];
    assert_int_equal(store_ports_lease(f->s, "persist", 2, 30000, 30010, NULL, NULL, q, &e), 0);
    assert_memory_equal(p, q, sizeof(p));
    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "persist", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 1);
    json_decref(evs);
    resource_free(&g);
    resource_free(&r);
}

/* A phase change's from and to round-trip through both listings; other
 * events have neither. */
static void test_event_phases(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "ph", "t1");
    store_event created = {.type = "Normal", .reason = "Created", .message = "a -> b: not a change"};
    assert_int_equal(store_create(f->s, &r, &created, &e), 0);
    store_event ch = {.type = "Normal",
                      .reason = "DrainComplete",
                      .message = "whatever the text says",
                      .from = "Draining",
                      .to = "Ready"};
    assert_int_equal(store_update(f->s, &r, &ch, &e), 0);

    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "ph", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 2);
    assert_null(json_object_get(json_array_get(evs, 0), "from"));
    assert_null(json_object_get(json_array_get(evs, 0), "to"));
    json_t *last = json_array_get(evs, 1);
    assert_string_equal(json_string_value(json_object_get(last, "from")), "Draining");
    assert_string_equal(json_string_value(json_object_get(last, "to")), "Ready");
    json_decref(evs);

    int64_t upto = 0;
    assert_int_equal(store_events_after(f->s, "Stamp", "ph", "t1", 0, 10, &evs, &upto, &e), 0);
    assert_int_equal(json_array_size(evs), 2);
    assert_null(json_object_get(json_array_get(evs, 0), "to"));
    last = json_array_get(evs, 1);
    assert_string_equal(json_string_value(json_object_get(last, "from")), "Draining");
    assert_string_equal(json_string_value(json_object_get(last, "to")), "Ready");
    json_decref(evs);
    resource_free(&r);
}

static int64_t pragma_int(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Builds path as the code before versioned migrations did (user_version 0,
 * meta schema_version 1), with or without resources.due_ms, holding one
 * stamp and two events: a phase change and an event that only looks like
 * one. */
static void make_old_db(const char *path, bool with_due) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(
        db,
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE events ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, name TEXT NOT NULL,"
        "  time_ms INTEGER NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL,"
        "  message TEXT NOT NULL, resource_version INTEGER NOT NULL);"
        "CREATE INDEX events_object ON events(kind, name, id);"
        "CREATE TABLE audit ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,"
        "  \"user\" TEXT NOT NULL, tenant TEXT NOT NULL, operation TEXT NOT NULL,"
        "  kind TEXT NOT NULL, name TEXT NOT NULL, result TEXT NOT NULL, detail TEXT);"
        "CREATE TABLE ports (port INTEGER PRIMARY KEY, owner TEXT NOT NULL);"
        "INSERT INTO meta(key, value) VALUES('schema_version', '1');"
        "INSERT INTO events(kind, name, time_ms, type, reason, message, resource_version)"
        " VALUES('Stamp', 'old', 1000, 'Normal', 'Activated', 'Ready -> Active: activate (x)', 2),"
        " ('Stamp', 'old', 2000, 'Normal', 'DeployRequested', 'by u: region a -> b', 2);",
        NULL, NULL, &err);
    assert_int_equal(rc, SQLITE_OK);
    rc = sqlite3_exec(db,
                      with_due ? "CREATE TABLE resources ("
                                 "  kind TEXT NOT NULL, name TEXT NOT NULL, tenant TEXT NOT NULL DEFAULT '',"
                                 "  labels TEXT NOT NULL, annotations TEXT NOT NULL, spec TEXT NOT NULL,"
                                 "  status TEXT NOT NULL, finalizers TEXT NOT NULL,"
                                 "  resource_version INTEGER NOT NULL, generation INTEGER NOT NULL,"
                                 "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
                                 "  deletion_ms INTEGER NOT NULL DEFAULT 0, due_ms INTEGER,"
                                 "  PRIMARY KEY (kind, name));"
                               : "CREATE TABLE resources ("
                                 "  kind TEXT NOT NULL, name TEXT NOT NULL, tenant TEXT NOT NULL DEFAULT '',"
                                 "  labels TEXT NOT NULL, annotations TEXT NOT NULL, spec TEXT NOT NULL,"
                                 "  status TEXT NOT NULL, finalizers TEXT NOT NULL,"
                                 "  resource_version INTEGER NOT NULL, generation INTEGER NOT NULL,"
                                 "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
                                 "  deletion_ms INTEGER NOT NULL DEFAULT 0,"
                                 "  PRIMARY KEY (kind, name));",
                      NULL, NULL, &err);
    assert_int_equal(rc, SQLITE_OK);
    rc = sqlite3_exec(db,
                      "INSERT INTO resources(kind, name, tenant, labels, annotations, spec, status,"
                      " finalizers, resource_version, generation, created_ms, updated_ms)"
                      " VALUES('Stamp', 'old', 't1', '{}', '{}', '{\"k\":\"v\"}',"
                      " '{\"phase\":\"Active\"}', '[]', 2, 1, 1000, 1000);",
                      NULL, NULL, &err);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);
}

static void check_migrated(fixture *f, const char *path) {
    serr e = {0};
    assert_int_equal(store_open_sqlite(path, &f->s, &e), 0);
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "old", &g, &e), 0);
    assert_string_equal(g.tenant, "t1");
    assert_int_equal(g.resource_version, 2);
    assert_string_equal(json_string_value(json_object_get(g.status, "phase")), "Active");
    /* Writable after the upgrade, due_ms included. */
    g.due_ms = 5000;
    store_event ch = {.type = "Normal", .reason = "Draining", .message = "m", .from = "Active",
                      .to = "Draining"};
    assert_int_equal(store_update(f->s, &g, &ch, &e), 0);
    resource_free(&g);

    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "old", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 3);
    /* The old phase change was backfilled from its message, once. */
    json_t *ev = json_array_get(evs, 0);
    assert_string_equal(json_string_value(json_object_get(ev, "from")), "Ready");
    assert_string_equal(json_string_value(json_object_get(ev, "to")), "Active");
    assert_null(json_object_get(json_array_get(evs, 1), "to"));
    ev = json_array_get(evs, 2);
    assert_string_equal(json_string_value(json_object_get(ev, "from")), "Active");
    assert_string_equal(json_string_value(json_object_get(ev, "to")), "Draining");
    json_decref(evs);
    /* Versions are user_version's; meta keeps the 1 older programs want. */
    char *v = NULL;
    assert_int_equal(store_meta_get(f->s, "schema_version", &v, &e), 0);
    assert_string_equal(v, "1");
    free(v);
    int64_t n = pragma_int(path, "PRAGMA user_version");
    assert_true(n >= 3);
    store_close(f->s);
    f->s = NULL;

    /* Opening again changes nothing. */
    assert_int_equal(store_open_sqlite(path, &f->s, &e), 0);
    assert_int_equal(pragma_int(path, "PRAGMA user_version"), n);
    assert_int_equal(store_events(f->s, "Stamp", "old", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 3);
    json_decref(evs);
}

static void test_migrate_old(void **state) {
    fixture *f = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/old.db", f->dir);
    make_old_db(path, true);
    store_close(f->s);
    f->s = NULL;
    check_migrated(f, path);
}

static void test_migrate_before_due(void **state) {
    fixture *f = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/older.db", f->dir);
    make_old_db(path, false);
    store_close(f->s);
    f->s = NULL;
    check_migrated(f, path);
    assert_int_equal(pragma_int(path, "SELECT COUNT(*) FROM pragma_table_info('resources')"
                                      " WHERE name='due_ms'"),
                     1);
}

/* A database from a newer program is refused, not downgraded. */
static void test_migrate_newer(void **state) {
    fixture *f = *state;
    serr e = {0};
    store_close(f->s);
    f->s = NULL;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_open_sqlite(f->path, &f->s, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "999"));
    assert_null(f->s);
}

static void test_too_big(void **state) {
    fixture *f = *state;
    serr e = {0};
    size_t n = 1024 * 1024 + 16;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    resource r;
    make(&r, "Stamp", "big", "");
    json_object_set_new(r.spec, "blob", json_string(big));
    assert_int_equal(store_create(f->s, &r, NULL, &e), SE_TOOBIG);
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "big", &g, &e), SE_NOTFOUND);
    resource_free(&r);
    free(big);

    /* Wrong JSON types are refused, not stored. */
    make(&r, "Stamp", "bad", "");
    json_decref(r.spec);
    r.spec = json_array();
    assert_int_equal(store_create(f->s, &r, NULL, &e), SE_INVAL);
    resource_free(&r);
}

#define WORKERS 4
#define INCREMENTS 50

typedef struct worker {
    store *s;
    int conflicts;
    int failures;
} worker;

static void *increment(void *arg) {
    worker *w = arg;
    for (int i = 0; i < INCREMENTS; i++) {
        for (;;) {
            resource r = {0};
            serr e = {0};
            if (store_get(w->s, "Stamp", "counter", &r, &e) != 0) {
                w->failures++;
                break;
            }
            json_int_t n = json_integer_value(json_object_get(r.spec, "counter"));
            json_object_set_new(r.spec, "counter", json_integer(n + 1));
            int rc = store_update(w->s, &r, NULL, &e);
            resource_free(&r);
            if (rc == 0) break;
            if (rc != SE_CONFLICT) {
                w->failures++;
                break;
            }
            w->conflicts++;
        }
    }
    return NULL;
}

static void test_concurrent_counter(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "counter", "");
    json_object_set_new(r.spec, "counter", json_integer(0));
    assert_int_equal(store_create(f->s, &r, NULL, &e), 0);
    resource_free(&r);

    pthread_t th[WORKERS];
    worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (worker){.s = f->s};
        assert_int_equal(pthread_create(&th[i], NULL, increment, &w[i]), 0);
    }
    int conflicts = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
        conflicts += w[i].conflicts;
    }
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "counter", &g, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(g.spec, "counter")),
                     WORKERS * INCREMENTS);
    assert_int_equal(g.resource_version, 1 + WORKERS * INCREMENTS);
    assert_int_equal(g.generation, 1 + WORKERS * INCREMENTS);
    print_message("%d conflicts retried\n", conflicts);
    resource_free(&g);
}

/* ---- reads beside the writer ------------------------------------------ */

/* A resource, a due one, an event, an audit row and a metadata key, each
 * committed: what the readers below expect to see. */
static void seed_reads(store *s) {
    serr e = {0};
    resource r;
    make(&r, "Stamp", "seen", "t1");
    json_object_set_new(r.spec, "v", json_integer(1));
    r.due_ms = 1000;
    store_event ev = {.type = "Normal", .reason = "Created", .message = "seen"};
    assert_int_equal(store_create(s, &r, &ev, &e), 0);
    resource_free(&r);
    store_audit a = {"alice", "t1", "create", "Stamp", "seen", "ok", NULL};
    assert_int_equal(store_audit_add(s, &a, &e), 0);
    assert_int_equal(store_meta_set(s, "k", "v", &e), 0);
}

static int count_fn(const resource *r, void *arg) {
    (*(int *)arg)++;
    return 0;
}

typedef struct reads_probe {
    store *s;
    int64_t want_v; /* spec.v store_get must show */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool finished;
    int failures;
    char why[128];
} reads_probe;

static void probe_fail(reads_probe *p, const char *what) {
    if (p->failures++ == 0) str_copy(p->why, sizeof(p->why), what);
}

/* Every pure read of store.h once; what each must return is what
 * seed_reads committed. */
static void *read_all(void *arg) {
    reads_probe *p = arg;
    serr e = {0};
    resource g;
    resource_init(&g);
    if (store_get(p->s, "Stamp", "seen", &g, &e) != 0 ||
        json_integer_value(json_object_get(g.spec, "v")) != p->want_v)
        probe_fail(p, "get");
    resource_free(&g);
    int n = 0;
    if (store_list(p->s, "Stamp", NULL, count_fn, &n, &e) != 0 || n != 1) probe_fail(p, "list");
    n = 0;
    if (store_list_due(p->s, "Stamp", 0, "", 2000, 10, count_fn, &n, &e) != 1 || n != 1)
        probe_fail(p, "list_due");
    json_t *j = NULL;
    if (store_events(p->s, "Stamp", "seen", 0, &j, &e) != 0 || json_array_size(j) != 1)
        probe_fail(p, "events");
    json_decref(j);
    int64_t upto = 0, last = 0;
    if (store_events_after(p->s, NULL, NULL, NULL, 0, 10, &j, &upto, &e) != 0 ||
        json_array_size(j) != 1 || upto < 1)
        probe_fail(p, "events_after");
    json_decref(j);
    if (store_events_last_id(p->s, &last, &e) != 0 || last != upto) probe_fail(p, "last_id");
    if (store_audit_list(p->s, NULL, NULL, 0, &j, &e) != 0 || json_array_size(j) != 1)
        probe_fail(p, "audit_list");
    json_decref(j);
    char *v = NULL;
    if (store_meta_get(p->s, "k", &v, &e) != 0 || strcmp(v, "v") != 0) probe_fail(p, "meta_get");
    free(v);
    pthread_mutex_lock(&p->mu);
    p->finished = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Runs read_all on a thread of its own and waits for it.  The wait is a
 * deadlock guard, not a timing assertion: a read that needs what the
 * calling thread holds waits for ever, and after 60 s the caller reports
 * that rather than hanging.  Returns whether the reads finished. */
static bool reads_answer(reads_probe *p, pthread_t *th) {
    p->finished = false;
    assert_int_equal(pthread_create(th, NULL, read_all, p), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (!p->finished && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
    bool finished = p->finished;
    pthread_mutex_unlock(&p->mu);
    return finished;
}

typedef struct veto_probe {
    reads_probe *p;
    pthread_t th;
    int calls;
    bool answered;
} veto_probe;

/* The port veto runs on the writer, inside its BEGIN IMMEDIATE, with the
 * writer's lock held: a test hook for "the writer is in a long
 * transaction".  Every read must still answer. */
static int veto_reads(int port, void *arg) {
    veto_probe *v = arg;
    if (v->calls++ == 0) v->answered = reads_answer(v->p, &v->th);
    return 1;
}

static void test_reads_while_writer_in_tx(void **state) {
    fixture *f = *state;
    serr e = {0};
    seed_reads(f->s);
    int held[1], ports[2];
    /* The owner holds one port and asks for two: the lease deletes its
     * row, uncommitted, then walks the range calling the veto. */
    assert_int_equal(store_ports_lease(f->s, "owner", 1, 31000, 31010, NULL, NULL, held, &e), 0);
    reads_probe p = {.s = f->s, .want_v = 1};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    veto_probe v = {.p = &p};
    assert_int_equal(store_ports_lease(f->s, "owner", 2, 31000, 31010, veto_reads, &v, ports, &e),
                     0);
    /* Joined only now: had the reads needed the writer, they ran once the
     * lease let it go. */
    assert_true(v.calls > 0);
    pthread_join(v.th, NULL);
    assert_true(v.answered);
    if (p.failures) print_message("first failed read: %s\n", p.why);
    assert_int_equal(p.failures, 0);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
}

/* Another connection (another process, as far as SQLite knows) holds the
 * write lock with changes not yet committed: reads answer from the last
 * commit, and see the new one as soon as it is committed. */
static void test_reads_beside_raw_writer(void **state) {
    fixture *f = *state;
    serr e = {0};
    seed_reads(f->s);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "BEGIN IMMEDIATE;"
                                  "UPDATE resources SET spec='{\"v\":2}' WHERE name='seen';"
                                  "INSERT INTO resources(kind, name, tenant, labels, annotations,"
                                  " spec, status, finalizers, resource_version, generation,"
                                  " created_ms, updated_ms) VALUES('Stamp', 'raw', '', '{}', '{}',"
                                  " '{}', '{}', '[]', 1, 1, 1, 1);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    reads_probe p = {.s = f->s, .want_v = 1};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t th;
    assert_true(reads_answer(&p, &th));
    pthread_join(th, NULL);
    if (p.failures) print_message("first failed read: %s\n", p.why);
    assert_int_equal(p.failures, 0);
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "raw", &g, &e), SE_NOTFOUND);

    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(store_get(f->s, "Stamp", "raw", &g, &e), 0);
    assert_int_equal(store_get(f->s, "Stamp", "seen", &g, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(g.spec, "v")), 2);
    resource_free(&g);
    sqlite3_close(db);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
}

/* ---- read-your-writes across threads ---------------------------------- */

#define RYW_WRITES 150
#define RYW_READERS 3

typedef struct ryw {
    store *s;
    atomic_llong published; /* the last resourceVersion store_update returned */
    atomic_int writing;
    int stale;              /* a read older than a write that had returned */
    int failures;
} ryw;

static void *ryw_writer(void *arg) {
    ryw *w = arg;
    serr e = {0};
    resource r;
    resource_init(&r);
    if (store_get(w->s, "Stamp", "ryw", &r, &e) != 0) w->failures++;
    for (int i = 0; i < RYW_WRITES && w->failures == 0; i++) {
        json_object_set_new(r.status, "i", json_integer(i));
        store_event ev = {.type = "Normal", .reason = "Tick", .message = "t"};
        if (store_update(w->s, &r, &ev, &e) != 0) w->failures++;
        atomic_store(&w->published, (long long)r.resource_version);
    }
    resource_free(&r);
    atomic_store(&w->writing, 0);
    return NULL;
}

typedef struct ryw_reader {
    ryw *w;
    int stale, failures;
} ryw_reader;

static void *ryw_read(void *arg) {
    ryw_reader *rd = arg;
    ryw *w = rd->w;
    serr e = {0};
    int more = 1;
    while (more) {
        more = atomic_load(&w->writing); /* one last round after the writer */
        long long want = atomic_load(&w->published);
        resource g;
        resource_init(&g);
        if (store_get(w->s, "Stamp", "ryw", &g, &e) != 0) rd->failures++;
        else if (g.resource_version < want) rd->stale++;
        resource_free(&g);
        /* A page cut short by its limit leaves its statement part-way;
         * the reader must still give the next op a fresh snapshot. */
        int n = 0;
        if (store_list_due(w->s, "Stamp", 0, "", 10000, 1, count_fn, &n, &e) != 1) rd->failures++;
        /* The create's event and one per update: event ids run with the
         * resourceVersion. */
        want = atomic_load(&w->published);
        json_t *evs = NULL;
        int64_t upto = 0, last = 0;
        if (store_events_after(w->s, "Stamp", "ryw", NULL, 0, 1, &evs, &upto, &e) != 0)
            rd->failures++;
        json_decref(evs);
        if (store_events_last_id(w->s, &last, &e) != 0) rd->failures++;
        else if (last < want) rd->stale++;
        want = atomic_load(&w->published);
        if (store_events(w->s, "Stamp", "ryw", 0, &evs, &e) != 0) rd->failures++;
        else if ((long long)json_array_size(evs) < want) rd->stale++;
        json_decref(evs);
    }
    return NULL;
}

static void test_read_your_writes_threads(void **state) {
    fixture *f = *state;
    serr e = {0};
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "due-%d", i);
        resource r;
        make(&r, "Stamp", name, "");
        r.due_ms = 100 + i;
        assert_int_equal(store_create(f->s, &r, NULL, &e), 0);
        resource_free(&r);
    }
    resource r;
    make(&r, "Stamp", "ryw", "");
    store_event ev = {.type = "Normal", .reason = "Created", .message = "c"};
    assert_int_equal(store_create(f->s, &r, &ev, &e), 0);
    resource_free(&r);

    ryw w = {.s = f->s};
    atomic_store(&w.published, 1);
    atomic_store(&w.writing, 1);
    ryw_reader rd[RYW_READERS];
    pthread_t th[RYW_READERS], wt;
    for (int i = 0; i < RYW_READERS; i++) {
        rd[i] = (ryw_reader){.w = &w};
        assert_int_equal(pthread_create(&th[i], NULL, ryw_read, &rd[i]), 0);
    }
    assert_int_equal(pthread_create(&wt, NULL, ryw_writer, &w), 0);
    pthread_join(wt, NULL);
    int stale = 0, failures = w.failures;
    for (int i = 0; i < RYW_READERS; i++) {
        pthread_join(th[i], NULL);
        stale += rd[i].stale;
        failures += rd[i].failures;
    }
    assert_int_equal(failures, 0);
    assert_int_equal(stale, 0);
    assert_int_equal(atomic_load(&w.published), 1 + RYW_WRITES);
}

/* ---- the statement cache ---------------------------------------------- */

static int veto_all(int port, void *arg) { return 0; }

/* Every op once, each failing one way and then succeeding, checking that
 * the good call after a failure gets the right answer. */
static void cache_round(store *s, int i) {
    serr e = {0};
    char name[32];
    snprintf(name, sizeof(name), "c-%d", i);
    resource r;
    make(&r, "Stamp", name, "t");
    json_object_set_new(r.spec, "i", json_integer(i));
    store_event ev = {.type = "Normal", .reason = "Created", .message = name};
    assert_int_equal(store_create(s, &r, &ev, &e), 0);
    /* A constraint failure on the cached INSERT, then the same INSERT. */
    assert_int_equal(store_create(s, &r, &ev, &e), SE_EXISTS);
    resource other;
    make(&other, "Namespace", name, "t");
    assert_int_equal(store_create(s, &other, NULL, &e), 0);
    resource_free(&other);

    /* A conflict leaves the version check's statement on its row. */
    int64_t rv = r.resource_version;
    r.resource_version = rv + 7;
    assert_int_equal(store_update(s, &r, NULL, &e), SE_CONFLICT);
    r.resource_version = rv;
    json_object_set_new(r.spec, "i", json_integer(i + 1000));
    store_event upd = {.type = "Normal", .reason = "Updated", .message = "u", .from = "A", .to = "B"};
    assert_int_equal(store_update(s, &r, &upd, &e), 0);

    resource g;
    resource_init(&g);
    assert_int_equal(store_get(s, "Stamp", "nope", &g, &e), SE_NOTFOUND);
    assert_int_equal(store_get(s, "Stamp", name, &g, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(g.spec, "i")), i + 1000);
    assert_int_equal(g.resource_version, 2);
    resource_free(&g);

    /* Optional filters: bound, then left unbound, must mean "any". */
    json_t *evs = NULL;
    int64_t upto = 0, last = 0;
    assert_int_equal(store_events_last_id(s, &last, &e), 0);
    assert_int_equal(store_events_after(s, "Stamp", name, "t", last - 2, 10, &evs, &upto, &e), 0);
    assert_int_equal(json_array_size(evs), 2);
    json_decref(evs);
    assert_int_equal(store_events_after(s, "Namespace", NULL, NULL, 0, 10, &evs, &upto, &e), 0);
    assert_int_equal(json_array_size(evs), 0);
    json_decref(evs);
    assert_int_equal(store_events_after(s, NULL, NULL, NULL, last - 2, 10, &evs, &upto, &e), 0);
    assert_int_equal(json_array_size(evs), 2);
    assert_int_equal(upto, last);
    json_decref(evs);
    assert_int_equal(store_events(s, "Stamp", name, 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 1), "to")), "B");
    json_decref(evs);
    /* The update's event had phases; the next event has none. */
    store_event plain = {.type = "Normal", .reason = "Note", .message = "n"};
    assert_int_equal(store_event_add(s, "Stamp", name, &plain, &e), 0);
    assert_int_equal(store_events(s, "Stamp", name, 1, &evs, &e), 0);
    assert_null(json_object_get(json_array_get(evs, 0), "to"));
    json_decref(evs);

    store_audit a = {"u", "t", "create", "Stamp", name, "ok", NULL};
    assert_int_equal(store_audit_add(s, &a, &e), 0);
    assert_int_equal(store_audit_list(s, "Stamp", name, 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 1);
    json_decref(evs);
    assert_int_equal(store_audit_list(s, NULL, NULL, 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), (size_t)i + 1);
    json_decref(evs);

    /* A lease refused part-way through its scan, then one that works. */
    int ports[2];
    assert_int_equal(store_ports_lease(s, name, 2, 32000, 32999, veto_all, NULL, ports, &e),
                     SE_LIMIT);
    assert_int_equal(store_ports_lease(s, name, 2, 32000, 32999, NULL, NULL, ports, &e), 0);
    assert_int_equal(ports[0], 32000);
    assert_int_equal(ports[1], 32001);
    assert_int_equal(store_ports_release(s, name, &e), 0);

    char *v = NULL;
    assert_int_equal(store_meta_get(s, name, &v, &e), SE_NOTFOUND);
    assert_int_equal(store_meta_set(s, name, "x", &e), 0);
    assert_int_equal(store_meta_get(s, name, &v, &e), 0);
    assert_string_equal(v, "x");
    free(v);

    int n = 0;
    assert_int_equal(store_list(s, "Stamp", "t", count_fn, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_list_due(s, "Stamp", 0, "", 10, 5, count_fn, &n, &e), 0);

    assert_int_equal(store_delete(s, "Stamp", name, 1, &e), SE_CONFLICT);
    assert_int_equal(store_delete(s, "Stamp", name, 2, &e), 0);
    resource_free(&r);
}

static void test_statement_cache(void **state) {
    fixture *f = *state;
    serr e = {0};
    store_sqlite_stats s0, s1;
    cache_round(f->s, 0); /* compiles what the rounds use */
    assert_int_equal(store_sqlite_stats_get(f->s, &s0, &e), 0);
    assert_true(s0.readers > 0);
    assert_true(s0.prepared > 0);
    assert_int_equal(s0.cached, s0.prepared);
    for (int i = 1; i < 100; i++) cache_round(f->s, i);
    assert_int_equal(store_sqlite_stats_get(f->s, &s1, &e), 0);
    /* Nothing compiled again: every statement came from the cache. */
    assert_int_equal(s1.prepared, s0.prepared);
    assert_int_equal(s1.cached, s0.cached);
    assert_true(s1.reused - s0.reused >= 99 * 30);
    print_message("%ld statements prepared, %ld reuses\n", s1.prepared, s1.reused);
}


/* ---- a watch misses nothing ------------------------------------------- */

#define TAIL_WRITERS 4
#define TAIL_EVENTS 60

typedef struct tail {
    store *s;
    atomic_int writing;
    int failures;
} tail;

static void *tail_write(void *arg) {
    tail *t = arg;
    serr e = {0};
    for (int i = 0; i < TAIL_EVENTS; i++) {
        store_event ev = {.type = "Normal", .reason = "Tick", .message = "t"};
        if (store_event_add(t->s, "Stamp", "tail", &ev, &e) != 0) t->failures++;
    }
    atomic_fetch_sub(&t->writing, 1);
    return NULL;
}

/* Writers add events from several threads (several connections, on
 * PostgreSQL) while a watch reads after the last id it was given, as the
 * API's watch does: it must see every event exactly once, in id order.  On
 * PostgreSQL that rests on ids becoming visible in id order. */
static void test_watch_misses_nothing(void **state) {
    fixture *f = *state;
    serr e = {0};
    tail t = {.s = f->s};
    atomic_store(&t.writing, TAIL_WRITERS);
    pthread_t th[TAIL_WRITERS];
    for (int i = 0; i < TAIL_WRITERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, tail_write, &t), 0);
    int64_t after = 0, last_id = 0;
    int seen = 0, disorder = 0, more = 1;
    while (more) {
        more = atomic_load(&t.writing) > 0; /* one last read after the writers */
        json_t *evs = NULL;
        int64_t upto = 0;
        assert_int_equal(store_events_after(f->s, "Stamp", "tail", NULL, after, 7, &evs, &upto, &e),
                         0);
        size_t i;
        json_t *ev;
        json_array_foreach(evs, i, ev) {
            int64_t id = json_integer_value(json_object_get(ev, "id"));
            if (id <= last_id) disorder++;
            last_id = id;
            seen++;
        }
        if (json_array_size(evs) == 7) more = 1; /* a full page: read on */
        json_decref(evs);
        after = upto;
    }
    for (int i = 0; i < TAIL_WRITERS; i++) pthread_join(th[i], NULL);
    assert_int_equal(t.failures, 0);
    assert_int_equal(disorder, 0);
    assert_int_equal(seen, TAIL_WRITERS * TAIL_EVENTS);
}

/* ---- PostgreSQL's own ------------------------------------------------- */

/* A thread acting for a leader writes only while the database's epoch is
 * its own; 0 is never fenced; reads are never fenced. */
static void test_pg_fencing(void **state) {
    fixture *f = *state;
    serr e = {0};
    PGconn *raw = pg_raw(f->url);
    assert_int_equal(pg_int(raw, "SELECT count(*) FROM stamp_leader"), 1);
    assert_int_equal(pg_int(raw, "SELECT epoch FROM stamp_leader WHERE id = 1"), 0);
    pg_do(raw, "UPDATE stamp_leader SET epoch = 5 WHERE id = 1");

    store_fence_set(5);
    resource r;
    make(&r, "Stamp", "f1", "t");
    store_event ev = {.type = "Normal", .reason = "Created", .message = "c"};
    assert_int_equal(store_create(f->s, &r, &ev, &e), 0);
    assert_int_equal(store_update(f->s, &r, NULL, &e), 0);
    assert_int_equal(r.resource_version, 2);

    /* Another replica won an election. */
    pg_do(raw, "UPDATE stamp_leader SET epoch = 6 WHERE id = 1");
    double before = metrics_get("stamp_fenced_writes_total", "");
    json_object_set_new(r.spec, "v", json_integer(1));
    assert_int_equal(store_update(f->s, &r, &ev, &e), SE_FENCED);
    assert_string_equal(e.msg, "fenced: leader epoch 5 is stale (now 6)");
    assert_int_equal(r.resource_version, 2);
    resource x;
    make(&x, "Stamp", "f2", "t");
    assert_int_equal(store_create(f->s, &x, &ev, &e), SE_FENCED);
    assert_int_equal(store_delete(f->s, "Stamp", "f1", 0, &e), SE_FENCED);
    assert_int_equal(store_event_add(f->s, "Stamp", "f1", &ev, &e), SE_FENCED);
    assert_int_equal(store_meta_set(f->s, "k", "v", &e), SE_FENCED);
    int ports[1];
    assert_int_equal(store_ports_lease(f->s, "f1", 1, 20000, 20009, NULL, NULL, ports, &e),
                     SE_FENCED);
    store_audit a = {"u", "t", "drain", "Stamp", "f1", "ok", NULL};
    assert_int_equal(store_audit_add(f->s, &a, &e), SE_FENCED);
    assert_int_equal(store_ports_release(f->s, "f1", &e), SE_FENCED);
    assert_true(metrics_get("stamp_fenced_writes_total", "") - before == 8);

    /* Nothing of it landed; reads still answer. */
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "f1", &g, &e), 0);
    assert_int_equal(g.resource_version, 2);
    assert_null(json_object_get(g.spec, "v"));
    assert_int_equal(store_get(f->s, "Stamp", "f2", &g, &e), SE_NOTFOUND);
    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "f1", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 1);
    json_decref(evs);
    char *v = NULL;
    assert_int_equal(store_meta_get(f->s, "k", &v, &e), SE_NOTFOUND);
    int n = -1, held[1];
    assert_int_equal(store_ports_held(f->s, "f1", held, 1, &n, &e), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_audit_list(f->s, NULL, NULL, 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 0);
    json_decref(evs);

    /* 0 (the API's writes) is never fenced, whatever the epoch. */
    store_fence_set(0);
    assert_int_equal(store_update(f->s, &r, NULL, &e), 0);
    assert_int_equal(r.resource_version, 3);
    /* The new leader's epoch writes. */
    store_fence_set(6);
    assert_int_equal(store_update(f->s, &r, &ev, &e), 0);
    assert_int_equal(r.resource_version, 4);
    store_fence_set(0);
    resource_free(&g);
    resource_free(&x);
    resource_free(&r);
    PQfinish(raw);
}

typedef struct racer {
    store *s;
    resource r;
    int rc;
    char msg[SERR_MSG_MAX];
} racer;

static void *race_update(void *arg) {
    racer *x = arg;
    serr e = {0};
    x->rc = store_update(x->s, &x->r, NULL, &e);
    str_copy(x->msg, sizeof(x->msg), e.msg);
    return NULL;
}

/* Waits (a deadlock guard of 60 s, not a timing assertion) until n of the
 * store's sessions wait for a lock. */
static bool wait_lockers(PGconn *raw, int n) {
    for (int i = 0; i < 6000; i++) {
        if (pg_int(raw, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name = 'stampd' AND wait_event_type = 'Lock'") >= n)
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Two threads update the same version of one row at the same moment (both
 * held at the row lock until a third session lets go): one wins, the other
 * is SE_CONFLICT and changed nothing. */
static void test_pg_race(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "race", "t");
    json_object_set_new(r.spec, "who", json_string("nobody"));
    assert_int_equal(store_create(f->s, &r, NULL, &e), 0);
    resource_free(&r);
    racer a = {.s = f->s}, b = {.s = f->s};
    resource_init(&a.r);
    resource_init(&b.r);
    assert_int_equal(store_get(f->s, "Stamp", "race", &a.r, &e), 0);
    assert_int_equal(store_get(f->s, "Stamp", "race", &b.r, &e), 0);
    json_object_set_new(a.r.spec, "who", json_string("a"));
    json_object_set_new(b.r.spec, "who", json_string("b"));

    PGconn *raw = pg_raw(f->url), *watch = pg_raw(f->url);
    pg_do(raw, "BEGIN");
    pg_do(raw, "SELECT 1 FROM resources WHERE kind = 'Stamp' AND name = 'race' FOR UPDATE");
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, race_update, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, race_update, &b), 0);
    bool both = wait_lockers(watch, 2);
    pg_do(raw, "COMMIT");
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_true(both);
    racer *win = a.rc == 0 ? &a : &b, *lose = a.rc == 0 ? &b : &a;
    assert_int_equal(win->rc, 0);
    assert_int_equal(lose->rc, SE_CONFLICT);
    assert_string_equal(lose->msg, "stamp race was modified (resourceVersion 2, you had 1)");
    assert_int_equal(win->r.resource_version, 2);
    assert_int_equal(lose->r.resource_version, 1);
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "race", &g, &e), 0);
    assert_int_equal(g.resource_version, 2);
    assert_int_equal(g.generation, 2);
    assert_true(json_equal(g.spec, win->r.spec));
    resource_free(&g);
    resource_free(&a.r);
    resource_free(&b.r);
    PQfinish(watch);
    PQfinish(raw);
}

/* What schema_migrations says, as one string. */
static void migrations_text(PGconn *raw, char *buf, size_t len) {
    PGresult *r = PQexec(raw, "SELECT version || ':' || what || ':' || applied_at"
                              " FROM schema_migrations ORDER BY version");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    buf[0] = '\0';
    size_t off = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int w = snprintf(buf + off, len - off, "%s\n", PQgetvalue(r, i, 0));
        assert_true(w > 0 && (size_t)w < len - off);
        off += (size_t)w;
    }
    PQclear(r);
}

/* Opening a migrated database again changes nothing; a newer one is
 * refused. */
static void test_pg_migrate_twice(void **state) {
    fixture *f = *state;
    serr e = {0};
    create_simple(f->s, "Stamp", "kept", "t");
    PGconn *raw = pg_raw(f->url);
    char before[1024], after[1024];
    migrations_text(raw, before, sizeof(before));
    int64_t n = pg_int(raw, "SELECT count(*) FROM schema_migrations");
    assert_true(n >= 2);
    assert_int_equal(pg_int(raw, "SELECT max(version) FROM schema_migrations"), n);
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(reopen(f, &e), 0);
    migrations_text(raw, after, sizeof(after));
    assert_string_equal(before, after);
    assert_int_equal(pg_int(raw, "SELECT count(*) FROM stamp_leader"), 1);
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "kept", &g, &e), 0);
    resource_free(&g);
    store_close(f->s);
    f->s = NULL;

    pg_do(raw, "INSERT INTO schema_migrations(version, what) VALUES(999, 'from the future')");
    assert_int_equal(reopen(f, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "999"));
    assert_null(f->s);
    PQfinish(raw);
}

typedef struct opener {
    const char *url;
    store *s;
    int rc;
    char msg[SERR_MSG_MAX];
} opener;

static void *open_store(void *arg) {
    opener *o = arg;
    serr e = {0};
    o->rc = store_open(o->url, &o->s, &e);
    str_copy(o->msg, sizeof(o->msg), e.msg);
    return NULL;
}

/* Replicas starting at once on an empty database: each migration runs
 * once, and both open. */
static void test_pg_migrate_concurrent(void **state) {
    (void)state;
    char db[64], url[1024];
    pg_new_db(db, sizeof(db), url, sizeof(url));
    enum { N = 4 };
    opener o[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        o[i] = (opener){.url = url};
        assert_int_equal(pthread_create(&th[i], NULL, open_store, &o[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        if (o[i].rc != 0) fail_msg("open %d: %s", i, o[i].msg);
    PGconn *raw = pg_raw(url);
    int64_t n = pg_int(raw, "SELECT count(*) FROM schema_migrations");
    assert_true(n >= 2);
    assert_int_equal(pg_int(raw, "SELECT count(DISTINCT version) FROM schema_migrations"), n);
    assert_int_equal(pg_int(raw, "SELECT count(*) FROM stamp_leader"), 1);
    assert_int_equal(pg_int(raw, "SELECT count(*) FROM meta WHERE key = 'schema_version'"), 1);
    PQfinish(raw);
    serr e = {0};
    create_simple(o[0].s, "Stamp", "one", "");
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(o[N - 1].s, "Stamp", "one", &g, &e), 0);
    resource_free(&g);
    for (int i = 0; i < N; i++) store_close(o[i].s);
    pg_drop_db(db);
}

/* store_notify reaches a LISTEN on another session. */
static void test_pg_notify(void **state) {
    fixture *f = *state;
    serr e = {0};
    PGconn *l = pg_raw(f->url);
    pg_do(l, "LISTEN stamp_wake");
    assert_int_equal(store_notify(f->s, "Stamp", "n-1", &e), 0);
    assert_int_equal(store_notify(f->s, "", "n-1", &e), SE_INVAL);
    PGnotify *n = NULL;
    /* A deadlock guard of 60 s, not a timing assertion. */
    for (int i = 0; i < 60 && n == NULL; i++) {
        assert_int_equal(PQconsumeInput(l), 1);
        n = PQnotifies(l);
        if (n) break;
        struct pollfd pfd = {.fd = PQsocket(l), .events = POLLIN};
        poll(&pfd, 1, 1000);
    }
    assert_non_null(n);
    assert_string_equal(n->relname, "stamp_wake");
    assert_string_equal(n->extra, "Stamp/n-1");
    PQfreemem(n);
    PQfinish(l);
}

/* The server drops every session of the store (a restart, a failover):
 * the next read and write reconnect and succeed. */
static void test_pg_reconnect(void **state) {
    fixture *f = *state;
    serr e = {0};
    resource r;
    make(&r, "Stamp", "rc", "t");
    assert_int_equal(store_create(f->s, &r, NULL, &e), 0);
    PGconn *raw = pg_raw(f->url);
    for (int round = 0; round < 2; round++) {
        assert_true(pg_int(raw, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                " WHERE datname = current_database()"
                                " AND application_name = 'stampd'") >= 1);
        resource g;
        resource_init(&g);
        if (round == 0) {
            assert_int_equal(store_get(f->s, "Stamp", "rc", &g, &e), 0);
        } else {
            json_object_set_new(r.spec, "after", json_true());
            store_event ev = {.type = "Normal", .reason = "Updated", .message = "u"};
            if (store_update(f->s, &r, &ev, &e) != 0) fail_msg("update: %s", e.msg);
            assert_int_equal(r.resource_version, 2);
        }
        resource_free(&g);
    }
    json_t *evs = NULL;
    assert_int_equal(store_events(f->s, "Stamp", "rc", 0, &evs, &e), 0);
    assert_int_equal(json_array_size(evs), 1);
    json_decref(evs);
    resource_free(&r);
    PQfinish(raw);
}

/* Another session holds uncommitted changes: reads answer from the last
 * commit, and see the new one once it is committed. */
static void test_pg_reads_beside_raw_writer(void **state) {
    fixture *f = *state;
    serr e = {0};
    seed_reads(f->s);
    PGconn *raw = pg_raw(f->url);
    pg_do(raw, "BEGIN");
    pg_do(raw, "UPDATE resources SET spec = '{\"v\":2}' WHERE name = 'seen'");
    pg_do(raw, "INSERT INTO resources(kind, name, tenant, labels, annotations, spec, status,"
               " finalizers, resource_version, generation, created_ms, updated_ms)"
               " VALUES('Stamp', 'raw', '', '{}', '{}', '{}', '{}', '[]', 1, 1, 1, 1)");
    reads_probe p = {.s = f->s, .want_v = 1};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t th;
    assert_true(reads_answer(&p, &th));
    pthread_join(th, NULL);
    if (p.failures) print_message("first failed read: %s\n", p.why);
    assert_int_equal(p.failures, 0);
    resource g;
    resource_init(&g);
    assert_int_equal(store_get(f->s, "Stamp", "raw", &g, &e), SE_NOTFOUND);
    pg_do(raw, "COMMIT");
    assert_int_equal(store_get(f->s, "Stamp", "raw", &g, &e), 0);
    assert_int_equal(store_get(f->s, "Stamp", "seen", &g, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(g.spec, "v")), 2);
    resource_free(&g);
    PQfinish(raw);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
}

/* Every op across errors, many times over one pool. */
static void test_pg_rounds(void **state) {
    fixture *f = *state;
    for (int i = 0; i < 20; i++) cache_round(f->s, i);
}

/* ":memory:" has one connection: reads share the writer. */
static void test_memory(void **state) {
    serr e = {0};
    store *s = NULL;
    assert_int_equal(store_open(":memory:", &s, &e), 0);
    store_sqlite_stats st;
    assert_int_equal(store_sqlite_stats_get(s, &st, &e), 0);
    assert_int_equal(st.readers, 0);
    cache_round(s, 0);
    cache_round(s, 1);
    store_close(s);
}

/* ---- opening by URL --------------------------------------------------- */

static void test_open_urls(void **state) {
    fixture *f = *state;
    serr e = {0};
    char path[192];
    snprintf(path, sizeof(path), "sqlite://%s/other.db", f->dir);
    store *s = NULL;
    assert_int_equal(store_open(path, &s, &e), 0);
    create_simple(s, "Stamp", "x", "");
    store_close(s);
    struct stat sb;
    assert_int_equal(stat(path + 9, &sb), 0);

    /* Nothing listens on port 1: refused at once, and the message never
     * repeats the URL's password. */
    assert_int_equal(store_open("postgres://stamp:hunter2@127.0.0.1:1/stamp", &s, &e), SE_UNAVAIL);
    assert_null(s);
    assert_non_null(strstr(e.msg, "PostgreSQL"));
    assert_null(strstr(e.msg, "hunter2"));
    assert_int_equal(store_open("postgresql://stamp:hunter2@127.0.0.1:1/stamp?sslmode=bogus", &s, &e),
                     SE_UNAVAIL);
    assert_null(strstr(e.msg, "hunter2"));
    assert_int_equal(store_open("postgresql://stamp:hunter2@[::1/stamp", &s, &e), SE_INVAL);
    assert_null(strstr(e.msg, "hunter2"));
    assert_int_equal(store_open("ftp://db.example/stamp", &s, &e), SE_INVAL);
    assert_int_equal(store_open("", &s, &e), SE_INVAL);
    assert_null(s);
    store_close(NULL);
}

/* ---- dispatch through an ops table ------------------------------------ */

/* A backend that records which op ran, and answers without storing. */
typedef struct rec_store {
    store base;
    const char *last;
    int calls;
    int pages;
    char after[RES_NAME_MAX]; /* the cursor of the last list_page */
    bool closed;
} rec_store;

static rec_store *rec(store *s, const char *op) {
    rec_store *r = (rec_store *)s;
    r->last = op;
    r->calls++;
    return r;
}

static void rec_close(store *s) { rec(s, "close")->closed = true; }
static int rec_create(store *s, resource *r, const store_event *ev, serr *e) {
    rec(s, "create");
    r->resource_version = 1;
    return 0;
}
static int rec_get(store *s, const char *kind, const char *name, resource *out, serr *e) {
    rec(s, "get");
    return serr_set(e, SE_NOTFOUND, "rec: %s %s", kind, name);
}
static int rec_update(store *s, resource *r, const store_event *ev, serr *e) {
    rec(s, "update");
    return 0;
}
static int rec_remove(store *s, const char *kind, const char *name, int64_t rv, serr *e) {
    rec(s, "remove");
    return 0;
}
/* Two pages: a full one, then three. */
static int rec_list_page(store *s, const char *kind, const char *tenant, const char *after,
                         resource *batch, int max, int *n, serr *e) {
    rec_store *r = rec(s, "list_page");
    str_copy(r->after, sizeof(r->after), after);
    *n = r->pages++ == 0 ? max : 3;
    for (int i = 0; i < *n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "r%03d", r->pages * 100 + i);
        make(&batch[i], kind, name, tenant ? tenant : "");
    }
    return 0;
}
static int rec_list_due_page(store *s, const char *kind, int64_t after_ms, const char *after_name,
                             int64_t before_ms, resource *batch, int max, int *n, serr *e) {
    rec(s, "list_due_page");
    *n = 2;
    make(&batch[0], kind, "d0", "");
    make(&batch[1], kind, "d1", "");
    return 0;
}
static int rec_event_add(store *s, const char *kind, const char *name, const store_event *ev,
                         serr *e) {
    rec(s, "event_add");
    return 0;
}
static int rec_events(store *s, const char *kind, const char *name, int limit, json_t **out,
                      serr *e) {
    rec(s, "events");
    *out = json_array();
    return 0;
}
static int rec_events_after(store *s, const char *kind, const char *name, const char *tenant,
                            int64_t after, int limit, json_t **out, int64_t *upto, serr *e) {
    rec(s, "events_after");
    *out = json_array();
    *upto = limit; /* shows the clamped limit */
    return 0;
}
static int rec_events_last_id(store *s, int64_t *id, serr *e) {
    rec(s, "events_last_id");
    *id = 42;
    return 0;
}
static int rec_audit_add(store *s, const store_audit *a, serr *e) {
    rec(s, "audit_add");
    return 0;
}
static int rec_audit_list(store *s, const char *kind, const char *name, int limit, json_t **out,
                          serr *e) {
    rec(s, "audit_list");
    *out = json_array();
    return 0;
}
static int rec_meta_get(store *s, const char *key, char **val, serr *e) {
    rec(s, "meta_get");
    *val = strdup("v");
    return 0;
}
static int rec_meta_set(store *s, const char *key, const char *val, serr *e) {
    rec(s, "meta_set");
    return 0;
}
static int rec_ports_lease(store *s, const char *owner, int n, int lo, int hi, store_port_ok_fn ok,
                           void *arg, int *ports, serr *e) {
    rec(s, "ports_lease");
    for (int i = 0; i < n; i++) ports[i] = lo + i;
    return 0;
}
static int rec_ports_release(store *s, const char *owner, serr *e) {
    rec(s, "ports_release");
    return 0;
}

static const store_ops rec_ops = {
    .name = "rec",
    .close = rec_close,
    .create = rec_create,
    .get = rec_get,
    .update = rec_update,
    .remove = rec_remove,
    .list_page = rec_list_page,
    .list_due_page = rec_list_due_page,
    .event_add = rec_event_add,
    .events = rec_events,
    .events_after = rec_events_after,
    .events_last_id = rec_events_last_id,
    .audit_add = rec_audit_add,
    .audit_list = rec_audit_list,
    .meta_get = rec_meta_get,
    .meta_set = rec_meta_set,
    .ports_lease = rec_ports_lease,
    .ports_release = rec_ports_release,
};

static const store_ops bare_ops = {.name = "bare", .close = rec_close};

#define CALLED(r, op)                                   \
    do {                                                \
        assert_non_null((r)->last);                     \
        assert_string_equal((r)->last, op);             \
        (r)->last = NULL;                               \
    } while (0)

static void test_ops_dispatch(void **state) {
    rec_store r = {.base.ops = &rec_ops};
    store *s = &r.base;
    serr e = {0};
    resource x;
    make(&x, "Stamp", "a", "t");
    store_event ev = {.reason = "R"};
    assert_int_equal(store_create(s, &x, &ev, &e), 0);
    CALLED(&r, "create");
    assert_int_equal(x.resource_version, 1);
    assert_int_equal(store_update(s, &x, NULL, &e), 0);
    CALLED(&r, "update");
    assert_int_equal(store_get(s, "Stamp", "a", &x, &e), SE_NOTFOUND);
    CALLED(&r, "get");
    assert_string_equal(e.msg, "rec: Stamp a");
    assert_int_equal(store_delete(s, "Stamp", "a", 0, &e), 0);
    CALLED(&r, "remove");

    int n = 0;
    assert_int_equal(store_list(s, "Stamp", "t", count_fn, &n, &e), 0);
    CALLED(&r, "list_page");
    assert_int_equal(r.pages, 2);
    assert_int_equal(n, STORE_PAGE_MAX + 3);
    /* The second page starts after the first one's last name. */
    char want[16];
    snprintf(want, sizeof(want), "r%03d", 100 + STORE_PAGE_MAX - 1);
    assert_string_equal(r.after, want);
    n = 0;
    assert_int_equal(store_list_due(s, "Stamp", 0, NULL, 10, 0, count_fn, &n, &e), 2);
    CALLED(&r, "list_due_page");
    assert_int_equal(n, 2);

    assert_int_equal(store_event_add(s, "Stamp", "a", &ev, &e), 0);
    CALLED(&r, "event_add");
    json_t *j = NULL;
    assert_int_equal(store_events(s, "Stamp", "a", 0, &j, &e), 0);
    CALLED(&r, "events");
    json_decref(j);
    int64_t upto = 0;
    assert_int_equal(store_events_after(s, NULL, NULL, NULL, 0, 100000, &j, &upto, &e), 0);
    CALLED(&r, "events_after");
    assert_int_equal(upto, 256);
    json_decref(j);
    assert_int_equal(store_events_last_id(s, &upto, &e), 0);
    CALLED(&r, "events_last_id");
    assert_int_equal(upto, 42);
    store_audit a = {"u", "t", "op", "Stamp", "a", "ok", NULL};
    assert_int_equal(store_audit_add(s, &a, &e), 0);
    CALLED(&r, "audit_add");
    assert_int_equal(store_audit_list(s, NULL, NULL, 0, &j, &e), 0);
    CALLED(&r, "audit_list");
    json_decref(j);
    char *v = NULL;
    assert_int_equal(store_meta_get(s, "k", &v, &e), 0);
    CALLED(&r, "meta_get");
    free(v);
    assert_int_equal(store_meta_set(s, "k", "v", &e), 0);
    CALLED(&r, "meta_set");
    int ports[2];
    assert_int_equal(store_ports_lease(s, "o", 2, 100, 200, NULL, NULL, ports, &e), 0);
    CALLED(&r, "ports_lease");
    assert_int_equal(ports[1], 101);
    assert_int_equal(store_ports_release(s, "o", &e), 0);
    CALLED(&r, "ports_release");

    /* Refused before any op runs, with the messages callers know. */
    int calls = r.calls;
    assert_int_equal(store_get(s, "", "a", &x, &e), SE_INVAL);
    assert_int_equal(store_create(s, &(resource){.kind = "Stamp"}, NULL, &e), SE_INVAL);
    assert_int_equal(store_event_add(s, "Stamp", "a", NULL, &e), SE_INVAL);
    assert_int_equal(store_meta_get(s, "", &v, &e), SE_INVAL);
    assert_int_equal(store_meta_set(s, "k", NULL, &e), SE_INVAL);
    assert_int_equal(store_ports_lease(s, "o", 0, 100, 200, NULL, NULL, ports, &e), SE_INVAL);
    assert_int_equal(store_list(s, "Stamp", NULL, NULL, NULL, &e), SE_INVAL);
    assert_int_equal(r.calls, calls);
    store_sqlite_stats st;
    assert_int_equal(store_sqlite_stats_get(s, &st, &e), SE_INVAL);

    store_close(s);
    CALLED(&r, "close");
    assert_true(r.closed);
    resource_free(&x);

    /* An op a backend lacks is an error naming it, not a crash. */
    rec_store b = {.base.ops = &bare_ops};
    assert_int_equal(store_get(&b.base, "Stamp", "a", &x, &e), SE_INTERNAL);
    assert_string_equal(e.msg, "store: the bare backend cannot get");
    assert_int_equal(store_list(&b.base, "Stamp", NULL, count_fn, &n, &e), SE_INTERNAL);
    assert_int_equal(b.calls, 0);
    store_close(&b.base);
    assert_true(b.closed);
}

/* The tests that hold on both backends, each on a fresh store. */
#define BOTH(setup_fn)                                                              \
    cmocka_unit_test_setup_teardown(test_roundtrip, setup_fn, teardown),            \
    cmocka_unit_test_setup_teardown(test_duplicate, setup_fn, teardown),            \
    cmocka_unit_test_setup_teardown(test_notfound, setup_fn, teardown),             \
    cmocka_unit_test_setup_teardown(test_stale_update, setup_fn, teardown),         \
    cmocka_unit_test_setup_teardown(test_generation, setup_fn, teardown),           \
    cmocka_unit_test_setup_teardown(test_update_event_atomic, setup_fn, teardown),  \
    cmocka_unit_test_setup_teardown(test_events_order, setup_fn, teardown),         \
    cmocka_unit_test_setup_teardown(test_list, setup_fn, teardown),                 \
    cmocka_unit_test_setup_teardown(test_list_many, setup_fn, teardown),            \
    cmocka_unit_test_setup_teardown(test_delete, setup_fn, teardown),               \
    cmocka_unit_test_setup_teardown(test_audit, setup_fn, teardown),                \
    cmocka_unit_test_setup_teardown(test_audit_bad_bytes, setup_fn, teardown),      \
    cmocka_unit_test_setup_teardown(test_meta, setup_fn, teardown),                 \
    cmocka_unit_test_setup_teardown(test_ports, setup_fn, teardown),                \
    cmocka_unit_test_setup_teardown(test_reopen, setup_fn, teardown),               \
    cmocka_unit_test_setup_teardown(test_event_phases, setup_fn, teardown),         \
    cmocka_unit_test_setup_teardown(test_too_big, setup_fn, teardown),              \
    cmocka_unit_test_setup_teardown(test_concurrent_counter, setup_fn, teardown),   \
    cmocka_unit_test_setup_teardown(test_reads_while_writer_in_tx, setup_fn, teardown), \
    cmocka_unit_test_setup_teardown(test_read_your_writes_threads, setup_fn, teardown), \
    cmocka_unit_test_setup_teardown(test_watch_misses_nothing, setup_fn, teardown)

int main(void) {
    const struct CMUnitTest sqlite_tests[] = {
        BOTH(setup),
        cmocka_unit_test_setup_teardown(test_migrate_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_before_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_newer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_beside_raw_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache, setup, teardown),
        cmocka_unit_test(test_memory),
        cmocka_unit_test_setup_teardown(test_open_urls, setup, teardown),
        cmocka_unit_test(test_ops_dispatch),
    };
    const struct CMUnitTest pg_tests[] = {
        BOTH(setup_pg),
        cmocka_unit_test_setup_teardown(test_pg_reads_beside_raw_writer, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_rounds, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_fencing, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_race, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_migrate_twice, setup_pg, teardown),
        cmocka_unit_test(test_pg_migrate_concurrent),
        cmocka_unit_test_setup_teardown(test_pg_notify, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_reconnect, setup_pg, teardown),
    };
    int failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);
    if (pg_base_url() == NULL) {
        fprintf(stderr, "\n*** STAMP_TEST_PG_URL is not set: test_store ran on SQLite ONLY.\n"
                        "*** The PostgreSQL backend was NOT tested (%zu tests skipped);\n"
                        "*** run it through tests/unit/with_pg.sh.\n\n",
                sizeof(pg_tests) / sizeof(pg_tests[0]));
        return failed;
    }
    return failed + cmocka_run_group_tests_name("postgres", pg_tests, NULL, NULL);
}
