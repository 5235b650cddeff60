/*
 * controller.c - the StampAutoscaler controller.
 *
 * One reconcile of an autoscaler:
 *   1. pending actions (a decision persisted but not yet carried out when
 *      stampd stopped) are carried out first: each is idempotent (an
 *      activation of a stamp already activating, a deploy of a stamp that
 *      exists, are done already), so a kill -9 mid scale-out never doubles
 *      it;
 *   2. every spec.interval an observation job samples each governed Active
 *      or Draining stamp (processes, replicas' /metrics, front door) into a
 *      bounded in-memory history, and runs the prometheus triggers'
 *      queries; the job's end wakes the autoscaler;
 *   3. the world (every stamp, its phase, each trigger's value from the
 *      history over that trigger's window) goes to as_decide with the state
 *      kept in status; the decision and its actions are written to status
 *      (pendingActions) BEFORE anything is done, then carried out through
 *      stamp/actions.h as user "autoscaler/<name>", then cleared.
 *
 * Status: state (breach timers, last scale times), lastDecision (inputs,
 * action, reason, blocked reason), decisions (the last 10), conditions
 * (AbleToScale, ScalingActive, ScalingLimited), desiredStamps.
 * Events: ScaledOut, ScaledIn, ScaleOutBlocked, ScaleInBlocked (when the
 * reason changes), ActivationFailed, StandbyRetired, ActionFailed.
 */
#include "autoscale/controller.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/decide.h"
#include "autoscale/observe.h"
#include "autoscale/spec.h"
#include "core/stamp_fsm.h"
#include "obs/obs.h"
#include "reconcile/engine.h"
#include "reconcile/jobs.h"
#include "reconcile/phase.h"
#include "rollout/rollout.h"
#include "stamp/actions.h"
#include "util/httpc.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"
#include "util/wallclock.h"

#define KIND "StampAutoscaler"
#define HIST_LEN 48      /* observations kept per stamp */
#define HIST_STAMPS 2048 /* stamps with a history */
#define DECISIONS_KEPT 10
#define ACTION_TRIES 5  /* a pending action that keeps failing is given up */

void as_metrics_register(void) {
    metrics_register("stamp_autoscaler_decisions_total", MT_COUNTER,
                     "Autoscaler evaluations, by autoscaler and action (none, activate, deploy, drain, retire, blocked)");
    metrics_register("stamp_autoscaler_desired_stamps", MT_GAUGE,
                     "Serving stamps the autoscaler wants once its actions are done");
    metrics_register("stamp_autoscaler_trigger_value", MT_GAUGE,
                     "The fleet value of each trigger at the last evaluation, in its base unit");
}

/* ---- the history of observations, per stamp ---- */

typedef struct hist_row {
    char stamp[RES_NAME_MAX];
    int n, next;
    as_observation obs[HIST_LEN];
} hist_row;

static pthread_mutex_t hist_mu = PTHREAD_MUTEX_INITIALIZER;
static hist_row *hist_rows[HIST_STAMPS];
static int hist_n;

static hist_row *hist_find(const char *stamp, bool create) {
    for (int i = 0; i < hist_n; i++)
        if (strcmp(hist_rows[i]->stamp, stamp) == 0) return hist_rows[i];
    if (!create || hist_n == HIST_STAMPS) return NULL;
    hist_row *h = calloc(1, sizeof(*h));
    if (h == NULL) return NULL;
    str_copy(h->stamp, sizeof(h->stamp), stamp);
    hist_rows[hist_n++] = h;
    return h;
}

static void hist_add(const char *stamp, const as_observation *o) {
    pthread_mutex_lock(&hist_mu);
    hist_row *h = hist_find(stamp, true);
    if (h) {
        h->obs[h->next] = *o;
        h->next = (h->next + 1) % HIST_LEN;
        if (h->n < HIST_LEN) h->n++;
    }
    pthread_mutex_unlock(&hist_mu);
}

/* The stamp's values with the latency window given, oldest first. */
static void hist_values(const char *stamp, int64_t window_ms, as_obs_values *out) {
    as_observation *tmp = malloc(sizeof(as_observation) * HIST_LEN);
    int n = 0;
    pthread_mutex_lock(&hist_mu);
    hist_row *h = hist_find(stamp, false);
    if (h && tmp) {
        int start = (h->next - h->n + HIST_LEN) % HIST_LEN;
        for (int i = 0; i < h->n; i++) tmp[n++] = h->obs[(start + i) % HIST_LEN];
    }
    pthread_mutex_unlock(&hist_mu);
    as_obs_values_of(tmp, tmp ? n : 0, window_ms, out);
    free(tmp);
}

