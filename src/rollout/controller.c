/*
 * controller.c - the StampRollout controller (rollout.h).
 *
 * One reconcile:
 *   1. a snapshot of the stamps (phase, intent, health, revision);
 *   2. the plan: every Active or Ready stamp of the template that does not
 *      run the revision gets an item (Pending), as long as the rollout runs
 *      (a stamp that appears meanwhile is added);
 *   3. each item takes its next step, in order:
 *        Pending -> Deploying      while fewer than maxSurge are in flight:
 *                                  the replacement's name is chosen and
 *                                  written to status first;
 *        Deploying -> WaitingActive  stamp_mark_replaced(old, new), then
 *                                  stamp_deploy (or adopt the stamp when it
 *                                  exists: a crash after the deploy);
 *        WaitingActive -> Draining  the replacement is Active, healthy and
 *                                  in rotation, and retiring the old one
 *                                  keeps the template's serving stamps at
 *                                  baseline - maxUnavailable or more: the
 *                                  old one is deleted (gracefully: it
 *                                  drains first; the fleet rule applies,
 *                                  and a refusal is waited out, said in the
 *                                  item's message);
 *        Draining -> Retiring       the old stamp is Deleting;
 *        Retiring -> Done           the old stamp is Deleted (or gone).
 *      A Ready old stamp: its replacement is deployed wanting standby
 *      (it never serves); once it is Ready the old one is retired
 *      (Retiring until it is gone).
 *      maxUnavailable > 0 lets that many old stamps be retired while their
 *      replacements are still coming up.
 *   4. the rollout's phase: Aborted, Failed (an item failed: the replacement
 *      went Failed or was not Active within spec.timeout; nothing new
 *      starts, the old stamp keeps serving), Paused, Complete or
 *      Progressing; an event when it changes.
 *
 * Paused or Failed, no stamp is acted on; what was asked before is watched
 * to its end.  Resume (spec.resumes grows) tries each Failed item again in
 * place: a Failed replacement is redeployed under its own name, one still
 * Creating gets a new timeout; never a second replacement.
 *
 * Every change to a stamp goes through stamp/actions.h as user
 * "rollout/<name>" and is in the audit log.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/naming.h"
#include "core/stamp_fsm.h"
#include "reconcile/engine.h"
#include "reconcile/phase.h"
#include "rollout/rollout.h"
#include "stamp/actions.h"
#include "stamp/revisions.h"
#include "util/log.h"
#include "util/util.h"
#include "util/yamljson.h"
#include "util/wallclock.h"

/* The template's live (not Deleted) stamps the rollout acts on: past this
 * bound it refuses to act (a Warning event and phase Failed with the
 * reason) rather than decide on a partial view. */
#define VIEW_MAX 2048
/* Room past the listed stamps for the ones looked up one by one (Deleted
 * old stamps and replacements of the items; a stamp created meanwhile). */
#define VIEW_EXTRA (2 * RO_MAX_ITEMS + 16)
/* A rollout is polled: the stamps it waits for change phase on their own.
 * 200 ms keeps its reaction within a health interval or two (one list of
 * the template's stamps per poll). */
#define POLL_MS 200
#define HELD_POLL_MS 1000
#define ID_TRIES 64

typedef enum ro_iphase { IP_PENDING, IP_DEPLOYING, IP_WAITING, IP_DRAINING, IP_RETIRING, IP_DONE, IP_FAILED, IP_N } ro_iphase;
static const char *const iphase_names[IP_N] = {"Pending", "Deploying", "WaitingActive", "Draining",
                                               "Retiring", "Done", "Failed"};

/* What the rollout needs to know of a stamp. */
typedef struct ro_stamp {
    char name[RES_NAME_MAX];
    char region[32];
    char id[24];
    char desired[16];
    char replaced_by[RES_NAME_MAX];
    char replaces[RES_NAME_MAX];
    char fd_server[RES_NAME_MAX];
    char why[160]; /* a Failed stamp's reason */
    int phase;
    bool of_template, old, healthy, in_rotation;
} ro_stamp;

typedef struct roctx {
    ctl_ctx *c;
    resource r;
    ro_spec sp;
    json_t *rspec; /* the revision's spec */
    char user[RES_NAME_MAX + 16];
    char prefix[32];
    ro_stamp *st; /* the view: x->cap entries, never moved once listed */
    int n, cap;
    bool over;   /* more than VIEW_MAX live stamps of the template */
    int view_rc; /* a store error while looking a stamp up */
    serr view_err;
    bool dirty, hold;
} roctx;

static int iphase_of(json_t *it) {
    const char *p = jstr(it, "phase", "Pending");
    for (int i = 0; i < IP_N; i++)
        if (strcmp(iphase_names[i], p) == 0) return i;
    return IP_PENDING;
}

