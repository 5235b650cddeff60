/*
 * store_sqlite.c - the embedded backend of store.h: one SQLite database file
 * holding resources, events, audit, small metadata and port leases.  It is
 * the ops table sqlite_ops (store_backend.h): store.c has checked the
 * arguments before an sq_* function runs.
 *
 * Invariants: a resource row and the event describing its write commit in one
 * transaction; resource_version is checked and bumped inside the writing
 * transaction, so a stale update changes nothing; the JSON columns hold
 * canonical text (sorted keys, compact), so equal text means equal value and
 * the generation bump is a string comparison.  The database file and its WAL
 * are created mode 0600 because meta holds secrets.  A write that meets a
 * full disk while stampd holds its disk reserve frees the reserve and runs
 * once more, whole (again()); any other failure is reported, and leaves
 * nothing written and the connection ready for the next op.
 *
 * Connections: one writer and a small pool of read-only readers on the same
 * WAL database, opened after the migrations ran.  Every write, and every
 * transaction that reads and then writes (the resourceVersion check, port
 * leases), runs on the writer.  Pure reads run on a reader: WAL lets them
 * read the last commit while the writer is inside a transaction or waiting
 * on fsync.  A reader goes back to the pool with no statement active, so it
 * holds no read transaction, and its next read sees every commit made
 * before that read began: a write is visible to any read that starts after
 * the write returned, from any thread (read-your-writes).  ":memory:" is one
 * connection, so there the reads share the writer.
 *
 * Statements: each connection keeps the statements it has run, indexed by
 * query id (queries[] below; the cache is bounded by that table), and
 * reuses them.  A statement is reset and its bindings cleared as soon as its
 * op is done with it, so no cached statement holds a read transaction open
 * or points at a caller's memory between ops.  They are finalized at close.
 *
 * Threading: the writer is guarded by s->wmu for a whole op (and opened
 * FULLMUTEX as a second line).  A reader belongs to one op at a time, taken
 * from the pool under s->rmu, which is held only to take or give back one;
 * a read never waits on s->wmu.  A list op reads one page and gives its
 * connection back, so store_list's callback may call back into the store.
 * The port veto callback runs with the writer held: it may read the store
 * (except ":memory:") but must not write.
 */
#include "store/store.h"
#include "store/store_backend.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util/reserve.h"
#include "util/util.h"
#include "util/yamljson.h"

#define STORE_BUSY_MS 5000
#define STORE_READERS 4                   /* read connections beside the writer */

#define RES_COLS                                                                           \
    "kind, name, tenant, labels, annotations, spec, status, finalizers, resource_version, " \
    "generation, created_ms, updated_ms, deletion_ms, due_ms"

/* ---- the statements --------------------------------------------------- */

/* Every statement run after open, by id.  write: it changes the database or
 * takes the write lock, so only the writer may run it (a reader is opened
 * read-only and would fail at the first step; debug builds stop earlier). */
enum {
    Q_BEGIN_WRITE,
    Q_BEGIN_READ,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_RES_INSERT,
    Q_RES_GET,
    Q_RES_CHECK,
    Q_RES_UPDATE,
    Q_RES_DELETE,
    Q_RES_VERSION,
    Q_RES_PAGE,
    Q_RES_DUE,
    Q_EV_INSERT,
    Q_EV_LIST,
    Q_EV_LAST,
    Q_EV_AFTER,
    Q_AUDIT_INSERT,
    Q_AUDIT_LIST,
    Q_META_GET,
    Q_META_SET,
    Q_PORTS_HELD,
    Q_PORTS_DELETE,
    Q_PORTS_FIND,
    Q_PORTS_INSERT,
    Q_COUNT
};

typedef struct query {
    bool write;
    const char *sql;
} query;

static const query queries[Q_COUNT] = {
    [Q_BEGIN_WRITE] = {true, "BEGIN IMMEDIATE"},
    /* A reader's snapshot across two statements. */
    [Q_BEGIN_READ] = {false, "BEGIN"},
    [Q_COMMIT] = {false, "COMMIT"},
    [Q_ROLLBACK] = {false, "ROLLBACK"},
    [Q_RES_INSERT] = {true, "INSERT INTO resources(" RES_COLS
                            ") VALUES(?,?,?,?,?,?,?,?,1,1,?,?,?,?)"},
    [Q_RES_GET] = {false, "SELECT " RES_COLS " FROM resources WHERE kind=? AND name=?"},
    /* Inside the writer's transaction, before it writes. */
    [Q_RES_CHECK] = {false, "SELECT resource_version, generation, spec FROM resources "
                            "WHERE kind=? AND name=?"},
    [Q_RES_UPDATE] = {true,
                      "UPDATE resources SET labels=?, annotations=?, spec=?, status=?, "
                      "finalizers=?, resource_version=resource_version+1, generation=?, "
                      "updated_ms=?, deletion_ms=?, due_ms=? "
                      "WHERE kind=? AND name=? AND resource_version=?"},
    [Q_RES_DELETE] = {true, "DELETE FROM resources WHERE kind=? AND name=?"},
    [Q_RES_VERSION] = {false, "SELECT resource_version FROM resources WHERE kind=? AND name=?"},
    [Q_RES_PAGE] = {false, "SELECT " RES_COLS " FROM resources WHERE kind=?1 "
                           "AND (?2 IS NULL OR tenant=?2) AND name>?3 ORDER BY name LIMIT ?4"},
    [Q_RES_DUE] = {false, "SELECT " RES_COLS " FROM resources WHERE kind=?1 "
                          "AND due_ms IS NOT NULL AND due_ms<=?2 "
                          "AND (due_ms>?4 OR (due_ms=?4 AND name>?5)) "
                          "ORDER BY due_ms, name LIMIT ?3"},
    [Q_EV_INSERT] = {true, "INSERT INTO events(kind, name, time_ms, type, reason, message, "
                           "resource_version, from_phase, to_phase) VALUES(?,?,?,?,?,?,?,?,?)"},
    /* The newest `limit` events, shown oldest first. */
    [Q_EV_LIST] = {false, "SELECT time_ms, type, reason, message, resource_version, from_phase,"
                          " to_phase FROM (SELECT id, time_ms, type, reason, message,"
                          " resource_version, from_phase, to_phase FROM events"
                          " WHERE kind=? AND name=? ORDER BY id DESC LIMIT ?) ORDER BY id"},
    [Q_EV_LAST] = {false, "SELECT COALESCE(MAX(id), 0) FROM events"},
    [Q_EV_AFTER] = {false,
                    "SELECT e.id, e.time_ms, e.kind, e.name, e.type, e.reason, e.message,"
                    " e.resource_version, e.from_phase, e.to_phase FROM events e"
                    " WHERE e.id > ?1 AND e.id <= ?2 AND (?3 IS NULL OR e.kind = ?3)"
                    " AND (?4 IS NULL OR e.name = ?4)"
                    /* A name may be reused (a reaped namespace's bucket taken
                     * by another tenant): only the events of the tenant's own
                     * object, written since it was created. */
                    " AND (?5 IS NULL OR EXISTS (SELECT 1 FROM resources r WHERE r.kind = e.kind"
                    "  AND r.name = e.name AND r.tenant = ?5 AND e.time_ms >= r.created_ms))"
                    " ORDER BY e.id LIMIT ?6"},
    [Q_AUDIT_INSERT] = {true, "INSERT INTO audit(time_ms, \"user\", tenant, operation, kind, "
                              "name, result, detail) VALUES(?,?,?,?,?,?,?,?)"},
    [Q_AUDIT_LIST] = {false, "SELECT time_ms, \"user\", tenant, operation, kind, name, result,"
                             " detail FROM (SELECT * FROM audit WHERE (?1 IS NULL OR kind=?1)"
                             " AND (?2 IS NULL OR name=?2) ORDER BY id DESC LIMIT ?3)"
                             " ORDER BY id"},
    [Q_META_GET] = {false, "SELECT value FROM meta WHERE key=?"},
    [Q_META_SET] = {true, "INSERT INTO meta(key, value) VALUES(?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value=excluded.value"},
    [Q_PORTS_HELD] = {false, "SELECT port FROM ports WHERE owner=? ORDER BY port"},
    [Q_PORTS_DELETE] = {true, "DELETE FROM ports WHERE owner=?1 OR substr(owner, 1, length(?1) + 1) = ?1 || '/'"},
    [Q_PORTS_FIND] = {false,
                      "SELECT port FROM ports WHERE port BETWEEN ? AND ? ORDER BY port"},
    [Q_PORTS_INSERT] = {true, "INSERT INTO ports(port, owner) VALUES(?, ?)"},
};

