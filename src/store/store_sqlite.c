/*
 * store_sqlite.c - the embedded backend of store.h: one SQLite database file
 * holding resources, events, audit, small metadata and port leases.
 *
 * Invariants: a resource row and the event describing its write commit in one
 * transaction; resource_version is checked and bumped inside the writing
 * transaction, so a stale update changes nothing; the JSON columns hold
 * canonical text (sorted keys, compact), so equal text means equal value and
 * the generation bump is a string comparison.  The database file and its WAL
 * are created mode 0600 because meta holds secrets.
 *
 * It is the ops table sqlite_ops (store_backend.h): store.c has checked the
 * arguments before an sq_* function runs.
 *
 * Threading: one connection guarded by s->mu (and opened FULLMUTEX as a
 * second line).  Every op holds the mutex for its whole transaction.  A
 * list op reads one page and releases it, so store_list's callback may call
 * back into the store; the port veto callback runs with the mutex held and
 * must not.
 */
#include "store/store.h"
#include "store/store_backend.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util/reserve.h"
#include "util/util.h"

#define STORE_BUSY_MS 5000
#define STORE_DOC_MAX (1024 * 1024)       /* spec + status text */
#define STORE_METADOC_MAX (256 * 1024)    /* labels + annotations + finalizers */
#define STORE_LIMIT_DEFAULT 1000
#define STORE_LIMIT_MAX 10000
#define STORE_META_VAL_MAX (1024 * 1024)
#define STORE_WORD_MAX 256                /* event type/reason, audit names */
#define STORE_TEXT_MAX 8192               /* event message, audit result */
#define STORE_DETAIL_MAX (64 * 1024)
#define STORE_JSON_FLAGS (JSON_SORT_KEYS | JSON_COMPACT)

#define RES_COLS                                                                           \
    "kind, name, tenant, labels, annotations, spec, status, finalizers, resource_version, " \
    "generation, created_ms, updated_ms, deletion_ms, due_ms"

typedef struct sq_store {
    store base; /* first: a store * is a sq_store * */
    sqlite3 *db;
    pthread_mutex_t mu;
    bool mu_ready;
} sq_store;

static const store_ops sqlite_ops;

static sq_store *sq(store *s) {
    assert(s->ops == &sqlite_ops);
    return (sq_store *)s;
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
    int (*fn)(sq_store *s, serr *e);       /* or NULL; runs after sql */
} migration;

static int add_due_ms(sq_store *s, serr *e);

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

/* ---- small helpers ---------------------------------------------------- */

/* Records the connection's current error.  Busy means another process holds
 * the write lock past busy_timeout: worth a retry, so it is UNAVAIL, not IO. */
static int db_fail(sq_store *s, serr *e, const char *what) {
    int rc = sqlite3_errcode(s->db);
    if (rc == SQLITE_FULL) reserve_release(); /* so the next write finds room */
    int code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? SE_UNAVAIL : SE_IO;
    if (rc == SQLITE_NOMEM) code = SE_NOMEM;
    return serr_set(e, code, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

static int prep(sq_store *s, const char *sql, sqlite3_stmt **st, serr *e) {
    *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) {
        int rc = db_fail(s, e, "prepare");
        sqlite3_finalize(*st);
        *st = NULL;
        return rc;
    }
    return 0;
}

/* Binds at most max bytes of v, cut back to a UTF-8 character boundary, so
 * an overlong message is shortened rather than failing the write it
 * describes.  Strings bound here outlive the statement (SQLITE_STATIC). */
/* Text is stored as valid UTF-8, at most max bytes, cut on a character
 * boundary: a byte that is not UTF-8 (a query value, a pod's output) is
 * kept visible as \xNN rather than making the row unreadable as JSON. */
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

static void lock(sq_store *s) { pthread_mutex_lock(&s->mu); }
static void unlock(sq_store *s) { pthread_mutex_unlock(&s->mu); }

static int tx_begin(sq_store *s, serr *e) {
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, e, "begin");
    return 0;
}

static int tx_commit(sq_store *s, serr *e) {
    int rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    /* Disk full (a tenant filled it): free stampd's reserve and retry once. */
    if (rc == SQLITE_FULL && !sqlite3_get_autocommit(s->db) && reserve_release())
        rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) return db_fail(s, e, "commit");
    return 0;
}

/* Safe to call whatever state the connection is in; the caller has already
 * captured the error message it reports. */