static void event(roctx *x, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void event(roctx *x, const char *type, const char *reason, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    store_event ev = {.type = type, .reason = reason, .message = msg};
    store_event_add(x->c->st, RO_KIND, x->r.name, &ev, NULL);
    if (strcmp(type, "Warning") == 0) log_warnx("rollout %s: %s: %s", x->r.name, reason, msg);
    else log_info("rollout %s: %s: %s", x->r.name, reason, msg);
}

static int save(roctx *x, serr *e) {
    if (!x->dirty) return 0;
    int rc = store_update(x->c->st, &x->r, NULL, e);
    if (rc == 0) x->dirty = false;
    return rc;
}

static void set_phase(roctx *x, json_t *it, int ph) {
    json_object_set_new(it, "phase", json_string(iphase_names[ph]));
    json_object_set_new(it, "sinceMs", json_integer(now_ms()));
    json_object_del(it, "message");
    x->dirty = true;
}

/* The item's message; an event when it changes (waiting reasons repeat at
 * every reconcile). */
static void item_msg(roctx *x, json_t *it, const char *type, const char *reason, const char *msg) {
    if (strcmp(jstr(it, "message", ""), msg) == 0) return;
    json_object_set_new(it, "message", json_string(msg));
    x->dirty = true;
    event(x, type, reason, "%s: %s", jstr(it, "old", "?"), msg);
}

static void item_fail(roctx *x, json_t *it, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void item_fail(roctx *x, json_t *it, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    set_phase(x, it, IP_FAILED);
    item_msg(x, it, "Warning", "ReplacementFailed", msg);
}

/* ---- the stamps ---- */

static bool is_old(roctx *x, const resource *r) {
    json_t *rev = json_object_get(r->spec, "templateRevision");
    if (json_is_integer(rev)) return json_integer_value(rev) != x->sp.to_revision;
    /* Deployed before revisions were recorded: by what it runs. */
    return !json_equal(json_object_get(r->spec, "templateSpec"), x->rspec);
}

/* The stamp controller writes some flags as true, others as 1. */
static bool truthy(json_t *v) { return json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0); }

static void view_of(roctx *x, const resource *r, ro_stamp *s) {
    memset(s, 0, sizeof(*s));
    str_copy(s->name, sizeof(s->name), r->name);
    str_copy(s->region, sizeof(s->region), jstr(r->spec, "region", ""));
    str_copy(s->id, sizeof(s->id), jstr(r->spec, "stampId", ""));
    str_copy(s->desired, sizeof(s->desired), jstr(r->spec, "desired", "active"));
    str_copy(s->replaced_by, sizeof(s->replaced_by), jstr(r->spec, "replacedBy", ""));
    str_copy(s->replaces, sizeof(s->replaces), jstr(r->spec, "replaces", ""));
    str_copy(s->fd_server, sizeof(s->fd_server), jstr(r->spec, "frontdoorServer", ""));
    str_fmt_cut(s->why, sizeof(s->why), "%s", jstr(r->status, "lastError", ""));
    s->phase = phase_of(&stamp_fsm, r);
    s->of_template = strcmp(jstr(r->spec, "template", ""), x->sp.template_name) == 0;
    s->old = s->of_template && is_old(x, r);
    json_t *hs = json_object_get(r->status, "health");
    s->healthy = truthy(json_object_get(hs, "healthy"));
    s->in_rotation = truthy(json_object_get(hs, "inRotation"));
}

static bool view_grow(roctx *x, int want) {
    if (want <= x->cap) return true;
    int cap = x->cap ? x->cap : 64;
    while (cap < want) cap *= 2;
    ro_stamp *st = realloc(x->st, (size_t)cap * sizeof(*st));
    if (st == NULL) return false;
    x->st = st;
    x->cap = cap;
    return true;
}

/* The template's stamps, filtered while listing: the Deleted ones are
 * looked up one by one when an item names them (view). */
static int snap_one(const resource *r, void *arg) {
    roctx *x = arg;
    if (strcmp(jstr(r->spec, "template", ""), x->sp.template_name) != 0) return 0;
    if (phase_of(&stamp_fsm, r) == SP_DELETED) return 0;
    if (x->n >= VIEW_MAX) {
        x->over = true;
        return 1;
    }
    if (!view_grow(x, x->n + 1)) {
        x->view_rc = serr_set(&x->view_err, SE_NOMEM, "out of memory");
        return 1;
    }
    view_of(x, r, &x->st[x->n++]);
    return 0;
}

/* The stamp now: from the snapshot, else the store (a Deleted one, one
 * created in this reconcile); NULL only when the store has none.  A store
 * error is kept in x->view_rc (the reconcile stops on it: NULL would read
 * as "gone").  The view is sized once after listing, so pointers stay
 * valid for the reconcile. */
static ro_stamp *view(roctx *x, const char *name) {
    if (name == NULL || name[0] == '\0') return NULL;
    for (int i = 0; i < x->n; i++)
        if (strcmp(x->st[i].name, name) == 0) return &x->st[i];
    resource r;
    resource_init(&r);
    ro_stamp *s = NULL;
    serr ge = {0};
    int rc = store_get(x->c->st, "Stamp", name, &r, &ge);
    if (rc == 0 && x->n >= x->cap) {
        rc = serr_set(&ge, SE_LIMIT, "rollout %s: more stamps looked up than its view holds", x->r.name);
    }
    if (rc == 0) {
        s = &x->st[x->n++];
        view_of(x, &r, s);
    } else if (rc != SE_NOTFOUND && x->view_rc == 0) {
        x->view_rc = rc;
        x->view_err = ge;
    }
    resource_free(&r);
    return s;
}

/* A store error met by view(): the reconcile stops (and is retried). */
static int view_failed(roctx *x, serr *e) {
    if (x->view_rc == 0) return 0;
    *e = x->view_err;
    return x->view_rc;
}

/* Serving: Active, meant to stay so, and in the front door's rotation. */
static bool serving(const ro_stamp *s) {
    return s && s->phase == SP_ACTIVE && strcmp(s->desired, "active") == 0 && s->in_rotation;
}

static int serving_count(roctx *x) {
    int n = 0;
    for (int i = 0; i < x->n; i++)
        if (x->st[i].of_template && serving(&x->st[i])) n++;
    return n;
}

static bool gone(const ro_stamp *s) { return s == NULL || s->phase == SP_DELETED; }
static bool leaving(const ro_stamp *s) {
    return gone(s) || s->phase == SP_DELETING || strcmp(s->desired, "deleted") == 0;
}

/* s is a successor of old worth keeping (stamp_successor_live): it
 * replaces old and is not leaving.  Any other stamp of the recorded name
 * (an operator's, a retired or force-deleted replacement) is not. */
static bool successor_live(const ro_stamp *s, const char *old) {
    return s && !leaving(s) && strcmp(s->replaces, old) == 0;
}

/* ---- acting on stamps ---- */

static void audit(roctx *x, const char *op, const char *stamp, int rc, const serr *e) {
    store_audit au = {.user = x->user, .operation = op, .kind = "Stamp", .name = stamp,
                      .result = rc == 0 ? "ok" : e->msg};
    store_audit_add(x->c->st, &au, NULL);
}

/* A graceful delete of s, audited as the rollout's. */
static int ask_delete(roctx *x, ro_stamp *s, serr *e) {
    const char *word = "delete";
    stamp_action_req q = {.name = s->name, .action = word, .op = SO_DELETE, .user = x->user};
    json_t *answer = NULL;
    int status = 0;
    int rc = stamp_action_run(x->c, &q, &answer, &status, e);
    json_decref(answer);
    audit(x, word, s->name, rc, e);
    if (rc == 0) str_copy(s->desired, sizeof(s->desired), "deleted");
    return rc;
}

/* The old stamp's retirement (graceful).  0 when asked (or asked before);
 * 1 when refused for now (the fleet rule, a phase), said in the item. */
static int retire_old(roctx *x, json_t *it, ro_stamp *o, serr *e) {
    if (leaving(o)) return 0;
    serr ae = {0};
    int rc = ask_delete(x, o, &ae);
    if (rc == SE_CONFLICT || rc == SE_PHASE) {
        char msg[SERR_MSG_MAX + 32];
        str_fmt_cut(msg, sizeof(msg), "waiting: %s", ae.msg);
        item_msg(x, it, "Warning", "RetireWaiting", msg);
        return 1;
    }
    if (rc) {
        *e = ae;
        return rc;
    }
    event(x, "Normal", "OldRetiring", "%s: retiring (it drains first); its replacement %s serves",
          o->name, jstr(it, "replacement", "?"));
    return 0;
}

/* A free stamp id in the region: past every id in use there under the
 * template's prefix and those this rollout has recorded, and no stamp of
 * the store (a Deleted record too) has its name. */
static int new_id(roctx *x, const char *region, char *name, size_t namelen, char *id, size_t len, serr *e) {
    char head[64];
    str_fmt_cut(head, sizeof(head), "%s-%s-", x->prefix, region_code(region) ? region_code(region) : "");
    long max = 0;
    for (int i = 0; i < x->n; i++) {
        if (!str_has_prefix(x->st[i].name, head)) continue;
        int64_t v;
        if (parse_i64(x->st[i].name + strlen(head), 0, 9999999, &v) == 0 && v > max) max = (long)v;
    }
    json_t *items = json_object_get(x->r.status, "items"), *it;
    size_t i;
    json_array_foreach(items, i, it) {
        const char *rp = jstr(it, "replacement", "");
        int64_t v;
        if (str_has_prefix(rp, head) && parse_i64(rp + strlen(head), 0, 9999999, &v) == 0 && v > max) max = (long)v;
    }
    for (int t = 1; t <= ID_TRIES; t++) {
        char cand[24];
        str_fmt_cut(cand, sizeof(cand), "%ld", max + t);
        if (stamp_name_build(x->prefix, region, cand, name, namelen, e)) return e->code ? e->code : SE_INVAL;
        resource r;
        resource_init(&r);
        int rc = store_get(x->c->st, "Stamp", name, &r, e);
        resource_free(&r);
        if (rc == 0) continue; /* a Deleted record, or one made meanwhile */
        if (rc != SE_NOTFOUND) return rc;
        serr_clear(e);
        if (stamp_id_normalize(cand, id, len, NULL) != 0) str_copy(id, len, cand);
        return 0;
    }
    return serr_set(e, SE_CONFLICT, "no free stamp id in %s after %ld", region, max);
}

/* Pending -> Deploying: the replacement's name, recorded before anything
 * else.  An old stamp that records a live successor (spec.replaces = it,
 * not leaving: a crash, an aborted rollout's replacement) keeps it; a
 * recorded one that is gone or leaving gets a new one (deploy overwrites
 * the record). */
static int choose(roctx *x, json_t *it, ro_stamp *o, serr *e) {
    char name[RES_NAME_MAX], id[24];
    ro_stamp *rec = view(x, o->replaced_by);
    int rc;
    if ((rc = view_failed(x, e))) return rc;
    if (successor_live(rec, o->name)) {
        str_copy(name, sizeof(name), o->replaced_by);
        char head[64];
        str_fmt_cut(head, sizeof(head), "%s-%s-", x->prefix, region_code(o->region) ? region_code(o->region) : "");
        str_copy(id, sizeof(id), str_has_prefix(name, head) ? name + strlen(head) : "");
    } else if ((rc = new_id(x, o->region, name, sizeof(name), id, sizeof(id), e))) {
        return serr_wrap(e, "naming the replacement of %s", o->name);
    }
    json_object_set_new(it, "replacement", json_string(name));
    json_object_set_new(it, "replacementId", json_string(id));
    set_phase(x, it, IP_DEPLOYING);
    return save(x, e);
}

/* Deploying -> Pending: the recorded name is not a successor to adopt (a
 * stamp of that name that replaces something else, or ours but retired):
 * a new one is chosen at the next step. */
static int rechoose(roctx *x, json_t *it, const char *why, serr *e) {
    char msg[RES_NAME_MAX + 200];
    str_fmt_cut(msg, sizeof(msg), "%s %s: a new replacement is chosen", jstr(it, "replacement", "?"), why);
    json_object_del(it, "replacement");
    json_object_del(it, "replacementId");
    set_phase(x, it, IP_PENDING);
    item_msg(x, it, "Normal", "ReplacementRechosen", msg);
    return save(x, e);
}

/* Deploying -> WaitingActive.  Adopts only a live successor of o (a
 * crash after the deploy); deploys create-only (a stamp of the name made
 * meanwhile is never redeployed). */
static int deploy(roctx *x, json_t *it, ro_stamp *o, bool standby, serr *e) {
    const char *repl = jstr(it, "replacement", "");
    ro_stamp *rp = view(x, repl);
    int rc;
    if ((rc = view_failed(x, e))) return rc;
    if (rp && !successor_live(rp, o->name))
        return rechoose(x, it, strcmp(rp->replaces, o->name) != 0 ? "is another stamp" : "is retired or leaving", e);
    if (strcmp(o->replaced_by, repl) != 0) {
        serr me = {0};
        rc = stamp_mark_replaced(x->c, o->name, repl, x->user, true, &me);
        if (rc == SE_PHASE) {
            char msg[SERR_MSG_MAX + 32];
            str_fmt_cut(msg, sizeof(msg), "waiting: %s", me.msg);
            item_msg(x, it, "Warning", "ReplaceWaiting", msg);
            return 0;
        }
        if (rc == SE_CONFLICT) {
            item_fail(x, it, "%s (a live successor: another rollout's?); abort this one", me.msg);
            return 0;
        }
        if (rc) {
            *e = me;
            return rc;
        }
        str_copy(o->replaced_by, sizeof(o->replaced_by), repl);
    }
    if (rp) {
        event(x, "Normal", "ReplacementAdopted", "%s: %s exists already: adopted, not deployed again", o->name, repl);
    } else {
        /* The revision is looked up at each deploy: one no longer kept
         * fails the item rather than deploying something else. */
        json_t *spec = NULL;
        int64_t rev = 0;
        serr re = {0};
        if (stamp_template_revision(x->c, x->sp.template_name, x->sp.to_revision, &spec, &rev, &re)) {
            item_fail(x, it, "revision %lld: %s", (long long)x->sp.to_revision, re.msg);
            return 0;
        }
        json_decref(spec);
        const char *fd = o->fd_server[0] ? o->fd_server : o->name;
        stamp_deploy_req q = {.region = o->region, .stamp_id = jstr(it, "replacementId", ""),
                              .tname = x->sp.template_name, .user = x->user, .revision = x->sp.to_revision,
                              .replaces = o->name, .frontdoor_server = fd, .create_only = true,
                              .standby = standby};
        char name[RES_NAME_MAX];
        json_t *answer = NULL;
        int status = 0;
        serr de = {0};
        rc = stamp_deploy(x->c, &q, name, sizeof(name), &answer, &status, &de);
        json_decref(answer);
        audit(x, "deploy", repl, rc, &de);
        if (rc == SE_EXISTS) {
            /* Made meanwhile: the next step adopts it or chooses anew. */
            item_msg(x, it, "Normal", "ReplaceWaiting", de.msg);
            return 0;
        }
        if (rc == SE_INVAL || rc == SE_NOTFOUND || rc == SE_PHASE) {
            item_fail(x, it, "deploying %s: %s", repl, de.msg);
            return 0;
        }
        if (rc) {
            *e = de;
            return rc;
        }
        event(x, "Normal", "ReplacementDeployed", "%s: %s deployed in %s (revision %lld%s)", o->name, repl,
              o->region, (long long)x->sp.to_revision, standby ? ", standby" : "");
    }
    set_phase(x, it, IP_WAITING);
    json_object_set_new(it, "deployedMs", json_integer(wall_stamp_ms()));
    return save(x, e);
}

static bool replacement_ready(const ro_stamp *rp) {
    return rp && rp->phase == SP_ACTIVE && strcmp(rp->desired, "active") == 0 && rp->healthy && rp->in_rotation;
}

/* A standby item's replacement is deployed wanting standby: it is up once
 * Ready (it passed its health checks in Creating and never served). */
static bool replacement_up(const ro_stamp *rp, bool standby) {
    if (standby) return rp->phase == SP_READY && strcmp(rp->desired, "standby") == 0;
    return replacement_ready(rp);
}

/* Retiring the old stamp now keeps enough of the template serving. */
static bool capacity_ok(roctx *x, ro_stamp *o) {
    int after = serving_count(x) - (serving(o) ? 1 : 0);
    int64_t floor = jint(x->r.status, "baselineServing", 0) - x->sp.max_unavailable;
    return after >= floor;
}

typedef struct budget {
    int inflight; /* Deploying, WaitingActive, Draining */
    int early;    /* old stamps retired before their replacement is Active */
} budget;

/* Long: one case per item phase, each a check-then-act step. */
static int step(roctx *x, json_t *it, budget *b, serr *e) {
    int ph = iphase_of(it), rc;
    ro_stamp *o = view(x, jstr(it, "old", ""));
    ro_stamp *rp = view(x, jstr(it, "replacement", ""));
    bool standby = json_is_true(json_object_get(it, "standby"));
    if ((rc = view_failed(x, e))) return rc;
    switch (ph) {
    case IP_PENDING:
        if (x->hold || b->inflight >= x->sp.max_surge) return 0;
        if (gone(o) || o->phase == SP_DELETING) {
            set_phase(x, it, IP_DONE);
            item_msg(x, it, "Normal", "NotReplaced", "left the fleet before its turn: nothing to replace");
            return 0;
        }
        if (o->phase != SP_ACTIVE && o->phase != SP_READY) {
            char msg[120];
            str_fmt_cut(msg, sizeof(msg), "waiting: %s is %s", o->name, fsm_phase_name(&stamp_fsm, o->phase));
            item_msg(x, it, "Normal", "ReplaceWaiting", msg);
            return 0;
        }
        if ((rc = choose(x, it, o, e))) return rc;
        b->inflight++;
        /* fall through */
    case IP_DEPLOYING:
        if (x->hold) return 0;
        if (gone(o)) {
            item_fail(x, it, "the old stamp is gone before its replacement was deployed");
            return 0;
        }
        return deploy(x, it, o, standby, e);
    case IP_WAITING: {
        if (rp && rp->phase == SP_FAILED) {
            item_fail(x, it, "replacement %s Failed%s%s; %s keeps serving", rp->name, rp->why[0] ? ": " : "",
                      rp->why, o ? o->name : "the old stamp");
            return 0;
        }
        if (rp == NULL || leaving(rp)) {
            item_fail(x, it, "replacement %s was retired or is gone (resume chooses a new one)", jstr(it, "replacement", "?"));
            return 0;
        }
        if (!replacement_up(rp, standby)) {
            int64_t waited = wall_age_ms(jint(it, "deployedMs", 0));
            if (waited > x->sp.timeout_ms) {
                char t[FMT_DURATION_LEN];
                item_fail(x, it, "replacement %s not %s within %s (it is %s)", rp->name,
                          standby ? "Ready (standby)" : "Active and healthy",
                          fmt_duration(x->sp.timeout_ms, t, sizeof(t)), fsm_phase_name(&stamp_fsm, rp->phase));
                return 0;
            }
            /* maxUnavailable: an old stamp may go before its successor. */
            if (!x->hold && !standby && o && !leaving(o) && b->early < x->sp.max_unavailable && capacity_ok(x, o)) {
                if ((rc = retire_old(x, it, o, e)) < 0) return rc;
                if (rc == 0) b->early++;
            }
            return 0;
        }
        if (json_object_get(it, "activeMs") == NULL) {
            json_object_set_new(it, "activeMs", json_integer(now_ms()));
            x->dirty = true;
            if (standby)
                event(x, "Normal", "ReplacementReady", "%s: %s passed its health checks and is Ready (standby)",
                      o ? o->name : "?", rp->name);
            else
                event(x, "Normal", "ReplacementActive", "%s: %s is Active and healthy", o ? o->name : "?", rp->name);
        }
        if (x->hold) return 0;
        if (standby) {
            /* A standby replaced by a standby: no drain to wait for. */
            if (o && (rc = retire_old(x, it, o, e)) != 0) return rc < 0 ? rc : 0;
            set_phase(x, it, IP_RETIRING);
            b->inflight--;
            return save(x, e);
        }
        if (o && !leaving(o)) {
            if (!capacity_ok(x, o)) {
                char msg[200];
                str_fmt_cut(msg, sizeof(msg), "waiting: retiring %s now would leave fewer than %lld serving stamps",
                            o->name, (long long)(jint(x->r.status, "baselineServing", 0) - x->sp.max_unavailable));
                item_msg(x, it, "Normal", "RetireWaiting", msg);
                return 0;
            }
            if ((rc = retire_old(x, it, o, e)) != 0) return rc < 0 ? rc : 0;
        }
        set_phase(x, it, IP_DRAINING);
        return save(x, e);
    }
    case IP_DRAINING:
        if (gone(o) || o->phase == SP_DELETING) {
            set_phase(x, it, IP_RETIRING);
            b->inflight--;
            return save(x, e);
        }
        /* Asked before a crash, or the drain was cancelled: ask again. */
        if (!x->hold && !leaving(o) && (rc = retire_old(x, it, o, e)) < 0) return rc;
        return 0;
    case IP_RETIRING:
        if (!x->hold && o && !leaving(o) && (rc = retire_old(x, it, o, e)) < 0) return rc;
        if (gone(o) && (!standby || rp)) {
            set_phase(x, it, IP_DONE);
            event(x, "Normal", "Replaced", "%s retired; %s runs revision %lld%s", jstr(it, "old", "?"),
                  jstr(it, "replacement", "?"), (long long)x->sp.to_revision, standby ? " (standby)" : "");
            return save(x, e);
        }
        return 0;
    default: return 0;
    }
}

/* ---- the plan ---- */

static bool in_items(json_t *items, const char *name) {
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        if (strcmp(jstr(it, "old", ""), name) == 0 || strcmp(jstr(it, "replacement", ""), name) == 0) return true;
    }
    return false;
}

