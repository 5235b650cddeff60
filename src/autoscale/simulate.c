/*
 * simulate.c - the what-if replay (simulate.h): a trace parser, a model
 * fleet, and a tick that feeds the model to as_decide and applies what it
 * decides.  The only I/O is sim_trace_load's read of the trace file.
 */
#include "autoscale/simulate.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define SIM_NAMES_MAX 1024 /* stamps a trace may name */

typedef struct trow {
    int64_t t_ms;
    int metric;
    bool ok;
    double v;
    int stamp; /* index into names, -1: fleet-wide */
} trow;

struct sim_trace {
    trow *rows;
    int n, cap;
    char (*names)[STAMP_NAME_MAX + 1];
    int nnames;
};

typedef struct mstamp {
    int64_t started_ms, until_ms; /* a transition under way (until 0: none) */
    int name_idx;                 /* in the trace's names, -1: none */
} mstamp;

typedef struct override {
    bool set, ok;
    double v;
} override;

struct sim {
    as_spec sp;
    const sim_trace *tr;
    int64_t warm_ms, cold_ms, drain_ms;
    char prefix[32];
    as_stamp *st;
    mstamp *ms;
    int n;
    as_world w;
    as_state state;
    as_decision *d;
    int next_row;
    bool fset[AM_N], fok[AM_N];
    double fv[AM_N];
    override *ovr; /* nnames * AM_N */
    int n0;
    int64_t t, end;
    int last_block, last_block_dir; /* to print a block once, not every tick */
    /* the summary */
    int64_t evals, ms_active, ms_standby, ms_starting, ms_draining;
    int warm, cold, drains, retires, peak;
    int64_t blocked_by[AB_N];
    int64_t over_ms[AS_MAX_TRIGGERS];
};

/* ---- the trace ---- */

void sim_trace_free(sim_trace *t) {
    if (t == NULL) return;
    free(t->rows);
    free(t->names);
    free(t);
}

int64_t sim_trace_end_ms(const sim_trace *t) { return t->n ? t->rows[t->n - 1].t_ms : 0; }

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
    return s;
}

static bool whole_number(const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && *end == '\0' && errno == 0 && isfinite(*v);
}

static int name_index(sim_trace *t, const char *name, int line, serr *e) {
    for (int i = 0; i < t->nnames; i++)
        if (strcmp(t->names[i], name) == 0) return i;
    if (!name_valid(name, STAMP_NAME_MAX))
        return serr_set(e, SE_INVAL, "trace line %d: stamp \"%s\" is not a stamp name", line, name);
    if (t->nnames == SIM_NAMES_MAX)
        return serr_set(e, SE_LIMIT, "trace line %d: more than %d stamps named", line, SIM_NAMES_MAX);
    if (t->names == NULL && (t->names = calloc(SIM_NAMES_MAX, sizeof(*t->names))) == NULL)
        return serr_set(e, SE_NOMEM, "out of memory");
    str_copy(t->names[t->nnames], sizeof(t->names[0]), name);
    return t->nnames++;
}

