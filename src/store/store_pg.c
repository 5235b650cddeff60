/*
 * store_pg.c - the PostgreSQL backend of store.h, through libpq, for several
 * stampd replicas on one database.  It is the ops table pg_ops
 * (store_backend.h) with the SQLite backend's semantics (store_sqlite.c is
 * the reference): store.c has checked the arguments before a pg_* function
 * runs.
 *
 * Invariants, as in SQLite: a resource row and the event describing its
 * write commit in one transaction; resource_version is checked (the row
 * locked FOR UPDATE) and bumped inside the writing transaction, so a stale
 * update changes nothing; the JSON columns hold canonical text (sorted keys,
 * compact, type text), so what a caller stored comes back as jansson parsed
 * it, and the generation bump is a string comparison.  Keys are COLLATE "C"
 * so listings are in byte order, as SQLite's.
 *
 * What PostgreSQL needs beyond SQLite's single writer:
 *  - event ids must become visible in id order (a watch resumes after the
 *    largest id it saw): every transaction that inserts an event takes the
 *    transaction advisory lock LOCK_EVENTS just before, so ids are handed
 *    out in commit order (a transaction is visible before its locks go);
 *  - port leases take LOCK_PORTS, so two replicas never pick the same free
 *    port (all or nothing, as the single writer gave);
 *  - fencing: a write from a thread whose store_fence_get() is not 0 first
 *    reads stamp_leader.epoch FOR SHARE in its own transaction; another
 *    epoch is SE_FENCED with nothing written (an election's UPDATE of the
 *    row waits for, or is seen by, every fenced write);
 *  - migrations take LOCK_MIGRATE, one transaction a migration, so replicas
 *    starting at once apply each exactly once.
 *
 * Connections: a pool of at most PG_POOL_MAX, opened lazily, handed out
 * under s->mu (a condvar waits while all are in use).  An op holds one
 * connection for its whole run.  Reads are single statements in autocommit
 * (READ COMMITTED: each sees every commit made before it began, hence
 * read-your-writes across threads and replicas).  A connection found broken
 * is reset (PQreset) once and the op run again when that is safe: a read
 * always, a write only when the failure came before COMMIT was sent; a
 * connection lost during COMMIT is SE_UNAVAIL (the write may or may not
 * have landed: the caller retries, and optimistic concurrency makes that
 * safe).  Statements are prepared per connection on first use (the names
 * are query ids); a reset forgets them.
 *
 * SQL is constant text; every value goes as a parameter.  Text values are
 * sent in binary format (raw bytes with a length) so a cut needs no copy;
 * numbers as decimal text.  The URL is never put in a message (password).
 */
#include "store/store.h"
#include "store/store_backend.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

#define PG_POOL_MAX 8
#define FENCED_METRIC "stamp_fenced_writes_total"

/* Advisory lock keys: "stamp" and a number, constants of this program. */
#define LOCK_MIGRATE "7310593858020001"
#define LOCK_EVENTS "7310593858020002"
#define LOCK_PORTS "7310593858020003"

#define RES_COLS                                                                           \
    "kind, name, tenant, labels, annotations, spec, status, finalizers, resource_version, " \
    "generation, created_ms, updated_ms, deletion_ms, due_ms"

/* ---- the statements --------------------------------------------------- */

enum {
    Q_FENCE,
    Q_RES_INSERT,
    Q_RES_GET,
    Q_RES_CHECK,
    Q_RES_UPDATE,
    Q_RES_DELETE,
    Q_RES_VERSION,
    Q_RES_PAGE,
    Q_RES_DUE,
    Q_EV_LOCK,
    Q_EV_INSERT,
    Q_EV_LIST,
    Q_EV_LAST,
    Q_EV_AFTER,
    Q_AUDIT_INSERT,
    Q_AUDIT_LIST,
    Q_META_GET,
    Q_META_SET,
    Q_META_INIT,
    Q_PORTS_LOCK,
    Q_PORTS_HELD,
    Q_PORTS_DELETE,
    Q_PORTS_FIND,
    Q_PORTS_INSERT,
    Q_NOTIFY,
    Q_COUNT
};

static const char *const queries[Q_COUNT] = {
    [Q_FENCE] = "SELECT epoch FROM stamp_leader WHERE id = 1 FOR SHARE",
    [Q_RES_INSERT] = "INSERT INTO resources(" RES_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,1,1,"
                     "$9::bigint,$10::bigint,$11::bigint,$12::bigint) "
                     "ON CONFLICT (kind, name) DO NOTHING",
    [Q_RES_GET] = "SELECT " RES_COLS " FROM resources WHERE kind=$1 AND name=$2",
    /* Inside the write's transaction: the row stays locked until it ends. */
    [Q_RES_CHECK] = "SELECT resource_version, generation, spec FROM resources "
                    "WHERE kind=$1 AND name=$2 FOR UPDATE",
    [Q_RES_UPDATE] = "UPDATE resources SET labels=$1, annotations=$2, spec=$3, status=$4, "
                     "finalizers=$5, resource_version=resource_version+1, generation=$6::bigint, "
                     "updated_ms=$7::bigint, deletion_ms=$8::bigint, due_ms=$9::bigint "
                     "WHERE kind=$10 AND name=$11 AND resource_version=$12::bigint",
    [Q_RES_DELETE] = "DELETE FROM resources WHERE kind=$1 AND name=$2",
    [Q_RES_VERSION] = "SELECT resource_version FROM resources WHERE kind=$1 AND name=$2 "
                      "FOR SHARE",
    [Q_RES_PAGE] = "SELECT " RES_COLS " FROM resources WHERE kind=$1 "
                   "AND ($2::text IS NULL OR tenant=$2::text) AND name>$3 ORDER BY name "
                   "LIMIT $4::int",
    [Q_RES_DUE] = "SELECT " RES_COLS " FROM resources WHERE kind=$1 "
                  "AND due_ms IS NOT NULL AND due_ms<=$2::bigint "
                  "AND (due_ms, name) > ($4::bigint, $5::text) "
                  "ORDER BY due_ms, name LIMIT $3::int",
    [Q_EV_LOCK] = "SELECT pg_advisory_xact_lock(" LOCK_EVENTS ")",
    [Q_EV_INSERT] = "INSERT INTO events(kind, name, time_ms, type, reason, message, "
                    "resource_version, from_phase, to_phase) "
                    "VALUES($1,$2,$3::bigint,$4,$5,$6,$7::bigint,$8,$9)",
    [Q_EV_LIST] = "SELECT time_ms, type, reason, message, resource_version, from_phase, to_phase"
                  " FROM (SELECT id, time_ms, type, reason, message, resource_version,"
                  " from_phase, to_phase FROM events WHERE kind=$1 AND name=$2"
                  " ORDER BY id DESC LIMIT $3::int) x ORDER BY id",
    [Q_EV_LAST] = "SELECT COALESCE(MAX(id), 0) FROM events",
    /* One statement, so upto and the rows come from one snapshot.  The
     * LEFT JOIN leaves one row of NULLs (with upto) when nothing matched. */
    [Q_EV_AFTER] =
        "WITH u AS (SELECT COALESCE(MAX(id), 0) AS upto FROM events) "
        "SELECT u.upto, e.id, e.time_ms, e.kind, e.name, e.type, e.reason, e.message,"
        " e.resource_version, e.from_phase, e.to_phase FROM u LEFT JOIN LATERAL ("
        " SELECT * FROM events e WHERE e.id > $1::bigint AND e.id <= u.upto"
        " AND ($2::text IS NULL OR e.kind = $2::text) AND ($3::text IS NULL OR e.name = $3::text)"
        /* A name may be reused (a reaped namespace's bucket taken by another
         * tenant): only the events of the tenant's own object, written since
         * it was created. */
        " AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM resources r WHERE r.kind = e.kind"
        "  AND r.name = e.name AND r.tenant = $4::text AND e.time_ms >= r.created_ms))"
        " ORDER BY e.id LIMIT $5::int) e ON true ORDER BY e.id",
    [Q_AUDIT_INSERT] = "INSERT INTO audit(time_ms, \"user\", tenant, operation, kind, name, "
                       "result, detail) VALUES($1::bigint,$2,$3,$4,$5,$6,$7,$8)",
    [Q_AUDIT_LIST] = "SELECT time_ms, \"user\", tenant, operation, kind, name, result, detail"
                     " FROM (SELECT * FROM audit WHERE ($1::text IS NULL OR kind=$1::text)"
                     " AND ($2::text IS NULL OR name=$2::text) ORDER BY id DESC LIMIT $3::int) x"
                     " ORDER BY id",
    [Q_META_GET] = "SELECT value FROM meta WHERE key=$1",
    [Q_META_SET] = "INSERT INTO meta(key, value) VALUES($1, $2) "
                   "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
    [Q_META_INIT] = "INSERT INTO meta(key, value) VALUES($1, $2) ON CONFLICT(key) DO NOTHING",
    [Q_PORTS_LOCK] = "SELECT pg_advisory_xact_lock(" LOCK_PORTS ")",
    [Q_PORTS_HELD] = "SELECT port FROM ports WHERE owner=$1 ORDER BY port",
    /* The owner and every owner below it ("owner/..."): '0' follows '/'. */
    [Q_PORTS_DELETE] = "DELETE FROM ports WHERE owner=$1::text OR (owner >= $1::text || '/' "
                       "AND owner < $1::text || '0')",
    [Q_PORTS_FIND] = "SELECT port FROM ports WHERE port BETWEEN $1::int AND $2::int ORDER BY port",
    [Q_PORTS_INSERT] = "INSERT INTO ports(port, owner) SELECT unnest($1::int[]), $2",
    [Q_NOTIFY] = "SELECT pg_notify('stamp_wake', $1)",
};

