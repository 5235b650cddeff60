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
#include "reconcile/jobs.h"
#include "stamp/internal.h"
#include "util/log.h"
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

#define GATE_RETRY_MS 200

/* One run of one check, self-contained so that it can run on the job pool
 * while the reconcile worker goes on: the targets are resolved (ports,
 * URLs, the exec environment) when it is queued. */
typedef struct probe_run {
    ctl_ctx *c;
    char stamp[RES_NAME_MAX];
    hc_check check;
    int64_t queued_mono;
    int n;
    struct {
        int port;
        char label[RES_NAME_MAX + 16];
    } t[SC_MAX_REPLICA_REFS];
    char metrics_path[256];
    sc_vars *vars; /* exec */
    char cwd[PATH_MAX];
    char log[PATH_MAX];
} probe_run;

static void probe_run_free(void *arg) {
    probe_run *p = arg;
    if (p == NULL) return;
    sc_vars_free(p->vars);
    free(p);
}

static int exec_check(probe_run *p, char *err, size_t errlen) {
    const char **env = sc_vars_envp(p->vars);
    if (env == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = probe_exec(p->check.command, env, p->cwd, p->log, p->check.timeout_ms, err, errlen);
    free(env);
    return rc;
}

static int replica_check(probe_run *p, char *err, size_t errlen) {
    const hc_check *c = &p->check;
    bool thr = c->type == HC_THRESHOLD;
    double worst[HC_MAX_EXPRS];
    bool seen[HC_MAX_EXPRS] = {false};
    if (thr && p->n == 0) {
        snprintf(err, errlen, "no replica reports metrics");
        return -1;
    }
    for (int i = 0; i < p->n; i++) {
        char url[512], why[400];
        int rc;
        if (c->type == HC_TCP) {
            rc = probe_tcp(p->t[i].port, c->timeout_ms, why, sizeof(why));
        } else {
            snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", p->t[i].port,
                     thr ? p->metrics_path : c->path);
            rc = thr ? probe_scrape(url, c->timeout_ms, c, worst, seen, why, sizeof(why))
                     : probe_http(url, c->expect_status, c->timeout_ms, why, sizeof(why));
        }
        if (rc != 0) {
            str_fmt_cut(err, errlen, "%s: %s", p->t[i].label, why);
            return -1;
        }
    }
    return thr ? probe_threshold_verdict(c, worst, seen, err, errlen) : 0;
}

/* Runs the check and records its result (unless the stamp's results were
 * reset since it was queued: a redeploy or an activation). */
static int probe_job(void *arg, json_t **result, serr *e) {
    (void)result;
    (void)e;
    probe_run *p = arg;
    char err[400] = "";
    int64_t t0 = mono_ms();
    bool ok = (p->check.type == HC_EXEC ? exec_check(p, err, sizeof(err))
                                        : replica_check(p, err, sizeof(err))) == 0;
    if (hc_record_since(p->stamp, &p->check, p->queued_mono, ok, mono_ms() - t0, err) >= 0 && !ok) {
        char lbl[RES_NAME_MAX + HC_NAME_MAX + 32]; /* both names fit */
        snprintf(lbl, sizeof(lbl), "stamp=\"%s\",check=\"%s\"", p->stamp, p->check.name);
        metrics_inc("stamp_health_check_failures_total", lbl, 1);
    }
    return 0;
}