static void tx_rollback(sq_store *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* "Stamp" -> "stamp" for messages like "stamp synaxis-weu-001 not found". */
static const char *kind_lower(const char *kind, char *buf, size_t len) {
    size_t i = 0;
    for (; kind[i] && i + 1 < len; i++) {
        char c = kind[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    buf[i] = '\0';
    return buf;
}

static int err_notfound(serr *e, const char *kind, const char *name) {
    char k[RES_KIND_MAX];
    return serr_set(e, SE_NOTFOUND, "%s %s not found", kind_lower(kind, k, sizeof(k)), name);
}

static int clamp_limit(int limit) {
    if (limit <= 0) return STORE_LIMIT_DEFAULT;
    return limit > STORE_LIMIT_MAX ? STORE_LIMIT_MAX : limit;
}

/* RFC 3339 UTC with milliseconds: "2026-01-25T01:00:00.123Z". */
static char *fmt_time_ms(int64_t ms, char *buf, size_t len) {
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
    snprintf(buf, len, "%s.%03dZ", base, (int)frac);
    return buf;
}

/* ---- resources as text ------------------------------------------------ */

/* Canonical text of the five JSON members of a resource. */
typedef struct res_text {
    char *labels, *annotations, *spec, *status, *finalizers;
} res_text;

static void res_text_free(res_text *t) {
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
        *out = json_dumps(v, STORE_JSON_FLAGS);
    }
    if (*out == NULL) return serr_set(e, SE_NOMEM, "store: cannot encode %s", what);
    return 0;
}

static int res_encode(const resource *r, res_text *t, serr *e) {
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
                      kind_lower(r->kind, k, sizeof(k)), r->name, doc, STORE_DOC_MAX);
        goto fail;
    }
    size_t meta = strlen(t->labels) + strlen(t->annotations) + strlen(t->finalizers);
    if (meta > STORE_METADOC_MAX) {
        rc = serr_set(e, SE_TOOBIG,
                      "%s %s: labels, annotations and finalizers are %zu bytes, more than %d",
                      kind_lower(r->kind, k, sizeof(k)), r->name, meta, STORE_METADOC_MAX);
        goto fail;
    }
    return 0;
fail:
    res_text_free(t);
    return rc;
}

static int load_member(sqlite3_stmt *st, int col, bool array, json_t **out, serr *e) {
    json_error_t je;
    json_t *v = json_loads(col_str(st, col), JSON_ALLOW_NUL, &je);
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
    str_copy(r->kind, sizeof(r->kind), col_str(st, 0));
    str_copy(r->name, sizeof(r->name), col_str(st, 1));
    str_copy(r->tenant, sizeof(r->tenant), col_str(st, 2));
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

/* ---- open / close ----------------------------------------------------- */

static int make_parent(const char *path, serr *e) {
    char dir[PATH_MAX];
    if (!str_copy(dir, sizeof(dir), path)) return serr_set(e, SE_INVAL, "store: path too long");
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) return 0;
    *slash = '\0';
    return mkdir_p(dir, 0700, e);
}

static void sq_close(store *base);

static int journal_cb(void *arg, int ncol, char **vals, char **names) {
    if (ncol > 0 && vals[0] != NULL) str_copy(arg, 16, vals[0]);
    return 0;
}

static int schema_version_cb(void *arg, int ncol, char **vals, char **names) {
    int64_t v = 0;
    if (ncol > 0 && vals[0] != NULL && parse_i64(vals[0], 0, INT32_MAX, &v) == 0) *(int64_t *)arg = v;
    return 0;
}

