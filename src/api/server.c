/*
 * server.c - the HTTP plumbing of the API: libmicrohttpd, the route table,
 * the door every request passes (URL bytes, route, token, size, upload
 * slots), request bodies, the one error shape, the audit helper, and the
 * watchdog that cuts connections too slow to be anything but an attack.
 * Handlers live in routes_*.c.
 *
 * MHD calls the access handler several times per request.  The first call
 * carries the headers only: everything that can be refused from them is
 * refused there, before one byte of the body is read (a response queued on
 * the first call goes out with Connection: close, which is fine for
 * errors).  A request that passes gets its state in *con_cls and is answered
 * on the final call (upload size 0), so keep-alive works.  Body chunks come
 * between: JSON bodies are buffered up to API_MAX_BODY; a bundle upload is
 * streamed to a file under DATA_DIR/uploads and hashed while it is written.
 *
 * Connections: MHD enforces the total and per-address limits and the idle
 * timeout.  It has no header timeout nor minimum body rate, so every
 * connection is tracked (NOTIFY_CONNECTION: fd and start; the access
 * handler: headers complete, body bytes) and a watchdog thread
 * shutdown()s the fd of one whose headers are late or whose body trickles.
 *
 * Threading: MHD's thread pool (api-threads) runs the handlers; a
 * connection stays on one worker.  The tracking list is shared with the
 * watchdog under one mutex.  An entry is removed, under that mutex, by the
 * CLOSED notification, which MHD sends before it closes the fd: so the
 * watchdog never shuts down an fd that was closed and reused.
 *
 * Requests that wait for a job (api_run_job) are suspended connections:
 * MHD neither times them out nor reads from them, and the watchdog leaves
 * them alone (they are T_BUSY).  A waiter is shared by the connection and
 * the job's done callback (two references) under waiters_mu, a static
 * mutex so that a job ending after api_stop touches only its waiter.  The
 * connection is suspended and resumed only under waiters_mu, and resumed
 * exactly once: by the job's end, by the watchdog when the client went
 * away (recv peeks at the end of the stream), or by api_stop.
 */
#include "api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "api/watch.h"
#include "ns/ns.h"
#include "util/confine.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/version.h"
#include "util/yamljson.h"

/* What the watchdog knows of one TCP connection. */
enum { T_HEADERS, T_BODY, T_BUSY };

typedef struct track {
    struct track *prev, *next;
    int fd;
    int phase;            /* T_*, under api.mu */
    int64_t since_ms;     /* T_HEADERS: waiting since; T_BODY: headers complete at */
    int64_t header_limit; /* T_HEADERS: how long they may take */
    uint64_t body_bytes;  /* T_BODY */
    bool cut;             /* shut down already */
    bool nul_in_url;      /* the unescaper decoded a %00 (this connection's thread only) */
    char peer[48];
} track;

struct api {
    struct MHD_Daemon *d;
    ctl_ctx *c;
    const jwt_verifier *v;
    char tmpdir[PATH_MAX];
    atomic_int uploads;
    /* connection tracking and the watchdog */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    track *conns;
    bool stopping;
    bool watchdog_on;
    pthread_t watchdog;
    watch_hub *wh;
    /* requests waiting for jobs, under waiters_mu */
    struct api_waiter *waiters;
    int nwaiting;
    bool waits_closed;
};

/* A request suspended until its job ends (see the top of the file). */
typedef struct api_waiter {
    struct api_waiter *prev, *next; /* api.waiters while listed */
    int refs;                       /* the connection's and the job's */
    struct MHD_Connection *conn;    /* NULL once the request is over */
    int fd;                         /* to notice a client gone */
    uint64_t job;
    bool listed, suspended, done, gone;
    api_finish_fn finish;
    void *farg;
    void (*free_farg)(void *);
} api_waiter;

static pthread_mutex_t waiters_mu = PTHREAD_MUTEX_INITIALIZER;

#define A_NONE API_AUTH_NONE
#define A_TOKEN API_AUTH_TOKEN
#define A_OP API_AUTH_OPERATOR
#define B_NONE API_BODY_NONE
#define B_JSON API_BODY_JSON
#define B_RAW API_BODY_RAW

/* method, path, handler, auth, body, query parameters, dry run, status,
 * produces, summary.  A query parameter not listed is refused with 400: a
 * misspelt flag must never be ignored (that is how a "dry run" once
 * deployed a real stamp). */
