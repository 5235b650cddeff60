/*
 * ns.h - transient namespaces (seed 004): one per batch bucket, named
 * livecalc-bucket-{bucket_id}, reaped when finalized or idle, with their
 * diagnostics archived to blob storage first; and MTTC verification of runs
 * against content-addressed model bundles.
 *
 * Namespace is a kind on the same core as Stamp: a resource in the store,
 * a table of phases (active, finalized, reaping, reaped), phase changes
 * through phase_change(), a controller run by the engine's workers.  Its
 * due_ms column is when the reaper should look at it (last activity plus
 * the inactivity threshold; at once when finalized; the next retry while
 * reaping), so a sweep reads only what is due.
 *
 * The local runtime (ns_rt.c) keeps a namespace in DATA/namespaces/{ns}:
 * pods/{pod}/ holds a pod's spec, log, exit result and annotations (one file
 * per key); its volumes (the PVC analogue) live apart, in DATA/volumes/{ns},
 * so that deleting a namespace has something to verify.
 *
 * Reaping, in order, each step persisted before the next: stop the pods
 * (their logs are then complete), extract diagnostics (every pod log,
 * sentinel-violations.json), upload each blob and read it back (size and
 * SHA-256), and only then delete pods, directory and volumes, wait for them
 * to go (ns-delete-timeout), check that no volume is left, record the
 * outcome.  A failed upload keeps the namespace and retries with backoff for
 * reap-upload-window; past it the namespace is reaped anyway, as seed 004
 * says, and the loss is recorded loudly (Warning event, audit entry, ERROR
 * log, metric).
 *
 * Blob layout, per tenant:
 *   {diagnostic-container}/{tenant}/{bucket_id}/{YYYYMMDD-HHMMSS}/logs/{pod}.log
 *   {diagnostic-container}/{tenant}/{bucket_id}/{YYYYMMDD-HHMMSS}/sentinel-violations.json
 *   {bundle-container}/{tenant}/{sha256}
 */
#ifndef STAMP_NS_H
#define STAMP_NS_H

#include <jansson.h>
#include <stdbool.h>

#include "core/fsm.h"
#include "reconcile/ctl.h"

#define NS_PREFIX "livecalc-bucket-"
#define NS_MTTC_PREFIX "livecalc-mttc-"
#define NS_BUCKET_MAX 40
#define NS_NAME_MAX 63
#define NS_TENANT_MAX 60
#define NS_POD_MAX 63
#define NS_ANNOTATION_VALUE_MAX 4096
#define NS_ANNOTATIONS_MAX 64             /* shown per pod in a listing */
#define NS_ANNOTATIONS_BYTES (64 * 1024)  /* of values shown per pod */
#define NS_SWEEP_BATCH 64
#define NS_SENTINEL_KEY "memory-sentinel-violations"

enum ns_phase { NP_ACTIVE, NP_FINALIZED, NP_REAPING, NP_REAPED, NP_NPHASES };
enum ns_op { NO_VIEW, NO_ACTIVITY, NO_FINALIZE, NO_REAP, NO_POD, NO_RUN, NO_ANNOTATE, NO_NOPS };

extern const fsm_def ns_fsm;

/* Names.  Each returns 0 or SE_INVAL with the rule in the message. */
int ns_bucket_check(const char *bucket, serr *e);
int ns_name_check(const char *ns, serr *e);
int ns_tenant_check(const char *tenant, serr *e);
int ns_pod_check(const char *pod, serr *e);
bool ns_hash_valid(const char *h); /* 64 lowercase hex */

/* ---- ns_kind.c: the kind ---- */
void ns_metrics_register(void);
/* A namespace's lock.  Every change of a namespace, of its record or of
 * what runs in it, is made under it with the phase read again under it:
 * create, activity, finalize, a pod, a volume, an annotation, a phase
 * change.  So a pod is either started before the namespace enters phase
 * reaping (and is stopped, and its log archived, by the reap) or refused.
 * Held for short steps only (a write, a process spawned): a reap holds it
 * to enter phase reaping and to leave it, not while it stops, uploads and
 * deletes, so no request waits for a reap.  Not reentrant; never hold two
 * (two names may share one lock). */
void ns_lock(const char *ns);
void ns_unlock(const char *ns);
/* Create the namespace of a bucket for tenant (name NULL: the bucket's own
 * name).  labels: extra labels (borrowed, may be NULL). */
