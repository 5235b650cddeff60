/*
 * decide.c - the StampAutoscaler's decision (decide.h): triggers evaluated
 * against the world, then at most one direction acted on, with the reason
 * and, when something wanted was refused, the rule that refused it.  Pure.
 *
 * One evaluation is a pass over a context (ctx) that holds the regions in
 * use and what this decision has already planned, so a step of several
 * stamps sees the stamps chosen before it.
 */
#include "autoscale/decide.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define AS_ALL_REGIONS 64 /* more than there are known regions */

const char *const as_phase_names[AP_N] = {"Creating", "Active", "Draining", "Ready",
                                          "Failed",   "Deleting", "Deleted"};
const char *const as_act_names[AA_N] = {"none", "activate", "deploy", "drain", "retire"};
const char *const as_block_names[AB_N] = {"None",      "Paused",        "Cooldown",  "MaxStamps", "MinStamps",
                                          "RegionMinimum", "FleetRule", "MissingMetric", "NoRoom"};
const char *const as_want_names[3] = {"none", "scaleOut", "scaleIn"};

int as_phase_parse(const char *name) {
    for (int p = 0; name && p < AP_N; p++)
        if (strcmp(as_phase_names[p], name) == 0) return p;
    return -1;
}

void as_stamp_set(const as_spec *sp, as_stamp *s, int metric, bool ok, double v) {
    if (metric == AM_PROMETHEUS) return;
    for (int i = 0; i < sp->out.n; i++)
        if (sp->out.t[i].metric == metric) s->out[i] = (as_sample){ok, ok ? v : 0};
    for (int i = 0; i < sp->in.n; i++)
        if (sp->in.t[i].metric == metric) s->in[i] = (as_sample){ok, ok ? v : 0};
}

/* ---- the context of one evaluation ---- */

typedef struct ctx {
    int failed; /* governed Failed stamps: they count toward maxStamps */
    const as_spec *sp;
    const as_world *w;
    int64_t now;
    as_state *st;
    as_decision *d;
    int nreg;
    char reg[AS_ALL_REGIONS][AS_REGION_MAX];
    int serving[AS_ALL_REGIONS]; /* governed Active + Creating + activating, plus planned */
    int active[AS_ALL_REGIONS];  /* governed Active, minus planned drains */
    int trig;                    /* the scale-out trigger that ranks regions by load, -1: none */
    bool has_load[AS_ALL_REGIONS];
    double load[AS_ALL_REGIONS]; /* its mean over the region's governed Active stamps */
    /* The fleet rule's count: Active stamps of every template by region,
     * minus planned drains. */
    int nfreg, ftotal;
    char freg[AS_ALL_REGIONS][AS_REGION_MAX];
    int fcount[AS_ALL_REGIONS];
} ctx;

static int fleet_index(const ctx *c, const char *region) {
    for (int i = 0; i < c->nfreg; i++)
        if (strcmp(c->freg[i], region) == 0) return i;
    return -1;
}

static int region_index(const ctx *c, const char *region) {
    for (int i = 0; i < c->nreg; i++)
        if (strcmp(c->reg[i], region) == 0) return i;
    return -1;
}

static bool serving(const as_stamp *s) {
    return s->phase == AP_ACTIVE || s->phase == AP_CREATING || (s->phase == AP_READY && s->activating);
}

static int cmp_region(const void *a, const void *b) { return strcmp(a, b); }

int as_regions(const as_spec *sp, const as_world *w, char (*out)[AS_REGION_MAX], int max) {
    int n = 0;
    if (sp->nregions > 0) {
        for (int i = 0; i < sp->nregions && n < max; i++) str_copy(out[n++], AS_REGION_MAX, sp->regions[i]);
        return n;
    }
    for (int i = 0; i < w->n && n < max; i++) {
        const as_stamp *s = &w->stamps[i];
        if (!s->governed || s->region[0] == '\0' || s->phase == AP_DELETED) continue;
        bool seen = false;
        for (int j = 0; j < n && !seen; j++) seen = strcmp(out[j], s->region) == 0;
        if (!seen) str_copy(out[n++], AS_REGION_MAX, s->region);
    }
    qsort(out, (size_t)n, AS_REGION_MAX, cmp_region);
    return n;
}

/* Whether this decision already acts on the stamp. */
static bool planned(const as_decision *d, const char *name) {
    for (int i = 0; i < d->nactions; i++)
        if (strcmp(d->actions[i].stamp, name) == 0) return true;
    for (int i = 0; i < d->nretire; i++)
        if (strcmp(d->retire[i].stamp, name) == 0) return true;
    return false;
}

/* ---- stamp ids ---- */

int as_next_stamp_id(const as_world *w, const char *region, const as_action *plan, int nplan, char *out,
                     size_t len, serr *e) {
    bool used[1000] = {false};
    int64_t v;
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->stamps[i].region, region) == 0 && parse_i64(w->stamps[i].id, 0, 999, &v) == 0) used[v] = true;
    for (int i = 0; i < nplan; i++)
        if (plan[i].act == AA_DEPLOY && strcmp(plan[i].region, region) == 0 && parse_i64(plan[i].id, 0, 999, &v) == 0)
            used[v] = true;
    for (int k = 1; k <= 999; k++)
        if (!used[k]) return str_fmt(out, len, e, "stamp id", "%03d", k);
    return serr_set(e, SE_LIMIT, "every stamp id from 001 to 999 is in use in %s", region);
}

/* ---- triggers ---- */

/* The mean of a trigger over the governed Active stamps of a region (all
 * regions when region is NULL); false when none has a value. */
