/*
 * routes_stamps.c - the API of stamps and templates, and /metrics.
 *
 * Handlers validate, check the operation against the Stamp table (so an
 * illegal operation is refused with the phase and what it allows), record
 * what is wanted in the stamp's spec with optimistic concurrency, append
 * the audit entry, and wake the controller.  Phase changes themselves are
 * the controller's (reconcile/stamp_ctl.c).
 */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "autoscale/spec.h"
#include "core/naming.h"
#include "core/stamp_fsm.h"
#include "core/template.h"
#include "health/health.h"
#include "obs/obs.h"
#include "reconcile/phase.h"
#include "stamp/actions.h"
#include "stamp/intent.h"
#include "stamp/prom.h"
#include "stamp/revisions.h"
#include "stamp/stamp_ctl.h"
#include "traffic/traffic.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

#define UPDATE_RETRIES 8

static int check_params(json_t *p, serr *e) {
    if (p == NULL) return 0;
    if (!json_is_object(p) || json_object_size(p) > 32)
        return serr_set(e, SE_INVAL, "parameters: must be a mapping of at most 32 entries");
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
        if (!tpl_param_name_ok(k))
            return serr_set(e, SE_INVAL,
                            "parameters.%.64s: names are letters, digits, '_' and '.' inside (at most "
                            "%d characters)",
                            k, TPL_PARAM_NAME_MAX);
        if (!(json_is_string(v) && json_string_length(v) <= 400) && !json_is_integer(v))
            return serr_set(e, SE_INVAL, "parameters.%s: must be a string (400 chars max) or integer", k);
    }
    return 0;
}

static const char *body_str(json_t *b, const char *k) {
    return json_string_value(json_object_get(b, k));
}

/* Long: validate the body field by field, then one optimistic create-or-
 * redeploy loop; the checks read best next to the fields they guard. */
int h_stamps_create(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"region", "stampId", "template", "parameters", "revision",
                                       NULL};
    ctl_ctx *c = api_ctx(a);
    serr e = {0};
    char name[STAMP_NAME_MAX + 1] = "";
    int rc;
    json_t *b = rq->body;
    if (b == NULL) {
        rc = serr_set(&e, SE_INVAL, "body: expected {\"region\", \"stampId\", \"template\"}");
        goto out;
    }
    if ((rc = json_check_keys(b, "body", keys, &e))) goto out;
    const char *region = body_str(b, "region"), *sid = body_str(b, "stampId"),
               *tname = body_str(b, "template");
    if (region == NULL || sid == NULL || tname == NULL) {
        rc = serr_set(&e, SE_INVAL, "region, stampId and template are required strings");
        goto out;
    }
    if ((rc = check_params(json_object_get(b, "parameters"), &e))) goto out;
    json_t *jrev = json_object_get(b, "revision");
    if (jrev && (!json_is_integer(jrev) || json_integer_value(jrev) < 1)) {
        rc = serr_set(&e, SE_INVAL, "revision: must be an integer >= 1 (a revision of the template: "
                                    "stampctl get templates NAME --revisions)");
        goto out;
    }
    if (!name_valid(tname, 63)) {
        rc = serr_set(&e, SE_INVAL, "template \"%s\" is not a valid name", tname);
        goto out;
    }
    stamp_deploy_req dq = {.region = region, .stamp_id = sid, .tname = tname,
                           .params = json_object_get(b, "parameters"), .user = rq->user,
                           .dry_run = rq->dry_run,
                           .revision = jrev ? json_integer_value(jrev) : 0};
    json_t *answer = NULL;
    int status = 0;
    rc = stamp_deploy(c, &dq, name, sizeof(name), &answer, &status, &e);
    if (rc == 0) api_json(rs, status, answer);
out:
    if (rc) api_error_serr(rs, &e);
    if (!rq->dry_run) {
        json_t *detail = json_pack("{s:s?,s:s?}", "region", body_str(b, "region"), "template",
                                   body_str(b, "template"));
        api_audit(a, rq, "deploy", "Stamp", name, rc, &e, detail);
        json_decref(detail);
    }
    return rc;
}

typedef struct list_ctx {
    json_t *items;
    int phase;
    const char *region;
} list_ctx;