static int user_version(sq_store *s, int64_t *v, serr *e) {
    sqlite3_stmt *st;
    int rc = prep(s, "PRAGMA user_version", &st, e);
    if (rc) return rc;
    if (sqlite3_step(st) == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
    else rc = db_fail(s, e, "reading user_version");
    sqlite3_finalize(st);
    return rc;
}

/* Migration 2.  Before due_ms, a database's resources table lacked it. */
static int add_due_ms(sq_store *s, serr *e) {
    sqlite3_stmt *st;
    int rc = prep(s, "SELECT 1 FROM pragma_table_info('resources') WHERE name='due_ms'", &st, e);
    if (rc) return rc;
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return db_fail(s, e, "reading resources columns");
    if (step == SQLITE_DONE &&
        sqlite3_exec(s->db, "ALTER TABLE resources ADD COLUMN due_ms INTEGER", NULL, NULL, NULL) !=
            SQLITE_OK)
        return db_fail(s, e, "adding due_ms");
    /* The partial index the sweeps use. */
    if (sqlite3_exec(s->db,
                     "CREATE INDEX IF NOT EXISTS resources_due ON resources(kind, due_ms, name) "
                     "WHERE due_ms IS NOT NULL",
                     NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, e, "creating the due index");
    return 0;
}

/* Brings the database to STORE_SCHEMA_VERSION, one transaction a step. */
static int migrate(sq_store *s, const char *path, serr *e) {
    int64_t v = 0;
    int rc = user_version(s, &v, e);
    if (rc) return rc;
    if (v > STORE_SCHEMA_VERSION)
        return serr_set(e, SE_INVAL, "store: %s has schema version %lld, this program knows %d",
                        path, (long long)v, STORE_SCHEMA_VERSION);
    if (v == 0) {
        /* Unversioned: new, or written before versions.  The latter says
         * schema_version 1 in meta; anything else is not ours to upgrade. */
        int64_t old = 1;
        sqlite3_exec(s->db, "SELECT value FROM meta WHERE key='schema_version'", schema_version_cb,
                     &old, NULL); /* no meta table: a new database */
        if (old != 1)
            return serr_set(e, SE_INVAL, "store: %s has schema version %lld, this program knows %d",
                            path, (long long)old, STORE_SCHEMA_VERSION);
    }
    for (int n = (int)v + 1; n <= STORE_SCHEMA_VERSION; n++) {
        const migration *m = &migrations[n - 1];
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version=%d", n);
        if ((rc = tx_begin(s, e)) != 0) return rc;
        if (m->sql && sqlite3_exec(s->db, m->sql, NULL, NULL, NULL) != SQLITE_OK)
            rc = db_fail(s, e, m->what); /* "store: <migration>: <why>" */
        if (rc == 0 && m->fn) rc = m->fn(s, e);
        if (rc == 0 && sqlite3_exec(s->db, bump, NULL, NULL, NULL) != SQLITE_OK)
            rc = db_fail(s, e, "recording the schema version");
        if (rc == 0) rc = tx_commit(s, e);
        if (rc) {
            tx_rollback(s); /* the message names the migration: db_fail's what */
            return rc;
        }
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
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        rc = serr_set(e, SE_INTERNAL, "store: cannot create mutex");
        goto fail;
    }
    s->mu_ready = true;
    if (!memory) {
        if ((rc = make_parent(path, e)) != 0) goto fail;
        /* SQLite gives the WAL and shm files the database file's mode. */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd == -1) {
            rc = serr_set(e, SE_IO, "store: open %s: %s", path, strerror(errno));
            goto fail;
        }
        close(fd);
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        rc = serr_set(e, SE_IO, "store: open %s: %s", path,
                      s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
    char mode[16] = "";
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", journal_cb, mode, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", NULL, NULL,
                     NULL) != SQLITE_OK) {
        rc = db_fail(s, e, "pragmas");
        goto fail;
    }
    if (!memory && strcmp(mode, "wal") != 0) {
        rc = serr_set(e, SE_IO, "store: %s: cannot use WAL journal (got %s)", path, mode);
        goto fail;
    }
    if ((rc = migrate(s, path, e)) != 0) goto fail;
    *out = &s->base;
    return 0;
fail:
    sq_close(&s->base);
    return rc;
}

static void sq_close(store *base) {
    sq_store *s = (sq_store *)base;
    if (s->db) sqlite3_close(s->db);
    if (s->mu_ready) pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- events (internal) ------------------------------------------------ */

static int event_insert(sq_store *s, const char *kind, const char *name, int64_t t, int64_t rv,
                        const store_event *ev, serr *e) {
    sqlite3_stmt *st;
    int rc = prep(s,
                  "INSERT INTO events(kind, name, time_ms, type, reason, message, "
                  "resource_version, from_phase, to_phase) VALUES(?,?,?,?,?,?,?,?,?)",
                  &st, e);
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
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, e, "recording event");
    sqlite3_finalize(st);
    return rc;
}

/* Reads the stored version of (kind, name) inside the caller's transaction.
 * With check set, a version other than want is SE_CONFLICT.  When new_spec
 * is given, *spec_changed says whether it differs from the stored text. */
static int row_check(sq_store *s, const char *kind, const char *name, bool check, int64_t want,
                     const char *new_spec, int64_t *rv, int64_t *gen, bool *spec_changed,
                     serr *e) {
    sqlite3_stmt *st;
    int rc = prep(s,
                  "SELECT resource_version, generation, spec FROM resources "
                  "WHERE kind=? AND name=?",
                  &st, e);
    if (rc) return rc;
    bind_str(st, 1, kind, RES_KIND_MAX);
    bind_str(st, 2, name, RES_NAME_MAX);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        rc = err_notfound(e, kind, name);
    } else if (step != SQLITE_ROW) {
        rc = db_fail(s, e, "reading resource");
    } else {
        *rv = sqlite3_column_int64(st, 0);
        if (gen) *gen = sqlite3_column_int64(st, 1);
        if (new_spec && spec_changed) *spec_changed = strcmp(col_str(st, 2), new_spec) != 0;
        if (check && *rv != want) {
            char k[RES_KIND_MAX];
            rc = serr_set(e, SE_CONFLICT,
                          "%s %s was modified (resourceVersion %lld, you had %lld)",
                          kind_lower(kind, k, sizeof(k)), name, (long long)*rv,
                          (long long)want);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- resources -------------------------------------------------------- */

static int sq_create(store *base, resource *r, const store_event *ev, serr *e) {
    sq_store *s = sq(base);
    int rc;
    res_text t;
    if ((rc = res_encode(r, &t, e)) != 0) return rc;
    int64_t now = now_ms();
    sqlite3_stmt *st = NULL;
    lock(s);
    if ((rc = tx_begin(s, e)) != 0) goto out;
    rc = prep(s, "INSERT INTO resources(" RES_COLS ") VALUES(?,?,?,?,?,?,?,?,1,1,?,?,?,?)", &st, e);
    if (rc) goto out;
    bind_str(st, 1, r->kind, RES_KIND_MAX);
    bind_str(st, 2, r->name, RES_NAME_MAX);
    bind_str(st, 3, r->tenant, RES_TENANT_MAX);
    bind_opt(st, 4, t.labels);
    bind_opt(st, 5, t.annotations);
    bind_opt(st, 6, t.spec);
    bind_opt(st, 7, t.status);
    bind_opt(st, 8, t.finalizers);
    sqlite3_bind_int64(st, 9, now);
    sqlite3_bind_int64(st, 10, now);
    sqlite3_bind_int64(st, 11, r->deletion_ms);
    bind_due(st, 12, r->due_ms);
    if (sqlite3_step(st) != SQLITE_DONE) {
        if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
            char k[RES_KIND_MAX];
            rc = serr_set(e, SE_EXISTS, "%s %s already exists",
                          kind_lower(r->kind, k, sizeof(k)), r->name);
        } else {
            rc = db_fail(s, e, "creating resource");
        }
        goto out;
    }
    if (ev && (rc = event_insert(s, r->kind, r->name, now, 1, ev, e)) != 0) goto out;
    rc = tx_commit(s, e);
out:
    sqlite3_finalize(st);
    if (rc) tx_rollback(s);
    unlock(s);
    res_text_free(&t);
    if (rc == 0) {
        r->resource_version = 1;
        r->generation = 1;
        r->created_ms = r->updated_ms = now;
    }
    return rc;
}

/* Releases what out held and, on failure, leaves it with no allocations, so
 * both "resource_init, then get" and "get, then init on SE_NOTFOUND" are
 * leak free. */
static int sq_get(store *base, const char *kind, const char *name, resource *out, serr *e) {
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    lock(s);
    int rc = prep(s, "SELECT " RES_COLS " FROM resources WHERE kind=? AND name=?", &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        bind_str(st, 2, name, RES_NAME_MAX);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) rc = row_to_resource(st, out, e);
        else if (step == SQLITE_DONE) rc = err_notfound(e, kind, name);
        else rc = db_fail(s, e, "reading resource");
        sqlite3_finalize(st);
    }
    unlock(s);
    return rc;
}

static int sq_update(store *base, resource *r, const store_event *ev, serr *e) {
    sq_store *s = sq(base);
    int rc;
    res_text t;
    if ((rc = res_encode(r, &t, e)) != 0) return rc;
    int64_t now = now_ms(), rv = 0, gen = 0;
    bool changed = false;
    sqlite3_stmt *st = NULL;
    lock(s);
    if ((rc = tx_begin(s, e)) != 0) goto out;
    rc = row_check(s, r->kind, r->name, true, r->resource_version, t.spec, &rv, &gen, &changed, e);
    if (rc) goto out;
    if (changed) gen++;
    rc = prep(s,
              "UPDATE resources SET labels=?, annotations=?, spec=?, status=?, finalizers=?, "
              "resource_version=resource_version+1, generation=?, updated_ms=?, deletion_ms=?, "
              "due_ms=? WHERE kind=? AND name=? AND resource_version=?",
              &st, e);
    if (rc) goto out;
    bind_opt(st, 1, t.labels);
    bind_opt(st, 2, t.annotations);
    bind_opt(st, 3, t.spec);
    bind_opt(st, 4, t.status);
    bind_opt(st, 5, t.finalizers);
    sqlite3_bind_int64(st, 6, gen);
    sqlite3_bind_int64(st, 7, now);
    sqlite3_bind_int64(st, 8, r->deletion_ms);
    bind_due(st, 9, r->due_ms);
    bind_str(st, 10, r->kind, RES_KIND_MAX);
    bind_str(st, 11, r->name, RES_NAME_MAX);
    sqlite3_bind_int64(st, 12, rv);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_fail(s, e, "updating resource");
        goto out;
    }
    if (sqlite3_changes(s->db) != 1) {
        /* Cannot happen while we hold the write lock; refuse rather than
         * report a write that did not land. */
        rc = serr_set(e, SE_CONFLICT, "%s %s changed during update", r->kind, r->name);
        goto out;
    }
    if (ev && (rc = event_insert(s, r->kind, r->name, now, rv + 1, ev, e)) != 0) goto out;
    rc = tx_commit(s, e);
out:
    sqlite3_finalize(st);
    if (rc) tx_rollback(s);
    unlock(s);
    res_text_free(&t);
    if (rc == 0) {
        r->resource_version = rv + 1;
        r->generation = gen;
        r->updated_ms = now;
    }
    return rc;
}