/* ---- migrations --------------------------------------------------------
 * schema_migrations lists the versions applied.  Each migration runs in its
 * own transaction, after pg_advisory_xact_lock(LOCK_MIGRATE) and a check
 * that it is still missing.  Never edit one that shipped: append. */

typedef struct migration {
    const char *what;
    const char *sql;
} migration;

static const migration migrations[] = {
    {"tables", /* 1: the store's tables, as SQLite's after its migration 3 */
     "CREATE TABLE meta (key text COLLATE \"C\" PRIMARY KEY, value text NOT NULL);"
     "CREATE TABLE resources ("
     "  kind text COLLATE \"C\" NOT NULL, name text COLLATE \"C\" NOT NULL,"
     "  tenant text COLLATE \"C\" NOT NULL DEFAULT '',"
     "  labels text NOT NULL, annotations text NOT NULL, spec text NOT NULL,"
     "  status text NOT NULL, finalizers text NOT NULL,"
     "  resource_version bigint NOT NULL, generation bigint NOT NULL,"
     "  created_ms bigint NOT NULL, updated_ms bigint NOT NULL,"
     "  deletion_ms bigint NOT NULL DEFAULT 0, due_ms bigint,"
     "  PRIMARY KEY (kind, name));"
     "CREATE INDEX resources_tenant ON resources(kind, tenant, name);"
     "CREATE INDEX resources_due ON resources(kind, due_ms, name) WHERE due_ms IS NOT NULL;"
     "CREATE TABLE events ("
     "  id bigserial PRIMARY KEY, kind text COLLATE \"C\" NOT NULL,"
     "  name text COLLATE \"C\" NOT NULL, time_ms bigint NOT NULL, type text NOT NULL,"
     "  reason text NOT NULL, message text NOT NULL, resource_version bigint NOT NULL,"
     "  from_phase text, to_phase text);"
     "CREATE INDEX events_object ON events(kind, name, id);"
     "CREATE TABLE audit ("
     "  id bigserial PRIMARY KEY, time_ms bigint NOT NULL,"
     "  \"user\" text NOT NULL, tenant text NOT NULL, operation text NOT NULL,"
     "  kind text COLLATE \"C\" NOT NULL, name text COLLATE \"C\" NOT NULL,"
     "  result text NOT NULL, detail text);"
     "CREATE INDEX audit_object ON audit(kind, name, id);"
     "CREATE TABLE ports (port integer PRIMARY KEY, owner text COLLATE \"C\" NOT NULL);"
     "CREATE INDEX ports_owner ON ports(owner);"
     "INSERT INTO meta(key, value) VALUES('schema_version', '1');"},
    {"cluster tables", /* 2: leader election (src/cluster) and the replicas */
     "CREATE TABLE stamp_leader ("
     "  id int PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL DEFAULT 0,"
     "  holder text NOT NULL DEFAULT '', since timestamptz, renewed_at timestamptz,"
     "  expires_at timestamptz);"
     "INSERT INTO stamp_leader(id) VALUES(1);"
     "CREATE TABLE stamp_replicas ("
     "  id text PRIMARY KEY, address text NOT NULL, started_at timestamptz NOT NULL,"
     "  seen_at timestamptz NOT NULL, version text NOT NULL DEFAULT '');"},
};

#define PG_SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- handle and pool -------------------------------------------------- */

typedef struct pgc {
    PGconn *pg;
    bool prepared[Q_COUNT];
    bool commit_sent; /* this attempt has sent COMMIT */
} pgc;

typedef struct pg_store {
    store base; /* first: a store * is a pg_store * */
    const char **keys, **vals; /* PQconnectdbParams's, NULL-terminated */
    size_t nowned;             /* the first nowned of each are strdup'ed */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool mu_ready, cv_ready;
    pgc *idle[PG_POOL_MAX];
    int nidle, nopen, max;
} pg_store;

static const store_ops pg_ops;

static pg_store *pgs(store *s) {
    assert(s != NULL && s->ops == &pg_ops);
    return (pg_store *)s;
}

/* libpq's messages end in a newline; a serr is one line. */
static const char *pg_msg(const char *m, char *buf, size_t len) {
    if (m == NULL || m[0] == '\0') return "no message from libpq";
    str_copy(buf, len, m); /* a cut message is still a message */
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n') *p = ' ';
    return buf;
}

/* The code of a failed statement: connection trouble and lock or
 * serialisation failures are worth a retry (SE_UNAVAIL, as SQLite's busy). */
static int pg_code(PGconn *pg, const PGresult *res) {
    if (PQstatus(pg) == CONNECTION_BAD) return SE_UNAVAIL;
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (st == NULL) return SE_IO;
    if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0 || strcmp(st, "40001") == 0 ||
        strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0 || strcmp(st, "53300") == 0)
        return SE_UNAVAIL;
    if (strcmp(st, "53200") == 0) return SE_NOMEM;
    return SE_IO;
}

static int pg_fail(pgc *c, const PGresult *res, serr *e, const char *what) {
    char buf[384];
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (m == NULL) m = PQerrorMessage(c->pg);
    return serr_set(e, pg_code(c->pg, res), "store: %s: %s", what, pg_msg(m, buf, sizeof(buf)));
}

/* Notices ("relation exists, skipping") are not errors; library code never
 * logs. */
static void quiet(void *arg, const char *message) {}

