/*
 * ns_reap.c - one namespace's reap: its diagnostics, and the three steps
 * (stop, archive, delete) run by the step runner (reconcile/steps.h).  The
 * reaper that decides when (ns_reaper.c) and a manual reap (ns_reap_now)
 * both come here, under the namespace's lock.
 *
 * status.reap is the runner's progress plus the reap's own keys:
 *   startedMs   the first attempt (the upload window counts from it)
 *   timestamp   the archive's directory, fixed at the first attempt, so every
 *               retry and every restart writes the same blob paths
 *   attempts, lastError, nextAttemptMs   failed attempts and the next one
 *   step        stop | archive | delete | done (the runner's), with
 *               stepStartedMs and stepsDone
 * The runner writes a step's name before the step starts and the next one
 * once it is done, so after kill -9 a restart resumes the step that was
 * running, and "delete" is never written before the uploads verified.
 * Every step is check-then-act: stopping stopped pods, uploading a blob
 * again (same path, same bytes) and deleting what is gone are harmless.
 *
 * Memory: the archive holds one pod's log at a time (at most pod-log-max
 * plus stamp-run's marker line).
 *
 * Threading: one reap of a namespace at a time (nsi_reap_claim: the
 * controller, a manual reap job, an MTTC cleanup).  A reap takes the
 * namespace's lock (ns_lock) only to enter phase reaping and to leave it:
 * once the phase is reaping every change is refused under that lock, and
 * nothing but the reap writes the namespace, so its steps run without it
 * and no request waits for them.
 */
#include "ns/ns_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "blob/blob.h"
#include "reconcile/phase.h"
#include "reconcile/steps.h"
#include "util/confine.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"
#include "util/wallclock.h"

/* 20260125-010000 */
static void archive_stamp(int64_t ms, char *buf, size_t len) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(buf, len, "%Y%m%d-%H%M%S", &tm) == 0) str_copy(buf, len, "00000000-000000");
}

/* ---- diagnostics ---- */

typedef struct diag_item {
    char path[BLOB_PATH_MAX];
    const char *pod; /* whose log this is; NULL for the index */
    char *data;
    size_t len;
    bool truncated;
    int64_t dropped; /* bytes stamp-run cut from the pod's output */
} diag_item;

/* Called for each file of an archive; 0 or an error that ends the walk. */
typedef int (*diag_fn)(void *arg, const diag_item *it, serr *e);

/* When the pod wrote its violations annotation (now when unknown). */
static int64_t violation_time(ctl_ctx *c, const char *ns, const char *pod) {
    char ap[PATH_MAX];
    struct stat st;
    if (nsrt_dir(c, ns, NULL, ap, sizeof(ap)) != 0) return now_ms();
    size_t l = strlen(ap);
    int n = snprintf(ap + l, sizeof(ap) - l, "/pods/%s/annotations/%s", pod, NS_SENTINEL_KEY);
    if (n < 0 || (size_t)n >= sizeof(ap) - l || stat(ap, &st) != 0) return now_ms();
    return (int64_t)st.st_mtime * 1000;
}

/* The pod's violations record for sentinel-violations.json, read as the
 * pod wrote them (bytes, not the listing's display form); *rec NULL when
 * it reported none. */
