/*
 * restore.c - restore from backup: a stamp deployed from a Deleted stamp's
 * verified backup, its local state put back before its workloads start.
 *
 * Where the backup is: the retirement's first step writes it to
 * DATA/backups/<stamp>/<id> (volumes + status.json + manifest.json with the
 * SHA-256 of every file); purge removes the stamp's directory only, so the
 * backups stay, with the archive, until the archive's retention passes
 * (status.retire.archive.retainUntilMs, archive-retention after the
 * archive was written), when sc_deleted removes the archive, the backups
 * and the record.  So "retention passed" is now >= retainUntilMs: from
 * then on the backup is about to go (or gone) and a restore is refused.
 * Stamp backups are never copied to blob storage, so there is no remote
 * copy to fall back to.
 *
 * Two halves:
 *   stamp_restore (the API, on a job-pool thread): the phase table, the
 *     retention, the name, every file of the backup hashed against its
 *     manifest; only then stamp_deploy with spec.restoreFrom {stamp,
 *     backup, path, sha256 (of the manifest), files, bytes}.  A refusal
 *     creates nothing.
 *   sc_restore (the controller, Creating, before any step): a check-then-
 *     act job copies the backup's volumes into <stampdir>/volumes.restore,
 *     hashes each copy against the manifest, renames it to volumes and
 *     writes <stampdir>/restore.json.  A crash at any point is finished by
 *     the next run: a partial copy is started again, a rename whose marker
 *     is missing is recognised by hashing what is in place.  Progress is
 *     status.restore {phase, backup, files, bytes, verified, job}.
 *
 * Why a new name (--as): the Deleted record is what keeps the retirement's
 * archive, backups, events and audit until the retention; a restore under
 * the same name would replace that record and, at its own retirement,
 * overwrite the first life's archive (DATA/archive/<name>).  So the name
 * must be new; the refusal suggests a free one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/naming.h"
#include "core/template.h"
#include "reconcile/phase.h"
#include "stamp/actions.h"
#include "stamp/internal.h"
#include "util/util.h"

#define MANIFEST_MAX (16 << 20)

/* A manifest path is relative, with no empty, "." or ".." segment: it may
 * never lead out of the backup or the stamp's directory. */
static bool rel_path_ok(const char *p) {
    if (p == NULL || *p == '\0' || *p == '/' || strlen(p) >= PATH_MAX / 2) return false;
    const char *s = p;
    while (*s) {
        const char *end = strchr(s, '/');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return false;
        s += n;
        if (*s == '/') s++;
    }
    return p[strlen(p) - 1] != '/';
}

/* Reads bdir/manifest.json: *man (the JSON) and sha (the SHA-256 of the
 * file as stored). */
static int manifest_read(const char *bdir, const char *id, json_t **man, char sha[65], serr *e) {
    char path[PATH_MAX], *text = NULL;
    size_t len = 0;
    int rc;
    if ((rc = str_fmt(path, sizeof(path), e, "path", "%s/manifest.json", bdir))) return rc;
    if (!path_exists(bdir))
        return serr_set(e, SE_CONFLICT, "backup %s is gone (%s missing)", id, bdir);
    if (read_file(path, MANIFEST_MAX, &text, &len, NULL) != 0)
        return serr_set(e, SE_CONFLICT, "backup %s: file manifest.json is missing or unreadable", id);
    sha256_hex(text, len, sha);
    json_error_t je;
    *man = json_loadb(text, len, 0, &je);
    free(text);
    if (*man == NULL || !json_is_array(json_object_get(*man, "files"))) {
        json_decref(*man);
        *man = NULL;
        return serr_set(e, SE_CONFLICT, "backup %s: file manifest.json is not a manifest", id);
    }
    return 0;
}

/* One manifest entry: its path checked, file root/<path> (when given) read
 * and hashed against it.  what says whose file for the message. */
