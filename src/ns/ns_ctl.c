/*
 * ns_ctl.c - the Namespace kind: create, activity, finalize, the reaper
 * (sweep and controller) and the reap itself.  See ns.h for the order of a
 * reap and the blob layout.
 *
 * status.reap holds a reap in progress: startedMs, the archive timestamp
 * (fixed at the first attempt, so every retry and every restart writes the
 * same blob paths), attempts, lastError and step:
 *   stop     pods are being stopped
 *   archive  diagnostics are being uploaded and verified
 *   delete   diagnostics are stored (or declared lost); the namespace may go
 * The step is written before its work starts, so after kill -9 a restart
 * resumes it, and "delete" is never written before the uploads verified.
 */
#include "ns/ns.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "blob/blob.h"
#include "reconcile/phase.h"
#include "util/confine.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

#define KIND "Namespace"
#define NLOCKS 64

static pthread_mutex_t locks[NLOCKS];
static pthread_once_t locks_once = PTHREAD_ONCE_INIT;

static void locks_init(void) {
    for (int i = 0; i < NLOCKS; i++) pthread_mutex_init(&locks[i], NULL);
}

static pthread_mutex_t *lock_of(const char *name) {
    pthread_once(&locks_once, locks_init);
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return &locks[h % NLOCKS];
}

/* Progress of the current sweep, for the seed's "finished" log line. */
static pthread_mutex_t sweep_mu = PTHREAD_MUTEX_INITIALIZER;
static int sweep_pending, sweep_ok, sweep_failed;

void ns_metrics_register(void) {
    metrics_register("namespace_transitions_total", MT_COUNTER, "Namespace phase transitions");
    metrics_register("namespace_state_duration", MT_HISTOGRAM, "Time spent in each namespace phase (seconds)");
    metrics_register("namespace_created_total", MT_COUNTER, "Transient namespaces created");
    metrics_register("namespace_reaper_sweeps_total", MT_COUNTER, "Reaper sweeps run");
    metrics_register("namespace_reaper_eligible", MT_GAUGE, "Namespaces found eligible by the last sweep");
    metrics_register("namespace_reaped_total", MT_COUNTER,
                     "Namespaces reaped, by result (archived, diagnostics_lost)");
    metrics_register("namespace_reap_failures_total", MT_COUNTER,
                     "Reap attempts that failed and will be retried, by step");
    metrics_register("namespace_diagnostics_lost_total", MT_COUNTER,
                     "Namespaces reaped without their diagnostics (upload window passed)");
    metrics_register("namespace_reap_duration_seconds", MT_HISTOGRAM,
                     "From the start of a reap to the namespace gone (seconds)");
    metrics_register("namespace_diagnostics_bytes_total", MT_COUNTER,
                     "Bytes of diagnostics archived and verified");
    metrics_register("namespace_archives_expired_total", MT_COUNTER,
                     "Archived blobs deleted after their retention");
}

/* ---- small helpers ---- */

static char *rfc(int64_t ms, char *buf, size_t len) { return fmt_time_rfc3339(ms, buf, len); }

/* "mkdir /var/lib/stamp/x: No space left on device" -> "No space left on
 * device": what a tenant may read of a file-system error. */
static const char *last_part(const char *msg) {
    const char *p = strrchr(msg, ':');
    return p && p[1] == ' ' ? p + 2 : msg;
}

/* 20260125-010000 */
static void archive_stamp(int64_t ms, char *buf, size_t len) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y%m%d-%H%M%S", &tm);
}

const char *ns_bucket_of(const resource *r) { return jstr(r->spec, "bucket_id", ""); }

static void set_status_annotation(resource *r, int phase) {
    json_object_set_new(r->annotations, "status", json_string(fsm_phase_name(&ns_fsm, phase)));
}

void ns_audit(ctl_ctx *c, const char *user, const char *tenant, const char *op, const char *ns,
              const char *bucket, const char *result, json_t *extra) {
    json_t *d = json_pack("{s:s,s:s}", "namespace", ns, "bucket_id", bucket ? bucket : "");
    if (extra) json_object_update(d, extra);
    json_decref(extra);
    store_audit a = {.user = user ? user : "", .tenant = tenant ? tenant : "", .operation = op,
                     .kind = KIND, .name = ns, .result = result, .detail = d};
    serr e = {0};
    if (store_audit_add(c->st, &a, &e)) log_warnx("audit append failed: %s", e.msg);
    json_decref(d);
}

/* ---- create, look up, show ---- */