static int sq_remove(store *base, const char *kind, const char *name, int64_t rv, serr *e) {
    sq_store *s = sq(base);
    int rc;
    int64_t cur = 0;
    sqlite3_stmt *st = NULL;
    lock(s);
    if ((rc = tx_begin(s, e)) != 0) goto out;
    if ((rc = row_check(s, kind, name, rv != 0, rv, NULL, &cur, NULL, NULL, e)) != 0) goto out;
    if ((rc = prep(s, "DELETE FROM resources WHERE kind=? AND name=?", &st, e)) != 0) goto out;
    bind_str(st, 1, kind, RES_KIND_MAX);
    bind_str(st, 2, name, RES_NAME_MAX);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_fail(s, e, "deleting resource");
        goto out;
    }
    rc = tx_commit(s, e);
out:
    sqlite3_finalize(st);
    if (rc) tx_rollback(s);
    unlock(s);
    return rc;
}

/* Up to max resources of kind named after `after`, in name order. */
static int sq_list_page(store *base, const char *kind, const char *tenant, const char *after,
                        resource *batch, int max, int *n, serr *e) {
    sq_store *s = sq(base);
    *n = 0;
    sqlite3_stmt *st;
    lock(s);
    int rc = prep(s,
                  "SELECT " RES_COLS " FROM resources WHERE kind=?1 "
                  "AND (?2 IS NULL OR tenant=?2) AND name>?3 ORDER BY name LIMIT ?4",
                  &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        if (tenant) bind_str(st, 2, tenant, RES_TENANT_MAX);
        else sqlite3_bind_null(st, 2);
        bind_str(st, 3, after, RES_NAME_MAX);
        sqlite3_bind_int(st, 4, max);
        int step = SQLITE_DONE;
        while (rc == 0 && *n < max && (step = sqlite3_step(st)) == SQLITE_ROW) {
            if ((rc = row_to_resource(st, &batch[*n], e)) == 0) (*n)++;
        }
        if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW)
            rc = db_fail(s, e, "listing resources");
        sqlite3_finalize(st);
    }
    unlock(s);
    if (rc) {
        for (int i = 0; i < *n; i++) resource_free(&batch[i]);
        *n = 0;
    }
    return rc;
}