/* ---- connections ------------------------------------------------------ */

/* One SQLite connection and the statements it has prepared. */
typedef struct conn {
    sqlite3 *db;
    bool writer;
    sqlite3_stmt *cache[Q_COUNT]; /* NULL until first used */
    /* The writer's op met a full disk and freed stampd's reserve (db_fail):
     * the op may run once more (again()). */
    bool freed_reserve;
    /* Who holds it, for the assertions: set by whoever took the lock or
     * the pool slot, read only by that thread. */
    bool held;
    pthread_t holder;
} conn;

typedef struct sq_store {
    store base; /* first: a store * is a sq_store * */
    conn w;
    pthread_mutex_t wmu; /* the writer, for a whole op */
    bool wmu_ready;
    conn r[STORE_READERS];
    int nr; /* readers opened; 0 for ":memory:" */
    pthread_mutex_t rmu; /* free[] and nfree */
    pthread_cond_t rcv;  /* a reader came back */
    bool rmu_ready, rcv_ready;
    conn *free[STORE_READERS]; /* a stack: the warmest reader first */
    int nfree;
    atomic_long prepared, reused, cached;
} sq_store;

static const store_ops sqlite_ops;

static sq_store *sq(store *s) {
    assert(s != NULL && s->ops == &sqlite_ops);
    return (sq_store *)s;
}

static inline bool held_by_me(const conn *c) {
    return c->held && pthread_equal(c->holder, pthread_self());
}

static void conn_hold(conn *c) {
    assert(!c->held);
    c->holder = pthread_self();
    c->held = true;
}

static void conn_unhold(conn *c) {
    assert(held_by_me(c));
    c->held = false;
}

/* Idle: no transaction open and no statement part-way through one, so the
 * next statement starts a fresh read (or write) of the latest commit. */
static inline bool conn_idle(conn *c) {
    if (!sqlite3_get_autocommit(c->db)) return false;
    for (sqlite3_stmt *st = sqlite3_next_stmt(c->db, NULL); st; st = sqlite3_next_stmt(c->db, st))
        if (sqlite3_stmt_busy(st)) return false;
    return true;
}

static conn *writer_get(sq_store *s) {
    pthread_mutex_lock(&s->wmu);
    conn_hold(&s->w);
    s->w.freed_reserve = false;
    return &s->w;
}

static void writer_put(sq_store *s, conn *c) {
    assert(c == &s->w);
    /* Every op ends its transaction, committed or rolled back. */
    assert(conn_idle(c));
    conn_unhold(c);
    pthread_mutex_unlock(&s->wmu);
}

/* A reader for one op; blocks only while all STORE_READERS are in use. */
static conn *reader_get(sq_store *s) {
    if (s->nr == 0) return writer_get(s);
    pthread_mutex_lock(&s->rmu);
    while (s->nfree == 0) pthread_cond_wait(&s->rcv, &s->rmu);
    assert(s->nfree > 0 && s->nfree <= s->nr);
    conn *c = s->free[--s->nfree];
    pthread_mutex_unlock(&s->rmu);
    conn_hold(c);
    return c;
}

static void reader_put(sq_store *s, conn *c) {
    if (c->writer) {
        writer_put(s, c);
        return;
    }
    /* What read-your-writes rests on: a reader left inside a read
     * transaction would show its next user an old snapshot. */
    assert(conn_idle(c));
    conn_unhold(c);
    pthread_mutex_lock(&s->rmu);
    assert(s->nfree < s->nr);
    s->free[s->nfree++] = c;
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
}

/* ---- small helpers ---------------------------------------------------- */

/* Records the connection's current error.  Busy means another process holds
 * the write lock past busy_timeout: worth a retry, so it is UNAVAIL, not IO.
 * A full disk frees stampd's reserve (util/reserve.h), so that the write
 * finds room when again() runs it once more. */
static int db_fail(conn *c, serr *e, const char *what) {
    int rc = sqlite3_errcode(c->db);
    if (rc == SQLITE_FULL && reserve_release()) c->freed_reserve = true;
    int code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? SE_UNAVAIL : SE_IO;
    if (rc == SQLITE_NOMEM) code = SE_NOMEM;
    return serr_set(e, code, "store: %s: %s", what, sqlite3_errmsg(c->db));
}

/* Query q on c, from c's cache or prepared into it.  The caller holds c and
 * hands the statement back with done() before it lets c go. */
static int stmt(sq_store *s, conn *c, int q, sqlite3_stmt **st, serr *e) {
    assert(q >= 0 && q < Q_COUNT && queries[q].sql != NULL);
    assert(held_by_me(c));
    assert(c->writer || !queries[q].write);
    *st = c->cache[q];
    if (*st) {
        /* done() reset it: a cached statement is never mid-step. */
        assert(!sqlite3_stmt_busy(*st));
        atomic_fetch_add_explicit(&s->reused, 1, memory_order_relaxed);
        return 0;
    }
    if (sqlite3_prepare_v3(c->db, queries[q].sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) !=
        SQLITE_OK) {
        int rc = db_fail(c, e, "prepare");
        sqlite3_finalize(*st);
        *st = NULL;
        return rc;
    }
    assert(c->writer || sqlite3_stmt_readonly(*st));
    c->cache[q] = *st;
    atomic_fetch_add_explicit(&s->prepared, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->cached, 1, memory_order_relaxed);
    return 0;
}

/* Back to the cache: reset, which ends the read it was part of, and the
 * bindings cleared, so it keeps no pointer into the caller's memory (text
 * is bound SQLITE_STATIC) and a parameter left unbound next time is NULL.
 * NULL is fine.  Capture any error before: reset reports it again. */
static void done(sqlite3_stmt *st) {
    if (st == NULL) return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* One statement used once, outside the cache: the migrations' (they run
 * once, and DDL may follow them). */
static int prep_once(conn *c, const char *sql, sqlite3_stmt **st, serr *e) {
    *st = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, st, NULL) != SQLITE_OK) {
        int rc = db_fail(c, e, "prepare");
        sqlite3_finalize(*st);
        *st = NULL;
        return rc;
    }
    return 0;
}

/* Runs a statement that returns no rows, such as BEGIN or COMMIT; returns
 * SQLite's code, with the error left on the connection for db_fail. */
static int run(sq_store *s, conn *c, int q, serr *e, const char *what) {
    sqlite3_stmt *st;
    int rc = stmt(s, c, q, &st, e);
    if (rc) return rc;
    int step = sqlite3_step(st);
    if (step != SQLITE_DONE) rc = db_fail(c, e, what);
    done(st);
    return rc;
}

static int tx_begin(sq_store *s, conn *c, serr *e) {
    assert(c->writer && sqlite3_get_autocommit(c->db));
    return run(s, c, Q_BEGIN_WRITE, e, "begin");
}

static int tx_commit(sq_store *s, conn *c, serr *e) { return run(s, c, Q_COMMIT, e, "commit"); }