static int conn_open(pg_store *s, pgc **out, serr *e) {
    *out = NULL;
    pgc *c = calloc(1, sizeof(*c));
    if (c == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    c->pg = PQconnectdbParams(s->keys, s->vals, 0);
    if (c->pg == NULL) {
        free(c);
        return serr_set(e, SE_NOMEM, "store: out of memory");
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        char buf[384];
        int rc = serr_set(e, SE_UNAVAIL, "store: cannot connect to PostgreSQL: %s",
                          pg_msg(PQerrorMessage(c->pg), buf, sizeof(buf)));
        PQfinish(c->pg);
        free(c);
        return rc;
    }
    PQsetNoticeProcessor(c->pg, quiet, NULL);
    *out = c;
    return 0;
}

static void conn_close(pgc *c) {
    if (c == NULL) return;
    PQfinish(c->pg);
    free(c);
}

/* A reset connection is a new session: its prepared statements are gone. */
static bool conn_reset(pgc *c) {
    PQreset(c->pg);
    memset(c->prepared, 0, sizeof(c->prepared));
    if (PQstatus(c->pg) != CONNECTION_OK) return false;
    PQsetNoticeProcessor(c->pg, quiet, NULL);
    return true;
}

/* A connection for one op: an idle one, a new one while fewer than max
 * are open, or else wait for one to come back. */
static int pool_get(pg_store *s, pgc **out, serr *e) {
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    while (s->nidle == 0 && s->nopen >= s->max) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&s->mu);
            return serr_set(e, SE_UNAVAIL, "store: no database connection free for 30 s");
        }
    }
    if (s->nidle > 0) {
        pgc *c = s->idle[--s->nidle];
        pthread_mutex_unlock(&s->mu);
        /* Broken while idle (the server restarted): one reset, and if the
         * server is still away the op reports it. */
        if (PQstatus(c->pg) == CONNECTION_BAD) conn_reset(c);
        *out = c;
        return 0;
    }
    s->nopen++;
    pthread_mutex_unlock(&s->mu);
    int rc = conn_open(s, out, e); /* not under the lock: it may take seconds */
    if (rc) {
        pthread_mutex_lock(&s->mu);
        s->nopen--;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}

static void pool_put(pg_store *s, pgc *c) {
    /* Every op ends its transaction; one left open would show the next op
     * an old snapshot or hold locks. */
    if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        PGresult *r = PQexec(c->pg, "ROLLBACK");
        PQclear(r);
    }
    pthread_mutex_lock(&s->mu);
    assert(s->nidle < s->max);
    s->idle[s->nidle++] = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- parameters ------------------------------------------------------- */

#define PARAMS_MAX 14

typedef struct params {
    int n;
    const char *v[PARAMS_MAX];
    int len[PARAMS_MAX];
    int fmt[PARAMS_MAX];
    char num[PARAMS_MAX][24];
    char *owned[PARAMS_MAX];
} params;

static void params_free(params *p) {
    for (int i = 0; i < p->n; i++) free(p->owned[i]);
    memset(p, 0, sizeof(*p));
}

static int p_next(params *p) {
    assert(p->n < PARAMS_MAX);
    int i = p->n++;
    p->v[i] = NULL;
    p->len[i] = 0;
    p->fmt[i] = 0;
    p->owned[i] = NULL;
    return i;
}

/* Text of at most max bytes, cut on a character boundary; bytes that are
 * not UTF-8 shown as \xNN (as SQLite's bind_str).  Sent in binary format:
 * the bytes and a length, so the cut needs no copy. */
static void p_str(params *p, const char *v, size_t max) {
    int i = p_next(p);
    if (v == NULL) v = "";
    size_t n = strlen(v);
    p->fmt[i] = 1;
    if (utf8_valid(v, n)) {
        p->v[i] = v;
        p->len[i] = (int)utf8_cut(v, n, max);
        return;
    }
    char *safe = malloc(max + 1);
    if (safe == NULL) {
        p->v[i] = "?";
        p->len[i] = 1;
        return;
    }
    utf8_sanitize(v, n, safe, max + 1);
    p->owned[i] = safe;
    p->v[i] = safe;
    p->len[i] = (int)strlen(safe);
}

/* NULL stays NULL (SQL NULL: "any" for the optional filters); other text
 * is whole, made valid UTF-8 if it is not. */
static void p_opt(params *p, const char *v) {
    if (v == NULL) {
        int i = p_next(p);
        p->fmt[i] = 1;
        return;
    }
    size_t n = strlen(v);
    p_str(p, v, utf8_valid(v, n) ? n : n * 4 + 1);
}

/* Text format (NUL-terminated), for a value PostgreSQL must parse, such as
 * an array literal; v must outlive the statement. */
static void p_txt(params *p, const char *v) {
    int i = p_next(p);
    p->v[i] = v;
}

static void p_i64(params *p, int64_t v) {
    int i = p_next(p);
    int w = snprintf(p->num[i], sizeof(p->num[i]), "%" PRId64, v);
    assert(w > 0 && (size_t)w < sizeof(p->num[i])); /* 20 digits and a sign */
    (void)w;
    p->v[i] = p->num[i];
}

/* due_ms 0 is stored as NULL, so the partial index holds only due rows. */
static void p_due(params *p, int64_t due) {
    if (due > 0) {
        p_i64(p, due);
    } else {
        int i = p_next(p);
        (void)i;
    }
}

/* ---- running statements ----------------------------------------------- */

/* Runs query q with p on c (prepared there on first use).  Returns the
 * result, or NULL with e set. */
static PGresult *q_run(pgc *c, int q, const params *p, serr *e, const char *what) {
    assert(q >= 0 && q < Q_COUNT && queries[q] != NULL);
    char name[16];
    int w = snprintf(name, sizeof(name), "s%d", q);
    assert(w > 0 && (size_t)w < sizeof(name));
    (void)w;
    if (!c->prepared[q]) {
        PGresult *r = PQprepare(c->pg, name, queries[q], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pg_fail(c, r, e, what);
            PQclear(r);
            return NULL;
        }
        PQclear(r);
        c->prepared[q] = true;
    }
    PGresult *r = PQexecPrepared(c->pg, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                                 p ? p->fmt : NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pg_fail(c, r, e, what);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* A statement whose rows do not matter. */
static int q_do(pgc *c, int q, const params *p, serr *e, const char *what) {
    PGresult *r = q_run(c, q, p, e, what);
    if (r == NULL) return e ? e->code : SE_IO;
    PQclear(r);
    return 0;
}

/* Constant SQL with no parameters: BEGIN, COMMIT, the migrations. */
static int exec_const(pgc *c, const char *sql, serr *e, const char *what) {
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) rc = pg_fail(c, r, e, what);
    PQclear(r);
    return rc;
}

static const char *col(const PGresult *r, int row, int c) {
    return PQgetisnull(r, row, c) ? "" : PQgetvalue(r, row, c);
}

static int64_t col_i64(const PGresult *r, int row, int c) {
    int64_t v = 0;
    if (!PQgetisnull(r, row, c)) parse_i64(PQgetvalue(r, row, c), INT64_MIN, INT64_MAX, &v);
    return v;
}

/* A text column as a JSON string (bytes that are not UTF-8 escaped, as in
 * SQLite; PostgreSQL has checked the encoding, so this is a second line). */
static json_t *col_jstr(const PGresult *r, int row, int c) {
    const char *t = col(r, row, c);
    size_t n = strlen(t);
    if (utf8_valid(t, n)) return json_stringn(t, n);
    size_t max = n * 4 + 1;
    char *safe = malloc(max);
    if (safe == NULL) return NULL;
    json_t *j = json_string(utf8_sanitize(t, n, safe, max));
    free(safe);
    return j;
}

/* ---- running an op ---------------------------------------------------- */

typedef int (*op_fn)(pg_store *s, pgc *c, void *arg, serr *e);

static void fenced_count(void) {
    metrics_register(FENCED_METRIC, MT_COUNTER,
                     "Writes refused because this replica's leader epoch was stale");
    metrics_inc(FENCED_METRIC, "", 1);
}

/* Inside the write's transaction, before anything else. */
static int fence_check(pgc *c, int64_t epoch, serr *e) {
    PGresult *r = q_run(c, Q_FENCE, NULL, e, "reading the leader epoch");
    if (r == NULL) return e ? e->code : SE_IO;
    int64_t now = PQntuples(r) == 1 ? col_i64(r, 0, 0) : 0;
    PQclear(r);
    if (now == epoch) return 0;
    fenced_count();
    return serr_set(e, SE_FENCED, "fenced: leader epoch %" PRId64 " is stale (now %" PRId64 ")",
                    epoch, now);
}

static int tx_commit(pgc *c, serr *e) {
    c->commit_sent = true;
    PGresult *r = PQexec(c->pg, "COMMIT");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = pg_fail(c, r, e, "commit");
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) /* an aborted transaction "commits" as ROLLBACK */
        rc = serr_set(e, SE_IO, "store: commit: the transaction was rolled back");
    PQclear(r);
    return rc;
}