static const api_route routes[] = {
    {"GET", "/healthz", h_healthz, A_NONE, B_NONE, NULL, false, 200, "text", "Liveness: ok"},
    {"GET", "/version", h_version, A_NONE, B_NONE, NULL, false, 200, NULL, "Server version"},
    {"GET", "/v1/cluster", h_cluster, A_OP, B_NONE, NULL, false, 200, NULL,
     "The replicas of stampd, the leader of the controllers, its epoch and since when"},
    {"GET", "/openapi.json", h_openapi, A_NONE, B_NONE, NULL, false, 200, NULL,
     "This API's OpenAPI 3.1 document, generated from the route table"},
    {"GET", "/metrics", h_metrics, A_NONE, B_NONE, NULL, false, 200, "text",
     "Prometheus metrics"},
    {"GET", "/v1/prometheus/targets", h_prometheus_targets, A_OP, B_NONE, NULL, false, 200, NULL,
     "The serving stamps' replicas as Prometheus HTTP service discovery target groups"},
    {"POST", "/v1/stamps", h_stamps_create, A_OP, B_JSON, NULL, true, 201, NULL,
     "Deploy a stamp (or redeploy a Failed one)"},
    {"GET", "/v1/stamps", h_stamps_list, A_OP, B_NONE, "state:string region:string", false, 200,
     NULL, "List stamps"},
    {"GET", "/v1/stamps/{name}", h_stamps_get, A_OP, B_NONE, NULL, false, 200, NULL,
     "Get a stamp"},
    {"DELETE", "/v1/stamps/{name}", h_stamps_delete, A_OP, B_JSON, "force:boolean", true, 202,
     NULL, "Retire a stamp"},
    {"GET", "/v1/stamps/{name}/events", h_stamps_events, A_OP, B_NONE, NULL, false, 200, NULL,
     "A stamp's events"},
    {"GET", "/v1/stamps/{name}/health", h_stamps_health, A_OP, B_NONE, NULL, false, 200, NULL,
     "A stamp's health checks"},
    {"GET", "/v1/stamps/{name}/metrics", h_stamps_metrics, A_OP, B_NONE, "period:duration", false,
     200, NULL, "A stamp's metrics over a period"},
    {"GET", "/v1/stamps/{name}/logs", h_stamps_logs, A_OP, B_NONE,
     "step:string run:string limit_bytes:integer", false, 200, NULL,
     "A stamp's step logs: the list, or with step (and run) one log as text"},
    {"POST", "/v1/stamps/{name}/scale", h_stamps_scale, A_OP, B_JSON, NULL, true, 202, NULL,
     "Resize a node pool of an Active stamp within its template's bounds"},
    {"POST", "/v1/stamps/{name}/update", h_stamps_update, A_OP, B_JSON, NULL, true, 202, NULL,
     "Update an Active stamp's application (parameters or a template revision's application part): "
     "replicas replaced one at a time, rolled back on failure"},
    {"POST", "/v1/stamps/{name}/restore", h_stamps_restore, A_OP, B_JSON, NULL, true, 201, NULL,
     "Deploy a stamp (body {\"as\": NEW-NAME}) from a Deleted stamp's verified backup"},
    {"POST", "/v1/stamps/{name}/{action}", h_stamps_action, A_OP, B_JSON, "force:boolean", true,
     202, NULL, "drain, activate, standby, delete or backup a stamp"},
    {"POST", "/v1/apply", h_apply, A_OP, B_JSON, NULL, true, 200, NULL,
     "Create or update a StampTemplate, StampHealthCheck, StampAutoscaler or ObservabilityPlatform "
     "from its manifest"},
    {"GET", "/v1/watch", h_watch, A_TOKEN, B_NONE, "kind:string name:string since:integer", false,
     200, "ndjson", "Stream changes (newline-delimited JSON events) as they are written"},
    {"GET", "/v1/events", h_events, A_TOKEN, B_NONE,
     "kind:string name:string since:integer limit:integer", false, 200, NULL,
     "Events of every object (or of a kind or name) after an id, oldest first"},
    {"GET", "/v1/frontdoor", h_frontdoor, A_OP, B_NONE, NULL, false, 200, NULL,
     "The front door's servers"},
    {"GET", "/v1/templates", h_templates_list, A_OP, B_NONE, NULL, false, 200, NULL,
     "List stamp templates"},
    {"GET", "/v1/templates/{name}", h_templates_get, A_OP, B_NONE, "revision:integer", false, 200,
     NULL, "Get a stamp template (or, with revision, its spec at that revision)"},
    {"GET", "/v1/templates/{name}/revisions", h_templates_revisions, A_OP, B_NONE, NULL, false, 200,
     NULL, "A stamp template's kept revisions, with how many stamps run each"},
    {"GET", "/v1/healthchecks", h_healthchecks_list, A_OP, B_NONE, NULL, false, 200, NULL,
     "List stamp health checks"},
    {"GET", "/v1/healthchecks/{name}", h_healthchecks_get, A_OP, B_NONE, NULL, false, 200, NULL,
     "Get a stamp health check"},
    {"GET", "/v1/autoscalers", h_autoscalers_list, A_OP, B_NONE, NULL, false, 200, NULL,
     "List stamp autoscalers"},
    {"GET", "/v1/autoscalers/{name}", h_autoscalers_get, A_OP, B_NONE, NULL, false, 200, NULL,
     "Get a stamp autoscaler"},
    {"DELETE", "/v1/autoscalers/{name}", h_autoscalers_delete, A_OP, B_NONE, NULL, true, 200, NULL,
     "Delete a stamp autoscaler (its stamps stay as they are)"},
    {"POST", "/v1/rollouts", h_rollouts_create, A_OP, B_JSON, NULL, false, 201, NULL,
     "Start a rollout: replace a template's stamps by stamps of a revision (blue-green, one region at a time)"},
    {"GET", "/v1/rollouts", h_rollouts_list, A_OP, B_NONE, NULL, false, 200, NULL, "List rollouts"},
    {"GET", "/v1/rollouts/{name}", h_rollouts_get, A_OP, B_NONE, NULL, false, 200, NULL,
     "Get a rollout and its progress per old stamp"},
    {"POST", "/v1/rollouts/{name}/{action}", h_rollouts_action, A_OP, B_JSON, NULL, false, 202, NULL,
     "pause, resume (a Failed one: its failed replacements again, in place) or abort a rollout"},
    {"DELETE", "/v1/rollouts/{name}", h_rollouts_delete, A_OP, B_NONE, NULL, false, 200, NULL,
     "Remove the record of a Complete or Aborted rollout"},
    {"GET", "/v1/platforms", h_platforms_list, A_OP, B_NONE, NULL, false, 200, NULL,
     "List observability platforms (ObservabilityPlatform; created and upgraded by apply)"},
    {"GET", "/v1/platforms/{name}", h_platforms_get, A_OP, B_NONE, NULL, false, 200, NULL,
     "Get an observability platform: phase, conditions, components, upgrade and retry state"},
    {"POST", "/v1/platforms/{name}/{action}", h_platforms_action, A_OP, B_JSON, NULL, false, 202,
     NULL, "pause (nothing of the platform is touched) or resume an observability platform"},
    {"DELETE", "/v1/platforms/{name}", h_platforms_delete, A_OP, B_NONE, NULL, false, 202, NULL,
     "Delete an observability platform: marked, its components uninstalled, then the record removed"},
    {"GET", "/v1/audit", h_audit, A_OP, B_NONE, "kind:string name:string limit:integer", false, 200,
     NULL, "The audit log, newest last"},
    {"POST", "/v1/tokens", h_tokens_create, A_OP, B_JSON, NULL, false, 201, NULL,
     "Mint a token for a tenant"},
    /* transient namespaces, diagnostics and MTTC */
    {"POST", "/v1/platform/namespaces", h_ns_create, A_TOKEN, B_JSON, "bucket_id:string", false,
     201, NULL, "Create a bucket's namespace"},
    {"GET", "/v1/platform/namespaces", h_ns_list, A_TOKEN, B_NONE,
     "status:string all_tenants:boolean", false, 200, NULL, "List namespaces"},
    {"GET", "/v1/platform/namespaces/{namespace}", h_ns_get, A_TOKEN, B_NONE, NULL, false, 200,
     NULL, "Get a namespace"},
    {"POST", "/v1/platform/namespaces/{namespace}/finalize", h_ns_finalize, A_TOKEN, B_JSON, NULL,
     false, 200, NULL, "Mark a namespace finalized (idempotent)"},
    {"POST", "/v1/platform/namespaces/{namespace}/activity", h_ns_activity, A_TOKEN, B_JSON, NULL,
     false, 200, NULL, "Record activity in a namespace"},
    {"POST", "/v1/platform/namespaces/{namespace}/reap", h_ns_reap, A_TOKEN, B_JSON,
     "bucket_id:string dry_run:boolean", true, 200, NULL,
     "Archive a namespace's diagnostics and delete it (idempotent)"},
    {"GET", "/v1/platform/namespaces/{namespace}/pods", h_ns_pods_list, A_TOKEN, B_NONE, NULL,
     false, 200, NULL, "List a namespace's pods"},
    {"POST", "/v1/platform/namespaces/{namespace}/pods", h_ns_pod_create, A_TOKEN, B_JSON, NULL,
     false, 201, NULL, "Start a pod"},
    {"GET", "/v1/platform/namespaces/{namespace}/pods/{pod}/log", h_ns_pod_log, A_TOKEN, B_NONE,
     "limit_bytes:integer", false, 200, "text", "A pod's log"},
    {"POST", "/v1/platform/namespaces/{namespace}/pods/{pod}/annotations", h_ns_pod_annotate,
     A_TOKEN, B_JSON, NULL, false, 200, NULL, "Set or remove a pod's annotations"},
    {"POST", "/v1/platform/namespaces/{namespace}/volumes", h_ns_volume_create, A_TOKEN, B_JSON,
     NULL, false, 201, NULL, "Create a volume"},
    {"POST", "/v1/platform/namespaces/{namespace}/runs", h_ns_run_create, A_TOKEN, B_JSON, NULL,
     false, 201, NULL, "Run a model bundle in a namespace"},
    {"GET", "/v1/platform/runs", h_runs_list, A_TOKEN, B_NONE, "bucket_id:string", false, 200, NULL,
     "List runs"},
    {"POST", "/v1/platform/bundles", h_bundles_push, A_TOKEN, B_RAW, NULL, false, 201, NULL,
     "Upload a model bundle (content-addressed)"},
    {"GET", "/v1/platform/bundles", h_bundles_list, A_TOKEN, B_NONE, NULL, false, 200, NULL,
     "List model bundles"},
    {"POST", "/v1/platform/mttc/verify", h_mttc_verify, A_TOKEN, B_JSON, NULL, false, 200, NULL,
     "Verify a bucket's run against a model bundle"},
    {"GET", "/v1/platform/reaper/eligible", h_reaper_eligible, A_TOKEN, B_NONE, NULL, false, 200,
     NULL, "Namespaces the reaper would reap now"},
    {"POST", "/v1/platform/reaper/sweep", h_reaper_sweep, A_OP, B_JSON, NULL, false, 202, NULL,
     "Run a reaper sweep now"},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* One request's state across libmicrohttpd's calls, made on the first. */
typedef struct conn_state {
    track *tr;              /* this connection's entry (NULL if untracked) */
    const api_route *rt;    /* NULL: no route has this method and path */
    bool path_known;        /* some route has the path (405 rather than 404) */
    char caps[API_MAX_PARAMS][RES_NAME_MAX];
    int ncaps;
    size_t cap;             /* largest body accepted */
    bool too_big;
    /* who is asking (authenticated on the first call) */
    json_t *claims;
    const char *user, *tenant;
    bool operator_role;
    /* a JSON body */
    sbuf body;
    /* a raw body (bundle upload): streamed to a file */
    bool upload_slot;
    int fd;
    char file[PATH_MAX];
    EVP_MD_CTX *md;
    uint64_t received;
    bool io_failed;
    char io_err[128];
    /* waiting for a job (api_run_job) */
    api_waiter *waiter;
} conn_state;

ctl_ctx *api_ctx(api *a) { return a->c; }

struct watch_hub *api_watch_hub(api *a) { return a->wh; }

static const char *code_slug(int code) {
    switch (code) {
    case SE_INVAL: return "BadRequest";
    case SE_NOTFOUND: return "NotFound";
    case SE_CONFLICT: return "Conflict";
    case SE_EXISTS: return "AlreadyExists";
    case SE_PHASE: return "PhaseConflict";
    case SE_UNAUTH: return "Unauthorized";
    case SE_FORBIDDEN: return "Forbidden";
    case SE_TOOBIG: return "TooLarge";
    case SE_TIMEOUT: return "Timeout";
    case SE_UNAVAIL: return "Unavailable";
    case SE_LIMIT: return "LimitReached";
    case SE_METHOD: return "MethodNotAllowed";
    default: return "InternalError";
    }
}

/* Every error has the one JSON shape, so its message must be valid UTF-8
 * whatever a client put in the URL: bytes that are not become "\xNN". */
int api_error(api_resp *rs, int code, const char *fmt, ...) {
    char raw[SERR_MSG_MAX], msg[SERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    utf8_sanitize(raw, strlen(raw), msg, sizeof(msg));
    json_decref(rs->body);
    rs->status = se_http(code);
    rs->body = json_pack("{s:{s:s,s:s},s:i}", "error", "code", code_slug(code), "message", msg,
                         "status", rs->status);
    return code;
}

int api_error_serr(api_resp *rs, const serr *e) {
    return api_error(rs, e->code ? e->code : SE_INTERNAL, "%s",
                     e->msg[0] ? e->msg : se_text(e->code));
}

int api_json(api_resp *rs, int status, json_t *body) {
    json_decref(rs->body);
    rs->status = status;
    rs->body = body;
    return 0;
}

const char *api_query(api_req *rq, const char *key) {
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

void api_audit(api *a, api_req *rq, const char *op, const char *kind, const char *name, int rc,
               const serr *e, json_t *detail) {
    store_audit au = {.user = rq->user ? rq->user : "",
                      .tenant = rq->tenant ? rq->tenant : "",
                      .operation = op,
                      .kind = kind,
                      .name = name ? name : "",
                      .result = rc == 0 ? "ok" : (e && e->msg[0] ? e->msg : se_text(rc)),
                      .detail = detail};
    serr ae = {0};
    if (store_audit_add(a->c->st, &au, &ae) != 0) log_warnx("audit append failed: %s", ae.msg);
}

/* Matches path against pattern, capturing "{}" segments. */
static bool match(const char *pattern, const char *path, char caps[API_MAX_PARAMS][RES_NAME_MAX],
                  int *ncaps) {
    *ncaps = 0;
    const char *p = pattern, *q = path;
    while (*p && *q) {
        if (p[0] == '{') {
            const char *end = strchr(q, '/');
            size_t n = end ? (size_t)(end - q) : strlen(q);
            if (n == 0 || n >= RES_NAME_MAX || *ncaps >= API_MAX_PARAMS) return false;
            memcpy(caps[*ncaps], q, n);
            caps[*ncaps][n] = '\0';
            (*ncaps)++;
            q += n;
            const char *close = strchr(p, '}');
            p = close ? close + 1 : p + strlen(p);
            continue;
        }
        if (*p != *q) return false;
        p++;
        q++;
    }
    return *p == '\0' && *q == '\0';
}

static void route_for(const char *method, const char *path, conn_state *cs) {
    for (size_t i = 0; i < NROUTES; i++) {
        if (!match(routes[i].pattern, path, cs->caps, &cs->ncaps)) continue;
        cs->path_known = true;
        if (strcmp(routes[i].method, method) == 0) {
            cs->rt = &routes[i];
            return;
        }
    }
    cs->ncaps = 0;
}

/* ---- connection tracking and the watchdog ---- */

static track *track_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void track_phase(api *a, track *t, int phase) {
    if (t == NULL) return;
    pthread_mutex_lock(&a->mu);
    t->phase = phase;
    t->since_ms = mono_ms();
    t->body_bytes = 0;
    /* After a request, the next one's headers may wait as long as an idle
     * keep-alive connection may: nothing tells idle from slow there. */
    if (phase == T_HEADERS) t->header_limit = a->c->cfg->api_idle_timeout_ms;
    pthread_mutex_unlock(&a->mu);
}

static void track_body(api *a, track *t, size_t n) {
    if (t == NULL) return;
    pthread_mutex_lock(&a->mu);
    t->body_bytes += n;
    pthread_mutex_unlock(&a->mu);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    api *a = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        track *t = calloc(1, sizeof(*t));
        if (t == NULL) return; /* untracked: MHD's idle timeout still applies */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        t->fd = ci ? ci->connect_fd : -1;
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr_in *sin = ci ? (const struct sockaddr_in *)ci->client_addr : NULL;
        if (sin == NULL || inet_ntop(AF_INET, &sin->sin_addr, t->peer, sizeof(t->peer)) == NULL)
            str_copy(t->peer, sizeof(t->peer), "?");
        t->phase = T_HEADERS;
        t->since_ms = mono_ms();
        t->header_limit = a->c->cfg->api_header_timeout_ms;
        pthread_mutex_lock(&a->mu);
        t->next = a->conns;
        if (a->conns) a->conns->prev = t;
        a->conns = t;
        pthread_mutex_unlock(&a->mu);
        *socket_context = t;
        return;
    }
    track *t = *socket_context;
    if (t == NULL) return;
    pthread_mutex_lock(&a->mu);
    if (t->prev) t->prev->next = t->next;
    else a->conns = t->next;
    if (t->next) t->next->prev = t->prev;
    pthread_mutex_unlock(&a->mu);
    free(t);
    *socket_context = NULL;
}

/* Cuts, under a->mu, the connections that are too slow; returns how many. */
static int watchdog_pass(api *a, int64_t now) {
    const stamp_config *cfg = a->c->cfg;
    int n = 0;
    for (track *t = a->conns; t; t = t->next) {
        if (t->cut || t->fd < 0) continue;
        int64_t age = now - t->since_ms;
        const char *why = NULL;
        if (t->phase == T_HEADERS && t->header_limit > 0 && age > t->header_limit)
            why = "request headers incomplete";
        else if (t->phase == T_BODY && cfg->api_min_body_rate > 0 && cfg->api_header_timeout_ms > 0 &&
                 age > cfg->api_header_timeout_ms &&
                 t->body_bytes * 1000 < (uint64_t)cfg->api_min_body_rate * (uint64_t)age)
            why = "request body slower than api-min-body-rate";
        if (why == NULL) continue;
        /* MHD sees the end of the stream and closes the connection itself. */
        shutdown(t->fd, SHUT_RDWR);
        t->cut = true;
        /* A few lines per pass, then a count: a flood must not flood the log. */
        if (++n <= 8)
            log_info("api: cut connection from %s after %lldms: %s (%llu body bytes)", t->peer,
                     (long long)age, why, (unsigned long long)t->body_bytes);
    }
    if (n > 8) log_info("api: cut %d more connections", n - 8);
    return n;
}

/* ---- requests waiting for jobs ---- */

/* Caller holds waiters_mu. */
static void waiter_unref(api_waiter *w) {
    if (--w->refs > 0) return;
    if (w->free_farg) w->free_farg(w->farg);
    free(w);
}

/* The job's done callback, on the job's thread: touches only the waiter
 * (the API may be gone, see api_stop). */
static void job_ended(void *arg, uint64_t id, const char *key) {
    (void)id;
    (void)key;
    api_waiter *w = arg;
    pthread_mutex_lock(&waiters_mu);
    w->done = true;
    if (w->suspended) {
        w->suspended = false;
        MHD_resume_connection(w->conn);
    }
    waiter_unref(w);
    pthread_mutex_unlock(&waiters_mu);
}

/* The request is over (answered, or its connection closed): its slot and
 * the connection's reference go. */
static void waiter_release(api *a, conn_state *cs) {
    api_waiter *w = cs->waiter;
    if (w == NULL) return;
    cs->waiter = NULL;
    pthread_mutex_lock(&waiters_mu);
    if (w->listed) {
        if (w->prev) w->prev->next = w->next;
        else a->waiters = w->next;
        if (w->next) w->next->prev = w->prev;
        w->listed = false;
        a->nwaiting--;
        metrics_set("api_requests_waiting", "", a->nwaiting);
    }
    w->conn = NULL;
    w->suspended = false;
    waiter_unref(w);
    pthread_mutex_unlock(&waiters_mu);
}

/* Clients that went away while their request waited: resumed now, so MHD
 * closes their connections and frees the slots (their jobs go on). */
static void waiters_pass(api *a) {
    int n = 0;
    pthread_mutex_lock(&waiters_mu);
    for (api_waiter *w = a->waiters; w; w = w->next) {
        if (!w->suspended || !sock_peer_gone(w->fd)) continue;
        w->gone = true;
        w->suspended = false;
        MHD_resume_connection(w->conn);
        n++;
    }
    pthread_mutex_unlock(&waiters_mu);
    if (n) log_info("api: %d client(s) went away while their request waited; the work goes on", n);
}

int api_run_job(api *a, api_req *rq, api_resp *rs, const char *key, job_fn fn, void *arg,
                void (*free_arg)(void *), api_finish_fn finish, void *farg,
                void (*free_farg)(void *)) {
    ctl_ctx *c = a->c;
    serr e = {0};
    int rc = 0;
    bool submitted = false;
    if (!cluster_leading()) {
        /* Slow work acts (a reap, a run, a restore): only the leader does
         * it, so that two replicas never do it at once.  The client is
         * told where the leader is (stampctl follows). */
        if (free_arg) free_arg(arg);
        if (free_farg) free_farg(farg);
        char id[128], addr[256];
        cluster_leader(id, sizeof(id), addr, sizeof(addr));
        return api_json(rs, 503,
                        json_pack("{s:{s:s,s:s+},s:{s:s,s:s},s:i}", "error", "code", "NotLeader", "message",
                                  "this replica follows; slow work runs on the leader: send the request to ",
                                  addr[0] ? addr : "the leader (none elected yet: try again)", "leader", "id", id,
                                  "address", addr, "status", 503));
    }
    api_waiter *w = calloc(1, sizeof(*w));
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    /* Held from the submit to the suspend, so that the job's end (which
     * takes it to resume) cannot come between them. */
    pthread_mutex_lock(&waiters_mu);
    if (w == NULL) {
        rc = serr_set(&e, SE_NOMEM, "out of memory");
    } else if (a->waits_closed || c->jobs == NULL) {
        rc = serr_set(&e, SE_UNAVAIL, "stampd is stopping");
    } else if (a->nwaiting >= c->cfg->api_max_waiting) {
        rc = serr_set(&e, SE_UNAVAIL, "%d requests are waiting for slow work (api-max-waiting); "
                      "try again later", a->nwaiting);
    } else {
        w->refs = 2;
        w->conn = rq->conn;
        w->fd = ci ? ci->connect_fd : -1;
        w->finish = finish;
        w->farg = farg;
        w->free_farg = free_farg;
        submitted = true;
        rc = jobs_submit(c->jobs, key, fn, arg, free_arg, job_ended, w, &w->job, &e);
    }
    if (rc == 0) {
        MHD_suspend_connection(rq->conn);
        w->suspended = true;
        w->listed = true;
        w->next = a->waiters;
        if (a->waiters) a->waiters->prev = w;
        a->waiters = w;
        a->nwaiting++;
        metrics_set("api_requests_waiting", "", a->nwaiting);
    }
    pthread_mutex_unlock(&waiters_mu);
    if (rc == 0) {
        rs->wait = w;
        return 0;
    }
    if (!submitted && free_arg) free_arg(arg);
    if (free_farg) free_farg(farg);
    free(w);
    return api_error_serr(rs, &e);
}

static void *watchdog_main(void *arg) {
    api *a = arg;
    int64_t hto = a->c->cfg->api_header_timeout_ms;
    int64_t period = hto > 0 && hto / 4 < 500 ? hto / 4 : 500;
    if (period < 20) period = 20;
    pthread_mutex_lock(&a->mu);
    while (!a->stopping) {
        int n = watchdog_pass(a, mono_ms());
        if (n) metrics_inc("api_connections_cut_total", "", n);
        pthread_mutex_unlock(&a->mu);
        waiters_pass(a);
        pthread_mutex_lock(&a->mu);
        if (a->stopping) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += period / 1000;
        ts.tv_nsec += (long)(period % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&a->cv, &a->mu, &ts);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ---- the URL's bytes ---- */

/* MHD's own %HH decoding, noting a decoded NUL: the path reaches the access
 * handler as a C string, where a NUL would silently cut it. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s) {
    (void)cls;
    size_t n = MHD_http_unescape(s);
    if (memchr(s, '\0', n) != NULL) {
        track *t = track_of(conn);
        if (t) t->nul_in_url = true;
    }
    return n;
}

/* NULL when the n bytes are fine for a path segment or a query value. */
static const char *bytes_problem(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == 0) return "contains a NUL byte";
        if (ch < 0x20 || ch == 0x7f) return "contains a control character";
    }
    return utf8_valid(s, n) ? NULL : "not valid UTF-8";
}

typedef struct arg_check {
    api_resp *rs;
    bool bad;
} arg_check;

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 size_t key_size, const char *value, size_t value_size) {
    (void)kind;
    arg_check *ac = cls;
    const char *why = bytes_problem(key, key_size);
    if (why) {
        char k[80];
        utf8_sanitize(key, key_size, k, sizeof(k));
        api_error(ac->rs, SE_INVAL, "query parameter name \"%s\": %s", k, why);
    } else if (value && (why = bytes_problem(value, value_size)) != NULL) {
        api_error(ac->rs, SE_INVAL, "query parameter %s: %s", key, why);
    }
    if (why == NULL) return MHD_YES;
    ac->bad = true;
    return MHD_NO;
}

static int check_path(const char *url, api_resp *rs);

/* Every query value and path segment, once, before any routing. */
static int check_url(struct MHD_Connection *conn, const char *url, track *t, api_resp *rs) {
    bool nul = t && t->nul_in_url;
    if (t) t->nul_in_url = false; /* the next request on this connection starts clean */
    arg_check ac = {.rs = rs};
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, check_arg, &ac);
    if (ac.bad) return SE_INVAL;
    int rc = check_path(url, rs);
    if (rc) return rc;
    /* A %00 in no query value: it was in the path, which ends there. */
    if (nul) return api_error(rs, SE_INVAL, "path: contains a NUL byte (%%00)");
    return 0;
}