int ns_create(ctl_ctx *c, const char *tenant, const char *user, const char *bucket,
              const char *name, json_t *labels, resource *out, serr *e);
/* Reads ns; another tenant's namespace is SE_NOTFOUND (tenant NULL: any). */
int ns_lookup(ctl_ctx *c, const char *tenant, const char *ns, resource *out, serr *e);
const char *ns_bucket_of(const resource *r); /* "" when unknown */
/* An audit entry about namespace ns: detail {namespace, bucket_id} plus
 * extra's members (extra is stolen, so callers may build it in the call). */
void ns_audit(ctl_ctx *c, const char *user, const char *tenant, const char *op, const char *ns,
              const char *bucket, const char *result, json_t *extra);
/* Seed 004's shape: namespace, bucket_id, created_at, last_activity,
 * status, pod_count, pvc_count, and labels, annotations, diagnostics. */
json_t *ns_to_json(ctl_ctx *c, const resource *r);
int ns_activity(ctl_ctx *c, resource *r, serr *e);
/* Idempotent: a namespace finalized, reaping or reaped is left as it is,
 * 0 is returned and *already (when given) is set. */
int ns_finalize(ctl_ctx *c, resource *r, bool *already, serr *e);
/* What runs in a namespace, each under its lock and only in a phase that
 * allows it (SE_PHASE naming the phase otherwise); tenant: the namespace
 * must be that tenant's (NULL: any).  The runtime's calls below do no
 * such check. */
int ns_pod_start(ctl_ctx *c, const char *tenant, const char *ns, const char *pod,
                 const char *prog, json_t *args, json_t *env, json_t *volumes, int64_t timeout_ms,
                 serr *e);
int ns_volume_create(ctl_ctx *c, const char *tenant, const char *ns, const char *vol, serr *e);
/* set: an object of annotations (a string, or null to remove one), all
 * checked before any is written. */
int ns_annotate(ctl_ctx *c, const char *tenant, const char *ns, const char *pod, json_t *set,
                serr *e);
/* ---- ns_reap.c: one reap ---- */
/* Reap now (manual reap or MTTC cleanup): one attempt, once no other reap
 * of the namespace runs (a reap the controller is running is waited for,
 * for as long as its step takes).  *result is seed 004's reap answer plus
 * "alreadyReaped"; the return is 0 when reaped (now or before: then
 * alreadyReaped is true and the recorded outcome is answered), SE_UNAVAIL
 * when the diagnostics could not be stored (namespace kept, retried by the
 * controller). */
int ns_reap_now(ctl_ctx *c, const char *ns, const char *user, json_t **result, serr *e);
/* The same, waiting at most wait_ms for a reap already running (the
 * reaper's, or another call's); past it SE_TIMEOUT with *result the
 * namespace's state ("inProgress": true) and nothing done. */
int ns_reap_within(ctl_ctx *c, const char *ns, const char *user, int64_t wait_ms, json_t **result,
                   serr *e);
/* What a reap would archive and delete, changing nothing. */
json_t *ns_reap_plan(ctl_ctx *c, const resource *r);
/* ---- ns_reaper.c: the controller, sweeps, retention ---- */
int ns_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e);
/* One reaper sweep: every due namespace is enqueued (or, dry_run, listed
 * into *out as ns_to_json objects); at most limit, 0 = all due. */
int ns_sweep(ctl_ctx *c, bool dry_run, int limit, json_t **out, serr *e);
/* After a change of inactivity-threshold: recompute due_ms of active
 * namespaces (once at start, O(namespaces)). */
int ns_rebase_due(ctl_ctx *c, serr *e);
/* Finalizes the verification namespaces a stopped stampd left active (at
 * start, or when a replica's term starts). */
int ns_finalize_orphan_verifications(ctl_ctx *c, serr *e);
/* Delete archives past their retention (directory backend). */
int ns_retention_sweep(ctl_ctx *c, serr *e);
int64_t ns_retention_ms(ctl_ctx *c, const char *tenant);

/* ---- ns_rt.c: the local runtime ---- */
int nsrt_dir(const ctl_ctx *c, const char *ns, const char *sub, char *buf, size_t len);
int nsrt_create(ctl_ctx *c, const char *ns, serr *e);
/* 0 when a tenant may set environment variable name on a pod; SE_INVAL
 * naming it otherwise (the denylist is a table in ns_rt.c). */
