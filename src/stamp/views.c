/*
 * views.c - what the API shows of a stamp beyond its record: the live
 * result of every health check, its lifecycle metrics (from the events'
 * from/to columns, which only phase_change() writes), and the logs of its
 * exec steps, from its directory or, once Deleted, from its archive.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stamp/internal.h"
#include "util/util.h"

/* ---- views for the API: health and metrics of one stamp ---- */

int stamp_health_json(ctl_ctx *c, const char *name, json_t **out, serr *e) {
    int rc;
    sctx *s = sc_load(c, name, &rc, e);
    if (s == NULL) return rc;
    if (rc == 0) rc = sc_parse(s, e);
    if (rc == 0) {
        sc_load_checks(s);
        json_t *h = hc_snapshot(name, &s->checks);
        json_t *hs = json_object_get(s->r.status, "health");
        json_object_set_new(h, "stamp", json_string(name));
        json_object_set_new(h, "phase", json_string(jstr(s->r.status, "phase", "")));
        json_object_set_new(h, "status", hs ? json_deep_copy(hs) : json_object());
        json_object_set_new(h, "frontdoor", json_string(jstr(s->r.status, "frontdoor", "none")));
        *out = h;
    }
    sc_free(s);
    return rc;
}

int stamp_metrics_json(ctl_ctx *c, const char *name, int64_t period_ms, json_t **out, serr *e) {
    resource r;
    resource_init(&r);
    int rc = store_get(c->st, "Stamp", name, &r, e);
    if (rc) {
        resource_free(&r);
        return rc;
    }
    json_t *evs = NULL;
    if ((rc = store_events(c->st, "Stamp", name, 10000, &evs, e))) {
        resource_free(&r);
        return rc;
    }
    int64_t now = now_ms(), since = now - period_ms;
    int64_t in_phase[8] = {0};
    json_t *transitions = json_object(), *drains = json_array(), *acts = json_array();
    int64_t ntrans = 0, drain_start = 0, act_start = 0, cur_since = 0;
    int cur = -1;
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev) {
        int64_t t = json_integer_value(json_object_get(ev, "timeMs"));
        const char *reason = json_string_value(json_object_get(ev, "reason"));
        if (reason && strcmp(reason, "Activating") == 0) act_start = t;
        /* A phase change carries from and to (columns phase_change() writes). */
        const char *from = json_string_value(json_object_get(ev, "from"));
        const char *to = json_string_value(json_object_get(ev, "to"));
        int f = from ? fsm_phase_parse(&stamp_fsm, from) : -1;
        int tt = to ? fsm_phase_parse(&stamp_fsm, to) : -1;
        if (f < 0 || tt < 0) continue;
        if (cur >= 0 && cur < 8) {
            int64_t a = cur_since > since ? cur_since : since;
            if (t > a) in_phase[cur] += t - a;
        }
        cur = tt;
        cur_since = t;
        if (tt == SP_DRAINING) drain_start = t;
        if (t >= since) {
            char key[80];
            snprintf(key, sizeof(key), "%s -> %s", from, to);
            json_object_set_new(transitions, key,
                                json_integer(json_integer_value(json_object_get(transitions, key)) + 1));
            ntrans++;
            if (f == SP_DRAINING && tt != SP_ACTIVE && drain_start)
                json_array_append_new(drains, json_pack("{s:I,s:s,s:s}", "durationMs",
                                                        (json_int_t)(t - drain_start), "to", to,
                                                        "reason", reason ? reason : ""));
            if (f == SP_READY && tt == SP_ACTIVE && act_start)
                json_array_append_new(acts, json_pack("{s:I}", "durationMs", (json_int_t)(t - act_start)));
        }
    }
    if (cur >= 0 && cur < 8) {
        int64_t a = cur_since > since ? cur_since : since;
        if (now > a) in_phase[cur] += now - a;
    }
    json_t *tip = json_object();
    for (int p = 0; p < stamp_fsm.nphases && p < 8; p++)
        if (in_phase[p]) json_object_set_new(tip, fsm_phase_name(&stamp_fsm, p), json_integer(in_phase[p]));
    json_t *fd = json_null();
    if (traffic_enabled(c->tr)) {
        tr_stat st;
        serr e2 = {0};
        if (traffic_stat(c->tr, stamp_frontdoor_server(&r), &st, &e2) == 0 && st.present)
            fd = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "status", st.status, "currentSessions",
                           (json_int_t)st.scur, "queued", (json_int_t)st.qcur, "sessionsTotal",
                           (json_int_t)st.stot, "sessionRate", (json_int_t)st.rate, "requestsTotal",
                           (json_int_t)st.req_tot, "responses5xx", (json_int_t)st.hrsp_5xx,
                           "avgResponseMs", (json_int_t)st.rtime_ms);
        else
            fd = json_pack("{s:s}", "status", e2.msg[0] ? e2.msg : "not in the front door");
    }
    *out = json_pack("{s:s,s:s,s:I,s:I,s:o,s:o,s:o,s:o,s:o}", "stamp", name, "phase",
                     jstr(r.status, "phase", ""), "periodMs", (json_int_t)period_ms, "transitionsTotal",
                     (json_int_t)ntrans, "transitions", transitions, "timeInPhaseMs", tip, "drains",
                     drains, "activations", acts, "frontdoor", fd);
    json_decref(evs);
    resource_free(&r);
    return 0;
}