/* Every path segment: no control bytes, valid UTF-8. */
static int check_path(const char *url, api_resp *rs) {
    const char *seg = url;
    while (*seg) {
        while (*seg == '/') seg++;
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        const char *why = bytes_problem(seg, n);
        if (why) {
            char s[80];
            utf8_sanitize(seg, n, s, sizeof(s));
            return api_error(rs, SE_INVAL, "path segment \"%s\": %s", s, why);
        }
        seg += n;
    }
    return 0;
}

/* ---- the door ---- */

/* The type of a query value, as the route row declares it. */
static bool query_value_ok(const char *type, size_t tlen, const char *v) {
    if (v == NULL) return true;
    if (tlen == 7 && strncmp(type, "boolean", 7) == 0)
        return strcmp(v, "true") == 0 || strcmp(v, "false") == 0 || strcmp(v, "1") == 0 ||
               strcmp(v, "0") == 0;
    if (tlen == 7 && strncmp(type, "integer", 7) == 0) {
        int64_t n;
        return parse_i64(v, INT64_MIN, INT64_MAX, &n) == 0;
    }
    return true;
}

/* Finds key in the row's list "name:type ..."; *type gets its type. */
static bool query_declared(const char *list, const char *key, const char **type, size_t *tlen) {
    size_t kl = strlen(key);
    for (const char *p = list; p && *p;) {
        while (*p == ' ') p++;
        const char *colon = strchr(p, ':');
        size_t wl = strcspn(p, " ");
        if (colon == NULL || (size_t)(colon - p) > wl) break;
        if ((size_t)(colon - p) == kl && strncmp(p, key, kl) == 0) {
            *type = colon + 1;
            *tlen = wl - (size_t)(colon - p) - 1;
            return true;
        }
        p += wl;
    }
    return false;
}

