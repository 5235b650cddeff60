/*
 * mttc.c - model bundles, runs and MTTC verification (seed 004).
 *
 * A bundle is stored once per tenant under its SHA-256 and recorded as a
 * ModelBundle resource ("{sha256}.{tenant}").  A run executes the
 * configured pipeline command as two pods of a namespace (so its output is
 * a pod log like any other and is archived when the namespace is reaped):
 *   CMD init WORKDIR BUNDLE_FILE
 *   CMD run  WORKDIR CONFIG_FILE OUT_FILE
 * and records a Run resource with the bucket, bundle hash, config and the
 * SHA-256 of OUT_FILE.  Verification repeats that in a fresh namespace
 * from the bundle fetched by hash and compares the result hashes.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob/blob.h"
#include "ns/ns.h"
#include "reconcile/jobs.h"
#include "reconcile/phase.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

#include <openssl/rand.h>

#define MTTC_TARGET_S 120.0
#define POLL_MS 10

void mttc_metrics_register(void) {
    metrics_register("mttc_verifications_total", MT_COUNTER, "MTTC verifications, by result");
    metrics_register("mttc_verify_duration_seconds", MT_HISTOGRAM,
                     "MTTC verification time, namespace creation to compared hashes (seconds)");
    metrics_register("model_bundles_pushed_total", MT_COUNTER, "Model bundles stored");
    metrics_register("pipeline_runs_total", MT_COUNTER, "Pipeline runs, by result");
}

static double secs(int64_t ms) { return (double)ms / 1000.0; }

/* ---- bundles ---- */

/* Records bundle hash of tenant after its bytes were stored and verified. */
static int bundle_record(ctl_ctx *c, const char *tenant, const char *user, const char *hash,
                         size_t len, const char *path, const char *name, serr *e) {
    resource r;
    resource_init(&r);
    str_copy(r.kind, sizeof(r.kind), "ModelBundle");
    str_copy(r.name, sizeof(r.name), name);
    str_copy(r.tenant, sizeof(r.tenant), tenant);
    json_object_set_new(r.spec, "hash", json_string(hash));
    json_object_set_new(r.spec, "size", json_integer((json_int_t)len));
    json_object_set_new(r.spec, "container", json_string(c->cfg->bundle_container));
    json_object_set_new(r.spec, "path", json_string(path));
    json_object_set_new(r.spec, "pushedBy", json_string(user ? user : ""));
    store_event ev = {.type = "Normal", .reason = "Stored", .message = "model bundle stored and verified"};
    int rc = store_create(c->st, &r, &ev, e);
    if (rc == SE_EXISTS) rc = 0;
    resource_free(&r);
    if (rc == 0) metrics_inc("model_bundles_pushed_total", "", 1);
    return rc;
}

static int bundle_check(ctl_ctx *c, const char *tenant, size_t len, serr *e) {
    int rc = ns_tenant_check(tenant, e);
    if (rc) return rc;
    if (len == 0) return serr_set(e, SE_INVAL, "an empty model bundle");
    if (len > (size_t)c->cfg->bundle_max_size)
        return serr_set(e, SE_TOOBIG, "model bundle of %zu bytes (bundle-max-size %lld)", len,
                        (long long)c->cfg->bundle_max_size);
    return 0;
}

/* The blob path and the record name of tenant's bundle hash.  They fit
 * (a tenant name is at most NS_TENANT_MAX); a cut one would name another
 * bundle, so that is an error all the same. */
static int bundle_names(const char *tenant, const char *hash, char *path, size_t plen, char *name,
                        size_t nlen, serr *e) {
    int n = snprintf(path, plen, "%s/%s", tenant, hash);
    int m = snprintf(name, nlen, "%s.%s", hash, tenant);
    if (n < 0 || (size_t)n >= plen || m < 0 || (size_t)m >= nlen)
        return serr_set(e, SE_INVAL, "model bundle names of tenant %.60s do not fit", tenant);
    return 0;
}

static bool bundle_known(ctl_ctx *c, const char *name) {
    resource r;
    resource_init(&r);
    bool known = store_get(c->st, "ModelBundle", name, &r, NULL) == 0;
    resource_free(&r);
    return known;
}