static int violation_of(ctl_ctx *c, const char *ns, const char *pod, json_t **rec, serr *e) {
    *rec = NULL;
    char *v = NULL;
    size_t vlen = 0;
    serr ve = {0};
    if (nsrt_annotation(c, ns, pod, NS_SENTINEL_KEY, &v, &vlen, &ve) != 0 || vlen == 0) {
        free(v);
        return 0;
    }
    char ts[40];
    json_t *o = json_pack("{s:s,s:s}", "pod", pod, "timestamp",
                          fmt_time_rfc3339(violation_time(c, ns, pod), ts, sizeof(ts)));
    int rc = 0;
    if (utf8_valid(v, vlen)) {
        json_object_set_new(o, "violations", json_stringn(v, vlen));
    } else {
        /* Not text: shown with \xNN escapes, and the exact bytes kept in
         * base64 beside it. */
        size_t max = vlen * 4 + 1;
        char *shown = malloc(max), *b64 = nsrt_base64(v, vlen);
        if (shown == NULL || b64 == NULL) {
            rc = serr_set(e, SE_NOMEM, "out of memory");
        } else {
            json_object_set_new(o, "violations", json_string(utf8_sanitize(v, vlen, shown, max)));
            json_object_set_new(o, "violations_base64", json_string(b64));
            json_object_set_new(o, "violations_escaped", json_true());
        }
        free(shown);
        free(b64);
    }
    free(v);
    if (rc) json_decref(o);
    else *rec = o;
    return rc;
}

/* Hands fn, one at a time, everything a reap archives: every pod's log,
 * then sentinel-violations.json.  *violations: the pods that reported one. */
