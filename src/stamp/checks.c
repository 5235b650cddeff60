/*
 * checks.c - a stamp's health checks: which set applies (its
 * StampHealthCheck, or the default), which replicas each probe targets,
 * and the results kept by src/health (thresholds, state).  The probes
 * themselves are in src/health/probes.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health/probes.h"
#include "stamp/internal.h"
#include "util/metrics.h"
#include "util/util.h"

void sc_load_checks(sctx *s) {
    hc_set *set = &s->checks;
    const char *name = s->t.health_check;
    s->checks_loaded = true;
    if (name == NULL) {
        hc_default(s->c->cfg, s->t.health_path, set);
        return;
    }
    resource r;
    serr e = {0};
    resource_init(&r);
    if (store_get(s->c->st, "StampHealthCheck", name, &r, &e) == 0) {
        int rc = hc_parse(r.spec, set, &e);
        resource_free(&r);
        if (rc == 0) {
            snprintf(set->source, sizeof(set->source), "StampHealthCheck/%s", name);
            return;
        }
    }
    resource_free(&r);
    /* Named but missing (or no longer valid): the default check, said loudly. */
    hc_default(s->c->cfg, s->t.health_path, set);
    snprintf(set->source, sizeof(set->source), "default (StampHealthCheck/%s: %s)", name,
             e.code == SE_NOTFOUND ? "not found" : "invalid");
}

int64_t sc_longest_interval(const sctx *s) {
    int64_t m = 0;
    for (int i = 0; i < s->checks.n; i++)
        if (s->checks.checks[i].interval_ms > m) m = s->checks.checks[i].interval_ms;
    return m;
}

static int exec_check(sctx *s, const hc_check *c, char *err, size_t errlen) {
    sc_vars *v = sc_vars_new(s);
    const char **env = NULL;
    if (v != NULL) {
        sc_var_set(v, "STAMP_CHECK", c->name);
        sc_var_set(v, "PATH", "/usr/local/bin:/usr/bin:/bin");
        env = sc_vars_envp(v);
    }
    if (env == NULL) {
        sc_vars_free(v);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char logp[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/logs", s->dir);
    mkdir_p(dir, 0750, NULL);
    snprintf(logp, sizeof(logp), "%s/health-%s.log", dir, c->name);
    int rc = probe_exec(c->command, env, s->dir, logp, c->timeout_ms, err, errlen);
    free(env);
    sc_vars_free(v);
    return rc;
}

static int replica_check(sctx *s, const hc_check *c, int mode, char *err, size_t errlen) {
    replica_ref reps[SC_MAX_REPLICA_REFS];
    bool thr = c->type == HC_THRESHOLD;
    int n = sc_replicas_of(s, !thr, mode, reps, SC_MAX_REPLICA_REFS);
    double worst[HC_MAX_EXPRS];
    bool seen[HC_MAX_EXPRS] = {false};
    if (thr && n == 0) {
        snprintf(err, errlen, "no replica reports metrics");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char url[512], why[400];
        int rc;
        if (c->type == HC_TCP) {
            rc = probe_tcp(reps[i].port, c->timeout_ms, why, sizeof(why));
        } else {
            snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", reps[i].port,
                     thr ? s->t.metrics_path : c->path);
            rc = thr ? probe_scrape(url, c->timeout_ms, c, worst, seen, why, sizeof(why))
                     : probe_http(url, c->expect_status, c->timeout_ms, why, sizeof(why));
        }
        if (rc != 0) {
            snprintf(err, errlen, "%s-%d: %s", reps[i].st->name, reps[i].idx, why);
            return -1;
        }
    }
    return thr ? probe_threshold_verdict(c, worst, seen, err, errlen) : 0;
}

/* Runs one check against the stamp; 0 when it passes. */
static int run_check(sctx *s, const hc_check *c, int mode, char *err, size_t errlen) {
    switch (c->type) {
    case HC_PROCESS: return sc_missing_replicas(s, mode, err, errlen, NULL) ? -1 : 0;
    case HC_EXEC: return exec_check(s, c, err, errlen);
    case HC_TCP:
    case HC_HTTP:
    case HC_THRESHOLD: return replica_check(s, c, mode, err, errlen);
    }
    snprintf(err, errlen, "unknown check type %d", c->type);
    return -1;
}

void sc_eval_health(sctx *s, int mode, health_view *h) {
    const hc_set *set = &s->checks;
    h->all_passing = true;
    h->failing = false;
    h->why[0] = '\0';
    for (int i = 0; i < set->n; i++) {
        const hc_check *c = &set->checks[i];
        int64_t due = hc_due_in(s->name, c);
        hc_result r;
        if (due == 0) {
            char err[400] = "";
            int64_t t0 = mono_ms();
            bool ok = run_check(s, c, mode, err, sizeof(err)) == 0;
            if (!ok) {
                char lbl[160];
                snprintf(lbl, sizeof(lbl), "stamp=\"%s\",check=\"%s\"", s->name, c->name);
                metrics_inc("stamp_health_check_failures_total", lbl, 1);
            }
            hc_record(s->name, c, ok, mono_ms() - t0, err);
            due = c->interval_ms;
        }
        sc_want(s, due);
        hc_get(s->name, c->name, &r);
        if (r.state != HS_PASSING) {
            h->all_passing = false;
            if (h->why[0] == '\0' || (r.state == HS_FAILING && !h->failing))
                snprintf(h->why, sizeof(h->why), "%s %s (%d/%d passes%s%s)", c->name,
                         hc_state_names[r.state], r.passes, c->healthy_threshold,
                         r.last_error[0] ? "; " : "", r.last_error);
        }
        if (r.state == HS_FAILING) h->failing = true;
    }
}
