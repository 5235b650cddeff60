/*
 * test_store_faults.c - the SQLite store when its disk fails.  A VFS shim
 * (faultvfs.c) sits under the store and fails one file operation: the kth
 * write (EIO, or ENOSPC after writing half the buffer), fsync (EIO),
 * truncate (EIO) or open (cannot open).  For every kind of write the store
 * offers (create, update, a large status, delete, event, audit, metadata,
 * port leases, the commit that triggers a checkpoint, open, close), a
 * counting run finds the write's injection points, then each point is
 * failed in turn on a fresh copy of one database (with the WAL new, and in
 * use), and:
 *   - the call answers an error with a clear message (or success, when the
 *     failure was one SQLite may survive, such as a checkpoint's);
 *   - the same handle then writes and reads again (stampd still serving);
 *   - the database, reopened, passes PRAGMA integrity_check;
 *   - what succeeded is there, and what failed left nothing or the whole
 *     (never a row without its event, never half a lease) - on the live
 *     handle, after a close and reopen, and in the files a kill -9 right
 *     after the call would have left (the summary counts the failed writes
 *     found whole there: an fsync that failed after the WAL had them).
 * With stampd's disk reserve held (util/reserve.h), a write that meets a
 * full disk frees the reserve and succeeds.  Then a disk that stays full
 * (or a write or fsync that keeps failing): every write fails, twice over,
 * reads still answer, and writes resume on the same handle once it is
 * over.
 *
 * Injection points above SAMPLE_MAX are sampled (the first and last ones,
 * evenly between); the summary printed says how many ran.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"
#include "store/store_backend.h"
#include "util/reserve.h"
#include "util/util.h"

/* The shim is built into this test: the unit tests are one file each. */
#include "faultvfs.c"

#define SAMPLE_MAX 48   /* injection points per (write, fault) run in full */
#define MSG_SEEN_MAX 16 /* distinct error messages kept per write kind */

/* ---- the database every trial starts from ------------------------------ */

static struct {
    char dir[64];
    char path[128];
    char crash[128]; /* crash_image() */
    char reserve[128];
    char *tmpl; /* the template database file */
    size_t tmpl_len;
} g;

/* What the current trial is, for the failure messages. */
static char where[256];

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) fail_msg("%s: check failed: %s (line %d)", where, #cond, __LINE__);       \
    } while (0)
#define CHECK_OK(call, e)                                                                      \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != 0) fail_msg("%s: %s: %d %s (line %d)", where, #call, rc_, (e)->msg, __LINE__); \
    } while (0)

static void make(resource *r, const char *kind, const char *name, const char *tenant) {
    resource_init(r);
    str_copy(r->kind, sizeof(r->kind), kind);
    str_copy(r->name, sizeof(r->name), name);
    str_copy(r->tenant, sizeof(r->tenant), tenant);
}

static const char *const db_files[] = {"", "-wal", "-shm", "-journal"};

static void remove_db(const char *path) {
    for (size_t i = 0; i < sizeof(db_files) / sizeof(db_files[0]); i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", path, db_files[i]);
        if (unlink(p) != 0 && errno != ENOENT) fail_msg("unlink %s: %s", p, strerror(errno));
    }
}

/* What a crash (kill -9) of stampd now would leave: the database and its
 * WAL as the open store has written them, copied to g.crash.  (The shared
 * memory index is rebuilt from the WAL on open.) */
static void crash_image(void) {
    remove_db(g.crash);
    for (int i = 0; i < 2; i++) {
        char from[160], to[160];
        snprintf(from, sizeof(from), "%s%s", g.path, db_files[i]);
        snprintf(to, sizeof(to), "%s%s", g.crash, db_files[i]);
        FILE *in = fopen(from, "rb");
        if (in == NULL && errno == ENOENT) continue;
        CHECK(in != NULL);
        FILE *out = fopen(to, "wb");
        CHECK(out != NULL);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0) CHECK(fwrite(buf, 1, n, out) == n);
        CHECK(!ferror(in));
        fclose(in);
        CHECK(fclose(out) == 0);
    }
}

/* The database file back to the template (or none at all). */
static void fresh(bool with_template) {
    remove_db(g.path);
    if (!with_template) return;
    FILE *f = fopen(g.path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(g.tmpl, 1, g.tmpl_len, f) == g.tmpl_len);
    CHECK(fclose(f) == 0);
}