static bool region_mean(const as_world *w, int dir, int index, const char *region, double *mean) {
    double sum = 0;
    int n = 0;
    for (int i = 0; i < w->n; i++) {
        const as_stamp *s = &w->stamps[i];
        if (!s->governed || s->phase != AP_ACTIVE || (region && strcmp(s->region, region) != 0)) continue;
        const as_sample *x = dir == AS_OUT ? &s->out[index] : &s->in[index];
        if (!x->ok) continue;
        sum += x->v;
        n++;
    }
    if (n == 0) return false;
    *mean = sum / n;
    return true;
}

void as_most_loaded_region(const as_spec *sp, const as_world *w, int dir, int index, char *out, size_t len) {
    char regs[AS_ALL_REGIONS][AS_REGION_MAX];
    int n = as_regions(sp, w, regs, AS_ALL_REGIONS);
    double best = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        double m;
        if (region_mean(w, dir, index, regs[i], &m) && (out[0] == '\0' || m > best)) {
            best = m;
            str_copy(out, len, regs[i]);
        }
    }
}

/* Long: the per-stamp pass (value, missing names) and the fleet-wide
 * case, then the comparison and its timer. */
static void eval_trigger(ctx *c, int dir, int i, as_eval *ev) {
    const as_trigger *t = &as_spec_dir(c->sp, dir)->t[i];
    const as_fleet_sample *fs = dir == AS_OUT ? &c->w->fleet_out[i] : &c->w->fleet_in[i];
    int64_t *since = dir == AS_OUT ? &c->st->out_since_ms[i] : &c->st->in_since_ms[i];
    memset(ev, 0, sizeof(*ev));
    ev->dir = dir;
    ev->index = i;
    ev->metric = t->metric;
    ev->threshold = t->threshold;
    const char *mname = as_metric_names[t->metric];
    bool complete;
    if (fs->given) {
        ev->fleet = true;
        ev->expected = 1;
        ev->reporting = fs->ok ? 1 : 0;
        ev->has_value = fs->ok;
        ev->value = fs->ok ? fs->v : 0;
        if (!fs->ok)
            str_fmt_cut(ev->missing, sizeof(ev->missing), "no metric for %s from %s", mname,
                        fs->why[0] ? fs->why : "its source");
        complete = fs->ok;
    } else {
        double sum = 0;
        int nmiss = 0;
        size_t o = 0;
        for (int k = 0; k < c->w->n; k++) {
            const as_stamp *s = &c->w->stamps[k];
            if (!s->governed || s->phase != AP_ACTIVE) continue;
            ev->expected++;
            const as_sample *x = dir == AS_OUT ? &s->out[i] : &s->in[i];
            if (x->ok) {
                sum += x->v;
                ev->reporting++;
                continue;
            }
            if (nmiss++ == 0) o = str_fmt_cut(ev->missing, sizeof(ev->missing), "no metric for %s from %s", mname, s->name);
            else if (nmiss <= 3) o += str_fmt_cut(ev->missing + o, sizeof(ev->missing) - o, ", %s", s->name);
        }
        if (nmiss > 3) str_fmt_cut(ev->missing + o, sizeof(ev->missing) - o, " (+%d more)", nmiss - 3);
        ev->has_value = ev->reporting > 0;
        ev->value = ev->has_value ? sum / ev->reporting : 0;
        complete = ev->has_value && ev->reporting == ev->expected;
    }
    if (dir == AS_OUT) ev->breaching = ev->has_value && ev->value > t->threshold;
    else ev->breaching = complete && (t->threshold == 0 ? ev->value <= 0 : ev->value < t->threshold);
    if (!ev->breaching) *since = 0;
    else if (*since == 0 || *since > c->now) *since = c->now;
    ev->since_ms = *since;
    ev->met = ev->breaching && c->now - *since >= t->duration_ms;
}

/* ---- activations ---- */

static const as_stamp *find(const as_world *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->stamps[i].name, name) == 0) return &w->stamps[i];
    return NULL;
}

/* The stamps this autoscaler activated: Active is done, Failed is a failed
 * activation (reported once, and the next scale-out deploys). */
static void follow_activations(ctx *c) {
    as_state *st = c->st;
    int keep = 0;
    for (int i = 0; i < st->nactivated; i++) {
        const as_stamp *s = find(c->w, st->activated[i]);
        if (s == NULL || s->phase == AP_ACTIVE) continue;
        if (s->phase == AP_FAILED) {
            str_copy(c->d->activation_failed[c->d->nfailed++], STAMP_NAME_MAX + 1, s->name);
            st->replace = true;
            continue;
        }
        if (keep != i) memcpy(st->activated[keep], st->activated[i], sizeof(st->activated[0]));
        keep++;
    }
    st->nactivated = keep;
}

/* ---- standby retirement ---- */

/* After the scaling: a stamp this decision activates is not retired. */
static void find_retirements(ctx *c) {
    for (int i = 0; i < c->w->n && c->d->nretire < AS_MAX_RETIRE; i++) {
        const as_stamp *s = &c->w->stamps[i];
        if (!s->governed || s->phase != AP_READY || s->activating || s->held || s->ready_since_ms <= 0 ||
            planned(c->d, s->name))
            continue;
        if (c->now - s->ready_since_ms < c->sp->standby_max_age_ms) continue;
        as_action *a = &c->d->retire[c->d->nretire++];
        *a = (as_action){.act = AA_RETIRE};
        str_copy(a->stamp, sizeof(a->stamp), s->name);
        str_copy(a->region, sizeof(a->region), s->region);
        str_copy(a->id, sizeof(a->id), s->id);
    }
}

/* ---- scale-out ---- */

static int deficit(const ctx *c, int r) { return as_spec_region_min(c->sp, c->reg[r]) - c->serving[r]; }