static int list_one(const resource *r, void *arg) {
    list_ctx *l = arg;
    if (l->phase >= 0 && phase_of(&stamp_fsm, r) != l->phase) return 0;
    if (l->region) {
        const char *reg = json_string_value(json_object_get(r->spec, "region"));
        const char *code = json_string_value(json_object_get(r->spec, "regionCode"));
        if (!(reg && strcmp(reg, l->region) == 0) && !(code && strcmp(code, l->region) == 0))
            return 0;
    }
    json_array_append_new(l->items, resource_to_json(r));
    return json_array_size(l->items) >= 10000;
}

int h_stamps_list(api *a, api_req *rq, api_resp *rs) {
    list_ctx l = {.items = json_array(), .phase = -1, .region = api_query(rq, "region")};
    const char *state = api_query(rq, "state");
    serr e = {0};
    if (state && *state) {
        l.phase = fsm_phase_parse(&stamp_fsm, state);
        if (l.phase < 0) {
            json_decref(l.items);
            return api_error(rs, SE_INVAL,
                             "unknown state \"%s\" (Creating, Active, Draining, Ready, Deleting, "
                             "Deleted, Failed)",
                             state);
        }
    }
    if (l.region && *l.region == '\0') l.region = NULL;
    int rc = store_list(api_ctx(a)->st, "Stamp", NULL, list_one, &l, &e);
    if (rc) {
        json_decref(l.items);
        return api_error_serr(rs, &e);
    }
    return api_json(rs, 200, json_pack("{s:s,s:o}", "kind", "StampList", "items", l.items));
}

static int get_stamp(api *a, const char *name, resource *r, api_resp *rs) {
    serr e = {0};
    if (!name_valid(name, STAMP_NAME_MAX))
        return api_error(rs, SE_INVAL, "\"%s\" is not a valid stamp name", name);
    int rc = store_get(api_ctx(a)->st, "Stamp", name, r, &e);
    if (rc) return api_error_serr(rs, &e);
    return 0;
}

int h_stamps_get(api *a, api_req *rq, api_resp *rs) {
    resource r;
    resource_init(&r);
    int rc = get_stamp(a, rq->params[0], &r, rs);
    if (rc == 0) api_json(rs, 200, resource_to_json(&r));
    resource_free(&r);
    return rc;
}

int h_stamps_events(api *a, api_req *rq, api_resp *rs) {
    resource r;
    resource_init(&r);
    int rc = get_stamp(a, rq->params[0], &r, rs);
    resource_free(&r);
    if (rc) return rc;
    json_t *evs;
    serr e = {0};
    if ((rc = store_events(api_ctx(a)->st, "Stamp", rq->params[0], 1000, &evs, &e)))
        return api_error_serr(rs, &e);
    return api_json(rs, 200, json_pack("{s:s,s:o}", "kind", "EventList", "items", evs));
}

int h_stamps_health(api *a, api_req *rq, api_resp *rs) {
    serr e = {0};
    json_t *h;
    if (!name_valid(rq->params[0], STAMP_NAME_MAX))
        return api_error(rs, SE_INVAL, "\"%s\" is not a valid stamp name", rq->params[0]);
    if (stamp_health_json(api_ctx(a), rq->params[0], &h, &e)) return api_error_serr(rs, &e);
    return api_json(rs, 200, h);
}

int h_stamps_metrics(api *a, api_req *rq, api_resp *rs) {
    serr e = {0};
    json_t *m;
    int64_t period = 3600000;
    const char *p = api_query(rq, "period");
    if (p && (parse_duration_ms(p, &period) != 0 || period <= 0 || period > 90LL * 86400000))
        return api_error(rs, SE_INVAL, "period: \"%s\" is not a duration up to 90d (like 1h)", p);
    if (!name_valid(rq->params[0], STAMP_NAME_MAX))
        return api_error(rs, SE_INVAL, "\"%s\" is not a valid stamp name", rq->params[0]);
    if (stamp_metrics_json(api_ctx(a), rq->params[0], period, &m, &e)) return api_error_serr(rs, &e);
    return api_json(rs, 200, m);
}