int mttc_bundle_push(ctl_ctx *c, const char *tenant, const char *user, const void *data,
                     size_t len, char *hash, bool *existed, serr *e) {
    int rc = bundle_check(c, tenant, len, e);
    if (rc) return rc;
    sha256_hex(data, len, hash);
    char path[256], name[RES_NAME_MAX];
    if ((rc = bundle_names(tenant, hash, path, sizeof(path), name, sizeof(name), e))) return rc;
    *existed = bundle_known(c, name);
    /* Stored (and read back) even when recorded: the blob may have gone. */
    if ((rc = blob_put_verified(c->blobs, c->cfg->bundle_container, path, data, len, NULL, e)))
        return rc;
    if (*existed) return 0;
    return bundle_record(c, tenant, user, hash, len, path, name, e);
}

int mttc_bundle_push_file(ctl_ctx *c, const char *tenant, const char *user, const char *file,
                          size_t len, const char *sha, char *hash, bool *existed, serr *e) {
    int rc = bundle_check(c, tenant, len, e);
    if (rc) return rc;
    if (sha == NULL || !ns_hash_valid(sha)) {
        int64_t size = 0;
        serr he = {0};
        if (sha256_file_hex(file, hash, &size, &he) != 0)
            return serr_set(e, he.code, "model bundle: cannot read the upload back");
    } else {
        str_copy(hash, 65, sha);
    }
    char path[256], name[RES_NAME_MAX];
    if ((rc = bundle_names(tenant, hash, path, sizeof(path), name, sizeof(name), e))) return rc;
    *existed = bundle_known(c, name);
    if ((rc = blob_put_file_verified(c->blobs, c->cfg->bundle_container, path, file, hash, e)))
        return rc;
    if (*existed) return 0;
    return bundle_record(c, tenant, user, hash, len, path, name, e);
}

static int bundle_row(const resource *r, void *arg) {
    char t[40];
    json_array_append_new(arg, json_pack("{s:s,s:I,s:s,s:s}", "hash", jstr(r->spec, "hash", ""),
                                         "size", (json_int_t)json_integer_value(json_object_get(r->spec, "size")),
                                         "pushed_at", fmt_time_rfc3339(r->created_ms, t, sizeof(t)),
                                         "pushed_by", jstr(r->spec, "pushedBy", "")));
    return 0;
}

json_t *mttc_bundle_list(ctl_ctx *c, const char *tenant) {
    json_t *arr = json_array();
    store_list(c->st, "ModelBundle", tenant, bundle_row, arr, NULL);
    return arr;
}

/* ---- the pipeline ---- */

/* A run's messages reach its tenant (in the Run record and the answer):
 * file-system errors there keep what went wrong and lose the server path
 * ("open /var/lib/stamp/...: No space left on device"). */
static int fs_error(serr *e, int rc, const char *what) {
    const char *why = strrchr(e->msg, ':');
    char tail[128];
    str_copy(tail, sizeof(tail), why && why[1] == ' ' ? why + 2 : se_text(rc));
    return serr_set(e, rc, "%s: %s", what, tail);
}

/* The safety net for messages from elsewhere (the pod runtime): the data
 * dir becomes "<data-dir>". */
static void mask_data_dir(const ctl_ctx *c, char *msg, size_t len) {
    size_t dl = strlen(c->data_dir);
    char *p;
    if (dl < 2 || (p = strstr(msg, c->data_dir)) == NULL) return;
    sbuf b;
    sbuf_init(&b, len);
    const char *s = msg;
    int bad = 0;
    while ((p = strstr(s, c->data_dir)) != NULL) {
        bad |= sbuf_add(&b, s, (size_t)(p - s));
        bad |= sbuf_adds(&b, "<data-dir>");
        s = p + dl;
    }
    bad |= sbuf_adds(&b, s);
    if (!bad && b.len < len) {
        memcpy(msg, b.data, b.len);
        msg[b.len] = '\0';
    }
    sbuf_free(&b);
}

