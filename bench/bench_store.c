/*
 * bench_store.c - what durability costs: stamp's store_update (optimistic
 * concurrency, JSON, event in the same transaction, WAL + synchronous=FULL)
 * against raw SQLite commits of a row of the same size on the same disk, in
 * the same process.  Prints figures and the ratio; asserts nothing.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "util/util.h"

static double per_sec(int n, int64_t ms) { return ms > 0 ? n * 1000.0 / (double)ms : 0; }

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
    store_close(s);
    remove_tree(dir, NULL);

    printf("store benchmark (%d operations each, WAL, synchronous=FULL)\n", n);
    printf("  raw SQLite commit (reference)   %8.0f commits/s\n", per_sec(n, raw_ms));
    printf("  store_update + event            %8.0f updates/s   ratio %.2f of raw\n",
           per_sec(n, st_ms), raw_ms > 0 ? (double)raw_ms / (double)(st_ms ? st_ms : 1) : 0);
    printf("  store_get                       %8.0f gets/s\n", per_sec(n, get_ms));
    return 0;
}
