/*
 * spec.c - StampAutoscaler spec parsing and validation (spec.h).  Each
 * section has its own small parser that names the field it refuses; the
 * bounds are here, next to the fields they guard.
 */
#include "autoscale/spec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/naming.h"
#include "core/template.h"
#include "util/util.h"

#define DAY_MS (24LL * 3600 * 1000)
#define WHERE_MAX 64

const char *const as_metric_names[AM_N] = {
    "cpu_utilization", "memory_utilization", "request_latency_p99", "active_connections",
    "queue_depth",     "active_jobs",        "prometheus",
};
const char *const as_dir_names[2] = {"scaleOut", "scaleIn"};

int as_metric_parse(const char *name) {
    for (int m = 0; name && m < AM_N; m++)
        if (strcmp(as_metric_names[m], name) == 0) return m;
    return -1;
}

as_unit as_metric_unit(int metric) {
    switch (metric) {
    case AM_CPU:
    case AM_MEMORY:
    case AM_ACTIVE_JOBS: return AU_PERCENT;
    case AM_LATENCY_P99: return AU_SECONDS;
    case AM_CONNECTIONS:
    case AM_QUEUE_DEPTH: return AU_COUNT;
    default: return AU_PLAIN;
    }
}

const as_direction *as_spec_dir(const as_spec *sp, int dir) { return dir == AS_OUT ? &sp->out : &sp->in; }

char *as_value_fmt(int metric, double v, char *buf, size_t len) {
    switch (as_metric_unit(metric)) {
    case AU_PERCENT: str_fmt_cut(buf, len, "%.4g%%", v); break;
    case AU_SECONDS:
        if (v != 0 && fabs(v) < 1) str_fmt_cut(buf, len, "%.4gms", v * 1000);
        else str_fmt_cut(buf, len, "%.4gs", v);
        break;
    default:
        if (v == floor(v) && fabs(v) < 1e15) str_fmt_cut(buf, len, "%.0f", v);
        else str_fmt_cut(buf, len, "%.2f", v);
        break;
    }
    return buf;
}

/* FNV-1a over the fields that make a trigger what it is. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

uint64_t as_trigger_sig(const as_trigger *t) {
    uint64_t h = 14695981039346656037ULL;
    h = fnv(h, &t->metric, sizeof(t->metric));
    h = fnv(h, &t->threshold, sizeof(t->threshold));
    h = fnv(h, &t->duration_ms, sizeof(t->duration_ms));
    h = fnv(h, t->query, strlen(t->query));
    return h ? h : 1; /* 0 means "no trigger" in a state */
}

/* ---- fields ---- */

/* A duration written with its unit, lo..hi ms; absent gives dflt (or an
 * error when dflt < 0). */
static int get_duration(json_t *o, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out,
                        const char *where, serr *e) {
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        if (dflt < 0) return serr_set(e, SE_INVAL, "%s.%s: required (a duration like 5m)", where, key);
        *out = dflt;
        return 0;
    }
    char lo_s[FMT_DURATION_LEN], hi_s[FMT_DURATION_LEN];
    fmt_duration(lo, lo_s, sizeof(lo_s));
    fmt_duration(hi, hi_s, sizeof(hi_s));
    if (json_is_number(v))
        return serr_set(e, SE_INVAL, "%s.%s: %g has no unit: write a duration like 5m, 90s or 500ms",
                        where, key, json_number_value(v));
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) > 32 || parse_duration_ms(s, out) != 0)
        return serr_set(e, SE_INVAL, "%s.%s: not a duration like 5m, 90s or 1h30m", where, key);
    if (strspn(s, "0123456789") == strlen(s))
        return serr_set(e, SE_INVAL, "%s.%s: \"%s\" has no unit: write %ss or %sm", where, key, s, s, s);
    if (*out < lo || *out > hi)
        return serr_set(e, SE_INVAL, "%s.%s: \"%s\" is out of range (%s to %s)", where, key, s, lo_s, hi_s);
    return 0;
}

/* A number with an optional suffix: the whole string must be used. */
static bool split_number(const char *s, double *v, const char **suffix) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (end == s || errno != 0 || !isfinite(*v)) return false;
    *suffix = end;
    return true;
}

/* Long: one case per unit, each with the message that tells how to write
 * it the seed's way. */