/* Whether a write op that failed with rc runs once more, on the writer it
 * still holds: when the disk was full and db_fail has just freed stampd's
 * reserve (a tenant filled the disk; the reserve is there so that stampd
 * can still commit).  The failed attempt left nothing: SQLite rolls a
 * transaction back when its COMMIT meets a full disk, and the op's own
 * rollback ends it otherwise.  Once: a second full disk finds no reserve. */
static bool again(conn *c, int rc, int *tries) {
    assert(c->writer && held_by_me(c) && sqlite3_get_autocommit(c->db));
    bool retry = rc != 0 && c->freed_reserve && (*tries)++ == 0;
    c->freed_reserve = false;
    return retry;
}

/* Safe to call whatever state the connection is in; the caller has already
 * captured the error message it reports. */
static void tx_rollback(sq_store *s, conn *c) {
    if (sqlite3_get_autocommit(c->db)) return;
    if (run(s, c, Q_ROLLBACK, NULL, "rollback") != 0)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL); /* cannot even prepare: try raw */
}

/* A reader's snapshot: statements between read_begin and read_end see one
 * commit.  read_end is safe whatever happened in between. */
static int read_begin(sq_store *s, conn *c, serr *e) {
    assert(sqlite3_get_autocommit(c->db));
    return run(s, c, Q_BEGIN_READ, e, "begin");
}

static void read_end(sq_store *s, conn *c) {
    if (sqlite3_get_autocommit(c->db)) return;
    if (run(s, c, Q_COMMIT, NULL, "end of read") != 0) tx_rollback(s, c);
}

/* ---- schema and its migrations ---------------------------------------
 *
 * PRAGMA user_version says which migrations a database has had.  At open,
 * each migration above it runs in order, each in its own transaction with
 * the bump of user_version, so a crash leaves the database at one version or
 * the next, never between.  A migration is SQL, or a function for what SQL
 * alone cannot say ("add the column unless it is there").  Never edit a
 * migration that has shipped: append one.
 *
 * Databases created before user_version was used are at 0 and already hold
 * the tables; migration 1 is written with IF NOT EXISTS so it is a no-op on
 * them.  meta's schema_version stays '1': programs from before this list
 * open a database only when it says 1, and every migration so far only adds
 * (columns they do not write are NULL), so a rollback to such a program
 * still works.  A migration that those programs would corrupt sets it to
 * something else, which locks them out. */

typedef struct migration {
    const char *what;                      /* for the error message */
    const char *sql;                       /* or NULL */
    int (*fn)(conn *c, serr *e);           /* or NULL; runs after sql */
} migration;

static int add_due_ms(conn *c, serr *e);

static const migration migrations[] = {
    {"tables", /* 1: the schema as it was when versions began */
     "CREATE TABLE IF NOT EXISTS meta ("
     "  key TEXT PRIMARY KEY, value TEXT NOT NULL);"
     "CREATE TABLE IF NOT EXISTS resources ("
     "  kind TEXT NOT NULL, name TEXT NOT NULL, tenant TEXT NOT NULL DEFAULT '',"
     "  labels TEXT NOT NULL, annotations TEXT NOT NULL, spec TEXT NOT NULL,"
     "  status TEXT NOT NULL, finalizers TEXT NOT NULL,"
     "  resource_version INTEGER NOT NULL, generation INTEGER NOT NULL,"
     "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
     "  deletion_ms INTEGER NOT NULL DEFAULT 0,"
     "  due_ms INTEGER,"
     "  PRIMARY KEY (kind, name));"
     "CREATE INDEX IF NOT EXISTS resources_tenant ON resources(kind, tenant, name);"
     "CREATE TABLE IF NOT EXISTS events ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, name TEXT NOT NULL,"
     "  time_ms INTEGER NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL,"
     "  message TEXT NOT NULL, resource_version INTEGER NOT NULL);"
     "CREATE INDEX IF NOT EXISTS events_object ON events(kind, name, id);"
     "CREATE TABLE IF NOT EXISTS audit ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,"
     "  \"user\" TEXT NOT NULL, tenant TEXT NOT NULL, operation TEXT NOT NULL,"
     "  kind TEXT NOT NULL, name TEXT NOT NULL, result TEXT NOT NULL, detail TEXT);"
     "CREATE INDEX IF NOT EXISTS audit_object ON audit(kind, name, id);"
     "CREATE TABLE IF NOT EXISTS ports ("
     "  port INTEGER PRIMARY KEY, owner TEXT NOT NULL);"
     "CREATE INDEX IF NOT EXISTS ports_owner ON ports(owner);"
     "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '1');",
     NULL},
    {"resources.due_ms", /* 2: databases from before due_ms lack the column */
     NULL, add_due_ms},
    {"events.from_phase/to_phase", /* 3: a transition's phases as columns */
     "ALTER TABLE events ADD COLUMN from_phase TEXT;"
     "ALTER TABLE events ADD COLUMN to_phase TEXT;"
     /* Rows written before the columns: their phase_change() message is
      * "From -> To: trigger".  A one-time parse, under the rule the watch
      * used: both names 1..32 bytes without a space, the arrow before the
      * first colon.  From here on only the columns are read. */
     "WITH t AS (SELECT id, message AS m, instr(message, ' -> ') AS a,"
     "  instr(message, ':') AS c FROM events),"
     " p AS (SELECT id, substr(m, 1, a - 1) AS f, substr(m, a + 4, c - a - 4) AS o FROM t"
     "  WHERE a BETWEEN 2 AND 33 AND c > a + 4 AND c - a - 4 <= 32)"
     "UPDATE events SET from_phase = (SELECT f FROM p WHERE p.id = events.id),"
     " to_phase = (SELECT o FROM p WHERE p.id = events.id)"
     " WHERE id IN (SELECT id FROM p WHERE instr(f, ' ') = 0 AND instr(o, ' ') = 0);",
     NULL},
};

#define STORE_SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- binding and reading columns -------------------------------------- */

/* Binds at most max bytes of v, cut back to a UTF-8 character boundary, so
 * an overlong message is shortened rather than failing the write it
 * describes.  Text is stored as valid UTF-8: a byte that is not (a query
 * value, a pod's output) is kept visible as \xNN rather than making the
 * row unreadable as JSON.  Valid text is bound SQLITE_STATIC: it must
 * outlive the step, and done() clears the binding before the op returns. */
static void bind_str(sqlite3_stmt *st, int idx, const char *v, size_t max) {
    if (v == NULL) v = "";
    size_t n = strlen(v);
    if (utf8_valid(v, n)) {
        sqlite3_bind_text(st, idx, v, (int)utf8_cut(v, n, max), SQLITE_STATIC);
        return;
    }
    char *safe = malloc(max + 1);
    if (safe == NULL) {
        sqlite3_bind_text(st, idx, "?", 1, SQLITE_STATIC);
        return;
    }
    utf8_sanitize(v, n, safe, max + 1);
    sqlite3_bind_text(st, idx, safe, -1, SQLITE_TRANSIENT);
    free(safe);
}

static void bind_opt(sqlite3_stmt *st, int idx, const char *v) {
    if (v == NULL) sqlite3_bind_null(st, idx);
    else sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC);
}

/* due_ms 0 is stored as NULL, so the partial index holds only due rows. */
static void bind_due(sqlite3_stmt *st, int idx, int64_t due) {
    if (due > 0) sqlite3_bind_int64(st, idx, due);
    else sqlite3_bind_null(st, idx);
}

static const char *col_str(sqlite3_stmt *st, int col) {
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? (const char *)t : "";
}

/* A text column as a JSON string.  Rows written before text was checked
 * may hold bytes that are not UTF-8: they are shown escaped, never allowed
 * to make a whole listing fail. */
