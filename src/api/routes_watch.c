/*
 * routes_watch.c - GET /v1/watch?kind=K[&name=N][&since=ID]: who may watch
 * what.  Stamps and the other fleet kinds are the operator's; a tenant
 * watches Namespace only, and sees only its own tenant's events.  The
 * stream itself is watch.c's.
 */
#include <string.h>

#include "api/api.h"
#include "api/watch.h"
#include "util/util.h"

static const char *const kinds[] = {"Stamp", "StampTemplate", "StampHealthCheck", "StampAutoscaler", "Namespace",
                                    "ObservabilityPlatform", NULL};

/* The query of a watch or an event list: kind, name, since, and the tenant
 * the caller is confined to.  0, or an error answered in rs. */
static int events_query(api_req *rq, api_resp *rs, const char **kind, const char **name,
                        int64_t *since, const char **tenant) {
    *kind = api_query(rq, "kind");
    *name = api_query(rq, "name");
    const char *since_s = api_query(rq, "since");
    const char *k = *kind;
    if (k && *k) {
        bool known = false;
        for (int i = 0; kinds[i]; i++) known = known || strcmp(kinds[i], k) == 0;
        if (!known)
            return api_error(rs, SE_INVAL,
                             "kind: \"%s\" is not one of Stamp, StampTemplate, StampHealthCheck, "
                             "StampAutoscaler, Namespace, ObservabilityPlatform",
                             k);
    } else {
        *kind = NULL;
    }
    if (*name && (**name == '\0' || strlen(*name) >= RES_NAME_MAX))
        return api_error(rs, SE_INVAL, "name: 1-%d characters", RES_NAME_MAX - 1);
    if (since_s && parse_i64(since_s, 0, INT64_MAX, since) != 0)
        return api_error(rs, SE_INVAL, "since: an event id (0 or more)");
    *tenant = NULL;
    if (!rq->operator_role) {
        if (*kind == NULL) *kind = "Namespace";
        if (strcmp(*kind, "Namespace") != 0)
            return api_error(rs, SE_FORBIDDEN, "the events of %s need the operator role", *kind);
        *tenant = rq->tenant;
    }
    return 0;
}

int h_watch(api *a, api_req *rq, api_resp *rs) {
    const char *kind, *name, *tenant;
    int64_t since = -1;
    int rc = events_query(rq, rs, &kind, &name, &since, &tenant);
    if (rc) return rc;
    api_watch *w = NULL;
    serr e = {0};
    if (watch_open(api_watch_hub(a), kind, name, tenant, since, &w, &e) != 0)
        return api_error_serr(rs, &e);
    rs->status = 200;
    rs->watch = w;
    return 0;
}

/* GET /v1/events: the events of every object (or of a kind, a name), after
 * an id, oldest first, each as GET /v1/stamps/NAME/events shows one (time,
 * type, reason, message, resourceVersion) with id, kind, name, and from and
 * to for a phase change: what a watch streams, as one answer.
 * "next" is the id to pass as since for the following page or watch. */
int h_events(api *a, api_req *rq, api_resp *rs) {
    const char *kind, *name, *tenant;
    int64_t since = 0, limit = 256, upto = 0;
    int rc = events_query(rq, rs, &kind, &name, &since, &tenant);
    if (rc) return rc;
    if (since < 0) since = 0;
    const char *l = api_query(rq, "limit");
    if (l && parse_i64(l, 1, 256, &limit) != 0) return api_error(rs, SE_INVAL, "limit: 1..256");
    json_t *rows = NULL;
    serr e = {0};
    if (store_events_after(api_ctx(a)->st, kind, name, tenant, since, (int)limit, &rows, &upto, &e))
        return api_error_serr(rs, &e);
    json_t *items = json_array();
    size_t i;
    json_t *ev;
    json_array_foreach(rows, i, ev) json_array_append(items, ev);
    json_decref(rows);
    return api_json(rs, 200, json_pack("{s:s,s:o,s:I}", "kind", "EventList", "items", items, "next",
                                       (json_int_t)upto));
}