static int wait_pod(ctl_ctx *c, const char *ns, const char *pod, int64_t timeout_ms, serr *e) {
    int64_t deadline = mono_ms() + timeout_ms + 5000; /* stamp-run enforces the timeout */
    for (;;) {
        char phase[32];
        int code = -1;
        int rc = nsrt_pod_phase(c, ns, pod, phase, sizeof(phase), &code, e);
        if (rc) return rc;
        if (strcmp(phase, "Succeeded") == 0) return 0;
        if (strcmp(phase, "Failed") == 0)
            return serr_set(e, SE_IO, "pod %s exited %d (see its log: stampctl ns logs %s %s)", pod,
                            code, ns, pod);
        if (strcmp(phase, "Unknown") == 0)
            return serr_set(e, SE_IO, "pod %s vanished without a result", pod);
        if (mono_ms() > deadline) return serr_set(e, SE_TIMEOUT, "pod %s did not finish", pod);
        /* This runs as a job: a stop of stampd does not wait for the pod. */
        if (jobs_stopping(c->jobs)) return serr_set(e, SE_UNAVAIL, "stampd is stopping");
        sleep_ms(POLL_MS);
    }
}

typedef struct pipe_times {
    int64_t fetch_ms, verify_ms, init_ms, exec_ms;
} pipe_times;

static const char *pipeline_prog(ctl_ctx *c, char *buf, size_t len) {
    if (c->cfg->pipeline_command[0]) str_copy(buf, len, c->cfg->pipeline_command);
    else snprintf(buf, len, "%s/stamp-pipeline", c->libexec);
    return buf;
}

/* Steps 2-5 of seed 004 in namespace ns; *result is the output's hash. */
static int pipeline_exec(ctl_ctx *c, const resource *ns, const char *hash, json_t *config,
                         const char *tag, char *result, pipe_times *t, serr *e) {
    memset(t, 0, sizeof(*t));
    char path[256], work[PATH_MAX], bpath[PATH_MAX + 32], cpath[PATH_MAX + 32], opath[PATH_MAX + 32];
    char sub[128], prog[PATH_MAX], pod[80];
    snprintf(sub, sizeof(sub), "work/%s", tag);
    if (nsrt_dir(c, ns->name, sub, work, sizeof(work)))
        return serr_set(e, SE_INVAL, "path too long");
    snprintf(bpath, sizeof(bpath), "%s/bundle", work);
    snprintf(cpath, sizeof(cpath), "%s/config.json", work);
    snprintf(opath, sizeof(opath), "%s/result", work);

    /* 2. load the bundle from blob storage by hash (before the work
     * directory is made: a missing bundle leaves nothing behind) */
    int64_t t0 = mono_ms();
    char bname[RES_NAME_MAX];
    int rc = bundle_names(ns->tenant, hash, path, sizeof(path), bname, sizeof(bname), e);
    if (rc) return rc;
    char *data = NULL;
    size_t len = 0;
    rc = blob_get(c->blobs, c->cfg->bundle_container, path, (size_t)c->cfg->bundle_max_size, &data,
                  &len, e);
    if (rc == SE_NOTFOUND)
        return serr_set(e, SE_NOTFOUND, "model bundle %.12s… is not in blob storage (%s/%s)", hash,
                        c->cfg->bundle_container, path);
    if (rc) return serr_wrap(e, "fetching model bundle");
    t->fetch_ms = mono_ms() - t0;
    /* 3. verify the bundle hash */
    t0 = mono_ms();
    char got[65];
    sha256_hex(data, len, got);
    if (strcmp(got, hash) != 0) {
        free(data);
        return serr_set(e, SE_IO, "model bundle %.12s… is corrupt: its content hashes to %.12s…",
                        hash, got);
    }
    if ((rc = mkdir_p(work, 0750, e))) {
        free(data);
        return fs_error(e, rc, "making the run's work directory");
    }
    rc = write_file_atomic(bpath, data, len, 0640, e);
    free(data);
    if (rc) return fs_error(e, rc, "copying the bundle to the run's work directory");
    t->verify_ms = mono_ms() - t0;
    char *ctext = json_dumps(config ? config : json_object(), JSON_COMPACT | JSON_SORT_KEYS);
    if (ctext == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    rc = write_file_atomic(cpath, ctext, strlen(ctext), 0640, e);
    free(ctext);
    if (rc) return fs_error(e, rc, "writing the run's config");
    pipeline_prog(c, prog, sizeof(prog));

    /* 4. initialise the pipeline */
    t0 = mono_ms();
    snprintf(pod, sizeof(pod), "%s-init", tag);
    json_t *args = json_pack("[s,s,s]", "init", work, bpath);
    rc = ns_pod_start(c, ns->tenant, ns->name, pod, prog, args, NULL, NULL,
                      c->cfg->pipeline_timeout_ms, e);
    json_decref(args);
    if (rc || (rc = wait_pod(c, ns->name, pod, c->cfg->pipeline_timeout_ms, e)))
        return serr_wrap(e, "pipeline init");
    t->init_ms = mono_ms() - t0;

    /* 5. execute with the same config */
    t0 = mono_ms();
    snprintf(pod, sizeof(pod), "%s-run", tag);
    args = json_pack("[s,s,s,s]", "run", work, cpath, opath);
    rc = ns_pod_start(c, ns->tenant, ns->name, pod, prog, args, NULL, NULL,
                      c->cfg->pipeline_timeout_ms, e);
    json_decref(args);
    if (rc || (rc = wait_pod(c, ns->name, pod, c->cfg->pipeline_timeout_ms, e)))
        return serr_wrap(e, "pipeline run");
    int64_t size = 0;
    if ((rc = sha256_file_hex(opath, result, &size, e))) return fs_error(e, rc, "pipeline result");
    t->exec_ms = mono_ms() - t0;
    return 0;
}

static void tag_new(char *buf, size_t len, const char *prefix) {
    unsigned char r[4] = {0};
    RAND_bytes(r, sizeof(r));
    snprintf(buf, len, "%s-%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3]);
}

/* ---- runs ---- */

static json_t *run_json(const resource *r) {
    char t[40];
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:O,s:s,s:s}", "run", r->name, "bucket_id",
                          jstr(r->spec, "bucket_id", ""), "namespace", jstr(r->spec, "namespace", ""),
                          "model_bundle_hash", jstr(r->spec, "model_bundle_hash", ""), "config",
                          json_object_get(r->spec, "config") ? json_object_get(r->spec, "config") : json_null(),
                          "status", jstr(r->status, "phase", ""), "created_at",
                          fmt_time_rfc3339(r->created_ms, t, sizeof(t)));
    const char *h = jstr(r->status, "result_hash", NULL);
    if (h) json_object_set_new(o, "result_hash", json_string(h));
    json_t *d = json_object_get(r->status, "duration_seconds");
    if (d) json_object_set(o, "duration_seconds", d);
    const char *m = jstr(r->status, "message", NULL);
    if (m) json_object_set_new(o, "message", json_string(m));
    return o;
}