static int parse_threshold(int metric, json_t *v, double *out, const char *where, serr *e) {
    const char *mname = as_metric_names[metric];
    const char *s = json_string_value(v);
    double x;
    const char *suffix = "";
    if (v == NULL) return serr_set(e, SE_INVAL, "%s.threshold: required", where);
    if (json_is_number(v)) x = json_number_value(v);
    else if (s == NULL || strlen(s) > 31 || !split_number(s, &x, &suffix))
        return serr_set(e, SE_INVAL, "%s.threshold: must be a number (with a unit for request_latency_p99)",
                        where);
    switch (as_metric_unit(metric)) {
    case AU_PERCENT:
        if (*suffix && strcmp(suffix, "%") != 0)
            return serr_set(e, SE_INVAL, "%s.threshold: \"%s\": %s is a percentage (write %g or %g%%)", where,
                            s, mname, x, x);
        if (x < 0 || x > 100)
            return serr_set(e, SE_INVAL, "%s.threshold: %g%% is not a percentage from 0 to 100", where, x);
        break;
    case AU_SECONDS: {
        double mul = 0;
        if (strcmp(suffix, "ms") == 0) mul = 1e-3;
        else if (strcmp(suffix, "s") == 0) mul = 1;
        else if (strcmp(suffix, "us") == 0) mul = 1e-6;
        if (mul == 0 && (s == NULL || *suffix == '\0'))
            return serr_set(e, SE_INVAL,
                            "%s.threshold: %g has no unit: %s is a time, write %gms (or %gs)", where, x,
                            mname, x, x);
        if (mul == 0)
            return serr_set(e, SE_INVAL, "%s.threshold: \"%s\": unknown unit \"%s\" (ms, s or us, like 500ms)",
                            where, s, suffix);
        x *= mul;
        if (x <= 0 || x > 3600)
            return serr_set(e, SE_INVAL, "%s.threshold: \"%s\" is out of range (more than 0, at most 1h)", where,
                            s);
        break;
    }
    case AU_COUNT:
        if (*suffix)
            return serr_set(e, SE_INVAL, "%s.threshold: \"%s\": %s is a count (write a number like 1000)", where,
                            s, mname);
        if (x < 0 || x > 1e9)
            return serr_set(e, SE_INVAL, "%s.threshold: %g is not a count from 0 to 1000000000", where, x);
        break;
    default:
        if (*suffix)
            return serr_set(e, SE_INVAL,
                            "%s.threshold: \"%s\": a prometheus threshold is a plain number in the query's unit",
                            where, s);
        if (fabs(x) > 1e15) return serr_set(e, SE_INVAL, "%s.threshold: %g is out of range", where, x);
        break;
    }
    *out = x;
    return 0;
}

static int parse_trigger(json_t *js, as_trigger *t, const char *where, serr *e) {
    static const char *const keys[] = {"metric", "threshold", "duration", "query", NULL};
    int rc;
    memset(t, 0, sizeof(*t));
    if (!json_is_object(js)) return serr_set(e, SE_INVAL, "%s: must be a mapping {metric, threshold, duration}", where);
    if ((rc = json_check_keys(js, where, keys, e))) return rc;
    const char *metric;
    if ((rc = json_get_str(js, "metric", true, 64, &metric, where, e))) return rc;
    t->metric = as_metric_parse(metric);
    if (t->metric < 0)
        return serr_set(e, SE_INVAL,
                        "%s.metric: \"%s\" is not one of cpu_utilization, memory_utilization, "
                        "request_latency_p99, active_connections, queue_depth, active_jobs, prometheus",
                        where, metric);
    const char *query = NULL;
    if ((rc = json_get_str(js, "query", false, AS_QUERY_MAX - 1, &query, where, e))) return rc;
    if (t->metric == AM_PROMETHEUS && query == NULL)
        return serr_set(e, SE_INVAL, "%s.query: required for a prometheus trigger (a PromQL expression)", where);
    if (t->metric != AM_PROMETHEUS && query)
        return serr_set(e, SE_INVAL, "%s.query: only a prometheus trigger has a query", where);
    if (query) str_copy(t->query, sizeof(t->query), query);
    if ((rc = parse_threshold(t->metric, json_object_get(js, "threshold"), &t->threshold, where, e))) return rc;
    return get_duration(js, "duration", -1, 0, DAY_MS, &t->duration_ms, where, e);
}