/* Runs fn on a pooled connection: a write inside BEGIN .. COMMIT with the
 * fence first; a read as it is.  A broken connection is reset once and fn
 * run again while that is safe (see the top of the file). */
static int run_op(pg_store *s, bool write, op_fn fn, void *arg, serr *e) {
    int64_t fence = write ? store_fence_get() : 0;
    pgc *c;
    int rc = pool_get(s, &c, e);
    if (rc) return rc;
    for (int attempt = 0;; attempt++) {
        c->commit_sent = false;
        rc = 0;
        if (write) {
            rc = exec_const(c, "BEGIN", e, "begin");
            if (rc == 0 && fence != 0) rc = fence_check(c, fence, e);
        }
        if (rc == 0) rc = fn(s, c, arg, e);
        if (write && rc == 0) rc = tx_commit(c, e);
        if (rc && write && PQstatus(c->pg) == CONNECTION_OK &&
            PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            PQclear(PQexec(c->pg, "ROLLBACK"));
        if (rc == 0 || PQstatus(c->pg) != CONNECTION_BAD) break;
        if (c->commit_sent) {
            rc = serr_set(e, SE_UNAVAIL,
                          "store: the connection to PostgreSQL broke during commit: the write "
                          "may or may not have been applied");
            break;
        }
        if (attempt > 0) break;
        if (!conn_reset(c)) break; /* e holds why the statement failed */
    }
    pool_put(s, c);
    return rc;
}

/* ---- resources from rows (the encoding is store_common.c's) ----------- */

static int load_member(const PGresult *res, int row, int c, bool array, json_t **out, serr *e) {
    /* json_load_text: out of memory is SE_NOMEM, never a byte quietly lost */
    const char *text = col(res, row, c);
    json_t *v = NULL;
    serr le = {0};
    int lrc = json_load_text(text, strlen(text), JSON_ALLOW_NUL, &v, &le);
    if (lrc == SE_NOMEM) {
        *out = NULL;
        return serr_set(e, SE_NOMEM, "store: out of memory reading %s %s", col(res, row, 0), col(res, row, 1));
    }
    if (v == NULL || (array ? !json_is_array(v) : !json_is_object(v))) {
        json_decref(v);
        *out = NULL;
        return serr_set(e, SE_IO, "store: corrupt %s column in %s %s", PQfname(res, c),
                        col(res, row, 0), col(res, row, 1));
    }
    *out = v;
    return 0;
}

/* Fills r (treated as uninitialised) from a row selected as RES_COLS; on
 * failure r holds no allocations. */
static int row_to_resource(const PGresult *res, int row, resource *r, serr *e) {
    memset(r, 0, sizeof(*r));
    if (!str_copy(r->kind, sizeof(r->kind), col(res, row, 0)) ||
        !str_copy(r->name, sizeof(r->name), col(res, row, 1)) ||
        !str_copy(r->tenant, sizeof(r->tenant), col(res, row, 2)))
        return serr_set(e, SE_IO,
                        "store: corrupt row: kind, name or tenant too long in %.64s %.128s",
                        col(res, row, 0), col(res, row, 1));
    int rc;
    if ((rc = load_member(res, row, 3, false, &r->labels, e)) ||
        (rc = load_member(res, row, 4, false, &r->annotations, e)) ||
        (rc = load_member(res, row, 5, false, &r->spec, e)) ||
        (rc = load_member(res, row, 6, false, &r->status, e)) ||
        (rc = load_member(res, row, 7, true, &r->finalizers, e))) {
        resource_free(r);
        return rc;
    }
    r->resource_version = col_i64(res, row, 8);
    r->generation = col_i64(res, row, 9);
    r->created_ms = col_i64(res, row, 10);
    r->updated_ms = col_i64(res, row, 11);
    r->deletion_ms = col_i64(res, row, 12);
    r->due_ms = col_i64(res, row, 13); /* NULL reads as 0 */
    return 0;
}

/* ---- events (internal) ------------------------------------------------ */

/* After LOCK_EVENTS, held to the commit: ids are visible in id order. */
static int event_insert(pgc *c, const char *kind, const char *name, int64_t t, int64_t rv,
                        const store_event *ev, serr *e) {
    int rc = q_do(c, Q_EV_LOCK, NULL, e, "recording event");
    if (rc) return rc;
    params p = {0};
    p_str(&p, kind, RES_KIND_MAX);
    p_str(&p, name, RES_NAME_MAX);
    p_i64(&p, t);
    p_str(&p, ev->type ? ev->type : "Normal", STORE_WORD_MAX);
    p_str(&p, ev->reason, STORE_WORD_MAX);
    p_str(&p, ev->message, STORE_TEXT_MAX);
    p_i64(&p, rv);
    if (ev->from) p_str(&p, ev->from, STORE_WORD_MAX);
    else p_opt(&p, NULL);
    if (ev->to) p_str(&p, ev->to, STORE_WORD_MAX);
    else p_opt(&p, NULL);
    rc = q_do(c, Q_EV_INSERT, &p, e, "recording event");
    params_free(&p);
    return rc;
}

/* The stored version of (kind, name), its row locked to the end of the
 * transaction.  With check set, a version other than want is SE_CONFLICT.
 * When new_spec is given, *spec_changed says whether it differs. */
static int row_check(pgc *c, const char *kind, const char *name, bool check, int64_t want,
                     const char *new_spec, int64_t *rv, int64_t *gen, bool *spec_changed,
                     serr *e) {
    params p = {0};
    p_str(&p, kind, RES_KIND_MAX);
    p_str(&p, name, RES_NAME_MAX);
    PGresult *r = q_run(c, Q_RES_CHECK, &p, e, "reading resource");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    int rc = 0;
    if (PQntuples(r) == 0) {
        rc = store_err_notfound(e, kind, name);
    } else {
        *rv = col_i64(r, 0, 0);
        if (gen) *gen = col_i64(r, 0, 1);
        if (new_spec && spec_changed) *spec_changed = strcmp(col(r, 0, 2), new_spec) != 0;
        if (check && *rv != want) {
            char k[RES_KIND_MAX];
            rc = serr_set(e, SE_CONFLICT,
                          "%s %s was modified (resourceVersion %lld, you had %lld)",
                          store_kind_lower(kind, k, sizeof(k)), name, (long long)*rv, (long long)want);
        }
    }
    PQclear(r);
    return rc;
}

/* ---- resources -------------------------------------------------------- */

typedef struct write_ctx {
    resource *r;
    const store_event *ev;
    store_res_text t;
    int64_t now, rv, gen;
} write_ctx;

static int op_create(pg_store *s, pgc *c, void *arg, serr *e) {
    write_ctx *w = arg;
    resource *r = w->r;
    params p = {0};
    p_str(&p, r->kind, RES_KIND_MAX);
    p_str(&p, r->name, RES_NAME_MAX);
    p_str(&p, r->tenant, RES_TENANT_MAX);
    p_opt(&p, w->t.labels);
    p_opt(&p, w->t.annotations);
    p_opt(&p, w->t.spec);
    p_opt(&p, w->t.status);
    p_opt(&p, w->t.finalizers);
    p_i64(&p, w->now);
    p_i64(&p, w->now);
    p_i64(&p, r->deletion_ms);
    p_due(&p, r->due_ms);
    PGresult *res = q_run(c, Q_RES_INSERT, &p, e, "creating resource");
    params_free(&p);
    if (res == NULL) return e ? e->code : SE_IO;
    bool inserted = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!inserted) {
        char k[RES_KIND_MAX];
        return serr_set(e, SE_EXISTS, "%s %s already exists", store_kind_lower(r->kind, k, sizeof(k)),
                        r->name);
    }
    if (w->ev) return event_insert(c, r->kind, r->name, w->now, 1, w->ev, e);
    return 0;
}