static int diag_each(ctl_ctx *c, const resource *r, const char *stamp, diag_fn fn, void *arg,
                     int *violations, serr *e) {
    char base[BLOB_PATH_MAX];
    int n = snprintf(base, sizeof(base), "%s/%s/%s", r->tenant, ns_bucket_of(r), stamp);
    if (n < 0 || (size_t)n >= sizeof(base))
        return serr_set(e, SE_INVAL, "namespace %s: archive path too long", r->name);
    json_t *pods = nsrt_pods(c, r->name), *index = json_array(), *p;
    size_t i;
    int rc = 0;
    json_array_foreach(pods, i, p) {
        diag_item it = {.pod = jstr(p, "name", "")};
        it.dropped = json_integer_value(json_object_get(p, "logBytesDropped"));
        n = snprintf(it.path, sizeof(it.path), "%s/logs/%s.log", base, it.pod);
        if (n < 0 || (size_t)n >= sizeof(it.path)) {
            rc = serr_set(e, SE_INVAL, "pod %s: archive path too long", it.pod);
            break;
        }
        /* A cut log is pod-log-max plus stamp-run's marker line. */
        rc = nsrt_pod_log(c, r->name, it.pod, (size_t)c->cfg->pod_log_max + LOGCAP_MARKER_MAX,
                          &it.data, &it.len, &it.truncated, e);
        if (rc == 0) rc = fn(arg, &it, e);
        free(it.data);
        json_t *rec = NULL;
        if (rc == 0) rc = violation_of(c, r->name, it.pod, &rec, e);
        if (rec) json_array_append_new(index, rec);
        if (rc) break;
    }
    json_decref(pods);
    *violations = (int)json_array_size(index);
    if (rc == 0) {
        diag_item it = {.pod = NULL};
        n = snprintf(it.path, sizeof(it.path), "%s/sentinel-violations.json", base);
        it.data = json_dumps(index, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (n < 0 || (size_t)n >= sizeof(it.path)) rc = serr_set(e, SE_INVAL, "archive path too long");
        else if (it.data == NULL) rc = serr_set(e, SE_NOMEM, "out of memory");
        else {
            it.len = strlen(it.data);
            rc = fn(arg, &it, e);
        }
        free(it.data);
    }
    json_decref(index);
    return rc;
}

typedef struct plan_arg {
    json_t *paths;
    int64_t bytes;
} plan_arg;

static int plan_one(void *arg, const diag_item *it, serr *e) {
    (void)e;
    plan_arg *pa = arg;
    json_array_append_new(pa->paths, json_string(it->path));
    pa->bytes += (int64_t)it->len;
    return 0;
}

json_t *ns_reap_plan(ctl_ctx *c, const resource *r) {
    char stamp[32];
    archive_stamp(now_ms(), stamp, sizeof(stamp));
    json_t *o = json_pack("{s:b,s:s,s:s}", "dry_run", 1, "namespace", r->name, "bucket_id",
                          ns_bucket_of(r));
    plan_arg pa = {.paths = json_array()};
    serr e = {0};
    int violations = 0;
    if (diag_each(c, r, stamp, plan_one, &pa, &violations, &e) == 0)
        json_object_set_new(o, "sentinel_violations", json_integer(violations));
    else
        json_object_set_new(o, "error", json_string(e.msg));
    int pods = 0, vols = 0;
    nsrt_counts(c, r->name, &pods, &vols);
    json_object_set_new(o, "container", json_string(c->cfg->diagnostic_container));
    json_object_set_new(o, "would_archive", pa.paths);
    json_object_set_new(o, "bytes", json_integer(pa.bytes));
    json_object_set_new(o, "would_delete", json_pack("{s:i,s:i}", "pods", pods, "volumes", vols));
    json_object_set_new(o, "status", json_string(fsm_phase_name(&ns_fsm, phase_of(&ns_fsm, r))));
    return o;
}

/* ---- the steps ---- */

typedef struct reap_ctx {
    ctl_ctx *c;
    resource *r;
    const char *user;
    const char *failed;   /* the step that failed (its metric label), NULL: none */
    /* the event the next write carries */
    const char *ev_reason, *ev_type;
    char ev_msg[SERR_MSG_MAX + 160];
} reap_ctx;

/* The runner's persist: the resource, with the event a step left. */
static int reap_persist(void *ctx, serr *e) {
    reap_ctx *x = ctx;
    store_event ev = {.type = x->ev_type, .reason = x->ev_reason, .message = x->ev_msg};
    int rc = store_update(x->c->st, x->r, x->ev_reason ? &ev : NULL, e);
    x->ev_reason = NULL;
    return rc;
}

static void set_event(reap_ctx *x, const char *reason, const char *type, const char *msg) {
    x->ev_reason = reason;
    x->ev_type = type;
    str_copy(x->ev_msg, sizeof(x->ev_msg), msg);
}

/* Stop every pod, so that their logs are complete. */
static int step_stop(void *ctx, json_t *progress, int *outcome, const char **redo, serr *e) {
    (void)progress, (void)outcome, (void)redo;
    reap_ctx *x = ctx;
    int rc = nsrt_stop_pods(x->c, x->r->name, x->c->cfg->ns_delete_timeout_ms, e);
    if (rc) x->failed = "stop";
    return rc;
}

typedef struct upload_arg {
    reap_ctx *x;
    json_t *paths, *files;
    int64_t bytes;
} upload_arg;

/* One file of the archive, stored and read back (size and SHA-256). */
static int upload_one(void *arg, const diag_item *it, serr *e) {
    upload_arg *u = arg;
    ctl_ctx *c = u->x->c;
    char sha[65];
    int rc = blob_put_verified(c->blobs, c->cfg->diagnostic_container, it->path, it->data, it->len,
                               sha, e);
    if (rc) return rc;
    u->bytes += (int64_t)it->len;
    json_array_append_new(u->paths, json_string(it->path));
    json_t *f = json_pack("{s:s,s:I,s:s}", "path", it->path, "size", (json_int_t)it->len, "sha256", sha);
    if (it->truncated) json_object_set_new(f, "truncated", json_true());
    if (it->dropped > 0) json_object_set_new(f, "logBytesDropped", json_integer(it->dropped));
    json_array_append_new(u->files, f);
    if (it->pod) log_info("Archived logs for pod %s", it->pod);
    return 0;
}

/* Every file stored and verified: recorded in status.diagnostics. */
static void archived(reap_ctx *x, upload_arg *u, int violations) {
    ctl_ctx *c = x->c;
    resource *r = x->r;
    log_info("Indexed %d sentinel violations", violations);
    json_t *diag = json_pack("{s:b,s:b,s:i,s:s,s:o,s:o,s:I,s:s}", "logs_archived", 1,
                             "sentinel_violations_indexed", 1, "sentinel_violations", violations,
                             "container", c->cfg->diagnostic_container, "blob_paths", u->paths,
                             "files", u->files, "bytes", (json_int_t)u->bytes, "store",
                             blob_describe(c->blobs));
    size_t nfiles = json_array_size(u->paths);
    u->paths = u->files = NULL; /* diag has them */
    json_object_set_new(r->status, "diagnostics", diag);
    metrics_inc("namespace_diagnostics_bytes_total", "", (double)u->bytes);
    ns_audit(c, x->user, r->tenant, "archive-diagnostics", r->name, ns_bucket_of(r), "ok",
             json_pack("{s:I,s:i}", "files", (json_int_t)nfiles, "violations", violations));
    set_event(x, "DiagnosticsArchived", "Normal", "diagnostics stored and verified");
}

/* Past the upload window: seed 004 reaps anyway.  Said everywhere. */
static void diagnostics_lost(reap_ctx *x, int64_t started, const serr *why) {
    ctl_ctx *c = x->c;
    resource *r = x->r;
    char msg[SERR_MSG_MAX + 160];
    snprintf(msg, sizeof(msg),
             "DIAGNOSTICS LOST: uploads failed for %llds (reap-upload-window), reaping anyway: %s",
             (long long)(wall_age_ms(started) / 1000), why->msg);
    log_warnx("ERROR - namespace %s: %s", r->name, msg);
    json_object_set_new(r->status, "diagnostics",
                        json_pack("{s:b,s:b,s:b,s:s,s:[]}", "logs_archived", 0,
                                  "sentinel_violations_indexed", 0, "diagnostics_lost", 1, "error",
                                  why->msg, "blob_paths"));
    metrics_inc("namespace_diagnostics_lost_total", "", 1);
    ns_audit(c, x->user, r->tenant, "diagnostics-lost", r->name, ns_bucket_of(r), msg, NULL);
    set_event(x, "DiagnosticsLost", "Warning", msg);
}

/* Upload and verify every file; a failure is retried until the upload
 * window has passed, then the diagnostics are declared lost. */
static int step_archive(void *ctx, json_t *progress, int *outcome, const char **redo, serr *e) {
    (void)outcome, (void)redo;
    reap_ctx *x = ctx;
    upload_arg u = {.x = x, .paths = json_array(), .files = json_array()};
    int violations = 0;
    serr se = {0};
    int rc = diag_each(x->c, x->r, jstr(progress, "timestamp", "00000000-000000"), upload_one, &u,
                       &violations, &se);
    if (rc == 0) archived(x, &u, violations);
    json_decref(u.paths);
    json_decref(u.files);
    if (rc == 0) return 0;
    int64_t started = jint(progress, "startedMs", 0);
    if (wall_age_ms(started) < x->c->cfg->reap_upload_window_ms) {
        x->failed = "archive";
        return serr_set(e, rc, "%s", se.msg);
    }
    diagnostics_lost(x, started, &se);
    return 0;
}

/* Only here may anything be deleted: the uploads verified (or the window
 * passed).  No volume may be left. */
static int step_delete(void *ctx, json_t *progress, int *outcome, const char **redo, serr *e) {
    (void)outcome, (void)redo;
    reap_ctx *x = ctx;
    int orphans = 0;
    int rc = nsrt_delete(x->c, x->r->name, x->c->cfg->ns_delete_timeout_ms, &orphans, e);
    if (rc) {
        x->failed = "delete";
        return rc;
    }
    if (orphans > 0) {
        x->failed = "verify";
        return serr_set(e, SE_IO, "%d orphaned volume(s) remain after deletion", orphans);
    }
    log_info("Deleted namespace %s", x->r->name);
    json_object_set_new(progress, "orphanedVolumes", json_integer(0));
    return 0;
}

static const step_def reap_steps[] = {
    {"stop", step_stop},
    {"archive", step_archive},
    {"delete", step_delete},
};

static const step_seq reap_seq = {
    .what = "reap",
    .steps = reap_steps,
    .n = (int)(sizeof(reap_steps) / sizeof(reap_steps[0])),
    .persist = reap_persist,
};

/* ---- one attempt ---- */

static int64_t retry_delay(ctl_ctx *c, int64_t attempts) {
    int64_t d = c->cfg->reap_retry_initial_ms;
    for (int64_t i = 1; i < attempts && d < c->cfg->reap_retry_max_ms; i++) d *= 2;
    return d < c->cfg->reap_retry_max_ms ? d : c->cfg->reap_retry_max_ms;
}

/* A failed attempt: keep the namespace, come back after the backoff. */
static int reap_failed(ctl_ctx *c, resource *r, const char *step, const serr *why,
                       int64_t *retry_ms, serr *e) {
    json_t *reap = jchild(r->status, "reap");
    int64_t attempts = jint(reap, "attempts", 0) + 1;
    int64_t delay = retry_delay(c, attempts);
    json_object_set_new(reap, "attempts", json_integer(attempts));
    json_object_set_new(reap, "lastError", json_string(why->msg));
    int64_t now = wall_stamp_ms();
    json_object_set_new(reap, "nextAttemptMs", json_integer(now + delay));
    r->due_ms = now + delay;
    char msg[SERR_MSG_MAX + 128], labels[64];
    snprintf(msg, sizeof(msg), "reap attempt %lld failed at %s, namespace kept, retry in %llds: %s",
             (long long)attempts, step, (long long)(delay / 1000), why->msg);
    snprintf(labels, sizeof(labels), "step=\"%s\"", step);
    metrics_inc("namespace_reap_failures_total", labels, 1);
    log_warnx("Reaping namespace %s: %s", r->name, msg);
    *retry_ms = delay;
    store_event ev = {.type = "Warning", .reason = "ReapRetry", .message = msg};
    serr se = {0};
    if (store_update(c->st, r, &ev, &se)) log_warnx("namespace %s: %s", r->name, se.msg);
    return serr_set(e, SE_UNAVAIL, "%s", msg);
}

/* Every step done: the namespace is reaped. */
static int reaped(ctl_ctx *c, resource *r, const char *user, serr *e) {
    json_t *reap = jchild(r->status, "reap");
    json_t *diag = json_object_get(r->status, "diagnostics");
    int64_t now = now_ms();
    bool lost = json_is_true(json_object_get(diag, "diagnostics_lost"));
    json_object_set_new(r->status, "reapedMs", json_integer(now));
    nsi_set_status_annotation(r, NP_REAPED);
    int64_t started = jint(reap, "startedMs", now);
    r->due_ms = 0;
    char why[96];
    if (lost)
        str_copy(why, sizeof(why), "DIAGNOSTICS LOST: uploads failed past the upload window");
    else
        snprintf(why, sizeof(why), "%zu file(s) stored and verified first",
                 json_array_size(json_object_get(diag, "files")));
    ns_lock(r->name);
    int rc = phase_change(c, &ns_fsm, r, NP_REAPED, "Reaped", why, e);
    ns_unlock(r->name);
    if (rc) return rc;
    metrics_inc("namespace_reaped_total", lost ? "result=\"diagnostics_lost\"" : "result=\"archived\"", 1);
    metrics_observe("namespace_reap_duration_seconds", "", (double)(now - started) / 1000.0);
    log_info("Successfully reaped namespace %s", r->name);
    ns_audit(c, user, r->tenant, "reap", r->name, ns_bucket_of(r), lost ? "ok, diagnostics lost" : "ok",
             json_pack("{s:O}", "diagnostics", json_object_get(r->status, "diagnostics")));
    return 0;
}

int nsi_reap_step(ctl_ctx *c, resource *r, const char *user, int64_t *retry_ms, serr *e) {
    *retry_ms = -1;
    json_t *reap = json_object_get(r->status, "reap");
    if (!json_is_object(reap)) {
        /* The first attempt; written with the first step's start. */
        reap = jchild(r->status, "reap");
        char stamp[32];
        int64_t now = wall_stamp_ms();
        archive_stamp(now, stamp, sizeof(stamp));
        json_object_set_new(reap, "startedMs", json_integer(now));
        json_object_set_new(reap, "timestamp", json_string(stamp));
        json_object_set_new(reap, "attempts", json_integer(0));
        log_info("Reaping namespace %s", r->name);
    }
    reap_ctx x = {.c = c, .r = r, .user = user};
    serr se = {0};
    bool complete = false;
    int rc = steps_run(&reap_seq, reap, &x, &complete, &se);
    if (rc && x.failed) return reap_failed(c, r, x.failed, &se, retry_ms, e);
    if (rc) return serr_set(e, rc, "%s", se.msg);
    if (!complete) return serr_set(e, SE_INTERNAL, "namespace %s: a reap step waited", r->name);
    return reaped(c, r, user, e);
}

/* ---- one reap of a namespace at a time ---- */

/* The names being reaped: at most one claim per thread that reaps
 * (workers, job threads), so a small table does. */
#define REAPS_MAX 256
static pthread_mutex_t reaps_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reaps_cv;
static pthread_once_t reaps_once = PTHREAD_ONCE_INIT;
static char reaps[REAPS_MAX][RES_NAME_MAX];

static void reaps_init(void) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&reaps_cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* Caller holds reaps_mu: a free slot for name, or -1 (name claimed, or
 * the table full). */
static int reap_slot(const char *name) {
    int free_slot = -1;
    for (int i = 0; i < REAPS_MAX; i++) {
        if (reaps[i][0] == '\0') {
            if (free_slot < 0) free_slot = i;
        } else if (strcmp(reaps[i], name) == 0) {
            return -1;
        }
    }
    return free_slot;
}

bool nsi_reap_claim(const char *name, int64_t wait_ms) {
    pthread_once(&reaps_once, reaps_init);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (wait_ms > 0) {
        until.tv_sec += (time_t)(wait_ms / 1000);
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&reaps_mu);
    int slot;
    while ((slot = reap_slot(name)) < 0) {
        int rc = wait_ms < 0 ? pthread_cond_wait(&reaps_cv, &reaps_mu)
                             : pthread_cond_timedwait(&reaps_cv, &reaps_mu, &until);
        if (rc == ETIMEDOUT) {
            slot = reap_slot(name);
            break;
        }
    }
    if (slot >= 0) str_copy(reaps[slot], sizeof(reaps[slot]), name);
    pthread_mutex_unlock(&reaps_mu);
    return slot >= 0;
}

void nsi_reap_release(const char *name) {
    pthread_mutex_lock(&reaps_mu);
    for (int i = 0; i < REAPS_MAX; i++)
        if (strcmp(reaps[i], name) == 0) reaps[i][0] = '\0';
    pthread_cond_broadcast(&reaps_cv);
    pthread_mutex_unlock(&reaps_mu);
}

/* ---- reap now ---- */

static json_t *reap_result(const resource *r, bool success, const char *message) {
    json_t *d = json_object_get(r->status, "diagnostics");
    json_t *o = json_pack("{s:b,s:s}", "success", success, "namespace", r->name);
    json_t *bp = json_object_get(d, "blob_paths");
    json_t *diag = json_pack("{s:b,s:b,s:o}", "logs_archived",
                             json_is_true(json_object_get(d, "logs_archived")),
                             "sentinel_violations_indexed",
                             json_is_true(json_object_get(d, "sentinel_violations_indexed")),
                             "blob_paths", json_is_array(bp) ? json_incref(bp) : json_array());
    if (json_is_true(json_object_get(d, "diagnostics_lost")))
        json_object_set_new(diag, "diagnostics_lost", json_true());
    json_object_set_new(o, "diagnostics", diag);
    json_object_set_new(o, "message", json_string(message));
    return o;
}

/* A reap someone else is running took longer than the caller would wait:
 * the namespace as it stands. */
static int reap_busy(ctl_ctx *c, const char *ns, json_t **result, serr *e) {
    resource r;
    int rc = ns_lookup(c, NULL, ns, &r, e);
    if (rc) return rc;
    *result = json_pack("{s:b,s:s,s:s,s:b,s:s}", "success", 0, "namespace", r.name, "status",
                        fsm_phase_name(&ns_fsm, phase_of(&ns_fsm, &r)), "inProgress", 1,
                        "message", "a reap of this namespace is in progress; ask again");
    json_t *reap = json_object_get(r.status, "reap");
    if (reap) json_object_set(*result, "reap", reap);
    resource_free(&r);
    return serr_set(e, SE_TIMEOUT, "namespace %s: a reap is in progress", ns);
}

int ns_reap_now(ctl_ctx *c, const char *ns, const char *user, json_t **result, serr *e) {
    return ns_reap_within(c, ns, user, -1, result, e);
}

/* Under the namespace's lock: r read again, and moved into phase reaping
 * unless it is there; 1 when it was reaped already (*result: its recorded
 * outcome). */
static int enter_reaping(ctl_ctx *c, const char *ns, resource *r, json_t **result, serr *e) {
    ns_lock(ns);
    int rc = ns_lookup(c, NULL, ns, r, e);
    int ph = rc == 0 ? phase_of(&ns_fsm, r) : -1;
    if (rc == 0 && ph == NP_REAPED) {
        /* Idempotent: the outcome recorded when it was reaped (by the
         * reaper, which takes a finalized namespace at once, or by an
         * earlier call whose answer the client never got). */
        char msg[200], t[40];
        snprintf(msg, sizeof(msg), "Namespace %s was already reaped at %s", r->name,
                 fmt_time_rfc3339(jint(r->status, "reapedMs", 0), t, sizeof(t)));
        *result = reap_result(r, true, msg);
        json_object_set_new(*result, "alreadyReaped", json_true());
        rc = 1;
    } else if (rc == 0 && ph != NP_REAPING) {
        rc = fsm_check_op(&ns_fsm, r->name, ph, NO_REAP, e);
        if (rc == 0) rc = nsi_to_reaping(c, r, "ManualReap", "requested by a user", e);
    }
    ns_unlock(ns);
    return rc;
}

int ns_reap_within(ctl_ctx *c, const char *ns, const char *user, int64_t wait_ms, json_t **result,
                   serr *e) {
    *result = NULL;
    int rc = ns_name_check(ns, e);
    if (rc) return rc;
    if (!nsi_reap_claim(ns, wait_ms)) return reap_busy(c, ns, result, e);
    resource r;
    rc = enter_reaping(c, ns, &r, result, e);
    if (rc) {
        if (rc == 1) rc = 0;
        goto out;
    }
    int64_t retry = -1;
    serr se = {0};
    rc = nsi_reap_step(c, &r, user, &retry, &se);
    if (rc == 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Namespace %s successfully reaped", r.name);
        *result = reap_result(&r, true, msg);
        json_object_set_new(*result, "alreadyReaped", json_false());
    } else if (rc == SE_UNAVAIL) {
        *result = reap_result(&r, false, se.msg);
        ctl_enqueue(c, NS_KIND, r.name); /* the controller owns the retries */
        serr_set(e, rc, "%s", se.msg);
    } else {
        serr_set(e, rc, "%s", se.msg);
    }
out:
    resource_free(&r);
    nsi_reap_release(ns);
    return rc;
}
