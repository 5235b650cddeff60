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

#include "reconcile/jobs.h"
#include "stamp/internal.h"
#include "util/httpc.h"
#include "util/util.h"

typedef int (*walk_fn)(const char *path, const char *rel, void *arg);

/* Both paths of one entry, on the heap: a walk recurses once per level. */
typedef struct walk_frame {
    char path[PATH_MAX];
    char crel[PATH_MAX];
    char cpath[PATH_MAX];
} walk_frame;

static int walk(const char *root, const char *rel, walk_fn fn, void *arg, serr *e) {
    walk_frame *f = malloc(sizeof(*f));
    if (f == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = str_fmt(f->path, sizeof(f->path), e, "path", "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = rc ? NULL : opendir(f->path);
    if (d == NULL) {
        if (rc == 0 && errno != ENOENT) rc = serr_set(e, SE_IO, "opendir %s: %s", f->path, strerror(errno));
        free(f);
        return rc;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if ((rc = str_fmt(f->crel, sizeof(f->crel), e, "path", "%s%s%s", rel, *rel ? "/" : "", de->d_name)) ||
            (rc = str_fmt(f->cpath, sizeof(f->cpath), e, "path", "%s/%s", root, f->crel)))
            break;
        struct stat stt;
        if (lstat(f->cpath, &stt) != 0) continue;
        if (S_ISDIR(stt.st_mode)) rc = walk(root, f->crel, fn, arg, e);
        else if (S_ISREG(stt.st_mode)) rc = fn(f->cpath, f->crel, arg);
    }
    closedir(d);
    free(f);
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
    struct stat st;
    if (stat(path, &st) != 0) return 0; /* gone since it was listed (a live volume) */
    int rc = sha256_file_hex(path, hex, &size, m->e);
    if (rc && !path_exists(path)) {
        serr_clear(m->e);
        return 0;
    }
    if (rc) return rc;
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    json_array_append_new(m->files, json_pack("{s:s,s:I,s:s,s:I}", "path", rel, "size", (json_int_t)size,
                                              "sha256", hex, "mtimeMs", (json_int_t)mtime));
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

/* Every source file not changed since the copy began (since_ms) must be in
 * the copy with the same hash.  A file written while it was copied (a live
 * volume: the workloads still run when a backup is taken) cannot be
 * compared with anything; it is counted in *changed and its copy kept as
 * read. */
static int verify_copy(const char *src, const char *dst, int64_t since_ms, int64_t *changed, serr *e) {
    json_t *a = NULL, *b = NULL;
    int64_t ba, bb;
    int rc = manifest_build(src, &a, &ba, e);
    if (rc == 0) rc = manifest_build(dst, &b, &bb, e);
    if (rc == 0) {
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
            if (!found && jint(fa, "mtimeMs", 0) >= since_ms - 1000) {
                /* mtime has a coarse clock on some filesystems: a second of slack. */
                (*changed)++;
                continue;
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

/* What a backup or archive job needs, copied when it is queued: the job
 * runs on the pool while the stamp's reconcile goes on. */
struct copy_paths;

typedef struct copy_job {
    ctl_ctx *c;
    char name[RES_NAME_MAX];
    char dir[PATH_MAX];
    char id[48];   /* backup id, chosen (and recorded) before the job starts */
    char why[32];
    json_t *doc;   /* status (backup) or the whole record (archive) */
    int (*body)(struct copy_job *j, struct copy_paths *P, json_t **result, serr *e);
} copy_job;

static void copy_job_free(void *arg) {
    copy_job *j = arg;
    if (j == NULL) return;
    json_decref(j->doc);
    free(j);
}

/* The paths of one backup or archive, on the heap. */
typedef struct copy_paths {
    char base[PATH_MAX], partial[PATH_MAX], final[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
} copy_paths;

/* a/b into out (PATH_MAX); a path that does not fit is an error, never cut. */
static int pj(char *out, const char *a, const char *b, serr *e) {
    return str_fmt(out, PATH_MAX, e, "path", "%s/%s", a, b);
}

/* A backup or archive job: its body with its paths on the heap. */
static int copy_job_run(void *arg, json_t **result, serr *e) {
    copy_job *j = arg;
    copy_paths *P = malloc(sizeof(*P));
    if (P == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = j->body(j, P, result, e);
    free(P);
    return rc;
}

/* Back up the stamp's local state (its volumes) and verify the copy.
 * Check-then-act: a backup of this id already in place is the answer. */
static int backup_job_paths(copy_job *j, copy_paths *P, json_t **result, serr *e) {
    char *base = P->base, *partial = P->partial, *final = P->final, *src = P->src, *dst = P->dst;
    int rc;
    if ((rc = str_fmt(base, PATH_MAX, e, "path", "%s/backups/%s", j->c->data_dir, j->name)) ||
        (rc = str_fmt(partial, PATH_MAX, e, "path", "%s/%s.partial", base, j->id)) ||
        (rc = pj(final, base, j->id, e)) || (rc = pj(dst, final, "manifest.json", e)))
        return rc;
    char *text = NULL;
    if (read_file(dst, 16 << 20, &text, NULL, NULL) == 0) {
        json_t *man = json_loads(text, 0, NULL);
        free(text);
        if (man) {
            *result = json_pack("{s:s,s:s,s:I,s:I}", "id", j->id, "path", final, "files",
                                (json_int_t)json_array_size(json_object_get(man, "files")), "bytes",
                                (json_int_t)jint(man, "bytes", 0));
            json_decref(man);
            return 0;
        }
    }
    remove_tree(partial, NULL);
    if ((rc = mkdir_p(partial, 0750, e))) return rc;
    if ((rc = pj(src, j->dir, "volumes", e)) || (rc = pj(dst, partial, "volumes", e))) goto fail;
    int64_t changed = 0, t0 = now_ms();
    if (path_exists(src) && ((rc = copy_tree(src, dst, e)) || (rc = verify_copy(src, dst, t0, &changed, e))))
        goto fail;
    if ((rc = pj(dst, partial, "status.json", e)) || (rc = write_json_file(dst, j->doc, e))) goto fail;
    json_t *files;
    int64_t bytes;
    if ((rc = manifest_build(partial, &files, &bytes, e))) goto fail;
    size_t nfiles = json_array_size(files);
    json_t *man = json_pack("{s:s,s:s,s:s,s:I,s:o,s:I}", "stamp", j->name, "id", j->id, "reason",
                            j->why, "createdMs", (json_int_t)now_ms(), "files", files, "bytes",
                            (json_int_t)bytes);
    /* Files the workloads wrote while they were copied (kept as read). */
    json_object_set_new(man, "changedWhileCopied", json_integer(changed));
    rc = pj(dst, partial, "manifest.json", e);
    if (rc == 0) rc = write_json_file(dst, man, e);
    json_decref(man);
    if (rc) goto fail;
    if (rename(partial, final) != 0) {
        rc = serr_set(e, SE_IO, "rename %s: %s", partial, strerror(errno));
        goto fail;
    }
    *result = json_pack("{s:s,s:s,s:I,s:I}", "id", j->id, "path", final, "files", (json_int_t)nfiles,
                        "bytes", (json_int_t)bytes);
    return 0;
fail:
    remove_tree(partial, NULL);
    return rc;
}

int sc_backup(sctx *s, json_t *rec, const char *why, int *state, serr *e) {
    const char *id = jstr(rec, "backupId", NULL);
    if (id == NULL) {
        /* The id is chosen and persisted before anything is copied, so a
         * restart finishes this backup rather than starting another. */
        char buf[48];
        stamp_time_id(buf, sizeof(buf));
        json_object_set_new(rec, "backupId", json_string(buf));
        s->dirty = true;
        int rc = sc_save(s, e);
        if (rc) return rc;
        id = jstr(rec, "backupId", "");
    }
    copy_job *j = calloc(1, sizeof(*j));
    if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    j->c = s->c;
    str_copy(j->name, sizeof(j->name), s->name);
    str_copy(j->dir, sizeof(j->dir), s->dir);
    str_copy(j->id, sizeof(j->id), id);
    str_copy(j->why, sizeof(j->why), why);
    j->doc = json_deep_copy(s->r.status);
    char key[JOBS_KEY_MAX];
    snprintf(key, sizeof(key), "Stamp/%s/backup/%s", s->name, id);
    json_t *res = NULL;
    j->body = backup_job_paths;
    int rc = sc_job(s, rec, key, copy_job_run, j, copy_job_free, state, &res, e);
    if (rc || *state != JOB_DONE) return rc;
    json_t *list = json_object_get(s->r.status, "backups");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(s->r.status, "backups", list);
    }
    json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "id", id, "path",
                                          jstr(res, "path", ""), "reason", why, "timeMs",
                                          (json_int_t)now_ms(), "files", (json_int_t)jint(res, "files", 0),
                                          "bytes", (json_int_t)jint(res, "bytes", 0)));
    while (json_array_size(list) > 20) json_array_remove(list, 0);
    sc_event(s, "Normal", "BackupCompleted", "backup %s: %lld files, %lld bytes, verified (%s)", id,
             (long long)jint(res, "files", 0), (long long)jint(res, "bytes", 0), why);
    json_object_del(rec, "backupId");
    json_decref(res);
    s->dirty = true;
    return 0;
}

/* The last scrape of every replica that still answers, into the
 * quarantine directory, on the job pool. */
typedef struct snapshot_run {
    int n;
    struct {
        int port;
        char label[RES_NAME_MAX + 16];
    } t[SC_MAX_REPLICA_REFS];
    char metrics_path[256];
    char dir[PATH_MAX];
    int64_t timeout_ms;
} snapshot_run;

static int snapshot_job(void *arg, json_t **result, serr *e) {
    (void)e;
    snapshot_run *r = arg;
    int kept = 0;
    for (int i = 0; i < r->n; i++) {
        char url[512], path[PATH_MAX];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", r->t[i].port, r->metrics_path);
        httpc_req rq = {.url = url, .timeout_ms = r->timeout_ms};
        long status;
        sbuf body;
        if (httpc_do(&rq, &status, &body, NULL) != 0) continue;
        if (snprintf(path, sizeof(path), "%s/%s.prom", r->dir, r->t[i].label) < (int)sizeof(path) &&
            status == 200 && write_file_atomic(path, body.data, body.len, 0640, NULL) == 0)
            kept++;
        sbuf_free(&body);
    }
    *result = json_pack("{s:i,s:i}", "replicas", r->n, "scraped", kept);
    return 0;
}

int sc_snapshot_metrics(sctx *s, json_t *rec, const char *dir, int *state, serr *e) {
    snapshot_run *r = calloc(1, sizeof(*r));
    if (r == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    replica_ref reps[SC_MAX_REPLICA_REFS];
    r->n = sc_replicas_of(s, false, SCALE_FULL, reps, SC_MAX_REPLICA_REFS);
    for (int i = 0; i < r->n; i++) {
        r->t[i].port = reps[i].port;
        snprintf(r->t[i].label, sizeof(r->t[i].label), "%s-%d", reps[i].st->name, reps[i].idx);
    }
    str_copy(r->metrics_path, sizeof(r->metrics_path), s->t.metrics_path);
    str_copy(r->dir, sizeof(r->dir), dir);
    r->timeout_ms = s->c->cfg->probe_timeout_ms;
    char key[JOBS_KEY_MAX];
    snprintf(key, sizeof(key), "Stamp/%s/snapshot", s->name);
    json_t *res = NULL;
    int rc = sc_job(s, rec, key, snapshot_job, r, free, state, &res, e);
    json_decref(res);
    return rc;
}

/* The archive: logs, step logs, quarantine, events, audit and the record,
 * each copy verified.  An archive of the same name in place is replaced:
 * an older stamp of that name, or this one's from a run cut short after
 * the rename. */
static int archive_job_paths(copy_job *j, copy_paths *P, json_t **result, serr *e) {
    char *base = P->base, *partial = P->partial, *final = P->final, *src = P->src, *dst = P->dst;
    int rc;
    if ((rc = pj(base, j->c->data_dir, "archive", e)) ||
        (rc = str_fmt(partial, PATH_MAX, e, "path", "%s/%s.partial", base, j->name)) ||
        (rc = pj(final, base, j->name, e)))
        return rc;
    remove_tree(partial, NULL);
    if (path_exists(final)) remove_tree(final, NULL); /* an older stamp of the same name */
    if ((rc = mkdir_p(partial, 0750, e))) return rc;
    static const char *const subs[] = {"logs", "steps", "quarantine"};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if ((rc = pj(src, j->dir, subs[i], e)) || (rc = pj(dst, partial, subs[i], e))) goto fail;
        if (!path_exists(src)) continue;
        int64_t changed = 0, t0 = now_ms();
        if ((rc = copy_tree(src, dst, e)) || (rc = verify_copy(src, dst, t0, &changed, e))) goto fail;
    }
    json_t *evs = NULL, *aud = NULL;
    if ((rc = store_events(j->c->st, "Stamp", j->name, 10000, &evs, e))) goto fail;
    rc = pj(dst, partial, "events.json", e);
    if (rc == 0) rc = write_json_file(dst, evs, e);
    json_decref(evs);
    if (rc) goto fail;
    if ((rc = store_audit_list(j->c->st, "Stamp", j->name, 10000, &aud, e))) goto fail;
    rc = pj(dst, partial, "audit.json", e);
    if (rc == 0) rc = write_json_file(dst, aud, e);
    json_decref(aud);
    if (rc) goto fail;
    rc = pj(dst, partial, "stamp.json", e);
    if (rc == 0) rc = write_json_file(dst, j->doc, e);
    if (rc) goto fail;
    json_t *files;
    int64_t bytes;
    if ((rc = manifest_build(partial, &files, &bytes, e))) goto fail;
    int64_t until = now_ms() + j->c->cfg->archive_retention_ms;
    size_t nfiles = json_array_size(files);
    json_t *man = json_pack("{s:s,s:I,s:I,s:o,s:I}", "stamp", j->name, "createdMs",
                            (json_int_t)now_ms(), "retainUntilMs", (json_int_t)until, "files",
                            files, "bytes", (json_int_t)bytes);
    rc = pj(dst, partial, "manifest.json", e);
    if (rc == 0) rc = write_json_file(dst, man, e);
    json_decref(man);
    if (rc) goto fail;
    if (rename(partial, final) != 0) {
        rc = serr_set(e, SE_IO, "rename %s: %s", partial, strerror(errno));
        goto fail;
    }
    *result = json_pack("{s:s,s:I,s:I,s:I}", "path", final, "files", (json_int_t)nfiles, "bytes",
                        (json_int_t)bytes, "retainUntilMs", (json_int_t)until);
    return 0;
fail:
    remove_tree(partial, NULL);
    return rc;
}

int sc_archive(sctx *s, json_t *rec, int *state, serr *e) {
    copy_job *j = calloc(1, sizeof(*j));
    if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    j->c = s->c;
    str_copy(j->name, sizeof(j->name), s->name);
    str_copy(j->dir, sizeof(j->dir), s->dir);
    j->doc = resource_to_json(&s->r);
    char key[JOBS_KEY_MAX];
    snprintf(key, sizeof(key), "Stamp/%s/archive", s->name);
    json_t *res = NULL;
    j->body = archive_job_paths;
    int rc = sc_job(s, rec, key, copy_job_run, j, copy_job_free, state, &res, e);
    if (rc || *state != JOB_DONE) return rc;
    json_object_set(rec, "archive", res);
    s->dirty = true;
    char d[32];
    sc_event(s, "Normal", "Archived", "archive %s: %lld files, %lld bytes, verified, kept %s",
             jstr(res, "path", ""), (long long)jint(res, "files", 0), (long long)jint(res, "bytes", 0),
             fmt_duration(s->c->cfg->archive_retention_ms, d, sizeof(d)));
    json_decref(res);
    return 0;
}

/* A backup asked for with `stampctl backup`: runs on the job pool while
 * the phase goes on; status.backupRequest says which request it answers. */
int sc_pending_backup(sctx *s, serr *e) {
    int64_t want_n = s->in.backups;
    if (want_n <= jint(s->r.status, "backupsDone", 0)) return 0;
    if (s->phase == SP_DELETING || s->phase == SP_DELETED || s->phase == SP_CREATING) return 0;
    json_t *rec = jchild(s->r.status, "backupRequest");
    int state;
    int rc = sc_backup(s, rec, "requested", &state, e);
    if (rc || state != JOB_DONE) return rc;
    json_object_del(s->r.status, "backupRequest");
    json_object_set_new(s->r.status, "backupsDone", json_integer(want_n));
    s->dirty = true;
    return sc_save(s, e);
}