typedef struct query_check {
    const api_route *rt;
    const char *method;
    api_resp *rs;
    bool bad;
} query_check;

static enum MHD_Result check_one_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value) {
    (void)kind;
    query_check *qc = cls;
    const api_route *rt = qc->rt;
    const char *type = NULL;
    size_t tlen = 0;
    if (strcmp(key, "dryRun") == 0) {
        if (!rt->dry_run) {
            api_error(qc->rs, SE_INVAL, "%s %s has no dry run: the dryRun parameter is refused, not "
                      "ignored", qc->method, rt->pattern);
        } else if (value == NULL || (strcmp(value, "All") != 0 && strcmp(value, "true") != 0)) {
            api_error(qc->rs, SE_INVAL, "dryRun: \"%s\" is not All (or true)", value ? value : "");
        } else {
            return MHD_YES;
        }
    } else if (!query_declared(rt->query, key, &type, &tlen)) {
        api_error(qc->rs, SE_INVAL, "unknown query parameter \"%s\" for %s %s (accepted: %s%s%s)",
                  key, qc->method, rt->pattern, rt->query ? rt->query : "none",
                  rt->dry_run ? " " : "", rt->dry_run ? "dryRun:All" : "");
    } else if (!query_value_ok(type, tlen, value)) {
        api_error(qc->rs, SE_INVAL, "query parameter %s: \"%s\" is not a %.*s", key, value,
                  (int)tlen, type);
    } else {
        return MHD_YES;
    }
    qc->bad = true;
    return MHD_NO;
}