static json_t *col_jstr(sqlite3_stmt *st, int col) {
    const char *t = col_str(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (utf8_valid(t, n)) return json_stringn(t, n);
    size_t max = n * 4 + 1;
    char *safe = malloc(max);
    if (safe == NULL) return NULL;
    json_t *j = json_string(utf8_sanitize(t, n, safe, max));
    free(safe);
    return j;
}

static int load_member(sqlite3_stmt *st, int col, bool array, json_t **out, serr *e) {
    /* json_load_text: out of memory is SE_NOMEM, never a byte quietly lost */
    const char *text = col_str(st, col);
    json_t *v = NULL;
    serr le = {0};
    int lrc = json_load_text(text, strlen(text), JSON_ALLOW_NUL, &v, &le);
    if (lrc == SE_NOMEM) {
        *out = NULL;
        return serr_set(e, SE_NOMEM, "store: out of memory reading %s %s", col_str(st, 0), col_str(st, 1));
    }
    if (v == NULL || (array ? !json_is_array(v) : !json_is_object(v))) {
        json_decref(v);
        *out = NULL;
        return serr_set(e, SE_IO, "store: corrupt %s column in %s %s",
                        sqlite3_column_name(st, col), col_str(st, 0), col_str(st, 1));
    }
    *out = v;
    return 0;
}

/* Fills r (treated as uninitialised) from a row selected as RES_COLS; on
 * failure r holds no allocations. */
static int row_to_resource(sqlite3_stmt *st, resource *r, serr *e) {
    memset(r, 0, sizeof(*r));
    /* Writes never store a longer key; a row that holds one was written by
     * something else, and cut it would name another resource (and page a
     * listing wrongly), so it is refused like a corrupt document. */
    if (!str_copy(r->kind, sizeof(r->kind), col_str(st, 0)) ||
        !str_copy(r->name, sizeof(r->name), col_str(st, 1)) ||
        !str_copy(r->tenant, sizeof(r->tenant), col_str(st, 2)))
        return serr_set(e, SE_IO, "store: corrupt row: kind, name or tenant too long in %.64s %.128s",
                        col_str(st, 0), col_str(st, 1));
    int rc;
    if ((rc = load_member(st, 3, false, &r->labels, e)) ||
        (rc = load_member(st, 4, false, &r->annotations, e)) ||
        (rc = load_member(st, 5, false, &r->spec, e)) ||
        (rc = load_member(st, 6, false, &r->status, e)) ||
        (rc = load_member(st, 7, true, &r->finalizers, e))) {
        resource_free(r);
        return rc;
    }
    r->resource_version = sqlite3_column_int64(st, 8);
    r->generation = sqlite3_column_int64(st, 9);
    r->created_ms = sqlite3_column_int64(st, 10);
    r->updated_ms = sqlite3_column_int64(st, 11);
    r->deletion_ms = sqlite3_column_int64(st, 12);
    r->due_ms = sqlite3_column_type(st, 13) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 13);
    return 0;
}

/* ---- files ------------------------------------------------------------ */

static int make_parent(const char *path, serr *e) {
    char dir[PATH_MAX];
    if (!str_copy(dir, sizeof(dir), path)) return serr_set(e, SE_INVAL, "store: path too long");
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) return 0;
    *slash = '\0';
    return mkdir_p(dir, 0700, e);
}

static void sq_close(store *base);

/* ---- open / close ----------------------------------------------------- */

static int journal_cb(void *arg, int ncol, char **vals, char **names) {
    if (ncol > 0 && vals[0] != NULL) str_copy(arg, 16, vals[0]);
    return 0;
}

static int schema_version_cb(void *arg, int ncol, char **vals, char **names) {
    int64_t v = 0;
    if (ncol > 0 && vals[0] != NULL && parse_i64(vals[0], 0, INT32_MAX, &v) == 0) *(int64_t *)arg = v;
    return 0;
}

