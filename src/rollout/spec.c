/*
 * spec.c - the StampRollout's spec and the API's side of it (rollout.h):
 * validation, creation (one running rollout per template), pause, resume,
 * abort and removal of a finished record.  Only spec is written here; the
 * controller (controller.c) writes status.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/template.h"
#include "rollout/rollout.h"
#include "stamp/revisions.h"
#include "util/util.h"
#include "util/yamljson.h"

#define UPDATE_RETRIES 8
#define DEFAULT_TIMEOUT_MS (35LL * 60 * 1000)

/* Creations are serialised: the one-per-template check and the create are
 * one step (a single stampd writes the store). */
static pthread_mutex_t create_mu = PTHREAD_MUTEX_INITIALIZER;

static int get_small_int(json_t *spec, const char *key, int lo, int hi, int dflt, int *out, serr *e) {
    json_t *v = json_object_get(spec, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return serr_set(e, SE_INVAL, "spec.%s: a whole number from %d to %d", key, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

int ro_spec_parse(json_t *spec, ro_spec *out, serr *e) {
    static const char *const keys[] = {"template", "toRevision", "maxSurge", "maxUnavailable", "timeout",
                                       "paused", "resumes", "aborted", NULL};
    memset(out, 0, sizeof(*out));
    int rc;
    if (!json_is_object(spec)) return serr_set(e, SE_INVAL, "spec: must be a mapping");
    if ((rc = json_check_keys(spec, "spec", keys, e))) return rc;
    const char *t = json_string_value(json_object_get(spec, "template"));
    if (t == NULL || !name_valid(t, 63)) return serr_set(e, SE_INVAL, "spec.template: a template's name is required");
    str_copy(out->template_name, sizeof(out->template_name), t);
    json_t *rev = json_object_get(spec, "toRevision");
    if (!json_is_integer(rev) || json_integer_value(rev) < 1)
        return serr_set(e, SE_INVAL, "spec.toRevision: the revision to roll out is required (a number from 1)");
    out->to_revision = json_integer_value(rev);
    if ((rc = get_small_int(spec, "maxSurge", 1, RO_MAX_SURGE, 1, &out->max_surge, e))) return rc;
    if ((rc = get_small_int(spec, "maxUnavailable", 0, RO_MAX_SURGE, 0, &out->max_unavailable, e))) return rc;
    out->timeout_ms = DEFAULT_TIMEOUT_MS;
    json_t *to = json_object_get(spec, "timeout");
    if (to) {
        const char *s = json_string_value(to);
        if (s == NULL || parse_duration_ms(s, &out->timeout_ms) != 0 || out->timeout_ms < 1000 ||
            out->timeout_ms > 24LL * 3600 * 1000)
            return serr_set(e, SE_INVAL, "spec.timeout: a duration from 1s to 24h, like 35m");
    }
    json_t *p = json_object_get(spec, "paused"), *a = json_object_get(spec, "aborted");
    if ((p && !json_is_boolean(p)) || (a && !json_is_boolean(a)))
        return serr_set(e, SE_INVAL, "spec.paused and spec.aborted: true or false");
    out->paused = json_is_true(p);
    out->aborted = json_is_true(a);
    out->resumes = jint(spec, "resumes", 0);
    return 0;
}

bool ro_phase_running(const char *phase) {
    return phase == NULL || (strcmp(phase, "Complete") != 0 && strcmp(phase, "Aborted") != 0);
}

typedef struct running_acc {
    const char *tname;
    char *name;
    size_t len;
    int found;
} running_acc;

static int running_one(const resource *r, void *arg) {
    running_acc *a = arg;
    if (strcmp(jstr(r->spec, "template", ""), a->tname) != 0) return 0;
    if (json_is_true(json_object_get(r->spec, "aborted"))) return 0;
    if (!ro_phase_running(json_string_value(json_object_get(r->status, "phase")))) return 0;
    str_copy(a->name, a->len, r->name);
    a->found = 1;
    return 1;
}

int ro_running_for(ctl_ctx *c, const char *tname, char *name, size_t len, serr *e) {
    running_acc a = {.tname = tname, .name = name, .len = len};
    int rc = store_list(c->st, RO_KIND, NULL, running_one, &a, e);
    return rc ? rc : a.found;
}

static int wake_autoscaler(const resource *r, void *arg) {
    ctl_wake(arg, "StampAutoscaler", r->name);
    return 0;
}

/* Long: the body's fields one by one, then the create under the lock. */
int ro_create(ctl_ctx *c, json_t *body, const char *user, char *name, size_t namelen,
              json_t **answer, serr *e) {
    static const char *const keys[] = {"name", "template", "toRevision", "maxSurge", "maxUnavailable",
                                       "timeout", NULL};
    name[0] = '\0';
    if (!json_is_object(body))
        return serr_set(e, SE_INVAL, "body: expected {\"template\", \"toRevision\"[, \"maxSurge\", "
                                     "\"maxUnavailable\", \"timeout\", \"name\"]}");
    int rc;
    if ((rc = json_check_keys(body, "body", keys, e))) return rc;
    json_t *spec = json_deep_copy(body);
    json_object_del(spec, "name");
    ro_spec sp;
    if ((rc = ro_spec_parse(spec, &sp, e))) {
        json_decref(spec);
        return rc;
    }
    /* The revision must exist now (it is looked up again at each deploy). */
    json_t *rspec = NULL;
    int64_t rev = 0;
    if ((rc = stamp_template_revision(c, sp.template_name, sp.to_revision, &rspec, &rev, e))) {
        json_decref(spec);
        return rc;
    }
    json_decref(rspec);
    const char *given = json_string_value(json_object_get(body, "name"));
    if (json_object_get(body, "name") && (given == NULL || !name_valid(given, 63))) {
        json_decref(spec);
        return serr_set(e, SE_INVAL, "name: letters, digits and '-', at most 63");
    }
    resource r;
    resource_init(&r);
    pthread_mutex_lock(&create_mu);
    char other[RES_NAME_MAX];
    rc = ro_running_for(c, sp.template_name, other, sizeof(other), e);
    if (rc == 1)
        rc = serr_set(e, SE_CONFLICT,
                      "rollout %s of template %s is still running (one at a time per template: "
                      "resume it, or abort it with stampctl rollout abort %s)",
                      other, sp.template_name, other);
    /* The default name says what it does; a second rollout to the same
     * revision (after an abort) gets a number. */
    for (int n = 1; rc == 0 && n <= 100; n++) {
        char nm[RES_NAME_MAX];
        if (given) str_copy(nm, sizeof(nm), given);
        else if (n == 1) str_fmt_cut(nm, sizeof(nm), "%s-rev%lld", sp.template_name, (long long)sp.to_revision);
        else str_fmt_cut(nm, sizeof(nm), "%s-rev%lld-%d", sp.template_name, (long long)sp.to_revision, n);
        if (!name_valid(nm, 63)) {
            rc = serr_set(e, SE_INVAL, "name: %s is too long; give a shorter one", nm);
            break;
        }
        resource_free(&r);
        resource_init(&r);
        str_copy(r.kind, sizeof(r.kind), RO_KIND);
        str_copy(r.name, sizeof(r.name), nm);
        json_object_set_new(r.labels, "template", json_string(sp.template_name));
        json_decref(r.spec);
        r.spec = json_deep_copy(spec);
        json_object_set_new(r.status, "phase", json_string("Progressing"));
        char msg[300];
        str_fmt_cut(msg, sizeof(msg), "rollout of %s to revision %lld requested by %s (maxSurge %d, maxUnavailable %d)",
                    sp.template_name, (long long)sp.to_revision, user, sp.max_surge, sp.max_unavailable);
        store_event ev = {.type = "Normal", .reason = "RolloutRequested", .message = msg};
        rc = store_create(c->st, &r, &ev, e);
        if (rc == SE_EXISTS && !given) {
            serr_clear(e);
            rc = 0;
            continue;
        }
        if (rc == 0) str_copy(name, namelen, nm);
        break;
    }
    if (rc == 0 && name[0] == '\0') rc = serr_set(e, SE_EXISTS, "no free rollout name for %s", sp.template_name);
    pthread_mutex_unlock(&create_mu);
    json_decref(spec);
    if (rc == 0) {
        *answer = resource_to_json(&r);
        ctl_enqueue(c, RO_KIND, name);
        /* The template's autoscaler holds from now on: it looks now. */
        store_list(c->st, "StampAutoscaler", NULL, wake_autoscaler, c, NULL);
    }
    resource_free(&r);
    return rc;
}

int ro_action(ctl_ctx *c, const char *name, const char *action, const char *user, json_t **answer,
              serr *e) {
    bool pause = strcmp(action, "pause") == 0, resume = strcmp(action, "resume") == 0,
         abort_ = strcmp(action, "abort") == 0;
    if (!pause && !resume && !abort_)
        return serr_set(e, SE_NOTFOUND, "rollout action \"%s\": pause, resume or abort", action);
    resource r;
    resource_init(&r);
    int rc = SE_CONFLICT;
    for (int i = 0; i < UPDATE_RETRIES && rc == SE_CONFLICT; i++) {
        if ((rc = store_get(c->st, RO_KIND, name, &r, e))) break;
        const char *phase = jstr(r.status, "phase", "Progressing");
        if (!ro_phase_running(phase) || json_is_true(json_object_get(r.spec, "aborted"))) {
            rc = serr_set(e, SE_PHASE, "rollout %s is %s: %s changes nothing", name,
                          json_is_true(json_object_get(r.spec, "aborted")) ? "aborted" : phase, action);
            break;
        }
        const char *reason;
        if (pause) {
            json_object_set_new(r.spec, "paused", json_true());
            reason = "PauseRequested";
        } else if (resume) {
            json_object_set_new(r.spec, "paused", json_false());
            json_object_set_new(r.spec, "resumes", json_integer(jint(r.spec, "resumes", 0) + 1));
            reason = "ResumeRequested";
        } else {
            json_object_set_new(r.spec, "aborted", json_true());
            reason = "AbortRequested";
        }
        char msg[200];
        str_fmt_cut(msg, sizeof(msg), "%s requested by %s in phase %s", action, user, phase);
        store_event ev = {.type = "Normal", .reason = reason, .message = msg};
        rc = store_update(c->st, &r, &ev, e);
    }
    if (rc == 0) {
        *answer = resource_to_json(&r);
        ctl_enqueue(c, RO_KIND, name);
        if (abort_) store_list(c->st, "StampAutoscaler", NULL, wake_autoscaler, c, NULL);
    }
    resource_free(&r);
    return rc;
}

int ro_delete(ctl_ctx *c, const char *name, json_t **answer, serr *e) {
    resource r;
    resource_init(&r);
    int rc = store_get(c->st, RO_KIND, name, &r, e);
    const char *phase = jstr(r.status, "phase", "Progressing");
    if (rc == 0 && ro_phase_running(phase))
        rc = serr_set(e, SE_PHASE, "rollout %s is %s: abort it first (stampctl rollout abort %s); "
                                   "only a Complete or Aborted rollout's record is removed",
                      name, phase, name);
    if (rc == 0) rc = store_delete(c->st, RO_KIND, name, r.resource_version, e);
    if (rc == 0) *answer = resource_to_json(&r);
    resource_free(&r);
    return rc;
}