/* ---- the observation job ---- */

typedef struct observe_run {
    ctl_ctx *c;
    as_spec *sp;   /* owned copy */
    char name[RES_NAME_MAX];
} observe_run;

static void observe_run_free(void *arg) {
    observe_run *o = arg;
    if (o == NULL) return;
    free(o->sp);
    free(o);
}

static bool governs(const as_spec *sp, const resource *r) {
    const char *tname = json_string_value(json_object_get(r->spec, "template"));
    const char *region = json_string_value(json_object_get(r->spec, "region"));
    if (tname == NULL || region == NULL || strcmp(tname, sp->template_name) != 0) return false;
    if (sp->nregions == 0) return true;
    for (int i = 0; i < sp->nregions; i++)
        if (strcmp(sp->regions[i], region) == 0) return true;
    return false;
}

typedef struct observe_acc {
    observe_run *o;
    int observed;
    as_observation *obs;
} observe_acc;

static int observe_one(const resource *r, void *arg) {
    observe_acc *a = arg;
    int ph = phase_of(&stamp_fsm, r);
    if (!governs(a->o->sp, r) || (ph != SP_ACTIVE && ph != SP_DRAINING)) return 0;
    as_observe(a->o->c, r, a->obs);
    hist_add(r->name, a->obs);
    a->observed++;
    return 0;
}

/* A prometheus trigger's value: the first result of an instant query. */
static json_t *prom_query(ctl_ctx *c, const char *query) {
    if (c->cfg == NULL || c->cfg->prometheus_url[0] == '\0')
        return json_pack("{s:b,s:s}", "ok", 0, "why", "prometheus: no prometheus-url configured");
    /* "platform:NAME": the Prometheus an ObservabilityPlatform installed,
     * wherever its port is today. */
    char base[256];
    serr pe = {0};
    if (obs_prometheus_url(c, c->cfg->prometheus_url, base, sizeof(base), &pe))
        return json_pack("{s:b,s:s+}", "ok", 0, "why", "prometheus: ", pe.msg);
    char *q = httpc_escape(query);
    char *url = NULL;
    size_t len = strlen(base) + (q ? strlen(q) : 0) + 32;
    if (q) url = malloc(len);
    if (url) snprintf(url, len, "%s/api/v1/query?query=%s", base, q);
    free(q);
    if (url == NULL) return json_pack("{s:b,s:s}", "ok", 0, "why", "prometheus: out of memory");
    httpc_req rq = {.url = url, .timeout_ms = c->cfg->probe_timeout_ms, .max_response = 1 << 20};
    long status = 0;
    sbuf body;
    serr e = {0};
    int rc = httpc_do(&rq, &status, &body, &e);
    free(url);
    if (rc != 0) return json_pack("{s:b,s:s+}", "ok", 0, "why", "prometheus: ", e.msg);
    json_t *doc = status == 200 ? json_loadb(body.data, body.len, 0, NULL) : NULL;
    sbuf_free(&body);
    json_t *res = json_object_get(json_object_get(doc, "data"), "result");
    json_t *val = json_array_get(json_object_get(json_array_get(res, 0), "value"), 1);
    const char *txt = json_string_value(val);
    char *end = NULL;
    double v = txt ? strtod(txt, &end) : NAN;
    json_t *out = txt && end != txt && isfinite(v)
                      ? json_pack("{s:b,s:f}", "ok", 1, "v", v)
                      : json_pack("{s:b,s:s}", "ok", 0, "why",
                                  status != 200 ? "prometheus: query refused" : "prometheus: no result");
    json_decref(doc);
    return out;
}