/* GET /v1/stamps/{name}/logs: the step logs (JSON); with ?step=S the text
 * of S's latest run (or ?run=create-2), its last limit_bytes (1 MiB).  In
 * every phase, Creating included. */
int h_stamps_logs(api *a, api_req *rq, api_resp *rs) {
    resource r;
    resource_init(&r);
    int rc = get_stamp(a, rq->params[0], &r, rs);
    resource_free(&r);
    if (rc) return rc;
    serr e = {0};
    const char *step = api_query(rq, "step"), *run = api_query(rq, "run");
    if (step == NULL) {
        json_t *o;
        if (stamp_step_logs_json(api_ctx(a), rq->params[0], &o, &e)) return api_error_serr(rs, &e);
        return api_json(rs, 200, o);
    }
    if (!name_valid(step, RES_NAME_MAX - 1))
        return api_error(rs, SE_INVAL, "step: \"%s\" is not a step name", step);
    if (run && !(strlen(run) < 32 && (strncmp(run, "create-", 7) == 0 || strncmp(run, "delete-", 7) == 0)))
        return api_error(rs, SE_INVAL, "run: like create-1 or delete-1");
    int64_t tail = 1 << 20;
    const char *t = api_query(rq, "limit_bytes");
    if (t && parse_i64(t, 1, 64 << 20, &tail) != 0)
        return api_error(rs, SE_INVAL, "limit_bytes: 1..67108864");
    char *data;
    size_t len;
    if (stamp_step_log(api_ctx(a), rq->params[0], step, run, (size_t)tail, &data, &len, &e))
        return api_error_serr(rs, &e);
    rs->status = 200;
    rs->text = data;
    rs->text_len = len;
    rs->content_type = "text/plain; charset=utf-8";
    return 0;
}

int h_frontdoor(api *a, api_req *rq, api_resp *rs) {
    serr e = {0};
    json_t *o;
    if (traffic_json(api_ctx(a)->tr, &o, &e)) return api_error_serr(rs, &e);
    return api_json(rs, 200, o);
}

/* ---- seed 001's global health rule ---- */

/* The verbs: drain, activate, standby, delete, backup. */
static int stamp_action(api *a, api_req *rq, api_resp *rs, const char *name, const char *action) {
    static const char *const keys[] = {"force", "gracePeriod", "skipFleetCheck", NULL};
    ctl_ctx *c = api_ctx(a);
    serr e = {0};
    int rc = 0;
    bool force = false, skip_fleet = false;
    int64_t grace = 0;
    json_t *b = rq->body;
    if (b) {
        if ((rc = json_check_keys(b, "body", keys, &e))) goto out;
        json_t *f = json_object_get(b, "force");
        if (f && !json_is_boolean(f)) {
            rc = serr_set(&e, SE_INVAL, "body.force: must be true or false");
            goto out;
        }
        force = json_is_true(f);
        json_t *sk = json_object_get(b, "skipFleetCheck");
        if (sk && !json_is_boolean(sk)) {
            rc = serr_set(&e, SE_INVAL, "body.skipFleetCheck: must be true or false");
            goto out;
        }
        skip_fleet = json_is_true(sk);
        const char *g = body_str(b, "gracePeriod");
        if (json_object_get(b, "gracePeriod") && (g == NULL || parse_duration_ms(g, &grace) != 0 || grace <= 0)) {
            rc = serr_set(&e, SE_INVAL, "body.gracePeriod: not a duration like 60m");
            goto out;
        }
    }
    const char *q = api_query(rq, "force");
    if (q && (strcmp(q, "true") == 0 || strcmp(q, "1") == 0)) force = true;
    int op;
    if (strcmp(action, "drain") == 0) op = SO_DRAIN;
    else if (strcmp(action, "activate") == 0) op = SO_ACTIVATE;
    else if (strcmp(action, "standby") == 0) op = SO_STANDBY;
    else if (strcmp(action, "delete") == 0) op = force ? SO_FORCE_DELETE : SO_DELETE;
    else if (strcmp(action, "backup") == 0) op = SO_BACKUP;
    else {
        rc = serr_set(&e, SE_NOTFOUND,
                      "no action \"%s\" (drain, activate, standby, delete, backup)", action);
        goto out;
    }
    if ((force && op != SO_DRAIN && op != SO_STANDBY && op != SO_FORCE_DELETE) || (grace && op != SO_DRAIN && op != SO_STANDBY)) {
        rc = serr_set(&e, SE_INVAL, "%s takes no %s", action, force ? "--force" : "--grace-period");
        goto out;
    }
    if (!name_valid(name, STAMP_NAME_MAX)) {
        rc = serr_set(&e, SE_INVAL, "\"%s\" is not a valid stamp name", name);
        goto out;
    }
    stamp_action_req aq = {.name = name, .action = action, .op = op, .force = force,
                           .skip_fleet = skip_fleet, .grace_ms = grace, .user = rq->user,
                           .dry_run = rq->dry_run};
    json_t *answer = NULL;
    int status = 0;
    rc = stamp_action_run(c, &aq, &answer, &status, &e);
    if (rc == 0) api_json(rs, status, answer);
out:
    if (rc) api_error_serr(rs, &e);
    /* The audit operation is a label people filter on: never cut.  action
     * comes from the path; one too long for it is none of the verbs (the
     * request was refused), and is audited as such. */
    char opname[48];
    if (str_fmt(opname, sizeof(opname), NULL, "operation", "%s%s", action,
                force ? " --force" : "") != 0)
        str_copy(opname, sizeof(opname), "(unknown action)");
    if (!rq->dry_run) api_audit(a, rq, opname, "Stamp", name, rc, &e, NULL);
    return rc;
}