int mttc_run(ctl_ctx *c, const resource *ns, const char *user, const char *hash, json_t *config,
             json_t **out, serr *e) {
    *out = NULL;
    if (!ns_hash_valid(hash))
        return serr_set(e, SE_INVAL, "model_bundle_hash must be 64 lowercase hex digits (sha256)");
    if (config && !json_is_object(config)) return serr_set(e, SE_INVAL, "config must be an object");
    int rc = fsm_check_op(&ns_fsm, ns->name, phase_of(&ns_fsm, ns), NO_RUN, e);
    if (rc) return rc;
    /* Before anything is recorded or made: an unknown bundle leaves no Run
     * and no work directory behind. */
    char bpath[256], bname[RES_NAME_MAX];
    if ((rc = bundle_names(ns->tenant, hash, bpath, sizeof(bpath), bname, sizeof(bname), e)))
        return rc;
    if (!bundle_known(c, bname))
        return serr_set(e, SE_NOTFOUND, "model bundle %.12s… is unknown: push it first (stampctl bundle push)",
                        hash);
    char tag[32];
    tag_new(tag, sizeof(tag), "run");
    resource r;
    resource_init(&r);
    str_copy(r.kind, sizeof(r.kind), "Run");
    int n = snprintf(r.name, sizeof(r.name), "%s.%s", ns->name, tag);
    if (n < 0 || (size_t)n >= sizeof(r.name)) {
        resource_free(&r);
        return serr_set(e, SE_INVAL, "namespace %s: run name too long", ns->name);
    }
    str_copy(r.tenant, sizeof(r.tenant), ns->tenant);
    json_object_set_new(r.spec, "bucket_id", json_string(ns_bucket_of(ns)));
    json_object_set_new(r.spec, "namespace", json_string(ns->name));
    json_object_set_new(r.spec, "model_bundle_hash", json_string(hash));
    json_object_set_new(r.spec, "config", config ? json_incref(config) : json_object());
    json_object_set_new(r.spec, "user", json_string(user ? user : ""));
    json_object_set_new(r.status, "phase", json_string("Running"));
    if ((rc = store_create(c->st, &r, NULL, e))) {
        resource_free(&r);
        return rc;
    }
    char result[65] = "";
    pipe_times t;
    serr pe = {0};
    int64_t t0 = mono_ms();
    int prc = pipeline_exec(c, ns, hash, config, tag, result, &t, &pe);
    int64_t dur = mono_ms() - t0;
    mask_data_dir(c, pe.msg, sizeof(pe.msg));
    json_object_set_new(r.status, "phase", json_string(prc == 0 ? "Succeeded" : "Failed"));
    json_object_set_new(r.status, "duration_seconds", json_real(secs(dur)));
    if (prc == 0) json_object_set_new(r.status, "result_hash", json_string(result));
    else json_object_set_new(r.status, "message", json_string(pe.msg));
    store_event ev = {.type = prc ? "Warning" : "Normal", .reason = prc ? "RunFailed" : "RunSucceeded",
                      .message = prc ? pe.msg : result};
    rc = store_update(c->st, &r, &ev, e);
    metrics_inc("pipeline_runs_total", prc ? "result=\"failed\"" : "result=\"succeeded\"", 1);
    if (rc == 0) *out = run_json(&r);
    resource_free(&r);
    if (rc == 0 && prc) return serr_set(e, prc, "%s", pe.msg);
    return rc;
}