int ns_create(ctl_ctx *c, const char *tenant, const char *user, const char *bucket,
              const char *name, json_t *labels, resource *out, serr *e) {
    int rc;
    if ((rc = ns_tenant_check(tenant, e)) || (rc = ns_bucket_check(bucket, e))) return rc;
    char ns[RES_NAME_MAX];
    if (name) str_copy(ns, sizeof(ns), name);
    else snprintf(ns, sizeof(ns), "%s%s", NS_PREFIX, bucket);
    if ((rc = ns_name_check(ns, e))) return rc;

    resource old;
    resource_init(&old);
    rc = store_get(c->st, KIND, ns, &old, NULL);
    if (rc == 0) {
        int ph = phase_of(&ns_fsm, &old);
        int64_t rv = old.resource_version;
        resource_free(&old);
        if (ph != NP_REAPED) return serr_set(e, SE_EXISTS, "namespace %s already exists", ns);
        /* A reaped record gives way to the new namespace of the same bucket;
         * its events and audit entries stay. */
        if ((rc = store_delete(c->st, KIND, ns, rv, e))) return rc;
    } else {
        resource_free(&old);
    }

    int64_t now = now_ms();
    char ts[40];
    rfc(now, ts, sizeof(ts));
    resource_init(out);
    str_copy(out->kind, sizeof(out->kind), KIND);
    str_copy(out->name, sizeof(out->name), ns);
    str_copy(out->tenant, sizeof(out->tenant), tenant);
    json_object_set_new(out->labels, "app", json_string("livecalc"));
    json_object_set_new(out->labels, "bucket-id", json_string(bucket));
    json_object_set_new(out->labels, "managed-by", json_string("livecalc-platform"));
    json_object_set_new(out->labels, "lifecycle", json_string("transient"));
    if (labels) json_object_update_missing(out->labels, labels);
    json_object_set_new(out->annotations, "created-at", json_string(ts));
    json_object_set_new(out->annotations, "last-activity", json_string(ts));
    set_status_annotation(out, NP_ACTIVE);
    json_object_set_new(out->spec, "bucket_id", json_string(bucket));
    json_object_set_new(out->spec, "createdBy", json_string(user ? user : ""));
    phase_init(&ns_fsm, out, NP_ACTIVE);
    json_object_set_new(out->status, "lastActivityMs", json_integer(now));
    out->due_ms = now + c->cfg->inactivity_threshold_ms;
    if (out->due_ms <= 0) out->due_ms = 1;
    /* The directory first: a namespace the store knows always has one.  If
     * this create fails, what it made goes again (a directory that was
     * there before stays). */
    char dir[PATH_MAX];
    if (nsrt_dir(c, ns, NULL, dir, sizeof(dir))) {
        resource_free(out);
        return serr_set(e, SE_INVAL, "namespace %s: path too long", ns);
    }
    bool made = !path_exists(dir);
    serr de = {0};
    if ((rc = nsrt_create(c, ns, &de))) {
        /* de names server paths: the tenant gets what went wrong, the log the rest */
        log_warnx("namespace %s: %s", ns, de.msg);
        if (made) remove_tree(dir, NULL);
        resource_free(out);
        return serr_set(e, rc, "namespace %s: cannot make its directory (%s)", ns,
                        last_part(de.msg));
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "namespace %s created for bucket %s", ns, bucket);
    store_event ev = {.type = "Normal", .reason = "Created", .message = msg};
    if ((rc = store_create(c->st, out, &ev, e))) {
        /* Not when another create of the same name won the race: the
         * directory is its now. */
        if (made && rc != SE_EXISTS && rc != SE_CONFLICT) remove_tree(dir, NULL);
        resource_free(out);
        return rc;
    }
    metrics_inc("namespace_created_total", "", 1);
    log_info("Created namespace %s for bucket %s (tenant %s)", ns, bucket, tenant);
    return 0;
}

/* On failure *out holds nothing to free (resource_free on it is a no-op). */
int ns_lookup(ctl_ctx *c, const char *tenant, const char *ns, resource *out, serr *e) {
    resource_init(out);
    int rc = ns_name_check(ns, e);
    if (rc == 0) rc = store_get(c->st, KIND, ns, out, e);
    if (rc == 0 && tenant && strcmp(out->tenant, tenant) != 0) rc = SE_NOTFOUND;
    if (rc == 0) return 0;
    resource_free(out);
    if (rc == SE_NOTFOUND) return serr_set(e, SE_NOTFOUND, "namespace %s not found", ns);
    return rc;
}

