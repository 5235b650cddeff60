/*
 * bench_store.c - what durability costs: stamp's store_update (optimistic
 * concurrency, JSON, event in the same transaction, WAL + synchronous=FULL)
 * against raw SQLite commits of a row of the same size on the same disk, in
 * the same process.  Then reads while a writer commits without pause:
 * store_get from one thread while another runs store_update, against raw
 * SQLite reading on its own connection while a second connection commits.
 * Prints figures and the ratios; asserts nothing.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "util/util.h"

static double per_sec(int n, int64_t ms) { return ms > 0 ? n * 1000.0 / (double)ms : 0; }

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Read latencies of one run: a histogram in microseconds (the last bin
 * holds everything slower), for the 99th percentile, and the worst. */
#define LAT_BINS 20000
typedef struct lat {
    long *bin;
    long n;
    int64_t max_us;
} lat;

static void lat_add(lat *l, int64_t us) {
    l->bin[us < LAT_BINS ? us : LAT_BINS - 1]++;
    l->n++;
    if (us > l->max_us) l->max_us = us;
}

static void lat_report(const char *what, int64_t total_us, lat *l, long writes) {
    long want = l->n - l->n / 100, seen = 0;
    int p99 = 0;
    for (; p99 < LAT_BINS - 1 && (seen += l->bin[p99]) < want; p99++) {}
    printf("  %-30s %9.0f reads/s  p99 %5d us  max %7lld us  (%ld commits meanwhile)\n", what,
           total_us > 0 ? (double)l->n * 1e6 / (double)total_us : 0, p99, (long long)l->max_us,
           writes);
    memset(l->bin, 0, LAT_BINS * sizeof(*l->bin));
    l->n = 0;
    l->max_us = 0;
}

/* The writer beside the readers: commits until told to stop. */
typedef struct writer {
    const char *path; /* raw: its own connection on this file */
    store *s;         /* stamp: store_update on this store */
    atomic_int stop;
    atomic_int started;
    long commits;
} writer;

static void *raw_writer(void *arg) {
    writer *w = arg;
    sqlite3 *db;
    if (sqlite3_open(w->path, &db) != SQLITE_OK) return NULL;
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    char body[600];
    memset(body, 'y', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "UPDATE t SET body=? WHERE id=1", -1, &st, NULL);
    atomic_store(&w->started, 1);
    while (!atomic_load(&w->stop)) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        sqlite3_bind_text(st, 1, body, -1, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) w->commits++;
        /* A row rewritten with the same bytes dirties no page: no commit. */
        snprintf(body, 24, "%020ld", w->commits);
        body[20] = 'y';
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return NULL;
}

static void *stamp_writer(void *arg) {
    writer *w = arg;
    serr e = {0};
    resource r;
    resource_init(&r);
    if (store_get(w->s, "Stamp", "synaxis-weu-001", &r, &e) != 0) return NULL;
    atomic_store(&w->started, 1);
    while (!atomic_load(&w->stop)) {
        json_object_set_new(r.status, "connections", json_integer(w->commits));
        store_event ev = {.type = "Normal", .reason = "Bench", .message = "drain progress"};
        if (store_update(w->s, &r, &ev, &e) == 0) w->commits++;
    }
    resource_free(&r);
    return NULL;
}

static void wait_started(writer *w) {
    while (!atomic_load(&w->started)) usleep(1000);
}

/* Raw SQLite: n point reads on a connection of their own while another
 * connection commits. */
