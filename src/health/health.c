/*
 * health.c - StampHealthCheck parsing and the results table (health.h).
 */
#include "health/health.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/template.h"
#include "util/util.h"

#define HC_TABLE_MAX 8192

const char *const hc_type_names[HC_NTYPES] = {"http", "tcp", "exec", "threshold", "process"};
const char *const hc_action_names[3] = {"redeploy", "drain", "alert"};
const char *const hc_state_names[3] = {"Unknown", "Passing", "Failing"};

/* ---- parsing ---- */

static int get_dur(json_t *o, const char *key, int64_t dflt, int64_t *out, const char *where, serr *e) {
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_string(v) || parse_duration_ms(json_string_value(v), out) != 0 || *out <= 0)
        return serr_set(e, SE_INVAL, "%s.%s: not a duration like 10s or 500ms", where, key);
    return 0;
}

/* An optional string copied into a buffer of its own (a check outlives
 * the manifest it came from). */
static int get_str(json_t *o, const char *key, char *out, size_t len, const char *where, serr *e) {
    const char *v;
    int rc = json_get_str(o, key, false, len - 1, &v, where, e);
    if (rc == 0 && v) str_copy(out, len, v);
    return rc;
}

int hc_expr_parse(const char *text, hc_expr *x, serr *e) {
    memset(x, 0, sizeof(*x));
    if (!str_copy(x->text, sizeof(x->text), text)) return serr_set(e, SE_INVAL, "expression too long");
    const char *p = text;
    while (*p == ' ') p++;
    size_t n = 0;
    while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z') ||
           (p[n] >= '0' && p[n] <= '9') || p[n] == '_' || p[n] == ':')
        n++;
    if (n == 0 || n >= sizeof(x->metric))
        return serr_set(e, SE_INVAL, "\"%s\": expected METRIC OP VALUE, like data_latency < 10ms", text);
    memcpy(x->metric, p, n);
    p += n;
    while (*p == ' ') p++;
    static const struct {
        const char *s;
        int op;
    } ops[] = {{"<=", OP_LE}, {">=", OP_GE}, {"==", OP_EQ}, {"!=", OP_NE}, {"<", OP_LT}, {">", OP_GT}};
    size_t i;
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strncmp(p, ops[i].s, strlen(ops[i].s)) == 0) break;
    if (i == sizeof(ops) / sizeof(ops[0]))
        return serr_set(e, SE_INVAL, "\"%s\": expected one of < <= > >= == != after %s", text, x->metric);
    x->op = ops[i].op;
    p += strlen(ops[i].s);
    while (*p == ' ') p++;
    char *end;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v)) return serr_set(e, SE_INVAL, "\"%s\": expected a number after the operator", text);
    double to_s = -1;
    if (strncmp(end, "ns", 2) == 0) to_s = 1e-9, end += 2;
    else if (strncmp(end, "us", 2) == 0) to_s = 1e-6, end += 2;
    else if (strncmp(end, "ms", 2) == 0) to_s = 1e-3, end += 2;
    else if (*end == 's') to_s = 1, end += 1;
    while (*end == ' ') end++;
    if (*end != '\0') return serr_set(e, SE_INVAL, "\"%s\": unexpected \"%s\" (units: ns, us, ms, s)", text, end);
    if (to_s > 0) {
        size_t ml = strlen(x->metric);
        bool seconds = ml > 8 && strcmp(x->metric + ml - 8, "_seconds") == 0;
        v = seconds ? v * to_s : v * to_s * 1000.0;
    }
    x->value = v;
    return 0;
}

bool hc_expr_holds(const hc_expr *x, double v) {
    switch (x->op) {
    case OP_LT: return v < x->value;
    case OP_LE: return v <= x->value;
    case OP_GT: return v > x->value;
    case OP_GE: return v >= x->value;
    case OP_EQ: return v == x->value;
    default: return v != x->value;
    }
}

