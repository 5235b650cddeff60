/*
 * backup.c - backups (a stamp's volumes, on request and as the first
 * retirement step) and the archive (logs, step logs, quarantine, events,
 * audit, the record) kept after retirement.  Each is built under a
 * ".partial" name, every file hashed from the source and from the copy and
 * compared, a manifest written, and only then renamed into place.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "stamp/internal.h"
#include "util/httpc.h"
#include "util/util.h"

typedef int (*walk_fn)(const char *path, const char *rel, void *arg);

static int walk(const char *root, const char *rel, walk_fn fn, void *arg, serr *e) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (d == NULL) return errno == ENOENT ? 0 : serr_set(e, SE_IO, "opendir %s: %s", path, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char crel[PATH_MAX], cpath[PATH_MAX];
        snprintf(crel, sizeof(crel), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        snprintf(cpath, sizeof(cpath), "%s/%s", root, crel);
        struct stat stt;
        if (lstat(cpath, &stt) != 0) continue;
        if (S_ISDIR(stt.st_mode)) rc = walk(root, crel, fn, arg, e);
        else if (S_ISREG(stt.st_mode)) rc = fn(cpath, crel, arg);
    }
    closedir(d);
    return rc;
}

typedef struct manifest_acc {
    json_t *files;
    int64_t bytes;
    serr *e;
} manifest_acc;

static int manifest_add(const char *path, const char *rel, void *arg) {
    manifest_acc *m = arg;
    char hex[65];
    int64_t size;
    if (strcmp(rel, "manifest.json") == 0) return 0;
    int rc = sha256_file_hex(path, hex, &size, m->e);
    if (rc) return rc;
    json_array_append_new(m->files, json_pack("{s:s,s:I,s:s}", "path", rel, "size",
                                              (json_int_t)size, "sha256", hex));
    m->bytes += size;
    return 0;
}

/* Hash every file under dir; then hash them again from the source tree (when
 * given, for the entries that came from it) and compare: a copy is only
 * accepted when it reads back identical. */
static int manifest_build(const char *dir, json_t **files, int64_t *bytes, serr *e) {
    manifest_acc m = {.files = json_array(), .bytes = 0, .e = e};
    int rc = walk(dir, "", manifest_add, &m, e);
    if (rc) {
        json_decref(m.files);
        return rc;
    }
    *files = m.files;
    *bytes = m.bytes;
    return 0;
}

static int verify_copy(const char *src, const char *dst, serr *e) {
    json_t *a = NULL, *b = NULL;
    int64_t ba, bb;
    int rc = manifest_build(src, &a, &ba, e);
    if (rc == 0) rc = manifest_build(dst, &b, &bb, e);
    if (rc == 0) {
        /* Every source file must be in the copy with the same hash. */
        size_t i, j;
        json_t *fa, *fb;
        json_array_foreach(a, i, fa) {
            bool found = false;
            json_array_foreach(b, j, fb) {
                if (strcmp(jstr(fa, "path", ""), jstr(fb, "path", "")) == 0) {
                    found = strcmp(jstr(fa, "sha256", ""), jstr(fb, "sha256", "")) == 0;
                    break;
                }
            }
            if (!found) {
                rc = serr_set(e, SE_IO, "verification of %s failed: %s differs or is missing",
                              dst, jstr(fa, "path", ""));
                break;
            }
        }
    }
    json_decref(a);
    json_decref(b);
    return rc;
}

static int write_json_file(const char *path, json_t *v, serr *e) {
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text == NULL) return serr_set(e, SE_NOMEM, "json_dumps failed");
    int rc = write_file_atomic(path, text, strlen(text), 0640, e);
    free(text);
    return rc;
}

static void stamp_time_id(char *buf, size_t len) {
    int64_t ms = now_ms();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y%m%d-%H%M%S", &tm);
    snprintf(buf, len, "%s-%03lld", ts, (long long)(ms % 1000));
}

/* Back up the stamp's local state (its volumes) and verify the copy. */
int sc_backup(sctx *s, const char *why, serr *e) {
    char id[48], base[PATH_MAX], partial[PATH_MAX], final[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    stamp_time_id(id, sizeof(id));
    snprintf(base, sizeof(base), "%s/backups/%s", s->c->data_dir, s->name);
    snprintf(partial, sizeof(partial), "%s/%s.partial", base, id);
    snprintf(final, sizeof(final), "%s/%s", base, id);
    int rc = mkdir_p(partial, 0750, e);
    if (rc) return rc;
    snprintf(src, sizeof(src), "%s/volumes", s->dir);
    snprintf(dst, sizeof(dst), "%s/volumes", partial);
    if (path_exists(src)) {
        if ((rc = copy_tree(src, dst, e)) || (rc = verify_copy(src, dst, e))) {
            remove_tree(partial, NULL);
            return rc;
        }
    }
    snprintf(dst, sizeof(dst), "%s/status.json", partial);
    if ((rc = write_json_file(dst, s->r.status, e))) goto fail;
    json_t *files;
    int64_t bytes;
    if ((rc = manifest_build(partial, &files, &bytes, e))) goto fail;
    json_t *man = json_pack("{s:s,s:s,s:s,s:I,s:o,s:I}", "stamp", s->name, "id", id, "reason", why,
                            "createdMs", (json_int_t)now_ms(), "files", files, "bytes",
                            (json_int_t)bytes);
    snprintf(dst, sizeof(dst), "%s/manifest.json", partial);
    rc = write_json_file(dst, man, e);
    size_t nfiles = json_array_size(files);
    json_decref(man);
    if (rc) goto fail;
    if (rename(partial, final) != 0) {
        rc = serr_set(e, SE_IO, "rename %s: %s", partial, strerror(errno));
        goto fail;
    }
    json_t *list = json_object_get(s->r.status, "backups");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(s->r.status, "backups", list);
    }
    json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "id", id, "path", final,
                                          "reason", why, "timeMs", (json_int_t)now_ms(), "files",
                                          (json_int_t)nfiles, "bytes", (json_int_t)bytes));
    while (json_array_size(list) > 20) json_array_remove(list, 0);
    s->dirty = true;
    sc_event(s, "Normal", "BackupCompleted", "backup %s: %zu files, %lld bytes, verified (%s)", id,
          nfiles, (long long)bytes, why);
    return 0;