/* The trigger whose load ranks regions: the first scale-out trigger that
 * fired with per-stamp values; -1 for none. */
static int load_trigger(const ctx *c) {
    for (int i = 0; i < c->d->nevals; i++) {
        const as_eval *ev = &c->d->evals[i];
        if (ev->dir == AS_OUT && ev->met && !ev->fleet) return ev->index;
    }
    return -1;
}

/* Region ranking for a scale-out: under its minimum first (largest
 * deficit), then the most loaded, then the fewest serving; ties in
 * preference order.  Returns true when region a goes before b. */
static bool region_before(const ctx *c, int a, int b) {
    int da = deficit(c, a), db = deficit(c, b);
    if ((da > 0 || db > 0) && da != db) return da > db;
    if (c->trig >= 0) {
        if (c->has_load[a] != c->has_load[b]) return c->has_load[a];
        if (c->has_load[a] && c->load[a] != c->load[b]) return c->load[a] > c->load[b];
    }
    if (c->serving[a] != c->serving[b]) return c->serving[a] < c->serving[b];
    return a < b;
}

static int best_region(const ctx *c) {
    int best = -1;
    for (int r = 0; r < c->nreg; r++)
        if (best < 0 || region_before(c, r, best)) best = r;
    return best;
}

/* The loads that rank regions, once per decision (the ranking is then
 * O(regions), whatever the fleet's size). */
static void rank_loads(ctx *c) {
    double sum[AS_ALL_REGIONS] = {0};
    int n[AS_ALL_REGIONS] = {0};
    c->trig = load_trigger(c);
    if (c->trig < 0) return;
    for (int i = 0; i < c->w->n; i++) {
        const as_stamp *s = &c->w->stamps[i];
        int r = region_index(c, s->region);
        if (!s->governed || s->phase != AP_ACTIVE || r < 0 || !s->out[c->trig].ok) continue;
        sum[r] += s->out[c->trig].v;
        n[r]++;
    }
    for (int r = 0; r < c->nreg; r++) {
        c->has_load[r] = n[r] > 0;
        c->load[r] = n[r] ? sum[r] / n[r] : 0;
    }
}

/* The warm stamp to activate: in the best-ranked region, then Ready the
 * longest, then by name. */
static const as_stamp *pick_warm(const ctx *c) {
    const as_stamp *best = NULL;
    int best_r = -1;
    for (int i = 0; i < c->w->n; i++) {
        const as_stamp *s = &c->w->stamps[i];
        if (!s->governed || s->phase != AP_READY || s->activating || s->held || planned(c->d, s->name)) continue;
        int r = region_index(c, s->region);
        if (r < 0) continue;
        bool better = best == NULL;
        if (!better && r != best_r) better = region_before(c, r, best_r);
        else if (!better) {
            int64_t a = s->ready_since_ms ? s->ready_since_ms : INT64_MAX;
            int64_t b = best->ready_since_ms ? best->ready_since_ms : INT64_MAX;
            better = a != b ? a < b : strcmp(s->name, best->name) < 0;
        }
        if (better) {
            best = s;
            best_r = r;
        }
    }
    return best;
}

static int plan_deploy(ctx *c, as_action *a, serr *e) {
    int r = best_region(c);
    if (r < 0)
        return serr_set(e, SE_NOTFOUND, "no region to deploy to (spec.regions is absent and no governed stamp exists)");
    *a = (as_action){.act = AA_DEPLOY};
    str_copy(a->region, sizeof(a->region), c->reg[r]);
    int rc = as_next_stamp_id(c->w, c->reg[r], c->d->actions, c->d->nactions, a->id, sizeof(a->id), e);
    if (rc) return rc;
    rc = stamp_name_build(c->w->name_prefix, c->reg[r], a->id, a->stamp, sizeof(a->stamp), e);
    if (rc == 0) c->serving[r]++;
    return rc;
}