static int pg_create(store *base, resource *r, const store_event *ev, serr *e) {
    write_ctx w = {.r = r, .ev = ev, .now = now_ms()};
    int rc = store_res_encode(r, &w.t, e);
    if (rc) return rc;
    rc = run_op(pgs(base), true, op_create, &w, e);
    store_res_text_free(&w.t);
    if (rc == 0) {
        r->resource_version = 1;
        r->generation = 1;
        r->created_ms = r->updated_ms = w.now;
    }
    return rc;
}

typedef struct get_ctx {
    const char *kind, *name;
    resource *out;
} get_ctx;

static int op_get(pg_store *s, pgc *c, void *arg, serr *e) {
    get_ctx *g = arg;
    params p = {0};
    p_str(&p, g->kind, RES_KIND_MAX);
    p_str(&p, g->name, RES_NAME_MAX);
    PGresult *r = q_run(c, Q_RES_GET, &p, e, "reading resource");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    int rc = PQntuples(r) == 1 ? row_to_resource(r, 0, g->out, e)
                               : store_err_notfound(e, g->kind, g->name);
    PQclear(r);
    return rc;
}

static int pg_get(store *base, const char *kind, const char *name, resource *out, serr *e) {
    get_ctx g = {kind, name, out};
    return run_op(pgs(base), false, op_get, &g, e);
}

static int op_update(pg_store *s, pgc *c, void *arg, serr *e) {
    write_ctx *w = arg;
    resource *r = w->r;
    bool changed = false;
    int rc = row_check(c, r->kind, r->name, true, r->resource_version, w->t.spec, &w->rv, &w->gen,
                       &changed, e);
    if (rc) return rc;
    if (changed) w->gen++;
    params p = {0};
    p_opt(&p, w->t.labels);
    p_opt(&p, w->t.annotations);
    p_opt(&p, w->t.spec);
    p_opt(&p, w->t.status);
    p_opt(&p, w->t.finalizers);
    p_i64(&p, w->gen);
    p_i64(&p, w->now);
    p_i64(&p, r->deletion_ms);
    p_due(&p, r->due_ms);
    p_str(&p, r->kind, RES_KIND_MAX);
    p_str(&p, r->name, RES_NAME_MAX);
    p_i64(&p, w->rv);
    PGresult *res = q_run(c, Q_RES_UPDATE, &p, e, "updating resource");
    params_free(&p);
    if (res == NULL) return e ? e->code : SE_IO;
    bool one = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    /* Cannot happen with the row locked; refuse rather than report a write
     * that did not land. */
    if (!one) return serr_set(e, SE_CONFLICT, "%s %s changed during update", r->kind, r->name);
    if (w->ev) return event_insert(c, r->kind, r->name, w->now, w->rv + 1, w->ev, e);
    return 0;
}

static int pg_update(store *base, resource *r, const store_event *ev, serr *e) {
    write_ctx w = {.r = r, .ev = ev, .now = now_ms()};
    int rc = store_res_encode(r, &w.t, e);
    if (rc) return rc;
    rc = run_op(pgs(base), true, op_update, &w, e);
    store_res_text_free(&w.t);
    if (rc == 0) {
        r->resource_version = w.rv + 1;
        r->generation = w.gen;
        r->updated_ms = w.now;
    }
    return rc;
}

typedef struct remove_ctx {
    const char *kind, *name;
    int64_t rv;
} remove_ctx;

static int op_remove(pg_store *s, pgc *c, void *arg, serr *e) {
    remove_ctx *d = arg;
    int64_t cur = 0;
    int rc = row_check(c, d->kind, d->name, d->rv != 0, d->rv, NULL, &cur, NULL, NULL, e);
    if (rc) return rc;
    params p = {0};
    p_str(&p, d->kind, RES_KIND_MAX);
    p_str(&p, d->name, RES_NAME_MAX);
    rc = q_do(c, Q_RES_DELETE, &p, e, "deleting resource");
    params_free(&p);
    return rc;
}

static int pg_remove(store *base, const char *kind, const char *name, int64_t rv, serr *e) {
    remove_ctx d = {kind, name, rv};
    return run_op(pgs(base), true, op_remove, &d, e);
}

typedef struct page_ctx {
    const char *kind, *tenant, *after;
    int64_t after_ms, before_ms;
    bool due;
    resource *batch;
    int max, *n;
} page_ctx;

static int op_page(pg_store *s, pgc *c, void *arg, serr *e) {
    page_ctx *g = arg;
    params p = {0};
    p_str(&p, g->kind, RES_KIND_MAX);
    if (g->due) {
        p_i64(&p, g->before_ms);
        p_i64(&p, g->max);
        p_i64(&p, g->after_ms);
        p_str(&p, g->after, RES_NAME_MAX);
    } else {
        if (g->tenant) p_str(&p, g->tenant, RES_TENANT_MAX);
        else p_opt(&p, NULL);
        p_str(&p, g->after, RES_NAME_MAX);
        p_i64(&p, g->max);
    }
    PGresult *r = q_run(c, g->due ? Q_RES_DUE : Q_RES_PAGE, &p, e,
                        g->due ? "listing due" : "listing resources");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    int rows = PQntuples(r), rc = 0;
    assert(rows <= g->max);
    for (int i = 0; i < rows && i < g->max && rc == 0; i++)
        if ((rc = row_to_resource(r, i, &g->batch[*g->n], e)) == 0) (*g->n)++;
    PQclear(r);
    if (rc) {
        for (int i = 0; i < *g->n; i++) resource_free(&g->batch[i]);
        *g->n = 0;
    }
    return rc;
}

static int pg_list_page(store *base, const char *kind, const char *tenant, const char *after,
                        resource *batch, int max, int *n, serr *e) {
    *n = 0;
    page_ctx g = {.kind = kind, .tenant = tenant, .after = after, .batch = batch, .max = max,
                  .n = n};
    return run_op(pgs(base), false, op_page, &g, e);
}

static int pg_list_due_page(store *base, const char *kind, int64_t after_ms,
                            const char *after_name, int64_t before_ms, resource *batch, int max,
                            int *n, serr *e) {
    *n = 0;
    page_ctx g = {.kind = kind, .after = after_name, .after_ms = after_ms, .before_ms = before_ms,
                  .due = true, .batch = batch, .max = max, .n = n};
    return run_op(pgs(base), false, op_page, &g, e);
}

/* ---- events ----------------------------------------------------------- */

typedef struct ev_ctx {
    const char *kind, *name, *tenant;
    const store_event *ev;
    int64_t after, upto;
    int limit;
    json_t *arr;
} ev_ctx;

static int op_event_add(pg_store *s, pgc *c, void *arg, serr *e) {
    ev_ctx *x = arg;
    /* An event may outlive its resource ("Purged"): a missing row records
     * resourceVersion 0.  The row is share-locked, so no write lands
     * between the read and the insert. */
    params p = {0};
    p_str(&p, x->kind, RES_KIND_MAX);
    p_str(&p, x->name, RES_NAME_MAX);
    PGresult *r = q_run(c, Q_RES_VERSION, &p, e, "reading resource");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    int64_t rv = PQntuples(r) == 1 ? col_i64(r, 0, 0) : 0;
    PQclear(r);
    return event_insert(c, x->kind, x->name, now_ms(), rv, x->ev, e);
}

static int pg_event_add(store *base, const char *kind, const char *name, const store_event *ev,
                        serr *e) {
    ev_ctx x = {.kind = kind, .name = name, .ev = ev};
    return run_op(pgs(base), true, op_event_add, &x, e);
}

static int push(json_t *arr, json_t *obj) {
    if (obj == NULL || json_array_append_new(arr, obj) != 0) return SE_NOMEM;
    return 0;
}

static void add_phases(json_t *ev, const PGresult *r, int row, int c) {
    if (!PQgetisnull(r, row, c)) json_object_set_new(ev, "from", col_jstr(r, row, c));
    if (!PQgetisnull(r, row, c + 1)) json_object_set_new(ev, "to", col_jstr(r, row, c + 1));
}