static int observe_job(void *arg, json_t **result, serr *e) {
    observe_run *o = arg;
    observe_acc a = {.o = o, .obs = malloc(sizeof(as_observation))};
    if (a.obs == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = store_list(o->c->st, "Stamp", NULL, observe_one, &a, e);
    free(a.obs);
    if (rc) return rc;
    json_t *prom = json_object();
    for (int d = 0; d < 2; d++) {
        const as_direction *dir = as_spec_dir(o->sp, d);
        for (int i = 0; i < dir->n; i++) {
            if (dir->t[i].metric != AM_PROMETHEUS) continue;
            char key[16];
            snprintf(key, sizeof(key), "%s%d", d == AS_OUT ? "out" : "in", i);
            json_object_set_new(prom, key, prom_query(o->c, dir->t[i].query));
        }
    }
    *result = json_pack("{s:i,s:o,s:I}", "observed", a.observed, "prometheus", prom, "atMs",
                        (json_int_t)now_ms());
    return 0;
}

/* ---- the world ---- */

typedef struct world_acc {
    const as_spec *sp;
    as_stamp *stamps;
    int n;
} world_acc;

/* Each trigger's value; the history is read once per distinct window (the
 * triggers' durations), not once per trigger. */
static void stamp_values(const as_spec *sp, as_stamp *s) {
    int64_t windows[2 * AS_MAX_TRIGGERS];
    as_obs_values *vals = malloc(sizeof(as_obs_values) * 2 * AS_MAX_TRIGGERS);
    int nw = 0;
    if (vals == NULL) return; /* no values: missing, and scale-in blocked */
    for (int d = 0; d < 2; d++) {
        const as_direction *dir = as_spec_dir(sp, d);
        as_sample *out = d == AS_OUT ? s->out : s->in;
        for (int i = 0; i < dir->n; i++) {
            const as_trigger *t = &dir->t[i];
            if (t->metric == AM_PROMETHEUS) continue;
            int64_t w = t->duration_ms > 0 ? t->duration_ms : sp->interval_ms;
            int k = 0;
            while (k < nw && windows[k] != w) k++;
            if (k == nw) {
                windows[nw] = w;
                hist_values(s->name, w, &vals[nw++]);
            }
            out[i].ok = vals[k].have[t->metric];
            out[i].v = vals[k].v[t->metric];
        }
    }
    free(vals);
}

static int world_one(const resource *r, void *arg) {
    world_acc *w = arg;
    if (w->n >= AS_WORLD_MAX) return 1;
    as_stamp *s = &w->stamps[w->n];
    memset(s, 0, sizeof(*s));
    str_copy(s->name, sizeof(s->name), r->name);
    str_copy(s->region, sizeof(s->region), jstr(r->spec, "region", ""));
    str_copy(s->id, sizeof(s->id), jstr(r->spec, "stampId", ""));
    s->phase = as_phase_parse(jstr(r->status, "phase", "Creating"));
    if (s->phase < 0) s->phase = AP_CREATING;
    /* An Active stamp asked to drain is leaving already (as the API's fleet
     * rule sees it). */
    const char *desired = jstr(r->spec, "desired", "active");
    if (s->phase == AP_ACTIVE && strcmp(desired, "active") != 0) s->phase = AP_DRAINING;
    s->governed = governs(w->sp, r);
    s->activating = json_is_object(json_object_get(r->status, "activation")) ||
                    (s->phase == AP_READY && strcmp(desired, "active") == 0 &&
                     json_object_get(r->status, "recoveryHold") == NULL);
    s->held = json_is_object(json_object_get(r->status, "recoveryHold"));
    if (s->phase == AP_READY) s->ready_since_ms = jint(r->status, "phaseSince", 0);
    if (s->governed && (s->phase == AP_ACTIVE || s->phase == AP_DRAINING)) stamp_values(w->sp, s);
    w->n++;
    return 0;
}

static void fleet_values(const as_spec *sp, json_t *prom, as_world *w) {
    for (int d = 0; d < 2; d++) {
        const as_direction *dir = as_spec_dir(sp, d);
        as_fleet_sample *f = d == AS_OUT ? w->fleet_out : w->fleet_in;
        for (int i = 0; i < dir->n; i++) {
            if (dir->t[i].metric != AM_PROMETHEUS) continue;
            char key[16];
            snprintf(key, sizeof(key), "%s%d", d == AS_OUT ? "out" : "in", i);
            json_t *v = json_object_get(prom, key);
            f[i].given = true;
            f[i].ok = json_is_true(json_object_get(v, "ok"));
            f[i].v = json_number_value(json_object_get(v, "v"));
            str_fmt_cut(f[i].why, sizeof(f[i].why), "%s", jstr(v, "why", "prometheus: not queried yet"));
        }
    }
}

/* ---- acting ---- */

static const char *op_word(int act) {
    switch (act) {
    case AA_ACTIVATE: return "activate";
    case AA_DRAIN: return "standby";
    case AA_RETIRE: return "delete";
    default: return "deploy";
    }
}

/* One action, idempotent: already done counts as done. */
static int act_one(ctl_ctx *c, const char *user, const char *tname, json_t *a, serr *e) {
    int act = -1;
    const char *word = jstr(a, "action", "");
    for (int i = 0; i < AA_N; i++)
        if (strcmp(as_act_names[i], word) == 0) act = i;
    const char *stamp = jstr(a, "stamp", "");
    json_t *answer = NULL;
    int status = 0, rc;
    if (act == AA_DEPLOY) {
        resource r;
        resource_init(&r);
        rc = store_get(c->st, "Stamp", stamp, &r, NULL);
        resource_free(&r);
        if (rc == 0) return 0; /* deployed before a restart */
        char name[RES_NAME_MAX];
        stamp_deploy_req q = {.region = jstr(a, "region", ""), .stamp_id = jstr(a, "id", ""),
                              .tname = tname, .user = user};
        rc = stamp_deploy(c, &q, name, sizeof(name), &answer, &status, e);
    } else if (act == AA_ACTIVATE || act == AA_DRAIN || act == AA_RETIRE) {
        int op = act == AA_ACTIVATE ? SO_ACTIVATE : act == AA_DRAIN ? SO_STANDBY : SO_DELETE;
        resource r;
        resource_init(&r);
        if ((rc = store_get(c->st, "Stamp", stamp, &r, e))) {
            resource_free(&r);
            /* Gone (an operator deleted it): nothing left to do. */
            if (rc == SE_NOTFOUND) serr_clear(e);
            return rc == SE_NOTFOUND ? 0 : rc;
        }
        int ph = phase_of(&stamp_fsm, &r);
        const char *desired = jstr(r.spec, "desired", "active");
        bool done = (act == AA_ACTIVATE && (ph == SP_ACTIVE || strcmp(desired, "active") == 0) &&
                     json_object_get(r.status, "recoveryHold") == NULL) ||
                    (act == AA_DRAIN && ph != SP_ACTIVE) ||
                    (act == AA_RETIRE && (ph == SP_DELETING || ph == SP_DELETED));
        resource_free(&r);
        if (done) return 0;
        stamp_action_req q = {.name = stamp, .action = op_word(act), .op = op, .user = user};
        rc = stamp_action_run(c, &q, &answer, &status, e);
    } else {
        return serr_set(e, SE_INVAL, "unknown action %s", word);
    }
    json_decref(answer);
    /* Every change to a stamp is in the audit log, the autoscaler's too. */
    store_audit au = {.user = user, .operation = act == AA_DEPLOY ? "deploy" : op_word(act), .kind = "Stamp",
                      .name = stamp, .result = rc == 0 ? "ok" : e->msg};
    store_audit_add(c->st, &au, NULL);
    return rc;
}

/* ---- the reconcile ---- */

typedef struct asctx {
    ctl_ctx *c;
    resource r;
    as_spec *sp;
    as_decision *d;
    as_stamp *stamps;
    char user[RES_NAME_MAX + 16];
    char prefix[32]; /* new stamps' name prefix: the template's, else name-prefix */
    bool dirty;
} asctx;

static void event(asctx *a, const char *type, const char *reason, const char *msg) {
    store_event ev = {.type = type, .reason = reason, .message = msg};
    store_event_add(a->c->st, KIND, a->r.name, &ev, NULL);
    if (strcmp(type, "Warning") == 0) log_warnx("autoscaler %s: %s: %s", a->r.name, reason, msg);
    else log_info("autoscaler %s: %s: %s", a->r.name, reason, msg);
}

static int save(asctx *a, serr *e) {
    if (!a->dirty) return 0;
    int rc = store_update(a->c->st, &a->r, NULL, e);
    if (rc == 0) a->dirty = false;
    return rc;
}

/* Carry out status.pendingActions, each once; they are cleared only when
 * all are done (a failure leaves the rest for the next reconcile). */
static int carry_out(asctx *a, serr *e) {
    json_t *pend = json_object_get(a->r.status, "pendingActions");
    if (!json_is_array(pend) || json_array_size(pend) == 0) return 0;
    size_t i;
    json_t *x;
    json_array_foreach(pend, i, x) {
        if (json_is_true(json_object_get(x, "done"))) continue;
        serr ae = {0};
        char msg[400];
        if (act_one(a->c, a->user, a->sp->template_name, x, &ae) != 0) {
            /* Tried again at the next reconciles, ACTION_TRIES times in
             * all; an event the first time and when it is given up. */
            int64_t tries = jint(x, "tries", 0) + 1;
            json_object_set_new(x, "tries", json_integer(tries));
            json_object_set_new(x, "error", json_string(ae.msg));
            a->dirty = true;
            if (tries == 1 || tries >= ACTION_TRIES) {
                str_fmt_cut(msg, sizeof(msg), "%s %s: %s%s", jstr(x, "action", ""), jstr(x, "stamp", ""), ae.msg,
                            tries >= ACTION_TRIES ? " (given up)" : "");
                event(a, "Warning", "ActionFailed", msg);
            }
            if (tries >= ACTION_TRIES) json_object_set_new(x, "done", json_true());
            continue;
        }
        json_object_set_new(x, "done", json_true());
        a->dirty = true;
        const char *act = jstr(x, "action", "");
        bool out = strcmp(act, "activate") == 0 || strcmp(act, "deploy") == 0;
        str_fmt_cut(msg, sizeof(msg), "%s %s%s%s: %s", act, jstr(x, "stamp", ""),
                    strcmp(act, "deploy") == 0 ? " in " : "", strcmp(act, "deploy") == 0 ? jstr(x, "region", "") : "",
                    jstr(x, "reason", ""));
        event(a, "Normal", strcmp(act, "retire") == 0 ? "StandbyRetired" : out ? "ScaledOut" : "ScaledIn", msg);
    }
    bool all = true;
    json_array_foreach(pend, i, x) if (!json_is_true(json_object_get(x, "done"))) all = false;
    if (all) {
        json_object_del(a->r.status, "pendingActions");
        a->dirty = true;
    }
    return save(a, e);
}

static void record_decision(asctx *a, json_t *dj) {
    json_t *st = a->r.status;
    json_object_set(st, "lastDecision", dj);
    json_object_set(st, "conditions", json_object_get(dj, "conditions"));
    json_object_set_new(st, "desiredStamps", json_integer(a->d->desired));
    json_t *list = jchild(st, "decisions");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(st, "decisions", list);
    }
    /* The history shows changes: an evaluation like the last is not added. */
    json_t *last = json_array_get(list, json_array_size(list) ? json_array_size(list) - 1 : 0);
    if (last == NULL || strcmp(jstr(last, "reason", ""), jstr(dj, "reason", "")) != 0 ||
        a->d->nactions > 0) {
        char when[40];
        json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:i}", "time",
                                              fmt_time_rfc3339(a->d->now_ms, when, sizeof(when)),
                                              "want", as_want_names[a->d->want], "reason",
                                              jstr(dj, "reason", ""), "actions", a->d->nactions));
        while (json_array_size(list) > DECISIONS_KEPT) json_array_remove(list, 0);
    }
    a->dirty = true;
}