static void block(ctx *c, int why, int dir, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void block(ctx *c, int why, int dir, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    c->d->block = why;
    c->d->block_dir = dir;
    str_vfmt_cut(c->d->blocked, sizeof(c->d->blocked), fmt, ap);
    va_end(ap);
}

/* How many stamps the floor asks for (minStamps and region minimums). */
static int floor_need(const ctx *c) {
    int total = 0, sum = 0;
    for (int r = 0; r < c->nreg; r++) total += c->serving[r];
    for (int r = 0; r < c->nreg; r++)
        if (deficit(c, r) > 0) sum += deficit(c, r);
    int need = c->sp->in.limit - total;
    return need > sum ? need : sum;
}

static void counts_text(const as_decision *d, char *buf, size_t len) {
    int failed = d->counted - d->active - d->creating - d->activating - d->draining;
    size_t n = str_fmt_cut(buf, len, "%d Active, %d Creating, %d activating, %d Draining", d->active, d->creating,
                           d->activating, d->draining);
    if (failed > 0) str_fmt_cut(buf + n, len - n, ", %d Failed (delete them)", failed);
}

/* Long: the cooldown and maxStamps gates, then one pick per step (warm
 * first, else a deploy), then paused or the state updated. */
static void scale_out(ctx *c, bool fired, int floor) {
    const as_spec *sp = c->sp;
    as_decision *d = c->d;
    as_state *st = c->st;
    char a[FMT_DURATION_LEN], b[FMT_DURATION_LEN], cnt[128];
    int want = fired ? sp->step : 0;
    if (floor > want) want = floor;
    if (want > AS_MAX_STEP) want = AS_MAX_STEP;
    bool waived = floor > 0 || st->replace;
    if (!waived && st->last_out_ms > 0 && c->now - st->last_out_ms < sp->out.cooldown_ms) {
        block(c, AB_COOLDOWN, AS_OUT, "scale-out blocked: cooldown %s left (last scale-out %s ago)",
              fmt_duration(sp->out.cooldown_ms - (c->now - st->last_out_ms), a, sizeof(a)),
              fmt_duration(c->now - st->last_out_ms, b, sizeof(b)));
        return;
    }
    int room = sp->out.limit - d->counted;
    counts_text(d, cnt, sizeof(cnt));
    if (room <= 0) {
        block(c, AB_MAX_STAMPS, AS_OUT, "scale-out blocked: maxStamps %d reached (%s)", sp->out.limit, cnt);
        return;
    }
    int n = want < room ? want : room;
    rank_loads(c);
    for (int k = 0; k < n; k++) {
        const as_stamp *warm = st->replace ? NULL : pick_warm(c);
        as_action *act = &d->actions[d->nactions];
        if (warm) {
            *act = (as_action){.act = AA_ACTIVATE};
            str_copy(act->stamp, sizeof(act->stamp), warm->name);
            str_copy(act->region, sizeof(act->region), warm->region);
            str_copy(act->id, sizeof(act->id), warm->id);
            c->serving[region_index(c, warm->region)]++;
        } else {
            serr e = {0};
            if (plan_deploy(c, act, &e) != 0) {
                if (d->nactions == 0) block(c, AB_NO_ROOM, AS_OUT, "scale-out blocked: %s", e.msg);
                break;
            }
        }
        d->nactions++;
    }
    if (d->nactions > 0 && n < want)
        block(c, AB_MAX_STAMPS, AS_OUT, "scale-out limited to %d of %d: maxStamps %d (%s)", n, want, sp->out.limit,
              cnt);
    if (d->nactions == 0) return;
    if (sp->paused) {
        char list[200];
        size_t o = 0;
        for (int i = 0; i < d->nactions; i++)
            o += str_fmt_cut(list + o, sizeof(list) - o, "%s%s %s", i ? ", " : "", as_act_names[d->actions[i].act],
                             d->actions[i].stamp);
        block(c, AB_PAUSED, AS_OUT, "paused: would %s", list);
        d->nactions = 0;
        return;
    }
    st->last_out_ms = c->now;
    for (int i = 0; i < d->nactions; i++) {
        if (d->actions[i].act == AA_DEPLOY) st->replace = false;
        if (d->actions[i].act == AA_ACTIVATE && st->nactivated < AS_MAX_STEP)
            str_copy(st->activated[st->nactivated++], STAMP_NAME_MAX + 1, d->actions[i].stamp);
    }
}

/* ---- scale-in ---- */

/* A stamp's load for choosing whom to drain: the first scale-in trigger
 * with per-stamp values (all are complete when scale-in is wanted). */
static int cmp_load(const ctx *c, const as_stamp *a, const as_stamp *b) {
    for (int i = 0; i < c->sp->in.n; i++) {
        if (c->w->fleet_in[i].given) continue;
        if (a->in[i].v != b->in[i].v) return a->in[i].v < b->in[i].v ? -1 : 1;
    }
    return -strcmp(a->name, b->name);
}

/* The fleet rule without the stamps already planned and without s. */
static bool fleet_ok(const ctx *c, const as_stamp *s, int *active, int *nregions) {
    int r = fleet_index(c, s->region);
    *active = c->ftotal - 1;
    *nregions = 0;
    for (int i = 0; i < c->nfreg; i++) *nregions += c->fcount[i] - (i == r) > 0;
    int need = c->w->fleet_min_regions;
    return need <= 0 || (*active >= 2 && *nregions >= need);
}

/* Why s may not be drained now (0: it may), with the message in why. */
static int drain_refusal(const ctx *c, const as_stamp *s, char *why, size_t len) {
    int r = region_index(c, s->region);
    int min = as_spec_region_min(c->sp, s->region);
    if (r >= 0 && min > 0 && c->active[r] - 1 < min) {
        str_fmt_cut(why, len, "%s would leave %s below its minimum %d (%d Active)", s->name, s->region, min,
                    c->active[r]);
        return AB_REGION_MIN;
    }
    int active, nregions;
    if (!fleet_ok(c, s, &active, &nregions)) {
        str_fmt_cut(why, len,
                    "draining %s would leave %d Active stamp(s) in %d region(s); the fleet rule needs at least 2 in "
                    "%d regions",
                    s->name, active, nregions, c->w->fleet_min_regions);
        return AB_FLEET_RULE;
    }
    return 0;
}

/* The least loaded governed Active stamp not yet planned that may be
 * drained; NULL with the least loaded one's refusal when none may. */
static const as_stamp *pick_drain(ctx *c, int *why, char *msg, size_t len) {
    const as_stamp *best = NULL, *first = NULL;
    for (int i = 0; i < c->w->n; i++) {
        const as_stamp *s = &c->w->stamps[i];
        if (!s->governed || s->phase != AP_ACTIVE || planned(c->d, s->name)) continue;
        if (first == NULL || cmp_load(c, s, first) < 0) first = s;
        char tmp[256];
        if (drain_refusal(c, s, tmp, sizeof(tmp)) == 0 && (best == NULL || cmp_load(c, s, best) < 0)) best = s;
    }
    if (best == NULL && first != NULL) *why = drain_refusal(c, first, msg, len);
    return best;
}

/* Long: the cooldown gate, then per step the minStamps gate and a pick
 * that keeps region minimums and the fleet rule, then paused or the state
 * updated. */
static void scale_in(ctx *c) {
    const as_spec *sp = c->sp;
    as_decision *d = c->d;
    as_state *st = c->st;
    char a[FMT_DURATION_LEN], b[FMT_DURATION_LEN];
    int64_t last = st->last_in_ms > st->last_out_ms ? st->last_in_ms : st->last_out_ms;
    if (last > 0 && c->now - last < sp->in.cooldown_ms) {
        block(c, AB_COOLDOWN, AS_IN, "scale-in blocked: cooldown %s left (last %s %s ago)",
              fmt_duration(sp->in.cooldown_ms - (c->now - last), a, sizeof(a)),
              last == st->last_in_ms ? "scale-in" : "scale-out", fmt_duration(c->now - last, b, sizeof(b)));
        return;
    }
    int active = d->active;
    for (int k = 0; k < sp->step; k++) {
        if (active - 1 < sp->in.limit) {
            if (k == 0)
                block(c, AB_MIN_STAMPS, AS_IN, "scale-in blocked: minStamps %d reached (%d Active)", sp->in.limit,
                      active);
            break;
        }
        int why = AB_NONE;
        char msg[200] = "";
        const as_stamp *s = pick_drain(c, &why, msg, sizeof(msg));
        if (s == NULL) {
            if (k == 0 && why != AB_NONE) block(c, why, AS_IN, "scale-in blocked: %s", msg);
            break;
        }
        as_action *act = &d->actions[d->nactions++];
        *act = (as_action){.act = AA_DRAIN};
        str_copy(act->stamp, sizeof(act->stamp), s->name);
        str_copy(act->region, sizeof(act->region), s->region);
        str_copy(act->id, sizeof(act->id), s->id);
        int r = region_index(c, s->region), f = fleet_index(c, s->region);
        if (r >= 0) {
            c->active[r]--;
            c->serving[r]--;
        }
        if (f >= 0) c->fcount[f]--;
        c->ftotal--;
        active--;
    }
    if (d->nactions == 0) return;
    if (sp->paused) {
        char list[200];
        size_t o = 0;
        for (int i = 0; i < d->nactions; i++)
            o += str_fmt_cut(list + o, sizeof(list) - o, "%sdrain %s", i ? ", " : "", d->actions[i].stamp);
        block(c, AB_PAUSED, AS_IN, "paused: would %s", list);
        d->nactions = 0;
        return;
    }
    st->last_in_ms = c->now;
}

/* ---- the reason ---- */

/* "cpu_utilization 82% > 70% for 5m10s of 5m" and the like. */
static size_t eval_text(const as_spec *sp, const as_eval *ev, int64_t now, char *buf, size_t len) {
    const as_trigger *t = &as_spec_dir(sp, ev->dir)->t[ev->index];
    const char *m = as_metric_names[ev->metric];
    char v[32], th[32], f[FMT_DURATION_LEN], du[FMT_DURATION_LEN];
    as_value_fmt(ev->metric, ev->threshold, th, sizeof(th));
    if (!ev->has_value) return str_fmt_cut(buf, len, "%s: no value", m);
    as_value_fmt(ev->metric, ev->value, v, sizeof(v));
    const char *op = ev->dir == AS_OUT ? (ev->breaching ? ">" : "<=")
                                       : (ev->breaching ? (ev->threshold == 0 ? "<=" : "<") : ">=");
    if (ev->dir == AS_IN && !ev->breaching && ev->reporting < ev->expected)
        return str_fmt_cut(buf, len, "%s %s (%d of %d stamps report)", m, v, ev->reporting, ev->expected);
    if (!ev->breaching) return str_fmt_cut(buf, len, "%s %s %s %s", m, v, op, th);
    fmt_duration(now - ev->since_ms, f, sizeof(f));
    fmt_duration(t->duration_ms, du, sizeof(du));
    return str_fmt_cut(buf, len, "%s %s %s %s for %s of %s", m, v, op, th, f, du);
}

/* The triggers of a direction ("a; b"), only those met when met_only. */
static size_t evals_text(const ctx *c, int dir, bool met_only, const char *sep, char *buf, size_t len) {
    size_t o = 0;
    int k = 0;
    for (int i = 0; i < c->d->nevals; i++) {
        const as_eval *ev = &c->d->evals[i];
        if (ev->dir != dir || (met_only && !ev->met)) continue;
        if (k++) o += str_fmt_cut(buf + o, len - o, "%s", sep);
        o += eval_text(c->sp, ev, c->now, buf + o, len - o);
    }
    return o;
}

/* One sentence per kind of outcome (scale-out, scale-in, the floor,
 * steady), naming the triggers that led to it, then what is missing. */
static void write_reason(ctx *c, bool fired, int floor) {
    as_decision *d = c->d;
    char *buf = d->reason;
    size_t len = sizeof(d->reason), o = 0;
    if (d->want == AW_OUT && floor > 0 && !fired) {
        o += str_fmt_cut(buf + o, len - o, "below the floor: %d serving stamp(s), minStamps %d",
                         d->active + d->creating + d->activating, c->sp->in.limit);
        for (int r = 0; r < c->nreg; r++)
            if (as_spec_region_min(c->sp, c->reg[r]) > 0)
                o += str_fmt_cut(buf + o, len - o, ", %s minimum %d", c->reg[r], as_spec_region_min(c->sp, c->reg[r]));
    } else if (d->want == AW_OUT) {
        o += evals_text(c, AS_OUT, true, "; ", buf + o, len - o);
    } else if (d->want == AW_IN) {
        o += str_fmt_cut(buf + o, len - o, "every scale-in trigger held: ");
        o += evals_text(c, AS_IN, false, "; ", buf + o, len - o);
    } else {
        o += str_fmt_cut(buf + o, len - o, "steady: scale-out ");
        o += evals_text(c, AS_OUT, false, ", ", buf + o, len - o);
        o += str_fmt_cut(buf + o, len - o, "; scale-in ");
        o += evals_text(c, AS_IN, false, ", ", buf + o, len - o);
    }
    for (int i = 0; i < d->nevals; i++) {
        bool said = false; /* a metric in both directions is missing once */
        for (int j = 0; j < i && !said; j++) said = strcmp(d->evals[j].missing, d->evals[i].missing) == 0;
        if (d->evals[i].missing[0] && !said) o += str_fmt_cut(buf + o, len - o, "; %s", d->evals[i].missing);
    }
}

/* ---- the decision ---- */

static void carry_state(const as_spec *sp, const as_state *prev, as_state *st) {
    if (prev != st) *st = *prev;
    for (int dir = AS_OUT; dir <= AS_IN; dir++) {
        const as_direction *dd = as_spec_dir(sp, dir);
        int64_t *since = dir == AS_OUT ? st->out_since_ms : st->in_since_ms;
        uint64_t *sig = dir == AS_OUT ? st->out_sig : st->in_sig;
        for (int i = 0; i < AS_MAX_TRIGGERS; i++) {
            uint64_t s = i < dd->n ? as_trigger_sig(&dd->t[i]) : 0;
            if (sig[i] != s) since[i] = 0;
            sig[i] = s;
        }
    }
    if (st->nactivated < 0 || st->nactivated > AS_MAX_STEP) st->nactivated = 0;
}

static void count_stamps(ctx *c) {
    as_decision *d = c->d;
    c->nreg = as_regions(c->sp, c->w, c->reg, AS_ALL_REGIONS);
    for (int i = 0; i < c->w->n; i++) {
        const as_stamp *s = &c->w->stamps[i];
        if (s->phase == AP_ACTIVE) {
            int f = fleet_index(c, s->region);
            if (f < 0 && c->nfreg < AS_ALL_REGIONS) {
                f = c->nfreg++;
                str_copy(c->freg[f], AS_REGION_MAX, s->region);
            }
            if (f >= 0) c->fcount[f]++;
            c->ftotal++;
        }
        if (!s->governed) continue;
        switch (s->phase) {
        case AP_ACTIVE: d->active++; break;
        case AP_CREATING: d->creating++; break;
        case AP_DRAINING: d->draining++; break;
        case AP_READY: s->activating ? d->activating++ : d->ready++; break;
        case AP_FAILED: c->failed++; break;
        default: break;
        }
        int r = region_index(c, s->region);
        if (r < 0) continue;
        if (serving(s)) c->serving[r]++;
        if (s->phase == AP_ACTIVE) c->active[r]++;
    }
    /* Failed stamps count toward maxStamps too: a template that keeps
     * failing must not be deployed again and again without end (the floor
     * replaces a Failed stamp, within maxStamps, until an operator deletes
     * the Failed ones). */
    d->counted = d->active + d->creating + d->activating + d->draining + c->failed;
}

/* Scale-in would happen but for missing data: every scale-in trigger holds
 * or lacks a value, and one lacks it. */
static void missing_block(ctx *c) {
    const as_eval *miss = NULL;
    for (int i = 0; i < c->d->nevals; i++) {
        const as_eval *ev = &c->d->evals[i];
        if (ev->dir != AS_IN || ev->breaching) continue;
        if (ev->missing[0] == '\0') return;
        if (miss == NULL) miss = ev;
    }
    if (miss) block(c, AB_MISSING, AS_IN, "scale-in blocked: %s", miss->missing);
}

int as_decide(const as_spec *sp, const as_world *w, int64_t now, const as_state *prev, as_state *next,
              as_decision *d) {
    carry_state(sp, prev, next);
    memset(d, 0, sizeof(*d));
    d->now_ms = now;
    d->paused = sp->paused;
    if (w->n < 0 || w->n > AS_WORLD_MAX) {
        str_fmt_cut(d->reason, sizeof(d->reason), "the world has %d stamps, more than %d", w->n, AS_WORLD_MAX);
        return SE_INVAL;
    }
    /* The context is a few KiB: on the heap, not the caller's stack. */
    ctx *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        str_fmt_cut(d->reason, sizeof(d->reason), "out of memory");
        return SE_NOMEM;
    }
    *c = (ctx){.sp = sp, .w = w, .now = now, .st = next, .d = d, .trig = -1};
    count_stamps(c);
    bool fired = false, breaching = false, all_in = sp->in.n > 0;
    for (int dir = AS_OUT; dir <= AS_IN; dir++) {
        const as_direction *dd = as_spec_dir(sp, dir);
        for (int i = 0; i < dd->n; i++) {
            as_eval *ev = &d->evals[d->nevals++];
            eval_trigger(c, dir, i, ev);
            if (dir == AS_OUT) {
                fired |= ev->met;
                breaching |= ev->breaching;
            } else {
                all_in &= ev->met;
            }
        }
    }
    follow_activations(c);
    int floor = floor_need(c);
    if (fired || floor > 0) d->want = AW_OUT;
    else if (all_in && !breaching) d->want = AW_IN;
    d->floor = floor > 0;
    int serving_now = d->active + d->creating + d->activating;
    if (d->want == AW_OUT) scale_out(c, fired, floor);
    else if (d->want == AW_IN) scale_in(c);
    else if (!breaching) missing_block(c);
    if (!sp->paused) find_retirements(c);
    d->desired = serving_now;
    for (int i = 0; i < d->nactions; i++) d->desired += d->actions[i].act == AA_DRAIN ? -1 : 1;
    write_reason(c, fired, floor);
    free(c);
    return 0;
}