static int sq_list_due_page(store *base, const char *kind, int64_t after_ms,
                            const char *after_name, int64_t before_ms, resource *batch, int max,
                            int *n, serr *e) {
    sq_store *s = sq(base);
    *n = 0;
    sqlite3_stmt *st;
    lock(s);
    int rc = prep(s,
                  "SELECT " RES_COLS " FROM resources WHERE kind=?1 AND due_ms IS NOT NULL "
                  "AND due_ms<=?2 AND (due_ms>?4 OR (due_ms=?4 AND name>?5)) "
                  "ORDER BY due_ms, name LIMIT ?3",
                  &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        sqlite3_bind_int64(st, 2, before_ms);
        sqlite3_bind_int(st, 3, max);
        sqlite3_bind_int64(st, 4, after_ms);
        bind_str(st, 5, after_name, RES_NAME_MAX);
        int step = SQLITE_DONE;
        while (rc == 0 && *n < max && (step = sqlite3_step(st)) == SQLITE_ROW)
            if ((rc = row_to_resource(st, &batch[*n], e)) == 0) (*n)++;
        if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW) rc = db_fail(s, e, "listing due");
        sqlite3_finalize(st);
    }
    unlock(s);
    if (rc) {
        for (int i = 0; i < *n; i++) resource_free(&batch[i]);
        *n = 0;
    }
    return rc;
}