static store *open_ok(const char *path) {
    store *s = NULL;
    serr e = {0};
    CHECK_OK(store_open_sqlite(path, &s, &e), &e);
    return s;
}

static int first_text(void *arg, int ncol, char **vals, char **names) {
    (void)names;
    str_copy(arg, 128, ncol > 0 && vals[0] ? vals[0] : "(null)");
    return 0;
}

/* PRAGMA integrity_check on the closed store's file, through a connection
 * of our own (which recovers the WAL as the store's would). */
static void integrity(const char *path) {
    sqlite3 *db = NULL;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    char res[128] = "";
    int rc = sqlite3_exec(db, "PRAGMA integrity_check", first_text, res, NULL);
    if (rc != SQLITE_OK || strcmp(res, "ok") != 0)
        fail_msg("%s: integrity_check: %s (%s)", where, res, sqlite3_errmsg(db));
    sqlite3_close(db);
}

static int count_events(store *s, const char *kind, const char *name) {
    json_t *a = NULL;
    serr e = {0};
    CHECK_OK(store_events(s, kind, name, 0, &a, &e), &e);
    int n = (int)json_array_size(a);
    json_decref(a);
    return n;
}

static int count_one(const resource *r, void *arg) {
    (void)r;
    (*(int *)arg)++;
    return 0;
}

static int held(store *s, const char *owner, int *ports, int max) {
    int n = 0;
    serr e = {0};
    CHECK_OK(store_ports_held(s, owner, ports, max, &n, &e), &e);
    return n;
}

/* A string of n bytes of c, to be freed. */
static char *filler(size_t n, char c) {
    char *v = malloc(n + 1);
    CHECK(v != NULL);
    memset(v, c, n);
    v[n] = '\0';
    return v;
}