static int parse_direction(json_t *spec, int dir, as_direction *d, serr *e) {
    static const char *const okeys[] = {"triggers", "cooldown", "maxStamps", NULL};
    static const char *const ikeys[] = {"triggers", "cooldown", "minStamps", NULL};
    const char *name = as_dir_names[dir];
    char where[WHERE_MAX];
    str_fmt_cut(where, sizeof(where), "spec.%s", name);
    json_t *js = json_object_get(spec, name);
    int rc;
    if (js == NULL) return serr_set(e, SE_INVAL, "%s: required mapping (triggers, cooldown, %s)", where,
                                    dir == AS_OUT ? "maxStamps" : "minStamps");
    if (!json_is_object(js)) return serr_set(e, SE_INVAL, "%s: must be a mapping", where);
    if ((rc = json_check_keys(js, where, dir == AS_OUT ? okeys : ikeys, e))) return rc;
    json_t *tr = json_object_get(js, "triggers");
    if (!json_is_array(tr) || json_array_size(tr) == 0 || json_array_size(tr) > AS_MAX_TRIGGERS)
        return serr_set(e, SE_INVAL, "%s.triggers: a list of 1 to %d triggers", where, AS_MAX_TRIGGERS);
    size_t i;
    json_t *t;
    json_array_foreach(tr, i, t) {
        char tw[WHERE_MAX];
        str_fmt_cut(tw, sizeof(tw), "%s.triggers[%zu]", where, i);
        if ((rc = parse_trigger(t, &d->t[i], tw, e))) return rc;
    }
    d->n = (int)json_array_size(tr);
    if ((rc = get_duration(js, "cooldown", dir == AS_OUT ? 10 * 60000 : 30 * 60000, 0, DAY_MS,
                           &d->cooldown_ms, where, e)))
        return rc;
    if (dir == AS_OUT) {
        if (json_object_get(js, "maxStamps") == NULL)
            return serr_set(e, SE_INVAL, "%s.maxStamps: required (1 to %d)", where, AS_MAX_STAMPS);
        return json_get_int(js, "maxStamps", 0, 1, AS_MAX_STAMPS, &d->limit, where, e);
    }
    return json_get_int(js, "minStamps", 2, 0, AS_MAX_STAMPS, &d->limit, where, e);
}

static int check_region_name(const char *r, const char *where, serr *e) {
    if (region_code(r) != NULL) return 0;
    char known[1024];
    region_list(known, sizeof(known));
    return serr_set(e, SE_INVAL, "%s: \"%s\" is not a region (known: %s)", where, r, known);
}

static int parse_regions(json_t *spec, as_spec *sp, serr *e) {
    json_t *rs = json_object_get(spec, "regions");
    if (rs == NULL) return 0;
    if (!json_is_array(rs) || json_array_size(rs) == 0 || json_array_size(rs) > AS_MAX_REGIONS)
        return serr_set(e, SE_INVAL, "spec.regions: a list of 1 to %d region names (or leave it out)",
                        AS_MAX_REGIONS);
    size_t i;
    json_t *r;
    json_array_foreach(rs, i, r) {
        char where[WHERE_MAX];
        str_fmt_cut(where, sizeof(where), "spec.regions[%zu]", i);
        const char *s = json_string_value(r);
        if (s == NULL) return serr_set(e, SE_INVAL, "%s: must be a region name like westeurope", where);
        int rc = check_region_name(s, where, e);
        if (rc) return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(sp->regions[j], s) == 0)
                return serr_set(e, SE_INVAL, "%s: \"%s\" is listed twice", where, s);
        str_copy(sp->regions[i], sizeof(sp->regions[i]), s); /* a known region: fits */
    }
    sp->nregions = (int)json_array_size(rs);
    return 0;
}

static int parse_minimums(json_t *spec, as_spec *sp, serr *e) {
    json_t *ms = json_object_get(spec, "regionMinimums");
    if (ms == NULL) return 0;
    if (!json_is_object(ms) || json_object_size(ms) > AS_MAX_REGIONS)
        return serr_set(e, SE_INVAL, "spec.regionMinimums: a mapping of at most %d regions to a minimum",
                        AS_MAX_REGIONS);
    const char *k;
    json_t *v;
    int sum = 0;
    json_object_foreach(ms, k, v) {
        char where[WHERE_MAX];
        str_fmt_cut(where, sizeof(where), "spec.regionMinimums.%s", k);
        int rc = check_region_name(k, where, e);
        if (rc) return rc;
        bool listed = sp->nregions == 0;
        for (int i = 0; i < sp->nregions; i++)
            if (strcmp(sp->regions[i], k) == 0) listed = true;
        if (!listed) return serr_set(e, SE_INVAL, "%s: %s is not in spec.regions", where, k);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > sp->out.limit)
            return serr_set(e, SE_INVAL, "%s: must be an integer from 0 to maxStamps (%d)", where, sp->out.limit);
        as_region_min *m = &sp->mins[sp->nmins++];
        str_copy(m->region, sizeof(m->region), k);
        m->min = (int)json_integer_value(v);
        sum += m->min;
    }
    if (sum > sp->out.limit)
        return serr_set(e, SE_INVAL, "spec.regionMinimums: they add up to %d, more than maxStamps (%d)", sum,
                        sp->out.limit);
    return 0;
}