/* ---- events ----------------------------------------------------------- */

static int sq_event_add(store *base, const char *kind, const char *name, const store_event *ev, serr *e) {
    sq_store *s = sq(base);
    /* An event may outlive its resource (for example "Purged"): a missing
     * row records resourceVersion 0 rather than failing. */
    sqlite3_stmt *st;
    int64_t rv = 0;
    lock(s);
    int rc = prep(s, "SELECT resource_version FROM resources WHERE kind=? AND name=?", &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        bind_str(st, 2, name, RES_NAME_MAX);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) rv = sqlite3_column_int64(st, 0);
        else if (step != SQLITE_DONE) rc = db_fail(s, e, "reading resource");
        sqlite3_finalize(st);
    }
    if (rc == 0) rc = event_insert(s, kind, name, now_ms(), rv, ev, e);
    unlock(s);
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

static int sq_events(store *base, const char *kind, const char *name, int limit, json_t **out, serr *e) {
    sq_store *s = sq(base);
    json_t *arr = json_array();
    if (arr == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    sqlite3_stmt *st;
    lock(s);
    /* The newest `limit` events, shown oldest first. */
    int rc = prep(s,
              "SELECT time_ms, type, reason, message, resource_version, from_phase, to_phase"
              " FROM (SELECT id, time_ms, type, reason, message, resource_version, from_phase,"
              " to_phase FROM events"
              " WHERE kind=? AND name=? ORDER BY id DESC LIMIT ?) ORDER BY id",
              &st, e);
    if (rc == 0) {
        bind_str(st, 1, kind, RES_KIND_MAX);
        bind_str(st, 2, name, RES_NAME_MAX);
        sqlite3_bind_int(st, 3, clamp_limit(limit));
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            char ts[48];
            int64_t t = sqlite3_column_int64(st, 0);
            json_t *ev = json_pack("{s:s, s:I, s:o, s:o, s:o, s:I}", "time",
                                   fmt_time_ms(t, ts, sizeof(ts)), "timeMs", (json_int_t)t,
                                   "type", col_jstr(st, 1), "reason", col_jstr(st, 2), "message",
                                   col_jstr(st, 3), "resourceVersion",
                                   (json_int_t)sqlite3_column_int64(st, 4));
            if (ev) add_phases(ev, st, 5);
            if (push(arr, ev) != 0) {
                rc = serr_set(e, SE_NOMEM, "store: out of memory");
                break;
            }
        }
        if (rc == 0 && step != SQLITE_DONE) rc = db_fail(s, e, "reading events");
        sqlite3_finalize(st);
    }
    unlock(s);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

static int last_event_id(sq_store *s, int64_t *id, serr *e) {
    sqlite3_stmt *st;
    int rc = prep(s, "SELECT COALESCE(MAX(id), 0) FROM events", &st, e);
    if (rc) return rc;
    if (sqlite3_step(st) == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    else rc = db_fail(s, e, "reading events");
    sqlite3_finalize(st);
    return rc;
}

static int sq_events_last_id(store *base, int64_t *id, serr *e) {
    sq_store *s = sq(base);
    lock(s);
    int rc = last_event_id(s, id, e);
    unlock(s);
    return rc;
}

static int sq_events_after(store *base, const char *kind, const char *name, const char *tenant,
                       int64_t after, int limit, json_t **out, int64_t *upto, serr *e) {
    sq_store *s = sq(base);
    json_t *arr = json_array();
    if (arr == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    sqlite3_stmt *st;
    lock(s);
    int rc = last_event_id(s, upto, e);
    if (rc == 0)
        rc = prep(s,
                  "SELECT e.id, e.time_ms, e.kind, e.name, e.type, e.reason, e.message,"
                  " e.resource_version, e.from_phase, e.to_phase FROM events e"
                  " WHERE e.id > ?1 AND e.id <= ?2 AND (?3 IS NULL OR e.kind = ?3)"
                  " AND (?4 IS NULL OR e.name = ?4)"
                  /* A name may be reused (a reaped namespace's bucket taken
                   * by another tenant): only the events of the tenant's own
                   * object, written since it was created. */
                  " AND (?5 IS NULL OR EXISTS (SELECT 1 FROM resources r WHERE r.kind = e.kind"
                  "  AND r.name = e.name AND r.tenant = ?5 AND e.time_ms >= r.created_ms))"
                  " ORDER BY e.id LIMIT ?6",
                  &st, e);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int64(st, 2, *upto);
        if (kind) bind_str(st, 3, kind, RES_KIND_MAX);
        if (name) bind_str(st, 4, name, RES_NAME_MAX);
        if (tenant) bind_str(st, 5, tenant, RES_TENANT_MAX);
        sqlite3_bind_int(st, 6, limit);
        int step, n = 0;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            char ts[48];
            int64_t t = sqlite3_column_int64(st, 1);
            json_t *ev = json_pack("{s:I,s:s,s:o,s:o,s:o,s:o,s:o,s:I}", "id",
                                   (json_int_t)sqlite3_column_int64(st, 0), "time",
                                   fmt_time_ms(t, ts, sizeof(ts)), "kind", col_jstr(st, 2), "name",
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
        if (rc == 0 && step != SQLITE_DONE) rc = db_fail(s, e, "reading events");
        sqlite3_finalize(st);
        /* A full batch: the caller resumes after its last row, not upto. */
        if (rc == 0 && n == limit)
            *upto = json_integer_value(json_object_get(json_array_get(arr, (size_t)n - 1), "id"));
    }
    unlock(s);
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
        detail = json_dumps(a->detail, STORE_JSON_FLAGS);
        if (detail == NULL) return serr_set(e, SE_NOMEM, "store: cannot encode audit detail");
        if (strlen(detail) > STORE_DETAIL_MAX) {
            free(detail);
            return serr_set(e, SE_TOOBIG, "store: audit detail larger than %d bytes",
                            STORE_DETAIL_MAX);
        }
    }
    sqlite3_stmt *st;
    lock(s);
    int rc = prep(s,
                  "INSERT INTO audit(time_ms, \"user\", tenant, operation, kind, name, result, "
                  "detail) VALUES(?,?,?,?,?,?,?,?)",
                  &st, e);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, now_ms());
        bind_str(st, 2, a->user, STORE_WORD_MAX);
        bind_str(st, 3, a->tenant, STORE_WORD_MAX);
        bind_str(st, 4, a->operation, STORE_WORD_MAX);
        bind_str(st, 5, a->kind, STORE_WORD_MAX);
        bind_str(st, 6, a->name, STORE_WORD_MAX);
        bind_str(st, 7, a->result, STORE_TEXT_MAX);
        bind_opt(st, 8, detail);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, e, "recording audit");
        sqlite3_finalize(st);
    }
    unlock(s);
    free(detail);
    return rc;
}

