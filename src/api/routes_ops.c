/*
 * routes_ops.c - the API of the in-place operations on an Active stamp:
 * POST /v1/stamps/{name}/scale and /v1/stamps/{name}/update.
 */
#include <string.h>

#include "api/api.h"
#include "core/naming.h"
#include "core/template.h"
#include "stamp/ops.h"
#include "util/util.h"

int h_stamps_scale(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"pool", "replicas", NULL};
    serr e = {0};
    const char *name = rq->params[0];
    json_t *b = rq->body;
    int rc;
    if (!name_valid(name, STAMP_NAME_MAX)) {
        rc = serr_set(&e, SE_INVAL, "\"%s\" is not a valid stamp name", name);
        goto out;
    }
    if (!json_is_object(b)) {
        rc = serr_set(&e, SE_INVAL, "body: {\"pool\": \"general\", \"replicas\": 5} expected");
        goto out;
    }
    if ((rc = json_check_keys(b, "body", keys, &e))) goto out;
    const char *pool = json_string_value(json_object_get(b, "pool"));
    json_t *n = json_object_get(b, "replicas");
    if (pool == NULL) {
        rc = serr_set(&e, SE_INVAL, "body.pool: required (system, general or gpu)");
        goto out;
    }
    if (!json_is_integer(n)) {
        rc = serr_set(&e, SE_INVAL, "body.replicas: required integer");
        goto out;
    }
    stamp_scale_req q = {.name = name, .pool = pool, .replicas = json_integer_value(n),
                         .user = rq->user, .dry_run = rq->dry_run};
    json_t *answer = NULL;
    int status = 0;
    if ((rc = stamp_scale(api_ctx(a), &q, &answer, &status, &e)) == 0) api_json(rs, status, answer);
out:
    if (rc) api_error_serr(rs, &e);
    if (!rq->dry_run) api_audit(a, rq, "scale", "Stamp", name, rc, &e, b);
    return rc;
}

int h_stamps_update(api *a, api_req *rq, api_resp *rs) {
    (void)a;
    (void)rq;
    return api_error(rs, SE_INVAL, "not yet");
}
