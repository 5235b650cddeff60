/*
 * routes_ns.c - seed 004's platform API: namespaces, their pods and
 * volumes, the reaper, model bundles, runs and MTTC verification; and token
 * minting for operators.
 *
 * Tenancy: a namespace, bundle or run belongs to the tenant of the token
 * that created it.  Any other tenant gets 404 for it, exactly as for one
 * that does not exist, and never sees it in a list.  The operator role is
 * the platform's own and sees every tenant (lists only with
 * ?all_tenants=true).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "auth/jwt.h"
#include "core/template.h"
#include "ns/ns.h"
#include "reconcile/phase.h"
#include "util/log.h"
#include "util/util.h"

/* How long a reap call waits for a reap already running (the reaper's)
 * before it answers 202 with the state.  The wait is a job's, not an API
 * thread's. */
#define NS_REAP_WAIT_MS 5000

/* The tenant a request is scoped to: NULL (all) for operators. */
static const char *scope(api_req *rq) { return rq->operator_role ? NULL : rq->tenant; }

static int lookup(api *a, api_req *rq, api_resp *rs, resource *r) {
    serr e = {0};
    int rc = ns_lookup(api_ctx(a), scope(rq), rq->params[0], r, &e);
    if (rc) api_error_serr(rs, &e);
    return rc;
}

/* extra: more detail, stolen (the callers build it in the call). */
static void audit_ns(api *a, api_req *rq, const char *op, const char *ns, const char *bucket,
                     int rc, const serr *e, json_t *extra) {
    const char *result = rc == 0 ? "ok" : e->msg[0] ? e->msg : se_text(rc);
    ns_audit(api_ctx(a), rq->user, rq->tenant, op, ns ? ns : "", bucket, result, extra);
}

static bool truthy(const char *v) { return v && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0); }

/* ---- slow work as jobs ----
 *
 * A reap, a run and an MTTC verification run in the job pool; the request
 * waits suspended (api_run_job) and is answered, with the status and body
 * it always had, by a finish function once the job has ended.  The job
 * writes the audit entry, so that work done for a client that went away
 * is audited too (a request that joined a running job adds none: the
 * job's entry is the one).  What a job needs is copied into an ns_call,
 * which the pool frees once the job has run; the finish functions need
 * only the job's result. */

typedef struct ns_call {
    ctl_ctx *c;
    char ns[RES_NAME_MAX];
    char bucket[NS_BUCKET_MAX + 1];
    char hash[65];
    char *tenant, *user;
    json_t *config;
} ns_call;

static void call_free(void *p) {
    ns_call *k = p;
    if (k == NULL) return;
    free(k->tenant);
    free(k->user);
    json_decref(k->config);
    free(k);
}

/* NULL when out of memory. */
static ns_call *call_new(api *a, api_req *rq, const char *ns, const char *bucket,
                         const char *hash, json_t *config) {
    ns_call *k = calloc(1, sizeof(*k));
    if (k == NULL) return NULL;
    k->c = api_ctx(a);
    str_copy(k->ns, sizeof(k->ns), ns ? ns : "");
    str_copy(k->bucket, sizeof(k->bucket), bucket ? bucket : "");
    str_copy(k->hash, sizeof(k->hash), hash ? hash : "");
    k->tenant = strdup(rq->tenant ? rq->tenant : "");
    k->user = strdup(rq->user ? rq->user : "");
    k->config = config ? json_deep_copy(config) : NULL;
    if (k->tenant == NULL || k->user == NULL || (config && k->config == NULL)) {
        call_free(k);
        return NULL;
    }
    return k;
}

/* Submits fn(k) (k is the job's from here on); 0, or the refusal answered
 * in rs (429 queue full, 503 too many waiting). */
static int run_job(api *a, api_req *rq, api_resp *rs, const char *key, job_fn fn,
                   api_finish_fn finish, ns_call *k) {
    if (k == NULL) return api_error(rs, SE_NOMEM, "out of memory");
    return api_run_job(a, rq, rs, key, fn, k, call_free, finish, NULL, NULL);
}