int h_stamps_action(api *a, api_req *rq, api_resp *rs) {
    return stamp_action(a, rq, rs, rq->params[0], rq->params[1]);
}

int h_stamps_delete(api *a, api_req *rq, api_resp *rs) {
    return stamp_action(a, rq, rs, rq->params[0], "delete");
}

/* ---- restore (stamp/restore.c): hashing a backup is slow work, so it runs
 * on the job pool with the connection suspended; the job writes the audit
 * entry (whether or not the client still waits). ---- */

typedef struct restore_call {
    ctl_ctx *c;
    char name[RES_NAME_MAX], as[RES_NAME_MAX], backup[64];
    bool has_as, has_backup, dry_run;
    char user[128], tenant[128];
} restore_call;

static int restore_job(void *arg, json_t **result, serr *e) {
    restore_call *k = arg;
    stamp_restore_req q = {.name = k->name, .as = k->has_as ? k->as : NULL,
                           .backup = k->has_backup ? k->backup : NULL, .user = k->user,
                           .dry_run = k->dry_run};
    json_t *answer = NULL;
    int status = 0;
    int rc = stamp_restore(k->c, &q, &answer, &status, e);
    if (rc == 0) *result = json_pack("{s:i,s:o}", "status", status, "object", answer);
    if (!k->dry_run) {
        json_t *d = json_pack("{s:s?,s:s?}", "as", q.as, "backup", q.backup);
        store_audit au = {.user = k->user, .tenant = k->tenant, .operation = "restore",
                          .kind = "Stamp", .name = k->name,
                          .result = rc == 0 ? "ok" : e->msg[0] ? e->msg : se_text(rc), .detail = d};
        store_audit_add(k->c->st, &au, NULL);
        json_decref(d);
    }
    return rc;
}

static void restore_finish(api *a, api_req *rq, job_result *res, void *farg, api_resp *rs) {
    (void)a, (void)rq, (void)farg;
    if (res->rc) {
        api_error(rs, res->rc, "%s", res->message);
        return;
    }
    json_t *obj = json_object_get(res->result, "object");
    api_json(rs, (int)jint(res->result, "status", 201), json_incref(obj));
}