/* Long: one check per field of a row, each naming the line. */
static int parse_row(sim_trace *t, char *line, int lineno, serr *e) {
    char *f[5];
    int nf = 0;
    f[nf++] = line;
    for (char *p = line; *p; p++)
        if (*p == ',') {
            *p = '\0';
            if (nf == 5) break;
            f[nf++] = p + 1;
        }
    if (nf < 3 || nf > 4)
        return serr_set(e, SE_INVAL, "trace line %d: expected t,metric,value[,stamp] (%d fields)", lineno, nf);
    for (int i = 0; i < nf; i++) f[i] = trim(f[i]);
    trow r = {.stamp = -1};
    double ts;
    if (!whole_number(f[0], &ts) || ts < 0 || ts > 1e9)
        return serr_set(e, SE_INVAL, "trace line %d: t \"%s\" is not a number of seconds from 0", lineno, f[0]);
    r.t_ms = llround(ts * 1000);
    if (t->n > 0 && r.t_ms < t->rows[t->n - 1].t_ms)
        return serr_set(e, SE_INVAL, "trace line %d: t %s is before the row above (rows must be in time order)",
                        lineno, f[0]);
    r.metric = as_metric_parse(f[1]);
    if (r.metric < 0)
        return serr_set(e, SE_INVAL,
                        "trace line %d: metric \"%s\" is not one of cpu_utilization, memory_utilization, "
                        "request_latency_p99, active_connections, queue_depth, active_jobs, prometheus",
                        lineno, f[1]);
    if (f[2][0] == '\0' || strcmp(f[2], "missing") == 0) r.ok = false;
    else if (whole_number(f[2], &r.v)) r.ok = true;
    else
        return serr_set(e, SE_INVAL, "trace line %d: value \"%s\" is not a number (or empty/missing)", lineno, f[2]);
    if (nf == 4 && f[3][0]) {
        if (r.metric == AM_PROMETHEUS)
            return serr_set(e, SE_INVAL, "trace line %d: a prometheus value is fleet-wide (no stamp)", lineno);
        if ((r.stamp = name_index(t, f[3], lineno, e)) < 0) return r.stamp;
    }
    if (t->n == SIM_TRACE_MAX_ROWS)
        return serr_set(e, SE_LIMIT, "trace line %d: more than %d rows", lineno, SIM_TRACE_MAX_ROWS);
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 256;
        trow *n = realloc(t->rows, (size_t)cap * sizeof(*n));
        if (n == NULL) return serr_set(e, SE_NOMEM, "out of memory");
        t->rows = n;
        t->cap = cap;
    }
    t->rows[t->n++] = r;
    return 0;
}

int sim_trace_parse(const char *text, size_t len, sim_trace **out, serr *e) {
    *out = NULL;
    if (len > SIM_TRACE_MAX_BYTES) return serr_set(e, SE_TOOBIG, "trace: more than %u bytes", SIM_TRACE_MAX_BYTES);
    sim_trace *t = calloc(1, sizeof(*t));
    char *buf = malloc(len + 1);
    int rc = 0, lineno = 0;
    bool first = true;
    if (t == NULL || buf == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (strlen(buf) != len) {
        rc = serr_set(e, SE_INVAL, "trace: holds a NUL byte (not a CSV text)");
        goto fail;
    }
    for (char *line = buf; line; ) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *l = trim(line);
        if (*l && first && str_has_prefix(l, "t,")) {
            first = false; /* the header */
        } else if (*l) {
            first = false;
            if ((rc = parse_row(t, l, lineno, e))) goto fail;
        }
        line = nl ? nl + 1 : NULL;
    }
    if (t->n == 0) {
        rc = serr_set(e, SE_INVAL, "trace: no rows (expected t,metric,value[,stamp])");
        goto fail;
    }
    free(buf);
    *out = t;
    return 0;
fail:
    free(buf);
    sim_trace_free(t);
    return rc;
}

int sim_trace_load(const char *path, sim_trace **out, serr *e) {
    char *text;
    size_t len;
    *out = NULL;
    int rc = read_file(path, SIM_TRACE_MAX_BYTES, &text, &len, e);
    if (rc) return serr_wrap(e, "trace %s", path);
    rc = sim_trace_parse(text, len, out, e);
    free(text);
    return rc;
}

/* ---- the model fleet ---- */

static bool governs(const as_spec *sp, const char *region) {
    if (sp->nregions == 0) return true;
    for (int i = 0; i < sp->nregions; i++)
        if (strcmp(sp->regions[i], region) == 0) return true;
    return false;
}

