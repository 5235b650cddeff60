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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "core/naming.h"
#include "core/stamp_fsm.h"
#include "core/template.h"
#include "health/health.h"
#include "reconcile/phase.h"
#include "stamp/intent.h"
#include "stamp/prom.h"
#include "stamp/stamp_ctl.h"
#include "traffic/traffic.h"
#include "util/metrics.h"
#include "util/util.h"

#define UPDATE_RETRIES 8

static bool param_name_ok(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

static int check_params(json_t *p, serr *e) {
    if (p == NULL) return 0;
    if (!json_is_object(p) || json_object_size(p) > 32)
        return serr_set(e, SE_INVAL, "parameters: must be a mapping of at most 32 entries");
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
        if (!param_name_ok(k))
            return serr_set(e, SE_INVAL, "parameters.%s: names are letters, digits and '_'", k);
        if (!(json_is_string(v) && json_string_length(v) <= 400) && !json_is_integer(v))
            return serr_set(e, SE_INVAL, "parameters.%s: must be a string (400 chars max) or integer", k);
    }
    return 0;
}

static const char *body_str(json_t *b, const char *k) {
    return json_string_value(json_object_get(b, k));
}

/* What a dry run answers, as kubectl's server-side dry run does: the object
 * as it would be stored, the same shape as the real call's answer (so a
 * client reads both alike), with "dryRun": true, the operation and the
 * phase change it would start.  Status 200, or 201 for a stamp it would
 * create (as the real call and Kubernetes answer).  Nothing is written,
 * enqueued or audited: a dry run changes nothing, so the audit log (a
 * record of changes) does not list it, as Kubernetes' does not. */
static json_t *dry_answer(const char *op, json_t *object, const char *from, const char *to) {
    json_object_set_new(object, "dryRun", json_true());
    json_object_set_new(object, "operation", json_string(op));
    if (from || to)
        json_object_set_new(object, "transition", json_pack("{s:s?,s:s?}", "from", from, "to", to));
    return object;
}

/* The phase an accepted operation leads to from phase (its first step). */
static int planned_phase(int op, int phase) {
    switch (op) {
    case SO_DRAIN:
    case SO_STANDBY: return SP_DRAINING;
    case SO_ACTIVATE: return SP_ACTIVE;
    case SO_DELETE: return phase == SP_ACTIVE || phase == SP_DRAINING ? SP_DRAINING : SP_DELETING;
    case SO_FORCE_DELETE: return SP_DELETING;
    default: return phase;
    }
}

/* Long: validate the body field by field, then one optimistic create-or-
 * redeploy loop; the checks read best next to the fields they guard. */
