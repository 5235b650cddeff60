/*
 * actions.c - what an operator can ask of stamps (deploy, and the verbs
 * drain, standby, activate, delete, backup), in one place for every caller:
 * the API and the autoscaler.  Each checks the phase table, the fleet rule,
 * writes the request into the stamp's intent (the only writer of a
 * stamp's spec), records the event, and wakes the controller.
 */
#include "stamp/actions.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/naming.h"
#include "core/template.h"
#include "reconcile/phase.h"
#include "stamp/intent.h"
#include "stamp/revisions.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

#define UPDATE_RETRIES 8

/* What a dry run answers, as kubectl's server-side dry run does: the object
 * as it would be stored, the same shape as the real call's answer (so a
 * client reads both alike), with "dryRun": true, the operation and the
 * phase change it would start.  Status 200, or 201 for a stamp it would
 * create (as the real call and Kubernetes answer).  Nothing is written,
 * enqueued or audited: a dry run changes nothing, so the audit log (a
 * record of changes) does not list it, as Kubernetes' does not. */
json_t *stamp_dry_answer(const char *op, json_t *object, const char *from, const char *to) {
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

int stamp_deploy(ctl_ctx *c, const stamp_deploy_req *q, char *name, size_t namelen, json_t **answer,
                 int *status, serr *e) {
    const char *region = q->region, *sid = q->stamp_id, *tname = q->tname;
    resource r;
    resource_init(&r);
    json_t *tspec = NULL; /* the spec of the revision deployed */
    int64_t trev = 0;
    tpl *t = malloc(sizeof(*t)); /* tens of KiB: not on the stack */
    int rc;
    if (t == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
        goto done;
    }
    if (q->template_spec) {
        /* A restore: the backed-up stamp's spec, whose revision the
         * template may no longer keep. */
        tspec = json_incref(q->template_spec);
        trev = q->revision;
    } else if ((rc = stamp_template_revision(c, tname, q->revision, &tspec, &trev, e))) {
        goto done;
    }
    if ((rc = tpl_parse(tspec, t, e))) {
        serr_wrap(e, "template %s revision %lld", tname, (long long)trev);
        goto done;
    }
    const char *prefix = t->name_prefix ? t->name_prefix : c->cfg->name_prefix;
    if ((rc = stamp_name_build(prefix, region, sid, name, namelen, e))) goto done;
    char nid[32];
    stamp_id_normalize(sid, nid, sizeof(nid), NULL);

    for (int attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
        resource_free(&r);
        rc = store_get(c->st, "Stamp", name, &r, e);
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
            json_object_set_new(r.spec, "templateSpec", json_deep_copy(tspec));
            json_object_set_new(r.spec, "templateRevision", json_integer(trev));
            json_object_set_new(r.spec, "parameters",
                                q->params
                                    ? json_deep_copy(q->params)
                                    : json_object());
            if (q->replaces) json_object_set_new(r.spec, "replaces", json_string(q->replaces));
            if (q->frontdoor_server)
                json_object_set_new(r.spec, "frontdoorServer", json_string(q->frontdoor_server));
            if (q->restore_from)
                json_object_set_new(r.spec, "restoreFrom", json_deep_copy(q->restore_from));
            stamp_intent in = {.desired = q->standby ? SD_STANDBY : SD_ACTIVE};
            stamp_intent_emit(&in, r.spec);
            phase_init(&stamp_fsm, &r, SP_CREATING);
            json_object_set_new(r.status, "attempt", json_integer(1));
            json_object_set_new(r.status, "creatingSinceMs", json_integer(now_ms()));
            if (q->dry_run) {
                rc = 0;
                *status = 201;
                *answer = (stamp_dry_answer("deploy", resource_to_json(&r), NULL, "Creating"));
                goto done;
            }
            char msg[256]; /* an event message, for people: a cut is harmless */
            str_fmt_cut(msg, sizeof(msg), "deploy requested by %s: region %s, template %s revision %lld",
                        q->user, region, tname, (long long)trev);
            store_event ev = {.type = "Normal", .reason = "DeployRequested", .message = msg};
            rc = store_create(c->st, &r, &ev, e);
            if (rc == SE_EXISTS) continue;
            if (rc == 0) {
                metrics_inc("stamp_transitions_total", "from=\"\",to=\"Creating\"", 1);
                ctl_enqueue(c, "Stamp", name);
                *status = 201;
                *answer = resource_to_json(&r);
            }
            goto done;
        }
        if (rc) goto done;
        if (q->create_only) {
            rc = serr_set(e, SE_EXISTS, "stamp %s already exists (phase %s); this deploy creates a new stamp only",
                          name, fsm_phase_name(&stamp_fsm, phase_of(&stamp_fsm, &r)));
            goto done;
        }
        /* It exists: deploying again is a redeploy, which only a Failed
         * stamp allows. */
        if ((rc = fsm_check_op(&stamp_fsm, name, phase_of(&stamp_fsm, &r), SO_DEPLOY, e))) goto done;
        stamp_intent in;
        if ((rc = stamp_intent_parse(r.spec, &in, e))) goto done;
        in.retry++;
        in.desired = q->standby ? SD_STANDBY : SD_ACTIVE;
        stamp_intent_emit(&in, r.spec);
        json_object_set_new(r.spec, "templateSpec", json_deep_copy(tspec));
        json_object_set_new(r.spec, "templateRevision", json_integer(trev));
        if (q->params)
            json_object_set_new(r.spec, "parameters", json_deep_copy(q->params));
        if (q->dry_run) {
            *status = 200;
                *answer = (stamp_dry_answer("redeploy", resource_to_json(&r), "Failed", "Creating"));
            goto done;
        }
        store_event ev = {.type = "Normal", .reason = "RedeployRequested", .message = q->user};
        rc = store_update(c->st, &r, &ev, e);
        if (rc == SE_CONFLICT) continue;
        if (rc == 0) {
            ctl_enqueue(c, "Stamp", name);
            *status = 200;
                *answer = resource_to_json(&r);
        }
        goto done;
    }
done:
    json_decref(tspec);
    free(t);
    resource_free(&r);
    return rc;
}