json_t *ns_to_json(ctl_ctx *c, const resource *r) {
    char t1[40], t2[40];
    int ph = phase_of(&ns_fsm, r);
    int pods = 0, vols = 0;
    if (ph != NP_REAPED) nsrt_counts(c, r->name, &pods, &vols);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:i}", "namespace", r->name, "bucket_id", ns_bucket_of(r),
        "tenant_id", r->tenant, "created_at", rfc(r->created_ms, t1, sizeof(t1)), "last_activity",
        rfc(jint(r->status, "lastActivityMs", r->created_ms), t2, sizeof(t2)), "status",
        fsm_phase_name(&ns_fsm, ph), "pod_count", pods, "pvc_count", vols);
    int64_t fin = jint(r->status, "finalizedMs", 0), reaped = jint(r->status, "reapedMs", 0);
    if (fin) json_object_set_new(o, "finalized_at", json_string(rfc(fin, t1, sizeof(t1))));
    if (reaped) json_object_set_new(o, "reaped_at", json_string(rfc(reaped, t1, sizeof(t1))));
    if (r->due_ms > 0 && ph == NP_ACTIVE)
        json_object_set_new(o, "reap_eligible_at", json_string(rfc(r->due_ms, t1, sizeof(t1))));
    json_object_set(o, "labels", r->labels);
    json_object_set(o, "annotations", r->annotations);
    json_t *d = json_object_get(r->status, "diagnostics");
    if (d) json_object_set(o, "diagnostics", d);
    json_t *reap = json_object_get(r->status, "reap");
    if (reap) json_object_set(o, "reap", reap);
    const char *m = jstr(r->status, "message", NULL);
    if (m) json_object_set_new(o, "message", json_string(m));
    return o;
}

/* ---- activity and finalize ---- */

/* Apply a change to r and write it; on a conflict (the controller wrote
 * meanwhile) read r again and re-apply, a few times. */
static int with_retry(ctl_ctx *c, resource *r, int (*apply)(ctl_ctx *, resource *, serr *),
                      serr *e) {
    for (int tries = 0;; tries++) {
        int rc = apply(c, r, e);
        if (rc != SE_CONFLICT || tries >= 5) return rc;
        char name[RES_NAME_MAX];
        str_copy(name, sizeof(name), r->name);
        if ((rc = store_get(c->st, KIND, name, r, e))) return rc;
    }
}

static int activity_once(ctl_ctx *c, resource *r, serr *e) {
    int rc = fsm_check_op(&ns_fsm, r->name, phase_of(&ns_fsm, r), NO_ACTIVITY, e);
    if (rc) return rc;
    int64_t now = now_ms();
    char ts[40];
    json_object_set_new(r->annotations, "last-activity", json_string(rfc(now, ts, sizeof(ts))));
    json_object_set_new(r->status, "lastActivityMs", json_integer(now));
    r->due_ms = now + c->cfg->inactivity_threshold_ms;
    return store_update(c->st, r, NULL, e);
}

/* Finalize is idempotent: a namespace already finalized, or past it
 * (reaping, reaped: the reaper takes a finalized one at once), stays as it
 * is and the call succeeds, so a client retrying after a timeout is told
 * the truth instead of a conflict. */
static bool finalized_already(int ph) {
    return ph == NP_FINALIZED || ph == NP_REAPING || ph == NP_REAPED;
}

static int finalize_once(ctl_ctx *c, resource *r, serr *e) {
    if (finalized_already(phase_of(&ns_fsm, r))) return 0;
    int rc = fsm_check_op(&ns_fsm, r->name, phase_of(&ns_fsm, r), NO_FINALIZE, e);
    if (rc) return rc;
    int64_t now = now_ms();
    json_object_set_new(r->status, "finalizedMs", json_integer(now));
    set_status_annotation(r, NP_FINALIZED);
    r->due_ms = now; /* eligible at once */
    return phase_change(c, &ns_fsm, r, NP_FINALIZED, "Finalized", NULL, e);
}

int ns_activity(ctl_ctx *c, resource *r, serr *e) { return with_retry(c, r, activity_once, e); }

int ns_finalize(ctl_ctx *c, resource *r, bool *already, serr *e) {
    bool was = finalized_already(phase_of(&ns_fsm, r));
    int rc = with_retry(c, r, finalize_once, e);
    if (already) *already = was;
    if (rc == 0 && !was) ctl_enqueue(c, KIND, r->name);
    return rc;
}

/* ---- diagnostics ---- */

typedef struct diag_item {
    char path[BLOB_PATH_MAX];
    char pod[NS_POD_MAX + 1]; /* whose log this is; "" for the index */
    char *data;
    size_t len;
    bool truncated;
    int64_t dropped; /* bytes stamp-run cut from the pod's output */
} diag_item;

typedef struct diag_set {
    diag_item *items;
    int n;
    int violations;
} diag_set;

static void diag_free(diag_set *d) {
    for (int i = 0; i < d->n; i++) free(d->items[i].data);
    free(d->items);
    memset(d, 0, sizeof(*d));
}

