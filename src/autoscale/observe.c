/*
 * observe.c - see observe.h.
 */
#include "autoscale/observe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "stamp/stamp_ctl.h"
#include "traffic/traffic.h"
#include "util/httpc.h"
#include "util/util.h"

#define OBS_PROCS 256

/* The first source that did not answer: "<stamp>: <why>". */
static void note(as_observation *o, const char *stamp, const char *why) {
    if (o->why[0] == '\0') str_fmt_cut(o->why, sizeof(o->why), "%s: %s", stamp, why);
}

static void observe_procs(ctl_ctx *c, const resource *r, as_observation *o) {
    char prefix[RT_UNIT_MAX];
    if (str_fmt(prefix, sizeof(prefix), NULL, "unit", "%s/p/", r->name)) return;
    rt_proc *p = calloc(OBS_PROCS, sizeof(*p));
    int *pids = calloc(OBS_PROCS, sizeof(*pids));
    serr e = {0};
    int n = p && pids ? rt_scan(c->rt, prefix, false, p, OBS_PROCS, &e) : -1;
    if (n > 0) {
        if (n > OBS_PROCS) n = OBS_PROCS;
        for (int i = 0; i < n; i++) pids[i] = (int)p[i].pid;
        as_proc_usage(pids, n, &o->cpu_ticks, &o->rss_bytes);
        o->ok_proc = true;
    } else {
        note(o, r->name, n == 0 ? "no process runs" : e.msg);
    }
    free(p);
    free(pids);
}

static void observe_replica(const char *url, int64_t timeout_ms, as_observation *o, const char *stamp) {
    httpc_req rq = {.url = url, .timeout_ms = timeout_ms, .max_response = 1 << 20};
    long status = 0;
    sbuf body;
    serr e = {0};
    int rc = httpc_do(&rq, &status, &body, &e);
    if (rc == 0 && status != 200) {
        sbuf_free(&body);
        rc = -1;
    }
    if (rc != 0) {
        o->unreachable++;
        note(o, stamp, e.msg[0] ? e.msg : "metrics did not answer 200");
        return;
    }
    double v;
    if (prom_value(body.data, "stamp_workload_active_connections", &v) == 0) o->connections += v;
    if (prom_value(body.data, "stamp_workload_queue_depth", &v) == 0) o->queue += v;
    if (prom_value(body.data, "stamp_workload_active_jobs", &v) == 0) o->jobs += v;
    if (prom_value(body.data, "stamp_workload_job_capacity", &v) == 0) o->job_capacity += v;
    as_hist h;
    serr he = {0};
    if (as_hist_parse(body.data, AS_LATENCY_HISTOGRAM, &h, &he) == 0 && as_hist_add(&o->latency, &h) == 0)
        o->ok_latency = true;
    sbuf_free(&body);
}

void as_observe(ctl_ctx *c, const resource *r, as_observation *o) {
    memset(o, 0, sizeof(*o));
    o->mono_ms = mono_ms();
    observe_procs(c, r, o);
    stamp_capacity_view *cap = calloc(1, sizeof(*cap));
    serr e = {0};
    if (cap == NULL || stamp_capacity(c, r, cap, &e) != 0) {
        note(o, r->name, cap ? e.msg : "out of memory");
        free(cap);
        return;
    }
    o->cpu_millis_cap = cap->cpu_millis;
    o->memory_cap = cap->memory_bytes;
    o->replicas = cap->nports;
    for (int i = 0; i < cap->nports; i++) {
        char url[512];
        if (str_fmt(url, sizeof(url), NULL, "url", "http://127.0.0.1:%d%s", cap->metrics_ports[i],
                    cap->metrics_path) == 0)
            observe_replica(url, c->cfg ? c->cfg->probe_timeout_ms : 2000, o, r->name);
    }
    /* A replica that did not answer makes the stamp's workload figures
     * partial: missing (and named), not a smaller number. */
    o->ok_workload = cap->nports > 0 && o->unreachable == 0;
    if (!o->ok_workload) o->ok_latency = false;
    if (cap->nports == 0) note(o, r->name, "no replica reports metrics");
    free(cap);
    if (traffic_enabled(c->tr)) {
        tr_stat st;
        serr te = {0};
        if (traffic_stat(c->tr, stamp_frontdoor_server(r), &st, &te) == 0) {
            o->ok_frontdoor = true;
            o->fd_sessions = (double)st.scur;
        }
    } else {
        o->ok_frontdoor = true; /* no front door: its share is 0 */
    }
}

static void missing(as_obs_values *out, int m, const char *why) {
    out->have[m] = false;
    str_fmt_cut(out->missing[m], sizeof(out->missing[m]), "%s", why);
}

static void set(as_obs_values *out, int m, double v) {
    out->have[m] = true;
    out->v[m] = v;
    out->missing[m][0] = '\0';
}

void as_obs_values_of(const as_observation *h, int n, int64_t latency_window_ms, as_obs_values *out) {
    memset(out, 0, sizeof(*out));
    if (n <= 0) {
        for (int m = 0; m < AM_N; m++) missing(out, m, "not observed yet");
        return;
    }
    const as_observation *now = &h[n - 1];
    const char *why = now->why[0] ? now->why : "source did not answer";
    /* CPU: ticks over the last interval against the declared cores. */
    const as_observation *prev = n >= 2 ? &h[n - 2] : NULL;
    if (prev && prev->ok_proc && now->ok_proc && now->mono_ms > prev->mono_ms && now->cpu_millis_cap > 0 &&
        now->cpu_ticks >= prev->cpu_ticks) {
        double secs = (double)(now->mono_ms - prev->mono_ms) / 1000.0;
        double used = (double)(now->cpu_ticks - prev->cpu_ticks) / (double)sysconf(_SC_CLK_TCK);
        set(out, AM_CPU, 100.0 * used / (secs * (double)now->cpu_millis_cap / 1000.0));
    } else {
        missing(out, AM_CPU, now->ok_proc ? "one more observation needed" : why);
    }
    if (now->ok_proc && now->memory_cap > 0)
        set(out, AM_MEMORY, 100.0 * (double)now->rss_bytes / (double)now->memory_cap);
    else
        missing(out, AM_MEMORY, why);
    /* p99 over the window: the newest against the oldest within it. */
    const as_observation *old = NULL;
    for (int i = n - 2; i >= 0; i--) {
        if (now->mono_ms - h[i].mono_ms > latency_window_ms) break;
        if (h[i].ok_latency) old = &h[i];
    }
    if (now->ok_latency && old) {
        as_hist w;
        as_hist_delta(&now->latency, &old->latency, &w);
        double q = as_hist_quantile(&w, 0.99);
        if (q >= 0) set(out, AM_LATENCY_P99, q);
        else set(out, AM_LATENCY_P99, 0); /* no request in the window: nothing was slow */
    } else {
        missing(out, AM_LATENCY_P99, now->ok_latency ? "one more observation needed" : why);
    }
    if (now->ok_workload && now->ok_frontdoor) set(out, AM_CONNECTIONS, now->connections + now->fd_sessions);
    else missing(out, AM_CONNECTIONS, why);
    if (now->ok_workload) set(out, AM_QUEUE_DEPTH, now->queue);
    else missing(out, AM_QUEUE_DEPTH, why);
    if (now->ok_workload && now->job_capacity > 0) set(out, AM_ACTIVE_JOBS, 100.0 * now->jobs / now->job_capacity);
    else missing(out, AM_ACTIVE_JOBS, now->ok_workload ? "the workload reports no job capacity" : why);
}
