/*
 * bench_reaper.c - what a reaper sweep costs (seed 004): at 10k and 100k
 * namespaces with 1 % eligible, ns_sweep itself (the due index walked in
 * batches of NS_SWEEP_BATCH, each eligible namespace queued) against
 * the reference a naive reaper would do in the same process: list every
 * namespace and test each.  Prints CPU time and peak RSS growth of each and
 * the ratio; asserts nothing.
 *
 * The rows are real Namespace resources (the shape ns_create stores),
 * cloned in one SQLite transaction so setting up 100k takes seconds.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ns/ns.h"
#include "reconcile/ctl.h"
#include "reconcile/queue.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

static int64_t cpu_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

/* A field of /proc/self/status in KiB: VmRSS now, VmHWM (peak since the
 * last reset_peak()). */
static long status_kib(const char *field) {
    char *t = NULL;
    long v = -1;
    if (read_file("/proc/self/status", 1 << 16, &t, NULL, NULL) == 0) {
        char *p = strstr(t, field);
        if (p) v = strtol(p + strlen(field), NULL, 10);
        free(t);
    }
    return v;
}
static void reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

/* The reaper's own sweep: ns_sweep walks the due index and queues each
 * eligible namespace on the work queue, as stampd's timer does. */
static int sweep_due(ctl_ctx *c) {
    serr e = {0};
    int n = ns_sweep(c, false, 0, NULL, &e);
    if (n < 0) {
        fprintf(stderr, "bench_reaper: %s\n", e.msg);
        exit(1);
    }
    return n;
}

typedef struct naive {
    int64_t now;
    int n;
} naive;

static int all_row(const resource *r, void *arg) {
    naive *a = arg;
    if (r->due_ms > 0 && r->due_ms <= a->now) a->n++;
    return 0;
}

static int sweep_all(store *st, int64_t now) {
    naive a = {.now = now};
    serr e = {0};
    if (store_list(st, "Namespace", NULL, all_row, &a, &e)) {
        fprintf(stderr, "bench_reaper: %s\n", e.msg);
        exit(1);
    }
    return a.n;
}

static void populate(const char *path, int n, int64_t now) {
    store *st;
    serr e = {0};
    if (store_open_sqlite(path, &st, &e)) {
        fprintf(stderr, "bench_reaper: %s\n", e.msg);
        exit(1);
    }
    resource r;
    resource_init(&r);
    str_copy(r.kind, sizeof(r.kind), "Namespace");
    str_copy(r.name, sizeof(r.name), "livecalc-bucket-seed");
    str_copy(r.tenant, sizeof(r.tenant), "acme");
    json_object_set_new(r.spec, "bucket_id", json_string("seed"));
    json_object_set_new(r.status, "phase", json_string("active"));
    json_object_set_new(r.status, "lastActivityMs", json_integer(now));
    json_object_set_new(r.labels, "app", json_string("livecalc"));
    json_object_set_new(r.labels, "bucket-id", json_string("seed"));
    json_object_set_new(r.labels, "lifecycle", json_string("transient"));
    json_object_set_new(r.labels, "managed-by", json_string("livecalc-platform"));
    json_object_set_new(r.annotations, "created-at", json_string("2026-11-23T10:00:00Z"));
    json_object_set_new(r.annotations, "last-activity", json_string("2026-11-23T10:00:00Z"));
    json_object_set_new(r.annotations, "status", json_string("active"));
    r.due_ms = now + 86400000;
    if (store_create(st, &r, NULL, &e)) {
        fprintf(stderr, "bench_reaper: %s\n", e.msg);
        exit(1);
    }
    resource_free(&r);
    store_close(st);

    /* Clone it n-1 times in one transaction; every 100th is past due. */
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) exit(1);
    char sql[1024];
    int sn = snprintf(sql, sizeof(sql),
             "BEGIN;"
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) "
             "INSERT INTO resources SELECT kind, printf('livecalc-bucket-b%%06d', x), tenant, labels, "
             "annotations, spec, status, finalizers, resource_version, generation, created_ms, "
             "updated_ms, deletion_ms, CASE WHEN x %% 100 = 1 THEN %lld - x ELSE due_ms END "
             "FROM resources, c WHERE name = 'livecalc-bucket-seed';"
             "COMMIT;",
             n - 1, (long long)now);
    if (sn < 0 || (size_t)sn >= sizeof(sql)) exit(1); /* a cut statement is another one */
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "bench_reaper: %s\n", err);
        exit(1);
    }
    sqlite3_close(db);
}