/* The audit entry of the work a job did, written by the job when it ends
 * (whether or not the client still waits for the answer).  extra: stolen. */
static void job_audit(const ns_call *k, const char *op, int rc, const serr *e, json_t *extra) {
    const char *result = rc == 0 ? "ok" : e->msg[0] ? e->msg : se_text(rc);
    ns_audit(k->c, k->user, k->tenant, op, k->ns, k->bucket, result, extra);
}

/* The error a job finished with, as an serr. */
static serr job_err(const job_result *res) {
    serr e = {.code = res->rc};
    str_copy(e.msg, sizeof(e.msg), res->message);
    return e;
}

/* The message of an error answered in rs (for the audit of a refusal). */
static serr answered_err(int rc, const api_resp *rs) {
    serr e = {.code = rc};
    const char *m = json_string_value(json_object_get(json_object_get(rs->body, "error"), "message"));
    str_copy(e.msg, sizeof(e.msg), m ? m : se_text(rc));
    return e;
}

int h_ns_create(api *a, api_req *rq, api_resp *rs) {
    const char *bucket = api_query(rq, "bucket_id");
    if (bucket == NULL && rq->body) bucket = json_string_value(json_object_get(rq->body, "bucket_id"));
    if (rq->body) {
        serr ke = {0};
        static const char *const keys[] = {"bucket_id", NULL};
        if (json_check_keys(rq->body, "body", keys, &ke)) return api_error_serr(rs, &ke);
    }
    resource r;
    serr e = {0};
    int rc = ns_create(api_ctx(a), rq->tenant, rq->user, bucket, NULL, NULL, &r, &e);
    /* The name audited for a refused create; a bucket id too long for one
     * (refused as such) is audited with none. */
    char ns[RES_NAME_MAX];
    int n = snprintf(ns, sizeof(ns), "%s%s", NS_PREFIX, bucket ? bucket : "");
    if (n < 0 || (size_t)n >= sizeof(ns)) ns[0] = '\0';
    audit_ns(a, rq, "create", rc == 0 ? r.name : ns, bucket, rc, &e, NULL);
    if (rc) return api_error_serr(rs, &e);
    char t[40];
    api_json(rs, 201, json_pack("{s:s,s:s,s:s}", "namespace", r.name, "bucket_id", bucket,
                                "created_at", fmt_time_rfc3339(r.created_ms, t, sizeof(t))));
    resource_free(&r);
    return 0;
}

typedef struct list_arg {
    ctl_ctx *c;
    json_t *arr;
    const char *status;
} list_arg;

static int list_row(const resource *r, void *arg) {
    list_arg *l = arg;
    json_t *o = ns_to_json(l->c, r);
    if (l->status && strcmp(json_string_value(json_object_get(o, "status")), l->status) != 0) {
        json_decref(o);
        return 0;
    }
    json_array_append_new(l->arr, o);
    return 0;
}

int h_ns_list(api *a, api_req *rq, api_resp *rs) {
    list_arg l = {.c = api_ctx(a), .arr = json_array(), .status = api_query(rq, "status")};
    const char *tenant = rq->tenant;
    if (rq->operator_role && truthy(api_query(rq, "all_tenants"))) tenant = NULL;
    serr e = {0};
    if (store_list(l.c->st, "Namespace", tenant, list_row, &l, &e)) {
        json_decref(l.arr);
        return api_error_serr(rs, &e);
    }
    return api_json(rs, 200, json_pack("{s:o,s:I}", "namespaces", l.arr, "count",
                                       (json_int_t)json_array_size(l.arr)));
}

int h_ns_get(api *a, api_req *rq, api_resp *rs) {
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    api_json(rs, 200, ns_to_json(api_ctx(a), &r));
    resource_free(&r);
    return 0;
}

/* finalize and activity: one call on the namespace, audited, answered
 * with the namespace as it now stands. */
static int ns_op(api *a, api_req *rq, api_resp *rs, const char *what,
                 int (*op)(ctl_ctx *, resource *, serr *)) {
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    serr e = {0};
    int rc = op(api_ctx(a), &r, &e);
    audit_ns(a, rq, what, r.name, ns_bucket_of(&r), rc, &e, NULL);
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 200, ns_to_json(api_ctx(a), &r));
    resource_free(&r);
    return rc;
}

