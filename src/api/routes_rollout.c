/*
 * routes_rollout.c - the API of StampRollouts (rollout/rollout.h): create,
 * list, get, pause/resume/abort, and removal of a finished record.  The
 * handlers only check names and pass on; the rollout module validates and
 * writes spec, its controller does the work.  Every mutation is audited.
 */
#include <string.h>

#include "api/api.h"
#include "rollout/rollout.h"
#include "util/util.h"

int h_rollouts_create(api *a, api_req *rq, api_resp *rs) {
    serr e = {0};
    char name[RES_NAME_MAX] = "";
    json_t *answer = NULL;
    int rc = ro_create(api_ctx(a), rq->body, rq->user, name, sizeof(name), &answer, &e);
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 201, answer);
    json_t *detail = json_pack("{s:O?,s:O?}", "template", json_object_get(rq->body, "template"), "toRevision",
                               json_object_get(rq->body, "toRevision"));
    api_audit(a, rq, "rollout", RO_KIND, name, rc, &e, detail);
    json_decref(detail);
    return rc;
}

static int collect(const resource *r, void *arg) {
    json_array_append_new(arg, resource_to_json(r));
    return json_array_size(arg) >= 10000;
}

int h_rollouts_list(api *a, api_req *rq, api_resp *rs) {
    (void)rq;
    json_t *items = json_array();
    serr e = {0};
    if (store_list(api_ctx(a)->st, RO_KIND, NULL, collect, items, &e) != 0) {
        json_decref(items);
        return api_error_serr(rs, &e);
    }
    return api_json(rs, 200, json_pack("{s:s,s:o}", "kind", "StampRolloutList", "items", items));
}

int h_rollouts_get(api *a, api_req *rq, api_resp *rs) {
    if (!name_valid(rq->params[0], 63)) return api_error(rs, SE_INVAL, "bad rollout name");
    resource r;
    resource_init(&r);
    serr e = {0};
    int rc = store_get(api_ctx(a)->st, RO_KIND, rq->params[0], &r, &e);
    if (rc == SE_NOTFOUND) serr_set(&e, SE_NOTFOUND, "rollout %s not found (stampctl rollout status)", rq->params[0]);
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 200, resource_to_json(&r));
    resource_free(&r);
    return rc;
}

int h_rollouts_action(api *a, api_req *rq, api_resp *rs) {
    if (!name_valid(rq->params[0], 63)) return api_error(rs, SE_INVAL, "bad rollout name");
    if (rq->body && json_object_size(rq->body) > 0)
        return api_error(rs, SE_INVAL, "body: %s takes no fields", rq->params[1]);
    serr e = {0};
    json_t *answer = NULL;
    int rc = ro_action(api_ctx(a), rq->params[0], rq->params[1], rq->user, &answer, &e);
    if (rc == SE_NOTFOUND && strcmp(rq->params[1], "pause") && strcmp(rq->params[1], "resume") &&
        strcmp(rq->params[1], "abort"))
        return api_error_serr(rs, &e); /* an unknown action changes nothing: not audited */
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 202, answer);
    api_audit(a, rq, rq->params[1], RO_KIND, rq->params[0], rc, &e, NULL);
    return rc;
}

int h_rollouts_delete(api *a, api_req *rq, api_resp *rs) {
    if (!name_valid(rq->params[0], 63)) return api_error(rs, SE_INVAL, "bad rollout name");
    serr e = {0};
    json_t *answer = NULL;
    int rc = ro_delete(api_ctx(a), rq->params[0], &answer, &e);
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 200, answer);
    api_audit(a, rq, "delete", RO_KIND, rq->params[0], rc, &e, NULL);
    return rc;
}