static int sq_audit_list(store *base, const char *kind, const char *name, int limit, json_t **out,
                     serr *e) {
    sq_store *s = sq(base);
    json_t *arr = json_array();
    if (arr == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    sqlite3_stmt *st;
    lock(s);
    int rc = prep(s,
                  "SELECT time_ms, \"user\", tenant, operation, kind, name, result, detail FROM ("
                  " SELECT * FROM audit WHERE (?1 IS NULL OR kind=?1) AND (?2 IS NULL OR name=?2)"
                  " ORDER BY id DESC LIMIT ?3) ORDER BY id",
                  &st, e);
    if (rc == 0) {
        bind_opt(st, 1, kind);
        bind_opt(st, 2, name);
        sqlite3_bind_int(st, 3, clamp_limit(limit));
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            char ts[48];
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
                                    fmt_time_ms(sqlite3_column_int64(st, 0), ts, sizeof(ts)),
                                    "user", col_jstr(st, 1), "tenant", col_jstr(st, 2),
                                    "operation", col_jstr(st, 3), "kind", col_jstr(st, 4), "name",
                                    col_jstr(st, 5), "result", col_jstr(st, 6), "detail", detail);
            if (push(arr, row) != 0) {
                rc = serr_set(e, SE_NOMEM, "store: out of memory");
                break;
            }
        }
        if (rc == 0 && step != SQLITE_DONE) rc = db_fail(s, e, "reading audit");
        sqlite3_finalize(st);
    }
    unlock(s);
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
    lock(s);
    int rc = prep(s, "SELECT value FROM meta WHERE key=?", &st, e);
    if (rc == 0) {
        bind_str(st, 1, key, STORE_KEY_MAX);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            *val = strdup(col_str(st, 0));
            if (*val == NULL) rc = serr_set(e, SE_NOMEM, "store: out of memory");
        } else if (step == SQLITE_DONE) {
            rc = serr_set(e, SE_NOTFOUND, "metadata %s not found", key);
        } else {
            rc = db_fail(s, e, "reading metadata");
        }
        sqlite3_finalize(st);
    }
    unlock(s);
    return rc;
}