static int entry_check(const char *id, json_t *f, const char *root, const char *file, serr *e) {
    const char *rel = jstr(f, "path", NULL), *want = jstr(f, "sha256", "");
    if (!rel_path_ok(rel))
        return serr_set(e, SE_CONFLICT, "backup %s: manifest entry \"%s\" is not a relative path", id,
                        rel ? rel : "");
    char path[PATH_MAX], hex[65];
    int rc;
    if (file == NULL) {
        if ((rc = str_fmt(path, sizeof(path), e, "path", "%s/%s", root, rel))) return rc;
        file = path;
    }
    int64_t size = 0;
    serr he = {0};
    if (sha256_file_hex(file, hex, &size, &he) != 0)
        return serr_set(e, SE_CONFLICT, "backup %s: file %s is missing or unreadable", id, rel);
    if (strcmp(hex, want) != 0 || size != jint(f, "size", -1))
        return serr_set(e, SE_CONFLICT,
                        "backup %s: file %s fails its hash check (sha256 %.12s..., %lld bytes; the "
                        "manifest says %.12s..., %lld bytes)",
                        id, rel, hex, (long long)size, want, (long long)jint(f, "size", -1));
    return 0;
}

/* Every file of the manifest, hashed; *files and *bytes count the
 * volumes' (what a restore puts back). */
static int backup_verify(const char *bdir, const char *id, json_t **man, char sha[65],
                         int64_t *files, int64_t *bytes, serr *e) {
    int rc = manifest_read(bdir, id, man, sha, e);
    if (rc) return rc;
    size_t i;
    json_t *f;
    *files = 0;
    *bytes = 0;
    json_array_foreach(json_object_get(*man, "files"), i, f) {
        if ((rc = entry_check(id, f, bdir, NULL, e))) {
            json_decref(*man);
            *man = NULL;
            return rc;
        }
        if (!str_has_prefix(jstr(f, "path", ""), "volumes/")) continue; /* status.json */
        (*files)++;
        *bytes += jint(f, "size", 0);
    }
    return 0;
}

/* ---- the API half ---- */

/* The backup to restore: id (or the newest retirement backup, else the
 * newest) among status.backups. */
static json_t *pick_backup(json_t *status, const char *id) {
    json_t *list = json_object_get(status, "backups"), *b, *found = NULL;
    size_t i;
    json_array_foreach(list, i, b) {
        if (id ? strcmp(jstr(b, "id", ""), id) == 0 : strcmp(jstr(b, "reason", ""), "retire") == 0)
            found = b;
    }
    if (found == NULL && id == NULL && json_array_size(list) > 0)
        found = json_array_get(list, json_array_size(list) - 1);
    return found;
}

/* A free name next to the source's, for the refusal's example. */
static void suggest_name(ctl_ctx *c, const char *prefix, const char *code, const char *sid,
                         char *out, size_t len) {
    int64_t n = 0;
    out[0] = '\0';
    if (parse_i64(sid, 0, 999, &n) != 0) n = 0;
    for (int64_t k = n + 1; k <= 999; k++) {
        char cand[STAMP_NAME_MAX + 1];
        resource r;
        resource_init(&r);
        if (str_fmt(cand, sizeof(cand), NULL, "name", "%s-%s-%03lld", prefix, code, (long long)k)) break;
        int rc = store_get(c->st, "Stamp", cand, &r, NULL);
        resource_free(&r);
        if (rc == SE_NOTFOUND) {
            str_copy(out, len, cand);
            return;
        }
    }
}

/* The stamp id of new name as: "<prefix>-<code>-<id>", the id normalised
 * as deploy does (so the name deploy builds is as itself). */
static int name_for_region(const char *as, const char *prefix, const char *code, const char *region,
                           char *sid, size_t sidlen, serr *e) {
    char head[STAMP_NAME_MAX + 8], norm[32];
    int rc;
    if ((rc = str_fmt(head, sizeof(head), e, "name", "%s-%s-", prefix, code))) return rc;
    if (!name_valid(as, STAMP_NAME_MAX) || !str_has_prefix(as, head) ||
        stamp_id_normalize(as + strlen(head), norm, sizeof(norm), NULL) != 0 ||
        strcmp(norm, as + strlen(head)) != 0 || !str_copy(sid, sidlen, norm))
        return serr_set(e, SE_INVAL,
                        "--as %s: a restore stays in the backed-up stamp's region (%s), so the name "
                        "must be %s<id> (like %s004)",
                        as, region, head, head);
    return 0;
}