int stamp_action_run(ctl_ctx *c, const stamp_action_req *q, json_t **answer, int *status, serr *e) {
    const char *name = q->name, *action = q->action;
    int op = q->op;
    bool force = q->force, skip_fleet = q->skip_fleet;
    int64_t grace = q->grace_ms;
    resource r;
    resource_init(&r);
    int rc = SE_CONFLICT;
    for (int attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
        resource_free(&r);
        if ((rc = store_get(c->st, "Stamp", name, &r, e))) goto done;
        int phase = phase_of(&stamp_fsm, &r);
        if ((rc = fsm_check_op(&stamp_fsm, name, phase, op, e))) goto done;
        if (phase == SP_ACTIVE && (op == SO_DRAIN || op == SO_STANDBY || op == SO_DELETE ||
                                   op == SO_FORCE_DELETE) &&
            !force && !skip_fleet && (rc = fleet_rule(c, name, action, e)))
            goto done;
        stamp_intent in;
        if ((rc = stamp_intent_parse(r.spec, &in, e))) goto done;
        const char *reason = intent_apply(&in, op, phase, force, grace);
        stamp_intent_emit(&in, r.spec);
        if (q->dry_run) {
            *status = 200;
            *answer = (
                     stamp_dry_answer(action, resource_to_json(&r), fsm_phase_name(&stamp_fsm, phase),
                                fsm_phase_name(&stamp_fsm, planned_phase(op, phase))));
            goto done;
        }
        char msg[256]; /* an event message, for people: a cut is harmless */
        str_fmt_cut(msg, sizeof(msg), "%s%s requested by %s in phase %s", action,
                 force ? " --force" : "", q->user, fsm_phase_name(&stamp_fsm, phase));
        store_event ev = {.type = "Normal", .reason = reason, .message = msg};
        rc = store_update(c->st, &r, &ev, e);
        if (rc == SE_CONFLICT) continue;
        if (rc == 0) {
            ctl_enqueue(c, "Stamp", name);
            *status = 202;
            *answer = resource_to_json(&r);
        }
        goto done;
    }
done:
    resource_free(&r);
    return rc;
}

bool stamp_successor_live(const resource *succ, const char *name) {
    if (strcmp(jstr(succ->spec, "replaces", ""), name) != 0) return false;
    int ph = phase_of(&stamp_fsm, succ);
    return ph != SP_DELETING && ph != SP_DELETED && strcmp(jstr(succ->spec, "desired", "active"), "deleted") != 0;
}

/* The recorded successor `now` of `name` is stale (stamp_mark_replaced);
 * 1 stale, 0 live, or an error. */
static int successor_stale(ctl_ctx *c, const char *name, const char *now, serr *e) {
    resource n;
    resource_init(&n);
    int rc = store_get(c->st, "Stamp", now, &n, e);
    if (rc == 0) rc = stamp_successor_live(&n, name) ? 0 : 1;
    else if (rc == SE_NOTFOUND) {
        serr_clear(e);
        rc = 1;
    }
    resource_free(&n);
    return rc;
}

int stamp_mark_replaced(ctl_ctx *c, const char *name, const char *successor, const char *user,
                        bool replace_stale, serr *e) {
    resource r;
    resource_init(&r);
    int rc = SE_CONFLICT;
    for (int attempt = 0; attempt < UPDATE_RETRIES && rc == SE_CONFLICT; attempt++) {
        resource_free(&r);
        if ((rc = store_get(c->st, "Stamp", name, &r, e))) break;
        if ((rc = fsm_check_op(&stamp_fsm, name, phase_of(&stamp_fsm, &r), SO_REPLACE, e))) break;
        const char *now = json_string_value(json_object_get(r.spec, "replacedBy"));
        if (now && strcmp(now, successor) == 0) break; /* rc 0: already recorded */
        char was[RES_NAME_MAX] = "";
        if (now) {
            /* Checked against the version of name read above: the update
             * below conflicts (and all is read again) if name changed. */
            int st = replace_stale ? successor_stale(c, name, now, e) : 0;
            if (st < 0) {
                rc = st;
                break;
            }
            if (st == 0) {
                rc = serr_set(e, SE_CONFLICT, "stamp %s is already being replaced by %s", name, now);
                break;
            }
            str_copy(was, sizeof(was), now);
        }
        json_object_set_new(r.spec, "replacedBy", json_string(successor));
        char msg[256]; /* an event message, for people: a cut is harmless */
        str_fmt_cut(msg, sizeof(msg), "to be replaced by %s%s%s%s (requested by %s)", successor,
                    was[0] ? " (" : "", was, was[0] ? " is gone or leaving)" : "", user);
        store_event ev = {.type = "Normal", .reason = "ReplacementPlanned", .message = msg};
        rc = store_update(c->st, &r, &ev, e);
    }
    if (rc == 0) ctl_enqueue(c, "Stamp", name);
    resource_free(&r);
    return rc;
}