static int add_stamp(sim *s, const char *region, const char *id, int phase, serr *e) {
    if (s->n == AS_WORLD_MAX) return serr_set(e, SE_LIMIT, "the model fleet is full (%d stamps)", AS_WORLD_MAX);
    as_stamp *x = &s->st[s->n];
    memset(x, 0, sizeof(*x));
    int rc = stamp_name_build(s->prefix, region, id, x->name, sizeof(x->name), e);
    if (rc) return rc;
    str_copy(x->region, sizeof(x->region), region);
    str_copy(x->id, sizeof(x->id), id);
    x->phase = phase;
    x->governed = governs(&s->sp, region);
    s->ms[s->n] = (mstamp){.name_idx = -1};
    for (int i = 0; i < s->tr->nnames; i++)
        if (strcmp(s->tr->names[i], x->name) == 0) s->ms[s->n].name_idx = i;
    s->n++;
    return 0;
}

static int add_in_region(sim *s, const char *region, int count, int phase, serr *e) {
    for (int k = 0; k < count; k++) {
        char id[AS_ID_MAX];
        as_world w = {.stamps = s->st, .n = s->n};
        int rc = as_next_stamp_id(&w, region, NULL, 0, id, sizeof(id), e);
        if (rc || (rc = add_stamp(s, region, id, phase, e))) return rc;
        if (phase == AP_READY) s->st[s->n - 1].ready_since_ms = SIM_EPOCH_MS;
    }
    return 0;
}

/* Long: the three item forms of --initial, each checked, Active stamps
 * placed before Ready ones so their ids come first. */
