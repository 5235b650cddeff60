/*
 * template.c - parsing and validation of StampTemplate specs (template.h).
 */
#include "core/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

const char *const tpl_phase_names[TP_N] = {"network", "security", "data",
                                           "compute", "integration", "validation"};
const char *const tpl_pool_names[POOL_N] = {"system", "general", "gpu"};
const char *const tpl_change_names[TCC_N] = {"application", "infrastructure"};

static int change_parse(json_t *o, int dflt, int *out, const char *where, serr *e) {
    const char *v;
    int rc = json_get_str(o, "change", false, 32, &v, where, e);
    if (rc) return rc;
    *out = dflt;
    if (v == NULL) return 0;
    for (int i = 0; i < TCC_N; i++)
        if (strcmp(tpl_change_names[i], v) == 0) {
            *out = i;
            return 0;
        }
    return serr_set(e, SE_INVAL, "%s.change: \"%s\" is not one of application, infrastructure",
                    where, v);
}

bool tpl_param_name_ok(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > TPL_PARAM_NAME_MAX || k[0] == '.' || k[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9') || (c == '.' && k[i + 1] != '.');
        if (!ok) return false;
    }
    return true;
}

const tpl_param *tpl_param_find(const tpl *t, const char *name) {
    for (int i = 0; i < t->nparams; i++)
        if (strcmp(t->params[i].name, name) == 0) return &t->params[i];
    return NULL;
}

int tpl_pool_parse(const char *name) {
    for (int i = 0; name && i < POOL_N; i++)
        if (strcmp(tpl_pool_names[i], name) == 0) return i;
    return -1;
}

static int phase_parse(const char *name) {
    for (int i = 0; name && i < TP_N; i++)
        if (strcmp(tpl_phase_names[i], name) == 0) return i;
    return -1;
}

int json_check_keys(json_t *obj, const char *where, const char *const *keys, serr *e) {
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        bool known = false;
        for (int i = 0; keys[i]; i++)
            if (strcmp(keys[i], k) == 0) known = true;
        if (!known) return serr_set(e, SE_INVAL, "%s.%s: unknown field", where, k);
    }
    return 0;
}

int json_get_bool(json_t *o, const char *key, bool dflt, bool *out, const char *where, serr *e) {
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) return serr_set(e, SE_INVAL, "%s.%s: must be true or false", where, key);
    *out = json_is_true(v);
    return 0;
}