static int parse_standby(json_t *spec, as_spec *sp, serr *e) {
    static const char *const keys[] = {"maxAge", "scaleDown", NULL};
    static const char *const pkeys[] = {"generalPool", "gpuPool", NULL};
    sp->standby_max_age_ms = 72 * 3600 * 1000LL;
    json_t *sb = json_object_get(spec, "standby");
    int rc;
    if (sb == NULL) return 0;
    if (!json_is_object(sb)) return serr_set(e, SE_INVAL, "spec.standby: must be a mapping");
    if ((rc = json_check_keys(sb, "spec.standby", keys, e))) return rc;
    if ((rc = get_duration(sb, "maxAge", sp->standby_max_age_ms, 60000, 90 * DAY_MS, &sp->standby_max_age_ms,
                           "spec.standby", e)))
        return rc;
    json_t *sd = json_object_get(sb, "scaleDown");
    if (sd == NULL) return 0;
    if (!json_is_object(sd)) return serr_set(e, SE_INVAL, "spec.standby.scaleDown: must be a mapping");
    if ((rc = json_check_keys(sd, "spec.standby.scaleDown", pkeys, e))) return rc;
    if ((rc = json_get_int(sd, "generalPool", 0, 0, 100, &sp->general_pool, "spec.standby.scaleDown", e)))
        return rc;
    return json_get_int(sd, "gpuPool", 0, 0, 100, &sp->gpu_pool, "spec.standby.scaleDown", e);
}

int as_spec_parse(json_t *spec, as_spec *sp, serr *e) {
    static const char *const keys[] = {"template", "regions", "regionMinimums", "paused", "interval", "step",
                                       "scaleOut", "scaleIn", "standby", NULL};
    int rc;
    memset(sp, 0, sizeof(*sp));
    if (!json_is_object(spec)) return serr_set(e, SE_INVAL, "spec: required mapping");
    if ((rc = json_check_keys(spec, "spec", keys, e))) return rc;
    const char *tname = NULL;
    if ((rc = json_get_str(spec, "template", false, AS_TEMPLATE_MAX - 1, &tname, "spec", e))) return rc;
    if (tname && !name_valid(tname, AS_TEMPLATE_MAX - 1))
        return serr_set(e, SE_INVAL, "spec.template: \"%s\" is not a StampTemplate name", tname);
    if (tname) str_copy(sp->template_name, sizeof(sp->template_name), tname);
    if ((rc = parse_regions(spec, sp, e))) return rc;
    if ((rc = json_get_bool(spec, "paused", false, &sp->paused, "spec", e))) return rc;
    if ((rc = get_duration(spec, "interval", 15000, 1000, 3600000, &sp->interval_ms, "spec", e))) return rc;
    if ((rc = json_get_int(spec, "step", 1, 1, AS_MAX_STEP, &sp->step, "spec", e))) return rc;
    if ((rc = parse_direction(spec, AS_OUT, &sp->out, e))) return rc;
    if ((rc = parse_direction(spec, AS_IN, &sp->in, e))) return rc;
    if (sp->in.limit > sp->out.limit)
        return serr_set(e, SE_INVAL, "spec.scaleIn.minStamps: %d is more than spec.scaleOut.maxStamps (%d)",
                        sp->in.limit, sp->out.limit);
    if ((rc = parse_minimums(spec, sp, e))) return rc;
    return parse_standby(spec, sp, e);
}

int as_spec_resolve_template(as_spec *sp, const char *const *templates, int n, serr *e) {
    if (sp->template_name[0]) {
        for (int i = 0; i < n; i++)
            if (strcmp(templates[i], sp->template_name) == 0) return 0;
        return serr_set(e, SE_NOTFOUND, "spec.template: StampTemplate %s not found", sp->template_name);
    }
    if (n == 1) {
        if (!str_copy(sp->template_name, sizeof(sp->template_name), templates[0]))
            return serr_set(e, SE_INVAL, "spec.template: the StampTemplate's name is too long");
        return 0;
    }
    if (n == 0) return serr_set(e, SE_NOTFOUND, "spec.template: no StampTemplate exists (apply one first)");
    char list[256];
    size_t o = 0;
    for (int i = 0; i < n; i++) o += str_fmt_cut(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", templates[i]);
    return serr_set(e, SE_INVAL, "spec.template: required when there are several StampTemplates (%s)", list);
}

int as_spec_region_min(const as_spec *sp, const char *region) {
    for (int i = 0; i < sp->nmins; i++)
        if (strcmp(sp->mins[i].region, region) == 0) return sp->mins[i].min;
    return 0;
}