static int parse_initial(sim *s, const char *spec_text, serr *e) {
    char buf[1024], first_region[AS_REGION_MAX] = "";
    if (!str_copy(buf, sizeof(buf), spec_text)) return serr_set(e, SE_INVAL, "--initial: too long");
    for (int pass = 0; pass < 2; pass++) { /* Active, then Ready */
        char tmp[1024];
        str_copy(tmp, sizeof(tmp), buf);
        for (char *item = tmp; item;) {
            char *comma = strchr(item, ',');
            if (comma) *comma = '\0';
            char *it = trim(item), *c1 = strchr(it, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            item = comma ? comma + 1 : NULL;
            if (*it == '\0') continue;
            if (c1 == NULL)
                return serr_set(e, SE_INVAL, "--initial: \"%s\": expected REGION:N, ready:N or REGION:ready:N", it);
            *c1 = '\0';
            const char *region = it, *count = c1 + 1;
            bool ready = false;
            if (c2) {
                *c2 = '\0';
                if (strcmp(c1 + 1, "ready") != 0)
                    return serr_set(e, SE_INVAL, "--initial: \"%s:%s\": expected REGION:ready:N", it, c1 + 1);
                ready = true;
                count = c2 + 1;
            } else if (strcmp(it, "ready") == 0) {
                ready = true;
                region = s->sp.nregions ? s->sp.regions[0] : first_region;
            }
            int64_t n;
            if (parse_i64(count, 0, AS_MAX_STAMPS, &n) != 0)
                return serr_set(e, SE_INVAL, "--initial: \"%s\" is not a count from 0 to %d", count, AS_MAX_STAMPS);
            if (region[0] == '\0')
                return serr_set(e, SE_INVAL, "--initial: ready:N needs spec.regions or a region named before it");
            if (region_code(region) == NULL) return serr_set(e, SE_INVAL, "--initial: \"%s\" is not a region", region);
            if (first_region[0] == '\0') str_copy(first_region, sizeof(first_region), region);
            if (ready != (pass == 1)) continue;
            int rc = add_in_region(s, region, (int)n, ready ? AP_READY : AP_ACTIVE, e);
            if (rc) return rc;
        }
    }
    return 0;
}

static int default_initial(sim *s, serr *e) {
    if (s->sp.nregions == 0) return serr_set(e, SE_INVAL, "--initial is needed when spec.regions is absent");
    int n = s->sp.in.limit > 0 ? s->sp.in.limit : 1;
    for (int k = 0; k < n; k++) {
        int rc = add_in_region(s, s->sp.regions[k % s->sp.nregions], 1, AP_ACTIVE, e);
        if (rc) return rc;
    }
    return 0;
}

void sim_free(sim *s) {
    if (s == NULL) return;
    free(s->st);
    free(s->ms);
    free(s->d);
    free(s->ovr);
    free(s);
}

int sim_new(const as_spec *sp, const sim_trace *tr, const sim_opts *o, sim **out, serr *e) {
    int rc;
    *out = NULL;
    sim *s = calloc(1, sizeof(*s));
    if (s == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    s->sp = *sp;
    s->tr = tr;
    s->warm_ms = o->warm_ms > 0 ? o->warm_ms : SIM_WARM_MS;
    s->cold_ms = o->cold_ms > 0 ? o->cold_ms : SIM_COLD_MS;
    s->drain_ms = o->drain_ms > 0 ? o->drain_ms : SIM_DRAIN_MS;
    str_copy(s->prefix, sizeof(s->prefix), o->name_prefix ? o->name_prefix : STAMP_PREFIX_DEFAULT);
    s->st = calloc(AS_WORLD_MAX, sizeof(*s->st));
    s->ms = calloc(AS_WORLD_MAX, sizeof(*s->ms));
    s->d = calloc(1, sizeof(*s->d));
    s->ovr = calloc((size_t)(tr->nnames ? tr->nnames : 1) * AM_N, sizeof(*s->ovr));
    if (s->st == NULL || s->ms == NULL || s->d == NULL || s->ovr == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
        goto fail;
    }
    rc = o->initial ? parse_initial(s, o->initial, e) : default_initial(s, e);
    if (rc) goto fail;
    for (int i = 0; i < s->n; i++)
        if (s->st[i].governed && s->st[i].phase == AP_ACTIVE) s->n0++;
    if (s->n0 == 0) {
        rc = serr_set(e, SE_INVAL, "--initial: the fleet needs at least one Active stamp the autoscaler governs");
        goto fail;
    }
    s->w = (as_world){.stamps = s->st, .fleet_min_regions = o->fleet_min_regions < 0 ? 2 : o->fleet_min_regions,
                      .name_prefix = s->prefix};
    s->end = sim_trace_end_ms(tr);
    if (s->end / s->sp.interval_ms > SIM_MAX_TICKS) {
        rc = serr_set(e, SE_LIMIT, "the trace is longer than %d evaluations", SIM_MAX_TICKS);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    sim_free(s);
    return rc;
}

/* ---- one tick ---- */

static void event(sim_tick *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void event(sim_tick *k, const char *fmt, ...) {
    if (k->nevents == SIM_EVENTS_MAX) return;
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(k->events[k->nevents++], sizeof(k->events[0]), fmt, ap);
    va_end(ap);
}

static void finish_transitions(sim *s, int64_t now, sim_tick *k) {
    char took[FMT_DURATION_LEN];
    for (int i = 0; i < s->n; i++) {
        as_stamp *x = &s->st[i];
        mstamp *m = &s->ms[i];
        if (m->until_ms == 0 || m->until_ms > now) continue;
        fmt_duration(m->until_ms - m->started_ms, took, sizeof(took));
        if (x->phase == AP_READY && x->activating) {
            x->phase = AP_ACTIVE;
            x->activating = false;
            event(k, "%s is Active (warm activation, %s)", x->name, took);
        } else if (x->phase == AP_CREATING) {
            x->phase = AP_ACTIVE;
            event(k, "%s is Active (cold deploy, %s)", x->name, took);
        } else if (x->phase == AP_DRAINING) {
            x->phase = AP_READY;
            x->ready_since_ms = m->until_ms;
            event(k, "%s is Ready (drained to standby, %s)", x->name, took);
        }
        m->until_ms = 0;
    }
}

static void read_trace(sim *s) {
    const sim_trace *tr = s->tr;
    while (s->next_row < tr->n && tr->rows[s->next_row].t_ms <= s->t) {
        const trow *r = &tr->rows[s->next_row++];
        if (r->stamp < 0) {
            s->fset[r->metric] = true;
            s->fok[r->metric] = r->ok;
            s->fv[r->metric] = r->v;
        } else {
            s->ovr[r->stamp * AM_N + r->metric] = (override){true, r->ok, r->v};
        }
    }
}

/* The load model: fleet-wide demand spread evenly over the Active stamps. */
static bool spreads(int metric) {
    return metric == AM_CPU || metric == AM_MEMORY || metric == AM_ACTIVE_JOBS || metric == AM_CONNECTIONS ||
           metric == AM_QUEUE_DEPTH;
}

static void fill_values(sim *s) {
    int active = 0;
    for (int i = 0; i < s->n; i++) active += s->st[i].governed && s->st[i].phase == AP_ACTIVE;
    for (int i = 0; i < s->n; i++) {
        as_stamp *x = &s->st[i];
        memset(x->out, 0, sizeof(x->out));
        memset(x->in, 0, sizeof(x->in));
        if (x->phase != AP_ACTIVE) continue;
        for (int m = 0; m < AM_N; m++) {
            int ni = s->ms[i].name_idx;
            const override *ov = ni >= 0 ? &s->ovr[ni * AM_N + m] : NULL;
            if (ov && ov->set) {
                as_stamp_set(&s->sp, x, m, ov->ok, ov->v);
                continue;
            }
            double v = s->fv[m];
            if (spreads(m) && active > 0) v = v * s->n0 / active;
            if (as_metric_unit(m) == AU_PERCENT && v > 100) v = 100;
            as_stamp_set(&s->sp, x, m, s->fset[m] && s->fok[m], v);
        }
    }
    for (int dir = AS_OUT; dir <= AS_IN; dir++) {
        const as_direction *dd = as_spec_dir(&s->sp, dir);
        as_fleet_sample *fs = dir == AS_OUT ? s->w.fleet_out : s->w.fleet_in;
        for (int i = 0; i < dd->n; i++) {
            if (dd->t[i].metric != AM_PROMETHEUS) continue;
            fs[i] = (as_fleet_sample){.given = true, .ok = s->fset[AM_PROMETHEUS] && s->fok[AM_PROMETHEUS],
                                      .v = s->fv[AM_PROMETHEUS]};
            if (!fs[i].ok) str_copy(fs[i].why, sizeof(fs[i].why), "the trace (prometheus)");
        }
    }
}

static as_stamp *find_stamp(sim *s, const char *name, int *idx) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->st[i].name, name) == 0) {
            *idx = i;
            return &s->st[i];
        }
    return NULL;
}

static void apply(sim *s, const as_action *a, int64_t now) {
    int i = -1;
    as_stamp *x = find_stamp(s, a->stamp, &i);
    serr e = {0};
    switch (a->act) {
    case AA_ACTIVATE:
        if (x == NULL) return;
        x->activating = true;
        s->ms[i] = (mstamp){now, now + s->warm_ms, s->ms[i].name_idx};
        s->warm++;
        break;
    case AA_DEPLOY:
        if (x != NULL || add_stamp(s, a->region, a->id, AP_CREATING, &e) != 0) return;
        s->ms[s->n - 1].started_ms = now;
        s->ms[s->n - 1].until_ms = now + s->cold_ms;
        s->cold++;
        break;
    case AA_DRAIN:
        if (x == NULL) return;
        x->phase = AP_DRAINING;
        s->ms[i] = (mstamp){now, now + s->drain_ms, s->ms[i].name_idx};
        s->drains++;
        break;
    case AA_RETIRE:
        if (x == NULL) return;
        x->phase = AP_DELETED;
        s->retires++;
        break;
    default: break;
    }
}

static void account(sim *s) {
    int64_t dt = s->sp.interval_ms;
    int counted = 0;
    for (int i = 0; i < s->n; i++) {
        const as_stamp *x = &s->st[i];
        if (!x->governed) continue;
        switch (x->phase) {
        case AP_ACTIVE: s->ms_active += dt; counted++; break;
        case AP_CREATING: s->ms_starting += dt; counted++; break;
        case AP_DRAINING: s->ms_draining += dt; counted++; break;
        case AP_READY:
            if (x->activating) {
                s->ms_starting += dt;
                counted++;
            } else {
                s->ms_standby += dt;
            }
            break;
        default: break;
        }
    }
    if (counted > s->peak) s->peak = counted;
    s->evals++;
    if (s->d->block != AB_NONE) s->blocked_by[s->d->block]++;
    for (int i = 0; i < s->d->nevals; i++)
        if (s->d->evals[i].dir == AS_OUT && s->d->evals[i].breaching) s->over_ms[s->d->evals[i].index] += dt;
}

int sim_step(sim *s, sim_tick *k) {
    if (s->t > s->end) return 0;
    memset(k, 0, sizeof(*k));
    int64_t now = SIM_EPOCH_MS + s->t;
    k->t_ms = s->t;
    finish_transitions(s, now, k);
    read_trace(s);
    fill_values(s);
    s->w.n = s->n;
    as_decide(&s->sp, &s->w, now, &s->state, &s->state, s->d);
    for (int i = 0; i < s->d->nactions; i++) apply(s, &s->d->actions[i], now);
    for (int i = 0; i < s->d->nretire; i++) apply(s, &s->d->retire[i], now);
    account(s);
    k->d = s->d;
    k->decided = s->d->nactions || s->d->nretire || s->d->nfailed ||
                 (s->d->block != AB_NONE && (s->d->block != s->last_block || s->d->block_dir != s->last_block_dir));
    k->notable = k->decided || k->nevents;
    s->last_block = s->d->block;
    s->last_block_dir = s->d->block_dir;
    s->t += s->sp.interval_ms;
    return 1;
}

/* ---- reports ---- */

json_t *sim_fleet_json(const sim *s) {
    json_t *a = json_array();
    for (int i = 0; i < s->n; i++) {
        const as_stamp *x = &s->st[i];
        json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s,s:b,s:b}", "name", x->name, "region", x->region,
                                           "stampId", x->id, "phase", as_phase_names[x->phase], "activating",
                                           x->activating, "governed", x->governed));
    }
    return a;
}

