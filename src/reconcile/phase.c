/*
 * phase.c - see phase.h.
 */
#include "reconcile/phase.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "reconcile/jobs.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/wallclock.h"

int ctl_key(char *buf, size_t len, const char *kind, const char *name) {
    if (snprintf(buf, len, "%s/%s", kind, name) >= (int)len) return SE_INVAL;
    return 0;
}

static int add_key(ctl_ctx *c, const char *kind, const char *name, bool change) {
    char key[WQ_KEY_MAX];
    /* A follower asks the leader (cluster.h). */
    if (cluster_enabled() && !cluster_leading() && c->st) {
        serr e = {0};
        int rc = store_notify(c->st, kind, name, &e);
        if (rc) log_warnx("cannot wake the leader for %s/%s: %s", kind, name, e.msg);
        return rc;
    }
    if (c->q == NULL) return 0;
    int rc = ctl_key(key, sizeof(key), kind, name);
    if (rc) return rc;
    if (change) wq_forget(c->q, key);
    rc = wq_add(c->q, key);
    if (rc == SE_LIMIT) {
        metrics_inc(CTL_DROPPED_METRIC, "", 1);
        /* Rate-limited: a full queue under a flood would otherwise log a
         * line per add. */
        static _Atomic int64_t last_log;
        int64_t now = mono_ms(), prev = last_log;
        if (now - prev >= 10000 && atomic_compare_exchange_strong(&last_log, &prev, now))
            log_warnx("work queue full: %s not queued (see %s)", key, CTL_DROPPED_METRIC);
    }
    return rc;
}

int ctl_enqueue(ctl_ctx *c, const char *kind, const char *name) {
    return add_key(c, kind, name, true);
}

int ctl_wake(ctl_ctx *c, const char *kind, const char *name) {
    return add_key(c, kind, name, false);
}

int phase_of(const fsm_def *d, const resource *r) {
    return fsm_phase_parse(d, json_string_value(json_object_get(r->status, "phase")));
}

int64_t phase_age_ms(const resource *r) {
    json_t *since = json_object_get(r->status, "phaseSince");
    if (!json_is_integer(since)) return 0;
    return wall_age_ms(json_integer_value(since));
}

void phase_init(const fsm_def *d, resource *r, int phase) {
    json_object_set_new(r->status, "phase", json_string(fsm_phase_name(d, phase)));
    json_object_set_new(r->status, "phaseSince", json_integer(wall_stamp_ms()));
    char when[40];
    json_object_set_new(r->status, "phaseSinceTime",
                        json_string(fmt_time_rfc3339_ms(json_integer_value(json_object_get(r->status, "phaseSince")),
                                                        when, sizeof(when))));
}

int phase_change(ctl_ctx *c, const fsm_def *d, resource *r, int to, const char *reason,
                 const char *message, serr *e) {
    int from = phase_of(d, r);
    const fsm_transition *t = fsm_transition_find(d, from, to);
    if (t == NULL)
        return serr_set(e, SE_PHASE, "%s %s: no transition %s -> %s in the table", d->kind,
                        r->name, fsm_phase_name(d, from), fsm_phase_name(d, to));
    int64_t age = phase_age_ms(r);
    int64_t now = wall_stamp_ms();
    char text[1024];
    snprintf(text, sizeof(text), "%s -> %s: %s%s%s", fsm_phase_name(d, from), fsm_phase_name(d, to),
             t->trigger, message && *message ? " (" : "", message && *message ? message : "");
    if (message && *message) str_copy(text + strlen(text), sizeof(text) - strlen(text), ")");

    json_object_set_new(r->status, "previousPhase", json_string(fsm_phase_name(d, from)));
    json_object_set_new(r->status, "phase", json_string(fsm_phase_name(d, to)));
    /* phaseSince (ms, for code) and phaseSinceTime (RFC 3339 UTC, for people
     * and clients) say the same. */
    char when[40];
    fmt_time_rfc3339_ms(now, when, sizeof(when));
    json_object_set_new(r->status, "phaseSince", json_integer(now));
    json_object_set_new(r->status, "phaseSinceTime", json_string(when));
    json_object_set_new(r->status, "message", json_string(text));
    json_t *hist = json_object_get(r->status, "history");
    if (!json_is_array(hist)) {
        hist = json_array();
        json_object_set_new(r->status, "history", hist);
    }
    json_array_append_new(hist, json_pack("{s:s,s:I,s:s,s:s}", "phase", fsm_phase_name(d, to), "at",
                                          (json_int_t)now, "time", when, "reason", reason));
    while (json_array_size(hist) > 50) json_array_remove(hist, 0);

    store_event ev = {.type = d->warning && d->warning[to] ? "Warning" : "Normal",
                      .reason = reason,
                      .message = text,
                      .from = fsm_phase_name(d, from),
                      .to = fsm_phase_name(d, to)};
    int rc = store_update(c->st, r, &ev, e);
    if (rc) return rc;
    char labels[128];
    snprintf(labels, sizeof(labels), "from=\"%s\",to=\"%s\"", fsm_phase_name(d, from),
             fsm_phase_name(d, to));
    if (d->transitions_metric) metrics_inc(d->transitions_metric, labels, 1);
    snprintf(labels, sizeof(labels), "state=\"%s\"", fsm_phase_name(d, from));
    if (d->duration_metric) metrics_observe(d->duration_metric, labels, (double)age / 1000.0);
    return 0;
}

void ctl_job_wake(void *done_arg, uint64_t id, const char *key) {
    (void)id;
    char kind[64], name[RES_NAME_MAX];
    const char *slash = strchr(key, '/');
    if (slash == NULL || (size_t)(slash - key) >= sizeof(kind)) return;
    memcpy(kind, key, (size_t)(slash - key));
    kind[slash - key] = '\0';
    size_t n = strcspn(slash + 1, "/");
    if (n == 0 || n >= sizeof(name)) return;
    memcpy(name, slash + 1, n);
    name[n] = '\0';
    ctl_wake(done_arg, kind, name);
}

int ctl_job(ctl_ctx *c, json_t *rec, const char *key, job_fn fn, void *arg, void (*free_arg)(void *),
            int *state, json_t **result, bool *changed, serr *e) {
    int rc;
    *result = NULL;
    *changed = false;
    if (c->jobs == NULL) {
        /* No pool (a tool or a test): run it here. */
        rc = fn(arg, result, e);
        free_arg(arg);
        *state = JOB_DONE;
        return rc;
    }
    const char *jid = json_string_value(json_object_get(rec, "job"));
    uint64_t id = jid ? strtoull(jid, NULL, 10) : 0;
    if (id != 0) {
        job_result r;
        int st = jobs_poll(c->jobs, id, &r);
        if (st == JOB_QUEUED || st == JOB_RUNNING) {
            free_arg(arg);
            *state = st;
            return 0;
        }
        if (st == JOB_DONE) {
            free_arg(arg);
            json_object_del(rec, "job");
            *changed = true;
            *state = JOB_DONE;
            rc = r.rc ? serr_set(e, r.rc, "%s", r.message) : 0;
            if (rc == 0) {
                *result = r.result;
                r.result = NULL;
            }
            job_result_free(&r);
            return rc;
        }
        /* Unknown: stampd restarted, or the result expired.  The work is
         * check-then-act: start it again. */
    }
    if ((rc = jobs_submit(c->jobs, key, fn, arg, free_arg, ctl_job_wake, c, &id, e))) return rc;
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)id);
    json_object_set_new(rec, "job", json_string(buf));
    *changed = true;
    *state = JOB_QUEUED;
    return 0;
}