/* ---- records ---- */

static json_t *action_json(const as_action *a) {
    return json_pack("{s:s,s:s,s:s,s:s}", "action", as_act_names[a->act], "stamp", a->stamp, "region", a->region,
                     "stampId", a->id);
}

static json_t *eval_json(const as_spec *sp, const as_eval *ev, int64_t now) {
    const as_trigger *t = &as_spec_dir(sp, ev->dir)->t[ev->index];
    char th[32], v[32], du[FMT_DURATION_LEN], f[FMT_DURATION_LEN];
    json_t *j = json_pack("{s:s,s:i,s:s,s:f,s:s,s:s,s:b,s:b,s:i,s:i,s:b}", "direction", as_dir_names[ev->dir],
                          "index", ev->index, "metric", as_metric_names[ev->metric], "threshold", ev->threshold,
                          "thresholdText", as_value_fmt(ev->metric, ev->threshold, th, sizeof(th)), "duration",
                          fmt_duration(t->duration_ms, du, sizeof(du)), "breaching", ev->breaching, "met", ev->met,
                          "reporting", ev->reporting, "expected", ev->expected, "fleetWide", ev->fleet);
    if (t->query[0]) json_object_set_new(j, "query", json_string(t->query));
    if (ev->has_value) {
        json_object_set_new(j, "value", json_real(ev->value));
        json_object_set_new(j, "valueText", json_string(as_value_fmt(ev->metric, ev->value, v, sizeof(v))));
    } else {
        json_object_set_new(j, "value", json_null());
    }
    if (ev->since_ms) {
        json_object_set_new(j, "sinceMs", json_integer(ev->since_ms));
        json_object_set_new(j, "for", json_string(fmt_duration(now - ev->since_ms, f, sizeof(f))));
    }
    if (ev->missing[0]) json_object_set_new(j, "missing", json_string(ev->missing));
    return j;
}