static int parse_check(json_t *js, hc_check *c, const char *where, serr *e) {
    static const char *const keys[] = {"name", "type", "endpoint", "expectedStatus", "command",
                                       "checks", "interval", "timeout", "healthyThreshold",
                                       "unhealthyThreshold", NULL};
    int rc;
    memset(c, 0, sizeof(*c));
    if (!json_is_object(js)) return serr_set(e, SE_INVAL, "%s: must be a mapping", where);
    if ((rc = json_check_keys(js, where, keys, e))) return rc;
    if ((rc = get_str(js, "name", c->name, sizeof(c->name), where, e))) return rc;
    if (c->name[0] == '\0' || !name_valid(c->name, HC_NAME_MAX - 1))
        return serr_set(e, SE_INVAL, "%s.name: required, lowercase letters, digits and '-'", where);
    char type[32] = "";
    if ((rc = get_str(js, "type", type, sizeof(type), where, e))) return rc;
    if ((rc = get_str(js, "endpoint", c->path, sizeof(c->path), where, e))) return rc;
    if ((rc = get_str(js, "command", c->command, sizeof(c->command), where, e))) return rc;
    json_t *exprs = json_object_get(js, "checks");
    if (type[0]) {
        int t;
        for (t = 0; t < HC_NTYPES; t++)
            if (strcmp(type, hc_type_names[t]) == 0) break;
        if (t == HC_NTYPES)
            return serr_set(e, SE_INVAL, "%s.type: \"%s\" is not http, tcp, exec, threshold or process",
                            where, type);
        c->type = t;
    } else if (c->path[0]) c->type = HC_HTTP;
    else if (c->command[0]) c->type = HC_EXEC;
    else if (exprs) c->type = HC_THRESHOLD;
    else c->type = HC_PROCESS;
    if (c->type == HC_HTTP && c->path[0] == '\0') str_copy(c->path, sizeof(c->path), "/health");
    if (c->type == HC_HTTP && c->path[0] != '/')
        return serr_set(e, SE_INVAL, "%s.endpoint: must start with /", where);
    if (c->type == HC_EXEC && c->command[0] == '\0')
        return serr_set(e, SE_INVAL, "%s.command: required for an exec check", where);
    if ((c->path[0] && c->type != HC_HTTP) || (c->command[0] && c->type != HC_EXEC) ||
        (exprs && c->type != HC_THRESHOLD))
        return serr_set(e, SE_INVAL, "%s: endpoint, command and checks belong to http, exec and threshold checks",
                        where);
    if (c->type == HC_THRESHOLD) {
        if (!json_is_array(exprs) || json_array_size(exprs) == 0 || json_array_size(exprs) > HC_MAX_EXPRS)
            return serr_set(e, SE_INVAL, "%s.checks: a list of 1 to %d expressions", where, HC_MAX_EXPRS);
        size_t i;
        json_t *x;
        json_array_foreach(exprs, i, x) {
            if (!json_is_string(x))
                return serr_set(e, SE_INVAL, "%s.checks[%zu]: must be a string like \"data_latency < 10ms\"",
                                where, i);
            if ((rc = hc_expr_parse(json_string_value(x), &c->exprs[i], e)))
                return serr_wrap(e, "%s.checks[%zu]", where, i);
        }
        c->nexprs = (int)json_array_size(exprs);
    }
    if ((rc = json_get_int(js, "expectedStatus", 200, 100, 599, &c->expect_status, where, e))) return rc;
    if ((rc = get_dur(js, "interval", 10000, &c->interval_ms, where, e))) return rc;
    if ((rc = get_dur(js, "timeout", 5000, &c->timeout_ms, where, e))) return rc;
    if (c->timeout_ms > 300000) return serr_set(e, SE_INVAL, "%s.timeout: at most 5m", where);
    if ((rc = json_get_int(js, "healthyThreshold", 2, 1, 100, &c->healthy_threshold, where, e))) return rc;
    if ((rc = json_get_int(js, "unhealthyThreshold", 3, 1, 100, &c->unhealthy_threshold, where, e))) return rc;
    return 0;
}

int hc_parse(json_t *spec, hc_set *out, serr *e) {
    static const char *const keys[] = {"checks", "recovery", NULL};
    static const char *const rkeys[] = {"enabled", "maxRetries", "action", NULL};
    int rc;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(spec)) return serr_set(e, SE_INVAL, "spec: required mapping");
    if ((rc = json_check_keys(spec, "spec", keys, e))) return rc;
    json_t *checks = json_object_get(spec, "checks");
    if (!json_is_array(checks) || json_array_size(checks) == 0 || json_array_size(checks) > HC_MAX_CHECKS)
        return serr_set(e, SE_INVAL, "spec.checks: a list of 1 to %d checks", HC_MAX_CHECKS);
    size_t i;
    json_t *c;
    json_array_foreach(checks, i, c) {
        char where[48]; /* for messages; always fits */
        str_fmt_cut(where, sizeof(where), "spec.checks[%zu]", i);
        if ((rc = parse_check(c, &out->checks[i], where, e))) return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->checks[j].name, out->checks[i].name) == 0)
                return serr_set(e, SE_INVAL, "%s.name: \"%s\" is used twice", where, out->checks[i].name);
    }
    out->n = (int)json_array_size(checks);
    json_t *r = json_object_get(spec, "recovery");
    out->recovery = true;
    out->max_retries = 3;
    out->action = HA_REDEPLOY;
    if (r) {
        if (!json_is_object(r)) return serr_set(e, SE_INVAL, "spec.recovery: must be a mapping");
        if ((rc = json_check_keys(r, "spec.recovery", rkeys, e))) return rc;
        if ((rc = json_get_bool(r, "enabled", true, &out->recovery, "spec.recovery", e))) return rc;
        if ((rc = json_get_int(r, "maxRetries", 3, 0, 100, &out->max_retries, "spec.recovery", e))) return rc;
        char action[32] = "redeploy";
        if ((rc = get_str(r, "action", action, sizeof(action), "spec.recovery", e))) return rc;
        int a;
        for (a = 0; a < 3; a++)
            if (strcmp(action, hc_action_names[a]) == 0) break;
        if (a == 3)
            return serr_set(e, SE_INVAL, "spec.recovery.action: \"%s\" is not redeploy, drain or alert", action);
        out->action = a;
    }
    str_copy(out->source, sizeof(out->source), "spec");
    return 0;
}

