/*
 * ns_kind.c - the Namespace kind: its lock, its metrics, create, look up,
 * show, activity, finalize, audit, and the changes of what runs in it
 * (pods, volumes, annotations).  The reap is ns_reap.c's; the reaper
 * (controller, sweeps, retention) ns_reaper.c's.  See ns.h for the model.
 *
 * Threading: any thread.  Every change of a namespace is made under its
 * lock (ns_lock) with its phase read again under it, so a change and a
 * phase change are never interleaved: a pod is either started before the
 * namespace enters reaping (and is stopped and archived by the reap) or
 * refused.  The lock is held for short steps only.
 */
#include "ns/ns_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/phase.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

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

void ns_lock(const char *ns) { pthread_mutex_lock(lock_of(ns)); }

void ns_unlock(const char *ns) { pthread_mutex_unlock(lock_of(ns)); }

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

const char *ns_bucket_of(const resource *r) { return jstr(r->spec, "bucket_id", ""); }

void nsi_set_status_annotation(resource *r, int phase) {
    json_object_set_new(r->annotations, "status", json_string(fsm_phase_name(&ns_fsm, phase)));
}

int nsi_to_reaping(ctl_ctx *c, resource *r, const char *reason, const char *why, serr *e) {
    nsi_set_status_annotation(r, NP_REAPING);
    r->due_ms = now_ms();
    return phase_change(c, &ns_fsm, r, NP_REAPING, reason, why, e);
}

void ns_audit(ctl_ctx *c, const char *user, const char *tenant, const char *op, const char *ns,
              const char *bucket, const char *result, json_t *extra) {
    json_t *d = json_pack("{s:s,s:s}", "namespace", ns, "bucket_id", bucket ? bucket : "");
    if (extra) json_object_update(d, extra);
    json_decref(extra);
    store_audit a = {.user = user ? user : "", .tenant = tenant ? tenant : "", .operation = op,
                     .kind = NS_KIND, .name = ns, .result = result, .detail = d};
    serr e = {0};
    if (store_audit_add(c->st, &a, &e)) log_warnx("audit append failed: %s", e.msg);
    json_decref(d);
}

/* ---- create, look up, show ---- */

/* The record of a new namespace ns of bucket, active. */
static void record_new(ctl_ctx *c, const char *tenant, const char *user, const char *bucket,
                       const char *ns, json_t *labels, resource *out) {
    int64_t now = now_ms();
    char ts[40];
    rfc(now, ts, sizeof(ts));
    resource_init(out);
    str_copy(out->kind, sizeof(out->kind), NS_KIND);
    str_copy(out->name, sizeof(out->name), ns);
    str_copy(out->tenant, sizeof(out->tenant), tenant);
    json_object_set_new(out->labels, "app", json_string("livecalc"));
    json_object_set_new(out->labels, "bucket-id", json_string(bucket));
    json_object_set_new(out->labels, "managed-by", json_string("livecalc-platform"));
    json_object_set_new(out->labels, "lifecycle", json_string("transient"));
    if (labels) json_object_update_missing(out->labels, labels);
    json_object_set_new(out->annotations, "created-at", json_string(ts));
    json_object_set_new(out->annotations, "last-activity", json_string(ts));
    nsi_set_status_annotation(out, NP_ACTIVE);
    json_object_set_new(out->spec, "bucket_id", json_string(bucket));
    json_object_set_new(out->spec, "createdBy", json_string(user ? user : ""));
    phase_init(&ns_fsm, out, NP_ACTIVE);
    json_object_set_new(out->status, "lastActivityMs", json_integer(now));
    out->due_ms = now + c->cfg->inactivity_threshold_ms;
    if (out->due_ms <= 0) out->due_ms = 1;
}

