/*
 * server.c - the HTTP plumbing of the API: libmicrohttpd, the route table,
 * body buffering with a cap, bearer-token authentication, the one error
 * shape and the audit helper.  Handlers live in routes_*.c.
 *
 * MHD calls the access handler several times per request: the first call
 * only allocates our per-request state (so the reply can be queued on a
 * later call and the connection kept alive), body chunks come next, and the
 * final call (upload size 0) dispatches.  An oversized body is refused as
 * soon as it is seen, by Content-Length or by counting.
 */
#include "api/api.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ns/ns.h"
#include "util/log.h"
#include "util/util.h"
#include "util/yamljson.h"

struct api {
    struct MHD_Daemon *d;
    ctl_ctx *c;
    const jwt_verifier *v;
};

enum auth_need { AUTH_NONE, AUTH_TOKEN, AUTH_OPERATOR };

typedef struct route {
    const char *method;
    const char *pattern; /* "{}" matches one path segment */
    api_handler fn;
    int auth;
    bool raw; /* body is bytes (up to bundle-max-size), not JSON */
} route;

static const route routes[] = {
    {"GET", "/metrics", h_metrics, AUTH_NONE, false},
    {"POST", "/v1/stamps", h_stamps_create, AUTH_OPERATOR, false},
    {"GET", "/v1/stamps", h_stamps_list, AUTH_OPERATOR, false},
    {"GET", "/v1/stamps/{}", h_stamps_get, AUTH_OPERATOR, false},
    {"DELETE", "/v1/stamps/{}", h_stamps_delete, AUTH_OPERATOR, false},
    {"GET", "/v1/stamps/{}/events", h_stamps_events, AUTH_OPERATOR, false},
    {"GET", "/v1/stamps/{}/health", h_stamps_health, AUTH_OPERATOR, false},
    {"GET", "/v1/stamps/{}/metrics", h_stamps_metrics, AUTH_OPERATOR, false},
    {"POST", "/v1/stamps/{}/{}", h_stamps_action, AUTH_OPERATOR, false},
    {"POST", "/v1/apply", h_apply, AUTH_OPERATOR, false},
    {"GET", "/v1/frontdoor", h_frontdoor, AUTH_OPERATOR, false},
    {"GET", "/v1/templates", h_templates_list, AUTH_OPERATOR, false},
    {"GET", "/v1/templates/{}", h_templates_get, AUTH_OPERATOR, false},
    {"GET", "/v1/audit", h_audit, AUTH_OPERATOR, false},
    {"POST", "/v1/tokens", h_tokens_create, AUTH_OPERATOR, false},
    /* seed 004 */
    {"POST", "/v1/platform/namespaces", h_ns_create, AUTH_TOKEN, false},
    {"GET", "/v1/platform/namespaces", h_ns_list, AUTH_TOKEN, false},
    {"GET", "/v1/platform/namespaces/{}", h_ns_get, AUTH_TOKEN, false},
    {"POST", "/v1/platform/namespaces/{}/finalize", h_ns_finalize, AUTH_TOKEN, false},
    {"POST", "/v1/platform/namespaces/{}/activity", h_ns_activity, AUTH_TOKEN, false},
    {"POST", "/v1/platform/namespaces/{}/reap", h_ns_reap, AUTH_TOKEN, false},
    {"GET", "/v1/platform/namespaces/{}/pods", h_ns_pods_list, AUTH_TOKEN, false},
    {"POST", "/v1/platform/namespaces/{}/pods", h_ns_pod_create, AUTH_TOKEN, false},
    {"GET", "/v1/platform/namespaces/{}/pods/{}/log", h_ns_pod_log, AUTH_TOKEN, false},
    {"POST", "/v1/platform/namespaces/{}/pods/{}/annotations", h_ns_pod_annotate, AUTH_TOKEN, false},
    {"POST", "/v1/platform/namespaces/{}/volumes", h_ns_volume_create, AUTH_TOKEN, false},
    {"POST", "/v1/platform/namespaces/{}/runs", h_ns_run_create, AUTH_TOKEN, false},
    {"GET", "/v1/platform/runs", h_runs_list, AUTH_TOKEN, false},
    {"POST", "/v1/platform/bundles", h_bundles_push, AUTH_TOKEN, true},
    {"GET", "/v1/platform/bundles", h_bundles_list, AUTH_TOKEN, false},
    {"POST", "/v1/platform/mttc/verify", h_mttc_verify, AUTH_TOKEN, false},
    {"GET", "/v1/platform/reaper/eligible", h_reaper_eligible, AUTH_TOKEN, false},
    {"POST", "/v1/platform/reaper/sweep", h_reaper_sweep, AUTH_OPERATOR, false},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* One request's state across libmicrohttpd's calls.  Its route is found
 * once, on the first call, since the body's limit depends on it. */
typedef struct conn_state {
    sbuf body;
    size_t cap;
    bool too_big;
    const route *rt;        /* NULL: no route has this method and path */
    bool path_known;        /* some route has the path (405 rather than 404) */
    char caps[API_MAX_PARAMS][RES_NAME_MAX];
    int ncaps;
} conn_state;

ctl_ctx *api_ctx(api *a) { return a->c; }

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

int api_error(api_resp *rs, int code, const char *fmt, ...) {
    char msg[SERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
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
        if (p[0] == '{' && p[1] == '}') {
            const char *end = strchr(q, '/');
            size_t n = end ? (size_t)(end - q) : strlen(q);
            if (n == 0 || n >= RES_NAME_MAX || *ncaps >= API_MAX_PARAMS) return false;
            memcpy(caps[*ncaps], q, n);
            caps[*ncaps][n] = '\0';
            (*ncaps)++;
            q += n;
            p += 2;
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

static int authenticate(api *a, api_req *rq, int need, api_resp *rs) {
    const char *h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Authorization");
    if (h == NULL || strncmp(h, "Bearer ", 7) != 0)
        return api_error(rs, SE_UNAUTH, "missing bearer token");
    serr e = {0};
    int rc = jwt_verify(a->v, h + 7, now_ms() / 1000, &rq->claims, &e);
    if (rc) return api_error(rs, SE_UNAUTH, "%s", e.msg);
    rq->user = json_string_value(json_object_get(rq->claims, "user_id"));
    rq->tenant = json_string_value(json_object_get(rq->claims, "tenant_id"));
    if (rq->user == NULL || *rq->user == '\0' || rq->tenant == NULL || *rq->tenant == '\0')
        return api_error(rs, SE_UNAUTH, "token lacks user_id or tenant_id");
    /* The tenant names blob paths and directories: refuse odd ones here. */
    serr te = {0};
    if (ns_tenant_check(rq->tenant, &te) != 0)
        return api_error(rs, SE_UNAUTH, "token's %s", te.msg);
    rq->operator_role = jwt_grants_operator(a->v, h + 7, rq->claims, &e) == 1;
    if (e.msg[0]) log_warnx("auth: tenant %s: %s", rq->tenant, e.msg);
    if (need == AUTH_OPERATOR && !rq->operator_role)
        return api_error(rs, SE_FORBIDDEN, "this needs the operator role");
    return 0;
}

static void dispatch(api *a, api_req *rq, conn_state *cs, api_resp *rs) {
    if (strcmp(rq->path, "/healthz") == 0) {
        rs->status = 200;
        rs->text = strdup("ok\n");
        rs->content_type = "text/plain";
        return;
    }
    const route *rt = cs->rt;
    if (rt == NULL) {
        if (cs->path_known) api_error(rs, SE_METHOD, "%s is not allowed on %s", rq->method, rq->path);
        else api_error(rs, SE_NOTFOUND, "no such endpoint: %s", rq->path);
        return;
    }
    for (int k = 0; k < cs->ncaps; k++) rq->params[k] = cs->caps[k];
    if (rt->auth != AUTH_NONE && authenticate(a, rq, rt->auth, rs) != 0) return;
    if (cs->too_big) {
        api_error(rs, SE_TOOBIG, "request body larger than %zu bytes", cs->cap);
        return;
    }
    if (rt->raw) {
        rq->raw = cs->body.data;
        rq->raw_len = cs->body.len;
    } else if (cs->body.len > 0) {
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    api *a = cls;
    conn_state *cs = *con_cls;
    if (cs == NULL) {
        cs = calloc(1, sizeof(*cs));
        if (cs == NULL) return MHD_NO;
        route_for(method, url, cs);
        /* Raw bodies (model bundles) may be large; JSON ones are not. */
        cs->cap = cs->rt && cs->rt->raw ? (size_t)a->c->cfg->bundle_max_size : API_MAX_BODY;
        sbuf_init(&cs->body, cs->cap);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        int64_t n;
        if (cl && parse_i64(cl, 0, INT64_MAX, &n) == 0 && n > (int64_t)cs->cap) cs->too_big = true;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!cs->too_big && sbuf_add(&cs->body, upload_data, *upload_data_size) != 0)
            cs->too_big = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    api_req rq = {.method = method, .path = url, .conn = conn};
    api_resp rs = {.status = 500};
    dispatch(a, &rq, cs, &rs);
    char *text = rs.text;
    size_t tlen = rs.text_len;
    const char *ctype = rs.content_type ? rs.content_type : "application/json";
    if (rs.body) {
        tlen = 0;
        text = json_dumps(rs.body, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        free(rs.text);
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
    }
    if (text == NULL) text = strdup("");
    if (tlen == 0) tlen = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer(tlen, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (rs.status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)rs.status, resp);
    MHD_destroy_response(resp);
    log_debug("%s %s -> %d", method, url, rs.status);
    json_decref(rs.body);
    json_decref(rq.body);
    json_decref(rq.claims);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    conn_state *cs = *con_cls;
    if (cs == NULL) return;
    sbuf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

int api_start(ctl_ctx *c, const jwt_verifier *v, const char *listen, api **out, serr *e) {
    char host[128];
    if (!str_copy(host, sizeof(host), listen)) return serr_set(e, SE_INVAL, "listen too long");
    char *colon = strrchr(host, ':');
    if (colon == NULL) return serr_set(e, SE_INVAL, "listen \"%s\" is not ADDR:PORT", listen);
    *colon = '\0';
    int64_t port;
    if (parse_i64(colon + 1, 1, 65535, &port) != 0)
        return serr_set(e, SE_INVAL, "listen \"%s\": bad port", listen);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return serr_set(e, SE_INVAL, "listen \"%s\": bad IPv4 address", listen);
    api *a = calloc(1, sizeof(*a));
    if (a == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    a->c = c;
    a->v = v;
    /* A pool of threads: a reap or an MTTC verification holds one for as
     * long as it runs, and the others keep answering. */
    a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO,
                            (uint16_t)port, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->cfg->api_threads,
                            MHD_OPTION_END);
    if (a->d == NULL) {
        free(a);
        return serr_set(e, SE_IO, "cannot listen on %s (in use?)", listen);
    }
    *out = a;
    return 0;
}

void api_stop(api *a) {
    if (a == NULL) return;
    MHD_stop_daemon(a->d);
    free(a);
}
