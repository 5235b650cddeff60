/*
 * routes_obs.c - the API of ObservabilityPlatforms (obs/obs.h): list, get,
 * pause/resume, and delete (the platform is marked; its finalizer
 * uninstalls the components and the record goes when that is done).
 * Apply is POST /v1/apply (routes_stamps.c).  The handlers check names and
 * pass on; obs/api.c writes spec and wakes the controller.  Every mutation
 * is audited.
 */
#include <string.h>

#include "api/api.h"
#include "obs/obs.h"
#include "util/util.h"

json_t *api_platform_json(const resource *r) {
    json_t *o = resource_to_json(r);
    /* The store writes its own apiVersion; a platform read back must apply
     * again as it is (get -o yaml | apply -f -). */
    if (o) json_object_set_new(o, "apiVersion", json_string(OBS_API_VERSION));
    return o;
}

static int bad_name(api_resp *rs, const char *name) {
    return api_error(rs, SE_INVAL,
                     "\"%s\" is not a platform name (1-63 lowercase letters, digits and '-')", name);
}

static int collect(const resource *r, void *arg) {
    json_array_append_new(arg, api_platform_json(r));
    return json_array_size(arg) >= 10000;
}

int h_platforms_list(api *a, api_req *rq, api_resp *rs) {
    (void)rq;
    json_t *items = json_array();
    serr e = {0};
    if (store_list(api_ctx(a)->st, OBS_KIND, NULL, collect, items, &e) != 0) {
        json_decref(items);
        return api_error_serr(rs, &e);
    }
    return api_json(rs, 200, json_pack("{s:s,s:s,s:o}", "apiVersion", OBS_API_VERSION, "kind",
                                       "ObservabilityPlatformList", "items", items));
}

int h_platforms_get(api *a, api_req *rq, api_resp *rs) {
    if (!name_valid(rq->params[0], 63)) return bad_name(rs, rq->params[0]);
    resource r;
    resource_init(&r);
    serr e = {0};
    int rc = store_get(api_ctx(a)->st, OBS_KIND, rq->params[0], &r, &e);
    if (rc == SE_NOTFOUND)
        serr_set(&e, SE_NOTFOUND, "platform %s not found (stampctl get platforms)", rq->params[0]);
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 200, api_platform_json(&r));
    resource_free(&r);
    return rc;
}

int h_platforms_action(api *a, api_req *rq, api_resp *rs) {
    const char *name = rq->params[0], *action = rq->params[1];
    bool known = strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0;
    /* An unknown action changes nothing: refused before anything, not
     * audited (as an unknown route is not). */
    if (!known) return api_error(rs, SE_INVAL, "no platform action \"%s\" (pause, resume)", action);
    if (!name_valid(name, 63)) return bad_name(rs, name);
    if (rq->body && json_object_size(rq->body) > 0)
        return api_error(rs, SE_INVAL, "body: %s takes no fields", action);
    serr e = {0};
    json_t *answer = NULL;
    int rc = obs_action(api_ctx(a), name, action, rq->user, &answer, &e);
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 202, answer);
    api_audit(a, rq, action, OBS_KIND, name, rc, &e, NULL);
    return rc;
}

int h_platforms_delete(api *a, api_req *rq, api_resp *rs) {
    if (!name_valid(rq->params[0], 63)) return bad_name(rs, rq->params[0]);
    serr e = {0};
    json_t *answer = NULL;
    int rc = obs_delete(api_ctx(a), rq->params[0], rq->user, &answer, &e);
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 202, answer);
    api_audit(a, rq, "delete", OBS_KIND, rq->params[0], rc, &e, NULL);
    return rc;
}
