/*
 * tpl_change.c - the classification of a template or parameter change
 * (tpl_change.h).  Both templates are parsed (so defaults compare as the
 * values they stand for: an absent `replicas` equals `replicas: 1`), then
 * compared step by step, then the template's own fields, then the
 * parameters' effective values.  The first infrastructure change found is
 * the one named; the order is the manifest's.
 */
#include "core/tpl_change.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static void note(tpl_change *c, bool infra, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records one change: the first of each class keeps its description (for
 * people: a cut one still reads). */
static void note(tpl_change *c, bool infra, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (infra && !c->infra) {
        c->infra = true;
        str_vfmt_cut(c->what, sizeof(c->what), fmt, ap);
    } else if (!infra && !c->app) {
        c->app = true;
        str_vfmt_cut(c->app_what, sizeof(c->app_what), fmt, ap);
    }
    va_end(ap);
}

static bool str_same(const char *a, const char *b) {
    if (a == NULL || b == NULL) return a == b;
    return strcmp(a, b) == 0;
}

/* env: absent and {} are the same. */
static bool env_same(json_t *a, json_t *b) {
    if (a == NULL || json_object_size(a) == 0) return b == NULL || json_object_size(b) == 0;
    return b != NULL && json_equal(a, b);
}

static int step_index(const tpl *t, const char *name) {
    for (int i = 0; i < t->nsteps; i++)
        if (strcmp(t->steps[i].name, name) == 0) return i;
    return -1;
}

static const char *kind_name(int k) { return k == TK_PROCESS ? "process" : "exec"; }

/* Steps added, removed, renamed or reordered: infrastructure.  True when
 * both lists name the same steps in the same order. */
static bool same_steps(const tpl *o, const tpl *n, tpl_change *c) {
    for (int i = 0; i < o->nsteps; i++)
        if (step_index(n, o->steps[i].name) < 0) {
            note(c, true, "step %s removed", o->steps[i].name);
            return false;
        }
    for (int i = 0; i < n->nsteps; i++)
        if (step_index(o, n->steps[i].name) < 0) {
            note(c, true, "step %s added", n->steps[i].name);
            return false;
        }
    for (int i = 0; i < n->nsteps; i++)
        if (strcmp(o->steps[i].name, n->steps[i].name) != 0) {
            note(c, true, "step %s moved (steps reordered)", n->steps[i].name);
            return false;
        }
    return true;
}

/* The first application field of the step that differs, or NULL. */
static const char *app_field_changed(const tpl_step *a, const tpl_step *b) {
    if (b->kind == TK_EXEC) {
        if (!str_same(a->run, b->run)) return "run";
        if (!str_same(a->del, b->del)) return "delete";
        if (a->timeout_ms != b->timeout_ms) return "timeout";
        if (!env_same(a->env, b->env)) return "env";
        return NULL;
    }
    if (!json_equal(a->command, b->command)) return "command";
    if (!env_same(a->env, b->env)) return "env";
    if (a->cpu_millis != b->cpu_millis || a->memory_bytes != b->memory_bytes) return "resources";
    if (a->health != b->health) return "health";
    if (a->metrics != b->metrics) return "metrics";
    if (a->replicas != b->replicas) return "replicas";
    if (a->timeout_ms != b->timeout_ms) return "timeout";
    return NULL;
}

static void compare_step(const tpl_step *a, const tpl_step *b, int idx, tpl_change *c) {
    const char *infra_field = NULL;
    if (a->kind != b->kind) infra_field = "kind";
    else if (a->phase != b->phase) infra_field = "phase";
    else if (b->kind == TK_PROCESS && a->pool != b->pool) infra_field = "pool";
    else if (b->kind == TK_PROCESS && a->ports != b->ports) infra_field = "ports";
    else if (b->kind == TK_PROCESS && a->endpoint != b->endpoint) infra_field = "endpoint";
    if (infra_field) {
        note(c, true, "step %s (%s): %s changed", b->name, kind_name(b->kind), infra_field);
        return;
    }
    /* Declaring an infrastructure step application is itself an
     * infrastructure change: else one revision could relabel a step and
     * change its command, and an update would run it on an Active stamp. */
    if (a->change == TCC_INFRASTRUCTURE && b->change != TCC_INFRASTRUCTURE) {
        note(c, true, "step %s (%s): declared application, was infrastructure", b->name, kind_name(b->kind));
        return;
    }
    const char *f = app_field_changed(a, b);
    if (f == NULL) return;
    if (b->change == TCC_INFRASTRUCTURE) {
        note(c, true, "step %s (%s, infrastructure): %s changed", b->name, kind_name(b->kind), f);
        return;
    }
    note(c, false, "step %s (%s, application): %s changed", b->name, kind_name(b->kind), f);
    if (!c->app_steps[idx]) {
        c->app_steps[idx] = true;
        c->napp_steps++;
    }
}

/* A parameter's effective value as text: the one given, else the declared
 * default; false when it has neither. */