/* Idempotent: finalizing a namespace finalized already (or reaping, or
 * reaped) answers 200 with its state and "alreadyFinalized": true. */
int h_ns_finalize(api *a, api_req *rq, api_resp *rs) {
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    serr e = {0};
    bool already = false;
    int rc = ns_finalize(api_ctx(a), &r, &already, &e);
    audit_ns(a, rq, "finalize", r.name, ns_bucket_of(&r), rc, &e,
             already ? json_pack("{s:b}", "alreadyFinalized", 1) : NULL);
    if (rc) {
        api_error_serr(rs, &e);
    } else {
        json_t *o = ns_to_json(api_ctx(a), &r);
        json_object_set_new(o, "alreadyFinalized", json_boolean(already));
        api_json(rs, 200, o);
    }
    resource_free(&r);
    return rc;
}

int h_ns_activity(api *a, api_req *rq, api_resp *rs) {
    return ns_op(a, rq, rs, "activity", ns_activity);
}

/* A reap in progress (the reaper takes a finalized namespace at once) is
 * waited for, but only so long: then 202 with its state, and the client
 * asks again (a reap of a reaped namespace answers its outcome). */
static int reap_job(void *arg, json_t **result, serr *e) {
    ns_call *k = arg;
    int rc = ns_reap_within(k->c, k->ns, k->user, NS_REAP_WAIT_MS, result, e);
    if (rc == SE_TIMEOUT && *result)
        job_audit(k, "reap", 0, e, json_pack("{s:b}", "inProgress", 1));
    else
        job_audit(k, "reap", rc, e,
                  *result ? json_pack("{s:O}", "diagnostics", json_object_get(*result, "diagnostics"))
                          : NULL);
    return rc;
}

static void reap_finish(api *a, api_req *rq, job_result *res, void *farg, api_resp *rs) {
    (void)a, (void)rq, (void)farg;
    serr e = job_err(res);
    json_t *result = res->result;
    res->result = NULL;
    if (res->rc == SE_TIMEOUT && result) api_json(rs, 202, result);
    else if (result) api_json(rs, res->rc == 0 ? 200 : 503, result);
    else api_error_serr(rs, &e);
}

int h_ns_reap(api *a, api_req *rq, api_resp *rs) {
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    const char *bucket = api_query(rq, "bucket_id");
    if (bucket && strcmp(bucket, ns_bucket_of(&r)) != 0) {
        api_error(rs, SE_INVAL, "bucket_id %.64s does not match namespace %s (bucket %s)", bucket,
                  r.name, ns_bucket_of(&r));
        resource_free(&r);
        return -1;
    }
    /* dryRun=All (the API's convention) or dry_run=true (seed 004's, which
     * stampctl has sent): the same checks as the reap, then the plan. */
    if (rq->dry_run || truthy(api_query(rq, "dry_run"))) {
        int ph = phase_of(&ns_fsm, &r);
        serr e = {0};
        if (ph != NP_REAPING && ph != NP_REAPED && fsm_check_op(&ns_fsm, r.name, ph, NO_REAP, &e)) {
            resource_free(&r);
            return api_error_serr(rs, &e);
        }
        json_t *plan = ns_reap_plan(api_ctx(a), &r);
        json_object_set_new(plan, "dryRun", json_true());
        json_object_set_new(plan, "alreadyReaped", json_boolean(ph == NP_REAPED));
        api_json(rs, 200, plan);
        resource_free(&r);
        return 0;
    }
    /* One reap job per namespace: a second call while it runs joins it. */
    char key[JOBS_KEY_MAX], name[RES_NAME_MAX], b[NS_BUCKET_MAX + 1];
    int n = snprintf(key, sizeof(key), "reap/%s", r.name); /* a checked name: it fits */
    if (n < 0 || (size_t)n >= sizeof(key)) {
        resource_free(&r);
        return api_error(rs, SE_INVAL, "namespace name too long");
    }
    str_copy(name, sizeof(name), r.name);
    str_copy(b, sizeof(b), ns_bucket_of(&r));
    resource_free(&r);
    int rc = run_job(a, rq, rs, key, reap_job, reap_finish, call_new(a, rq, name, b, NULL, NULL));
    if (rc) {
        serr e = answered_err(rc, rs);
        audit_ns(a, rq, "reap", name, b, rc, &e, NULL);
    }
    return rc;
}