/* ns_create under the namespace's lock. */
static int create_locked(ctl_ctx *c, const char *tenant, const char *user, const char *bucket,
                         const char *ns, json_t *labels, resource *out, serr *e) {
    resource old;
    resource_init(&old);
    int rc = store_get(c->st, NS_KIND, ns, &old, NULL);
    if (rc == 0) {
        int ph = phase_of(&ns_fsm, &old);
        int64_t rv = old.resource_version;
        resource_free(&old);
        if (ph != NP_REAPED) return serr_set(e, SE_EXISTS, "namespace %s already exists", ns);
        /* A reaped record gives way to the new namespace of the same bucket;
         * its events and audit entries stay. */
        if ((rc = store_delete(c->st, NS_KIND, ns, rv, e))) return rc;
    } else {
        resource_free(&old);
    }
    record_new(c, tenant, user, bucket, ns, labels, out);
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

int ns_create(ctl_ctx *c, const char *tenant, const char *user, const char *bucket,
              const char *name, json_t *labels, resource *out, serr *e) {
    int rc;
    if ((rc = ns_tenant_check(tenant, e)) || (rc = ns_bucket_check(bucket, e))) return rc;
    char ns[RES_NAME_MAX];
    if (name) str_copy(ns, sizeof(ns), name);
    else snprintf(ns, sizeof(ns), "%s%s", NS_PREFIX, bucket);
    if ((rc = ns_name_check(ns, e))) return rc;
    ns_lock(ns);
    rc = create_locked(c, tenant, user, bucket, ns, labels, out, e);
    ns_unlock(ns);
    return rc;
}

/* On failure *out holds nothing to free (resource_free on it is a no-op). */
int ns_lookup(ctl_ctx *c, const char *tenant, const char *ns, resource *out, serr *e) {
    resource_init(out);
    int rc = ns_name_check(ns, e);
    if (rc == 0) rc = store_get(c->st, NS_KIND, ns, out, e);
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

/* Under the namespace's lock: read r again (the caller's copy may be
 * older than a phase change), apply the change and write it; on a conflict
 * (a writer in another stampd sharing the store) read and re-apply, a few
 * times. */
static int locked_apply(ctl_ctx *c, resource *r, int (*apply)(ctl_ctx *, resource *, serr *),
                        serr *e) {
    char name[RES_NAME_MAX];
    str_copy(name, sizeof(name), r->name);
    ns_lock(name);
    int rc;
    for (int tries = 0;; tries++) {
        if ((rc = store_get(c->st, NS_KIND, name, r, e))) break;
        rc = apply(c, r, e);
        if (rc != SE_CONFLICT || tries >= 5) break;
    }
    ns_unlock(name);
    return rc;
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
    if (finalized_already(phase_of(&ns_fsm, r))) return 1; /* nothing to do */
    int rc = fsm_check_op(&ns_fsm, r->name, phase_of(&ns_fsm, r), NO_FINALIZE, e);
    if (rc) return rc;
    int64_t now = now_ms();
    json_object_set_new(r->status, "finalizedMs", json_integer(now));
    nsi_set_status_annotation(r, NP_FINALIZED);
    r->due_ms = now; /* eligible at once */
    return phase_change(c, &ns_fsm, r, NP_FINALIZED, "Finalized", NULL, e);
}

int ns_activity(ctl_ctx *c, resource *r, serr *e) { return locked_apply(c, r, activity_once, e); }

int ns_finalize(ctl_ctx *c, resource *r, bool *already, serr *e) {
    int rc = locked_apply(c, r, finalize_once, e);
    bool was = rc == 1;
    if (already) *already = was;
    if (was) return 0;
    if (rc == 0) ctl_enqueue(c, NS_KIND, r->name);
    return rc;
}

/* ---- what runs in a namespace ---- */

/* Takes ns's lock and reads it under the lock: 0 with the lock held when
 * its phase allows op (of tenant's namespace; NULL: any tenant's), else
 * the error with the lock released. */
static int lock_for(ctl_ctx *c, const char *tenant, const char *ns, int op, resource *r, serr *e) {
    int rc = ns_name_check(ns, e);
    if (rc) {
        resource_init(r);
        return rc;
    }
    ns_lock(ns);
    rc = ns_lookup(c, tenant, ns, r, e);
    if (rc == 0) rc = fsm_check_op(&ns_fsm, r->name, phase_of(&ns_fsm, r), op, e);
    if (rc) {
        resource_free(r);
        ns_unlock(ns);
    }
    return rc;
}

int ns_pod_start(ctl_ctx *c, const char *tenant, const char *ns, const char *pod,
                 const char *prog, json_t *args, json_t *env, json_t *volumes, int64_t timeout_ms,
                 serr *e) {
    resource r;
    int rc = lock_for(c, tenant, ns, NO_POD, &r, e);
    if (rc) return rc;
    rc = nsrt_pod_start(c, ns, ns_bucket_of(&r), pod, prog, args, env, volumes, timeout_ms, e);
    ns_unlock(ns);
    resource_free(&r);
    return rc;
}

int ns_volume_create(ctl_ctx *c, const char *tenant, const char *ns, const char *vol, serr *e) {
    resource r;
    int rc = lock_for(c, tenant, ns, NO_POD, &r, e);
    if (rc) return rc;
    rc = nsrt_volume_create(c, ns, vol, e);
    ns_unlock(ns);
    resource_free(&r);
    return rc;
}

int ns_annotate(ctl_ctx *c, const char *tenant, const char *ns, const char *pod, json_t *set,
                serr *e) {
    int rc = ns_pod_check(pod, e);
    const char *k;
    json_t *v;
    /* All or nothing: every member is checked before any is written. */
    json_object_foreach(set, k, v) {
        if (rc) break;
        if (!json_is_string(v) && !json_is_null(v)) {
            char shown[80];
            rc = serr_set(e, SE_INVAL, "annotation %s: a string or null",
                          utf8_sanitize(k, strlen(k), shown, sizeof(shown)));
            break;
        }
        rc = nsrt_annotate_check(k, json_string_value(v), e);
    }
    if (rc) return rc;
    resource r;
    if ((rc = lock_for(c, tenant, ns, NO_ANNOTATE, &r, e))) return rc;
    json_object_foreach(set, k, v) {
        if ((rc = nsrt_annotate(c, ns, pod, k, json_string_value(v), e))) break;
    }
    ns_unlock(ns);
    resource_free(&r);
    return rc;
}