/* Long: the checks in the order their refusals must come (phase, retention,
 * name, target, backup, hashes), each next to the value it guards, then one
 * deploy; nothing is written before the last check passes. */
int stamp_restore(ctl_ctx *c, const stamp_restore_req *q, json_t **answer, int *status, serr *e) {
    resource src, dst;
    resource_init(&src);
    resource_init(&dst);
    json_t *man = NULL, *from = NULL;
    tpl *t = NULL;
    int rc;
    if ((rc = store_get(c->st, "Stamp", q->name, &src, e))) goto done;
    if ((rc = fsm_check_op(&stamp_fsm, q->name, phase_of(&stamp_fsm, &src), SO_RESTORE, e))) goto done;
    json_t *ts = json_object_get(src.spec, "templateSpec");
    const char *region = jstr(src.spec, "region", ""), *code = jstr(src.spec, "regionCode", ""),
               *tname = jstr(src.spec, "template", "");
    t = malloc(sizeof(*t));
    if (t == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = tpl_parse(ts, t, e))) {
        serr_wrap(e, "stamp %s: its template spec", q->name);
        goto done;
    }
    const char *prefix = t->name_prefix ? t->name_prefix : c->cfg->name_prefix;
    /* Retention: from retainUntilMs on, the backup goes with the archive. */
    int64_t until = jint(json_object_get(jchild(src.status, "retire"), "archive"), "retainUntilMs", 0);
    char tb[FMT_TIME_LEN];
    if (until > 0 && now_ms() >= until) {
        rc = serr_set(e, SE_CONFLICT,
                      "restore of %s refused: the archive's retention passed at %s; its backups are "
                      "removed with the archive",
                      q->name, fmt_time_rfc3339(until, tb, sizeof(tb)));
        goto done;
    }
    if (q->as == NULL || strcmp(q->as, q->name) == 0) {
        char sug[STAMP_NAME_MAX + 1];
        suggest_name(c, prefix, code, jstr(src.spec, "stampId", ""), sug, sizeof(sug));
        rc = serr_set(e, SE_INVAL,
                      "restore of %s needs a new name (--as NAME%s%s%s): the Deleted record keeps "
                      "its archive, backups and audit until the retention passes, and a stamp of "
                      "the same name would overwrite that archive when it retires",
                      q->name, sug[0] ? ", like " : "", sug, sug[0] ? ", a free one" : "");
        goto done;
    }
    char sid[32];
    if ((rc = name_for_region(q->as, prefix, code, region, sid, sizeof(sid), e))) goto done;
    rc = store_get(c->st, "Stamp", q->as, &dst, e);
    if (rc == 0) {
        rc = serr_set(e, SE_EXISTS, "stamp %s already exists (phase %s); restore into a name no stamp has",
                      q->as, jstr(dst.status, "phase", "?"));
        goto done;
    }
    if (rc != SE_NOTFOUND) goto done;
    serr_clear(e);
    json_t *b = pick_backup(src.status, q->backup);
    if (b == NULL) {
        rc = q->backup ? serr_set(e, SE_NOTFOUND, "stamp %s has no backup %s", q->name, q->backup)
                       : serr_set(e, SE_CONFLICT, "stamp %s has no backup to restore", q->name);
        goto done;
    }
    const char *id = jstr(b, "id", "");
    char bdir[PATH_MAX], sha[65];
    if (!name_valid(id, 47) ||
        (rc = str_fmt(bdir, sizeof(bdir), e, "path", "%s/backups/%s/%s", c->data_dir, q->name, id))) {
        if (rc == 0) rc = serr_set(e, SE_CONFLICT, "stamp %s: backup id \"%s\" is not one", q->name, id);
        goto done;
    }
    int64_t files, bytes;
    if ((rc = backup_verify(bdir, id, &man, sha, &files, &bytes, e))) {
        serr_wrap(e, "restore of %s refused", q->name);
        goto done;
    }
    from = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "stamp", q->name, "backup", id, "path", bdir,
                     "sha256", sha, "files", (json_int_t)files, "bytes", (json_int_t)bytes,
                     "retainUntilMs", (json_int_t)until);
    stamp_deploy_req dq = {.region = region, .stamp_id = sid, .tname = tname,
                           .params = json_object_get(src.spec, "parameters"), .user = q->user,
                           .dry_run = q->dry_run,
                           .revision = jint(src.spec, "templateRevision", 0),
                           .restore_from = from, .template_spec = ts, .create_only = true};
    char name[STAMP_NAME_MAX + 1];
    /* create_only: a stamp of that name deployed since the check above
     * (while the backup was hashed) is SE_EXISTS, never redeployed with
     * the backup's spec: that deploy, not this restore, won. */
    if ((rc = stamp_deploy(c, &dq, name, sizeof(name), answer, status, e))) {
        if (rc == SE_EXISTS) serr_wrap(e, "restore of %s as %s: nothing restored", q->name, q->as);
        goto done;
    }
    if (strcmp(name, q->as) != 0 || *status != 201) {
        /* Cannot be: create_only creates or fails. */
        json_decref(*answer);
        *answer = NULL;
        rc = serr_set(e, SE_EXISTS, "stamp %s was deployed meanwhile; nothing restored", q->as);
        goto done;
    }
    if (q->dry_run) {
        json_object_set_new(*answer, "operation", json_string("restore"));
        goto done;
    }
    char msg[400]; /* event messages, for people: a cut is harmless */
    str_fmt_cut(msg, sizeof(msg), "restore as %s from backup %s (%lld volume files, %lld bytes, "
                "verified) requested by %s", q->as, id, (long long)files, (long long)bytes, q->user);
    store_event ev = {.type = "Normal", .reason = "RestoreRequested", .message = msg};
    store_event_add(c->st, "Stamp", q->name, &ev, NULL);
    str_fmt_cut(msg, sizeof(msg), "restore of %s from backup %s (%lld volume files, %lld bytes, "
                "verified) requested by %s", q->name, id, (long long)files, (long long)bytes, q->user);
    store_event_add(c->st, "Stamp", q->as, &ev, NULL);
