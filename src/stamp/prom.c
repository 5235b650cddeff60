/*
 * prom.c - see prom.h.  One walk of the stamps per scrape; each family's
 * series go to a buffer of their own and are appended after its HELP and
 * TYPE, so that a family's lines stay together as the text format wants.
 *
 * Which stamps have health series: those whose checks run now (Creating,
 * Active, and Ready while an activation runs).  Elsewhere the results
 * table may hold what a check said before a drain or a standby, which is
 * no longer true.
 */
#include "stamp/prom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/phase.h"
#include "stamp/internal.h"
#include "util/util.h"

#define PROM_FAMILY_MAX (4u << 20) /* bytes of one family's series */
#define PROM_LABELS_MAX 768

/* A label value in the text format: backslash, double quote and newline
 * escaped.  -1 when it does not fit (the series is then left out: a cut
 * value would name another stamp or check). */
static int esc(char *out, size_t len, const char *v) {
    size_t o = 0;
    for (; *v; v++) {
        const char *rep = NULL;
        char one[2] = {*v, '\0'};
        if (*v == '\\') rep = "\\\\";
        else if (*v == '"') rep = "\\\"";
        else if (*v == '\n') rep = "\\n";
        else rep = one;
        size_t n = strlen(rep);
        if (o + n >= len) return -1;
        memcpy(out + o, rep, n);
        o += n;
    }
    if (o >= len) return -1;
    out[o] = '\0';
    return 0;
}

/* `name="value"` appended to labels (with a comma when not first). */
static int label_add(char *labels, size_t len, const char *name, const char *value) {
    char v[PROM_LABELS_MAX];
    if (esc(v, sizeof(v), value ? value : "") != 0) return -1;
    size_t used = strlen(labels);
    return str_fmt(labels + used, len - used, NULL, "labels", "%s%s=\"%s\"", used ? "," : "", name, v);
}

enum { F_PHASE, F_FAILED, F_ATTEMPT, F_CHECK, F_RECOVERING, F_N };

static const struct {
    const char *name, *help;
} families[F_N] = {
    [F_PHASE] = {"stamp_phase_seconds", "Seconds since the stamp entered its current phase"},
    [F_FAILED] = {"stamp_failed_info",
                  "1 for each Failed stamp, with the phase it failed from and the reason"},
    [F_ATTEMPT] = {"stamp_attempt",
                   "The creation or activation attempt under way (1 is the first)"},
    [F_CHECK] = {"stamp_health_check_failing",
                 "1 when the health check is Failing (its unhealthy threshold reached), 0 when "
                 "Passing or not yet known; for stamps whose checks run (Creating, Active, Ready "
                 "while activating)"},
    [F_RECOVERING] = {"stamp_health_recovering",
                      "1 while a recovery (redeploy or drain) of an unhealthy Active stamp runs"},
};

typedef struct walk {
    ctl_ctx *c;
    sctx *s; /* reused for every stamp: the template and checks are large */
    int counts[SP_NPHASES];
    sbuf fam[F_N];
    int rc;
} walk;

static void series(walk *w, int f, const char *labels, double v) {
    if (w->rc == 0) w->rc = sbuf_addf(&w->fam[f], "%s{%s} %.15g\n", families[f].name, labels, v);
}

/* The reason of the last entry of the history that entered Failed. */
static const char *failed_reason(const resource *r) {
    json_t *hist = json_object_get(r->status, "history");
    for (size_t i = json_array_size(hist); i > 0; i--) {
        json_t *h = json_array_get(hist, i - 1);
        if (strcmp(jstr(h, "phase", ""), "Failed") == 0) return jstr(h, "reason", "");
    }
    return "";
}

/* One series per check of the stamp's StampHealthCheck (or the default). */
static void health_series(walk *w, const resource *r, const char *base) {
    sctx *s = w->s;
    serr e = {0};
    memset(&s->t, 0, sizeof(s->t));
    if (tpl_parse(json_object_get(r->spec, "templateSpec"), &s->t, &e) != 0) return;
    str_copy(s->name, sizeof(s->name), r->name);
    sc_load_checks(s);
    for (int i = 0; i < s->checks.n; i++) {
        hc_result res;
        char labels[PROM_LABELS_MAX];
        hc_get(r->name, s->checks.checks[i].name, &res);
        if (!str_copy(labels, sizeof(labels), base) ||
            label_add(labels, sizeof(labels), "check", s->checks.checks[i].name) != 0)
            continue;
        series(w, F_CHECK, labels, res.state == HS_FAILING ? 1 : 0);
    }
}