static json_t *condition(const char *type, bool status, const char *reason, const char *msg) {
    return json_pack("{s:s,s:s,s:s,s:s}", "type", type, "status", status ? "True" : "False", "reason", reason,
                     "message", msg);
}

/* HPA's three conditions, from the decision alone. */
static json_t *conditions_json(const as_decision *d) {
    json_t *a = json_array();
    if (d->paused) json_array_append_new(a, condition("AbleToScale", false, "Paused", "spec.paused is true"));
    else if (d->block == AB_COOLDOWN)
        json_array_append_new(a, condition("AbleToScale", false, "Cooldown", d->blocked));
    else json_array_append_new(a, condition("AbleToScale", true, "ReadyForNewScale", "no cooldown holds it back"));
    int with = 0;
    char missing[512] = "";
    size_t o = 0;
    for (int i = 0; i < d->nevals; i++) {
        if (d->evals[i].has_value) with++;
        if (d->evals[i].missing[0])
            o += str_fmt_cut(missing + o, sizeof(missing) - o, "%s%s", o ? "; " : "", d->evals[i].missing);
    }
    if (with == 0)
        json_array_append_new(a, condition("ScalingActive", false, "MissingMetrics",
                                           missing[0] ? missing : "no trigger has a value (no Active stamp)"));
    else
        json_array_append_new(a, condition("ScalingActive", true, missing[0] ? "SomeMetricsMissing" : "ValidMetrics",
                                           missing[0] ? missing : "every trigger has a value"));
    bool limited = d->block == AB_MAX_STAMPS || d->block == AB_MIN_STAMPS || d->block == AB_REGION_MIN ||
                   d->block == AB_FLEET_RULE;
    json_array_append_new(a, condition("ScalingLimited", limited, limited ? as_block_names[d->block] : "DesiredWithinRange",
                                       limited ? d->blocked : "the desired stamps are within the limits"));
    return a;
}