static probe_run *probe_prepare(sctx *s, const hc_check *c, int mode) {
    probe_run *p = calloc(1, sizeof(*p));
    if (p == NULL) return NULL;
    p->c = s->c;
    str_copy(p->stamp, sizeof(p->stamp), s->name);
    p->check = *c;
    p->queued_mono = mono_ms();
    if (c->type == HC_EXEC) {
        if ((p->vars = sc_vars_new(s)) == NULL) {
            free(p);
            return NULL;
        }
        sc_var_set(p->vars, "STAMP_CHECK", c->name);
        sc_var_set(p->vars, "PATH", "/usr/local/bin:/usr/bin:/bin");
        str_copy(p->cwd, sizeof(p->cwd), s->dir);
        char dir[PATH_MAX];
        /* Without a log the check still runs (its output is dropped). */
        if (str_fmt(dir, sizeof(dir), NULL, "path", "%s/logs", s->dir) == 0 &&
            mkdir_p(dir, 0750, NULL) == 0 &&
            str_fmt(p->log, sizeof(p->log), NULL, "path", "%s/health-%s.log", dir, c->name) != 0)
            p->log[0] = '\0';
        return p;
    }
    replica_ref reps[SC_MAX_REPLICA_REFS];
    p->n = sc_replicas_of(s, c->type != HC_THRESHOLD, mode, reps, SC_MAX_REPLICA_REFS);
    for (int i = 0; i < p->n; i++) {
        p->t[i].port = reps[i].port;
        snprintf(p->t[i].label, sizeof(p->t[i].label), "%s-%d", reps[i].st->name, reps[i].idx);
    }
    str_copy(p->metrics_path, sizeof(p->metrics_path), s->t.metrics_path);
    return p;
}

/* Start the check on the job pool (or, without one, run it here).  A
 * check whose run is still queued or running is not started again. */
static void start_check(sctx *s, const hc_check *c, int mode) {
    if (c->type == HC_PROCESS) {
        /* A scan of /proc (cached by the runtime): no need for a job. */
        char err[400] = "";
        bool ok = sc_missing_replicas(s, mode, err, sizeof(err), NULL) == 0;
        hc_record(s->name, c, ok, 0, err);
        return;
    }
    char key[JOBS_KEY_MAX];
    if (snprintf(key, sizeof(key), "Stamp/%s/check/%s", s->name, c->name) >= (int)sizeof(key)) return;
    if (s->c->jobs && jobs_find(s->c->jobs, key) != 0) return;
    probe_run *p = probe_prepare(s, c, mode);
    if (p == NULL) {
        hc_record(s->name, c, false, 0, "out of memory");
        return;
    }
    if (s->c->jobs == NULL) {
        probe_job(p, NULL, NULL);
        probe_run_free(p);
        return;
    }
    uint64_t id;
    serr e = {0};
    if (jobs_submit(s->c->jobs, key, probe_job, p, probe_run_free, ctl_job_wake, s->c, &id, &e) != 0)
        log_warnx("stamp %s: check %s not started: %s", s->name, c->name, e.msg);
}

void sc_eval_health(sctx *s, int mode, bool gate, health_view *h) {
    const hc_set *set = &s->checks;
    h->all_passing = true;
    h->failing = false;
    h->why[0] = '\0';
    for (int i = 0; i < set->n; i++) {
        const hc_check *c = &set->checks[i];
        int64_t due = hc_due_in(s->name, c);
        hc_result r;
        /* A gate (Creating, an activation) waits on checks that have not
         * passed yet: they are tried again every GATE_RETRY_MS rather than
         * every interval (replicas just started answer a moment later), as
         * a startup probe would: HTTP, TCP and process checks only, an exec
         * or threshold check may be costly.  Failures there take nothing
         * out of rotation: the stamp is not in it. */
        bool cheap = c->type == HC_HTTP || c->type == HC_TCP || c->type == HC_PROCESS;
        if (gate && cheap && due > GATE_RETRY_MS && hc_get(s->name, c->name, &r) &&
            r.state != HS_PASSING && mono_ms() - r.last_mono >= GATE_RETRY_MS)
            due = 0;
        if (due == 0) {
            /* The job's end wakes the stamp; the interval is the latest
             * look in case the wake-up is lost. */
            start_check(s, c, mode);
            due = hc_due_in(s->name, c);
            if (due == 0) due = c->interval_ms;
            if (gate && cheap && due > GATE_RETRY_MS) due = GATE_RETRY_MS;
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