typedef struct runs_arg {
    const char *bucket;
    const char *hash;
    json_t *arr;
    resource best; /* latest succeeded match */
    bool found;
} runs_arg;

static int runs_row(const resource *r, void *arg) {
    runs_arg *a = arg;
    if (a->bucket && strcmp(jstr(r->spec, "bucket_id", ""), a->bucket) != 0) return 0;
    if (a->arr) json_array_append_new(a->arr, run_json(r));
    if (a->hash && strcmp(jstr(r->spec, "model_bundle_hash", ""), a->hash) == 0 &&
        strcmp(jstr(r->status, "phase", ""), "Succeeded") == 0 &&
        (!a->found || r->created_ms >= a->best.created_ms)) {
        resource_copy(&a->best, r);
        a->found = true;
    }
    return 0;
}

json_t *mttc_runs_list(ctl_ctx *c, const char *tenant, const char *bucket) {
    runs_arg a = {.bucket = bucket, .arr = json_array()};
    resource_init(&a.best);
    store_list(c->st, "Run", tenant, runs_row, &a, NULL);
    resource_free(&a.best);
    return a.arr;
}

/* ---- verification ---- */

/* Step 8: the verification namespace is reaped like any other, its
 * diagnostics archived first, here and now (not finalized, which would
 * hand it to the controller and race this call); a failed archive leaves
 * it reaping, and the controller retries it.  When stampd is stopping it
 * is finalized instead, and the reaper takes it at the next start.  *out:
 * "reaped", or "pending: why". */
static void verify_cleanup(ctl_ctx *c, resource *ns, const char *user, char *out, size_t len) {
    serr ce = {0};
    json_t *reap = NULL;
    int rc;
    if (jobs_stopping(c->jobs)) {
        rc = ns_finalize(c, ns, NULL, &ce);
        if (rc == 0) rc = serr_set(&ce, SE_UNAVAIL, "stampd is stopping; the reaper takes the namespace");
    } else {
        rc = ns_reap_now(c, ns->name, user, &reap, &ce);
    }
    json_decref(reap);
    if (rc == 0) str_copy(out, len, "reaped");
    else snprintf(out, len, "pending: %s", ce.msg);
}