/* Long: every part of the record, in the order describe shows them. */
json_t *as_decision_to_json(const as_spec *sp, const as_decision *d) {
    json_t *acts = json_array(), *ret = json_array(), *trig = json_array(), *failed = json_array();
    for (int i = 0; i < d->nactions; i++) json_array_append_new(acts, action_json(&d->actions[i]));
    for (int i = 0; i < d->nretire; i++) json_array_append_new(ret, action_json(&d->retire[i]));
    for (int i = 0; i < d->nevals; i++) json_array_append_new(trig, eval_json(sp, &d->evals[i], d->now_ms));
    for (int i = 0; i < d->nfailed; i++) json_array_append_new(failed, json_string(d->activation_failed[i]));
    const char *action = d->nactions ? as_act_names[d->actions[0].act] : "none";
    for (int i = 1; i < d->nactions; i++)
        if (d->actions[i].act != d->actions[0].act) action = d->want == AW_OUT ? "scaleOut" : "scaleIn";
    json_t *j = json_pack("{s:I,s:b,s:s,s:b,s:s,s:o,s:o,s:o,s:o,s:{s:i,s:i,s:i,s:i,s:i,s:i},s:i,s:s,s:o}",
                          "timeMs", (json_int_t)d->now_ms, "paused", d->paused, "want", as_want_names[d->want],
                          "floor", d->floor, "action", action, "actions", acts, "retire", ret, "triggers", trig,
                          "activationFailed", failed, "stamps", "active", d->active, "creating", d->creating,
                          "activating", d->activating, "draining", d->draining, "ready", d->ready, "counted",
                          d->counted, "desired", d->desired, "reason", d->reason, "conditions", conditions_json(d));
    if (d->block != AB_NONE)
        json_object_set_new(j, "blocked",
                            json_pack("{s:s,s:s,s:s}", "direction", as_dir_names[d->block_dir], "rule",
                                      as_block_names[d->block], "reason", d->blocked));
    return j;
}