static void note_decision(asctx *a) {
    const as_decision *d = a->d;
    char lbl[RES_NAME_MAX + 64];
    for (int i = 0; i < d->nactions; i++) {
        str_fmt_cut(lbl, sizeof(lbl), "autoscaler=\"%s\",action=\"%s\"", a->r.name, as_act_names[d->actions[i].act]);
        metrics_inc("stamp_autoscaler_decisions_total", lbl, 1);
    }
    if (d->nactions == 0) {
        str_fmt_cut(lbl, sizeof(lbl), "autoscaler=\"%s\",action=\"%s\"", a->r.name, d->block ? "blocked" : "none");
        metrics_inc("stamp_autoscaler_decisions_total", lbl, 1);
    }
    str_fmt_cut(lbl, sizeof(lbl), "autoscaler=\"%s\"", a->r.name);
    metrics_set("stamp_autoscaler_desired_stamps", lbl, d->desired);
    for (int i = 0; i < d->nevals; i++) {
        const as_eval *ev = &d->evals[i];
        if (!ev->has_value) continue;
        str_fmt_cut(lbl, sizeof(lbl), "autoscaler=\"%s\",direction=\"%s\",metric=\"%s\",index=\"%d\"", a->r.name,
                    as_dir_names[ev->dir], as_metric_names[ev->metric], ev->index);
        metrics_set("stamp_autoscaler_trigger_value", lbl, ev->value);
    }
    /* Blocked and failed activations are events when they change. */
    /* An event when what blocks changes (its rule and direction), not at
     * every evaluation: a cooldown's "4s left" is new text every second. */
    char rule[64] = "";
    if (d->block) str_fmt_cut(rule, sizeof(rule), "%s:%s", as_dir_names[d->block_dir], as_block_names[d->block]);
    const char *prev = jstr(a->r.status, "blockedRule", "");
    if (d->block && strcmp(prev, rule) != 0) {
        event(a, "Warning", d->block_dir == AS_OUT ? "ScaleOutBlocked" : "ScaleInBlocked", d->blocked);
        json_object_set_new(a->r.status, "blockedRule", json_string(rule));
    } else if (!d->block && prev[0]) {
        json_object_del(a->r.status, "blockedRule");
    }
    for (int i = 0; i < d->nfailed; i++) {
        char msg[300];
        str_fmt_cut(msg, sizeof(msg), "stamp %s failed to activate: the next scale-out deploys a new stamp",
                    d->activation_failed[i]);
        event(a, "Warning", "ActivationFailed", msg);
    }
}