int h_stamps_restore(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"as", "backup", NULL};
    static atomic_uint_fast64_t seq;
    serr e = {0};
    const char *name = rq->params[0];
    json_t *b = rq->body;
    int rc = 0;
    if (b && (rc = json_check_keys(b, "body", keys, &e))) goto refused;
    json_t *as = json_object_get(b, "as"), *bk = json_object_get(b, "backup");
    if ((as && !json_is_string(as)) || (bk && !json_is_string(bk))) {
        rc = serr_set(&e, SE_INVAL, "body.as and body.backup: must be strings");
        goto refused;
    }
    if (!name_valid(name, STAMP_NAME_MAX)) {
        rc = serr_set(&e, SE_INVAL, "\"%s\" is not a valid stamp name", name);
        goto refused;
    }
    if (as && !name_valid(json_string_value(as), STAMP_NAME_MAX)) {
        rc = serr_set(&e, SE_INVAL, "body.as: \"%s\" is not a valid stamp name", json_string_value(as));
        goto refused;
    }
    if (bk && !name_valid(json_string_value(bk), 47)) {
        rc = serr_set(&e, SE_INVAL, "body.backup: \"%s\" is not a backup id", json_string_value(bk));
        goto refused;
    }
    restore_call *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        rc = serr_set(&e, SE_NOMEM, "out of memory");
        goto refused;
    }
    k->c = api_ctx(a);
    k->dry_run = rq->dry_run;
    str_copy(k->name, sizeof(k->name), name);
    k->has_as = as && str_copy(k->as, sizeof(k->as), json_string_value(as));
    k->has_backup = bk && str_copy(k->backup, sizeof(k->backup), json_string_value(bk));
    str_copy(k->user, sizeof(k->user), rq->user ? rq->user : "");
    str_copy(k->tenant, sizeof(k->tenant), rq->tenant ? rq->tenant : "");
    /* A key of its own per request: two restores never share an answer. */
    char key[JOBS_KEY_MAX];
    snprintf(key, sizeof(key), "Stamp/%s/restore-request/%llu", name,
             (unsigned long long)atomic_fetch_add(&seq, 1));
    return api_run_job(a, rq, rs, key, restore_job, k, free, restore_finish, NULL, NULL);
refused:
    api_error_serr(rs, &e);
    if (!rq->dry_run) api_audit(a, rq, "restore", "Stamp", name, rc, &e, NULL);
    return rc;
}

/* ---- manifests ---- */

typedef int (*validate_fn)(json_t *spec, serr *e);

/* The parsed forms are large (tens of KiB): on the heap, not an API
 * thread's stack. */