/* A fresh array in x->arr for this attempt (a retry starts over). */
static int fresh_array(ev_ctx *x, serr *e) {
    json_decref(x->arr);
    x->arr = json_array();
    return x->arr ? 0 : serr_set(e, SE_NOMEM, "store: out of memory");
}

static int op_events(pg_store *s, pgc *c, void *arg, serr *e) {
    ev_ctx *x = arg;
    int rc = fresh_array(x, e);
    if (rc) return rc;
    params p = {0};
    p_str(&p, x->kind, RES_KIND_MAX);
    p_str(&p, x->name, RES_NAME_MAX);
    p_i64(&p, store_clamp_limit(x->limit));
    PGresult *r = q_run(c, Q_EV_LIST, &p, e, "reading events");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    for (int i = 0; i < PQntuples(r); i++) {
        char ts[STORE_TIME_MS_LEN];
        int64_t t = col_i64(r, i, 0);
        json_t *ev = json_pack("{s:s, s:I, s:o, s:o, s:o, s:I}", "time",
                               store_fmt_time_ms(t, ts, sizeof(ts)), "timeMs", (json_int_t)t, "type",
                               col_jstr(r, i, 1), "reason", col_jstr(r, i, 2), "message",
                               col_jstr(r, i, 3), "resourceVersion",
                               (json_int_t)col_i64(r, i, 4));
        if (ev) add_phases(ev, r, i, 5);
        if (push(x->arr, ev) != 0) {
            rc = serr_set(e, SE_NOMEM, "store: out of memory");
            break;
        }
    }
    PQclear(r);
    return rc;
}

static int pg_events(store *base, const char *kind, const char *name, int limit, json_t **out,
                     serr *e) {
    ev_ctx x = {.kind = kind, .name = name, .limit = limit};
    int rc = run_op(pgs(base), false, op_events, &x, e);
    if (rc) {
        json_decref(x.arr);
        return rc;
    }
    *out = x.arr;
    return 0;
}

static int op_last_id(pg_store *s, pgc *c, void *arg, serr *e) {
    PGresult *r = q_run(c, Q_EV_LAST, NULL, e, "reading events");
    if (r == NULL) return e ? e->code : SE_IO;
    *(int64_t *)arg = PQntuples(r) == 1 ? col_i64(r, 0, 0) : 0;
    PQclear(r);
    return 0;
}

static int pg_events_last_id(store *base, int64_t *id, serr *e) {
    return run_op(pgs(base), false, op_last_id, id, e);
}

static int op_events_after(pg_store *s, pgc *c, void *arg, serr *e) {
    ev_ctx *x = arg;
    int rc = fresh_array(x, e);
    if (rc) return rc;
    params p = {0};
    p_i64(&p, x->after);
    if (x->kind) p_str(&p, x->kind, RES_KIND_MAX);
    else p_opt(&p, NULL);
    if (x->name) p_str(&p, x->name, RES_NAME_MAX);
    else p_opt(&p, NULL);
    if (x->tenant) p_str(&p, x->tenant, RES_TENANT_MAX);
    else p_opt(&p, NULL);
    p_i64(&p, x->limit);
    PGresult *r = q_run(c, Q_EV_AFTER, &p, e, "reading events");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    int n = 0;
    x->upto = x->after;
    for (int i = 0; i < PQntuples(r); i++) {
        x->upto = col_i64(r, i, 0);
        if (PQgetisnull(r, i, 1)) continue; /* nothing matched: upto alone */
        char ts[STORE_TIME_MS_LEN];
        int64_t t = col_i64(r, i, 2);
        json_t *ev = json_pack("{s:I,s:s,s:o,s:o,s:o,s:o,s:o,s:I}", "id",
                               (json_int_t)col_i64(r, i, 1), "time",
                               store_fmt_time_ms(t, ts, sizeof(ts)), "kind", col_jstr(r, i, 3), "name",
                               col_jstr(r, i, 4), "type", col_jstr(r, i, 5), "reason",
                               col_jstr(r, i, 6), "message", col_jstr(r, i, 7), "resourceVersion",
                               (json_int_t)col_i64(r, i, 8));
        if (ev) add_phases(ev, r, i, 9);
        if (push(x->arr, ev) != 0) {
            rc = serr_set(e, SE_NOMEM, "store: out of memory");
            break;
        }
        n++;
    }
    PQclear(r);
    /* A full batch: the caller resumes after its last row, not upto. */
    if (rc == 0 && n == x->limit && n > 0)
        x->upto = json_integer_value(json_object_get(json_array_get(x->arr, (size_t)n - 1), "id"));
    return rc;
}

static int pg_events_after(store *base, const char *kind, const char *name, const char *tenant,
                           int64_t after, int limit, json_t **out, int64_t *upto, serr *e) {
    ev_ctx x = {.kind = kind, .name = name, .tenant = tenant, .after = after, .limit = limit};
    int rc = run_op(pgs(base), false, op_events_after, &x, e);
    if (rc) {
        json_decref(x.arr);
        return rc;
    }
    *out = x.arr;
    *upto = x.upto;
    return 0;
}

/* ---- audit ------------------------------------------------------------ */

typedef struct audit_ctx {
    const store_audit *a;
    const char *detail;
    const char *kind, *name;
    int limit;
    json_t *arr;
} audit_ctx;

static int op_audit_add(pg_store *s, pgc *c, void *arg, serr *e) {
    audit_ctx *x = arg;
    const store_audit *a = x->a;
    params p = {0};
    p_i64(&p, now_ms());
    p_str(&p, a->user, STORE_WORD_MAX);
    p_str(&p, a->tenant, STORE_WORD_MAX);
    p_str(&p, a->operation, STORE_WORD_MAX);
    p_str(&p, a->kind, STORE_WORD_MAX);
    p_str(&p, a->name, STORE_WORD_MAX);
    p_str(&p, a->result, STORE_TEXT_MAX);
    p_opt(&p, x->detail);
    int rc = q_do(c, Q_AUDIT_INSERT, &p, e, "recording audit");
    params_free(&p);
    return rc;
}

static int pg_audit_add(store *base, const store_audit *a, serr *e) {
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
    audit_ctx x = {.a = a, .detail = detail};
    int rc = run_op(pgs(base), true, op_audit_add, &x, e);
    free(detail);
    return rc;
}

static int op_audit_list(pg_store *s, pgc *c, void *arg, serr *e) {
    audit_ctx *x = arg;
    json_decref(x->arr);
    x->arr = json_array();
    if (x->arr == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    params p = {0};
    p_opt(&p, x->kind);
    p_opt(&p, x->name);
    p_i64(&p, store_clamp_limit(x->limit));
    PGresult *r = q_run(c, Q_AUDIT_LIST, &p, e, "reading audit");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    int rc = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        char ts[STORE_TIME_MS_LEN];
        json_t *detail = NULL;
        if (!PQgetisnull(r, i, 7)) {
            json_error_t je;
            detail = json_loads(col(r, i, 7), 0, &je);
        }
        if (detail == NULL) detail = json_null();
        json_t *row = json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "time",
                                store_fmt_time_ms(col_i64(r, i, 0), ts, sizeof(ts)), "user",
                                col_jstr(r, i, 1), "tenant", col_jstr(r, i, 2), "operation",
                                col_jstr(r, i, 3), "kind", col_jstr(r, i, 4), "name",
                                col_jstr(r, i, 5), "result", col_jstr(r, i, 6), "detail", detail);
        if (push(x->arr, row) != 0) {
            rc = serr_set(e, SE_NOMEM, "store: out of memory");
            break;
        }
    }
    PQclear(r);
    return rc;
}

static int pg_audit_list(store *base, const char *kind, const char *name, int limit,
                         json_t **out, serr *e) {
    audit_ctx x = {.kind = kind, .name = name, .limit = limit};
    int rc = run_op(pgs(base), false, op_audit_list, &x, e);
    if (rc) {
        json_decref(x.arr);
        return rc;
    }
    *out = x.arr;
    return 0;
}

/* ---- meta ------------------------------------------------------------- */