/* The decision's actions, persisted before any is carried out. */
static void plan(asctx *a) {
    const as_decision *d = a->d;
    json_t *pend = json_array();
    for (int i = 0; i < d->nactions + d->nretire; i++) {
        const as_action *x = i < d->nactions ? &d->actions[i] : &d->retire[i - d->nactions];
        json_array_append_new(pend, json_pack("{s:s,s:s,s:s,s:s,s:s}", "action", as_act_names[x->act], "stamp",
                                              x->stamp, "region", x->region, "id", x->id, "reason",
                                              i < d->nactions ? d->reason : "standby past maxAge"));
    }
    if (json_array_size(pend) > 0) json_object_set_new(a->r.status, "pendingActions", pend);
    else json_decref(pend);
}

typedef struct tname_acc {
    char names[64][AS_TEMPLATE_MAX];
    const char *ptr[64];
    int n;
} tname_acc;

static int tname_one(const resource *r, void *arg) {
    tname_acc *t = arg;
    if (t->n < 64) {
        str_copy(t->names[t->n], sizeof(t->names[0]), r->name);
        t->ptr[t->n] = t->names[t->n];
        t->n++;
    }
    return 0;
}

/* Two autoscalers of one template with a region in common would fight
 * (one's minimum deploys what the other's scale-in drains): the one whose
 * name sorts later refuses to act, and says which it overlaps. */