size_t as_decision_line(const as_spec *sp, const as_decision *d, char *buf, size_t len) {
    (void)sp;
    size_t o = 0;
    if (len == 0) return 0;
    buf[0] = '\0';
    for (int i = 0; i < d->nactions; i++)
        o += str_fmt_cut(buf + o, len - o, "%s%s %s", i ? ", " : "", as_act_names[d->actions[i].act],
                         d->actions[i].stamp);
    for (int i = 0; i < d->nretire; i++)
        o += str_fmt_cut(buf + o, len - o, "%sretire %s", o ? ", " : "", d->retire[i].stamp);
    if (o == 0) o += str_fmt_cut(buf, len, "none");
    for (int i = 0; i < d->nfailed; i++)
        o += str_fmt_cut(buf + o, len - o, " (activation of %s failed)", d->activation_failed[i]);
    if (d->block != AB_NONE) o += str_fmt_cut(buf + o, len - o, ": %s;", d->blocked);
    else o += str_fmt_cut(buf + o, len - o, ":");
    o += str_fmt_cut(buf + o, len - o, " %s", d->reason);
    return o;
}

/* ---- state ---- */

json_t *as_state_to_json(const as_state *st) {
    json_t *out = json_array(), *in = json_array(), *osig = json_array(), *isig = json_array(), *act = json_array();
    for (int i = 0; i < AS_MAX_TRIGGERS; i++) {
        char h[24];
        json_array_append_new(out, json_integer(st->out_since_ms[i]));
        json_array_append_new(in, json_integer(st->in_since_ms[i]));
        str_fmt_cut(h, sizeof(h), "%016llx", (unsigned long long)st->out_sig[i]);
        json_array_append_new(osig, json_string(h));
        str_fmt_cut(h, sizeof(h), "%016llx", (unsigned long long)st->in_sig[i]);
        json_array_append_new(isig, json_string(h));
    }
    for (int i = 0; i < st->nactivated; i++) json_array_append_new(act, json_string(st->activated[i]));
    return json_pack("{s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:b}", "outSinceMs", out, "inSinceMs", in, "outSig", osig,
                     "inSig", isig, "lastScaleOutMs", (json_int_t)st->last_out_ms, "lastScaleInMs",
                     (json_int_t)st->last_in_ms, "activated", act, "replace", st->replace);
}

static int ms_array(const json_t *a, int64_t *out, const char *key, serr *e) {
    if (!json_is_array(a) || json_array_size(a) != AS_MAX_TRIGGERS)
        return serr_set(e, SE_INVAL, "autoscaler state: %s must be a list of %d times", key, AS_MAX_TRIGGERS);
    for (int i = 0; i < AS_MAX_TRIGGERS; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return serr_set(e, SE_INVAL, "autoscaler state: %s[%d] must be a time in ms", key, i);
        out[i] = json_integer_value(v);
    }
    return 0;
}

static int sig_array(const json_t *a, uint64_t *out, const char *key, serr *e) {
    if (!json_is_array(a) || json_array_size(a) != AS_MAX_TRIGGERS)
        return serr_set(e, SE_INVAL, "autoscaler state: %s must be a list of %d fingerprints", key, AS_MAX_TRIGGERS);
    for (int i = 0; i < AS_MAX_TRIGGERS; i++) {
        const char *s = json_string_value(json_array_get(a, (size_t)i));
        char *end;
        if (s == NULL || strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16)
            return serr_set(e, SE_INVAL, "autoscaler state: %s[%d] must be 16 hex digits", key, i);
        out[i] = strtoull(s, &end, 16);
    }
    return 0;
}

static int state_read(const json_t *j, as_state *st, serr *e) {
    int rc;
    if (!json_is_object(j)) return serr_set(e, SE_INVAL, "autoscaler state: must be an object");
    if ((rc = ms_array(json_object_get(j, "outSinceMs"), st->out_since_ms, "outSinceMs", e))) return rc;
    if ((rc = ms_array(json_object_get(j, "inSinceMs"), st->in_since_ms, "inSinceMs", e))) return rc;
    if ((rc = sig_array(json_object_get(j, "outSig"), st->out_sig, "outSig", e))) return rc;
    if ((rc = sig_array(json_object_get(j, "inSig"), st->in_sig, "inSig", e))) return rc;
    json_t *lo = json_object_get(j, "lastScaleOutMs"), *li = json_object_get(j, "lastScaleInMs");
    if (!json_is_integer(lo) || !json_is_integer(li) || json_integer_value(lo) < 0 || json_integer_value(li) < 0)
        return serr_set(e, SE_INVAL, "autoscaler state: lastScaleOutMs and lastScaleInMs must be times in ms");
    st->last_out_ms = json_integer_value(lo);
    st->last_in_ms = json_integer_value(li);
    json_t *act = json_object_get(j, "activated");
    if (!json_is_array(act) || json_array_size(act) > AS_MAX_STEP)
        return serr_set(e, SE_INVAL, "autoscaler state: activated must be a list of at most %d stamps", AS_MAX_STEP);
    size_t i;
    json_t *v;
    json_array_foreach(act, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL || !name_valid(s, STAMP_NAME_MAX))
            return serr_set(e, SE_INVAL, "autoscaler state: activated[%zu] must be a stamp name", i);
        str_copy(st->activated[i], sizeof(st->activated[i]), s);
    }
    st->nactivated = (int)json_array_size(act);
    json_t *rp = json_object_get(j, "replace");
    if (!json_is_boolean(rp)) return serr_set(e, SE_INVAL, "autoscaler state: replace must be true or false");
    st->replace = json_is_true(rp);
    return 0;
}

int as_state_from_json(const json_t *j, as_state *st, serr *e) {
    memset(st, 0, sizeof(*st));
    int rc = state_read(j, st, e);
    if (rc) memset(st, 0, sizeof(*st));
    return rc;
}