static void run(int n, const char *dir) {
    char path[256];
    serr pe = {0};
    if (str_fmt(path, sizeof(path), &pe, "database path", "%s/reaper-%d.db", dir, n) != 0) {
        fprintf(stderr, "bench_reaper: %s\n", pe.msg);
        exit(1);
    }
    int64_t now = now_ms();
    populate(path, n, now);
    store *st;
    serr e = {0};
    if (store_open_sqlite(path, &st, &e)) exit(1);
    /* Warm the page cache for both, then best of 5 each. */
    ctl_ctx warm = {.st = st};
    sweep_due(&warm);
    sweep_all(st, now);
    int64_t best_due = INT64_MAX, best_all = INT64_MAX;
    long peak_due = 0, peak_all = 0;
    int found_due = 0, found_all = 0;
    wq_backoff bo = {1000, 60000, 2.0, 0.1};
    for (int i = 0; i < 5; i++) {
        /* A fresh queue each trial (stampd's size), so every add is real. */
        ctl_ctx c = {.st = st, .q = wq_new(100000, &bo)};
        long base = status_kib("VmRSS:");
        reset_peak();
        int64_t c0 = cpu_us();
        found_due = sweep_due(&c);
        int64_t c1 = cpu_us();
        wq_free(c.q);
        long pk = status_kib("VmHWM:") - base;
        if (c1 - c0 < best_due) best_due = c1 - c0;
        if (pk > peak_due) peak_due = pk;

        base = status_kib("VmRSS:");
        reset_peak();
        c0 = cpu_us();
        found_all = sweep_all(st, now);
        c1 = cpu_us();
        pk = status_kib("VmHWM:") - base;
        if (c1 - c0 < best_all) best_all = c1 - c0;
        if (pk > peak_all) peak_all = pk;
    }
    long rss = status_kib("VmRSS:");
    store_close(st);
    printf("  %6d namespaces, %4d eligible (naive scan found %d)\n", n, found_due, found_all);
    printf("    sweep (due index):        %9.3f ms CPU, peak RSS +%ld KiB\n", best_due / 1000.0, peak_due);
    printf("    reference (list all):     %9.3f ms CPU, peak RSS +%ld KiB\n", best_all / 1000.0, peak_all);
    printf("    sweep / reference:        %9.4f  (%.1fx cheaper)\n",
           best_all > 0 ? (double)best_due / (double)best_all : 0,
           best_due > 0 ? (double)best_all / (double)best_due : 0);
    printf("    per eligible namespace:   %9.1f us; process RSS %ld KiB (SQLite page cache included)\n",
           found_due ? best_due / (double)found_due : 0, rss);
}

int main(int argc, char **argv) {
    log_init(LOG_WARN); /* not "Found N namespaces eligible" per trial */
    char dir[] = "/tmp/stamp-bench-reaper-XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    printf("reaper sweep, 1%% eligible, best of 5 (CPU = user+system of this process)\n");
    int sizes[] = {10000, 100000};
    for (int i = 0; i < 2; i++) run(argc > 1 ? (int)strtol(argv[1], NULL, 10) * (i ? 10 : 1) : sizes[i], dir);
    return remove_tree(dir, NULL) == 0 ? 0 : 1;
}