/* ---- step logs ---- */

#define STEP_LOGS_MAX 512

typedef struct step_log {
    char step[RES_NAME_MAX];
    char run[32];
    int64_t bytes;
    int64_t mtime_ms;
} step_log;

/* The steps directory that holds the stamp's logs now. */
static void step_log_dir(ctl_ctx *c, const char *name, char *buf, size_t len) {
    snprintf(buf, len, "%s/stamps/%s/steps", c->data_dir, name);
    if (!path_exists(buf)) snprintf(buf, len, "%s/archive/%s/steps", c->data_dir, name);
}

/* "STEP.RUN.log" -> step, run ("create-1"); false for anything else. */
static bool step_log_name(const char *file, step_log *out) {
    size_t n = strlen(file);
    if (n < 5 || strcmp(file + n - 4, ".log") != 0) return false;
    const char *dot = NULL;
    for (const char *p = file + n - 5; p > file; p--)
        if (*p == '.') {
            dot = p;
            break;
        }
    if (dot == NULL) return false;
    size_t sl = (size_t)(dot - file), rl = n - 4 - sl - 1;
    if (sl >= sizeof(out->step) || rl >= sizeof(out->run) || rl == 0) return false;
    memcpy(out->step, file, sl);
    out->step[sl] = '\0';
    memcpy(out->run, dot + 1, rl);
    out->run[rl] = '\0';
    /* create-N, delete-N; an update's runs: update<G>-N, rollback<G>-N */
    return strncmp(out->run, "create-", 7) == 0 || strncmp(out->run, "delete-", 7) == 0 ||
           strncmp(out->run, "update", 6) == 0 || strncmp(out->run, "rollback", 8) == 0;
}

static int step_log_cmp(const void *a, const void *b) {
    const step_log *x = a, *y = b;
    if (x->mtime_ms != y->mtime_ms) return x->mtime_ms < y->mtime_ms ? -1 : 1;
    int c = strcmp(x->step, y->step);
    return c ? c : strcmp(x->run, y->run);
}