static double hours(int64_t ms) { return (double)ms / 3600000.0; }

json_t *sim_summary_json(const sim *s) {
    json_t *blocked = json_object(), *over = json_array();
    for (int b = 1; b < AB_N; b++)
        if (s->blocked_by[b]) json_object_set_new(blocked, as_block_names[b], json_integer(s->blocked_by[b]));
    for (int i = 0; i < s->sp.out.n; i++) {
        char th[32];
        json_array_append_new(over, json_pack("{s:s,s:s,s:f}", "metric", as_metric_names[s->sp.out.t[i].metric],
                                              "threshold", as_value_fmt(s->sp.out.t[i].metric, s->sp.out.t[i].threshold,
                                                                        th, sizeof(th)),
                                              "minutes", (double)s->over_ms[i] / 60000.0));
    }
    int fin[AP_N] = {0}, activating = 0;
    for (int i = 0; i < s->n; i++) {
        if (!s->st[i].governed) continue;
        if (s->st[i].activating) activating++;
        else fin[s->st[i].phase]++;
    }
    int64_t total = s->ms_active + s->ms_standby + s->ms_starting + s->ms_draining;
    return json_pack("{s:f,s:I,s:{s:f,s:f,s:f,s:f,s:f},s:i,s:i,s:i,s:i,s:i,s:o,s:o,s:{s:i,s:i,s:i,s:i,s:i}}",
                     "durationS", (double)(s->evals * s->sp.interval_ms) / 1000.0, "evaluations",
                     (json_int_t)s->evals, "stampHours", "total", hours(total), "active", hours(s->ms_active),
                     "standby", hours(s->ms_standby), "starting", hours(s->ms_starting), "draining",
                     hours(s->ms_draining), "warmActivations", s->warm, "coldDeploys", s->cold, "drains", s->drains,
                     "retirements", s->retires, "peakCounted", s->peak, "blocked", blocked, "overThreshold", over,
                     "final", "active", fin[AP_ACTIVE], "ready", fin[AP_READY], "activating", activating, "creating",
                     fin[AP_CREATING], "draining", fin[AP_DRAINING]);
}
