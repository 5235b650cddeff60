/*
 * api.h - stampd's HTTP/JSON API on libmicrohttpd.
 *
 * Routes are a table of (method, path pattern, handler, who may call).
 * Every endpoint but /healthz and /metrics needs a JWT bearer token (see
 * auth/jwt.h); tokens must carry user_id and tenant_id; operator-only kinds
 * need role "operator".  The token, the route, the URL's bytes and the
 * declared size are checked from the headers, before any body is read.
 * JSON bodies are then buffered up to API_MAX_BODY and parsed with
 * duplicate keys and deep nesting refused; a bundle upload is streamed to a
 * temporary file instead (at most api-max-uploads at once).  Every error reply goes
 * through api_error() and has one shape:
 *   {"error": {"code": "NotFound", "message": "..."}, "status": 404}
 * Every mutation is appended to the audit log with its result.
 *
 * Threading: MHD's thread pool (api-threads, epoll) runs the handlers; they
 * only touch the store (short transactions) and the work queue.  Slow work
 * (a reap, an MTTC pipeline) runs in the job pool (reconcile/jobs.h): the
 * handler calls api_run_job, the connection is suspended (it holds no
 * thread) and answered when the job ends.  At most api-max-waiting
 * requests wait so (503 with Retry-After past it).
 */
#ifndef STAMP_API_H
#define STAMP_API_H

#include <jansson.h>
#include <stdbool.h>

#include "auth/jwt.h"
#include "reconcile/ctl.h"
#include "reconcile/jobs.h"

#define API_MAX_BODY (1024 * 1024)
/* How answers are printed.  Reals with 15 significant digits: what a double
 * holds of a decimal, so 0.073 prints 0.073 and not 0.072999999999999995
 * (jansson's default, 17, shows the binary approximation). */
#define API_JSON_DUMP_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))
#define API_MAX_PARAMS 4

typedef struct api api;

/* What a route row says about itself: the door enforces it (auth, body kind,
 * query parameters) and /openapi.json is generated from it, so the
 * description cannot drift from what the server does. */
enum api_auth { API_AUTH_NONE, API_AUTH_TOKEN, API_AUTH_OPERATOR };
enum api_body { API_BODY_NONE, API_BODY_JSON, API_BODY_RAW };

typedef struct api_req api_req;
typedef struct api_resp api_resp;
typedef int (*api_handler)(api *a, api_req *rq, api_resp *rs);

typedef struct api_route {
    const char *method;
    const char *pattern;  /* "{name}" matches one path segment */
    api_handler fn;
    int auth;             /* API_AUTH_* */
    int body;             /* API_BODY_*: what the request carries */
    const char *query;    /* accepted query parameters: "name:type ..." with
                           * type string, integer, boolean or duration */
    bool dry_run;         /* accepts dryRun=All (validate, change nothing) */
    int status;           /* the usual success status */
    const char *produces; /* "json" (default), "text", "ndjson" */
    const char *summary;
} api_route;

const api_route *api_routes(size_t *n);
/* TESTS ONLY (the fuzz harness): the request layer without a network or a
 * handler: query-string decoding and byte checks, path segment checks, route
 * matching, the query against the route's declared parameters, and a JSON
 * body's parse.  0 when the request would reach its handler, else the SE_*
 * code it would be refused with.  query is the raw string after '?'. */
int api_fuzz_request(const char *method, const char *path, const char *query, const char *body,
                     size_t len);
/* The OpenAPI 3.1 document of the n rows (pure: no server needed). */
json_t *api_openapi(const api_route *rows, size_t n, const char *version);

struct api_req {
    const char *method;
    const char *path;
    void *conn;                 /* struct MHD_Connection * */
    const char *params[API_MAX_PARAMS];
    json_t *body;               /* NULL when there was none */
    /* raw-body routes (a bundle upload): the body as sent, in a file the
     * server removes after the request; NULL when the body was empty */
    const char *upload_file;
    size_t upload_len;
    const char *upload_sha256;  /* its hash, computed while it arrived */
    json_t *claims;
    const char *user;
    const char *tenant;
    bool operator_role;
    bool dry_run;               /* ?dryRun=All on a route that has a dry run */
};

struct api_resp {
    int status;
    json_t *body;   /* owned */
    char *text;     /* owned; used when body is NULL */
    size_t text_len; /* its length when it may hold NUL bytes (a pod log); 0: strlen */
    const char *content_type;
    struct api_watch *watch;    /* a streamed answer (GET /v1/watch), owned */
    struct api_waiter *wait;    /* set by api_run_job: answered when its job ends */
};

int api_start(ctl_ctx *c, const jwt_verifier *v, const char *listen, api **out, serr *e);
/* Stop the job pool (jobs_stop) first: a job that ends after api_stop
 * finds its request answered already (503, stampd stopping) and touches
 * nothing of the API. */
void api_stop(api *a);