static int validate_template(json_t *spec, serr *e) {
    tpl *t = malloc(sizeof(*t));
    if (t == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = tpl_parse(spec, t, e);
    free(t);
    return rc;
}

static int validate_healthcheck(json_t *spec, serr *e) {
    hc_set *set = malloc(sizeof(*set));
    if (set == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = hc_parse(spec, set, e);
    free(set);
    return rc;
}

static int validate_autoscaler(json_t *spec, serr *e) {
    as_spec *sp = malloc(sizeof(*sp));
    if (sp == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = as_spec_parse(spec, sp, e);
    free(sp);
    return rc;
}

static const struct {
    const char *kind;
    validate_fn validate;
} kinds[] = {
    {"StampTemplate", validate_template},
    {"StampHealthCheck", validate_healthcheck},
    {"StampAutoscaler", validate_autoscaler},
    {OBS_KIND, obs_validate},
};

/* Long: the kubectl apply contract (create or update, dry run, server-side
 * validation per kind) in one place. */
int h_apply(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    static const char *const mkeys[] = {"name", "labels", "annotations", "namespace", NULL};
    ctl_ctx *c = api_ctx(a);
    serr e = {0};
    json_t *m = rq->body;
    resource r;
    resource_init(&r);
    const char *kind = json_string_value(json_object_get(m, "kind"));
    const char *name = json_string_value(json_object_get(json_object_get(m, "metadata"), "name"));
    int rc;
    const char *result = "created";
    validate_fn validate = NULL;
    if (m == NULL) {
        rc = serr_set(&e, SE_INVAL, "empty manifest");
        goto out;
    }
    if ((rc = json_check_keys(m, "manifest", keys, &e))) goto out;
    for (size_t i = 0; kind && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].kind, kind) == 0) validate = kinds[i].validate;
    if (validate == NULL) {
        rc = serr_set(&e, SE_INVAL,
                      "kind: \"%s\" is not one this server applies (StampTemplate, StampHealthCheck, "
                      "StampAutoscaler, ObservabilityPlatform)",
                      kind ? kind : "");
        goto out;
    }
    /* A platform's manifest says which API it is written for; the stamp
     * kinds have always been taken whatever their apiVersion said. */
    bool is_obs = strcmp(kind, OBS_KIND) == 0;
    const char *apiv = json_string_value(json_object_get(m, "apiVersion"));
    if (is_obs && (apiv == NULL || strcmp(apiv, OBS_API_VERSION) != 0)) {
        rc = serr_set(&e, SE_INVAL, "apiVersion: \"%s\" is not the one of %s (" OBS_API_VERSION ")",
                      apiv ? apiv : "", OBS_KIND);
        goto out;
    }
    json_t *md = json_object_get(m, "metadata");
    if (!json_is_object(md)) {
        rc = serr_set(&e, SE_INVAL, "metadata: required mapping");
        goto out;
    }
    if ((rc = json_check_keys(md, "metadata", mkeys, &e))) goto out;
    if (name == NULL || !name_valid(name, 63)) {
        rc = serr_set(&e, SE_INVAL, "metadata.name: \"%s\" must be 1-63 lowercase letters, digits and '-'",
                      name ? name : "");
        goto out;
    }
    json_t *labels = json_object_get(md, "labels"), *ann = json_object_get(md, "annotations");
    if ((labels && !json_is_object(labels)) || (ann && !json_is_object(ann))) {
        rc = serr_set(&e, SE_INVAL, "metadata.labels and metadata.annotations must be mappings");
        goto out;
    }
    json_t *spec = json_object_get(m, "spec");
    if (is_obs && !json_is_object(spec)) {
        rc = serr_set(&e, SE_INVAL, "spec: required mapping (components, ...)");
        goto out;
    }
    if ((rc = validate(spec, &e))) goto out;
    bool is_tpl = strcmp(kind, "StampTemplate") == 0;
    /* A platform paused by `stampctl platform pause` stays paused through
     * an apply whose manifest does not say (an upgrade while paused), as
     * kubectl keeps a field a manifest never set. */
    bool says_paused = is_obs && json_object_get(spec, "paused") != NULL;
    for (int attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
        resource_free(&r);
        rc = store_get(c->st, kind, name, &r, &e);
        if (rc == SE_NOTFOUND) {
            resource_init(&r);
            /* kind is one of kinds[] and name passed name_valid(63): both fit. */
            bool fits = str_copy(r.kind, sizeof(r.kind), kind) && str_copy(r.name, sizeof(r.name), name);
            assert(fits);
            (void)fits;
            json_decref(r.spec);
            r.spec = json_deep_copy(spec);
            if (labels) json_object_update(r.labels, labels);
            if (ann) json_object_update(r.annotations, ann);
            if (is_tpl && (rc = stamp_template_revisions_apply(c, &r, spec, true, rq->user, &e)))
                goto out;
            if (rq->dry_run) {
                rc = 0;
                goto out;
            }
            store_event ev = {.type = "Normal", .reason = "Applied", .message = rq->user};
            rc = store_create(c->st, &r, &ev, &e);
            if (rc == SE_EXISTS) continue;
            goto out;
        }
        if (rc) goto out;
        if (is_obs && r.deletion_ms > 0) {
            rc = serr_set(&e, SE_PHASE,
                          "platform %s is being deleted (its components are being uninstalled); "
                          "apply it again once it is gone (stampctl delete platform %s --wait)",
                          name, name);
            goto out;
        }
        if (is_obs && !says_paused) {
            json_t *was = json_object_get(r.spec, "paused");
            if (was) json_object_set(spec, "paused", was);
            else json_object_del(spec, "paused");
        }
        if (json_equal(r.spec, spec) && (!labels || json_equal(r.labels, labels))) {
            result = "unchanged";
            goto out;
        }
        /* A template's changed spec is a new revision: recorded in its
         * status by the same write (stamp/revisions.h).  An equal spec is
         * kept as stored, so the generation (the revision) stays. */
        if (!json_equal(r.spec, spec)) {
            if (is_tpl && (rc = stamp_template_revisions_apply(c, &r, spec, false, rq->user, &e)))
                goto out;
            json_decref(r.spec);
            r.spec = json_deep_copy(spec);
        }
        if (labels) {
            json_decref(r.labels);
            r.labels = json_deep_copy(labels);
        }
        if (ann) json_object_update(r.annotations, ann);
        result = "configured";
        if (rq->dry_run) goto out;
        store_event ev = {.type = "Normal", .reason = "Applied", .message = rq->user};
        rc = store_update(c->st, &r, &ev, &e);
        if (rc == SE_CONFLICT) continue;
        goto out;
    }
out:
    /* A controller of the kind (the autoscaler) looks at the change now. */
    if (rc == 0 && !rq->dry_run && kind &&
        (strcmp(kind, "StampAutoscaler") == 0 || strcmp(kind, OBS_KIND) == 0))
        ctl_enqueue(c, kind, name);
    if (rc) api_error_serr(rs, &e);
    else
        api_json(rs, 200, json_pack("{s:s,s:s,s:s,s:o,s:b}", "kind", kind, "name", name, "result",
                                    result, "resource",
                                    strcmp(kind, OBS_KIND) == 0 ? api_platform_json(&r)
                                                                : resource_to_json(&r),
                                    "dryRun", rq->dry_run));
    if (!rq->dry_run) api_audit(a, rq, "apply", kind ? kind : "", name, rc, &e, NULL);
    resource_free(&r);
    return rc;
}

static int collect(const resource *r, void *arg) {
    json_array_append_new(arg, resource_to_json(r));
    return json_array_size(arg) >= 10000;
}

/* The manifest kinds apply stores (StampTemplate, StampHealthCheck): their
 * list and one of them, in the shape get -o yaml prints and apply reads. */
static int manifest_list(api *a, api_resp *rs, const char *kind, const char *list_kind) {
    json_t *items = json_array();
    serr e = {0};
    if (store_list(api_ctx(a)->st, kind, NULL, collect, items, &e) != 0) {
        json_decref(items);
        return api_error_serr(rs, &e);
    }
    return api_json(rs, 200, json_pack("{s:s,s:o}", "kind", list_kind, "items", items));
}

static int manifest_get(api *a, api_req *rq, api_resp *rs, const char *kind, const char *what) {
    if (!name_valid(rq->params[0], 63)) return api_error(rs, SE_INVAL, "bad %s name", what);
    resource r;
    resource_init(&r); /* allocates: only once nothing can return early */
    serr e = {0};
    int rc = store_get(api_ctx(a)->st, kind, rq->params[0], &r, &e);
    if (rc) api_error_serr(rs, &e);
    else api_json(rs, 200, resource_to_json(&r));
    resource_free(&r);
    return rc;
}

int h_templates_list(api *a, api_req *rq, api_resp *rs) {
    return manifest_list(a, rs, "StampTemplate", "StampTemplateList");
}

/* ?revision=N: the template as it was at revision N (its current metadata
 * and status, that revision's spec, metadata.generation N). */
int h_templates_get(api *a, api_req *rq, api_resp *rs) {
    const char *q = api_query(rq, "revision");
    if (q == NULL) return manifest_get(a, rq, rs, "StampTemplate", "template");
    if (!name_valid(rq->params[0], 63)) return api_error(rs, SE_INVAL, "bad template name");
    int64_t rev;
    if (parse_i64(q, 1, INT64_MAX, &rev) != 0)
        return api_error(rs, SE_INVAL, "revision: \"%.32s\" is not an integer >= 1", q);
    ctl_ctx *c = api_ctx(a);
    serr e = {0};
    json_t *spec = NULL;
    int64_t got = 0;
    int rc = stamp_template_revision(c, rq->params[0], rev, &spec, &got, &e);
    resource r;
    resource_init(&r);
    if (rc == 0) rc = store_get(c->st, "StampTemplate", rq->params[0], &r, &e);
    if (rc) {
        api_error_serr(rs, &e);
    } else {
        json_t *o = resource_to_json(&r);
        json_object_set(o, "spec", spec);
        json_object_set_new(json_object_get(o, "metadata"), "generation", json_integer(got));
        api_json(rs, 200, o);
    }
    json_decref(spec);
    resource_free(&r);
    return rc;
}

int h_templates_revisions(api *a, api_req *rq, api_resp *rs) {
    if (!name_valid(rq->params[0], 63)) return api_error(rs, SE_INVAL, "bad template name");
    serr e = {0};
    json_t *o = NULL;
    if (stamp_template_revisions_list(api_ctx(a), rq->params[0], &o, &e) != 0)
        return api_error_serr(rs, &e);
    return api_json(rs, 200, o);
}

int h_healthchecks_list(api *a, api_req *rq, api_resp *rs) {
    return manifest_list(a, rs, "StampHealthCheck", "StampHealthCheckList");
}

int h_healthchecks_get(api *a, api_req *rq, api_resp *rs) {
    return manifest_get(a, rq, rs, "StampHealthCheck", "health check");
}

int h_autoscalers_list(api *a, api_req *rq, api_resp *rs) {
    return manifest_list(a, rs, "StampAutoscaler", "StampAutoscalerList");
}

int h_autoscalers_get(api *a, api_req *rq, api_resp *rs) {
    return manifest_get(a, rq, rs, "StampAutoscaler", "autoscaler");
}

static int wake_autoscaler(const resource *r, void *arg) {
    ctl_enqueue(arg, "StampAutoscaler", r->name);
    return 0;
}

/* Deleting an autoscaler stops it: nothing it started is undone (its
 * stamps stay as they are), as deleting an HPA leaves its pods. */
int h_autoscalers_delete(api *a, api_req *rq, api_resp *rs) {
    if (!name_valid(rq->params[0], 63)) return api_error(rs, SE_INVAL, "bad autoscaler name");
    ctl_ctx *c = api_ctx(a);
    serr e = {0};
    resource r;
    resource_init(&r);
    int rc = store_get(c->st, "StampAutoscaler", rq->params[0], &r, &e);
    if (rc == 0 && !rq->dry_run) rc = store_delete(c->st, "StampAutoscaler", r.name, r.resource_version, &e);
    /* One it overlapped may act now: the others look again. */
    if (rc == 0 && !rq->dry_run) store_list(c->st, "StampAutoscaler", NULL, wake_autoscaler, c, NULL);
    if (rc) api_error_serr(rs, &e);
    else {
        json_t *out = resource_to_json(&r);
        if (rq->dry_run) json_object_set_new(out, "dryRun", json_true());
        api_json(rs, 200, out);
    }
    if (!rq->dry_run) api_audit(a, rq, "delete", "StampAutoscaler", rq->params[0], rc, &e, NULL);
    resource_free(&r);
    return rc;
}

int h_audit(api *a, api_req *rq, api_resp *rs) {
    json_t *items;
    serr e = {0};
    int64_t limit = 100;
    const char *l = api_query(rq, "limit");
    if (l && parse_i64(l, 1, 10000, &limit) != 0) return api_error(rs, SE_INVAL, "limit: 1..10000");
    if (store_audit_list(api_ctx(a)->st, api_query(rq, "kind"), api_query(rq, "name"), (int)limit,
                         &items, &e) != 0)
        return api_error_serr(rs, &e);
    return api_json(rs, 200, json_pack("{s:s,s:o}", "kind", "AuditList", "items", items));
}

/* ---- /metrics, and the stamps' replicas for Prometheus ---- */

int h_metrics(api *a, api_req *rq, api_resp *rs) {
    sbuf b;
    serr e = {0};
    sbuf_init(&b, 8u << 20);
    metrics_render(&b);
    /* The gauges of the stamps, from the store now (stamp/prom.h).  A
     * store that does not answer fails the scrape: Prometheus then says
     * the target is down rather than seeing zero stamps. */
    if (stamp_prom_render(api_ctx(a), &b, &e) != 0) {
        sbuf_free(&b);
        return api_error_serr(rs, &e);
    }
    rs->status = 200;
    rs->text = b.data ? b.data : strdup("");
    rs->content_type = "text/plain; version=0.0.4";
    return 0;
}

int h_prometheus_targets(api *a, api_req *rq, api_resp *rs) {
    serr e = {0};
    json_t *o;
    if (stamp_prom_targets(api_ctx(a), &o, &e)) return api_error_serr(rs, &e);
    return api_json(rs, 200, o);
}