done:
    free(t);
    json_decref(man);
    json_decref(from);
    resource_free(&src);
    resource_free(&dst);
    return rc;
}

/* ---- the controller half ---- */

typedef struct restore_job {
    char dir[PATH_MAX];  /* the stamp's */
    char bdir[PATH_MAX]; /* the backup's */
    char id[64];
    char sha[65];        /* of the manifest, as the API verified it */
} restore_job;

/* Every "volumes/" file of the manifest under root (the stamp's volumes
 * or the copy): 0 when all are there and match. */
static int volumes_match(json_t *man, const char *id, const char *root, serr *e) {
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(man, "files"), i, f) {
        const char *rel = jstr(f, "path", "");
        if (!str_has_prefix(rel, "volumes/")) continue;
        char path[PATH_MAX];
        int rc;
        if ((rc = str_fmt(path, sizeof(path), e, "path", "%s/%s", root, rel + 8)) ||
            (rc = entry_check(id, f, NULL, path, e)))
            return rc;
    }
    return 0;
}

/* Whether the tree at path holds a regular file (*found names it). */
static bool has_files(const char *path, char *found, size_t len) {
    DIR *d = opendir(path);
    if (d == NULL) return false;
    struct dirent *de;
    bool any = false;
    char *child = malloc(PATH_MAX);
    while (!any && child && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (snprintf(child, PATH_MAX, "%s/%s", path, de->d_name) >= PATH_MAX) continue;
        struct stat st;
        if (lstat(child, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) any = has_files(child, found, len);
        else if ((any = true)) str_copy(found, len, child);
    }
    free(child);
    closedir(d);
    return any;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

static int marker_result(const char *marker, const char *id, json_t **result) {
    char *text = NULL;
    if (read_file(marker, 1 << 16, &text, NULL, NULL) != 0) return -1;
    json_t *m = json_loads(text, 0, NULL);
    free(text);
    if (m && strcmp(jstr(m, "backup", ""), id) == 0) {
        *result = m;
        return 0;
    }
    json_decref(m);
    return -1;
}

static int write_marker(const char *marker, const char *id, int64_t files, int64_t bytes,
                        json_t **result, serr *e) {
    json_t *m = json_pack("{s:s,s:I,s:I,s:I,s:I}", "backup", id, "files", (json_int_t)files, "bytes",
                          (json_int_t)bytes, "verified", (json_int_t)files, "timeMs",
                          (json_int_t)now_ms());
    char *text = json_dumps(m, JSON_SORT_KEYS);
    int rc = text ? write_file_atomic(marker, text, strlen(text), 0640, e)
                  : serr_set(e, SE_NOMEM, "out of memory");
    free(text);
    if (rc == 0) *result = m;
    else json_decref(m);
    return rc;
}

/* Paths of one run, on the heap. */
typedef struct restore_paths {
    char vol[PATH_MAX], partial[PATH_MAX], marker[PATH_MAX], src[PATH_MAX], dst[PATH_MAX],
        found[PATH_MAX];
} restore_paths;

/* Check-then-act: the marker of this backup is the answer; volumes in
 * place that match the manifest are a rename whose marker a crash cut
 * off; otherwise copy, verify each file, rename, mark. */
static int restore_body(restore_job *j, restore_paths *P, json_t **result, serr *e) {
    int rc;
    if ((rc = str_fmt(P->vol, PATH_MAX, e, "path", "%s/volumes", j->dir)) ||
        (rc = str_fmt(P->partial, PATH_MAX, e, "path", "%s/volumes.restore", j->dir)) ||
        (rc = str_fmt(P->marker, PATH_MAX, e, "path", "%s/restore.json", j->dir)))
        return rc;
    if (marker_result(P->marker, j->id, result) == 0) return 0;
    json_t *man = NULL;
    char sha[65];
    if ((rc = manifest_read(j->bdir, j->id, &man, sha, e))) return rc;
    if (strcmp(sha, j->sha) != 0) {
        rc = serr_set(e, SE_CONFLICT, "backup %s: file manifest.json changed since the restore was "
                      "requested (sha256 %.12s..., then %.12s...)", j->id, sha, j->sha);
        goto out;
    }
    int64_t files = 0, bytes = 0;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(man, "files"), i, f) {
        if (!str_has_prefix(jstr(f, "path", ""), "volumes/")) continue;
        files++;
        bytes += jint(f, "size", 0);
    }
    if (path_exists(P->vol)) {
        serr ve = {0};
        if (volumes_match(man, j->id, P->vol, &ve) == 0) {
            rc = write_marker(P->marker, j->id, files, bytes, result, e);
            goto out;
        }
        if (has_files(P->vol, P->found, PATH_MAX)) {
            rc = serr_set(e, SE_CONFLICT, "%s holds %s, which is not the backup's; not overwritten",
                          P->vol, P->found);
            goto out;
        }
        if ((rc = remove_tree(P->vol, e))) goto out; /* empty directories only */
    }
    if ((rc = remove_tree(P->partial, e)) || (rc = mkdir_p(P->partial, 0750, e))) goto out;
    json_array_foreach(json_object_get(man, "files"), i, f) {
        const char *rel = jstr(f, "path", "");
        if (!str_has_prefix(rel, "volumes/")) continue;
        if (!rel_path_ok(rel)) {
            rc = serr_set(e, SE_CONFLICT, "backup %s: manifest entry \"%s\" is not a relative path",
                          j->id, rel);
            goto out;
        }
        if ((rc = str_fmt(P->src, PATH_MAX, e, "path", "%s/%s", j->bdir, rel)) ||
            (rc = str_fmt(P->dst, PATH_MAX, e, "path", "%s/%s", P->partial, rel + 8)))
            goto out;
        char *slash = strrchr(P->dst, '/');
        *slash = '\0';
        rc = mkdir_p(P->dst, 0750, e);
        *slash = '/';
        if (rc || (rc = copy_tree(P->src, P->dst, e))) goto out;
        /* Each copy read back and compared with the manifest. */
        if ((rc = entry_check(j->id, f, NULL, P->dst, e))) goto out;
        *slash = '\0';
        fsync_dir(P->dst);
        *slash = '/';
    }
    if (rename(P->partial, P->vol) != 0) {
        rc = serr_set(e, SE_IO, "rename %s: %s", P->partial, strerror(errno));
        goto out;
    }
    fsync_dir(j->dir);
    rc = write_marker(P->marker, j->id, files, bytes, result, e);
out:
    json_decref(man);
    if (rc) remove_tree(P->partial, NULL);
    return rc;
}

static int restore_run(void *arg, json_t **result, serr *e) {
    restore_paths *P = malloc(sizeof(*P));
    if (P == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = restore_body(arg, P, result, e);
    free(P);
    return rc;
}

int sc_restore(sctx *s, bool *go_on, serr *e) {
    json_t *rf = json_object_get(s->r.spec, "restoreFrom");
    *go_on = true;
    if (!json_is_object(rf)) return 0;
    json_t *rec = jchild(s->r.status, "restore");
    const char *phase = jstr(rec, "phase", "Pending");
    if (strcmp(phase, "Done") == 0) return 0;
    if (strcmp(phase, "Failed") == 0 && s->in.retry <= jint(rec, "retry", 0)) {
        /* Failed, and the phase change did not happen (a write failed):
         * again.  A redeploy (which raises retry) runs the restore again. */
        *go_on = false;
        return sc_change(s, SP_FAILED, "RestoreFailed", jstr(rec, "message", "restore failed"), e);
    }
    *go_on = false;
    const char *id = jstr(rf, "backup", ""), *from = jstr(rf, "stamp", "");
    if (strcmp(phase, "Copying") != 0) {
        sc_set_str(s, rec, "phase", "Copying");
        sc_set_str(s, rec, "stamp", from);
        sc_set_str(s, rec, "backup", id);
        sc_set_int(s, rec, "files", jint(rf, "files", 0));
        sc_set_int(s, rec, "bytes", jint(rf, "bytes", 0));
        sc_set_int(s, rec, "verified", 0);
        json_object_del(rec, "message");
        sc_event(s, "Normal", "RestoreStarted", "putting back backup %s of %s (%lld files, %lld bytes)",
                 id, from, (long long)jint(rf, "files", 0), (long long)jint(rf, "bytes", 0));
    }
    char wait[300];
    str_fmt_cut(wait, sizeof(wait), "restoring backup %s of %s", id, from);
    sc_set_str(s, s->r.status, "waitingFor", wait);
    restore_job *j = calloc(1, sizeof(*j));
    if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc;
    if (!str_copy(j->dir, sizeof(j->dir), s->dir) || !str_copy(j->bdir, sizeof(j->bdir), jstr(rf, "path", "")) ||
        !str_copy(j->id, sizeof(j->id), id) || !str_copy(j->sha, sizeof(j->sha), jstr(rf, "sha256", ""))) {
        free(j);
        rc = serr_set(e, SE_INVAL, "spec.restoreFrom: a value is too long");
        goto failed;
    }
    char key[JOBS_KEY_MAX];
    snprintf(key, sizeof(key), "Stamp/%s/restore", s->name);
    int state;
    json_t *res = NULL;
    rc = sc_job(s, rec, key, restore_run, j, free, &state, &res, e);
    if (rc == 0 && state != JOB_DONE) return sc_save(s, e);
    if (rc && state != JOB_DONE) return rc;
    if (rc) goto failed;
    sc_set_str(s, rec, "phase", "Done");
    sc_set_int(s, rec, "files", jint(res, "files", 0));
    sc_set_int(s, rec, "bytes", jint(res, "bytes", 0));
    sc_set_int(s, rec, "verified", jint(res, "verified", 0));
    json_decref(res);
    json_object_del(s->r.status, "waitingFor");
    sc_event(s, "Normal", "Restored",
             "backup %s of %s: %lld files, %lld bytes put back, each verified; the workloads start now",
             id, from, (long long)jint(rec, "files", 0), (long long)jint(rec, "bytes", 0));
    *go_on = true;
    return sc_save(s, e);
failed:;
    char msg[SERR_MSG_MAX];
    str_copy(msg, sizeof(msg), e->msg);
    serr_clear(e);
    sc_set_str(s, rec, "phase", "Failed");
    sc_set_str(s, rec, "message", msg);
    sc_set_int(s, rec, "retry", s->in.retry);
    sc_set_str(s, s->r.status, "lastError", msg);
    sc_event(s, "Warning", "RestoreFailed", "%s", msg);
    return sc_change(s, SP_FAILED, "RestoreFailed", msg, e);
}