/* Every query parameter must be one the route row lists, with its type. */
static int check_query(struct MHD_Connection *conn, const api_route *rt, const char *method,
                       api_resp *rs) {
    query_check qc = {.rt = rt, .method = method, .rs = rs};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, check_one_query, &qc);
    return qc.bad ? SE_INVAL : 0;
}

/* ---- test hook: the fuzz harness only (tests/fuzz/fuzz_http.c) ---- */

/* The key=value pairs of a raw query string, %-decoded as MHD does, each
 * through check_arg and (with a route) check_one_query. */
static int fuzz_query(const char *query, const api_route *rt, const char *method, api_resp *rs) {
    size_t qlen = strlen(query);
    if (qlen > 65536) return api_error(rs, SE_TOOBIG, "query string too long");
    char *buf = malloc(qlen + 1);
    if (buf == NULL) return SE_NOMEM;
    memcpy(buf, query, qlen + 1);
    int rc = 0;
    for (char *p = buf; p && *p && rc == 0;) {
        char *amp = strchr(p, '&');
        if (amp) *amp = '\0';
        char *eq = strchr(p, '=');
        if (eq) *eq = '\0';
        size_t kl = MHD_http_unescape(p);
        size_t vl = eq ? MHD_http_unescape(eq + 1) : 0;
        const char *v = eq ? eq + 1 : NULL;
        arg_check ac = {.rs = rs};
        check_arg(&ac, MHD_GET_ARGUMENT_KIND, p, kl, v, vl);
        if (ac.bad) {
            rc = SE_INVAL;
        } else if (rt) {
            query_check qc = {.rt = rt, .method = method, .rs = rs};
            check_one_query(&qc, MHD_GET_ARGUMENT_KIND, p, v);
            if (qc.bad) rc = SE_INVAL;
        }
        p = amp ? amp + 1 : NULL;
    }
    free(buf);
    return rc;
}

int api_fuzz_request(const char *method, const char *path, const char *query, const char *body,
                     size_t len) {
    api_resp rs = {0};
    conn_state *cs = calloc(1, sizeof(*cs));
    if (cs == NULL) return SE_NOMEM;
    int rc = fuzz_query(query, NULL, method, &rs);
    if (rc == 0) rc = check_path(path, &rs);
    if (rc == 0) {
        route_for(method, path, cs);
        if (cs->rt == NULL)
            rc = api_error(&rs, cs->path_known ? SE_METHOD : SE_NOTFOUND, "no route: %s %s",
                           method, path);
    }
    if (rc == 0) rc = fuzz_query(query, cs->rt, method, &rs);
    if (rc == 0 && cs->rt->body != API_BODY_RAW && len > API_MAX_BODY)
        rc = api_error(&rs, SE_TOOBIG, "request body larger than %d bytes", API_MAX_BODY);
    if (rc == 0 && cs->rt->body != API_BODY_RAW && len > 0) {
        serr e = {0};
        json_t *j = NULL;
        if (json_parse_user(body, len, &j, &e) != 0)
            rc = api_error(&rs, e.code, "request body: %s", e.msg);
        else if (!json_is_object(j))
            rc = api_error(&rs, SE_INVAL, "request body: must be a JSON object");
        json_decref(j);
    }
    json_decref(rs.body);
    free(rs.text);
    free(cs);
    return rc;
}

const api_route *api_routes(size_t *n) {
    *n = NROUTES;
    return routes;
}

int h_healthz(api *a, api_req *rq, api_resp *rs) {
    (void)a;
    (void)rq;
    rs->status = 200;
    rs->text = strdup("ok\n");
    rs->content_type = "text/plain";
    return 0;
}

int h_cluster(api *a, api_req *rq, api_resp *rs) {
    (void)rq;
    serr e = {0};
    json_t *o = NULL;
    if (cluster_describe(api_ctx(a), &o, &e)) return api_error_serr(rs, &e);
    return api_json(rs, 200, o);
}

int h_version(api *a, api_req *rq, api_resp *rs) {
    (void)a;
    (void)rq;
    /* features: what a client may rely on without trying it (stampctl
     * refuses --dry-run against a stampd that does not list dryRun, since
     * an older one ignored unknown parameters and acted for real). */
    return api_json(rs, 200,
                    json_pack("{s:s,s:s,s:s,s:[s,s,s,s,s]}", "version", STAMP_VERSION, "apiVersion",
                              "v1", "server", "stampd", "features", "dryRun", "strictQuery",
                              "watch", "events", "openapi"));
}