int h_stamps_create(api *a, api_req *rq, api_resp *rs) {
    static const char *const keys[] = {"region", "stampId", "template", "parameters", NULL};
    ctl_ctx *c = api_ctx(a);
    serr e = {0};
    resource tr, r;
    resource_init(&tr);
    resource_init(&r);
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
    if (!name_valid(tname, 63)) {
        rc = serr_set(&e, SE_INVAL, "template \"%s\" is not a valid name", tname);
        goto out;
    }
    if ((rc = store_get(c->st, "StampTemplate", tname, &tr, &e))) {
        if (rc == SE_NOTFOUND)
            serr_set(&e, SE_NOTFOUND, "template %s not found (stampctl apply -f it first)", tname);
        goto out;
    }
    tpl t;
    if ((rc = tpl_parse(tr.spec, &t, &e))) goto out;
    const char *prefix = t.name_prefix ? t.name_prefix : c->cfg->name_prefix;
    if ((rc = stamp_name_build(prefix, region, sid, name, sizeof(name), &e))) goto out;
    char nid[32];
    stamp_id_normalize(sid, nid, sizeof(nid), NULL);

    for (int attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
        resource_free(&r);
        rc = store_get(c->st, "Stamp", name, &r, &e);
        if (rc == SE_NOTFOUND) {
            resource_init(&r);
            str_copy(r.kind, sizeof(r.kind), "Stamp");
            bool fits = str_copy(r.name, sizeof(r.name), name); /* at most STAMP_NAME_MAX */
            assert(fits);
            (void)fits;
            json_object_set_new(r.labels, "region", json_string(region));
            json_object_set_new(r.labels, "template", json_string(tname));
            json_object_set_new(r.spec, "region", json_string(region));
            json_object_set_new(r.spec, "regionCode", json_string(region_code(region)));
            json_object_set_new(r.spec, "stampId", json_string(nid));
            json_object_set_new(r.spec, "template", json_string(tname));
            json_object_set_new(r.spec, "templateSpec", json_deep_copy(tr.spec));
            json_object_set_new(r.spec, "parameters",
                                json_object_get(b, "parameters")
                                    ? json_deep_copy(json_object_get(b, "parameters"))
                                    : json_object());
            stamp_intent in = {.desired = SD_ACTIVE};
            stamp_intent_emit(&in, r.spec);
            phase_init(&stamp_fsm, &r, SP_CREATING);
            json_object_set_new(r.status, "attempt", json_integer(1));
            json_object_set_new(r.status, "creatingSinceMs", json_integer(now_ms()));
            if (rq->dry_run) {
                rc = 0;
                api_json(rs, 201, dry_answer("deploy", resource_to_json(&r), NULL, "Creating"));
                goto out;
            }
            char msg[256]; /* an event message, for people: a cut is harmless */
            str_fmt_cut(msg, sizeof(msg), "deploy requested by %s: region %s, template %s", rq->user,
                        region, tname);
            store_event ev = {.type = "Normal", .reason = "DeployRequested", .message = msg};
            rc = store_create(c->st, &r, &ev, &e);
            if (rc == SE_EXISTS) continue;
            if (rc == 0) {
                metrics_inc("stamp_transitions_total", "from=\"\",to=\"Creating\"", 1);
                ctl_enqueue(c, "Stamp", name);
                api_json(rs, 201, resource_to_json(&r));
            }
            goto out;
        }
        if (rc) goto out;
        /* It exists: deploying again is a redeploy, which only a Failed
         * stamp allows. */
        if ((rc = fsm_check_op(&stamp_fsm, name, phase_of(&stamp_fsm, &r), SO_DEPLOY, &e))) goto out;
        stamp_intent in;
        if ((rc = stamp_intent_parse(r.spec, &in, &e))) goto out;
        in.retry++;
        in.desired = SD_ACTIVE;
        stamp_intent_emit(&in, r.spec);
        json_object_set_new(r.spec, "templateSpec", json_deep_copy(tr.spec));
        if (json_object_get(b, "parameters"))
            json_object_set_new(r.spec, "parameters", json_deep_copy(json_object_get(b, "parameters")));
        if (rq->dry_run) {
            api_json(rs, 200, dry_answer("redeploy", resource_to_json(&r), "Failed", "Creating"));
            goto out;
        }
        store_event ev = {.type = "Normal", .reason = "RedeployRequested", .message = rq->user};
        rc = store_update(c->st, &r, &ev, &e);
        if (rc == SE_CONFLICT) continue;
        if (rc == 0) {
            ctl_enqueue(c, "Stamp", name);
            api_json(rs, 200, resource_to_json(&r));
        }
        goto out;
    }
out:
    if (rc) api_error_serr(rs, &e);
    if (!rq->dry_run) {
        json_t *detail = json_pack("{s:s?,s:s?}", "region", body_str(b, "region"), "template",
                                   body_str(b, "template"));
        api_audit(a, rq, "deploy", "Stamp", name, rc, &e, detail);
        json_decref(detail);
    }
    resource_free(&tr);
    resource_free(&r);
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

typedef struct fleet {
    const char *except;
    int active;
    int nregions;
    char regions[64][32];
} fleet;

static int fleet_count(const resource *r, void *arg) {
    fleet *f = arg;
    if (strcmp(r->name, f->except) == 0) return 0;
    const char *phase = json_string_value(json_object_get(r->status, "phase"));
    const char *want = json_string_value(json_object_get(r->spec, "desired"));
    if (phase == NULL || strcmp(phase, "Active") != 0 || (want && strcmp(want, "active") != 0)) return 0;
    f->active++;
    const char *region = json_string_value(json_object_get(r->spec, "region"));
    if (region == NULL) return 0;
    /* Regions are counted by name, so a name is kept whole or not at all:
     * every known region fits (the longest has 18 characters), and a name
     * that does not is no region the rule can count. */
    if (strlen(region) >= sizeof(f->regions[0])) return 0;
    assert(f->nregions >= 0 && f->nregions <= 64);
    for (int i = 0; i < f->nregions; i++)
        if (strcmp(f->regions[i], region) == 0) return 0;
    if (f->nregions < 64) str_copy(f->regions[f->nregions++], sizeof(f->regions[0]), region);
    return 0;
}

/* Taking `name` (Active) out of service must leave Active stamps in at least
 * fleet-min-regions regions, unless forced. */
static int fleet_rule(ctl_ctx *c, const char *name, const char *action, serr *e) {
    int64_t need = c->cfg->fleet_min_regions;
    if (need <= 0) return 0;
    fleet f = {.except = name};
    int rc = store_list(c->st, "Stamp", NULL, fleet_count, &f, e);
    if (rc) return rc;
    if (f.nregions >= need && f.active >= 2) return 0;
    char list[512] = ""; /* for the message only: a cut list still reads */
    size_t o = 0;
    for (int i = 0; i < f.nregions; i++)
        o += str_fmt_cut(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", f.regions[i]);
    return serr_set(e, SE_CONFLICT,
                    "%s %s refused: it would leave %d Active stamp(s) in %d region(s)%s%s%s; the fleet "
                    "rule needs at least 2 Active stamps in %lld different regions (use --force, or "
                    "--skip-fleet-check for a graceful %s)",
                    action, name, f.active, f.nregions, o ? " (" : "", list, o ? ")" : "",
                    (long long)need, action);
}

/* What an operator's verb asks of the stamp, in its intent; the event
 * reason.  A drain request gets a new generation (the controller acts on
 * each once); while Draining it changes the running drain: --force
 * completes it now, a new grace period replaces the limits. */
static const char *intent_apply(stamp_intent *in, int op, int phase, bool force, int64_t grace) {
    int64_t gen = in->drain.generation + 1;
    switch (op) {
    case SO_DRAIN:
    case SO_STANDBY:
        in->desired = SD_STANDBY;
        if (phase == SP_DRAINING) {
            if (force && op == SO_DRAIN) in->drain.force = true;
            if (grace) in->drain.grace_ms = grace;
            in->drain.generation = gen;
        } else {
            in->drain = (stamp_drain_req){.force = force && op == SO_DRAIN, .grace_ms = grace,
                                          .generation = gen};
        }
        return force && op == SO_DRAIN ? "ForceDrainRequested"
               : op == SO_DRAIN       ? "DrainRequested"
                                      : "StandbyRequested";
    case SO_ACTIVATE:
        in->desired = SD_ACTIVE;
        in->activations++;
        return phase == SP_DRAINING ? "DrainCancelRequested" : "ActivateRequested";
    case SO_DELETE:
    case SO_FORCE_DELETE:
        in->desired = SD_DELETED;
        in->delete_force = force;
        if (phase != SP_DRAINING) in->drain = (stamp_drain_req){.force = force, .generation = gen};
        return force ? "ForceDeleteRequested" : "DeleteRequested";
    case SO_BACKUP:
        in->backups++;
        return "BackupRequested";
    }
    return "ActionRequested";
}

/* Long: body and query checks per flag, then one optimistic update loop. */
/* The verbs: drain, activate, standby, delete, backup. */
static int stamp_action(api *a, api_req *rq, api_resp *rs, const char *name, const char *action) {
    static const char *const keys[] = {"force", "gracePeriod", "skipFleetCheck", NULL};
    ctl_ctx *c = api_ctx(a);
    serr e = {0};
    resource r;
    resource_init(&r);
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
    for (int attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
        resource_free(&r);
        if ((rc = store_get(c->st, "Stamp", name, &r, &e))) goto out;
        int phase = phase_of(&stamp_fsm, &r);
        if ((rc = fsm_check_op(&stamp_fsm, name, phase, op, &e))) goto out;
        if (phase == SP_ACTIVE && (op == SO_DRAIN || op == SO_STANDBY || op == SO_DELETE ||
                                   op == SO_FORCE_DELETE) &&
            !force && !skip_fleet && (rc = fleet_rule(c, name, action, &e)))
            goto out;
        stamp_intent in;
        if ((rc = stamp_intent_parse(r.spec, &in, &e))) goto out;
        const char *reason = intent_apply(&in, op, phase, force, grace);
        stamp_intent_emit(&in, r.spec);
        if (rq->dry_run) {
            api_json(rs, 200,
                     dry_answer(action, resource_to_json(&r), fsm_phase_name(&stamp_fsm, phase),
                                fsm_phase_name(&stamp_fsm, planned_phase(op, phase))));
            goto out;
        }
        char msg[256]; /* an event message, for people: a cut is harmless */
        str_fmt_cut(msg, sizeof(msg), "%s%s requested by %s in phase %s", action,
                 force ? " --force" : "", rq->user, fsm_phase_name(&stamp_fsm, phase));
        store_event ev = {.type = "Normal", .reason = reason, .message = msg};
        rc = store_update(c->st, &r, &ev, &e);
        if (rc == SE_CONFLICT) continue;
        if (rc == 0) {
            ctl_enqueue(c, "Stamp", name);
            api_json(rs, 202, resource_to_json(&r));
        }
        goto out;
    }
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
    resource_free(&r);
    return rc;
}

int h_stamps_action(api *a, api_req *rq, api_resp *rs) {
    return stamp_action(a, rq, rs, rq->params[0], rq->params[1]);
}

int h_stamps_delete(api *a, api_req *rq, api_resp *rs) {
    return stamp_action(a, rq, rs, rq->params[0], "delete");
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

static const struct {
    const char *kind;
    validate_fn validate;
} kinds[] = {
    {"StampTemplate", validate_template},
    {"StampHealthCheck", validate_healthcheck},
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
        rc = serr_set(&e, SE_INVAL, "kind: \"%s\" is not one this server applies (StampTemplate, StampHealthCheck)",
                      kind ? kind : "");
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
    if ((rc = validate(spec, &e))) goto out;
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
        if (json_equal(r.spec, spec) && (!labels || json_equal(r.labels, labels))) {
            result = "unchanged";
            goto out;
        }
        json_decref(r.spec);
        r.spec = json_deep_copy(spec);
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
    if (rc) api_error_serr(rs, &e);
    else
        api_json(rs, 200, json_pack("{s:s,s:s,s:s,s:o,s:b}", "kind", kind, "name", name, "result",
                                    result, "resource", resource_to_json(&r), "dryRun",
                                    rq->dry_run));
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

int h_templates_get(api *a, api_req *rq, api_resp *rs) {
    return manifest_get(a, rq, rs, "StampTemplate", "template");
}

int h_healthchecks_list(api *a, api_req *rq, api_resp *rs) {
    return manifest_list(a, rs, "StampHealthCheck", "StampHealthCheckList");
}

int h_healthchecks_get(api *a, api_req *rq, api_resp *rs) {
    return manifest_get(a, rq, rs, "StampHealthCheck", "health check");
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