static int per_stamp(const resource *r, void *arg) {
    walk *w = arg;
    int p = phase_of(&stamp_fsm, r);
    if (p < 0) return 0;
    w->counts[p]++;
    if (p == SP_DELETED) return 0;
    char base[PROM_LABELS_MAX] = "", labels[PROM_LABELS_MAX];
    if (label_add(base, sizeof(base), "stamp", r->name) != 0 ||
        label_add(base, sizeof(base), "region", jstr(r->spec, "region", "")) != 0 ||
        label_add(base, sizeof(base), "template", jstr(r->spec, "template", "")) != 0)
        return 0;

    str_copy(labels, sizeof(labels), base);
    if (label_add(labels, sizeof(labels), "phase", fsm_phase_name(&stamp_fsm, p)) == 0)
        series(w, F_PHASE, labels, (double)phase_age_ms(r) / 1000.0);

    json_t *act = json_object_get(r->status, "activation");
    bool checks_run = p == SP_CREATING || p == SP_ACTIVE || (p == SP_READY && json_is_object(act));
    if (p == SP_FAILED) {
        str_copy(labels, sizeof(labels), base);
        if (label_add(labels, sizeof(labels), "from", jstr(r->status, "previousPhase", "")) == 0 &&
            label_add(labels, sizeof(labels), "reason", failed_reason(r)) == 0)
            series(w, F_FAILED, labels, 1);
    }
    if (p == SP_CREATING || (p == SP_READY && json_is_object(act))) {
        str_copy(labels, sizeof(labels), base);
        bool create = p == SP_CREATING;
        if (label_add(labels, sizeof(labels), "operation", create ? "create" : "activate") == 0)
            series(w, F_ATTEMPT, labels, (double)jint(create ? r->status : act, "attempt", 1));
    }
    if (p == SP_ACTIVE) {
        json_t *hs = json_object_get(r->status, "health");
        series(w, F_RECOVERING, base, json_is_object(json_object_get(hs, "recovery")) ? 1 : 0);
    }
    if (checks_run) health_series(w, r, base);
    return w->rc != 0;
}

int stamp_prom_render(ctl_ctx *c, sbuf *out, serr *e) {
    walk *w = calloc(1, sizeof(*w));
    sctx *s = calloc(1, sizeof(*s));
    int rc = 0;
    if (w == NULL || s == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
        goto done;
    }
    s->c = c;
    s->requeue = -1;
    w->c = c;
    w->s = s;
    for (int f = 0; f < F_N; f++) sbuf_init(&w->fam[f], PROM_FAMILY_MAX);
    if ((rc = store_list(c->st, "Stamp", NULL, per_stamp, w, e)) != 0) goto done;
    if ((rc = w->rc) != 0) {
        serr_set(e, rc, "metrics: the stamps' series do not fit");
        goto done;
    }

    /* Seed 000's operational metrics. */
    static const struct {
        const char *name;
        int phase;
        const char *help;
    } gauges[] = {
        {"active_stamps", SP_ACTIVE, "Number of stamps in Active state"},
        {"ready_stamps", SP_READY, "Number of stamps in Ready state"},
        {"creating_stamps", SP_CREATING, "Number of stamps being created"},
        {"draining_stamps", SP_DRAINING, "Number of stamps being drained"},
        {"failed_stamps", SP_FAILED, "Number of stamps in Failed state"},
        {"deleting_stamps", SP_DELETING, "Number of stamps running their retirement steps"},
    };
    for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]) && rc == 0; i++)
        rc = sbuf_addf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", gauges[i].name, gauges[i].help,
                       gauges[i].name, gauges[i].name, w->counts[gauges[i].phase]);

    /* The timeouts of the table (stamp_fsm.c), as configured; a phase
     * whose timeout is off (0) has no series. */
    if (rc == 0)
        rc = sbuf_adds(out, "# HELP stamp_phase_timeout_seconds The configured timeout of a phase "
                            "(seconds), after which stampd moves the stamp on\n"
                            "# TYPE stamp_phase_timeout_seconds gauge\n");
    for (int i = 0; i < stamp_fsm.ntimeouts && rc == 0; i++) {
        const fsm_timeout *t = &stamp_fsm.timeouts[i];
        int64_t ms = config_duration(c->cfg, t->config_key);
        if (ms > 0)
            rc = sbuf_addf(out, "stamp_phase_timeout_seconds{phase=\"%s\"} %.17g\n",
                           fsm_phase_name(&stamp_fsm, t->phase), (double)ms / 1000.0);
    }
    for (int f = 0; f < F_N && rc == 0; f++) {
        rc = sbuf_addf(out, "# HELP %s %s\n# TYPE %s gauge\n", families[f].name, families[f].help,
                       families[f].name);
        if (rc == 0 && w->fam[f].len) rc = sbuf_add(out, w->fam[f].data, w->fam[f].len);
    }
    if (rc) serr_set(e, rc, "metrics: the answer does not fit");
done:
    if (w)
        for (int f = 0; f < F_N; f++) sbuf_free(&w->fam[f]);
    free(w);
    free(s);
    return rc;
}