int h_openapi(api *a, api_req *rq, api_resp *rs) {
    (void)a;
    (void)rq;
    json_t *doc = api_openapi(routes, NROUTES, STAMP_VERSION);
    if (doc == NULL) return api_error(rs, SE_NOMEM, "out of memory");
    return api_json(rs, 200, doc);
}

static int authenticate(api *a, api_req *rq, int need, api_resp *rs) {
    const char *h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Authorization");
    /* RFC 7235: the scheme is case-insensitive ("bearer x" is fine). */
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return api_error(rs, SE_UNAUTH, "missing bearer token");
    h += 7;
    while (*h == ' ') h++;
    serr e = {0};
    int rc = jwt_verify(a->v, h, now_ms() / 1000, &rq->claims, &e);
    /* No memory is the server's trouble (500), not a bad token (401). */
    if (rc) return api_error(rs, rc == SE_NOMEM ? SE_NOMEM : SE_UNAUTH, "%s", e.msg);
    rq->user = json_string_value(json_object_get(rq->claims, "user_id"));
    rq->tenant = json_string_value(json_object_get(rq->claims, "tenant_id"));
    if (rq->user == NULL || *rq->user == '\0' || rq->tenant == NULL || *rq->tenant == '\0')
        return api_error(rs, SE_UNAUTH, "token lacks user_id or tenant_id");
    /* The tenant names blob paths and directories: refuse odd ones here. */
    serr te = {0};
    if (ns_tenant_check(rq->tenant, &te) != 0)
        return api_error(rs, SE_UNAUTH, "token's %s", te.msg);
    rq->operator_role = jwt_grants_operator(a->v, h, rq->claims, &e) == 1;
    if (e.msg[0]) log_warnx("auth: tenant %s: %s", rq->tenant, e.msg);
    if (need == API_AUTH_OPERATOR && !rq->operator_role)
        return api_error(rs, SE_FORBIDDEN, "this needs the operator role");
    return 0;
}

/* A bundle upload: a slot of api-max-uploads and a file to stream into. */
static int upload_begin(api *a, conn_state *cs, api_resp *rs) {
    int max = (int)a->c->cfg->api_max_uploads;
    if (atomic_fetch_add(&a->uploads, 1) >= max) {
        atomic_fetch_sub(&a->uploads, 1);
        return api_error(rs, SE_UNAVAIL, "%d bundle uploads are in progress; try again later", max);
    }
    cs->upload_slot = true;
    /* A bundle is a tenant's bytes on stampd's disk: never into the space
     * kept for the store (disk-reserve), counting the whole body the
     * request may still send. */
    if (confine_free_bytes(a->c->data_dir) - (int64_t)cs->cap < a->c->cfg->disk_reserve)
        return api_error(rs, SE_UNAVAIL, "no room for a bundle now: the data filesystem is nearly "
                                         "full (disk-reserve); try again later");
    if (snprintf(cs->file, sizeof(cs->file), "%s/upload-XXXXXX", a->tmpdir) >= (int)sizeof(cs->file))
        return api_error(rs, SE_INTERNAL, "upload: temporary path too long");
    cs->fd = mkostemp(cs->file, O_CLOEXEC);
    if (cs->fd < 0) {
        int err = errno;
        cs->file[0] = '\0';
        log_warnx("upload: temporary file in %s: %s", a->tmpdir, strerror(err));
        return api_error(rs, SE_IO, "upload: cannot store the body (%s)", strerror(err));
    }
    cs->md = EVP_MD_CTX_new();
    if (cs->md == NULL || EVP_DigestInit_ex(cs->md, EVP_sha256(), NULL) != 1)
        return api_error(rs, SE_NOMEM, "out of memory");
    return 0;
}

static void upload_discard(conn_state *cs) {
    if (cs->fd >= 0) close(cs->fd);
    cs->fd = -1;
    if (cs->file[0]) unlink(cs->file);
    cs->file[0] = '\0';
}

static void upload_chunk(conn_state *cs, const char *data, size_t n) {
    if (cs->too_big || cs->io_failed) return;
    if (cs->received + n > cs->cap) {
        cs->too_big = true; /* the rest is read and dropped; 413 at the end */
        upload_discard(cs);
        return;
    }
    EVP_DigestUpdate(cs->md, data, n);
    cs->received += n;
    while (n > 0) {
        ssize_t w = write(cs->fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            cs->io_failed = true;
            str_copy(cs->io_err, sizeof(cs->io_err), w < 0 ? strerror(errno) : "short write");
            upload_discard(cs);
            return;
        }
        data += w;
        n -= (size_t)w;
    }
}

/* The first call: refuse from the headers alone whatever can be refused.
 * Returns 0 when the request goes on (its body comes next), else the error
 * is in rs. */
static int admit(api *a, struct MHD_Connection *conn, const char *url, const char *method,
                 conn_state *cs, api_req *rq, api_resp *rs) {
    int rc = check_url(conn, url, cs->tr, rs);
    if (rc) return rc;
    route_for(method, url, cs);
    const api_route *rt = cs->rt;
    if (rt == NULL) {
        if (cs->path_known) return api_error(rs, SE_METHOD, "%s is not allowed on %s", method, url);
        return api_error(rs, SE_NOTFOUND, "no such endpoint: %s", url);
    }
    if (rt->auth != API_AUTH_NONE && (rc = authenticate(a, rq, rt->auth, rs)) != 0) return rc;
    if ((rc = check_query(conn, rt, method, rs)) != 0) return rc;
    /* Raw bodies (model bundles) may be large; JSON ones are not. */
    cs->cap = (rt->body == API_BODY_RAW) ? (size_t)a->c->cfg->bundle_max_size : API_MAX_BODY;
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    int64_t n;
    if (cl && parse_i64(cl, 0, INT64_MAX, &n) == 0 && n > (int64_t)cs->cap)
        return api_error(rs, SE_TOOBIG, "request body larger than %zu bytes", cs->cap);
    if ((rt->body == API_BODY_RAW)) return upload_begin(a, cs, rs);
    sbuf_init(&cs->body, cs->cap);
    return 0;
}