/* Used by handlers. */
ctl_ctx *api_ctx(api *a);
struct watch_hub *api_watch_hub(api *a);
int api_error(api_resp *rs, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int api_error_serr(api_resp *rs, const serr *e);
int api_json(api_resp *rs, int status, json_t *body); /* steals body */
const char *api_query(api_req *rq, const char *key);
void api_audit(api *a, api_req *rq, const char *op, const char *kind, const char *name,
               int rc, const serr *e, json_t *detail);

/* Answers a request whose work ran as a job, on the connection's thread,
 * once the job has ended: rq is the request as it came (params, user,
 * tenant, query; not its body), res the job's result (the finish function
 * may take res->result, setting it NULL). */
typedef void (*api_finish_fn)(api *a, api_req *rq, job_result *res, void *farg, api_resp *rs);
/* For a handler whose work is slow: submits fn(arg) to the job pool under
 * key (jobs_submit: the same key joins the job already running) and
 * suspends the connection until the job ends; then finish(..., farg)
 * answers.  The handler returns at once after it.  arg and farg are owned
 * from the call on (free_arg, free_farg; either may be NULL).  0, or an
 * error answered in rs: 429 when the job queue is full, 503 past
 * api-max-waiting or while stopping.  A client that goes away meanwhile
 * is noticed (its connection is closed); its job runs to its end. */
int api_run_job(api *a, api_req *rq, api_resp *rs, const char *key, job_fn fn, void *arg,
                void (*free_arg)(void *), api_finish_fn finish, void *farg,
                void (*free_farg)(void *));

/* Route handlers (routes_*.c). */
int h_healthz(api *a, api_req *rq, api_resp *rs);
int h_version(api *a, api_req *rq, api_resp *rs);
int h_cluster(api *a, api_req *rq, api_resp *rs);
int h_openapi(api *a, api_req *rq, api_resp *rs);
int h_watch(api *a, api_req *rq, api_resp *rs);
int h_events(api *a, api_req *rq, api_resp *rs);
int h_stamps_create(api *a, api_req *rq, api_resp *rs);
int h_stamps_list(api *a, api_req *rq, api_resp *rs);
int h_stamps_get(api *a, api_req *rq, api_resp *rs);
int h_stamps_action(api *a, api_req *rq, api_resp *rs);
int h_stamps_delete(api *a, api_req *rq, api_resp *rs);
int h_stamps_scale(api *a, api_req *rq, api_resp *rs);
int h_stamps_update(api *a, api_req *rq, api_resp *rs);
int h_stamps_restore(api *a, api_req *rq, api_resp *rs);
int h_stamps_events(api *a, api_req *rq, api_resp *rs);
int h_stamps_health(api *a, api_req *rq, api_resp *rs);
int h_stamps_metrics(api *a, api_req *rq, api_resp *rs);
int h_stamps_logs(api *a, api_req *rq, api_resp *rs);
int h_frontdoor(api *a, api_req *rq, api_resp *rs);
int h_apply(api *a, api_req *rq, api_resp *rs);
int h_templates_list(api *a, api_req *rq, api_resp *rs);
int h_templates_get(api *a, api_req *rq, api_resp *rs);
int h_templates_revisions(api *a, api_req *rq, api_resp *rs);
int h_healthchecks_list(api *a, api_req *rq, api_resp *rs);
int h_healthchecks_get(api *a, api_req *rq, api_resp *rs);
int h_autoscalers_list(api *a, api_req *rq, api_resp *rs);
int h_autoscalers_get(api *a, api_req *rq, api_resp *rs);
int h_autoscalers_delete(api *a, api_req *rq, api_resp *rs);
int h_audit(api *a, api_req *rq, api_resp *rs);
int h_platforms_list(api *a, api_req *rq, api_resp *rs);
int h_platforms_get(api *a, api_req *rq, api_resp *rs);
int h_platforms_action(api *a, api_req *rq, api_resp *rs);
int h_platforms_delete(api *a, api_req *rq, api_resp *rs);
/* An ObservabilityPlatform as the API shows it (its own apiVersion). */
json_t *api_platform_json(const resource *r);
int h_rollouts_create(api *a, api_req *rq, api_resp *rs);
int h_rollouts_list(api *a, api_req *rq, api_resp *rs);
int h_rollouts_get(api *a, api_req *rq, api_resp *rs);
int h_rollouts_action(api *a, api_req *rq, api_resp *rs);
int h_rollouts_delete(api *a, api_req *rq, api_resp *rs);
int h_metrics(api *a, api_req *rq, api_resp *rs);
int h_prometheus_targets(api *a, api_req *rq, api_resp *rs);
int h_ns_create(api *a, api_req *rq, api_resp *rs);
int h_ns_list(api *a, api_req *rq, api_resp *rs);
int h_ns_get(api *a, api_req *rq, api_resp *rs);
int h_ns_finalize(api *a, api_req *rq, api_resp *rs);
int h_ns_activity(api *a, api_req *rq, api_resp *rs);
int h_ns_reap(api *a, api_req *rq, api_resp *rs);
int h_ns_pods_list(api *a, api_req *rq, api_resp *rs);
int h_ns_pod_create(api *a, api_req *rq, api_resp *rs);
int h_ns_pod_log(api *a, api_req *rq, api_resp *rs);
int h_ns_pod_annotate(api *a, api_req *rq, api_resp *rs);
int h_ns_volume_create(api *a, api_req *rq, api_resp *rs);
int h_ns_run_create(api *a, api_req *rq, api_resp *rs);
int h_runs_list(api *a, api_req *rq, api_resp *rs);
int h_bundles_push(api *a, api_req *rq, api_resp *rs);
int h_bundles_list(api *a, api_req *rq, api_resp *rs);
int h_mttc_verify(api *a, api_req *rq, api_resp *rs);
int h_reaper_eligible(api *a, api_req *rq, api_resp *rs);
int h_reaper_sweep(api *a, api_req *rq, api_resp *rs);
int h_tokens_create(api *a, api_req *rq, api_resp *rs);

#endif