static void build_template(void) {
    fresh(false);
    store *s = open_ok(g.path);
    serr e = {0};
    resource r;
    make(&r, "Stamp", "upd", "acme");
    json_object_set_new(r.spec, "v", json_integer(1));
    json_object_set_new(r.status, "phase", json_string("Creating"));
    CHECK_OK(store_create(s, &r, NULL, &e), &e);
    resource_free(&r);
    make(&r, "Stamp", "del", "acme");
    CHECK_OK(store_create(s, &r, NULL, &e), &e);
    resource_free(&r);
    make(&r, "Namespace", "ev", "acme");
    CHECK_OK(store_create(s, &r, NULL, &e), &e);
    resource_free(&r);
    CHECK_OK(store_meta_set(s, "k", "old", &e), &e);
    int p[4];
    CHECK_OK(store_ports_lease(s, "ns/held", 2, 20000, 20099, NULL, NULL, p, &e), &e);
    CHECK_OK(store_ports_lease(s, "ns/rel", 2, 20000, 20099, NULL, NULL, p, &e), &e);
    CHECK_OK(store_ports_lease(s, "ns/rel/pod", 1, 20000, 20099, NULL, NULL, p, &e), &e);
    store_close(s);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", g.path);
    CHECK(access(wal, F_OK) != 0); /* checkpointed: the file is the whole database */
    FILE *f = fopen(g.path, "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n > 0 && n < 16 * 1024 * 1024);
    rewind(f);
    g.tmpl = malloc((size_t)n);
    CHECK(g.tmpl != NULL);
    CHECK(fread(g.tmpl, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    g.tmpl_len = (size_t)n;
}

static int group_setup(void **state) {
    (void)state;
    if (faultvfs_install() != SQLITE_OK) fail_msg("cannot install the fault VFS");
    /* tmpfs where there is one: the trials fsync a lot, and what they test
     * is the error paths, not the disk. */
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g.dir, sizeof(g.dir), "%s/stamp-faults-XXXXXX", base);
    if (mkdtemp(g.dir) == NULL) fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(g.path, sizeof(g.path), "%s/stamp.db", g.dir);
    snprintf(g.reserve, sizeof(g.reserve), "%s/reserve", g.dir);
    snprintf(g.crash, sizeof(g.crash), "%s/crash.db", g.dir);
    snprintf(where, sizeof(where), "template");
    build_template();
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    free(g.tmpl);
    serr e = {0};
    reserve_init(g.reserve, 0, &e); /* unlinks it */
    if (remove_tree(g.dir, &e) != 0) fprintf(stderr, "cleanup: %s\n", e.msg);
    return 0;
}

/* ---- the writes ------------------------------------------------------ *
 *
 * run does the write once.  state looks at the store and answers 0 when
 * the write left nothing, 1 when it is all there; anything in between
 * fails the test inside state. */

enum {
    W_OPENS = 1,  /* run opens the store itself (none is open before) */
    W_CLOSES = 2, /* run closes the store */
    W_EMPTY = 4,  /* no template: a new database */
    W_CKPT = 8,   /* run must checkpoint (which truncates the database file) */
    W_ALONE = 16, /* writes what another case writes: not in the same store */
};

typedef struct wcase {
    const char *name;
    unsigned flags;
    void (*prep)(store *s); /* unarmed, before run; may be NULL */
    int (*run)(store **s, serr *e);
    int (*state)(store *s);
} wcase;

/* create, with its event */
static int run_create(store **s, serr *e) {
    resource r;
    make(&r, "Stamp", "new", "acme");
    json_object_set_new(r.spec, "region", json_string("westeurope"));
    json_object_set_new(r.labels, "tier", json_string("gold"));
    store_event ev = {"Normal", "Created", "stamp new created", NULL, NULL};
    int rc = store_create(*s, &r, &ev, e);
    resource_free(&r);
    return rc;
}

static int state_create(store *s) {
    resource r;
    resource_init(&r);
    serr e = {0};
    int rc = store_get(s, "Stamp", "new", &r, &e);
    int n = count_events(s, "Stamp", "new");
    int st = 0;
    if (rc == SE_NOTFOUND) {
        CHECK(n == 0); /* never the event without its row */
    } else {
        CHECK_OK(rc, &e);
        CHECK(r.resource_version == 1);
        CHECK(strcmp(json_string_value(json_object_get(r.spec, "region")), "westeurope") == 0);
        CHECK(strcmp(json_string_value(json_object_get(r.labels, "tier")), "gold") == 0);
        CHECK(n == 1);
        st = 1;
    }
    resource_free(&r);
    return st;
}

/* update of spec and status, with a phase change event */
static int update_to(store *s, json_t *status, serr *e) {
    resource r;
    resource_init(&r);
    int rc = store_get(s, "Stamp", "upd", &r, e);
    if (rc == 0) {
        json_object_set_new(r.spec, "v", json_integer(2));
        json_decref(r.status);
        r.status = status;
        status = NULL;
        store_event ev = {"Normal", "PhaseChanged", "Creating -> Active: healthy", "Creating",
                          "Active"};
        rc = store_update(s, &r, &ev, e);
    }
    json_decref(status);
    resource_free(&r);
    return rc;
}

static int run_update(store **s, serr *e) {
    return update_to(*s, json_pack("{s:s}", "phase", "Active"), e);
}

/* What update left, and checks its status against want. */
static int state_update_with(store *s, json_t *want) {
    resource r;
    resource_init(&r);
    serr e = {0};
    CHECK_OK(store_get(s, "Stamp", "upd", &r, &e), &e);
    int n = count_events(s, "Stamp", "upd");
    int st = 0;
    if (r.resource_version == 1) {
        CHECK(json_integer_value(json_object_get(r.spec, "v")) == 1);
        CHECK(strcmp(json_string_value(json_object_get(r.status, "phase")), "Creating") == 0);
        CHECK(r.generation == 1);
        CHECK(n == 0);
    } else {
        CHECK(r.resource_version == 2);
        CHECK(r.generation == 2);
        CHECK(json_integer_value(json_object_get(r.spec, "v")) == 2);
        CHECK(json_equal(r.status, want));
        CHECK(n == 1);
        st = 1;
    }
    resource_free(&r);
    return st;
}

static int state_update(store *s) {
    json_t *want = json_pack("{s:s}", "phase", "Active");
    int st = state_update_with(s, want);
    json_decref(want);
    return st;
}

/* A status of some 300 KB: a row on a chain of overflow pages. */
#define BIG_STATUS 300000

static json_t *big_status(void) {
    char *v = filler(BIG_STATUS, 'x');
    json_t *j = json_pack("{s:s, s:s}", "phase", "Active", "log", v);
    free(v);
    return j;
}

static int run_update_big(store **s, serr *e) { return update_to(*s, big_status(), e); }

static int state_update_big(store *s) {
    json_t *want = big_status();
    int st = state_update_with(s, want);
    json_decref(want);
    return st;
}

static int run_delete(store **s, serr *e) { return store_delete(*s, "Stamp", "del", 1, e); }

static int state_delete(store *s) {
    resource r;
    resource_init(&r);
    serr e = {0};
    int rc = store_get(s, "Stamp", "del", &r, &e);
    int st = 1;
    if (rc != SE_NOTFOUND) {
        CHECK_OK(rc, &e);
        CHECK(r.resource_version == 1);
        st = 0;
    }
    resource_free(&r);
    return st;
}

static int run_event(store **s, serr *e) {
    store_event ev = {"Warning", "BucketFull", "bucket ev is at 95% of its quota", NULL, NULL};
    return store_event_add(*s, "Namespace", "ev", &ev, e);
}

static int state_event(store *s) {
    int n = count_events(s, "Namespace", "ev");
    CHECK(n == 0 || n == 1);
    return n;
}

static int run_audit(store **s, serr *e) {
    json_t *d = json_pack("{s:s, s:i}", "bucket", "b-7", "pods", 3);
    store_audit a = {"alice", "acme", "reap", "Namespace", "ev", "ok", d};
    int rc = store_audit_add(*s, &a, e);
    json_decref(d);
    return rc;
}

static int state_audit(store *s) {
    json_t *a = NULL;
    serr e = {0};
    CHECK_OK(store_audit_list(s, "Namespace", "ev", 0, &a, &e), &e);
    int n = (int)json_array_size(a);
    CHECK(n == 0 || n == 1);
    if (n == 1) {
        json_t *row = json_array_get(a, 0);
        CHECK(strcmp(json_string_value(json_object_get(row, "operation")), "reap") == 0);
        CHECK(json_integer_value(json_object_get(json_object_get(row, "detail"), "pods")) == 3);
    }
    json_decref(a);
    return n;
}

/* A value of 100 KB: overflow pages again, on the autocommit path. */
#define BIG_META 100000

static int run_meta(store **s, serr *e) {
    char *v = filler(BIG_META, 'm');
    int rc = store_meta_set(*s, "k", v, e);
    free(v);
    return rc;
}

static int state_meta(store *s) {
    char *v = NULL;
    serr e = {0};
    CHECK_OK(store_meta_get(s, "k", &v, &e), &e);
    int st = 0;
    if (strcmp(v, "old") != 0) {
        CHECK(strlen(v) == BIG_META && strspn(v, "m") == BIG_META);
        st = 1;
    }
    free(v);
    return st;
}

static int run_meta_init(store **s, serr *e) {
    char *stored = NULL;
    int rc = store_meta_init(*s, "instance-id", "i-42", &stored, e);
    if (rc == 0) CHECK(strcmp(stored, "i-42") == 0);
    free(stored);
    return rc;
}

static int state_meta_init(store *s) {
    char *v = NULL;
    serr e = {0};
    int rc = store_meta_get(s, "instance-id", &v, &e);
    if (rc == SE_NOTFOUND) return 0;
    CHECK_OK(rc, &e);
    CHECK(strcmp(v, "i-42") == 0);
    free(v);
    return 1;
}

static int run_lease(store **s, serr *e) {
    int p[3];
    int rc = store_ports_lease(*s, "ns/new", 3, 20000, 20099, NULL, NULL, p, e);
    if (rc == 0) CHECK(p[0] == 20005 && p[1] == 20006 && p[2] == 20007);
    return rc;
}

static int state_lease(store *s) {
    int p[8];
    int n = held(s, "ns/new", p, 8);
    CHECK(n == 0 || n == 3); /* all or nothing */
    if (n == 3) CHECK(p[0] == 20005 && p[2] == 20007);
    return n == 3;
}

/* ns/held holds 2 and asks for 3: its 2 are let go and 3 taken, in one
 * transaction. */
static int run_grow(store **s, serr *e) {
    int p[3];
    return store_ports_lease(*s, "ns/held", 3, 20000, 20099, NULL, NULL, p, e);
}

static int state_grow(store *s) {
    int p[8];
    int n = held(s, "ns/held", p, 8);
    CHECK(n == 2 || n == 3); /* never none: the old lease until the new one */
    if (n == 2) CHECK(p[0] == 20000 && p[1] == 20001);
    if (n == 3) CHECK(p[0] == 20000 && p[1] == 20001 && p[2] == 20005);
    return n == 3;
}

static int run_release(store **s, serr *e) { return store_ports_release(*s, "ns/rel", e); }

static int state_release(store *s) {
    int p[8];
    int a = held(s, "ns/rel", p, 8), b = held(s, "ns/rel/pod", p, 8);
    CHECK((a == 2 && b == 1) || (a == 0 && b == 0));
    return a == 0;
}

/* The WAL filled to just under SQLite's automatic checkpoint (1000 pages),
 * so that the next commit runs a checkpoint: writes into the database file,
 * its fsync and its truncate. */
#define WAL_FRAME (4096 + 24)
#define AUTOCKPT_FRAMES 1000

static long wal_frames(void) {
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", g.path);
    struct stat st;
    if (stat(wal, &st) != 0) return 0;
    return st.st_size <= 32 ? 0 : (long)((st.st_size - 32) / WAL_FRAME);
}

static void prep_near_checkpoint(store *s) {
    serr e = {0};
    char *v = filler(16000, 'w'); /* about 5 pages a commit */
    for (int i = 0; wal_frames() < AUTOCKPT_FRAMES - 24; i++) {
        char key[32];
        snprintf(key, sizeof(key), "fill-%d", i);
        CHECK(i < 1000);
        CHECK_OK(store_meta_set(s, key, v, &e), &e);
    }
    free(v);
    /* Then a page or two a commit, to stop just short of it. */
    for (int i = 0; wal_frames() < AUTOCKPT_FRAMES - 3; i++) {
        CHECK(i < 100);
        CHECK_OK(store_meta_set(s, "fill-0", i % 2 ? "wwww" : "www", &e), &e);
    }
}

static int run_checkpoint(store **s, serr *e) {
    int rc = run_create(s, e);
    return rc;
}

static int state_checkpoint(store *s) {
    char *v = NULL;
    serr e = {0};
    CHECK_OK(store_meta_get(s, "fill-0", &v, &e), &e); /* the fill survived */
    CHECK(strlen(v) == 3 || strlen(v) == 4);
    free(v);
    return state_create(s);
}

/* open of an existing database: five connections, each with its WAL */
static int run_open(store **s, serr *e) { return store_open_sqlite(g.path, s, e); }

static int state_open(store *s) {
    /* The template is all there. */
    CHECK(state_update(s) == 0 && state_delete(s) == 0 && state_release(s) == 0);
    return 1;
}

/* open of a new database: the migrations */
static int state_new(store *s) {
    char *v = NULL;
    serr e = {0};
    CHECK_OK(store_meta_get(s, "schema_version", &v, &e), &e);
    CHECK(strcmp(v, "1") == 0);
    free(v);
    return 1;
}

/* close: the last connection checkpoints the WAL into the file and
 * removes it.  The writes before it were acknowledged. */
static void prep_close(store *s) {
    serr e = {0};
    store **ps = &s;
    CHECK_OK(run_create(ps, &e), &e);
    CHECK_OK(run_update_big(ps, &e), &e);
    CHECK_OK(run_release(ps, &e), &e);
}

static int run_close(store **s, serr *e) {
    (void)e;
    store_close(*s);
    *s = NULL;
    return 0;
}

static int state_close(store *s) {
    CHECK(state_create(s) == 1 && state_update_big(s) == 1 && state_release(s) == 1);
    return 1;
}

static const wcase cases[] = {
    {"create", 0, NULL, run_create, state_create},
    {"update", 0, NULL, run_update, state_update},
    {"update-big", W_ALONE, NULL, run_update_big, state_update_big},
    {"delete", 0, NULL, run_delete, state_delete},
    {"event", 0, NULL, run_event, state_event},
    {"audit", 0, NULL, run_audit, state_audit},
    {"meta-set", 0, NULL, run_meta, state_meta},
    {"meta-init", 0, NULL, run_meta_init, state_meta_init},
    {"ports-lease", 0, NULL, run_lease, state_lease},
    {"ports-grow", W_ALONE, NULL, run_grow, state_grow},
    {"ports-release", 0, NULL, run_release, state_release},
    {"checkpoint", W_CKPT, prep_near_checkpoint, run_checkpoint, state_checkpoint},
    {"open", W_OPENS, NULL, run_open, state_open},
    {"open-new", W_OPENS | W_EMPTY, NULL, run_open, state_new},
    {"close", W_CLOSES, prep_close, run_close, state_close},
};

/* ---- the trials ------------------------------------------------------ */

typedef struct fault {
    fv_op op;
    int code;
    bool torn;
    const char *name;
} fault;

static const fault faults[] = {
    {FV_WRITE, SQLITE_IOERR_WRITE, false, "write EIO"},
    {FV_WRITE, SQLITE_FULL, true, "write ENOSPC, half written"},
    {FV_SYNC, SQLITE_IOERR_FSYNC, false, "fsync EIO"},
    {FV_TRUNCATE, SQLITE_IOERR_TRUNCATE, false, "truncate EIO"},
    {FV_OPEN, SQLITE_CANTOPEN, false, "open fails"},
};

typedef struct tally {
    long points[FV_NOPS]; /* injection points the counting run found */
    int trials, errors, oks;
    int phantom; /* failed, not seen live, there after a crash */
    int released; /* trials that freed the disk reserve */
    int nseen;
    char seen[MSG_SEEN_MAX][SERR_MSG_MAX];
} tally;

/* A failure must say what failed, in the store's words. */
static void check_message(const serr *e, tally *t) {
    CHECK(e->code == SE_IO || e->code == SE_UNAVAIL);
    CHECK(strncmp(e->msg, "store: ", 7) == 0);
    CHECK(strstr(e->msg, "disk I/O error") || strstr(e->msg, "database or disk is full") ||
          strstr(e->msg, "unable to open"));
    for (int i = 0; i < t->nseen; i++)
        if (strcmp(t->seen[i], e->msg) == 0) return;
    if (t->nseen < MSG_SEEN_MAX) str_copy(t->seen[t->nseen++], SERR_MSG_MAX, e->msg);
}

/* A write on the handle after the fault: stampd goes on serving. */
static void probe(store *s) {
    resource r;
    make(&r, "Stamp", "probe", "acme");
    store_event ev = {"Normal", "Created", "probe", NULL, NULL};
    serr e = {0};
    CHECK_OK(store_create(s, &r, &ev, &e), &e);
    resource_free(&r);
    CHECK_OK(store_meta_set(s, "probe", "1", &e), &e);
}

static void probe_there(store *s) {
    resource r;
    resource_init(&r);
    serr e = {0};
    CHECK_OK(store_get(s, "Stamp", "probe", &r, &e), &e);
    resource_free(&r);
    CHECK(count_events(s, "Stamp", "probe") == 1);
}

/* How a trial starts. */
typedef struct mode {
    bool warm;    /* a write before: the WAL in use, not new */
    bool reserve; /* stampd's disk reserve held (util/reserve.h) */
} mode;

/* One run of w with plan p (NULL: the counting run, into t->points). */
static void trial(const wcase *w, const mode *m, const fv_plan *p, tally *t) {
    fresh(!(w->flags & W_EMPTY));
    store *s = NULL;
    serr e = {0};
    if (!(w->flags & W_OPENS)) {
        s = open_ok(g.path);
        if (m->warm) CHECK_OK(store_meta_set(s, "warm", "1", &e), &e);
        if (w->prep) w->prep(s);
    }
    if (m->reserve) CHECK_OK(reserve_init(g.reserve, 4096, &e), &e);
    faultvfs_arm(p);
    int rc = w->run(&s, &e);
    faultvfs_disarm();
    if (m->reserve) {
        /* The reserve was there for this: a full disk met once is room
         * found, and the write goes through.  (A checkpoint's full disk
         * does not fail the write, and leaves the reserve.) */
        if (p && p->code == SQLITE_FULL && rc != 0)
            fail_msg("%s: the reserve was held, yet: %s", where, e.msg);
        if (!reserve_held()) t->released++;
        CHECK_OK(reserve_init(g.reserve, 0, &e), &e);
    }
    if (p == NULL) {
        CHECK_OK(rc, &e);
        for (int op = 0; op < FV_NOPS; op++) t->points[op] = faultvfs_count(op);
        if (w->flags & W_CKPT) CHECK(t->points[FV_TRUNCATE] > 0);
    } else {
        /* The same calls as the counting run: the plan fired. */
        CHECK(faultvfs_failed() == 1);
        t->trials++;
    }
    if (rc) {
        check_message(&e, t);
        t->errors++;
    } else if (p) {
        t->oks++;
    }
    if (s == NULL) s = open_ok(g.path); /* after a failed open, or the close */
    int live = w->state(s);
    /* A failed write is not seen.  (A failed open was opened again above.) */
    if (w->flags & W_OPENS) CHECK(live == 1);
    else CHECK(live == (rc == 0));
    crash_image();
    probe(s);
    store_close(s);
    integrity(g.path);
    s = open_ok(g.path);
    if (rc == 0) CHECK(w->state(s) == 1);
    else w->state(s); /* nothing or the whole */
    probe_there(s);
    store_close(s);
    /* Had stampd been killed right after the failed call. */
    integrity(g.crash);
    s = open_ok(g.crash);
    int crashed = w->state(s);
    if (rc == 0) CHECK(crashed == 1);
    if (rc && live == 0 && crashed == 1) t->phantom++;
    store_close(s);
}

/* Which of n points to fail: all of them, or the first and last few and
 * an even spread between. */
static int pick(long n, long *ks, int max) {
    if (n <= max) {
        for (long k = 1; k <= n; k++) ks[k - 1] = k;
        return (int)n;
    }
    int c = 0, head = max / 2, tail = max / 6, mid = max - head - tail;
    for (long k = 1; k <= head; k++) ks[c++] = k;
    for (int i = 1; i <= mid; i++) ks[c++] = head + (n - head - tail) * i / (mid + 1);
    for (long k = n - tail + 1; k <= n; k++) ks[c++] = k;
    return c;
}

static void run_case_mode(const wcase *w, const mode *m) {
    tally *t = calloc(1, sizeof(*t));
    CHECK(t != NULL);
    const char *how = m->reserve ? "reserve" : m->warm ? "warm" : "cold";
    snprintf(where, sizeof(where), "%s (%s): counting run", w->name, how);
    trial(w, m, NULL, t);
    int sampled = 0;
    for (size_t f = 0; f < sizeof(faults) / sizeof(faults[0]); f++) {
        /* With the reserve, only what it is for: a full disk. */
        if (m->reserve && faults[f].code != SQLITE_FULL) continue;
        long ks[SAMPLE_MAX];
        long n = t->points[faults[f].op];
        int nk = pick(n, ks, SAMPLE_MAX);
        if (nk < n) sampled = 1;
        for (int i = 0; i < nk; i++) {
            snprintf(where, sizeof(where), "%s (%s): %s at %s %ld of %ld", w->name, how,
                     faults[f].name, faultvfs_op_name(faults[f].op), ks[i], n);
            fv_plan p = {faults[f].op, ks[i], faults[f].code, false, faults[f].torn};
            trial(w, m, &p, t);
        }
    }
    printf("  %-14s %-7s points: open %ld write %ld sync %ld truncate %ld%s; %d trials: %d "
           "errors, %d succeeded",
           w->name, how, t->points[FV_OPEN], t->points[FV_WRITE], t->points[FV_SYNC],
           t->points[FV_TRUNCATE], sampled ? " (sampled)" : "", t->trials, t->errors, t->oks);
    if (t->phantom) printf(", %d failed but there after a crash", t->phantom);
    if (m->reserve) printf(", %d freed the reserve", t->released);
    printf("\n");
    for (int i = 0; i < t->nseen; i++) printf("      \"%s\"\n", t->seen[i]);
    free(t);
}

static void run_case(const wcase *w) {
    run_case_mode(w, &(mode){.warm = false});
    if (w->flags & W_OPENS) return; /* nothing written before an open */
    run_case_mode(w, &(mode){.warm = true});
    if (w->flags & W_CLOSES) return; /* close has no error to retry */
    run_case_mode(w, &(mode){.warm = true, .reserve = true});
}

/* ---- a disk that stays full, or keeps failing -------------------------- */

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

/* The plain writes, which can all run in one store, one after another. */
static bool plain(const wcase *w) { return w->flags == 0 && w->prep == NULL; }

/* The reads stampd serves from, all answering from before the failure. */
static void reads_answer(store *s) {
    serr e = {0};
    int n = 0;
    CHECK_OK(store_list(s, "Stamp", NULL, count_one, &n, &e), &e);
    CHECK(n == 3); /* upd, del, before */
    json_t *a = NULL;
    int64_t upto = 0;
    CHECK_OK(store_events_after(s, NULL, NULL, NULL, 0, 256, &a, &upto, &e), &e);
    CHECK(json_array_size(a) == 1 && upto > 0);
    json_decref(a);
    char *v = NULL;
    CHECK_OK(store_meta_get(s, "k", &v, &e), &e);
    CHECK(strcmp(v, "old") == 0);
    free(v);
    int p[4];
    CHECK(held(s, "ns/held", p, 4) == 2);
}

static void stays_failing(const char *what, const fv_plan *p, bool reserve) {
    snprintf(where, sizeof(where), "%s: before", what);
    fresh(true);
    store *s = open_ok(g.path);
    serr e = {0};
    resource r;
    make(&r, "Stamp", "before", "acme");
    store_event ev = {"Normal", "Created", "acknowledged before the disk failed", NULL, NULL};
    CHECK_OK(store_create(s, &r, &ev, &e), &e);
    resource_free(&r);
    if (reserve) CHECK_OK(reserve_init(g.reserve, 4096, &e), &e);

    faultvfs_arm(p);
    tally t = {0};
    for (int round = 0; round < 2; round++) { /* and again: nothing wedged */
        for (int i = 0; i < NCASES; i++) {
            if (!plain(&cases[i])) continue;
            snprintf(where, sizeof(where), "%s: %s, round %d", what, cases[i].name, round);
            serr we = {0};
            CHECK(cases[i].run(&s, &we) != 0);
            check_message(&we, &t);
            CHECK(cases[i].state(s) == 0);
            reads_answer(s);
        }
    }
    long failed = faultvfs_failed();
    faultvfs_disarm();
    if (reserve) CHECK(!reserve_held()); /* freed at the first, which failed anyway */

    /* The disk is back: the same handle writes again. */
    for (int i = 0; i < NCASES; i++) {
        if (!plain(&cases[i])) continue;
        snprintf(where, sizeof(where), "%s: %s once the disk is back", what, cases[i].name);
        serr we = {0};
        CHECK_OK(cases[i].run(&s, &we), &we);
        CHECK(cases[i].state(s) == 1);
    }
    store_close(s);
    snprintf(where, sizeof(where), "%s: reopened", what);
    integrity(g.path);
    s = open_ok(g.path);
    for (int i = 0; i < NCASES; i++)
        if (plain(&cases[i])) CHECK(cases[i].state(s) == 1);
    resource_init(&r);
    CHECK_OK(store_get(s, "Stamp", "before", &r, &e), &e);
    resource_free(&r);
    store_close(s);
    CHECK_OK(reserve_init(g.reserve, 0, &e), &e);
    printf("  %-30s %ld calls failed; every write answered an error, every read answered\n",
           what, failed);
    for (int i = 0; i < t.nseen; i++) printf("      \"%s\"\n", t.seen[i]);
}

static void test_disk_stays_full(void **state) {
    (void)state;
    fv_plan full = {FV_WRITE, 1, SQLITE_FULL, true, true};
    stays_failing("disk full", &full, false);
    stays_failing("disk full, reserve held", &full, true);
    fv_plan eio = {FV_WRITE, 1, SQLITE_IOERR_WRITE, true, false};
    stays_failing("every write EIO", &eio, false);
    fv_plan fsync = {FV_SYNC, 1, SQLITE_IOERR_FSYNC, true, false};
    stays_failing("every fsync EIO", &fsync, false);
}

#define CASE_TEST(fn, idx)                                                                     \
    static void fn(void **state) {                                                             \
        (void)state;                                                                           \
        run_case(&cases[idx]);                                                                 \
    }
CASE_TEST(test_create, 0)
CASE_TEST(test_update, 1)
CASE_TEST(test_update_big, 2)
CASE_TEST(test_delete, 3)
CASE_TEST(test_event, 4)
CASE_TEST(test_audit, 5)
CASE_TEST(test_meta_set, 6)
CASE_TEST(test_meta_init, 7)
CASE_TEST(test_ports_lease, 8)
CASE_TEST(test_ports_grow, 9)
CASE_TEST(test_ports_release, 10)
CASE_TEST(test_checkpoint, 11)
CASE_TEST(test_open, 12)
CASE_TEST(test_open_new, 13)
CASE_TEST(test_close, 14)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),         cmocka_unit_test(test_update),
        cmocka_unit_test(test_update_big),     cmocka_unit_test(test_delete),
        cmocka_unit_test(test_event),          cmocka_unit_test(test_audit),
        cmocka_unit_test(test_meta_set),       cmocka_unit_test(test_meta_init),
        cmocka_unit_test(test_ports_lease),    cmocka_unit_test(test_ports_grow),
        cmocka_unit_test(test_ports_release),  cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_open),           cmocka_unit_test(test_open_new),
        cmocka_unit_test(test_close),          cmocka_unit_test(test_disk_stays_full),
    };
    return cmocka_run_group_tests_name("store_faults", tests, group_setup, group_teardown);
}