static void plan(roctx *x) {
    json_t *items = json_object_get(x->r.status, "items");
    if (!json_is_array(items)) {
        items = json_array();
        json_object_set_new(x->r.status, "items", items);
        x->dirty = true;
    }
    if (json_object_get(x->r.status, "baselineServing") == NULL) {
        json_object_set_new(x->r.status, "baselineServing", json_integer(serving_count(x)));
        json_object_set_new(x->r.status, "startedMs", json_integer(now_ms()));
        x->dirty = true;
    }
    for (int i = 0; i < x->n && json_array_size(items) < RO_MAX_ITEMS; i++) {
        ro_stamp *s = &x->st[i];
        if (!s->old || in_items(items, s->name)) continue;
        bool active = s->phase == SP_ACTIVE && strcmp(s->desired, "active") == 0;
        bool ready = s->phase == SP_READY && strcmp(s->desired, "deleted") != 0;
        if (!active && !ready) continue;
        json_array_append_new(items, json_pack("{s:s,s:s,s:b,s:s,s:I}", "old", s->name, "region", s->region,
                                               "standby", ready, "phase", "Pending", "sinceMs",
                                               (json_int_t)now_ms()));
        x->dirty = true;
    }
}

/* Resume: each Failed item is tried again: its replacement in place (a
 * Failed one redeployed under its own name, one still coming up given a
 * new timeout, one absent from the store deployed), never a second live
 * one; a replacement that is retired, force-deleted or not ours is given
 * up and a new one chosen. */