int json_get_int(json_t *o, const char *key, int dflt, int lo, int hi, int *out,
                   const char *where, serr *e) {
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return serr_set(e, SE_INVAL, "%s.%s: must be an integer from %d to %d", where, key, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

int json_get_str(json_t *o, const char *key, bool required, size_t max, const char **out,
                   const char *where, serr *e) {
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        if (required) return serr_set(e, SE_INVAL, "%s.%s: required", where, key);
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
        return serr_set(e, SE_INVAL, "%s.%s: must be a non-empty string of at most %zu characters",
                        where, key, max);
    *out = json_string_value(v);
    return 0;
}

/* resources: {cpu: 2 | "2" | "500m", memory: "256Mi" | "1Gi" | bytes}, per
 * replica, as Kubernetes writes them.  What the autoscaler measures CPU and
 * memory use against. */
static int parse_quantity(json_t *v, bool cpu, int64_t *out) {
    if (json_is_integer(v)) {
        int64_t n = json_integer_value(v);
        if (n <= 0 || n > (cpu ? 1024 : (int64_t)1 << 50)) return -1;
        *out = cpu ? n * 1000 : n;
        return 0;
    }
    const char *s = json_string_value(v);
    if (s == NULL || *s == '\0' || strlen(s) > 24) return -1;
    char *end;
    double n = strtod(s, &end);
    if (end == s || !(n > 0)) return -1;
    double mult = 1;
    if (cpu) mult = strcmp(end, "m") == 0 ? 1 : *end == '\0' ? 1000 : 0;
    else if (*end == '\0') mult = 1;
    else if (strcmp(end, "Ki") == 0) mult = 1024.0;
    else if (strcmp(end, "Mi") == 0) mult = 1024.0 * 1024;
    else if (strcmp(end, "Gi") == 0) mult = 1024.0 * 1024 * 1024;
    else mult = 0;
    double r = n * mult;
    if (mult == 0 || r < 1 || r > (cpu ? 1024e3 : 1e15)) return -1;
    *out = (int64_t)r;
    return 0;
}

static int parse_resources(json_t *res, tpl_step *st, const char *where, serr *e) {
    static const char *const keys[] = {"cpu", "memory", NULL};
    st->cpu_millis = 1000;
    st->memory_bytes = 512LL << 20;
    if (res == NULL) return 0;
    char w[160];
    str_fmt_cut(w, sizeof(w), "%s.resources", where);
    if (!json_is_object(res)) return serr_set(e, SE_INVAL, "%s: must be a mapping", w);
    int rc = json_check_keys(res, w, keys, e);
    if (rc) return rc;
    json_t *c = json_object_get(res, "cpu"), *m = json_object_get(res, "memory");
    if (c && parse_quantity(c, true, &st->cpu_millis) != 0)
        return serr_set(e, SE_INVAL, "%s.cpu: not a CPU quantity like 2 or 500m", w);
    if (m && parse_quantity(m, false, &st->memory_bytes) != 0)
        return serr_set(e, SE_INVAL, "%s.memory: not a memory quantity like 256Mi or 1Gi", w);
    return 0;
}

/* Long: one validation per step field, each naming the field. */
static int parse_step(json_t *js, int phase, tpl_step *st, const char *where, serr *e) {
    static const char *const keys[] = {"name", "kind", "pool", "replicas", "ports", "command",
                                       "env", "endpoint", "health", "metrics", "run", "delete",
                                       "timeout", "resources", "change", NULL};
    int rc;
    if (!json_is_object(js)) return serr_set(e, SE_INVAL, "%s: must be a mapping", where);
    if ((rc = json_check_keys(js, where, keys, e))) return rc;
    memset(st, 0, sizeof(*st));
    st->phase = phase;
    if ((rc = json_get_str(js, "name", true, 48, &st->name, where, e))) return rc;
    if (!name_valid(st->name, 48))
        return serr_set(e, SE_INVAL, "%s.name: \"%s\" must be lowercase letters, digits and '-'",
                        where, st->name);
    const char *kind;
    if ((rc = json_get_str(js, "kind", true, 16, &kind, where, e))) return rc;
    if (strcmp(kind, "process") == 0) st->kind = TK_PROCESS;
    else if (strcmp(kind, "exec") == 0) st->kind = TK_EXEC;
    else return serr_set(e, SE_INVAL, "%s.kind: \"%s\" is not one of process, exec", where, kind);
    /* What runs in a replica is the application; what an exec step
     * creates (a resource group, a network) is infrastructure. */
    if ((rc = change_parse(js, st->kind == TK_PROCESS ? TCC_APPLICATION : TCC_INFRASTRUCTURE,
                           &st->change, where, e)))
        return rc;

    const char *timeout = NULL;
    if ((rc = json_get_str(js, "timeout", false, 32, &timeout, where, e))) return rc;
    st->timeout_ms = 10 * 60 * 1000;
    if (timeout && (parse_duration_ms(timeout, &st->timeout_ms) != 0 || st->timeout_ms <= 0))
        return serr_set(e, SE_INVAL, "%s.timeout: \"%s\" is not a duration like 30s or 10m", where,
                        timeout);

    json_t *env = json_object_get(js, "env");
    if (env) {
        if (!json_is_object(env) || json_object_size(env) > 64)
            return serr_set(e, SE_INVAL, "%s.env: must be a mapping of at most 64 names", where);
        const char *k;
        json_t *v;
        json_object_foreach(env, k, v) {
            if (!json_is_string(v) && !json_is_integer(v))
                return serr_set(e, SE_INVAL, "%s.env.%s: must be a string", where, k);
            if (*k == '\0' || strchr(k, '=') != NULL)
                return serr_set(e, SE_INVAL, "%s.env: bad variable name \"%s\"", where, k);
        }
        st->env = env;
    }

    if (st->kind == TK_EXEC) {
        static const char *const forbidden[] = {"pool", "replicas", "ports", "command",
                                                "endpoint", "health", "metrics", "resources"};
        for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
            if (json_object_get(js, forbidden[i]))
                return serr_set(e, SE_INVAL, "%s.%s: only for process steps", where, forbidden[i]);
        if ((rc = json_get_str(js, "run", true, 4096, &st->run, where, e))) return rc;
        return json_get_str(js, "delete", false, 4096, &st->del, where, e);
    }

    if (json_object_get(js, "run") || json_object_get(js, "delete"))
        return serr_set(e, SE_INVAL, "%s.%s: only for exec steps", where,
                        json_object_get(js, "run") ? "run" : "delete");
    const char *pool;
    if ((rc = json_get_str(js, "pool", true, 16, &pool, where, e))) return rc;
    if ((st->pool = tpl_pool_parse(pool)) < 0)
        return serr_set(e, SE_INVAL, "%s.pool: \"%s\" is not one of system, general, gpu", where,
                        pool);
    if ((rc = json_get_int(js, "replicas", 1, 0, TPL_MAX_REPLICAS, &st->replicas, where, e))) return rc;
    if ((rc = json_get_int(js, "ports", 1, 0, TPL_MAX_PORTS, &st->ports, where, e))) return rc;
    if ((rc = json_get_bool(js, "endpoint", false, &st->endpoint, where, e))) return rc;
    if ((rc = json_get_bool(js, "health", st->ports > 0, &st->health, where, e))) return rc;
    if ((rc = json_get_bool(js, "metrics", st->ports > 0 && st->pool != POOL_SYSTEM, &st->metrics,
                       where, e)))
        return rc;
    if ((st->health || st->metrics || st->endpoint) && st->ports == 0)
        return serr_set(e, SE_INVAL, "%s: health, metrics and endpoint need ports >= 1", where);
    json_t *cmd = json_object_get(js, "command");
    if (!json_is_array(cmd) || json_array_size(cmd) == 0 || json_array_size(cmd) > TPL_MAX_ARGS)
        return serr_set(e, SE_INVAL, "%s.command: must be a list of 1 to %d strings", where,
                        TPL_MAX_ARGS);
    size_t i;
    json_t *a;
    json_array_foreach(cmd, i, a) {
        if (!json_is_string(a) || json_string_length(a) > 1024)
            return serr_set(e, SE_INVAL, "%s.command[%zu]: must be a string", where, i);
    }
    st->command = cmd;
    return parse_resources(json_object_get(js, "resources"), st, where, e);
}

/* spec.parameters: {NAME: {change, default, description}}. */
static int parse_params(json_t *ps, tpl *out, serr *e) {
    static const char *const keys[] = {"change", "default", "description", NULL};
    if (ps == NULL) return 0;
    if (!json_is_object(ps) || json_object_size(ps) > TPL_MAX_PARAMS)
        return serr_set(e, SE_INVAL, "spec.parameters: must be a mapping of at most %d names",
                        TPL_MAX_PARAMS);
    const char *k;
    json_t *v;
    int rc;
    json_object_foreach(ps, k, v) {
        char where[128]; /* names are at most 64 characters: always fits */
        str_fmt_cut(where, sizeof(where), "spec.parameters.%s", k);
        if (!tpl_param_name_ok(k))
            return serr_set(e, SE_INVAL,
                            "spec.parameters: \"%.64s\" is not a parameter name (letters, digits, '_' "
                            "and '.' inside, at most %d characters)",
                            k, TPL_PARAM_NAME_MAX);
        if (!json_is_object(v)) return serr_set(e, SE_INVAL, "%s: must be a mapping", where);
        if ((rc = json_check_keys(v, where, keys, e))) return rc;
        tpl_param *p = &out->params[out->nparams++];
        p->name = k;
        if ((rc = change_parse(v, TCC_APPLICATION, &p->change, where, e))) return rc;
        if ((rc = json_get_str(v, "description", false, 400, &p->description, where, e))) return rc;
        p->dflt = json_object_get(v, "default");
        if (p->dflt && !(json_is_string(p->dflt) && json_string_length(p->dflt) <= 400) &&
            !json_is_integer(p->dflt))
            return serr_set(e, SE_INVAL, "%s.default: must be a string (400 characters max) or an integer",
                            where);
    }
    return 0;
}

/* spec.pools: {system|general|gpu: {minReplicas, maxReplicas}}. */
static int parse_pools(json_t *ps, tpl *out, serr *e) {
    static const char *const keys[] = {"system", "general", "gpu", NULL};
    static const char *const bkeys[] = {"minReplicas", "maxReplicas", NULL};
    int rc;
    for (int i = 0; i < POOL_N; i++) {
        out->pool_min[i] = i == POOL_SYSTEM ? 1 : 0;
        out->pool_max[i] = TPL_POOL_MAX_DEFAULT;
    }
    if (ps == NULL) return 0;
    if (!json_is_object(ps)) return serr_set(e, SE_INVAL, "spec.pools: must be a mapping");
    if ((rc = json_check_keys(ps, "spec.pools", keys, e))) return rc;
    for (int i = 0; i < POOL_N; i++) {
        json_t *b = json_object_get(ps, tpl_pool_names[i]);
        if (b == NULL) continue;
        char where[48];
        str_fmt_cut(where, sizeof(where), "spec.pools.%s", tpl_pool_names[i]);
        if (!json_is_object(b)) return serr_set(e, SE_INVAL, "%s: must be a mapping", where);
        if ((rc = json_check_keys(b, where, bkeys, e))) return rc;
        if ((rc = json_get_int(b, "minReplicas", out->pool_min[i], 0, TPL_MAX_REPLICAS,
                               &out->pool_min[i], where, e)))
            return rc;
        int dmax = out->pool_max[i] < out->pool_min[i] ? out->pool_min[i] : out->pool_max[i];
        if ((rc = json_get_int(b, "maxReplicas", dmax, 0, TPL_MAX_REPLICAS, &out->pool_max[i],
                               where, e)))
            return rc;
        if (out->pool_min[i] > out->pool_max[i])
            return serr_set(e, SE_INVAL, "%s: minReplicas %d is above maxReplicas %d", where,
                            out->pool_min[i], out->pool_max[i]);
        out->pool_declared[i] = true;
    }
    return 0;
}

/* Long: one validation per template field, each naming the field. */
int tpl_parse(json_t *spec, tpl *out, serr *e) {
    static const char *const keys[] = {"namePrefix", "healthPath", "metricsPath", "phases",
                                       "description", "healthCheck", "parameters", "pools", NULL};
    int rc;
    memset(out, 0, sizeof(*out));
    out->endpoint_step = -1;
    if (!json_is_object(spec)) return serr_set(e, SE_INVAL, "spec: must be a mapping");
    if ((rc = json_check_keys(spec, "spec", keys, e))) return rc;
    if ((rc = json_get_str(spec, "namePrefix", false, 24, &out->name_prefix, "spec", e))) return rc;
    if (out->name_prefix && !name_valid(out->name_prefix, 24))
        return serr_set(e, SE_INVAL, "spec.namePrefix: \"%s\" must be lowercase letters, digits and '-'",
                        out->name_prefix);
    /* 255: the default health check keeps it whole in hc_check.path[256]. */
    if ((rc = json_get_str(spec, "healthPath", false, 255, &out->health_path, "spec", e))) return rc;
    if ((rc = json_get_str(spec, "metricsPath", false, 256, &out->metrics_path, "spec", e))) return rc;
    if ((rc = json_get_str(spec, "healthCheck", false, 63, &out->health_check, "spec", e))) return rc;
    if (out->health_check && !name_valid(out->health_check, 63))
        return serr_set(e, SE_INVAL, "spec.healthCheck: \"%s\" is not a StampHealthCheck name",
                        out->health_check);
    if (!out->health_path) out->health_path = "/health";
    if (!out->metrics_path) out->metrics_path = "/metrics";
    if (out->health_path[0] != '/' || out->metrics_path[0] != '/')
        return serr_set(e, SE_INVAL, "spec.healthPath and spec.metricsPath must start with '/'");
    if ((rc = parse_params(json_object_get(spec, "parameters"), out, e))) return rc;
    if ((rc = parse_pools(json_object_get(spec, "pools"), out, e))) return rc;

    json_t *phases = json_object_get(spec, "phases");
    if (!json_is_array(phases) || json_array_size(phases) == 0)
        return serr_set(e, SE_INVAL, "spec.phases: must be a non-empty list");
    int last_phase = -1;
    size_t pi;
    json_t *jp;
    json_array_foreach(phases, pi, jp) {
        char where[96]; /* where in the manifest, for messages; always fits */
        str_fmt_cut(where, sizeof(where), "spec.phases[%zu]", pi);
        static const char *const pkeys[] = {"name", "steps", NULL};
        if (!json_is_object(jp)) return serr_set(e, SE_INVAL, "%s: must be a mapping", where);
        if ((rc = json_check_keys(jp, where, pkeys, e))) return rc;
        const char *pname;
        if ((rc = json_get_str(jp, "name", true, 32, &pname, where, e))) return rc;
        int ph = phase_parse(pname);
        if (ph < 0)
            return serr_set(e, SE_INVAL,
                            "%s.name: \"%s\" is not one of network, security, data, compute, "
                            "integration, validation",
                            where, pname);
        if (ph <= last_phase)
            return serr_set(e, SE_INVAL,
                            "%s.name: \"%s\" is out of order or repeated (order: network, security, "
                            "data, compute, integration, validation)",
                            where, pname);
        last_phase = ph;
        json_t *steps = json_object_get(jp, "steps");
        if (!json_is_array(steps) || json_array_size(steps) == 0)
            return serr_set(e, SE_INVAL, "%s.steps: must be a non-empty list", where);
        size_t si;
        json_t *js;
        json_array_foreach(steps, si, js) {
            if (out->nsteps >= TPL_MAX_STEPS)
                return serr_set(e, SE_LIMIT, "spec: at most %d steps", TPL_MAX_STEPS);
            char swhere[128];
            str_fmt_cut(swhere, sizeof(swhere), "%s.steps[%zu]", where, si);
            tpl_step *st = &out->steps[out->nsteps];
            if ((rc = parse_step(js, ph, st, swhere, e))) return rc;
            for (int k = 0; k < out->nsteps; k++)
                if (strcmp(out->steps[k].name, st->name) == 0)
                    return serr_set(e, SE_INVAL, "%s.name: \"%s\" is used twice", swhere, st->name);
            if (st->kind == TK_PROCESS && st->replicas > out->pool_max[st->pool])
                return serr_set(e, SE_INVAL, "%s.replicas: %d is above spec.pools.%s.maxReplicas %d",
                                swhere, st->replicas, tpl_pool_names[st->pool],
                                out->pool_max[st->pool]);
            if (st->kind == TK_PROCESS && out->pool_declared[st->pool] &&
                st->replicas < out->pool_min[st->pool])
                return serr_set(e, SE_INVAL, "%s.replicas: %d is below spec.pools.%s.minReplicas %d",
                                swhere, st->replicas, tpl_pool_names[st->pool],
                                out->pool_min[st->pool]);
            if (st->kind == TK_PROCESS && st->endpoint) {
                if (out->endpoint_step >= 0)
                    return serr_set(e, SE_INVAL, "%s.endpoint: only one step can be the endpoint",
                                    swhere);
                out->endpoint_step = out->nsteps;
            }
            out->nsteps++;
        }
    }
    if (out->endpoint_step < 0) {
        /* The stamp's endpoint defaults to the first serving process in the
         * general pool: the one the front door will send traffic to. */
        for (int k = 0; k < out->nsteps; k++)
            if (out->steps[k].kind == TK_PROCESS && out->steps[k].pool == POOL_GENERAL &&
                out->steps[k].ports > 0 && out->steps[k].replicas > 0) {
                out->endpoint_step = k;
                break;
            }
    }
    if (out->endpoint_step >= 0 && out->steps[out->endpoint_step].replicas == 0)
        return serr_set(e, SE_INVAL, "spec: the endpoint step \"%s\" has 0 replicas",
                        out->steps[out->endpoint_step].name);
    return 0;
}
