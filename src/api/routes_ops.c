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

/* What both operations check first: the path's stamp name, and a body
 * that is an object of only the keys listed (shape: the body expected). */
static int op_request(api_req *rq, const char *const *keys, const char *shape, serr *e) {
    if (!name_valid(rq->params[0], STAMP_NAME_MAX))
        return serr_set(e, SE_INVAL, "\"%s\" is not a valid stamp name", rq->params[0]);
    if (!json_is_object(rq->body)) return serr_set(e, SE_INVAL, "body: %s expected", shape);
    return json_check_keys(rq->body, "body", keys, e);
}

int h_stamps_scale(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"pool", "replicas", NULL};
    serr e = {0};
    const char *name = rq->params[0];
    json_t *b = rq->body;
    int rc;
    if ((rc = op_request(rq, keys, "{\"pool\": \"general\", \"replicas\": 5}", &e))) goto out;
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

/* set: {name: string | integer | null}, names as parameters have them. */
static int check_set(json_t *set, serr *e) {
    if (set == NULL) return 0;
    if (!json_is_object(set) || json_object_size(set) > 32)
        return serr_set(e, SE_INVAL, "body.set: must be a mapping of at most 32 parameters");
    const char *k;
    json_t *v;
    json_object_foreach(set, k, v) {
        if (!tpl_param_name_ok(k))
            return serr_set(e, SE_INVAL, "body.set.%.64s: names are letters, digits, '_' and '.' inside", k);
        if (!(json_is_string(v) && json_string_length(v) <= 400) && !json_is_integer(v) && !json_is_null(v))
            return serr_set(e, SE_INVAL, "body.set.%s: must be a string (400 chars max), integer or null", k);
    }
    return 0;
}

int h_stamps_update(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"set", "revision", "latest", NULL};
    serr e = {0};
    const char *name = rq->params[0];
    json_t *b = rq->body;
    int rc;
    if ((rc = op_request(rq, keys, "{\"set\": {...}}, {\"revision\": N} or {\"latest\": true}", &e)) ||
        (rc = check_set(json_object_get(b, "set"), &e)))
        goto out;
    json_t *rev = json_object_get(b, "revision"), *latest = json_object_get(b, "latest");
    if (rev && (!json_is_integer(rev) || json_integer_value(rev) < 1)) {
        rc = serr_set(&e, SE_INVAL, "body.revision: must be a revision number (1 or more)");
        goto out;
    }
    if (latest && !json_is_boolean(latest)) {
        rc = serr_set(&e, SE_INVAL, "body.latest: must be true or false");
        goto out;
    }
    if (rev && json_is_true(latest)) {
        rc = serr_set(&e, SE_INVAL, "body: revision and latest are one or the other");
        goto out;
    }
    if (!rev && !json_is_true(latest) && json_object_size(json_object_get(b, "set")) == 0) {
        rc = serr_set(&e, SE_INVAL, "body: nothing to update (set, revision or latest)");
        goto out;
    }
    stamp_update_req q = {.name = name, .set = json_object_get(b, "set"),
                          .revision = rev ? json_integer_value(rev) : 0, .latest = json_is_true(latest),
                          .user = rq->user, .dry_run = rq->dry_run};
    json_t *answer = NULL;
    int status = 0;
    if ((rc = stamp_update(api_ctx(a), &q, &answer, &status, &e)) == 0) api_json(rs, status, answer);
out:
    if (rc) api_error_serr(rs, &e);
    if (!rq->dry_run) api_audit(a, rq, "update", "Stamp", name, rc, &e, b);
    return rc;
}