typedef struct overlap_acc {
    asctx *a;
    as_spec *other;
    char with[RES_NAME_MAX];
} overlap_acc;

static bool regions_meet(const as_spec *x, const as_spec *y) {
    if (x->nregions == 0 || y->nregions == 0) return true; /* "every region of its stamps" */
    for (int i = 0; i < x->nregions; i++)
        for (int j = 0; j < y->nregions; j++)
            if (strcmp(x->regions[i], y->regions[j]) == 0) return true;
    return false;
}

static int overlap_one(const resource *r, void *arg) {
    overlap_acc *o = arg;
    if (strcmp(r->name, o->a->r.name) >= 0 || o->with[0]) return 0;
    serr e = {0};
    if (as_spec_parse(r->spec, o->other, &e) != 0) return 0;
    const char *t = o->other->template_name[0] ? o->other->template_name : o->a->sp->template_name;
    if (strcmp(t, o->a->sp->template_name) == 0 && regions_meet(o->other, o->a->sp))
        str_copy(o->with, sizeof(o->with), r->name);
    return 0;
}

static int overlap_check(asctx *a, serr *e) {
    overlap_acc *o = calloc(1, sizeof(*o));
    as_spec *other = malloc(sizeof(*other));
    int rc = o && other ? 0 : serr_set(e, SE_NOMEM, "out of memory");
    if (rc == 0) {
        o->a = a;
        o->other = other;
        rc = store_list(a->c->st, KIND, NULL, overlap_one, o, e);
        if (rc == 0 && o->with[0])
            rc = serr_set(e, SE_INVAL,
                          "spec: autoscaler %s already governs template %s in these regions; "
                          "two would undo each other's decisions (delete one, or give them different regions)",
                          o->with, a->sp->template_name);
    }
    free(other);
    free(o);
    return rc;
}

/* The decision compares its times with now; they are wall-clock times from
 * the status, whose ages a step of the system clock must not change (a
 * step back would hold every cooldown and trigger duration for as long; a
 * step forward would end them at once).  Each is moved to now less its age
 * as wallclock.h measures it, and back afterwards where the decision kept
 * it; what the decision set is now's. */