/* The final call: the body is all there. */
static void dispatch(api *a, api_req *rq, conn_state *cs, api_resp *rs) {
    const api_route *rt = cs->rt;
    rq->dry_run = rt->dry_run && api_query(rq, "dryRun") != NULL;
    for (int k = 0; k < cs->ncaps; k++) rq->params[k] = cs->caps[k];
    if (cs->too_big) {
        api_error(rs, SE_TOOBIG, "request body larger than %zu bytes", cs->cap);
        return;
    }
    if ((rt->body == API_BODY_RAW)) {
        if (cs->io_failed) {
            log_warnx("upload: writing to %s: %s", a->tmpdir, cs->io_err);
            api_error(rs, SE_IO, "upload: cannot store the body (%s)", cs->io_err);
            return;
        }
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        char hex[65];
        EVP_DigestFinal_ex(cs->md, md, &mdlen);
        for (unsigned i = 0; i < 32 && i < mdlen; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
        hex[64] = '\0';
        rq->upload_file = cs->received ? cs->file : NULL;
        rq->upload_len = (size_t)cs->received;
        rq->upload_sha256 = hex;
        rt->fn(a, rq, rs);
        rq->upload_sha256 = NULL;
        return;
    }
    if (cs->body.len > 0) {
        serr e = {0};
        if (json_parse_user(cs->body.data, cs->body.len, &rq->body, &e) != 0) {
            api_error(rs, e.code, "request body: %s", e.msg);
            return;
        }
        if (!json_is_object(rq->body)) {
            api_error(rs, SE_INVAL, "request body: must be a JSON object");
            return;
        }
    }
    rt->fn(a, rq, rs);
}

/* Appends to b the text s with every occurrence of prefix replaced. */
static void mask_prefix(sbuf *b, const char *s, const char *prefix, const char *with) {
    size_t pl = strlen(prefix);
    const char *p;
    while (pl > 1 && (p = strstr(s, prefix)) != NULL) {
        sbuf_add(b, s, (size_t)(p - s));
        sbuf_adds(b, with);
        s = p + pl;
    }
    sbuf_adds(b, s);
}

/* The safety net behind every message fixed at its source: a tenant never
 * reads where stampd keeps its files. */
static void mask_paths(api *a, json_t *body) {
    json_t *err = json_object_get(body, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    const stamp_config *cfg = a->c->cfg;
    if (msg == NULL) return;
    bool data = cfg->data_dir[0] && strstr(msg, cfg->data_dir);
    bool blob = cfg->blob_dir[0] && strstr(msg, cfg->blob_dir);
    if (!data && !blob) return;
    sbuf b1, b2;
    sbuf_init(&b1, 4 * SERR_MSG_MAX);
    sbuf_init(&b2, 4 * SERR_MSG_MAX);
    if (blob) mask_prefix(&b1, msg, cfg->blob_dir, "<blob-dir>");
    else sbuf_adds(&b1, msg);
    if (sbuf_add(&b1, "", 1) == 0) {
        mask_prefix(&b2, b1.data, cfg->data_dir, "<data-dir>");
        if (sbuf_add(&b2, "", 1) == 0) json_object_set_new(err, "message", json_string(b2.data));
    }
    sbuf_free(&b1);
    sbuf_free(&b2);
}

/* RFC 3339 beside every epoch-millisecond field of an answer.  Controllers
 * keep times as epoch ms in status (…Ms, and phaseSince and history's "at"
 * from before the convention); clients that read those keep working, and
 * every such field gains a sibling in RFC 3339 UTC with milliseconds:
 * startedMs -> startedTime, phaseSince -> phaseSinceTime, at -> time.
 * Only values that are plausible instants (years 2000-2199) count, so a
 * duration such as gracePeriodMs never becomes a date. */
#define EPOCH_MS_MIN 946684800000LL  /* 2000-01-01 */
#define EPOCH_MS_MAX 7258118400000LL /* 2200-01-01 */

static void rfc3339_ms(int64_t ms, char *buf, size_t len) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];
    if (gmtime_r(&t, &tm) == NULL || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        base[0] = '\0';
    snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
}

static void add_times(json_t *v, int depth) {
    if (depth > 16) return;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) add_times(x, depth + 1);
        return;
    }
    if (!json_is_object(v)) return;
    const char *k;
    json_t *x;
    json_t *add = NULL;
    json_object_foreach(v, k, x) {
        if (!json_is_integer(x)) {
            add_times(x, depth + 1);
            continue;
        }
        json_int_t ms = json_integer_value(x);
        if (ms < EPOCH_MS_MIN || ms >= EPOCH_MS_MAX) continue;
        size_t n = strlen(k);
        char name[96];
        if (strcmp(k, "at") == 0) str_copy(name, sizeof(name), "time");
        else if (strcmp(k, "phaseSince") == 0) str_copy(name, sizeof(name), "phaseSinceTime");
        else if (n > 2 && n < 80 && strcmp(k + n - 2, "Ms") == 0) {
            /* "timeMs" beside "time": the text form is there already */
            snprintf(name, sizeof(name), "%.*s", (int)(n - 2), k);
            if (json_is_string(json_object_get(v, name))) continue;
            snprintf(name, sizeof(name), "%.*sTime", (int)(n - 2), k);
        } else {
            continue;
        }
        if (json_object_get(v, name)) continue;
        char t[48];
        rfc3339_ms(ms, t, sizeof(t));
        if (add == NULL) add = json_object();
        json_object_set_new(add, name, json_string(t));
    }
    if (add) json_object_update(v, add);
    json_decref(add);
}

/* A watch: a chunked stream the watch module feeds (watch.h). */
static enum MHD_Result respond_stream(struct MHD_Connection *conn, api_resp *rs) {
    struct MHD_Response *resp = watch_response(rs->watch, conn);
    rs->watch = NULL; /* the response owns it now, even when it failed */
    if (resp == NULL) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/x-ndjson");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result r = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result respond(api *a, struct MHD_Connection *conn, api_req *rq, api_resp *rs) {
    if (rs->watch) {
        if (rs->body == NULL && rs->status == 200) return respond_stream(conn, rs);
        watch_drop(rs->watch);
        rs->watch = NULL;
    }
    if (rs->status >= 400 && rs->body && !rq->operator_role) mask_paths(a, rs->body);
    char *text = rs->text;
    size_t tlen = rs->text_len;
    const char *ctype = rs->content_type ? rs->content_type : "application/json";
    if (rs->body) {
        add_times(rs->body, 0);
        tlen = 0;
        text = json_text(rs->body, API_JSON_DUMP_FLAGS);
        free(rs->text);
        if (text) {
            size_t n = strlen(text);
            char *t2 = realloc(text, n + 2);
            if (t2) {
                t2[n] = '\n';
                t2[n + 1] = '\0';
                text = t2;
            }
        }
        ctype = "application/json";
        if (text == NULL) { /* still the one error shape */
            rs->status = 500;
            text = strdup("{\"error\": {\"code\": \"InternalError\", \"message\": \"the answer could "
                          "not be encoded\"}, \"status\": 500}\n");
        }
    }
    rs->text = NULL;
    /* An error with no text at all: api_error could not build its body, or
     * the strdup above failed.  Memory ran out; the one error shape all the
     * same, from static memory, rather than an empty 4xx. */
    static const char nomem_body[] = "{\"error\": {\"code\": \"InternalError\", \"message\": "
                                     "\"out of memory\"}, \"status\": 500}\n";
    enum MHD_ResponseMemoryMode mode = MHD_RESPMEM_MUST_FREE;
    if (text == NULL && (rs->body != NULL || rs->status >= 400)) {
        rs->status = 500;
        ctype = "application/json";
        text = (char *)nomem_body;
        tlen = sizeof(nomem_body) - 1;
        mode = MHD_RESPMEM_PERSISTENT;
    }
    if (text == NULL) text = strdup("");
    if (text == NULL) return MHD_NO;
    if (tlen == 0) tlen = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer(tlen, text, mode);
    if (resp == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (rs->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (rs->status == 503) MHD_add_response_header(resp, "Retry-After", "5");
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)rs->status, resp);
    MHD_destroy_response(resp);
    json_decref(rs->body);
    rs->body = NULL;
    return r;
}

/* The request as the handler saw it, rebuilt from the connection's state
 * (its body is gone by now). */
static void request_of(conn_state *cs, struct MHD_Connection *conn, const char *url,
                       const char *method, api_req *rq) {
    *rq = (api_req){.method = method,
                    .path = url,
                    .conn = conn,
                    .claims = cs->claims,
                    .user = cs->user,
                    .tenant = cs->tenant,
                    .operator_role = cs->operator_role};
    rq->dry_run = cs->rt->dry_run && api_query(rq, "dryRun") != NULL;
    for (int k = 0; k < cs->ncaps; k++) rq->params[k] = cs->caps[k];
}

/* MHD calls the handler again once a waiting request's connection is
 * resumed: the job ended (answer it), the client went (close), or stampd
 * is stopping (503). */