static int user_version(conn *c, int64_t *v, serr *e) {
    sqlite3_stmt *st;
    int rc = prep_once(c, "PRAGMA user_version", &st, e);
    if (rc) return rc;
    if (sqlite3_step(st) == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
    else rc = db_fail(c, e, "reading user_version");
    sqlite3_finalize(st);
    return rc;
}

/* Migration 2.  Before due_ms, a database's resources table lacked it. */
static int add_due_ms(conn *c, serr *e) {
    sqlite3_stmt *st;
    int rc = prep_once(c, "SELECT 1 FROM pragma_table_info('resources') WHERE name='due_ms'", &st, e);
    if (rc) return rc;
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return db_fail(c, e, "reading resources columns");
    if (step == SQLITE_DONE &&
        sqlite3_exec(c->db, "ALTER TABLE resources ADD COLUMN due_ms INTEGER", NULL, NULL, NULL) !=
            SQLITE_OK)
        return db_fail(c, e, "adding due_ms");
    /* The partial index the sweeps use. */
    if (sqlite3_exec(c->db,
                     "CREATE INDEX IF NOT EXISTS resources_due ON resources(kind, due_ms, name) "
                     "WHERE due_ms IS NOT NULL",
                     NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(c, e, "creating the due index");
    return 0;
}

/* Brings the database to STORE_SCHEMA_VERSION, one transaction a step, on
 * the writer (held), before any reader is opened. */
static int migrate(sq_store *s, conn *c, const char *path, serr *e) {
    assert(c->writer && held_by_me(c) && s->nr == 0);
    int64_t v = 0;
    int rc = user_version(c, &v, e);
    if (rc) return rc;
    if (v > STORE_SCHEMA_VERSION)
        return serr_set(e, SE_INVAL, "store: %s has schema version %lld, this program knows %d",
                        path, (long long)v, STORE_SCHEMA_VERSION);
    if (v == 0) {
        /* Unversioned: new, or written before versions.  The latter says
         * schema_version 1 in meta; anything else is not ours to upgrade. */
        int64_t old = 1;
        sqlite3_exec(c->db, "SELECT value FROM meta WHERE key='schema_version'", schema_version_cb,
                     &old, NULL); /* no meta table: a new database */
        if (old != 1)
            return serr_set(e, SE_INVAL, "store: %s has schema version %lld, this program knows %d",
                            path, (long long)old, STORE_SCHEMA_VERSION);
    }
    for (int n = (int)v + 1; n <= STORE_SCHEMA_VERSION; n++) {
        const migration *m = &migrations[n - 1];
        char bump[64];
        int w = snprintf(bump, sizeof(bump), "PRAGMA user_version=%d", n);
        assert(w > 0 && (size_t)w < sizeof(bump)); /* an int always fits */
        (void)w;
        if ((rc = tx_begin(s, c, e)) != 0) return rc;
        if (m->sql && sqlite3_exec(c->db, m->sql, NULL, NULL, NULL) != SQLITE_OK)
            rc = db_fail(c, e, m->what); /* "store: <migration>: <why>" */
        if (rc == 0 && m->fn) rc = m->fn(c, e);
        if (rc == 0 && sqlite3_exec(c->db, bump, NULL, NULL, NULL) != SQLITE_OK)
            rc = db_fail(c, e, "recording the schema version");
        if (rc == 0) rc = tx_commit(s, c, e);
        if (rc) {
            tx_rollback(s, c); /* the message names the migration: db_fail's what */
            return rc;
        }
    }
    return 0;
}

static int conn_open(conn *c, const char *path, bool writer, serr *e) {
    c->writer = writer;
    int flags = writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    if (sqlite3_open_v2(path, &c->db, flags | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK)
        return serr_set(e, SE_IO, "store: open %s%s: %s", writer ? "" : "a reader of ", path,
                        c->db ? sqlite3_errmsg(c->db) : "out of memory");
    sqlite3_busy_timeout(c->db, STORE_BUSY_MS);
    return 0;
}

/* Finalizes c's statements and closes it; a half-opened c is fine. */
static void conn_close(sq_store *s, conn *c) {
    for (int q = 0; q < Q_COUNT; q++) {
        if (c->cache[q] == NULL) continue;
        sqlite3_finalize(c->cache[q]);
        c->cache[q] = NULL;
        atomic_fetch_sub_explicit(&s->cached, 1, memory_order_relaxed);
    }
    if (c->db == NULL) return;
    /* Every statement lives in the cache, so nothing keeps it open. */
    int rc = sqlite3_close(c->db);
    assert(rc == SQLITE_OK);
    (void)rc;
    c->db = NULL;
}

static int open_writer(sq_store *s, const char *path, bool memory, serr *e) {
    if (!memory) {
        int rc = make_parent(path, e);
        if (rc) return rc;
        /* SQLite gives the WAL and shm files the database file's mode. */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd == -1) return serr_set(e, SE_IO, "store: open %s: %s", path, strerror(errno));
        close(fd);
    }
    int rc = conn_open(&s->w, path, true, e);
    if (rc) return rc;
    char mode[16] = "";
    if (sqlite3_exec(s->w.db, "PRAGMA journal_mode=WAL", journal_cb, mode, NULL) != SQLITE_OK ||
        sqlite3_exec(s->w.db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", NULL, NULL,
                     NULL) != SQLITE_OK)
        return db_fail(&s->w, e, "pragmas");
    if (!memory && strcmp(mode, "wal") != 0)
        return serr_set(e, SE_IO, "store: %s: cannot use WAL journal (got %s)", path, mode);
    conn *c = writer_get(s);
    rc = migrate(s, c, path, e);
    writer_put(s, c);
    return rc;
}

/* After the migrations, so a reader never sees the schema change under it. */
static int open_readers(sq_store *s, const char *path, serr *e) {
    for (int i = 0; i < STORE_READERS; i++) {
        int rc = conn_open(&s->r[i], path, false, e);
        if (rc) return rc;
        s->free[s->nfree++] = &s->r[i];
        s->nr++;
    }
    return 0;
}

int store_open_sqlite(const char *path, store **out, serr *e) {
    *out = NULL;
    if (path == NULL || path[0] == '\0') return serr_set(e, SE_INVAL, "store: empty path");
    bool memory = strcmp(path, ":memory:") == 0;
    int rc;
    sq_store *s = calloc(1, sizeof(*s));
    if (s == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    s->base.ops = &sqlite_ops;
    if (pthread_mutex_init(&s->wmu, NULL) != 0) {
        rc = serr_set(e, SE_INTERNAL, "store: cannot create mutex");
        goto fail;
    }
    s->wmu_ready = true;
    if (pthread_mutex_init(&s->rmu, NULL) != 0) {
        rc = serr_set(e, SE_INTERNAL, "store: cannot create mutex");
        goto fail;
    }
    s->rmu_ready = true;
    if (pthread_cond_init(&s->rcv, NULL) != 0) {
        rc = serr_set(e, SE_INTERNAL, "store: cannot create condition variable");
        goto fail;
    }
    s->rcv_ready = true;
    if ((rc = open_writer(s, path, memory, e)) != 0) goto fail;
    /* ":memory:" is private to its connection: reads share the writer. */
    if (!memory && (rc = open_readers(s, path, e)) != 0) goto fail;
    *out = &s->base;
    return 0;
fail:
    sq_close(&s->base);
    return rc;
}

/* Readers first: the writer, closing last, checkpoints and removes the WAL. */
static void sq_close(store *base) {
    sq_store *s = (sq_store *)base;
    assert(s->nfree == s->nr); /* no read in flight */
    for (int i = 0; i < STORE_READERS; i++) conn_close(s, &s->r[i]);
    conn_close(s, &s->w);
    if (s->rcv_ready) pthread_cond_destroy(&s->rcv);
    if (s->rmu_ready) pthread_mutex_destroy(&s->rmu);
    if (s->wmu_ready) pthread_mutex_destroy(&s->wmu);
    free(s);
}

int store_sqlite_stats_get(store *s, store_sqlite_stats *out, serr *e) {
    memset(out, 0, sizeof(*out));
    if (s == NULL || s->ops != &sqlite_ops)
        return serr_set(e, SE_INVAL, "store: not a SQLite store");
    sq_store *q = sq(s);
    out->readers = q->nr;
    out->prepared = atomic_load(&q->prepared);
    out->reused = atomic_load(&q->reused);
    out->cached = atomic_load(&q->cached);
    return 0;
}

/* ---- events (internal) ------------------------------------------------ */

static int event_insert(sq_store *s, conn *c, const char *kind, const char *name, int64_t t,
                        int64_t rv, const store_event *ev, serr *e) {
    sqlite3_stmt *st;
    int rc = stmt(s, c, Q_EV_INSERT, &st, e);
    if (rc) return rc;
    bind_str(st, 1, kind, RES_KIND_MAX);
    bind_str(st, 2, name, RES_NAME_MAX);
    sqlite3_bind_int64(st, 3, t);
    bind_str(st, 4, ev->type ? ev->type : "Normal", STORE_WORD_MAX);
    bind_str(st, 5, ev->reason, STORE_WORD_MAX);
    bind_str(st, 6, ev->message, STORE_TEXT_MAX);
    sqlite3_bind_int64(st, 7, rv);
    if (ev->from) bind_str(st, 8, ev->from, STORE_WORD_MAX);
    if (ev->to) bind_str(st, 9, ev->to, STORE_WORD_MAX);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(c, e, "recording event");
    done(st);
    return rc;
}

/* Reads the stored version of (kind, name) inside the writer's transaction.
 * With check set, a version other than want is SE_CONFLICT.  When new_spec
 * is given, *spec_changed says whether it differs from the stored text. */
static int row_check(sq_store *s, conn *c, const char *kind, const char *name, bool check,
                     int64_t want, const char *new_spec, int64_t *rv, int64_t *gen,
                     bool *spec_changed, serr *e) {
    /* Read-then-write: only meaningful under the writer's lock. */
    assert(c->writer && !sqlite3_get_autocommit(c->db));
    sqlite3_stmt *st;
    int rc = stmt(s, c, Q_RES_CHECK, &st, e);
    if (rc) return rc;
    bind_str(st, 1, kind, RES_KIND_MAX);
    bind_str(st, 2, name, RES_NAME_MAX);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        rc = store_err_notfound(e, kind, name);
    } else if (step != SQLITE_ROW) {
        rc = db_fail(c, e, "reading resource");
    } else {
        *rv = sqlite3_column_int64(st, 0);
        if (gen) *gen = sqlite3_column_int64(st, 1);
        if (new_spec && spec_changed) *spec_changed = strcmp(col_str(st, 2), new_spec) != 0;
        if (check && *rv != want) {
            char k[RES_KIND_MAX];
            rc = serr_set(e, SE_CONFLICT,
                          "%s %s was modified (resourceVersion %lld, you had %lld)",
                          store_kind_lower(kind, k, sizeof(k)), name, (long long)*rv,
                          (long long)want);
        }
    }
    done(st);
    return rc;
}

/* ---- resources -------------------------------------------------------- */

/* The row and its event, in one transaction on the writer c. */
static int create_tx(sq_store *s, conn *c, const resource *r, const store_res_text *t,
                     const store_event *ev, int64_t now, serr *e) {
    sqlite3_stmt *st = NULL;
    int rc = tx_begin(s, c, e);
    if (rc) goto out;
    if ((rc = stmt(s, c, Q_RES_INSERT, &st, e)) != 0) goto out;
    bind_str(st, 1, r->kind, RES_KIND_MAX);
    bind_str(st, 2, r->name, RES_NAME_MAX);
    bind_str(st, 3, r->tenant, RES_TENANT_MAX);
    bind_opt(st, 4, t->labels);
    bind_opt(st, 5, t->annotations);
    bind_opt(st, 6, t->spec);
    bind_opt(st, 7, t->status);
    bind_opt(st, 8, t->finalizers);
    sqlite3_bind_int64(st, 9, now);
    sqlite3_bind_int64(st, 10, now);
    sqlite3_bind_int64(st, 11, r->deletion_ms);
    bind_due(st, 12, r->due_ms);
    if (sqlite3_step(st) != SQLITE_DONE) {
        if (sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
            char k[RES_KIND_MAX];
            rc = serr_set(e, SE_EXISTS, "%s %s already exists",
                          store_kind_lower(r->kind, k, sizeof(k)), r->name);
        } else {
            rc = db_fail(c, e, "creating resource");
        }
        goto out;
    }
    done(st);
    st = NULL;
    if (ev && (rc = event_insert(s, c, r->kind, r->name, now, 1, ev, e)) != 0) goto out;
    rc = tx_commit(s, c, e);
out:
    done(st);
    if (rc) tx_rollback(s, c);
    return rc;
}

static int sq_create(store *base, resource *r, const store_event *ev, serr *e) {
    sq_store *s = sq(base);
    store_res_text t;
    int rc = store_res_encode(r, &t, e), tries = 0;
    if (rc) return rc;
    int64_t now = now_ms();
    conn *c = writer_get(s);
    do rc = create_tx(s, c, r, &t, ev, now, e);
    while (again(c, rc, &tries));
    writer_put(s, c);
    store_res_text_free(&t);
    if (rc == 0) {
        r->resource_version = 1;
        r->generation = 1;
        r->created_ms = r->updated_ms = now;
    }
    return rc;
}

static int sq_get(store *base, const char *kind, const char *name, resource *out, serr *e) {
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    conn *c = reader_get(s);
    int rc = stmt(s, c, Q_RES_GET, &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        bind_str(st, 2, name, RES_NAME_MAX);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) rc = row_to_resource(st, out, e);
        else if (step == SQLITE_DONE) rc = store_err_notfound(e, kind, name);
        else rc = db_fail(c, e, "reading resource");
        done(st);
    }
    reader_put(s, c);
    return rc;
}

/* Checks r's version and writes the row and its event, in one transaction
 * on the writer c; *rv and *gen get the version it replaced and the
 * generation it wrote. */
static int update_tx(sq_store *s, conn *c, const resource *r, const store_res_text *t,
                     const store_event *ev, int64_t now, int64_t *rv, int64_t *gen, serr *e) {
    bool changed = false;
    sqlite3_stmt *st = NULL;
    int rc = tx_begin(s, c, e);
    if (rc) goto out;
    rc = row_check(s, c, r->kind, r->name, true, r->resource_version, t->spec, rv, gen, &changed,
                   e);
    if (rc) goto out;
    if (changed) (*gen)++;
    if ((rc = stmt(s, c, Q_RES_UPDATE, &st, e)) != 0) goto out;
    bind_opt(st, 1, t->labels);
    bind_opt(st, 2, t->annotations);
    bind_opt(st, 3, t->spec);
    bind_opt(st, 4, t->status);
    bind_opt(st, 5, t->finalizers);
    sqlite3_bind_int64(st, 6, *gen);
    sqlite3_bind_int64(st, 7, now);
    sqlite3_bind_int64(st, 8, r->deletion_ms);
    bind_due(st, 9, r->due_ms);
    bind_str(st, 10, r->kind, RES_KIND_MAX);
    bind_str(st, 11, r->name, RES_NAME_MAX);
    sqlite3_bind_int64(st, 12, *rv);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_fail(c, e, "updating resource");
        goto out;
    }
    if (sqlite3_changes(c->db) != 1) {
        /* Cannot happen while we hold the write lock; refuse rather than
         * report a write that did not land. */
        rc = serr_set(e, SE_CONFLICT, "%s %s changed during update", r->kind, r->name);
        goto out;
    }
    done(st);
    st = NULL;
    if (ev && (rc = event_insert(s, c, r->kind, r->name, now, *rv + 1, ev, e)) != 0) goto out;
    rc = tx_commit(s, c, e);
out:
    done(st);
    if (rc) tx_rollback(s, c);
    return rc;
}

static int sq_update(store *base, resource *r, const store_event *ev, serr *e) {
    sq_store *s = sq(base);
    store_res_text t;
    int rc = store_res_encode(r, &t, e), tries = 0;
    if (rc) return rc;
    int64_t now = now_ms(), rv = 0, gen = 0;
    conn *c = writer_get(s);
    do rc = update_tx(s, c, r, &t, ev, now, &rv, &gen, e);
    while (again(c, rc, &tries));
    writer_put(s, c);
    store_res_text_free(&t);
    if (rc == 0) {
        r->resource_version = rv + 1;
        r->generation = gen;
        r->updated_ms = now;
    }
    return rc;
}

static int remove_tx(sq_store *s, conn *c, const char *kind, const char *name, int64_t rv,
                     serr *e) {
    int64_t cur = 0;
    sqlite3_stmt *st = NULL;
    int rc = tx_begin(s, c, e);
    if (rc) goto out;
    if ((rc = row_check(s, c, kind, name, rv != 0, rv, NULL, &cur, NULL, NULL, e)) != 0) goto out;
    if ((rc = stmt(s, c, Q_RES_DELETE, &st, e)) != 0) goto out;
    bind_str(st, 1, kind, RES_KIND_MAX);
    bind_str(st, 2, name, RES_NAME_MAX);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_fail(c, e, "deleting resource");
        goto out;
    }
    rc = tx_commit(s, c, e);
out:
    done(st);
    if (rc) tx_rollback(s, c);
    return rc;
}