static void rebase(int64_t now, int64_t *t) {
    if (*t > 0) *t = now - wall_age_ms(*t);
}

static void unrebase(int64_t *t, int64_t moved, int64_t orig) {
    if (*t == moved) *t = orig;
}

static void decide_steady(asctx *a, as_world *w, as_state *st) {
    int64_t now = wall_stamp_ms();
    as_state orig = *st, moved;
    for (int i = 0; i < AS_MAX_TRIGGERS; i++) {
        rebase(now, &st->out_since_ms[i]);
        rebase(now, &st->in_since_ms[i]);
    }
    rebase(now, &st->last_out_ms);
    rebase(now, &st->last_in_ms);
    for (int i = 0; i < w->n; i++) rebase(now, &a->stamps[i].ready_since_ms);
    moved = *st;
    as_decide(a->sp, w, now, st, st, a->d);
    for (int i = 0; i < AS_MAX_TRIGGERS; i++) {
        unrebase(&st->out_since_ms[i], moved.out_since_ms[i], orig.out_since_ms[i]);
        unrebase(&st->in_since_ms[i], moved.in_since_ms[i], orig.in_since_ms[i]);
    }
    unrebase(&st->last_out_ms, moved.last_out_ms, orig.last_out_ms);
    unrebase(&st->last_in_ms, moved.last_in_ms, orig.last_in_ms);
}

static int evaluate(asctx *a, json_t *prom, serr *e) {
    world_acc wa = {.sp = a->sp, .stamps = a->stamps};
    int rc = store_list(a->c->st, "Stamp", NULL, world_one, &wa, e);
    if (rc) return rc;
    as_world w = {.stamps = a->stamps, .n = wa.n,
                  .fleet_min_regions = (int)a->c->cfg->fleet_min_regions,
                  .name_prefix = a->prefix};
    fleet_values(a->sp, prom, &w);
    as_state st;
    serr se = {0};
    if (as_state_from_json(json_object_get(a->r.status, "state"), &st, &se) != 0)
        memset(&st, 0, sizeof(st));
    decide_steady(a, &w, &st);
    json_object_set_new(a->r.status, "state", as_state_to_json(&st));
    json_t *dj = as_decision_to_json(a->sp, a->d);
    record_decision(a, dj);
    json_decref(dj);
    note_decision(a);
    plan(a);
    json_object_set_new(a->r.status, "lastEvaluationMs", json_integer(wall_stamp_ms()));
    a->dirty = true;
    if ((rc = save(a, e))) return rc;
    return carry_out(a, e);
}

/* A rollout of the template owns its fleet until it ends: the autoscaler
 * holds (decides and acts on nothing) rather than fight it.  1 while it
 * holds, 0 when not, or an error. */
static int rollout_hold(asctx *a, serr *e) {
    char ro[RES_NAME_MAX];
    int rc = ro_running_for(a->c, a->sp->template_name, ro, sizeof(ro), e);
    if (rc < 0) return rc;
    const char *held = jstr(a->r.status, "heldByRollout", "");
    if (rc == 1 && strcmp(held, ro) != 0) {
        char msg[RES_NAME_MAX + 96];
        str_fmt_cut(msg, sizeof(msg), "rollout %s of template %s runs: no scaling until it ends", ro,
                    a->sp->template_name);
        event(a, "Normal", "HeldByRollout", msg);
        json_object_set_new(a->r.status, "heldByRollout", json_string(ro));
        json_object_del(a->r.status, "pendingActions");
        a->dirty = true;
    } else if (rc == 0 && held[0]) {
        json_object_del(a->r.status, "heldByRollout");
        a->dirty = true;
    }
    return rc;
}