typedef struct meta_ctx {
    const char *key, *val;
    char *got;
} meta_ctx;

static int op_meta_get(pg_store *s, pgc *c, void *arg, serr *e) {
    meta_ctx *m = arg;
    params p = {0};
    p_opt(&p, m->key);
    PGresult *r = q_run(c, Q_META_GET, &p, e, "reading metadata");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    int rc = 0;
    if (PQntuples(r) == 1) {
        m->got = strdup(col(r, 0, 0));
        if (m->got == NULL) rc = serr_set(e, SE_NOMEM, "store: out of memory");
    } else {
        rc = serr_set(e, SE_NOTFOUND, "metadata %s not found", m->key);
    }
    PQclear(r);
    return rc;
}

static int pg_meta_get(store *base, const char *key, char **val, serr *e) {
    meta_ctx m = {.key = key};
    int rc = run_op(pgs(base), false, op_meta_get, &m, e);
    if (rc == 0) *val = m.got;
    return rc;
}

static int op_meta_set(pg_store *s, pgc *c, void *arg, serr *e) {
    meta_ctx *m = arg;
    params p = {0};
    p_opt(&p, m->key);
    p_opt(&p, m->val);
    int rc = q_do(c, Q_META_SET, &p, e, "writing metadata");
    params_free(&p);
    return rc;
}

static int pg_meta_set(store *base, const char *key, const char *val, serr *e) {
    size_t n = strlen(val);
    if (n > STORE_META_VAL_MAX)
        return serr_set(e, SE_TOOBIG, "store: metadata %s larger than %d bytes", key,
                        STORE_META_VAL_MAX);
    /* PostgreSQL text is checked against the encoding: a value that is not
     * UTF-8 is refused rather than silently changed. */
    if (!utf8_valid(val, n))
        return serr_set(e, SE_INVAL, "store: metadata %s is not UTF-8 text", key);
    meta_ctx m = {.key = key, .val = val};
    return run_op(pgs(base), true, op_meta_set, &m, e);
}

/* Insert unless there, then read what is there: replicas starting at once
 * all end with the first one's value. */
static int op_meta_init(pg_store *s, pgc *c, void *arg, serr *e) {
    meta_ctx *m = arg;
    params p = {0};
    p_opt(&p, m->key);
    p_opt(&p, m->val);
    int rc = q_do(c, Q_META_INIT, &p, e, "writing metadata");
    params_free(&p);
    return rc ? rc : op_meta_get(s, c, arg, e);
}

static int pg_meta_init(store *base, const char *key, const char *val, char **stored, serr *e) {
    size_t n = strlen(val);
    if (n > STORE_META_VAL_MAX || !utf8_valid(val, n))
        return serr_set(e, SE_INVAL, "store: metadata %s too large or not UTF-8", key);
    meta_ctx m = {.key = key, .val = val};
    int rc = run_op(pgs(base), true, op_meta_init, &m, e);
    if (rc == 0) *stored = m.got;
    return rc;
}

/* ---- ports ------------------------------------------------------------ */

typedef struct ports_ctx {
    const char *owner;
    int n, lo, hi;
    store_port_ok_fn ok;
    void *arg;
    int *got; /* n */
    int *held, max, count;
} ports_ctx;

static int ports_held(pgc *c, const char *owner, int *got, int max, int *count, serr *e) {
    *count = 0;
    params p = {0};
    p_opt(&p, owner);
    PGresult *r = q_run(c, Q_PORTS_HELD, &p, e, "reading ports");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    for (int i = 0; i < PQntuples(r); i++) {
        if (*count < max) got[*count] = (int)col_i64(r, i, 0);
        (*count)++;
    }
    PQclear(r);
    return 0;
}

static int ports_delete(pgc *c, const char *owner, serr *e) {
    params p = {0};
    p_opt(&p, owner);
    int rc = q_do(c, Q_PORTS_DELETE, &p, e, "releasing ports");
    params_free(&p);
    return rc;
}

/* Walks lo..hi beside the sorted leased ports in that range; the veto runs
 * here, inside the lease's transaction. */
static int ports_find(pgc *c, ports_ctx *x, int *found, serr *e) {
    *found = 0;
    params p = {0};
    p_i64(&p, x->lo);
    p_i64(&p, x->hi);
    PGresult *r = q_run(c, Q_PORTS_FIND, &p, e, "reading ports");
    params_free(&p);
    if (r == NULL) return e ? e->code : SE_IO;
    int rows = PQntuples(r), i = 0;
    for (int port = x->lo; port <= x->hi && *found < x->n; port++) {
        while (i < rows && col_i64(r, i, 0) < port) i++;
        if (i < rows && col_i64(r, i, 0) == port) continue;
        if (x->ok && !x->ok(port, x->arg)) continue;
        x->got[(*found)++] = port;
    }
    PQclear(r);
    return 0;
}