static int sq_remove(store *base, const char *kind, const char *name, int64_t rv, serr *e) {
    sq_store *s = sq(base);
    int rc, tries = 0;
    conn *c = writer_get(s);
    do rc = remove_tx(s, c, kind, name, rv, e);
    while (again(c, rc, &tries));
    writer_put(s, c);
    return rc;
}

/* Steps st (bound by the caller) into batch, at most max rows. */
static int read_page(conn *c, sqlite3_stmt *st, resource *batch, int max, int *n, serr *e,
                     const char *what) {
    int rc = 0, step = SQLITE_DONE;
    while (rc == 0 && *n < max && (step = sqlite3_step(st)) == SQLITE_ROW) {
        assert(*n < max);
        if ((rc = row_to_resource(st, &batch[*n], e)) == 0) (*n)++;
    }
    if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW) rc = db_fail(c, e, what);
    if (rc) {
        for (int i = 0; i < *n; i++) resource_free(&batch[i]);
        *n = 0;
    }
    return rc;
}

/* Up to max resources of kind named after `after`, in name order. */
static int sq_list_page(store *base, const char *kind, const char *tenant, const char *after,
                        resource *batch, int max, int *n, serr *e) {
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    conn *c = reader_get(s);
    int rc = stmt(s, c, Q_RES_PAGE, &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        if (tenant) bind_str(st, 2, tenant, RES_TENANT_MAX);
        bind_str(st, 3, after, RES_NAME_MAX);
        sqlite3_bind_int(st, 4, max);
        rc = read_page(c, st, batch, max, n, e, "listing resources");
        done(st);
    }
    reader_put(s, c);
    return rc;
}

static int sq_list_due_page(store *base, const char *kind, int64_t after_ms,
                            const char *after_name, int64_t before_ms, resource *batch, int max,
                            int *n, serr *e) {
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    conn *c = reader_get(s);
    int rc = stmt(s, c, Q_RES_DUE, &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        sqlite3_bind_int64(st, 2, before_ms);
        sqlite3_bind_int(st, 3, max);
        sqlite3_bind_int64(st, 4, after_ms);
        bind_str(st, 5, after_name, RES_NAME_MAX);
        rc = read_page(c, st, batch, max, n, e, "listing due");
        done(st);
    }
    reader_put(s, c);
    return rc;
}

/* ---- events ----------------------------------------------------------- */