int h_ns_pods_list(api *a, api_req *rq, api_resp *rs) {
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    api_json(rs, 200, json_pack("{s:s,s:o}", "namespace", r.name, "pods", nsrt_pods(api_ctx(a), r.name)));
    resource_free(&r);
    return 0;
}

int h_ns_pod_create(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"name", "args", "env", "volumes", NULL};
    serr e = {0};
    if (rq->body == NULL) return api_error(rs, SE_INVAL, "body {\"name\": ..., \"args\": [...]} required");
    if (json_check_keys(rq->body, "body", keys, &e)) return api_error_serr(rs, &e);
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    const char *pod = json_string_value(json_object_get(rq->body, "name"));
    /* The phase is checked again under the namespace's lock, with the start. */
    int rc = ns_pod_start(api_ctx(a), scope(rq), r.name, pod ? pod : "", NULL,
                          json_object_get(rq->body, "args"), json_object_get(rq->body, "env"),
                          json_object_get(rq->body, "volumes"), 0, &e);
    audit_ns(a, rq, "pod-create", r.name, ns_bucket_of(&r), rc, &e,
             json_pack("{s:s}", "pod", pod ? pod : ""));
    if (rc == 0) {
        serr ae = {0};
        ns_activity(api_ctx(a), &r, &ae); /* starting work is activity */
        api_json(rs, 201, json_pack("{s:s,s:s}", "namespace", r.name, "pod", pod));
    } else {
        api_error_serr(rs, &e);
    }
    resource_free(&r);
    return rc;
}

int h_ns_pod_log(api *a, api_req *rq, api_resp *rs) {
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    serr e = {0};
    int64_t tail = 1 << 20;
    const char *t = api_query(rq, "limit_bytes");
    if (t && parse_i64(t, 1, 64 << 20, &tail) != 0) {
        resource_free(&r);
        return api_error(rs, SE_INVAL, "limit_bytes: 1..67108864");
    }
    char *data = NULL;
    size_t len = 0;
    int rc = ns_pod_check(rq->params[1], &e);
    if (rc == 0) rc = nsrt_pod_log(api_ctx(a), r.name, rq->params[1], (size_t)tail, &data, &len, NULL, &e);
    resource_free(&r);
    if (rc) return api_error_serr(rs, &e);
    rs->status = 200;
    rs->text = data;
    rs->text_len = len;
    rs->content_type = "text/plain";
    return 0;
}

int h_ns_pod_annotate(api *a, api_req *rq, api_resp *rs) {
    serr e = {0};
    if (rq->body == NULL || json_object_size(rq->body) == 0 || json_object_size(rq->body) > 16)
        return api_error(rs, SE_INVAL, "body: an object of 1-16 annotations (null removes one)");
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    int rc = ns_annotate(api_ctx(a), scope(rq), r.name, rq->params[1], rq->body, &e);
    audit_ns(a, rq, "annotate", r.name, ns_bucket_of(&r), rc, &e,
             json_pack("{s:s,s:O}", "pod", rq->params[1], "annotations", rq->body));
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 200, json_pack("{s:s,s:s}", "namespace", r.name, "pod", rq->params[1]));
    resource_free(&r);
    return rc;
}

int h_ns_volume_create(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"name", NULL};
    serr e = {0};
    if (rq->body == NULL) return api_error(rs, SE_INVAL, "body {\"name\": ...} required");
    if (json_check_keys(rq->body, "body", keys, &e)) return api_error_serr(rs, &e);
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    const char *vol = json_string_value(json_object_get(rq->body, "name"));
    int rc = ns_volume_create(api_ctx(a), scope(rq), r.name, vol ? vol : "", &e);
    audit_ns(a, rq, "volume-create", r.name, ns_bucket_of(&r), rc, &e,
             json_pack("{s:s}", "volume", vol ? vol : ""));
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 201, json_pack("{s:s,s:s}", "namespace", r.name, "volume", vol));
    resource_free(&r);
    return rc;
}