int mttc_verify(ctl_ctx *c, const char *tenant, const char *user, const char *bucket,
                const char *hash, json_t **out, serr *e) {
    *out = NULL;
    int rc = ns_bucket_check(bucket, e);
    if (rc) return rc;
    if (!ns_hash_valid(hash))
        return serr_set(e, SE_INVAL, "model_bundle_hash must be 64 lowercase hex digits (sha256)");
    runs_arg a = {.bucket = bucket, .hash = hash};
    resource_init(&a.best);
    store_list(c->st, "Run", tenant, runs_row, &a, NULL);
    if (!a.found) {
        resource_free(&a.best);
        return serr_set(e, SE_NOTFOUND,
                        "no successful run of bucket %s with bundle %.12s… is recorded; nothing to verify against",
                        bucket, hash);
    }
    char original[65];
    str_copy(original, sizeof(original), jstr(a.best.status, "result_hash", ""));
    json_t *config = json_incref(json_object_get(a.best.spec, "config"));
    char orig_run[RES_NAME_MAX];
    str_copy(orig_run, sizeof(orig_run), a.best.name);
    resource_free(&a.best);

    int64_t t0 = mono_ms();
    /* 1. a new namespace for the resumed run */
    char nsname[RES_NAME_MAX], tag[32];
    tag_new(tag, sizeof(tag), "v");
    snprintf(nsname, sizeof(nsname), "%s%s", NS_MTTC_PREFIX, tag + 2);
    json_t *labels = json_pack("{s:s,s:s}", "purpose", "mttc-verify", "mttc-run", orig_run);
    resource ns;
    rc = ns_create(c, tenant, user, bucket, nsname, labels, &ns, e);
    json_decref(labels);
    if (rc) {
        json_decref(config);
        return serr_wrap(e, "creating the verification namespace");
    }
    int64_t create_ms = mono_ms() - t0;
    /* 2-5 */
    char resumed[65] = "";
    pipe_times t;
    serr pe = {0};
    int prc = pipeline_exec(c, &ns, hash, config, "verify", resumed, &t, &pe);
    json_decref(config);
    mask_data_dir(c, pe.msg, sizeof(pe.msg));
    /* 6, 7 */
    bool match = prc == 0 && strcmp(original, resumed) == 0;
    int64_t total = mono_ms() - t0;
    /* 8. clean up */
    int64_t c0 = mono_ms();
    char cleanup[SERR_MSG_MAX + 32];
    verify_cleanup(c, &ns, user, cleanup, sizeof(cleanup));
    int64_t cleanup_ms = mono_ms() - c0;

    char msg[SERR_MSG_MAX + 64];
    if (prc) snprintf(msg, sizeof(msg), "MTTC verification failed: %s", pe.msg);
    else if (!match) snprintf(msg, sizeof(msg), "MTTC verification failed: result hashes differ");
    else snprintf(msg, sizeof(msg), "MTTC verification passed: %.2fs", secs(total));
    json_t *o = json_pack(
        "{s:b,s:s,s:s,s:b,s:f,s:s,s:s,s:s,s:s,s:s,s:f,s:b,s:s}", "success", match,
        "original_result_hash", original, "resumed_result_hash", resumed, "match", match,
        "duration_seconds", secs(total), "message", msg, "bucket_id", bucket,
        "model_bundle_hash", hash, "original_run", orig_run, "verification_namespace", ns.name,
        "target_seconds", MTTC_TARGET_S, "within_target", secs(total) < MTTC_TARGET_S, "cleanup",
        cleanup);
    json_object_set_new(
        o, "steps",
        json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "namespace_create_seconds", secs(create_ms),
                  "bundle_fetch_seconds", secs(t.fetch_ms), "bundle_verify_seconds",
                  secs(t.verify_ms), "pipeline_init_seconds", secs(t.init_ms), "execute_seconds",
                  secs(t.exec_ms), "cleanup_seconds", secs(cleanup_ms)));
    metrics_inc("mttc_verifications_total", match ? "result=\"passed\"" : "result=\"failed\"", 1);
    metrics_observe("mttc_verify_duration_seconds", "", secs(total));
    log_info("%s (bucket %s, bundle %.12s, namespace %s)", msg, bucket, hash, ns.name);
    resource_free(&ns);
    *out = o;
    return 0;
}
