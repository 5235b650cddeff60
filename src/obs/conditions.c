/*
 * conditions.c - the one place an ObservabilityPlatform's conditions are
 * computed (Kubernetes' shape: type, status, reason, message,
 * lastTransitionTime, observedGeneration), on every reconcile, and
 * written only when one of them changed (seed 003: compare before
 * updating).  lastTransitionTime moves only when a status flips.
 *
 *   Ready        the phase is Ready and every enabled component is Ready;
 *   Progressing  an install, an upgrade or a rollback is under way;
 *   Degraded     a component is Failed, or the platform is Failed while
 *                its components still run (a rejected configuration, a
 *                rolled back upgrade: the last known good serves);
 *   Available    the platform serves queries: its Prometheus (or, without
 *                one, any component) is Ready.
 * Paused, each says so in its reason, and keeps its status.
 */
#include <stdio.h>
#include <string.h>

#include "obs/internal.h"
#include "reconcile/phase.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

typedef struct cond {
    const char *type;
    bool status;
    char reason[48];
    char message[300];
} cond;

static void put(obs_ctx *x, json_t *arr, const cond *c) {
    const char *st = c->status ? "True" : "False";
    json_t *old = NULL;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o) if (strcmp(jstr(o, "type", ""), c->type) == 0) old = o;
    bool same_status = old && strcmp(jstr(old, "status", ""), st) == 0;
    if (old && same_status && strcmp(jstr(old, "reason", ""), c->reason) == 0 &&
        strcmp(jstr(old, "message", ""), c->message) == 0 &&
        json_integer_value(json_object_get(old, "observedGeneration")) == x->r.generation)
        return;
    char when[40];
    const char *t = same_status ? jstr(old, "lastTransitionTime", "") : fmt_time_rfc3339_ms(now_ms(), when, sizeof(when));
    json_t *n = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "type", c->type, "status", st, "reason", c->reason, "message",
                          c->message, "lastTransitionTime", t, "observedGeneration", (json_int_t)x->r.generation);
    /* Replaced in place, keeping the order. */
    json_array_foreach(arr, i, o) if (strcmp(jstr(o, "type", ""), c->type) == 0) {
        json_array_set_new(arr, i, n);
        x->dirty = true;
        return;
    }
    json_array_append_new(arr, n);
    x->dirty = true;
}

void obs_conditions(obs_ctx *x) {
    int phase = phase_of(&obs_fsm, &x->r);
    bool paused = json_is_true(json_object_get(x->r.status, "paused"));
    json_t *comps = json_object_get(x->r.status, "components");
    int enabled = 0, ready = 0, failed = 0;
    bool prom_ready = false, any_ready = false, has_prom = false;
    const char *failed_name = "";
    for (int k = 0; k < x->sp.n; k++) {
        if (!x->sp.c[k].enabled) continue;
        enabled++;
        json_t *c = NULL, *o;
        size_t i;
        json_array_foreach(comps, i, o) if (strcmp(jstr(o, "name", ""), x->sp.c[k].name) == 0) c = o;
        int s = obs_cstate_parse(jstr(c, "state", "Pending"));
        bool is_prom = strcmp(x->sp.c[k].name, "prometheus") == 0;
        has_prom |= is_prom;
        if (s == CS_READY) {
            ready++;
            any_ready = true;
            prom_ready |= is_prom;
        }
        if (s == CS_FAILED) {
            failed++;
            failed_name = x->sp.c[k].name;
        }
    }
    const char *msg = jstr(x->r.status, "message", "");
    json_t *rt = json_object_get(x->r.status, "retry");
    cond c[4] = {{.type = "Ready"}, {.type = "Progressing"}, {.type = "Degraded"}, {.type = "Available"}};
    c[0].status = phase == OP_READY && ready == enabled;
    snprintf(c[0].reason, sizeof(c[0].reason), "%s", c[0].status ? "AllComponentsReady" : phase == OP_FAILED ? "Failed" : phase == OP_UPGRADING ? "Upgrading" : phase == OP_INSTALLING ? "Installing" : phase == OP_PENDING ? "Pending" : "ComponentsNotReady");
    snprintf(c[0].message, sizeof(c[0].message), "%d of %d components ready", ready, enabled);
    const char *step = jstr(json_object_get(x->r.status, "upgrade"), "step", "done");
    c[1].status = phase == OP_INSTALLING || phase == OP_UPGRADING;
    snprintf(c[1].reason, sizeof(c[1].reason), "%s", phase == OP_INSTALLING ? "Installing" : phase == OP_UPGRADING ? (strcmp(step, "rollback") == 0 ? "RollingBack" : "Upgrading") : "Stable");
    snprintf(c[1].message, sizeof(c[1].message), "%s", c[1].status ? msg : "");
    bool rejected = phase == OP_FAILED && any_ready;
    c[2].status = failed > 0 || rejected;
    if (failed > 0) {
        snprintf(c[2].reason, sizeof(c[2].reason), "ComponentFailed");
        snprintf(c[2].message, sizeof(c[2].message), "%d failed, among them %s", failed, failed_name);
    } else if (rejected) {
        const char *cat = jstr(rt, "category", "");
        snprintf(c[2].reason, sizeof(c[2].reason), "%s",
                 json_is_true(json_object_get(rt, "waitForSpec")) ? "RolledBack" : strcmp(cat, CAT_CONFIG) == 0 ? "ConfigurationRejected" : "Failed");
        snprintf(c[2].message, sizeof(c[2].message), "the last known good configuration serves: %s", jstr(rt, "lastError", ""));
    } else {
        snprintf(c[2].reason, sizeof(c[2].reason), "AsExpected");
    }
    c[3].status = has_prom ? prom_ready : any_ready;
    snprintf(c[3].reason, sizeof(c[3].reason), "%s", c[3].status ? "Serving" : "NotServing");
    snprintf(c[3].message, sizeof(c[3].message), "%s", has_prom ? (prom_ready ? "Prometheus answers queries" : "Prometheus is not ready") : "");
    if (paused)
        for (int i = 0; i < 4; i++) {
            snprintf(c[i].reason, sizeof(c[i].reason), "Paused");
            snprintf(c[i].message, sizeof(c[i].message), "spec.paused is true: nothing is reconciled");
        }
    json_t *arr = json_object_get(x->r.status, "conditions");
    if (!json_is_array(arr)) {
        arr = json_array();
        json_object_set_new(x->r.status, "conditions", arr);
        x->dirty = true;
    }
    /* The engine's Stalled condition lives in the same array: kept. */
    for (int i = 0; i < 4; i++) put(x, arr, &c[i]);
}

void obs_component_gauge(const char *platform, const json_t *components, bool gone) {
    char labels[256];
    size_t i;
    json_t *c;
    json_array_foreach(components, i, c) {
        int s = obs_cstate_parse(jstr(c, "state", "Pending"));
        bool uninstalled = json_is_true(json_object_get(c, "uninstalled"));
        for (int k = 0; k < CS_N; k++) {
            snprintf(labels, sizeof(labels), "platform=\"%s\",component=\"%s\",state=\"%s\"", platform,
                     jstr(c, "name", ""), obs_cstate_names[k]);
            metrics_set("observability_platform_component_status", labels, !gone && !uninstalled && s == k ? 1 : 0);
        }
    }
}