/* The namespace is read again: the request's copy is from before the job
 * waited its turn. */
static int run_job_fn(void *arg, json_t **result, serr *e) {
    ns_call *k = arg;
    resource r;
    int rc = ns_lookup(k->c, k->tenant, k->ns, &r, e);
    if (rc) {
        job_audit(k, "run", rc, e, json_pack("{s:s}", "model_bundle_hash", k->hash));
        return rc;
    }
    rc = mttc_run(k->c, &r, k->user, k->hash, k->config, result, e);
    if (rc == 0) {
        serr ae = {0};
        ns_activity(k->c, &r, &ae); /* starting work is activity */
    }
    resource_free(&r);
    job_audit(k, "run", rc, e, json_pack("{s:s}", "model_bundle_hash", k->hash));
    return rc;
}

static void run_finish(api *a, api_req *rq, job_result *res, void *farg, api_resp *rs) {
    (void)a, (void)rq, (void)farg;
    serr e = job_err(res);
    if (res->result) {
        api_json(rs, res->rc == 0 ? 201 : 422, res->result);
        res->result = NULL;
    } else {
        api_error_serr(rs, &e);
    }
}

int h_ns_run_create(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"model_bundle_hash", "config", NULL};
    serr e = {0};
    if (rq->body == NULL) return api_error(rs, SE_INVAL, "body {\"model_bundle_hash\": ...} required");
    if (json_check_keys(rq->body, "body", keys, &e)) return api_error_serr(rs, &e);
    resource r;
    if (lookup(a, rq, rs, &r)) return -1;
    const char *hash = json_string_value(json_object_get(rq->body, "model_bundle_hash"));
    /* What can be refused now is, before a job is spent on it. */
    int rc = 0;
    if (!ns_hash_valid(hash))
        rc = serr_set(&e, SE_INVAL, "model_bundle_hash must be 64 lowercase hex digits (sha256)");
    else if (json_object_get(rq->body, "config") && !json_is_object(json_object_get(rq->body, "config")))
        rc = serr_set(&e, SE_INVAL, "config must be an object");
    if (rc == 0) {
        /* No key: every run is a run of its own. */
        rc = run_job(a, rq, rs, NULL, run_job_fn, run_finish,
                     call_new(a, rq, r.name, ns_bucket_of(&r), hash, json_object_get(rq->body, "config")));
        if (rc) e = answered_err(rc, rs);
    }
    if (rc) {
        audit_ns(a, rq, "run", r.name, ns_bucket_of(&r), rc, &e,
                 json_pack("{s:s}", "model_bundle_hash", hash ? hash : ""));
        if (rs->body == NULL) api_error_serr(rs, &e);
    }
    resource_free(&r);
    return rc;
}

int h_runs_list(api *a, api_req *rq, api_resp *rs) {
    const char *bucket = api_query(rq, "bucket_id");
    serr e = {0};
    if (bucket && ns_bucket_check(bucket, &e)) return api_error_serr(rs, &e);
    return api_json(rs, 200, json_pack("{s:o}", "runs", mttc_runs_list(api_ctx(a), scope(rq), bucket)));
}

int h_bundles_push(api *a, api_req *rq, api_resp *rs) {
    if (rq->upload_file == NULL || rq->upload_len == 0)
        return api_error(rs, SE_INVAL, "the body is the bundle's bytes (application/octet-stream)");
    char hash[65];
    bool existed = false;
    serr e = {0};
    int rc = mttc_bundle_push_file(api_ctx(a), rq->tenant, rq->user, rq->upload_file,
                                   rq->upload_len, rq->upload_sha256, hash, &existed, &e);
    json_t *d = json_pack("{s:s,s:I}", "hash", rc == 0 ? hash : "", "size", (json_int_t)rq->upload_len);
    api_audit(a, rq, "bundle-push", "ModelBundle", rc == 0 ? hash : "", rc, &e, d);
    json_decref(d);
    if (rc) return api_error_serr(rs, &e);
    return api_json(rs, existed ? 200 : 201,
                    json_pack("{s:s,s:I,s:b}", "hash", hash, "size", (json_int_t)rq->upload_len,
                              "existed", existed));
}