void hc_default(const stamp_config *cfg, const char *health_path, hc_set *out) {
    memset(out, 0, sizeof(*out));
    str_copy(out->source, sizeof(out->source), "default");
    hc_check *c = &out->checks[0];
    str_copy(c->name, sizeof(c->name), "health");
    c->type = HC_HTTP;
    /* A template's healthPath is at most 255 bytes (template.c): it fits. */
    bool fits = str_copy(c->path, sizeof(c->path), health_path ? health_path : "/health");
    assert(fits);
    (void)fits;
    c->expect_status = 200;
    c->interval_ms = cfg->health_interval_ms;
    c->timeout_ms = cfg->probe_timeout_ms;
    c->healthy_threshold = 1;
    c->unhealthy_threshold = (int)cfg->health_unhealthy_threshold;
    out->n = 1;
    out->recovery = true;
    out->max_retries = (int)cfg->health_max_retries;
    out->action = HA_REDEPLOY;
}

/* ---- results ---- */

typedef struct hc_row {
    char stamp[64];
    char check[HC_NAME_MAX];
    hc_result r;
    int64_t next_mono;
} hc_row;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static hc_row rows[HC_TABLE_MAX];
static int nrows;

/* Caller holds mu (not recursive: a trylock fails while anyone holds it).
 * Keys are kept whole: a name too long for its field (stamp names are at
 * most 63 bytes, check names under HC_NAME_MAX, so only a caller's mistake)
 * has no row, rather than a cut key that would share another's. */
static hc_row *row(const char *stamp, const char *check, bool create) {
    assert(pthread_mutex_trylock(&mu) == EBUSY);
    assert(nrows >= 0 && nrows <= HC_TABLE_MAX);
    if (strlen(stamp) >= sizeof(rows[0].stamp) || strlen(check) >= sizeof(rows[0].check))
        return NULL;
    for (int i = 0; i < nrows; i++)
        if (strcmp(rows[i].stamp, stamp) == 0 && strcmp(rows[i].check, check) == 0) return &rows[i];
    if (!create) return NULL;
    hc_row *x = NULL;
    if (nrows < HC_TABLE_MAX) x = &rows[nrows++];
    else {
        /* Full: reuse the row run longest ago (a stamp long gone). */
        x = &rows[0];
        for (int i = 1; i < nrows; i++)
            if (rows[i].r.last_mono < x->r.last_mono) x = &rows[i];
    }
    memset(x, 0, sizeof(*x));
    str_copy(x->stamp, sizeof(x->stamp), stamp);
    str_copy(x->check, sizeof(x->check), check);
    return x;
}

int64_t hc_due_in(const char *stamp, const hc_check *c) {
    pthread_mutex_lock(&mu);
    hc_row *x = row(stamp, c->name, false);
    int64_t d = x ? x->next_mono - mono_ms() : 0;
    pthread_mutex_unlock(&mu);
    return d < 0 ? 0 : d;
}

/* With mu held. */
static int record_locked(const char *stamp, const hc_check *c, bool ok, int64_t latency_ms,
                         const char *err) {
    hc_row *x = row(stamp, c->name, true);
    if (x == NULL) {
        pthread_mutex_unlock(&mu);
        return HS_UNKNOWN;
    }
    x->r.runs++;
    x->r.latency_ms = latency_ms;
    x->r.last_ms = now_ms();
    x->r.last_mono = mono_ms();
    x->next_mono = mono_ms() + c->interval_ms;
    if (ok) {
        x->r.passes++;
        x->r.fails = 0;
        x->r.last_error[0] = '\0';
        if (x->r.passes >= c->healthy_threshold) x->r.state = HS_PASSING;
    } else {
        x->r.fails++;
        x->r.passes = 0;
        /* For people, and sent as JSON: cut, but never inside a UTF-8
         * character (jansson refuses a string that is not UTF-8). */
        str_fmt_cut(x->r.last_error, sizeof(x->r.last_error), "%s", err ? err : "failed");
        if (x->r.fails >= c->unhealthy_threshold) x->r.state = HS_FAILING;
    }
    return x->r.state;
}