/* Everything the reap archives, read from the namespace's pods. */
static int diag_collect(ctl_ctx *c, const resource *r, const char *stamp, diag_set *d, serr *e) {
    memset(d, 0, sizeof(*d));
    json_t *pods = nsrt_pods(c, r->name);
    size_t np = json_array_size(pods);
    d->items = calloc(np + 1, sizeof(diag_item));
    if (d->items == NULL) {
        json_decref(pods);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    char base[512];
    snprintf(base, sizeof(base), "%s/%s/%s", r->tenant, ns_bucket_of(r), stamp);
    json_t *violations = json_array();
    size_t i;
    json_t *p;
    int rc = 0;
    json_array_foreach(pods, i, p) {
        const char *pod = jstr(p, "name", "");
        diag_item *it = &d->items[d->n];
        snprintf(it->path, sizeof(it->path), "%s/logs/%s.log", base, pod);
        str_copy(it->pod, sizeof(it->pod), pod);
        it->dropped = json_integer_value(json_object_get(p, "logBytesDropped"));
        /* A cut log is pod-log-max plus stamp-run's marker line. */
        rc = nsrt_pod_log(c, r->name, pod, (size_t)c->cfg->pod_log_max + LOGCAP_MARKER_MAX,
                          &it->data, &it->len, &it->truncated, e);
        if (rc) break;
        d->n++;
        /* The violations as the pod wrote them: read again as bytes, not
         * from the listing's display form. */
        char *v = NULL;
        size_t vlen = 0;
        serr ve = {0};
        if (nsrt_annotation(c, r->name, pod, NS_SENTINEL_KEY, &v, &vlen, &ve) == 0 && vlen > 0) {
            char ap[PATH_MAX], ts[40];
            struct stat st;
            int64_t when = now_ms();
            if (nsrt_dir(c, r->name, NULL, ap, sizeof(ap)) == 0) {
                size_t l = strlen(ap);
                snprintf(ap + l, sizeof(ap) - l, "/pods/%s/annotations/%s", pod, NS_SENTINEL_KEY);
                if (stat(ap, &st) == 0) when = (int64_t)st.st_mtime * 1000;
            }
            json_t *rec = json_pack("{s:s,s:s}", "pod", pod, "timestamp", rfc(when, ts, sizeof(ts)));
            if (utf8_valid(v, vlen)) {
                json_object_set_new(rec, "violations", json_stringn(v, vlen));
            } else {
                /* Not text: shown with \xNN escapes, and the exact bytes
                 * kept in base64 beside it. */
                size_t max = vlen * 4 + 1;
                char *shown = malloc(max), *b64 = nsrt_base64(v, vlen);
                if (shown == NULL || b64 == NULL) rc = serr_set(e, SE_NOMEM, "out of memory");
                else {
                    json_object_set_new(rec, "violations", json_string(utf8_sanitize(v, vlen, shown, max)));
                    json_object_set_new(rec, "violations_base64", json_string(b64));
                    json_object_set_new(rec, "violations_escaped", json_true());
                }
                free(shown);
                free(b64);
            }
            json_array_append_new(violations, rec);
        }
        free(v);
        if (rc) break;
    }
    json_decref(pods);
    if (rc == 0) {
        diag_item *it = &d->items[d->n];
        snprintf(it->path, sizeof(it->path), "%s/sentinel-violations.json", base);
        it->data = json_dumps(violations, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (it->data == NULL) rc = serr_set(e, SE_NOMEM, "out of memory");
        else {
            it->len = strlen(it->data);
            d->n++;
        }
    }
    d->violations = (int)json_array_size(violations);
    json_decref(violations);
    if (rc) diag_free(d);
    return rc;
}

json_t *ns_reap_plan(ctl_ctx *c, const resource *r) {
    char stamp[32];
    archive_stamp(now_ms(), stamp, sizeof(stamp));
    json_t *o = json_pack("{s:b,s:s,s:s}", "dry_run", 1, "namespace", r->name, "bucket_id",
                          ns_bucket_of(r));
    diag_set d;
    serr e = {0};
    json_t *paths = json_array();
    int64_t bytes = 0;
    if (diag_collect(c, r, stamp, &d, &e) == 0) {
        for (int i = 0; i < d.n; i++) {
            json_array_append_new(paths, json_string(d.items[i].path));
            bytes += (int64_t)d.items[i].len;
        }
        json_object_set_new(o, "sentinel_violations", json_integer(d.violations));
        diag_free(&d);
    } else {
        json_object_set_new(o, "error", json_string(e.msg));
    }
    int pods = 0, vols = 0;
    nsrt_counts(c, r->name, &pods, &vols);
    json_object_set_new(o, "container", json_string(c->cfg->diagnostic_container));
    json_object_set_new(o, "would_archive", paths);
    json_object_set_new(o, "bytes", json_integer(bytes));
    json_object_set_new(o, "would_delete", json_pack("{s:i,s:i}", "pods", pods, "volumes", vols));
    json_object_set_new(o, "status", json_string(fsm_phase_name(&ns_fsm, phase_of(&ns_fsm, r))));
    return o;
}

/* ---- the reap ---- */

static int64_t retry_delay(ctl_ctx *c, int64_t attempts) {
    int64_t d = c->cfg->reap_retry_initial_ms;
    for (int64_t i = 1; i < attempts && d < c->cfg->reap_retry_max_ms; i++) d *= 2;
    return d < c->cfg->reap_retry_max_ms ? d : c->cfg->reap_retry_max_ms;
}

static int save(ctl_ctx *c, resource *r, const char *reason, const char *type, const char *msg,
                serr *e) {
    store_event ev = {.type = type, .reason = reason, .message = msg};
    return store_update(c->st, r, reason ? &ev : NULL, e);
}

/* A failed attempt: keep the namespace, come back after the backoff. */
static int reap_failed(ctl_ctx *c, resource *r, const char *step, const serr *why,
                       int64_t *retry_ms, serr *e) {
    json_t *reap = jchild(r->status, "reap");
    int64_t attempts = jint(reap, "attempts", 0) + 1;
    int64_t delay = retry_delay(c, attempts);
    json_object_set_new(reap, "attempts", json_integer(attempts));
    json_object_set_new(reap, "lastError", json_string(why->msg));
    json_object_set_new(reap, "nextAttemptMs", json_integer(now_ms() + delay));
    r->due_ms = now_ms() + delay;
    char msg[SERR_MSG_MAX + 128], labels[64];
    snprintf(msg, sizeof(msg), "reap attempt %lld failed at %s, namespace kept, retry in %llds: %s",
             (long long)attempts, step, (long long)(delay / 1000), why->msg);
    snprintf(labels, sizeof(labels), "step=\"%s\"", step);
    metrics_inc("namespace_reap_failures_total", labels, 1);
    log_warnx("Reaping namespace %s: %s", r->name, msg);
    *retry_ms = delay;
    serr se = {0};
    if (save(c, r, "ReapRetry", "Warning", msg, &se)) log_warnx("namespace %s: %s", r->name, se.msg);
    return serr_set(e, SE_UNAVAIL, "%s", msg);
}

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

/* One attempt of the reap of r, which is in phase reaping; the caller holds
 * the namespace's lock.  0 when reaped; SE_UNAVAIL (with *retry_ms) when it
 * must be tried again. */
static int reap_step(ctl_ctx *c, resource *r, const char *user, int64_t *retry_ms, serr *e) {
    *retry_ms = -1;
    json_t *reap = json_object_get(r->status, "reap");
    int rc;
    if (!json_is_object(reap)) {
        reap = jchild(r->status, "reap");
        char stamp[32];
        int64_t now = now_ms();
        archive_stamp(now, stamp, sizeof(stamp));
        json_object_set_new(reap, "startedMs", json_integer(now));
        json_object_set_new(reap, "timestamp", json_string(stamp));
        json_object_set_new(reap, "attempts", json_integer(0));
        json_object_set_new(reap, "step", json_string("stop"));
        log_info("Reaping namespace %s", r->name);
        if ((rc = save(c, r, NULL, NULL, NULL, e))) return rc;
        reap = json_object_get(r->status, "reap");
    }
    const char *step = jstr(reap, "step", "stop");
    serr se = {0};

    if (strcmp(step, "stop") == 0) {
        if (nsrt_stop_pods(c, r->name, c->cfg->ns_delete_timeout_ms, &se))
            return reap_failed(c, r, "stop", &se, retry_ms, e);
        json_object_set_new(reap, "step", json_string("archive"));
        if ((rc = save(c, r, NULL, NULL, NULL, e))) return rc;
        step = "archive";
    }

    if (strcmp(step, "archive") == 0) {
        diag_set d;
        const char *stamp = jstr(reap, "timestamp", "00000000-000000");
        int64_t bytes = 0;
        json_t *paths = json_array(), *files = json_array();
        rc = diag_collect(c, r, stamp, &d, &se);
        for (int i = 0; rc == 0 && i < d.n; i++) {
            char sha[65];
            rc = blob_put_verified(c->blobs, c->cfg->diagnostic_container, d.items[i].path,
                                   d.items[i].data, d.items[i].len, sha, &se);
            if (rc) break;
            bytes += (int64_t)d.items[i].len;
            json_array_append_new(paths, json_string(d.items[i].path));
            json_t *f = json_pack("{s:s,s:I,s:s}", "path", d.items[i].path, "size",
                                  (json_int_t)d.items[i].len, "sha256", sha);
            if (d.items[i].truncated) json_object_set_new(f, "truncated", json_true());
            if (d.items[i].dropped > 0)
                json_object_set_new(f, "logBytesDropped", json_integer(d.items[i].dropped));
            json_array_append_new(files, f);
            if (d.items[i].pod[0]) log_info("Archived logs for pod %s", d.items[i].pod);
        }
        int violations = rc == 0 ? d.violations : 0;
        diag_free(&d); /* a no-op when diag_collect failed */
        json_t *diag = json_object();
        if (rc == 0) {
            log_info("Indexed %d sentinel violations", violations);
            json_object_set_new(diag, "logs_archived", json_true());
            json_object_set_new(diag, "sentinel_violations_indexed", json_true());
            json_object_set_new(diag, "sentinel_violations", json_integer(violations));
            json_object_set_new(diag, "container", json_string(c->cfg->diagnostic_container));
            json_object_set_new(diag, "blob_paths", paths);
            json_object_set_new(diag, "files", files);
            json_object_set_new(diag, "bytes", json_integer(bytes));
            json_object_set_new(diag, "store", json_string(blob_describe(c->blobs)));
            json_object_set(r->status, "diagnostics", diag);
            json_decref(diag);
            metrics_inc("namespace_diagnostics_bytes_total", "", (double)bytes);
            ns_audit(c, user, r->tenant, "archive-diagnostics", r->name, ns_bucket_of(r), "ok",
                  json_pack("{s:I,s:i}", "files", (json_int_t)json_array_size(paths), "violations", violations));
        } else {
            json_decref(paths);
            json_decref(files);
            json_decref(diag);
            int64_t started = jint(reap, "startedMs", now_ms());
            if (now_ms() - started < c->cfg->reap_upload_window_ms)
                return reap_failed(c, r, "archive", &se, retry_ms, e);
            /* Past the window: seed 004 reaps anyway.  Say so everywhere. */
            char msg[SERR_MSG_MAX + 160];
            snprintf(msg, sizeof(msg),
                     "DIAGNOSTICS LOST: uploads failed for %llds (reap-upload-window), reaping anyway: %s",
                     (long long)((now_ms() - started) / 1000), se.msg);
            log_warnx("ERROR - namespace %s: %s", r->name, msg);
            diag = json_pack("{s:b,s:b,s:b,s:s,s:[]}", "logs_archived", 0,
                             "sentinel_violations_indexed", 0, "diagnostics_lost", 1, "error",
                             se.msg, "blob_paths");
            json_object_set_new(r->status, "diagnostics", diag);
            metrics_inc("namespace_diagnostics_lost_total", "", 1);
            ns_audit(c, user, r->tenant, "diagnostics-lost", r->name, ns_bucket_of(r), msg, NULL);
            json_object_set_new(reap, "step", json_string("delete"));
            if ((rc = save(c, r, "DiagnosticsLost", "Warning", msg, e))) return rc;
            step = "delete";
        }
        if (strcmp(step, "archive") == 0) {
            json_object_set_new(reap, "step", json_string("delete"));
            if ((rc = save(c, r, "DiagnosticsArchived", "Normal", "diagnostics stored and verified", e)))
                return rc;
            step = "delete";
        }
    }

    /* Only here may anything be deleted. */
    int orphans = 0;
    if (nsrt_delete(c, r->name, c->cfg->ns_delete_timeout_ms, &orphans, &se))
        return reap_failed(c, r, "delete", &se, retry_ms, e);
    if (orphans > 0) {
        serr_set(&se, SE_IO, "%d orphaned volume(s) remain after deletion", orphans);
        return reap_failed(c, r, "verify", &se, retry_ms, e);
    }
    log_info("Deleted namespace %s", r->name);
    int64_t now = now_ms();
    bool lost = json_is_true(json_object_get(json_object_get(r->status, "diagnostics"), "diagnostics_lost"));
    json_object_set_new(r->status, "reapedMs", json_integer(now));
    json_object_set_new(reap, "step", json_string("done"));
    json_object_set_new(reap, "orphanedVolumes", json_integer(0));
    set_status_annotation(r, NP_REAPED);
    int64_t started = jint(reap, "startedMs", now);
    r->due_ms = 0;
    char why[96];
    if (lost)
        snprintf(why, sizeof(why), "DIAGNOSTICS LOST: uploads failed past the upload window");
    else
        snprintf(why, sizeof(why), "%zu file(s) stored and verified first",
                 json_array_size(json_object_get(json_object_get(r->status, "diagnostics"), "files")));
    if ((rc = phase_change(c, &ns_fsm, r, NP_REAPED, "Reaped", why, e)))
        return rc;
    metrics_inc("namespace_reaped_total", lost ? "result=\"diagnostics_lost\"" : "result=\"archived\"", 1);
    metrics_observe("namespace_reap_duration_seconds", "", (double)(now - started) / 1000.0);
    log_info("Successfully reaped namespace %s", r->name);
    ns_audit(c, user, r->tenant, "reap", r->name, ns_bucket_of(r), lost ? "ok, diagnostics lost" : "ok",
          json_pack("{s:O}", "diagnostics", json_object_get(r->status, "diagnostics")));
    return 0;
}

static int to_reaping(ctl_ctx *c, resource *r, const char *reason, const char *why, serr *e) {
    set_status_annotation(r, NP_REAPING);
    r->due_ms = now_ms();
    return phase_change(c, &ns_fsm, r, NP_REAPING, reason, why, e);
}

static void sweep_done(bool ok) {
    pthread_mutex_lock(&sweep_mu);
    if (sweep_pending > 0) {
        sweep_pending--;
        if (ok) sweep_ok++;
        else sweep_failed++;
        if (sweep_pending == 0)
            log_info("Cleanup worker finished: %d successful, %d failed", sweep_ok, sweep_failed);
    }
    pthread_mutex_unlock(&sweep_mu);
}

/* The namespace's lock within wait_ms (< 0: however long it takes). */
static bool lock_within(pthread_mutex_t *mu, int64_t wait_ms) {
    if (wait_ms < 0) return pthread_mutex_lock(mu) == 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* timedlock's clock */
    ts.tv_sec += (time_t)(wait_ms / 1000);
    ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_mutex_timedlock(mu, &ts) == 0;
}

/* A reap someone else is running took longer than the caller would wait:
 * the namespace as it stands, read without the lock. */
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

int ns_reap_within(ctl_ctx *c, const char *ns, const char *user, int64_t wait_ms, json_t **result,
                   serr *e) {
    *result = NULL;
    pthread_mutex_t *mu = lock_of(ns);
    if (!lock_within(mu, wait_ms)) return reap_busy(c, ns, result, e);
    resource r;
    int rc = ns_lookup(c, NULL, ns, &r, e);
    if (rc) goto out;
    int ph = phase_of(&ns_fsm, &r);
    if (ph == NP_REAPED) {
        /* Idempotent: the outcome recorded when it was reaped (by the
         * reaper, which takes a finalized namespace at once, or by an
         * earlier call whose answer the client never got). */
        char msg[200], t[40];
        snprintf(msg, sizeof(msg), "Namespace %s was already reaped at %s", r.name,
                 rfc(jint(r.status, "reapedMs", 0), t, sizeof(t)));
        *result = reap_result(&r, true, msg);
        json_object_set_new(*result, "alreadyReaped", json_true());
        goto out;
    }
    if (ph != NP_REAPING) {
        if ((rc = fsm_check_op(&ns_fsm, r.name, ph, NO_REAP, e))) goto out;
        if ((rc = to_reaping(c, &r, "ManualReap", "requested by a user", e))) goto out;
    }
    int64_t retry = -1;
    serr se = {0};
    rc = reap_step(c, &r, user, &retry, &se);
    if (rc == 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Namespace %s successfully reaped", r.name);
        *result = reap_result(&r, true, msg);
        json_object_set_new(*result, "alreadyReaped", json_false());
    } else if (rc == SE_UNAVAIL) {
        *result = reap_result(&r, false, se.msg);
        ctl_enqueue(c, KIND, r.name); /* the controller owns the retries */
        serr_set(e, rc, "%s", se.msg);
    } else {
        serr_set(e, rc, "%s", se.msg);
    }
out:
    resource_free(&r);
    pthread_mutex_unlock(mu);
    return rc;
}

int ns_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    *requeue_ms = -1;
    pthread_mutex_t *mu = lock_of(name);
    pthread_mutex_lock(mu);
    resource r;
    resource_init(&r);
    int rc = store_get(c->st, KIND, name, &r, e);
    if (rc == SE_NOTFOUND) {
        rc = 0;
        goto out;
    }
    if (rc) goto out;
    int ph = phase_of(&ns_fsm, &r);
    int64_t now = now_ms();
    if (ph == NP_ACTIVE && r.due_ms > 0 && r.due_ms <= now) {
        char why[128], d[32];
        snprintf(why, sizeof(why), "no activity for %s",
                 fmt_duration(now - jint(r.status, "lastActivityMs", r.created_ms), d, sizeof(d)));
        if ((rc = to_reaping(c, &r, "Inactive", why, e))) goto out;
        ph = NP_REAPING;
    } else if (ph == NP_FINALIZED) {
        if ((rc = to_reaping(c, &r, "FinalizedReap", NULL, e))) goto out;
        ph = NP_REAPING;
    } else if (ph == NP_ACTIVE) {
        /* Make sure the directory exists (a crash between nsrt_create and
         * the store cannot leave the opposite, but a restore could). */
        serr ie = {0};
        nsrt_create(c, r.name, &ie);
    }
    if (ph == NP_REAPING) {
        if (r.due_ms > now + 50) { /* a retry that is not due yet */
            *requeue_ms = r.due_ms - now;
            goto out;
        }
        int64_t retry = -1;
        serr se = {0};
        rc = reap_step(c, &r, "reaper", &retry, &se);
        if (rc == SE_UNAVAIL) {
            *requeue_ms = retry;
            rc = 0;
            sweep_done(false);
        } else if (rc == 0) {
            sweep_done(true);
        } else {
            serr_set(e, rc, "%s", se.msg);
            sweep_done(false);
        }
    }
out:
    resource_free(&r);
    pthread_mutex_unlock(mu);
    return rc;
}

/* ---- sweeps ---- */

typedef struct sweep_arg {
    ctl_ctx *c;
    bool dry_run;
    json_t *out;
    int64_t last_due;
    char last_name[RES_NAME_MAX];
    int n;
} sweep_arg;

static int sweep_one(const resource *r, void *arg) {
    sweep_arg *s = arg;
    s->last_due = r->due_ms;
    str_copy(s->last_name, sizeof(s->last_name), r->name);
    s->n++;
    if (s->dry_run) json_array_append_new(s->out, ns_to_json(s->c, r));
    else ctl_wake(s->c, KIND, r->name);
    return 0;
}

int ns_sweep(ctl_ctx *c, bool dry_run, int limit, json_t **out, serr *e) {
    sweep_arg s = {.c = c, .dry_run = dry_run, .out = dry_run ? json_array() : NULL};
    int64_t now = now_ms();
    int rc = 0;
    for (;;) {
        int want = NS_SWEEP_BATCH;
        if (limit > 0 && limit - s.n < want) want = limit - s.n;
        if (want <= 0) break;
        rc = store_list_due(c->st, KIND, s.last_due, s.last_name, now, want, sweep_one, &s, e);
        if (rc < 0) break;
        if (rc < want) {
            rc = 0;
            break;
        }
        rc = 0;
    }
    if (out) *out = s.out;
    else json_decref(s.out);
    if (rc < 0) return rc;
    if (!dry_run) {
        metrics_inc("namespace_reaper_sweeps_total", "", 1);
        metrics_set("namespace_reaper_eligible", "", s.n);
        if (s.n > 0) {
            log_info("Found %d namespaces eligible for cleanup", s.n);
            pthread_mutex_lock(&sweep_mu);
            sweep_pending = s.n;
            sweep_ok = sweep_failed = 0;
            pthread_mutex_unlock(&sweep_mu);
        }
    }
    return s.n;
}

typedef struct rebase_arg {
    ctl_ctx *c;
    int n;
} rebase_arg;

static int rebase_one(const resource *r, void *arg) {
    rebase_arg *ra = arg;
    if (phase_of(&ns_fsm, r) != NP_ACTIVE) return 0;
    resource copy;
    resource_init(&copy);
    if (resource_copy(&copy, r) == 0) {
        copy.due_ms = jint(r->status, "lastActivityMs", r->created_ms) + ra->c->cfg->inactivity_threshold_ms;
        if (store_update(ra->c->st, &copy, NULL, NULL) == 0) ra->n++;
    }
    resource_free(&copy);
    return 0;
}

int ns_rebase_due(ctl_ctx *c, serr *e) {
    char want[32], *have = NULL;
    snprintf(want, sizeof(want), "%lld", (long long)c->cfg->inactivity_threshold_ms);
    int rc = store_meta_get(c->st, "ns_inactivity_threshold_ms", &have, NULL);
    bool same = rc == 0 && strcmp(have, want) == 0;
    free(have);
    if (same) return 0;
    rebase_arg ra = {.c = c};
    if (rc == 0) {
        if ((rc = store_list(c->st, KIND, NULL, rebase_one, &ra, e))) return rc;
        log_info("inactivity-threshold changed: %d active namespaces rescheduled", ra.n);
    }
    return store_meta_set(c->st, "ns_inactivity_threshold_ms", want, e);
}

int64_t ns_retention_ms(ctl_ctx *c, const char *tenant) {
    const char *list = c->cfg->regulatory_locked_tenants;
    size_t tl = strlen(tenant);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ", ");
        if (n == tl && strncmp(p, tenant, n) == 0) return c->cfg->regulatory_retention_ms;
        p += n;
        while (*p == ',' || *p == ' ') p++;
    }
    return c->cfg->diagnostics_retention_ms;
}

static int64_t retention_cb(const char *tenant, void *arg) { return ns_retention_ms(arg, tenant); }

int ns_retention_sweep(ctl_ctx *c, serr *e) {
    int n = blob_expire(c->blobs, c->cfg->diagnostic_container, now_ms(), retention_cb, c, e);
    if (n > 0) {
        metrics_inc("namespace_archives_expired_total", "", n);
        log_info("retention: %d archived diagnostics blobs expired", n);
    }
    return n < 0 ? n : 0;
}