fail:
    remove_tree(partial, NULL);
    return rc;
}

/* Remove leftovers of a backup or archive interrupted by a crash. */
void sc_remove_partials(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 8 && strcmp(de->d_name + n - 8, ".partial") == 0) {
            char p[PATH_MAX];
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            remove_tree(p, NULL);
        }
    }
    closedir(d);
}

void sc_snapshot_metrics(sctx *s, const char *dir) {
    replica_ref reps[SC_MAX_REPLICA_REFS];
    int n = sc_replicas_of(s, false, SCALE_FULL, reps, SC_MAX_REPLICA_REFS);
    for (int i = 0; i < n; i++) {
        char url[256], path[PATH_MAX];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", reps[i].port, s->t.metrics_path);
        httpc_req rq = {.url = url, .timeout_ms = s->c->cfg->probe_timeout_ms};
        long status;
        sbuf body;
        if (httpc_do(&rq, &status, &body, NULL) != 0) continue;
        snprintf(path, sizeof(path), "%s/%s-%d.prom", dir, reps[i].st->name, reps[i].idx);
        if (status == 200) write_file_atomic(path, body.data, body.len, 0640, NULL);
        sbuf_free(&body);
    }
}

int sc_archive(sctx *s, serr *e) {
    char base[PATH_MAX], partial[PATH_MAX], final[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    snprintf(base, sizeof(base), "%s/archive", s->c->data_dir);
    snprintf(partial, sizeof(partial), "%s/%s.partial", base, s->name);
    snprintf(final, sizeof(final), "%s/%s", base, s->name);
    remove_tree(partial, NULL);
    if (path_exists(final)) remove_tree(final, NULL); /* an older stamp of the same name */
    int rc = mkdir_p(partial, 0750, e);
    if (rc) return rc;
    static const char *const subs[] = {"logs", "steps", "quarantine"};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        snprintf(src, sizeof(src), "%s/%s", s->dir, subs[i]);
        snprintf(dst, sizeof(dst), "%s/%s", partial, subs[i]);
        if (!path_exists(src)) continue;
        if ((rc = copy_tree(src, dst, e)) || (rc = verify_copy(src, dst, e))) goto fail;
    }
    json_t *evs = NULL, *aud = NULL;
    if ((rc = store_events(s->c->st, "Stamp", s->name, 10000, &evs, e))) goto fail;
    snprintf(dst, sizeof(dst), "%s/events.json", partial);
    rc = write_json_file(dst, evs, e);
    json_decref(evs);
    if (rc) goto fail;
    if ((rc = store_audit_list(s->c->st, "Stamp", s->name, 10000, &aud, e))) goto fail;
    snprintf(dst, sizeof(dst), "%s/audit.json", partial);
    rc = write_json_file(dst, aud, e);
    json_decref(aud);
    if (rc) goto fail;
    json_t *res = resource_to_json(&s->r);
    snprintf(dst, sizeof(dst), "%s/stamp.json", partial);
    rc = write_json_file(dst, res, e);
    json_decref(res);
    if (rc) goto fail;
    json_t *files;
    int64_t bytes;
    if ((rc = manifest_build(partial, &files, &bytes, e))) goto fail;
    int64_t until = now_ms() + s->c->cfg->archive_retention_ms;
    size_t nfiles = json_array_size(files);
    json_t *man = json_pack("{s:s,s:I,s:I,s:o,s:I}", "stamp", s->name, "createdMs",
                            (json_int_t)now_ms(), "retainUntilMs", (json_int_t)until, "files",
                            files, "bytes", (json_int_t)bytes);
    snprintf(dst, sizeof(dst), "%s/manifest.json", partial);
    rc = write_json_file(dst, man, e);
    json_decref(man);
    if (rc) goto fail;
    if (rename(partial, final) != 0) {
        rc = serr_set(e, SE_IO, "rename %s: %s", partial, strerror(errno));
        goto fail;
    }
    json_t *rt = jchild(s->r.status, "retire");
    json_object_set_new(rt, "archive", json_pack("{s:s,s:I,s:I,s:I}", "path", final, "files",
                                                 (json_int_t)nfiles, "bytes", (json_int_t)bytes,
                                                 "retainUntilMs", (json_int_t)until));
    s->dirty = true;
    char d[32];
    sc_event(s, "Normal", "Archived", "archive %s: %zu files, %lld bytes, verified, kept %s", final,
          nfiles, (long long)bytes, fmt_duration(s->c->cfg->archive_retention_ms, d, sizeof(d)));
    return 0;
fail:
    remove_tree(partial, NULL);
    return rc;
}

/* A backup asked for with `stampctl backup`. */
int sc_pending_backup(sctx *s, serr *e) {
    int64_t want_n = s->in.backups;
    if (want_n <= jint(s->r.status, "backupsDone", 0)) return 0;
    if (s->phase == SP_DELETING || s->phase == SP_DELETED || s->phase == SP_CREATING) return 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/backups/%s", s->c->data_dir, s->name);
    sc_remove_partials(dir);
    int rc = sc_backup(s, "requested", e);
    if (rc) return rc;
    json_object_set_new(s->r.status, "backupsDone", json_integer(want_n));
    s->dirty = true;
    return sc_save(s, e);
}