int h_bundles_list(api *a, api_req *rq, api_resp *rs) {
    return api_json(rs, 200, json_pack("{s:o}", "bundles", mttc_bundle_list(api_ctx(a), rq->tenant)));
}

/* out: the verification's answer (NULL when it could not run). */
static void verify_audit(ctl_ctx *c, const char *user, const char *tenant, const char *bucket,
                         const char *hash, json_t *out, int rc, const serr *e) {
    json_t *d = json_pack("{s:s,s:s,s:s}", "bucket_id", bucket ? bucket : "", "model_bundle_hash",
                          hash ? hash : "", "result",
                          out ? json_string_value(json_object_get(out, "message")) : e->msg);
    const char *ns = out ? json_string_value(json_object_get(out, "verification_namespace")) : NULL;
    if (ns) json_object_set_new(d, "namespace", json_string(ns));
    bool passed = out && json_is_true(json_object_get(out, "success"));
    store_audit au = {.user = user, .tenant = tenant, .operation = "mttc-verify",
                      .kind = "Namespace", .name = ns ? ns : "",
                      .result = rc ? (e->msg[0] ? e->msg : se_text(rc))
                                   : (passed ? "ok" : "verification failed"),
                      .detail = d};
    serr ae = {0};
    if (store_audit_add(c->st, &au, &ae)) log_warnx("audit append failed: %s", ae.msg);
    json_decref(d);
}

static int verify_job(void *arg, json_t **result, serr *e) {
    ns_call *k = arg;
    int rc = mttc_verify(k->c, k->tenant, k->user, k->bucket, k->hash, result, e);
    verify_audit(k->c, k->user, k->tenant, k->bucket, k->hash, rc ? NULL : *result, rc, e);
    return rc;
}

static void verify_finish(api *a, api_req *rq, job_result *res, void *farg, api_resp *rs) {
    (void)a, (void)rq, (void)farg;
    serr e = job_err(res);
    json_t *out = res->rc ? NULL : res->result;
    if (res->rc) {
        api_error_serr(rs, &e);
        return;
    }
    res->result = NULL;
    api_json(rs, 200, out);
}

int h_mttc_verify(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"bucket_id", "model_bundle_hash", NULL};
    serr e = {0};
    if (rq->body == NULL) return api_error(rs, SE_INVAL, "body {\"bucket_id\", \"model_bundle_hash\"} required");
    if (json_check_keys(rq->body, "body", keys, &e)) return api_error_serr(rs, &e);
    const char *bucket = json_string_value(json_object_get(rq->body, "bucket_id"));
    const char *hash = json_string_value(json_object_get(rq->body, "model_bundle_hash"));
    /* Checked here (mttc_verify checks again) so that the job's key is
     * made of valid names only. */
    int rc = ns_bucket_check(bucket, &e);
    if (rc == 0 && !ns_hash_valid(hash))
        rc = serr_set(&e, SE_INVAL, "model_bundle_hash must be 64 lowercase hex digits (sha256)");
    if (rc == 0) {
        /* The same verification asked twice while it runs is run once. */
        char key[JOBS_KEY_MAX];
        int n = snprintf(key, sizeof(key), "mttc-verify/%s/%s/%s", rq->tenant, bucket, hash);
        /* Checked names fit (12 + 60 + 40 + 64 + 2 bytes); a cut key could
         * join another bucket's job. */
        if (n < 0 || (size_t)n >= sizeof(key)) return api_error(rs, SE_INVAL, "names too long");
        rc = run_job(a, rq, rs, key, verify_job, verify_finish,
                     call_new(a, rq, NULL, bucket, hash, NULL));
        if (rc == 0) return 0;
        e = answered_err(rc, rs);
    }
    verify_audit(api_ctx(a), rq->user, rq->tenant, bucket, hash, NULL, rc, &e);
    return api_error_serr(rs, &e);
}