/* ---- service discovery ---- */

typedef struct sd {
    ctl_ctx *c;
    sctx *s;
    json_t *groups;
    bool health; /* the health steps' URLs rather than the metrics steps' addresses */
    int rc;
    serr *e;
} sd;

/* The path stampd's own HTTP check of the stamp asks (its StampHealthCheck
 * or the default), or the template's health path. */
static const char *sd_health_path(sctx *s) {
    sc_load_checks(s);
    for (int i = 0; i < s->checks.n; i++)
        if (s->checks.checks[i].type == HC_HTTP && s->checks.checks[i].path[0])
            return s->checks.checks[i].path;
    return s->t.health_path ? s->t.health_path : "/health";
}

/* Long: one target group per metrics (or health) step, from the replicas
 * that serve. */
static int sd_stamp(const resource *r, void *arg) {
    sd *d = arg;
    int p = phase_of(&stamp_fsm, r);
    if (p != SP_ACTIVE && p != SP_DRAINING) return 0;
    sctx *s = d->s;
    memset(s, 0, sizeof(*s));
    s->c = d->c;
    s->requeue = -1;
    s->phase = p;
    str_copy(s->name, sizeof(s->name), r->name);
    s->r = *r; /* borrowed: never freed here */
    stamp_dir(d->c, r->name, NULL, s->dir, sizeof(s->dir));
    serr e = {0};
    if (sc_parse(s, &e) != 0) return 0;
    const char *hpath = d->health ? sd_health_path(s) : NULL;
    slot_procs *sl = calloc(TPL_MAX_REPLICAS, sizeof(*sl));
    if (sl == NULL) {
        d->rc = serr_set(d->e, SE_NOMEM, "out of memory");
        return 1;
    }
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS || !(d->health ? st->health : st->metrics) || st->ports == 0)
            continue;
        /* Every replica that runs (both sides of an update), at the ports
         * it holds; a GET never takes a lease. */
        char hash[SC_HASH_LEN];
        sc_step_hash(s, st, hash);
        json_t *targets = json_array();
        int count = sc_replica_want(s, st, SCALE_FULL);
        if (sc_scan_slots(s, st, hash, false, count, false, sl, &e) < 0) count = 0;
        for (int k = 0; k < count; k++) {
            for (int j = -1; j < sl[k].nold; j++) {
                if (j < 0 && !sl[k].cur) continue;
                int ports[TPL_MAX_PORTS];
                if (sc_replica_ports_held(s, st, k, j < 0 ? hash : sl[k].oldhash[j], ports, NULL) != 0)
                    continue;
                char hp[320];
                if (hpath ? str_fmt(hp, sizeof(hp), NULL, "url", "http://127.0.0.1:%d%s", ports[0], hpath)
                          : str_fmt(hp, sizeof(hp), NULL, "address", "127.0.0.1:%d", ports[0]))
                    continue;
                json_array_append_new(targets, json_string(hp));
            }
        }
        if (json_array_size(targets) == 0) {
            json_decref(targets);
            continue;
        }
        json_t *labels = json_pack("{s:s,s:s,s:s,s:s,s:s}", "stamp", r->name, "region",
                                   jstr(r->spec, "region", ""), "template",
                                   jstr(r->spec, "template", ""), "pool", tpl_pool_names[st->pool],
                                   "step", st->name);
        if (labels && !d->health &&
            json_object_set_new(labels, "__metrics_path__",
                                json_string(s->t.metrics_path ? s->t.metrics_path : "/metrics"))) {
            json_decref(labels);
            labels = NULL;
        }
        if (labels == NULL) {
            json_decref(targets);
            free(sl);
            d->rc = serr_set(d->e, SE_NOMEM, "out of memory");
            return 1;
        }
        json_array_append_new(d->groups, json_pack("{s:o,s:o}", "targets", targets, "labels", labels));
    }
    free(sl);
    return 0;
}

static int sd_targets(ctl_ctx *c, bool health, json_t **out, serr *e) {
    sd d = {.c = c, .s = calloc(1, sizeof(sctx)), .groups = json_array(), .health = health, .e = e};
    int rc = d.s == NULL || d.groups == NULL ? serr_set(e, SE_NOMEM, "out of memory") : 0;
    if (rc == 0) rc = store_list(c->st, "Stamp", NULL, sd_stamp, &d, e);
    if (rc == 0) rc = d.rc;
    free(d.s);
    if (rc) {
        json_decref(d.groups);
        return rc;
    }
    *out = d.groups;
    return 0;
}

int stamp_prom_targets(ctl_ctx *c, json_t **out, serr *e) { return sd_targets(c, false, out, e); }

int stamp_prom_health_targets(ctl_ctx *c, json_t **out, serr *e) { return sd_targets(c, true, out, e); }
