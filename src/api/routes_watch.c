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

static const char *const kinds[] = {"Stamp", "StampTemplate", "StampHealthCheck", "Namespace", NULL};

int h_watch(api *a, api_req *rq, api_resp *rs) {
    const char *kind = api_query(rq, "kind"), *name = api_query(rq, "name");
    const char *since_s = api_query(rq, "since");
    int64_t since = -1;
    if (kind && *kind) {
        bool known = false;
        for (int i = 0; kinds[i]; i++) known = known || strcmp(kinds[i], kind) == 0;
        if (!known)
            return api_error(rs, SE_INVAL,
                             "kind: \"%s\" is not one of Stamp, StampTemplate, StampHealthCheck, "
                             "Namespace",
                             kind);
    } else {
        kind = NULL;
    }
    if (name && (*name == '\0' || strlen(name) >= RES_NAME_MAX))
        return api_error(rs, SE_INVAL, "name: 1-%d characters", RES_NAME_MAX - 1);
    if (since_s && parse_i64(since_s, 0, INT64_MAX, &since) != 0)
        return api_error(rs, SE_INVAL, "since: an event id (0 or more)");
    const char *tenant = NULL;
    if (!rq->operator_role) {
        if (kind == NULL) kind = "Namespace";
        if (strcmp(kind, "Namespace") != 0)
            return api_error(rs, SE_FORBIDDEN, "watching %s needs the operator role", kind);
        tenant = rq->tenant;
    }
    api_watch *w = NULL;
    serr e = {0};
    if (watch_open(api_watch_hub(a), kind, name, tenant, since, &w, &e) != 0)
        return api_error_serr(rs, &e);
    rs->status = 200;
    rs->watch = w;
    return 0;
}