static int sq_meta_set(store *base, const char *key, const char *val, serr *e) {
    sq_store *s = sq(base);
    if (strlen(val) > STORE_META_VAL_MAX)
        return serr_set(e, SE_TOOBIG, "store: metadata %s larger than %d bytes", key,
                        STORE_META_VAL_MAX);
    sqlite3_stmt *st;
    lock(s);
    int rc = prep(s,
              "INSERT INTO meta(key, value) VALUES(?, ?) "
              "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
              &st, e);
    if (rc == 0) {
        bind_opt(st, 1, key);
        bind_opt(st, 2, val);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, e, "writing metadata");
        sqlite3_finalize(st);
    }
    unlock(s);
    return rc;
}

/* ---- ports ------------------------------------------------------------ */

/* Ports owner holds, sorted; *count may exceed max (only max are stored). */
static int ports_held(sq_store *s, const char *owner, int *got, int max, int *count, serr *e) {
    *count = 0;
    sqlite3_stmt *st;
    int rc = prep(s, "SELECT port FROM ports WHERE owner=? ORDER BY port", &st, e);
    if (rc) return rc;
    bind_opt(st, 1, owner);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*count < max) got[*count] = sqlite3_column_int(st, 0);
        (*count)++;
    }
    if (step != SQLITE_DONE) rc = db_fail(s, e, "reading ports");
    sqlite3_finalize(st);
    return rc;
}

static int ports_delete(sq_store *s, const char *owner, serr *e) {
    sqlite3_stmt *st;
    int rc = prep(s, "DELETE FROM ports WHERE owner=?", &st, e);
    if (rc) return rc;
    bind_opt(st, 1, owner);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, e, "releasing ports");
    sqlite3_finalize(st);
    return rc;
}

/* Walks lo..hi beside the sorted list of leased ports in that range. */
static int ports_find(sq_store *s, int n, int lo, int hi, store_port_ok_fn ok, void *arg, int *got,
                      int *found, serr *e) {
    *found = 0;
    sqlite3_stmt *st;
    int rc = prep(s, "SELECT port FROM ports WHERE port BETWEEN ? AND ? ORDER BY port", &st, e);
    if (rc) return rc;
    sqlite3_bind_int(st, 1, lo);
    sqlite3_bind_int(st, 2, hi);
    int step = sqlite3_step(st);
    for (int p = lo; p <= hi && *found < n; p++) {
        while (step == SQLITE_ROW && sqlite3_column_int(st, 0) < p) step = sqlite3_step(st);
        if (step == SQLITE_ROW && sqlite3_column_int(st, 0) == p) continue;
        if (step != SQLITE_ROW && step != SQLITE_DONE) break;
        if (ok && !ok(p, arg)) continue;
        got[(*found)++] = p;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) rc = db_fail(s, e, "reading ports");
    sqlite3_finalize(st);
    return rc;
}

static int sq_ports_lease(store *base, const char *owner, int n, int lo, int hi, store_port_ok_fn ok,
                      void *arg, int *ports, serr *e) {
    sq_store *s = sq(base);
    int *got = calloc((size_t)n, sizeof(*got));
    if (got == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    int count = 0, found = 0;
    sqlite3_stmt *st = NULL;
    lock(s);
    int rc = tx_begin(s, e);
    if (rc) goto out;
    if ((rc = ports_held(s, owner, got, n, &count, e)) != 0) goto out;
    /* A lease, once taken, stays even if the configured range moved: the
     * workload is listening on it, and its endpoint must not change under
     * a restart of stampd with another range. */
    if (count == n) {
        rc = tx_commit(s, e);
        goto out;
    }
    if (count > 0 && (rc = ports_delete(s, owner, e)) != 0) goto out;
    if ((rc = ports_find(s, n, lo, hi, ok, arg, got, &found, e)) != 0) goto out;
    if (found < n) {
        rc = serr_set(e, SE_LIMIT, "%s: only %d of %d ports free in %d-%d", owner, found, n, lo,
                      hi);
        goto out;
    }
    if ((rc = prep(s, "INSERT INTO ports(port, owner) VALUES(?, ?)", &st, e)) != 0) goto out;
    for (int i = 0; i < n && rc == 0; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int(st, 1, got[i]);
        bind_opt(st, 2, owner);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, e, "leasing port");
    }
    if (rc == 0) rc = tx_commit(s, e);
out:
    sqlite3_finalize(st);
    if (rc) tx_rollback(s);
    unlock(s);
    if (rc == 0) memcpy(ports, got, (size_t)n * sizeof(*got));
    free(got);
    return rc;
}

static int sq_ports_release(store *base, const char *owner, serr *e) {
    sq_store *s = sq(base);
    lock(s);
    int rc = ports_delete(s, owner, e);
    unlock(s);
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
};