int hc_record(const char *stamp, const hc_check *c, bool ok, int64_t latency_ms, const char *err) {
    pthread_mutex_lock(&mu);
    int st = record_locked(stamp, c, ok, latency_ms, err);
    pthread_mutex_unlock(&mu);
    return st;
}

bool hc_get(const char *stamp, const char *check, hc_result *out) {
    pthread_mutex_lock(&mu);
    hc_row *x = row(stamp, check, false);
    if (x) *out = x->r;
    else memset(out, 0, sizeof(*out));
    pthread_mutex_unlock(&mu);
    return x != NULL;
}

/* The last resets, newest last: a probe started before its stamp's reset
 * (a redeploy, an activation) must not record into the fresh state.  A
 * ring: a reset older than HC_RESETS_MAX others is forgotten, by then no
 * probe of it is still running. */
#define HC_RESETS_MAX 256
static struct {
    char stamp[64];
    int64_t mono;
} resets[HC_RESETS_MAX];
static int reset_next;

int hc_record_since(const char *stamp, const hc_check *c, int64_t started_mono, bool ok,
                    int64_t latency_ms, const char *err) {
    pthread_mutex_lock(&mu);
    for (int i = 0; i < HC_RESETS_MAX; i++)
        if (resets[i].mono >= started_mono && strcmp(resets[i].stamp, stamp) == 0) {
            pthread_mutex_unlock(&mu);
            return -1;
        }
    int st = record_locked(stamp, c, ok, latency_ms, err);
    pthread_mutex_unlock(&mu);
    return st;
}

void hc_reset(const char *stamp) {
    pthread_mutex_lock(&mu);
    str_copy(resets[reset_next].stamp, sizeof(resets[0].stamp), stamp);
    resets[reset_next].mono = mono_ms();
    reset_next = (reset_next + 1) % HC_RESETS_MAX;
    for (int i = 0; i < nrows;) {
        if (strcmp(rows[i].stamp, stamp) == 0) rows[i] = rows[--nrows];
        else i++;
    }
    pthread_mutex_unlock(&mu);
}

json_t *hc_snapshot(const char *stamp, const hc_set *set) {
    json_t *arr = json_array();
    for (int i = 0; i < set->n; i++) {
        const hc_check *c = &set->checks[i];
        hc_result r;
        hc_get(stamp, c->name, &r);
        /* target describes the check for people; HC_MAX_EXPRS long
         * expressions do not all fit, and a cut one still reads (and stays
         * UTF-8, as json_pack needs). */
        char target[1100];
        assert(c->type >= 0 && c->type < HC_NTYPES && r.state >= 0 && r.state < 3);
        assert(c->nexprs >= 0 && c->nexprs <= HC_MAX_EXPRS);
        switch (c->type) {
        case HC_HTTP: str_fmt_cut(target, sizeof(target), "GET %s -> %d", c->path, c->expect_status); break;
        case HC_EXEC: str_fmt_cut(target, sizeof(target), "%s", c->command); break;
        case HC_THRESHOLD: {
            size_t o = 0;
            target[0] = '\0';
            for (int k = 0; k < c->nexprs; k++)
                o += str_fmt_cut(target + o, sizeof(target) - o, "%s%s", k ? ", " : "", c->exprs[k].text);
            break;
        }
        case HC_TCP: str_copy(target, sizeof(target), "connect"); break;
        default: str_copy(target, sizeof(target), "replicas running"); break;
        }
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:I,s:s,s:I,s:I,s:I,s:i,s:i}", "name", c->name,
                           "type", hc_type_names[c->type], "target", target, "state",
                           hc_state_names[r.state], "passes", r.passes, "fails", r.fails,
                           "latencyMs", (json_int_t)r.latency_ms, "lastError", r.last_error,
                           "lastMs", (json_int_t)r.last_ms, "runs", (json_int_t)r.runs,
                           "intervalMs", (json_int_t)c->interval_ms, "healthyThreshold",
                           c->healthy_threshold, "unhealthyThreshold", c->unhealthy_threshold));
    }
    assert(set->action >= 0 && set->action < 3);
    return json_pack("{s:s,s:o,s:{s:b,s:s,s:i}}", "source", set->source, "checks", arr, "recovery",
                     "enabled", set->recovery, "action", hc_action_names[set->action], "maxRetries",
                     set->max_retries);
}