static int retry_failed(roctx *x, serr *e) {
    json_t *items = json_object_get(x->r.status, "items"), *it;
    size_t i;
    int rc;
    json_array_foreach(items, i, it) {
        if (iphase_of(it) != IP_FAILED) continue;
        const char *repl = jstr(it, "replacement", ""), *old = jstr(it, "old", "");
        ro_stamp *rp = view(x, repl);
        ro_stamp *o = view(x, old);
        if ((rc = view_failed(x, e))) return rc;
        if (o && o->replaced_by[0] && strcmp(o->replaced_by, repl) != 0 && successor_live(view(x, o->replaced_by), old))
            continue; /* another live successor: only an abort helps */
        if ((rc = view_failed(x, e))) return rc;
        if (repl[0] == '\0') {
            set_phase(x, it, IP_PENDING);
        } else if (rp == NULL) {
            set_phase(x, it, IP_DEPLOYING);
        } else if (!successor_live(rp, old)) {
            /* rp->name: repl points into the item's "replacement". */
            event(x, "Normal", "ReplacementRechosen", "%s: %s is retired, gone or not its successor: a new one is chosen",
                  old, rp->name);
            json_object_del(it, "replacement");
            json_object_del(it, "replacementId");
            set_phase(x, it, IP_PENDING);
        } else if (rp->phase == SP_FAILED) {
            bool standby = json_is_true(json_object_get(it, "standby"));
            stamp_deploy_req q = {.region = jstr(it, "region", ""), .stamp_id = jstr(it, "replacementId", ""),
                                  .tname = x->sp.template_name, .user = x->user, .revision = x->sp.to_revision,
                                  .replaces = old, .standby = standby,
                                  .frontdoor_server = o && o->fd_server[0] ? o->fd_server : old};
            char name[RES_NAME_MAX];
            json_t *answer = NULL;
            int status = 0;
            serr de = {0};
            rc = stamp_deploy(x->c, &q, name, sizeof(name), &answer, &status, &de);
            json_decref(answer);
            audit(x, "redeploy", repl, rc, &de);
            if (rc) {
                item_msg(x, it, "Warning", "RetryFailed", de.msg);
                continue;
            }
            rp->phase = SP_CREATING; /* the snapshot is older than the redeploy */
            set_phase(x, it, IP_WAITING);
            json_object_set_new(it, "deployedMs", json_integer(wall_stamp_ms()));
            event(x, "Normal", "ReplacementRedeployed", "%s: %s deployed again (resume)", old, repl);
        } else {
            set_phase(x, it, IP_WAITING);
            json_object_set_new(it, "deployedMs", json_integer(wall_stamp_ms()));
        }
    }
    json_object_set_new(x->r.status, "observedResumes", json_integer(x->sp.resumes));
    x->dirty = true;
    return save(x, e);
}