static int sq_event_add(store *base, const char *kind, const char *name, const store_event *ev,
                        serr *e) {
    sq_store *s = sq(base);
    /* An event may outlive its resource (for example "Purged"): a missing
     * row records resourceVersion 0 rather than failing.  The version is
     * read on the writer, so no write lands between it and the insert. */
    conn *c = writer_get(s);
    int rc, tries = 0;
    do {
        sqlite3_stmt *st;
        int64_t rv = 0;
        rc = stmt(s, c, Q_RES_VERSION, &st, e);
        if (rc == 0) {
            bind_str(st, 1, kind, RES_KIND_MAX);
            bind_str(st, 2, name, RES_NAME_MAX);
            int step = sqlite3_step(st);
            if (step == SQLITE_ROW) rv = sqlite3_column_int64(st, 0);
            else if (step != SQLITE_DONE) rc = db_fail(c, e, "reading resource");
            done(st);
        }
        if (rc == 0) rc = event_insert(s, c, kind, name, now_ms(), rv, ev, e);
    } while (again(c, rc, &tries));
    writer_put(s, c);
    return rc;
}

/* Takes obj (NULL when jansson could not build it) into arr. */
static int push(json_t *arr, json_t *obj) {
    if (obj == NULL || json_array_append_new(arr, obj) != 0) return SE_NOMEM;
    return 0;
}

/* from and to of a phase change's row, from columns col and col + 1. */
static void add_phases(json_t *ev, sqlite3_stmt *st, int col) {
    if (sqlite3_column_type(st, col) != SQLITE_NULL)
        json_object_set_new(ev, "from", col_jstr(st, col));
    if (sqlite3_column_type(st, col + 1) != SQLITE_NULL)
        json_object_set_new(ev, "to", col_jstr(st, col + 1));
}

static int sq_events(store *base, const char *kind, const char *name, int limit, json_t **out,
                     serr *e) {
    sq_store *s = sq(base);
    json_t *arr = json_array();
    if (arr == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    sqlite3_stmt *st;
    conn *c = reader_get(s);
    int rc = stmt(s, c, Q_EV_LIST, &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        bind_str(st, 2, name, RES_NAME_MAX);
        sqlite3_bind_int(st, 3, store_clamp_limit(limit));
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            char ts[STORE_TIME_MS_LEN];
            int64_t t = sqlite3_column_int64(st, 0);
            json_t *ev = json_pack("{s:s, s:I, s:o, s:o, s:o, s:I}", "time",
                                   store_fmt_time_ms(t, ts, sizeof(ts)), "timeMs", (json_int_t)t,
                                   "type", col_jstr(st, 1), "reason", col_jstr(st, 2), "message",
                                   col_jstr(st, 3), "resourceVersion",
                                   (json_int_t)sqlite3_column_int64(st, 4));
            if (ev) add_phases(ev, st, 5);
            if (push(arr, ev) != 0) {
                rc = serr_set(e, SE_NOMEM, "store: out of memory");
                break;
            }
        }
        if (rc == 0 && step != SQLITE_DONE) rc = db_fail(c, e, "reading events");
        done(st);
    }
    reader_put(s, c);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

static int last_event_id(sq_store *s, conn *c, int64_t *id, serr *e) {
    sqlite3_stmt *st;
    int rc = stmt(s, c, Q_EV_LAST, &st, e);
    if (rc) return rc;
    if (sqlite3_step(st) == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    else rc = db_fail(c, e, "reading events");
    done(st);
    return rc;
}

static int sq_events_last_id(store *base, int64_t *id, serr *e) {
    sq_store *s = sq(base);
    conn *c = reader_get(s);
    int rc = last_event_id(s, c, id, e);
    reader_put(s, c);
    return rc;
}

static int sq_events_after(store *base, const char *kind, const char *name, const char *tenant,
                           int64_t after, int limit, json_t **out, int64_t *upto, serr *e) {
    sq_store *s = sq(base);
    json_t *arr = json_array();
    if (arr == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    sqlite3_stmt *st = NULL;
    conn *c = reader_get(s);
    /* upto and the rows from one snapshot. */
    int rc = read_begin(s, c, e);
    if (rc == 0) rc = last_event_id(s, c, upto, e);
    if (rc == 0) rc = stmt(s, c, Q_EV_AFTER, &st, e);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int64(st, 2, *upto);
        if (kind) bind_str(st, 3, kind, RES_KIND_MAX);
        if (name) bind_str(st, 4, name, RES_NAME_MAX);
        if (tenant) bind_str(st, 5, tenant, RES_TENANT_MAX);
        sqlite3_bind_int(st, 6, limit);
        int step, n = 0;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            char ts[STORE_TIME_MS_LEN];
            int64_t t = sqlite3_column_int64(st, 1);
            json_t *ev = json_pack("{s:I,s:s,s:o,s:o,s:o,s:o,s:o,s:I}", "id",
                                   (json_int_t)sqlite3_column_int64(st, 0), "time",
                                   store_fmt_time_ms(t, ts, sizeof(ts)), "kind", col_jstr(st, 2), "name",
                                   col_jstr(st, 3), "type", col_jstr(st, 4), "reason",
                                   col_jstr(st, 5), "message", col_jstr(st, 6), "resourceVersion",
                                   (json_int_t)sqlite3_column_int64(st, 7));
            if (ev) add_phases(ev, st, 8);
            if (push(arr, ev) != 0) {
                rc = serr_set(e, SE_NOMEM, "store: out of memory");
                break;
            }
            n++;
        }
        if (rc == 0 && step != SQLITE_DONE) rc = db_fail(c, e, "reading events");
        /* A full batch: the caller resumes after its last row, not upto. */
        if (rc == 0 && n == limit)
            *upto = json_integer_value(json_object_get(json_array_get(arr, (size_t)n - 1), "id"));
    }
    done(st);
    read_end(s, c);
    reader_put(s, c);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

/* ---- audit ------------------------------------------------------------ */

static int sq_audit_add(store *base, const store_audit *a, serr *e) {
    sq_store *s = sq(base);
    char *detail = NULL;
    if (a->detail) {
        detail = json_text(a->detail, STORE_JSON_FLAGS);
        if (detail == NULL) return serr_set(e, SE_NOMEM, "store: cannot encode audit detail");
        if (strlen(detail) > STORE_DETAIL_MAX) {
            free(detail);
            return serr_set(e, SE_TOOBIG, "store: audit detail larger than %d bytes",
                            STORE_DETAIL_MAX);
        }
    }
    conn *c = writer_get(s);
    int rc, tries = 0;
    do {
        sqlite3_stmt *st;
        rc = stmt(s, c, Q_AUDIT_INSERT, &st, e);
        if (rc) continue;
        sqlite3_bind_int64(st, 1, now_ms());
        bind_str(st, 2, a->user, STORE_WORD_MAX);
        bind_str(st, 3, a->tenant, STORE_WORD_MAX);
        bind_str(st, 4, a->operation, STORE_WORD_MAX);
        bind_str(st, 5, a->kind, STORE_WORD_MAX);
        bind_str(st, 6, a->name, STORE_WORD_MAX);
        bind_str(st, 7, a->result, STORE_TEXT_MAX);
        bind_opt(st, 8, detail);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(c, e, "recording audit");
        done(st);
    } while (again(c, rc, &tries));
    writer_put(s, c);
    free(detail);
    return rc;
}

static int sq_audit_list(store *base, const char *kind, const char *name, int limit,
                         json_t **out, serr *e) {
    sq_store *s = sq(base);
    json_t *arr = json_array();
    if (arr == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    sqlite3_stmt *st;
    conn *c = reader_get(s);
    int rc = stmt(s, c, Q_AUDIT_LIST, &st, e);
    if (rc == 0) {
        bind_opt(st, 1, kind);
        bind_opt(st, 2, name);
        sqlite3_bind_int(st, 3, store_clamp_limit(limit));
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            char ts[STORE_TIME_MS_LEN];
            json_t *detail = json_null();
            if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
                json_error_t je;
                json_t *d = json_loads(col_str(st, 7), 0, &je);
                if (d) {
                    json_decref(detail);
                    detail = d;
                }
            }
            json_t *row = json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "time",
                                    store_fmt_time_ms(sqlite3_column_int64(st, 0), ts, sizeof(ts)),
                                    "user", col_jstr(st, 1), "tenant", col_jstr(st, 2),
                                    "operation", col_jstr(st, 3), "kind", col_jstr(st, 4), "name",
                                    col_jstr(st, 5), "result", col_jstr(st, 6), "detail", detail);
            if (push(arr, row) != 0) {
                rc = serr_set(e, SE_NOMEM, "store: out of memory");
                break;
            }
        }
        if (rc == 0 && step != SQLITE_DONE) rc = db_fail(c, e, "reading audit");
        done(st);
    }
    reader_put(s, c);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

/* ---- meta ------------------------------------------------------------- */

static int sq_meta_get(store *base, const char *key, char **val, serr *e) {
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    conn *c = reader_get(s);
    int rc = stmt(s, c, Q_META_GET, &st, e);
    if (rc == 0) {
        bind_str(st, 1, key, STORE_KEY_MAX);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            *val = strdup(col_str(st, 0));
            if (*val == NULL) rc = serr_set(e, SE_NOMEM, "store: out of memory");
        } else if (step == SQLITE_DONE) {
            rc = serr_set(e, SE_NOTFOUND, "metadata %s not found", key);
        } else {
            rc = db_fail(c, e, "reading metadata");
        }
        done(st);
    }
    reader_put(s, c);
    return rc;
}