/* Every log of the stamp, oldest first; *n its count. */
static int step_logs_scan(ctl_ctx *c, const char *name, step_log **out, int *n, char *dir, size_t dlen,
                          serr *e) {
    *out = NULL;
    *n = 0;
    step_log_dir(c, name, dir, dlen);
    DIR *d = opendir(dir);
    if (d == NULL) return errno == ENOENT ? 0 : serr_set(e, SE_IO, "%s: %s", dir, strerror(errno));
    step_log *v = calloc(STEP_LOGS_MAX, sizeof(*v));
    if (v == NULL) {
        closedir(d);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && *n < STEP_LOGS_MAX) {
        step_log x = {0};
        if (!step_log_name(de->d_name, &x)) continue;
        char path[PATH_MAX];
        struct stat sb;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
            stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        x.bytes = (int64_t)sb.st_size;
        x.mtime_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
        v[(*n)++] = x;
    }
    closedir(d);
    qsort(v, (size_t)*n, sizeof(*v), step_log_cmp);
    *out = v;
    return 0;
}

int stamp_step_logs_json(ctl_ctx *c, const char *name, json_t **out, serr *e) {
    step_log *v;
    int n;
    char dir[PATH_MAX];
    int rc = step_logs_scan(c, name, &v, &n, dir, sizeof(dir), e);
    if (rc) return rc;
    json_t *items = json_array();
    for (int i = 0; i < n; i++) {
        char when[40];
        char cmd[24];
        str_copy(cmd, sizeof(cmd), v[i].run);
        cmd[strcspn(cmd, "-")] = '\0';
        json_array_append_new(items, json_pack("{s:s,s:s,s:s,s:I,s:s}", "step", v[i].step, "run",
                                               v[i].run, "command", cmd, "bytes",
                                               (json_int_t)v[i].bytes, "modified",
                                               fmt_time_rfc3339(v[i].mtime_ms, when, sizeof(when))));
    }
    free(v);
    *out = json_pack("{s:s,s:s,s:o}", "kind", "StepLogList", "stamp", name, "items", items);
    return 0;
}

int stamp_step_log(ctl_ctx *c, const char *name, const char *step, const char *run, size_t tail,
                   char **data, size_t *len, serr *e) {
    step_log *v;
    int n;
    char dir[PATH_MAX];
    *data = NULL;
    *len = 0;
    int rc = step_logs_scan(c, name, &v, &n, dir, sizeof(dir), e);
    if (rc) return rc;
    int pick = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].step, step) == 0 && (run == NULL || strcmp(v[i].run, run) == 0)) pick = i;
    if (pick < 0) {
        free(v);
        if (run) return serr_set(e, SE_NOTFOUND, "stamp %s: step %s has no log of run %s", name, step, run);
        return serr_set(e, SE_NOTFOUND, "stamp %s: step %s has no log (no command of it has run)",
                        name, step);
    }
    char path[PATH_MAX];
    rc = str_fmt(path, sizeof(path), e, "path", "%s/%s.%s.log", dir, v[pick].step, v[pick].run);
    free(v);
    return rc ? rc : read_file_tail(path, tail, data, len, NULL, e);
}

/* ---- what the autoscaler measures ---- */

int stamp_capacity(ctl_ctx *c, const resource *r, stamp_capacity_view *out, serr *e) {
    sctx *s = calloc(1, sizeof(*s));
    if (s == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    memset(out, 0, sizeof(*out));
    s->c = c;
    s->requeue = -1;
    str_copy(s->name, sizeof(s->name), r->name);
    s->r = *r; /* borrowed: never freed here */
    int rc = sc_parse(s, e);
    for (int i = 0; rc == 0 && i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS) continue;
        out->cpu_millis += st->cpu_millis * st->replicas;
        out->memory_bytes += st->memory_bytes * st->replicas;
    }
    if (rc == 0) {
        replica_ref reps[SC_MAX_REPLICA_REFS];
        int n = sc_replicas_of(s, false, SCALE_FULL, reps, SC_MAX_REPLICA_REFS);
        for (int i = 0; i < n && out->nports < STAMP_CAP_PORTS; i++) out->metrics_ports[out->nports++] = reps[i].port;
        str_copy(out->metrics_path, sizeof(out->metrics_path), s->t.metrics_path);
    }
    free(s);
    return rc;
}