static int op_ports_lease(pg_store *s, pgc *c, void *arg, serr *e) {
    ports_ctx *x = arg;
    int count = 0, found = 0;
    int rc = q_do(c, Q_PORTS_LOCK, NULL, e, "leasing ports");
    if (rc) return rc;
    if ((rc = ports_held(c, x->owner, x->got, x->n, &count, e)) != 0) return rc;
    /* A lease, once taken, stays even if the configured range moved. */
    if (count == x->n) return 0;
    if (count > 0 && (rc = ports_delete(c, x->owner, e)) != 0) return rc;
    if ((rc = ports_find(c, x, &found, e)) != 0) return rc;
    if (found < x->n)
        return serr_set(e, SE_LIMIT, "%s: only %d of %d ports free in %d-%d", x->owner, found,
                        x->n, x->lo, x->hi);
    /* "{p1,p2,...}": at most STORE_PORTS_MAX numbers of 5 digits. */
    size_t cap = (size_t)x->n * 7 + 3;
    char *arr = malloc(cap);
    if (arr == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    size_t off = 0;
    arr[off++] = '{';
    for (int i = 0; i < x->n; i++) {
        int w = snprintf(arr + off, cap - off, "%s%d", i ? "," : "", x->got[i]);
        assert(w > 0 && (size_t)w < cap - off);
        off += (size_t)w;
    }
    arr[off++] = '}';
    arr[off] = '\0';
    params p = {0};
    p_txt(&p, arr);
    p_opt(&p, x->owner);
    rc = q_do(c, Q_PORTS_INSERT, &p, e, "leasing port");
    params_free(&p);
    free(arr);
    return rc;
}

static int pg_ports_lease(store *base, const char *owner, int n, int lo, int hi,
                          store_port_ok_fn ok, void *arg, int *ports, serr *e) {
    ports_ctx x = {.owner = owner, .n = n, .lo = lo, .hi = hi, .ok = ok, .arg = arg};
    x.got = calloc((size_t)n, sizeof(*x.got));
    if (x.got == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    int rc = run_op(pgs(base), true, op_ports_lease, &x, e);
    if (rc == 0) memcpy(ports, x.got, (size_t)n * sizeof(*x.got));
    free(x.got);
    return rc;
}

static int op_ports_release(pg_store *s, pgc *c, void *arg, serr *e) {
    return ports_delete(c, ((ports_ctx *)arg)->owner, e);
}

static int pg_ports_release(store *base, const char *owner, serr *e) {
    ports_ctx x = {.owner = owner};
    return run_op(pgs(base), true, op_ports_release, &x, e);
}

static int op_ports_held(pg_store *s, pgc *c, void *arg, serr *e) {
    ports_ctx *x = arg;
    return ports_held(c, x->owner, x->held, x->max, &x->count, e);
}

static int pg_ports_held(store *base, const char *owner, int *ports, int max, int *count,
                         serr *e) {
    ports_ctx x = {.owner = owner, .held = ports, .max = max};
    int rc = run_op(pgs(base), false, op_ports_held, &x, e);
    *count = rc == 0 ? x.count : 0;
    return rc;
}

/* ---- notify ----------------------------------------------------------- */

typedef struct notify_ctx {
    const char *kind, *name;
} notify_ctx;

static int op_notify(pg_store *s, pgc *c, void *arg, serr *e) {
    notify_ctx *x = arg;
    /* kind and name are checked shorter than 64 and 128 bytes: far below
     * NOTIFY's 8000. */
    char payload[RES_KIND_MAX + RES_NAME_MAX + 2];
    int w = snprintf(payload, sizeof(payload), "%s/%s", x->kind, x->name);
    assert(w > 0 && (size_t)w < sizeof(payload));
    (void)w;
    params p = {0};
    p_str(&p, payload, sizeof(payload));
    int rc = q_do(c, Q_NOTIFY, &p, e, "notify");
    params_free(&p);
    return rc;
}

/* In autocommit: delivered at once.  Not a write of the store, so not
 * fenced (a wake-up is harmless). */
static int pg_notify(store *base, const char *kind, const char *name, serr *e) {
    notify_ctx x = {kind, name};
    return run_op(pgs(base), false, op_notify, &x, e);
}

/* ---- open / close ----------------------------------------------------- */

/* One migration, if still missing, in its own transaction under the
 * migration lock. */
static int migrate_one(pgc *c, int n, serr *e) {
    const migration *m = &migrations[n - 1];
    int rc = exec_const(c, "BEGIN", e, "begin");
    if (rc) return rc;
    rc = exec_const(c, "SELECT pg_advisory_xact_lock(" LOCK_MIGRATE ")", e, "migration lock");
    if (rc == 0)
        rc = exec_const(c,
                        "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY,"
                        " what text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                        e, "schema_migrations");
    int64_t have = 0;
    if (rc == 0) {
        PGresult *r = PQexec(c->pg, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) rc = pg_fail(c, r, e, "schema_migrations");
        else have = col_i64(r, 0, 0);
        PQclear(r);
    }
    if (rc == 0 && have > PG_SCHEMA_VERSION)
        rc = serr_set(e, SE_INVAL, "store: the database has schema version %lld, this program knows %d",
                      (long long)have, PG_SCHEMA_VERSION);
    if (rc == 0 && have < n) {
        if ((rc = exec_const(c, m->sql, e, m->what)) == 0) {
            params p = {0};
            p_i64(&p, n);
            p_opt(&p, m->what);
            PGresult *r = PQexecParams(c->pg,
                                       "INSERT INTO schema_migrations(version, what) "
                                       "VALUES($1::int, $2)",
                                       p.n, NULL, p.v, p.len, p.fmt, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                rc = pg_fail(c, r, e, "recording the schema version");
            PQclear(r);
            params_free(&p);
        }
    }
    if (rc == 0) rc = tx_commit(c, e);
    if (rc && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    return rc;
}

static int migrate(pg_store *s, serr *e) {
    pgc *c;
    int rc = pool_get(s, &c, e);
    if (rc) return rc;
    for (int n = 1; n <= PG_SCHEMA_VERSION && rc == 0; n++) rc = migrate_one(c, n, e);
    pool_put(s, c);
    return rc;
}

/* The connection's parameters: the URL's, then what the contract adds when
 * the URL does not say (keepalives and tcp_user_timeout, so a dead peer's
 * session ends in seconds). */
static int conninfo(pg_store *s, const char *url, serr *e) {
    static const char *const defaults[][2] = {
        {"keepalives", "1"},          {"keepalives_idle", "5"},
        {"keepalives_interval", "2"}, {"keepalives_count", "3"},
        {"tcp_user_timeout", "10000"}, {"connect_timeout", "5"},
        {"client_encoding", "UTF8"},  {"application_name", "stampd"},
        /* A session whose process stopped (SIGSTOP, a frozen VM) inside a
         * transaction would hold its locks (the leader row it fenced on,
         * the event lock) and with them every other replica's writes and
         * elections: the server ends it.  No statement of the store runs
         * for 30 s. */
        {"options", "-c idle_in_transaction_session_timeout=3000 -c statement_timeout=30000"},
    };
    enum { NDEF = sizeof(defaults) / sizeof(defaults[0]) };
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &err);
    if (opts == NULL) {
        /* libpq's text may quote part of the URL, which may hold a
         * password: not repeated. */
        PQfreemem(err);
        return serr_set(e, SE_INVAL, "store: the PostgreSQL URL is not valid (libpq refused it)");
    }
    size_t n = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) n++;
    s->keys = calloc(n + NDEF + 1, sizeof(*s->keys));
    s->vals = calloc(n + NDEF + 1, sizeof(*s->vals));
    int rc = 0;
    if (s->keys == NULL || s->vals == NULL) {
        rc = serr_set(e, SE_NOMEM, "store: out of memory");
        goto out;
    }
    size_t k = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (o->val == NULL) continue;
        s->keys[k] = strdup(o->keyword);
        s->vals[k] = strdup(o->val);
        if (s->keys[k] == NULL || s->vals[k] == NULL) {
            free((char *)s->keys[k]);
            free((char *)s->vals[k]);
            s->keys[k] = s->vals[k] = NULL;
            rc = serr_set(e, SE_NOMEM, "store: out of memory");
            goto out;
        }
        k++;
        s->nowned = k;
    }
    for (int d = 0; d < NDEF; d++) {
        bool given = false;
        for (size_t i = 0; i < k; i++) given |= strcmp(s->keys[i], defaults[d][0]) == 0;
        if (given) continue;
        /* Constants: not freed (close frees only what it strdup'ed). */
        s->keys[k] = defaults[d][0];
        s->vals[k] = defaults[d][1];
        k++;
    }
out:
    PQconninfoFree(opts);
    return rc;
}

static void pg_close(store *base);

int store_open_pg(const char *url, store **out, serr *e) {
    *out = NULL;
    if (url == NULL || url[0] == '\0') return serr_set(e, SE_INVAL, "store: empty URL");
    pg_store *s = calloc(1, sizeof(*s));
    if (s == NULL) return serr_set(e, SE_NOMEM, "store: out of memory");
    s->base.ops = &pg_ops;
    s->max = PG_POOL_MAX;
    int rc;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        rc = serr_set(e, SE_INTERNAL, "store: cannot create mutex");
        goto fail;
    }
    s->mu_ready = true;
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        rc = serr_set(e, SE_INTERNAL, "store: cannot create condition variable");
        goto fail;
    }
    s->cv_ready = true;
    if ((rc = conninfo(s, url, e)) != 0) goto fail;
    if ((rc = migrate(s, e)) != 0) goto fail;
    metrics_register(FENCED_METRIC, MT_COUNTER,
                     "Writes refused because this replica's leader epoch was stale");
    metrics_inc(FENCED_METRIC, "", 0); /* 0 from the start, not absent */
    *out = &s->base;
    return 0;
fail:
    pg_close(&s->base);
    return rc;
}

static void pg_close(store *base) {
    pg_store *s = (pg_store *)base;
    assert(s->nidle == s->nopen); /* no op in flight */
    for (int i = 0; i < s->nidle; i++) conn_close(s->idle[i]);
    if (s->keys) {
        for (size_t i = 0; i < s->nowned; i++) {
            free((char *)s->keys[i]);
            free((char *)s->vals[i]);
        }
    }
    free(s->keys);
    free(s->vals);
    if (s->cv_ready) pthread_cond_destroy(&s->cv);
    if (s->mu_ready) pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- the table -------------------------------------------------------- */

static const store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .create = pg_create,
    .get = pg_get,
    .update = pg_update,
    .remove = pg_remove,
    .list_page = pg_list_page,
    .list_due_page = pg_list_due_page,
    .event_add = pg_event_add,
    .events = pg_events,
    .events_after = pg_events_after,
    .events_last_id = pg_events_last_id,
    .audit_add = pg_audit_add,
    .audit_list = pg_audit_list,
    .meta_get = pg_meta_get,
    .meta_set = pg_meta_set,
    .meta_init = pg_meta_init,
    .ports_lease = pg_ports_lease,
    .ports_release = pg_ports_release,
    .ports_held = pg_ports_held,
    .notify = pg_notify,
};