static int sq_meta_set(store *base, const char *key, const char *val, serr *e) {
    sq_store *s = sq(base);
    if (strlen(val) > STORE_META_VAL_MAX)
        return serr_set(e, SE_TOOBIG, "store: metadata %s larger than %d bytes", key,
                        STORE_META_VAL_MAX);
    conn *c = writer_get(s);
    int rc, tries = 0;
    do {
        sqlite3_stmt *st;
        rc = stmt(s, c, Q_META_SET, &st, e);
        if (rc) continue;
        bind_opt(st, 1, key);
        bind_opt(st, 2, val);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(c, e, "writing metadata");
        done(st);
    } while (again(c, rc, &tries));
    writer_put(s, c);
    return rc;
}

/* ---- ports ------------------------------------------------------------ */

/* Ports owner holds, sorted; *count may exceed max (only max are stored). */
static int ports_held(sq_store *s, conn *c, const char *owner, int *got, int max, int *count,
                      serr *e) {
    *count = 0;
    sqlite3_stmt *st;
    int rc = stmt(s, c, Q_PORTS_HELD, &st, e);
    if (rc) return rc;
    bind_opt(st, 1, owner);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*count < max) got[*count] = sqlite3_column_int(st, 0);
        (*count)++;
    }
    if (step != SQLITE_DONE) rc = db_fail(c, e, "reading ports");
    done(st);
    return rc;
}

static int ports_delete(sq_store *s, conn *c, const char *owner, serr *e) {
    sqlite3_stmt *st;
    int rc = stmt(s, c, Q_PORTS_DELETE, &st, e);
    if (rc) return rc;
    bind_opt(st, 1, owner);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(c, e, "releasing ports");
    done(st);
    return rc;
}

/* Walks lo..hi beside the sorted list of leased ports in that range.  The
 * veto runs here, with the writer held and a statement part-way. */
static int ports_find(sq_store *s, conn *c, int n, int lo, int hi, store_port_ok_fn ok,
                      void *arg, int *got, int *found, serr *e) {
    *found = 0;
    sqlite3_stmt *st;
    int rc = stmt(s, c, Q_PORTS_FIND, &st, e);
    if (rc) return rc;
    sqlite3_bind_int(st, 1, lo);
    sqlite3_bind_int(st, 2, hi);
    int step = sqlite3_step(st);
    for (int p = lo; p <= hi && *found < n; p++) {
        while (step == SQLITE_ROW && sqlite3_column_int(st, 0) < p) step = sqlite3_step(st);
        if (step == SQLITE_ROW && sqlite3_column_int(st, 0) == p) continue;
        if (step != SQLITE_ROW && step != SQLITE_DONE) break;
        if (ok && !ok(p, arg)) continue;
        assert(*found < n);
        got[(*found)++] = p;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) rc = db_fail(c, e, "reading ports");
    done(st);
    return rc;
}

/* The lease in one transaction on the writer c: got[0..n) gets the ports. */
static int lease_tx(sq_store *s, conn *c, const char *owner, int n, int lo, int hi,
                    store_port_ok_fn ok, void *arg, int *got, serr *e) {
    int count = 0, found = 0;
    sqlite3_stmt *st = NULL;
    int rc = tx_begin(s, c, e);
    if (rc) goto out;
    if ((rc = ports_held(s, c, owner, got, n, &count, e)) != 0) goto out;
    /* A lease, once taken, stays even if the configured range moved: the
     * workload is listening on it, and its endpoint must not change under
     * a restart of stampd with another range. */
    if (count == n) {
        rc = tx_commit(s, c, e);
        goto out;
    }
    if (count > 0 && (rc = ports_delete(s, c, owner, e)) != 0) goto out;
    if ((rc = ports_find(s, c, n, lo, hi, ok, arg, got, &found, e)) != 0) goto out;
    if (found < n) {
        rc = serr_set(e, SE_LIMIT, "%s: only %d of %d ports free in %d-%d", owner, found, n, lo,
                      hi);
        goto out;
    }
    if ((rc = stmt(s, c, Q_PORTS_INSERT, &st, e)) != 0) goto out;
    for (int i = 0; i < n && rc == 0; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int(st, 1, got[i]);
        bind_opt(st, 2, owner);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(c, e, "leasing port");
    }
    done(st);
    st = NULL;
    if (rc == 0) rc = tx_commit(s, c, e);
out:
    done(st);
    if (rc) tx_rollback(s, c);
    return rc;
}

static int sq_ports_lease(store *base, const char *owner, int n, int lo, int hi,
                          store_port_ok_fn ok, void *arg, int *ports, serr *e) {
    sq_store *s = sq(base);
    int *got = calloc((size_t)n, sizeof(*got));
    if (got == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    int rc, tries = 0;
    conn *c = writer_get(s);
    do rc = lease_tx(s, c, owner, n, lo, hi, ok, arg, got, e);
    while (again(c, rc, &tries));
    writer_put(s, c);
    if (rc == 0) memcpy(ports, got, (size_t)n * sizeof(*got));
    free(got);
    return rc;
}

static int sq_ports_release(store *base, const char *owner, serr *e) {
    sq_store *s = sq(base);
    int rc, tries = 0;
    conn *c = writer_get(s);
    do rc = ports_delete(s, c, owner, e);
    while (again(c, rc, &tries));
    writer_put(s, c);
    return rc;
}

static int sq_ports_held(store *base, const char *owner, int *ports, int max, int *count, serr *e) {
    sq_store *s = sq(base);
    conn *c = reader_get(s);
    int rc = ports_held(s, c, owner, ports, max, count, e);
    reader_put(s, c);
    return rc;
}

/* ---- the table -------------------------------------------------------- */

static const store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .create = sq_create,
    .get = sq_get,
    .update = sq_update,
    .remove = sq_remove,
    .list_page = sq_list_page,
    .list_due_page = sq_list_due_page,
    .event_add = sq_event_add,
    .events = sq_events,
    .events_after = sq_events_after,
    .events_last_id = sq_events_last_id,
    .audit_add = sq_audit_add,
    .audit_list = sq_audit_list,
    .meta_get = sq_meta_get,
    .meta_set = sq_meta_set,
    .ports_lease = sq_ports_lease,
    .ports_release = sq_ports_release,
    .ports_held = sq_ports_held,
};