static int raw_reads_during_writes(const char *path, int64_t run_us, lat *l) {
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return -1;
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT body FROM t WHERE id=1", -1, &st, NULL);
    writer w = {.path = path};
    pthread_t th;
    pthread_create(&th, NULL, raw_writer, &w);
    wait_started(&w);
    int64_t t0 = mono_us(), a = t0, total = 0;
    size_t got = 0;
    while (total < run_us) {
        if (sqlite3_step(st) == SQLITE_ROW) got += (size_t)sqlite3_column_bytes(st, 0);
        sqlite3_reset(st);
        int64_t b = mono_us();
        lat_add(l, b - a);
        a = b;
        total = b - t0;
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    sqlite3_finalize(st);
    sqlite3_close(db);
    lat_report("raw SQLite read (reference)", total, l, w.commits);
    return got > 0 ? 0 : -1;
}

/* store_get for run_us, with a writer beside it or not; the reads per
 * second are returned. */
static double stamp_reads(store *s, bool with_writer, int64_t run_us, lat *l) {
    writer w = {.s = s};
    pthread_t th;
    if (with_writer) {
        pthread_create(&th, NULL, stamp_writer, &w);
        wait_started(&w);
    }
    serr e = {0};
    int bad = 0;
    int64_t t0 = mono_us(), total = 0;
    while (total < run_us) {
        resource g;
        resource_init(&g);
        int64_t a = mono_us();
        if (store_get(s, "Stamp", "synaxis-weu-001", &g, &e) != 0) bad++;
        int64_t b = mono_us();
        lat_add(l, b - a);
        resource_free(&g);
        total = b - t0;
    }
    if (with_writer) {
        atomic_store(&w.stop, 1);
        pthread_join(th, NULL);
    }
    double rate = total > 0 ? (double)l->n * 1e6 / (double)total : 0;
    lat_report(with_writer ? "store_get, writer running" : "store_get, no writer", total, l,
               w.commits);
    return bad ? -1 : rate;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 500;
    char dir[] = "/tmp/stamp-bench-XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    char path[256];
    serr e = {0};

    /* Reference: raw SQLite, same pragmas, one INSERT per transaction. */
    if (str_fmt(path, sizeof(path), &e, "database path", "%s/raw.db", dir) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)", NULL, NULL, NULL);
    char body[600];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "INSERT INTO t(body) VALUES(?)", -1, &st, NULL);
    int64_t t0 = mono_ms();
    for (int i = 0; i < n; i++) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        sqlite3_bind_text(st, 1, body, -1, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    int64_t raw_ms = mono_ms() - t0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    char raw_path[256];
    snprintf(raw_path, sizeof(raw_path), "%s", path);

    /* stamp: read-modify-write of one resource with an event each time. */
    if (str_fmt(path, sizeof(path), &e, "database path", "%s/stamp.db", dir) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    store *s;
    if (store_open_sqlite(path, &s, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    resource r;
    resource_init(&r);
    str_copy(r.kind, sizeof(r.kind), "Stamp");
    str_copy(r.name, sizeof(r.name), "synaxis-weu-001");
    json_object_set_new(r.spec, "region", json_string("westeurope"));
    json_object_set_new(r.status, "phase", json_string("Active"));
    store_create(s, &r, NULL, &e);
    t0 = mono_ms();
    for (int i = 0; i < n; i++) {
        json_object_set_new(r.status, "connections", json_integer(i));
        store_event ev = {.type = "Normal", .reason = "Bench", .message = "drain progress"};
        if (store_update(s, &r, &ev, &e) != 0) {
            fprintf(stderr, "update: %s\n", e.msg);
            return 1;
        }
    }
    int64_t st_ms = mono_ms() - t0;
    t0 = mono_ms();
    for (int i = 0; i < n; i++) {
        resource g;
        resource_init(&g);
        store_get(s, "Stamp", "synaxis-weu-001", &g, &e);
        resource_free(&g);
    }
    int64_t get_ms = mono_ms() - t0;
    resource_free(&r);

    printf("store benchmark (%d operations each, WAL, synchronous=FULL)\n", n);
    printf("  raw SQLite commit (reference)   %8.0f commits/s\n", per_sec(n, raw_ms));
    printf("  store_update + event            %8.0f updates/s   ratio %.2f of raw\n",
           per_sec(n, st_ms), raw_ms > 0 ? (double)raw_ms / (double)(st_ms ? st_ms : 1) : 0);
    printf("  store_get                       %8.0f gets/s\n", per_sec(n, get_ms));

    /* Reads while a writer commits: they should not queue behind the
     * writer's lock and fsync.  One second each. */
    lat l = {.bin = calloc(LAT_BINS, sizeof(long))};
    if (l.bin == NULL) return 1;
    printf("reads on one thread while another commits without pause (1 s each)\n");
    int bad = raw_reads_during_writes(raw_path, 1000000, &l);
    double idle = stamp_reads(s, false, 1000000, &l);
    double busy = stamp_reads(s, true, 1000000, &l);
    if (idle < 0 || busy < 0) bad = 1;
    else printf("  store_get with a writer running: %.2f of its rate without one\n",
                idle > 0 ? busy / idle : 0);
    free(l.bin);
    store_close(s);
    remove_tree(dir, NULL);
    if (bad) fprintf(stderr, "some reads failed\n");
    return bad;
}