static bool param_value(const tpl *t, json_t *given, const char *name, char *buf, size_t len) {
    json_t *v = json_object_get(given, name);
    if (v == NULL) {
        const tpl_param *p = tpl_param_find(t, name);
        v = p ? p->dflt : NULL;
    }
    if (json_is_string(v)) {
        str_fmt_cut(buf, len, "s:%s", json_string_value(v));
        return true;
    }
    if (json_is_integer(v)) {
        /* 2 and "2" reach a command as the same text */
        str_fmt_cut(buf, len, "s:%lld", (long long)json_integer_value(v));
        return true;
    }
    return false;
}

static void compare_param(const tpl *o, json_t *op, const tpl *n, json_t *np, const char *name,
                          tpl_change *c) {
    char a[480], b[480]; /* values are at most 400 characters */
    bool ha = param_value(o, op, name, a, sizeof(a)), hb = param_value(n, np, name, b, sizeof(b));
    if (ha == hb && (!ha || strcmp(a, b) == 0)) return;
    const tpl_param *d = tpl_param_find(n, name), *was = tpl_param_find(o, name);
    if (d == NULL || d->change == TCC_INFRASTRUCTURE) {
        note(c, true, "parameter %s (%s): changed", name, d ? "infrastructure" : "undeclared, infrastructure");
        return;
    }
    /* The stricter of the two classes: a parameter the old template held
     * as infrastructure (declared so, or given without a declaration)
     * does not become application by a new declaration. */
    if ((was && was->change == TCC_INFRASTRUCTURE) || (was == NULL && json_object_get(op, name))) {
        note(c, true, "parameter %s: declared application, was infrastructure", name);
        return;
    }
    note(c, false, "parameter %s (application): changed", name);
    c->params_changed = true;
}

/* Every parameter either side gives or declares. */
static void compare_params(const tpl *o, json_t *op, const tpl *n, json_t *np, tpl_change *c) {
    const char *k;
    json_t *v;
    json_object_foreach(np, k, v) compare_param(o, op, n, np, k, c);
    json_object_foreach(op, k, v) {
        if (json_object_get(np, k) == NULL) compare_param(o, op, n, np, k, c);
    }
    for (int i = 0; i < n->nparams; i++) {
        const char *name = n->params[i].name;
        if (!json_object_get(np, name) && !json_object_get(op, name)) compare_param(o, op, n, np, name, c);
    }
    for (int i = 0; i < o->nparams; i++) {
        const char *name = o->params[i].name;
        if (!json_object_get(np, name) && !json_object_get(op, name) && !tpl_param_find(n, name))
            compare_param(o, op, n, np, name, c);
    }
}

/* Long: one comparison per field class, in the manifest's order. */
int tpl_change_classify(json_t *old_spec, json_t *old_params, json_t *new_spec, json_t *new_params,
                        tpl_change *out, serr *e) {
    memset(out, 0, sizeof(*out));
    if ((old_params && !json_is_object(old_params)) || (new_params && !json_is_object(new_params)))
        return serr_set(e, SE_INVAL, "parameters: must be a mapping");
    /* Two parsed templates are tens of KiB: on the heap. */
    tpl *o = malloc(sizeof(*o)), *n = malloc(sizeof(*n));
    int rc = 0;
    if (o == NULL || n == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = tpl_parse(old_spec, o, e)) != 0) {
        serr_wrap(e, "old template");
        goto done;
    }
    if ((rc = tpl_parse(new_spec, n, e)) != 0) {
        serr_wrap(e, "new template");
        goto done;
    }
    if (!str_same(o->name_prefix, n->name_prefix)) note(out, true, "namePrefix changed");
    if (same_steps(o, n, out)) {
        for (int i = 0; i < n->nsteps; i++) compare_step(&o->steps[i], &n->steps[i], i, out);
        if (o->endpoint_step != n->endpoint_step)
            note(out, true, "the endpoint step changed (%s)",
                 n->endpoint_step >= 0 ? n->steps[n->endpoint_step].name : "none");
    }
    if (!str_same(o->health_path, n->health_path) || !str_same(o->metrics_path, n->metrics_path) ||
        !str_same(o->health_check, n->health_check)) {
        out->template_app = true;
        note(out, false, "%s changed",
             !str_same(o->health_path, n->health_path)     ? "healthPath"
             : !str_same(o->metrics_path, n->metrics_path) ? "metricsPath"
                                                           : "healthCheck");
    }
    for (int p = 0; p < POOL_N; p++)
        if (o->pool_min[p] != n->pool_min[p] || o->pool_max[p] != n->pool_max[p]) {
            out->pools_changed = true;
            note(out, false, "pools.%s bounds changed", tpl_pool_names[p]);
        }
    compare_params(o, old_params, n, new_params, out);
    /* An application parameter reaches every step's environment: every
     * application step restarts with it. */
    if (out->params_changed && !out->infra)
        for (int i = 0; i < n->nsteps; i++)
            if (n->steps[i].change == TCC_APPLICATION && !out->app_steps[i]) {
                out->app_steps[i] = true;
                out->napp_steps++;
            }
done:
    free(o);
    free(n);
    return rc;
}