static void rollout_phase(roctx *x, const char *ph, const char *msg) {
    char was[32]; /* a copy: setting "phase" below frees the stored string */
    str_copy(was, sizeof(was), jstr(x->r.status, "phase", ""));
    if (strcmp(was, ph) != 0 || strcmp(jstr(x->r.status, "message", ""), msg) != 0) {
        json_object_set_new(x->r.status, "phase", json_string(ph));
        json_object_set_new(x->r.status, "message", json_string(msg));
        x->dirty = true;
    }
    if (strcmp(was, ph) != 0) {
        bool warn = strcmp(ph, "Failed") == 0 || strcmp(ph, "Aborted") == 0;
        event(x, warn ? "Warning" : "Normal", strcmp(ph, "Progressing") == 0 ? "RolloutProgressing" : ph, "%s", msg);
        if (strcmp(ph, "Complete") == 0 || strcmp(ph, "Aborted") == 0)
            json_object_set_new(x->r.status, "completedMs", json_integer(now_ms()));
    }
}

/* Long: the order of the rollout's decisions reads best in one place. */
static int run(roctx *x, int64_t *requeue_ms, serr *e) {
    int rc;
    const char *phase = jstr(x->r.status, "phase", "Progressing");
    if (!ro_phase_running(phase)) return 0;
    if ((rc = ro_spec_parse(x->r.spec, &x->sp, e))) return rc;
    str_fmt_cut(x->user, sizeof(x->user), "rollout/%s", x->r.name);
    if (x->sp.aborted) {
        rollout_phase(x, "Aborted", "aborted: what was replaced stays replaced; replacements under way are left as they are");
        return save(x, e);
    }
    int64_t rev = 0;
    rc = stamp_template_revision(x->c, x->sp.template_name, x->sp.to_revision, &x->rspec, &rev, e);
    if (rc == SE_NOTFOUND) {
        rollout_phase(x, "Failed", e->msg);
        serr_clear(e);
        return save(x, e);
    }
    if (rc) return rc;
    str_copy(x->prefix, sizeof(x->prefix), jstr(x->rspec, "namePrefix", x->c->cfg->name_prefix));
    if ((rc = store_list(x->c->st, "Stamp", NULL, snap_one, x, e))) return rc;
    if ((rc = view_failed(x, e))) return rc;
    if (x->over) {
        char msg[300];
        str_fmt_cut(msg, sizeof(msg), "template %s has more than %d stamps that are not Deleted: the rollout "
                    "does not act on a partial view (it goes on once there are fewer)", x->sp.template_name, VIEW_MAX);
        rollout_phase(x, "Failed", msg);
        *requeue_ms = HELD_POLL_MS;
        return save(x, e);
    }
    /* Sized once: view() hands out pointers into it for the reconcile. */
    if (!view_grow(x, x->n + VIEW_EXTRA)) return serr_set(e, SE_NOMEM, "out of memory");
    if (x->sp.resumes > jint(x->r.status, "observedResumes", 0) && (rc = retry_failed(x, e))) return rc;

    json_t *items = json_object_get(x->r.status, "items"), *it;
    size_t i;
    bool failed = false;
    json_array_foreach(items, i, it) if (iphase_of(it) == IP_FAILED) failed = true;
    x->hold = x->sp.paused || failed;
    if (!x->hold) plan(x);
    items = json_object_get(x->r.status, "items");
    if ((rc = save(x, e))) return rc;

    budget b = {0};
    json_array_foreach(items, i, it) {
        int ph = iphase_of(it);
        if (ph == IP_DEPLOYING || ph == IP_WAITING || ph == IP_DRAINING) b.inflight++;
        if (ph == IP_WAITING) {
            ro_stamp *o = view(x, jstr(it, "old", ""));
            if (o && leaving(o)) b.early++;
        }
    }
    json_array_foreach(items, i, it) {
        if ((rc = step(x, it, &b, e))) return rc;
        if (iphase_of(it) == IP_FAILED) x->hold = true;
    }

    int done = 0, n = (int)json_array_size(items);
    const char *why = NULL;
    json_array_foreach(items, i, it) {
        if (iphase_of(it) == IP_DONE) done++;
        if (iphase_of(it) == IP_FAILED && why == NULL) why = jstr(it, "message", "failed");
    }
    json_object_set_new(x->r.status, "progress", json_pack("{s:i,s:i}", "done", done, "total", n));
    char msg[500];
    if (why) {
        str_fmt_cut(msg, sizeof(msg), "%s (stampctl rollout resume %s tries it again in place; abort stops)", why,
                    x->r.name);
        rollout_phase(x, "Failed", msg);
    } else if (done == n && !x->sp.paused) {
        str_fmt_cut(msg, sizeof(msg), "%d stamp(s) of %s run revision %lld", n, x->sp.template_name,
                    (long long)x->sp.to_revision);
        rollout_phase(x, "Complete", msg);
    } else if (x->sp.paused) {
        str_fmt_cut(msg, sizeof(msg), "paused at %d of %d: nothing new starts until resume", done, n);
        rollout_phase(x, "Paused", msg);
    } else {
        str_fmt_cut(msg, sizeof(msg), "%d of %d replaced", done, n);
        rollout_phase(x, "Progressing", msg);
    }
    x->dirty = true;
    if ((rc = save(x, e))) return rc;
    phase = jstr(x->r.status, "phase", "");
    *requeue_ms = !ro_phase_running(phase) ? CTL_DONE : x->hold ? HELD_POLL_MS : POLL_MS;
    return 0;
}

int ro_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    *requeue_ms = CTL_DONE;
    roctx *x = calloc(1, sizeof(*x));
    if (x == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    x->c = c;
    resource_init(&x->r);
    int rc = store_get(c->st, RO_KIND, name, &x->r, e);
    if (rc == SE_NOTFOUND) {
        serr_clear(e);
        rc = 0;
    } else if (rc == 0) {
        rc = run(x, requeue_ms, e);
        if (rc == SE_INVAL) {
            /* A spec the controller cannot follow: said in status. */
            rollout_phase(x, "Failed", e->msg);
            serr se = {0};
            save(x, &se);
        }
    }
    json_decref(x->rspec);
    resource_free(&x->r);
    free(x->st);
    free(x);
    return rc;
}