static int run(asctx *a, int64_t *requeue_ms, serr *e) {
    int rc;
    if ((rc = as_spec_parse(a->r.spec, a->sp, e))) return serr_wrap(e, "spec");
    /* Between evaluations, with nothing to carry out and no observation
     * under way, a wake-up (another job's end, a resync) has nothing to do:
     * answer before reading the templates and the other autoscalers. */
    int64_t last = jint(a->r.status, "lastEvaluationMs", 0);
    int64_t due = last > 0 ? a->sp->interval_ms - wall_age_ms(last) : 0;
    json_t *obs = jchild(a->r.status, "observation");
    if (due > 0 && json_object_get(obs, "job") == NULL && json_object_get(a->r.status, "pendingActions") == NULL &&
        json_object_get(a->r.status, "lastError") == NULL) {
        *requeue_ms = due;
        return 0;
    }
    tname_acc *t = calloc(1, sizeof(*t));
    if (t == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    rc = store_list(a->c->st, "StampTemplate", NULL, tname_one, t, e);
    if (rc == 0) rc = as_spec_resolve_template(a->sp, t->ptr, t->n, e);
    free(t);
    if (rc) return rc;
    /* New stamps are named as a deploy names them: the template's prefix. */
    resource tr;
    resource_init(&tr);
    str_copy(a->prefix, sizeof(a->prefix), a->c->cfg->name_prefix);
    if (store_get(a->c->st, "StampTemplate", a->sp->template_name, &tr, NULL) == 0) {
        const char *p = jstr(tr.spec, "namePrefix", NULL);
        if (p && *p) str_copy(a->prefix, sizeof(a->prefix), p);
    }
    resource_free(&tr);
    if ((rc = overlap_check(a, e))) return rc;
    int hold = rollout_hold(a, e);
    if (hold < 0) return hold;
    if (hold) {
        *requeue_ms = a->sp->interval_ms;
        return save(a, e);
    }
    /* What a restart left undone comes first; paused, it is dropped. */
    if (a->sp->paused && json_object_get(a->r.status, "pendingActions")) {
        event(a, "Normal", "ActionsDropped", "paused: the decided actions not carried out yet are dropped");
        json_object_del(a->r.status, "pendingActions");
        a->dirty = true;
    }
    if ((rc = carry_out(a, e))) return rc;
    if (due > 0 && json_object_get(obs, "job") == NULL) {
        *requeue_ms = due;
        return save(a, e);
    }
    observe_run *o = calloc(1, sizeof(*o));
    as_spec *copy = malloc(sizeof(*copy));
    if (o == NULL || copy == NULL) {
        free(o);
        free(copy);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    *copy = *a->sp;
    *o = (observe_run){.c = a->c, .sp = copy};
    str_copy(o->name, sizeof(o->name), a->r.name);
    char key[JOBS_KEY_MAX];
    str_fmt_cut(key, sizeof(key), "%s/%s/observe", KIND, a->r.name);
    int state;
    json_t *res = NULL;
    bool changed;
    rc = ctl_job(a->c, obs, key, observe_job, o, observe_run_free, &state, &res, &changed, e);
    if (changed) a->dirty = true;
    if (rc == 0 && state != JOB_DONE) {
        *requeue_ms = a->sp->interval_ms; /* woken when it ends */
        return save(a, e);
    }
    if (rc == 0) rc = evaluate(a, json_object_get(res, "prometheus"), e);
    json_decref(res);
    if (rc == 0) *requeue_ms = a->sp->interval_ms;
    return rc;
}

int as_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    *requeue_ms = CTL_DONE;
    asctx *a = calloc(1, sizeof(*a));
    if (a == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    a->c = c;
    a->sp = calloc(1, sizeof(*a->sp));
    a->d = calloc(1, sizeof(*a->d));
    a->stamps = calloc(AS_WORLD_MAX, sizeof(*a->stamps));
    resource_init(&a->r);
    int rc = a->sp && a->d && a->stamps ? 0 : serr_set(e, SE_NOMEM, "out of memory");
    if (rc == 0) rc = store_get(c->st, KIND, name, &a->r, e);
    if (rc == SE_NOTFOUND) {
        serr_clear(e);
        rc = 0;
    } else if (rc == 0) {
        str_fmt_cut(a->user, sizeof(a->user), "autoscaler/%s", name);
        rc = run(a, requeue_ms, e);
        if (rc == SE_INVAL || rc == SE_NOTFOUND) {
            /* The spec (or its template) is wrong: said in status; the
             * engine stalls it until the spec changes. */
            json_object_set_new(a->r.status, "lastError", json_string(e->msg));
            a->dirty = true;
            serr se = {0};
            save(a, &se);
            rc = SE_INVAL;
        } else if (rc == 0 && json_object_get(a->r.status, "lastError")) {
            json_object_del(a->r.status, "lastError");
            a->dirty = true;
            rc = save(a, e);
        }
    }
    resource_free(&a->r);
    free(a->sp);
    free(a->d);
    free(a->stamps);
    free(a);
    return rc;
}