int h_reaper_eligible(api *a, api_req *rq, api_resp *rs) {
    json_t *all = NULL;
    serr e = {0};
    int n = ns_sweep(api_ctx(a), true, 0, &all, &e);
    if (n < 0) return api_error_serr(rs, &e);
    json_t *mine = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(all, i, o) {
        if (scope(rq) == NULL || strcmp(json_string_value(json_object_get(o, "tenant_id")), rq->tenant) == 0)
            json_array_append(mine, o);
    }
    json_decref(all);
    return api_json(rs, 200, json_pack("{s:b,s:o,s:I}", "dry_run", 1, "eligible", mine, "count",
                                       (json_int_t)json_array_size(mine)));
}

int h_reaper_sweep(api *a, api_req *rq, api_resp *rs) {
    serr e = {0};
    int n = ns_sweep(api_ctx(a), false, 0, NULL, &e);
    api_audit(a, rq, "reaper-sweep", "Namespace", "", n < 0 ? n : 0, &e, NULL);
    if (n < 0) return api_error_serr(rs, &e);
    return api_json(rs, 202, json_pack("{s:i}", "enqueued", n));
}

int h_tokens_create(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"tenant_id", "user_id", "role", "ttl", NULL};
    serr e = {0};
    if (rq->body == NULL) return api_error(rs, SE_INVAL, "body {\"tenant_id\", \"user_id\"} required");
    if (json_check_keys(rq->body, "body", keys, &e)) return api_error_serr(rs, &e);
    ctl_ctx *c = api_ctx(a);
    const char *tenant = json_string_value(json_object_get(rq->body, "tenant_id"));
    const char *user = json_string_value(json_object_get(rq->body, "user_id"));
    const char *role = json_string_value(json_object_get(rq->body, "role"));
    const char *ttl = json_string_value(json_object_get(rq->body, "ttl"));
    int64_t ttl_ms = 3600 * 1000;
    if (ns_tenant_check(tenant, &e)) return api_error_serr(rs, &e);
    if (user == NULL || !*user || strlen(user) > 128) return api_error(rs, SE_INVAL, "user_id: 1-128 characters");
    if (role && strcmp(role, "operator") != 0 && strcmp(role, "tenant") != 0)
        return api_error(rs, SE_INVAL, "role: operator or tenant");
    if (ttl && (parse_duration_ms(ttl, &ttl_ms) != 0 || ttl_ms <= 0 || ttl_ms > 366LL * 86400000))
        return api_error(rs, SE_INVAL, "ttl: a duration up to 366d, like 1h");
    if (c->token_secret_len == 0) return api_error(rs, SE_UNAVAIL, "this stampd has no local signing secret");
    int64_t now = now_ms() / 1000;
    json_t *claims = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "iss", c->cfg->jwt_issuer, "aud",
                               c->cfg->jwt_audience, "sub", user, "user_id", user, "tenant_id",
                               tenant, "iat", (json_int_t)now, "exp", (json_int_t)(now + ttl_ms / 1000));
    if (role && strcmp(role, "operator") == 0) json_object_set_new(claims, "role", json_string("operator"));
    char *token = NULL;
    int rc = jwt_sign("HS256", c->token_secret, c->token_secret_len, NULL, JWT_LOCAL_KID, claims, &token, &e);
    json_decref(claims);
    json_t *d = json_pack("{s:s,s:s,s:s,s:I}", "for_tenant", tenant, "for_user", user, "role",
                          role ? role : "tenant", "ttl_seconds", (json_int_t)(ttl_ms / 1000));
    api_audit(a, rq, "token-create", "Token", user, rc, &e, d);
    json_decref(d);
    if (rc) return api_error_serr(rs, &e);
    char t[40];
    api_json(rs, 201, json_pack("{s:s,s:s,s:s,s:s}", "token", token, "tenant_id", tenant, "user_id", user,
                                "expires_at", fmt_time_rfc3339((now * 1000) + ttl_ms, t, sizeof(t))));
    free(token);
    return 0;
}