int nsrt_env_check(const char *name, serr *e);
/* Once at start: how pods will be confined, in msg.  Returns 0 (all is
 * well: info), 1 (pods run with weaker confinement: warn) or -1 (pods are
 * refused: error).  When stampd is root, makes the data dir passable. */
int nsrt_confine_init(ctl_ctx *c, char *msg, size_t len);
/* Starts pod running the configured pod command with args (array of
 * strings), env (object of strings), volumes (array of names): detached,
 * supervised, adopted across restarts.  prog overrides the pod command
 * (stampd's own pipeline steps only). */
int nsrt_pod_start(ctl_ctx *c, const char *ns, const char *bucket, const char *pod,
                   const char *prog, json_t *args, json_t *env, json_t *volumes,
                   int64_t timeout_ms, serr *e);
/* [{name, phase (Running|Succeeded|Failed|Unknown), pid, exitCode,
 *   startedAt, annotations{}, annotationsBase64{}, logBytesDropped,
 *   stoppedBy, annotationsNotShown}]: annotationsBase64 holds the exact bytes of the values that
 *   are not UTF-8 text (or hold a NUL), shown in annotations{} with those
 *   bytes as \xNN. */
json_t *nsrt_pods(ctl_ctx *c, const char *ns);
/* phase of one pod; SE_NOTFOUND when there is no such pod. */
int nsrt_pod_phase(ctl_ctx *c, const char *ns, const char *pod, char *phase, size_t len,
                   int *exit_code, serr *e);
/* The last max bytes of a pod's log. */
int nsrt_pod_log(ctl_ctx *c, const char *ns, const char *pod, size_t max, char **data,
                 size_t *len, bool *truncated, serr *e);
/* Checks one annotation (key syntax, size, UTF-8) without writing it, so a
 * request of several is checked whole before any is written. */
int nsrt_annotate_check(const char *key, const char *value, serr *e);
int nsrt_annotate(ctl_ctx *c, const char *ns, const char *pod, const char *key,
                  const char *value, serr *e);
/* An annotation's exact bytes as the pod wrote them (less one trailing line
 * end); SE_NOTFOUND when unset.  *data is NUL terminated, to be freed. */
int nsrt_annotation(ctl_ctx *c, const char *ns, const char *pod, const char *key, char **data,
                    size_t *len, serr *e);
/* Standard base64 of data, to be freed (NULL when out of memory). */
char *nsrt_base64(const void *data, size_t len);
int nsrt_volume_create(ctl_ctx *c, const char *ns, const char *vol, serr *e);
void nsrt_counts(ctl_ctx *c, const char *ns, int *pods, int *volumes);
/* Stop every pod (SIGTERM, grace, SIGKILL); 0 when none is left. */
int nsrt_stop_pods(ctl_ctx *c, const char *ns, int64_t timeout_ms, serr *e);
/* Remove the namespace's directory and volumes, waiting up to timeout_ms;
 * *orphans = volumes still present after it. */
int nsrt_delete(ctl_ctx *c, const char *ns, int64_t timeout_ms, int *orphans, serr *e);

/* ---- mttc.c: bundles, runs, verification ---- */
void mttc_metrics_register(void);
/* Store data as a bundle of tenant; *hash is its sha256 (65 bytes). */
int mttc_bundle_push(ctl_ctx *c, const char *tenant, const char *user, const void *data,
                     size_t len, char *hash, bool *existed, serr *e);
/* The same from a file of len bytes (an upload), never read whole into
 * memory; sha is its SHA-256 when the caller computed it already (else
 * NULL). */
int mttc_bundle_push_file(ctl_ctx *c, const char *tenant, const char *user, const char *file,
                          size_t len, const char *sha, char *hash, bool *existed, serr *e);
json_t *mttc_bundle_list(ctl_ctx *c, const char *tenant);
/* Run the pipeline on bundle with config in namespace ns (pods "init-N",
 * "run-N"); records a Run.  *out is the Run's JSON. */
int mttc_run(ctl_ctx *c, const resource *ns, const char *user, const char *hash, json_t *config,
             json_t **out, serr *e);
json_t *mttc_runs_list(ctl_ctx *c, const char *tenant, const char *bucket);
/* Seed 004's eight steps; *out in seed 004's response shape (also on a
 * failed verification, with success false); the return is 0 when the
 * verification ran (match or not), an error when it could not. */
int mttc_verify(ctl_ctx *c, const char *tenant, const char *user, const char *bucket,
                const char *hash, json_t **out, serr *e);

#endif