static enum MHD_Result resumed(api *a, struct MHD_Connection *conn, const char *url,
                               const char *method, conn_state *cs) {
    api_waiter *w = cs->waiter;
    pthread_mutex_lock(&waiters_mu);
    bool gone = w->gone, done = w->done;
    pthread_mutex_unlock(&waiters_mu);
    if (gone) {
        waiter_release(a, cs);
        return MHD_NO; /* MHD closes the connection */
    }
    api_req rq;
    request_of(cs, conn, url, method, &rq);
    api_resp rs = {.status = 500};
    job_result res;
    int state = done ? jobs_poll(a->c->jobs, w->job, &res) : JOB_UNKNOWN;
    if (!done)
        api_error(&rs, SE_UNAVAIL, "stampd is stopping; ask again once it is back");
    else if (state != JOB_DONE)
        api_error(&rs, SE_UNAVAIL, "the result of this request is no longer kept; ask again");
    else
        w->finish(a, &rq, &res, w->farg, &rs);
    if (done) job_result_free(&res);
    waiter_release(a, cs);
    enum MHD_Result r = respond(a, conn, &rq, &rs);
    log_debug("%s %s -> %d (after its job)", method, url, rs.status);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    api *a = cls;
    conn_state *cs = *con_cls;
    if (cs == NULL) {
        cs = calloc(1, sizeof(*cs));
        if (cs == NULL) return MHD_NO;
        cs->fd = -1;
        cs->tr = track_of(conn);
        *con_cls = cs;
        track_phase(a, cs->tr, T_BODY);
        api_req rq = {.method = method, .path = url, .conn = conn};
        api_resp rs = {.status = 0};
        if (admit(a, conn, url, method, cs, &rq, &rs) == 0) {
            cs->claims = rq.claims;
            cs->user = rq.user;
            cs->tenant = rq.tenant;
            cs->operator_role = rq.operator_role;
            return MHD_YES;
        }
        /* Refused from the headers: answered now, the body never read. */
        track_phase(a, cs->tr, T_BUSY);
        enum MHD_Result r = respond(a, conn, &rq, &rs);
        log_debug("%s %s -> %d (at the door)", method, url, rs.status);
        json_decref(rq.claims);
        return r;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        track_body(a, cs->tr, n);
        if (cs->rt && cs->rt->body == API_BODY_RAW) upload_chunk(cs, upload_data, n);
        else if (!cs->too_big && sbuf_add(&cs->body, upload_data, n) != 0) cs->too_big = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (cs->waiter) return resumed(a, conn, url, method, cs);
    track_phase(a, cs->tr, T_BUSY);
    api_req rq = {.method = method,
                  .path = url,
                  .conn = conn,
                  .claims = cs->claims,
                  .user = cs->user,
                  .tenant = cs->tenant,
                  .operator_role = cs->operator_role};
    api_resp rs = {.status = 500};
    dispatch(a, &rq, cs, &rs);
    if (rs.wait) {
        /* Suspended (api_run_job): answered when MHD calls again. */
        cs->waiter = rs.wait;
        json_decref(rq.body);
        return MHD_YES;
    }
    enum MHD_Result r = respond(a, conn, &rq, &rs);
    log_debug("%s %s -> %d", method, url, rs.status);
    json_decref(rq.body);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)toe;
    api *a = cls;
    conn_state *cs = *con_cls;
    if (cs == NULL) return;
    track_phase(a, cs->tr, T_HEADERS);
    (void)conn;
    waiter_release(a, cs); /* a client gone, or stampd stopping */
    sbuf_free(&cs->body);
    upload_discard(cs);
    EVP_MD_CTX_free(cs->md);
    if (cs->upload_slot) atomic_fetch_sub(&a->uploads, 1);
    json_decref(cs->claims);
    free(cs);
    *con_cls = NULL;
}

/* ---- start and stop ---- */

/* The listening socket is ours, so a failure says why (MHD only says it
 * failed). */
static int listen_on(const char *addr, int *out, serr *e) {
    char host[128];
    if (!str_copy(host, sizeof(host), addr)) return serr_set(e, SE_INVAL, "listen too long");
    char *colon = strrchr(host, ':');
    if (colon == NULL) return serr_set(e, SE_INVAL, "listen \"%s\" is not ADDR:PORT", addr);
    *colon = '\0';
    int64_t port;
    if (parse_i64(colon + 1, 1, 65535, &port) != 0)
        return serr_set(e, SE_INVAL, "listen \"%s\": bad port", addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return serr_set(e, SE_INVAL, "listen \"%s\": bad IPv4 address", addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return serr_set(e, SE_IO, "API socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = errno;
        close(fd);
        if (err == EADDRINUSE)
            return serr_set(e, SE_UNAVAIL, "cannot listen on %s: the address is in use (%s)", addr,
                            strerror(err));
        return serr_set(e, SE_IO, "cannot listen on %s: %s", addr, strerror(err));
    }
    if (listen(fd, 128) != 0) {
        int err = errno;
        close(fd);
        return serr_set(e, SE_IO, "cannot listen on %s: %s", addr, strerror(err));
    }
    *out = fd;
    return 0;
}

int api_start(ctl_ctx *c, const jwt_verifier *v, const char *listen, api **out, serr *e) {
    const stamp_config *cfg = c->cfg;
    api *a = calloc(1, sizeof(*a));
    if (a == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    a->c = c;
    a->v = v;
    atomic_init(&a->uploads, 0);
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    int fd = -1, rc;
    /* Uploads in flight; what a crash left there is garbage. */
    if (snprintf(a->tmpdir, sizeof(a->tmpdir), "%s/uploads", cfg->data_dir) >= (int)sizeof(a->tmpdir)) {
        rc = serr_set(e, SE_INVAL, "data dir path too long");
        goto fail;
    }
    if ((rc = remove_tree(a->tmpdir, e)) || (rc = mkdir_p(a->tmpdir, 0700, e))) goto fail;
    if ((rc = listen_on(listen, &fd, e))) goto fail;
    metrics_register("api_connections_cut_total", MT_COUNTER,
                     "API connections cut for late headers or a trickling body");
    metrics_register("api_requests_waiting", MT_GAUGE,
                     "API requests waiting for a job (their connections suspended)");
    if (pthread_create(&a->watchdog, NULL, watchdog_main, a) != 0) {
        rc = serr_set(e, SE_INTERNAL, "cannot start the API watchdog thread");
        goto fail;
    }
    a->watchdog_on = true;
    if ((rc = watch_hub_new(c->st, (int)cfg->api_max_watches, &a->wh, e))) goto fail;
    unsigned idle = (unsigned)((cfg->api_idle_timeout_ms + 999) / 1000);
    /* A pool of threads; slow work is not theirs (api_run_job), and
     * suspended connections are resumed from the job threads. */
    a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO |
                                MHD_ALLOW_SUSPEND_RESUME,
                            0,
                            NULL, NULL, on_request, a, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, a,
                            MHD_OPTION_UNESCAPE_CALLBACK, unescape, a,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->api_max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                            (unsigned)cfg->api_max_connections_per_client,
                            MHD_OPTION_CONNECTION_TIMEOUT, idle, /* 0: none */
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->api_threads,
                            MHD_OPTION_END);
    if (a->d == NULL) {
        rc = serr_set(e, SE_IO, "cannot start the HTTP server on %s", listen);
        goto fail;
    }
    *out = a;
    return 0;
fail:
    if (fd >= 0) close(fd);
    api_stop(a);
    return rc;
}

void api_stop(api *a) {
    if (a == NULL) return;
    /* Requests still waiting for jobs are answered 503 (normally none:
     * stampd stops the job pool first, and every job's end resumed its
     * request).  MHD needs every connection resumed before it stops. */
    pthread_mutex_lock(&waiters_mu);
    a->waits_closed = true;
    for (api_waiter *w = a->waiters; w; w = w->next) {
        if (!w->suspended) continue;
        w->suspended = false;
        MHD_resume_connection(w->conn);
    }
    pthread_mutex_unlock(&waiters_mu);
    /* Suspended watches must be resumed before MHD stops; their responses
     * are freed by MHD_stop_daemon, which still needs the hub. */
    watch_hub_stop(a->wh);
    if (a->d) MHD_stop_daemon(a->d);
    watch_hub_free(a->wh);
    if (a->watchdog_on) {
        pthread_mutex_lock(&a->mu);
        a->stopping = true;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->watchdog, NULL);
    }
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
