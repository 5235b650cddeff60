/*
 * stamp_ctl.c - the Stamp controller.
 *
 * A reconcile reads the stamp, compares what is wanted (spec.desired:
 * active, standby or deleted, plus the drain, retry and backup requests the
 * API recorded) with what is (status and the processes of the local
 * runtime), takes the next step, writes status, and answers "requeue after".
 * It is level-triggered: it never relies on having seen an earlier event,
 * so a kill -9 at any point followed by a restart converges.
 *
 * Crash safety, step by step:
 *   - process steps: replicas are found by scanning /proc for their unit
 *     markers, so a replica started just before a crash is adopted, never
 *     started twice; extras and duplicates are stopped.
 *   - exec steps: the step is marked Running with a run id and persisted
 *     BEFORE stamp-run is started; stamp-run writes the result file
 *     atomically before it exits.  After a crash: a result file means the run
 *     ended; a live process means it is running; neither means it never
 *     started, so it is started (once) now.
 *   - retirement steps (backup, quarantine, decommission, archive, purge)
 *     are each check-then-act, recorded in status when done, and build their
 *     output under a ".partial" name that is renamed only once verified.
 *     Nothing is purged before the archive is written and verified.
 *
 * Threading: called by reconcile workers; the work queue guarantees one
 * worker per stamp at a time.  Blocking calls here are bounded (probes and
 * scrapes use probe-timeout, stops use stop-grace).
 */
#include "reconcile/stamp_ctl.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/naming.h"
#include "core/stamp_fsm.h"
#include "core/template.h"
#include "health/health.h"
#include "reconcile/fleet.h"
#include "reconcile/phase.h"
#include "runtime/runtime.h"
#include "traffic/traffic.h"
#include "util/httpc.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"

#define MAX_VARS 96
#define EXEC_POLL_MS 100

enum scale_mode { SCALE_FULL, SCALE_STANDBY, SCALE_NONE };

typedef struct sctx {
    ctl_ctx *c;
    resource r;
    tpl t;
    int phase;
    char name[RES_NAME_MAX];
    char dir[PATH_MAX];
    int64_t requeue;
    bool dirty; /* status changed and must be written */
} sctx;

static void want(sctx *s, int64_t ms) {
    if (ms < 0) ms = 0;
    if (s->requeue < 0 || ms < s->requeue) s->requeue = ms;
}

void stamp_metrics_register(void) {
    metrics_register("stamp_transitions_total", MT_COUNTER, "Total number of stamp transitions");
    metrics_register("stamp_state_duration", MT_HISTOGRAM, "Time spent in each state (seconds)");
    metrics_register("stamp_creation_duration", MT_HISTOGRAM,
                     "Time from Creating to Active (seconds)");
    metrics_register("stamp_drain_duration", MT_HISTOGRAM, "Time from Active to Ready (seconds)");
    metrics_register("stamp_activation_duration", MT_HISTOGRAM,
                     "Time from Ready to Active (seconds)");
    metrics_register("stamp_drain_dropped_total", MT_COUNTER,
                     "Connections and jobs dropped by forced drains");
    metrics_register("stamp_replica_restarts_total", MT_COUNTER,
                     "Workload replicas restarted by the supervisor");
    metrics_register("stamp_health_check_failures_total", MT_COUNTER,
                     "Failed health check runs, by stamp and check");
    metrics_register("stamp_unhealthy_total", MT_COUNTER,
                     "Active stamps taken out of rotation by their health checks");
    metrics_register("stamp_recoveries_total", MT_COUNTER, "Recovery actions, by action");
    metrics_register("stamp_health_alerts_total", MT_COUNTER,
                     "Health alerts (alert action, recovery exhausted, all stamps unhealthy)");
}

int stamp_dir(const ctl_ctx *c, const char *name, const char *sub, char *buf, size_t len) {
    int n = sub ? snprintf(buf, len, "%s/stamps/%s/%s", c->data_dir, name, sub)
                : snprintf(buf, len, "%s/stamps/%s", c->data_dir, name);
    return n >= (int)len ? SE_INVAL : 0;
}

/* ---- small JSON helpers over status and spec ---- */

static bool jbool(json_t *o, const char *key) { return json_is_true(json_object_get(o, key)); }

static void set_int(sctx *s, json_t *o, const char *key, int64_t v) {
    if (jint(o, key, INT64_MIN) == v) return;
    json_object_set_new(o, key, json_integer(v));
    s->dirty = true;
}

static void set_str(sctx *s, json_t *o, const char *key, const char *v) {
    const char *old = jstr(o, key, NULL);
    if (old && v && strcmp(old, v) == 0) return;
    json_object_set_new(o, key, v ? json_string(v) : json_null());
    s->dirty = true;
}

static void event(sctx *s, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void event(sctx *s, const char *type, const char *reason, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    store_event ev = {.type = type, .reason = reason, .message = msg};
    store_event_add(s->c->st, "Stamp", s->name, &ev, NULL);
    if (strcmp(type, "Warning") == 0) log_warnx("stamp %s: %s: %s", s->name, reason, msg);
    else log_info("stamp %s: %s: %s", s->name, reason, msg);
}

/* Every timestamp the controller keeps in milliseconds for its own
 * arithmetic (a key ending in "Ms" whose value is a time, not a duration:
 * after 2001) gets an RFC 3339 UTC twin, "startedMs" -> "startedTime", in
 * the same write.  Durations (gracePeriodMs) are left alone. */
static void status_times(json_t *o, int depth) {
    if (depth > 6) return;
    if (json_is_array(o)) {
        size_t i;
        json_t *v;
        json_array_foreach(o, i, v) status_times(v, depth + 1);
        return;
    }
    if (!json_is_object(o)) return;
    /* Keys are added after the walk: inserting while iterating may rehash. */
    struct { char key[72]; int64_t ms; } add[32];
    int nadd = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t n = strlen(k);
        if (json_is_integer(v) && n > 2 && n < 64 && strcmp(k + n - 2, "Ms") == 0 &&
            json_integer_value(v) > 978307200000LL) {
            if (nadd == 32) continue;
            memcpy(add[nadd].key, k, n - 2);
            str_copy(add[nadd].key + n - 2, sizeof(add[nadd].key) - (n - 2), "Time");
            add[nadd++].ms = json_integer_value(v);
        } else if (json_is_object(v) || json_is_array(v)) {
            status_times(v, depth + 1);
        }
    }
    for (int i = 0; i < nadd; i++) {
        char when[40];
        fmt_time_rfc3339_ms(add[i].ms, when, sizeof(when));
        const char *old = json_string_value(json_object_get(o, add[i].key));
        if (old == NULL || strcmp(old, when) != 0) json_object_set_new(o, add[i].key, json_string(when));
    }
}

/* Persist status if it changed; a conflict means the API wrote meanwhile. */
static int save(sctx *s, serr *e) {
    if (!s->dirty) return 0;
    status_times(s->r.status, 0);
    int rc = store_update(s->c->st, &s->r, NULL, e);
    if (rc == 0) s->dirty = false;
    return rc;
}

/* Status that describes the phase being left goes with it, in the same
 * write as the phase: what Creating and an activation wait for, the step
 * being run, an activation's attempts, the health of a stamp that no
 * longer serves, and (once Deleted) the front door state of a server that
 * is gone.  An exec step still Running when Creating ends was cancelled:
 * its command is stopped before any delete command runs. */
static void leave_phase(sctx *s, int to) {
    json_t *st = s->r.status;
    json_object_del(st, "waitingFor");
    json_object_del(st, "step");
    if (s->phase == SP_READY) json_object_del(st, "activation");
    if (to == SP_READY || to == SP_FAILED || to == SP_DELETING || to == SP_DELETED)
        json_object_del(st, "health");
    if (s->phase == SP_CREATING && to != SP_CREATING) {
        size_t i;
        json_t *prog;
        json_array_foreach(json_object_get(st, "steps"), i, prog) {
            if (strcmp(jstr(prog, "state", ""), "Running") == 0) {
                json_object_set_new(prog, "state", json_string("Cancelled"));
                json_object_set_new(prog, "message",
                                    json_string("the deployment ended while the command ran"));
            }
        }
    }
    if (to == SP_DELETED) json_object_del(st, "frontdoor");
}

static int change(sctx *s, int to, const char *reason, const char *msg, serr *e) {
    leave_phase(s, to);
    status_times(s->r.status, 0);
    int rc = phase_change(s->c, &stamp_fsm, &s->r, to, reason, msg, e);
    if (rc == 0) {
        log_info("stamp %s: %s -> %s (%s)", s->name, fsm_phase_name(&stamp_fsm, s->phase),
                 fsm_phase_name(&stamp_fsm, to), reason);
        s->phase = to;
        s->dirty = false;
        want(s, 0);
    }
    return rc;
}

/* ---- variables and the environment of workloads and exec steps ---- */

typedef struct vars {
    int n;
    char kv[MAX_VARS][512]; /* "NAME=value" */
} vars;

static void var_set(vars *v, const char *name, const char *value) {
    size_t nl = strlen(name);
    for (int i = 0; i < v->n; i++)
        if (strncmp(v->kv[i], name, nl) == 0 && v->kv[i][nl] == '=') {
            snprintf(v->kv[i], sizeof(v->kv[i]), "%s=%s", name, value);
            return;
        }
    if (v->n < MAX_VARS) snprintf(v->kv[v->n++], sizeof(v->kv[0]), "%s=%s", name, value);
}

static const char *var_get(const vars *v, const char *name, size_t nl) {
    for (int i = 0; i < v->n; i++)
        if (strncmp(v->kv[i], name, nl) == 0 && v->kv[i][nl] == '=') return v->kv[i] + nl + 1;
    return NULL;
}

static void base_vars(sctx *s, vars *v) {
    v->n = 0;
    json_t *spec = s->r.spec;
    char buf[PATH_MAX];
    var_set(v, "STAMP_NAME", s->name);
    var_set(v, "STAMP_REGION", jstr(spec, "region", ""));
    var_set(v, "STAMP_REGION_CODE", jstr(spec, "regionCode", ""));
    var_set(v, "STAMP_ID", jstr(spec, "stampId", ""));
    var_set(v, "STAMP_TEMPLATE", jstr(spec, "template", ""));
    var_set(v, "STAMP_LIBEXEC", s->c->libexec);
    var_set(v, "STAMP_DATA_DIR", s->c->data_dir);
    var_set(v, "STAMP_DIR", s->dir);
    snprintf(buf, sizeof(buf), "%s/logs", s->dir);
    var_set(v, "LOG_DIR", buf);
    const char *ep = jstr(s->r.status, "endpoint", NULL);
    if (ep) var_set(v, "STAMP_ENDPOINT", ep);
    const char *k;
    json_t *val;
    json_object_foreach(json_object_get(spec, "parameters"), k, val) {
        if (json_is_string(val)) var_set(v, k, json_string_value(val));
        else if (json_is_integer(val)) {
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(val));
            var_set(v, k, buf);
        }
    }
}

/* ${NAME} expansion; unknown names are a configuration error. */
static int expand(const vars *v, const char *in, char *out, size_t len, serr *e) {
    size_t o = 0;
    for (const char *p = in; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            if (end == NULL) return serr_set(e, SE_INVAL, "unterminated ${ in \"%s\"", in);
            const char *val = var_get(v, p + 2, (size_t)(end - p - 2));
            if (val == NULL)
                return serr_set(e, SE_INVAL, "unknown variable ${%.*s} in \"%s\"",
                                (int)(end - p - 2), p + 2, in);
            size_t vl = strlen(val);
            if (o + vl >= len) return serr_set(e, SE_TOOBIG, "expansion of \"%s\" too long", in);
            memcpy(out + o, val, vl);
            o += vl;
            p = end + 1;
            continue;
        }
        if (o + 1 >= len) return serr_set(e, SE_TOOBIG, "expansion of \"%s\" too long", in);
        out[o++] = *p++;
    }
    out[o] = '\0';
    return 0;
}

/* ---- the local runtime: process steps ---- */

static int port_free(int port, void *arg) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static int step_ports(sctx *s, const tpl_step *st, int *ports, serr *e) {
    int n = st->replicas * st->ports;
    if (n == 0) return 0;
    char owner[256];
    snprintf(owner, sizeof(owner), "%s/%s", s->name, st->name);
    return store_ports_lease(s->c->st, owner, n, (int)s->c->cfg->port_lo, (int)s->c->cfg->port_hi,
                             port_free, NULL, ports, e);
}

static int replica_want(const sctx *s, const tpl_step *st, int mode) {
    if (mode == SCALE_NONE) return 0;
    if (mode == SCALE_STANDBY && st->pool != POOL_SYSTEM) return 0;
    return st->replicas;
}

static int spawn_replica(sctx *s, const tpl_step *st, int idx, const int *ports, serr *e) {
    vars v;
    char buf[PATH_MAX], unit[RT_UNIT_MAX], logp[PATH_MAX];
    base_vars(s, &v);
    var_set(&v, "STAMP_POOL", tpl_pool_names[st->pool]);
    var_set(&v, "STAMP_STEP", st->name);
    snprintf(buf, sizeof(buf), "%d", idx);
    var_set(&v, "STAMP_REPLICA", buf);
    for (int p = 0; p < st->ports; p++) {
        char pn[16];
        snprintf(buf, sizeof(buf), "%d", ports[p]);
        snprintf(pn, sizeof(pn), "PORT_%d", p);
        var_set(&v, pn, buf);
        if (p == 0) var_set(&v, "PORT", buf);
    }
    snprintf(buf, sizeof(buf), "%s/volumes/%s-%d", s->dir, st->name, idx);
    var_set(&v, "STATE_DIR", buf);
    int rc = mkdir_p(buf, 0750, e);
    if (rc) return rc;
    snprintf(buf, sizeof(buf), "%s/logs", s->dir);
    if ((rc = mkdir_p(buf, 0750, e))) return rc;
    snprintf(logp, sizeof(logp), "%s/logs/%s-%d.log", s->dir, st->name, idx);
    const char *k;
    json_t *val;
    json_object_foreach(st->env, k, val) {
        char raw[512];
        if (json_is_integer(val)) snprintf(raw, sizeof(raw), "%lld", (long long)json_integer_value(val));
        else str_copy(raw, sizeof(raw), json_string_value(val));
        if ((rc = expand(&v, raw, buf, sizeof(buf), e))) return rc;
        var_set(&v, k, buf);
    }
    size_t argc = json_array_size(st->command);
    char args[TPL_MAX_ARGS][1024];
    const char *argv[TPL_MAX_ARGS + 1];
    for (size_t i = 0; i < argc; i++) {
        if ((rc = expand(&v, json_string_value(json_array_get(st->command, i)), args[i],
                         sizeof(args[i]), e)))
            return serr_wrap(e, "step %s command", st->name);
        argv[i] = args[i];
    }
    argv[argc] = NULL;
    const char *env[MAX_VARS + 1];
    for (int i = 0; i < v.n; i++) env[i] = v.kv[i];
    env[v.n] = NULL;
    snprintf(unit, sizeof(unit), "%s/p/%s/%d", s->name, st->name, idx);
    rt_spawn_spec sp = {.unit = unit, .argv = argv, .env = env, .log_path = logp, .cwd = s->dir};
    pid_t pid;
    rc = rt_spawn(s->c->rt, &sp, &pid, e);
    if (rc == 0) log_debug("stamp %s: started %s pid %d", s->name, unit, (int)pid);
    return rc;
}

/* Makes the replicas of one process step match `count`.  *alive gets how
 * many run afterwards, *started how many were started now. */
static int ensure_step(sctx *s, const tpl_step *st, int count, int *alive, int *started, serr *e) {
    int ports[TPL_MAX_REPLICAS * TPL_MAX_PORTS];
    int rc = step_ports(s, st, ports, e);
    if (rc) return rc;
    char prefix[RT_UNIT_MAX];
    snprintf(prefix, sizeof(prefix), "%s/p/%s/", s->name, st->name);
    size_t plen = strlen(prefix);
    rt_proc procs[64];
    bool fresh = false;
    *alive = *started = 0;
again:;
    int n = rt_scan(s->c->rt, prefix, fresh, procs, 64, e);
    if (n < 0) return n;
    if (n > 64) n = 64;
    bool have[TPL_MAX_REPLICAS] = {false};
    int nhave = 0;
    for (int i = 0; i < n; i++) {
        int64_t idx;
        if (parse_i64(procs[i].unit + plen, 0, 1000, &idx) != 0 || idx >= count ||
            have[idx]) {
            /* A replica beyond the wanted count, or a second copy of one
             * (possible only if something outside stampd started it). */
            log_info("stamp %s: stopping %sreplica %s pid %d", s->name, count > 0 ? "extra " : "",
                     procs[i].unit, (int)procs[i].pid);
            rt_stop(s->c->rt, procs[i].pid, (int)s->c->cfg->stop_grace_ms, NULL);
            rt_invalidate(s->c->rt);
            continue;
        }
        have[idx] = true;
        nhave++;
    }
    if (nhave < count && !fresh) {
        /* Never start a replica on the word of a cached scan. */
        fresh = true;
        goto again;
    }
    for (int idx = 0; idx < count; idx++) {
        if (have[idx]) continue;
        if ((rc = spawn_replica(s, st, idx, ports + idx * st->ports, e))) return rc;
        (*started)++;
        nhave++;
    }
    *alive = nhave;
    return 0;
}

static void update_endpoint(sctx *s) {
    if (s->t.endpoint_step < 0) return;
    int ports[TPL_MAX_REPLICAS * TPL_MAX_PORTS];
    if (step_ports(s, &s->t.steps[s->t.endpoint_step], ports, NULL) != 0) return;
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", ports[0]);
    set_str(s, s->r.status, "endpoint", ep);
}

/* Scale every process step for `mode`; counts running replicas per pool. */
static int scale_all(sctx *s, int mode, bool count_restarts, int *started_total, serr *e) {
    int pools[POOL_N] = {0};
    *started_total = 0;
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS) continue;
        int alive, started;
        int rc = ensure_step(s, st, replica_want(s, st, mode), &alive, &started, e);
        if (rc) return rc;
        pools[st->pool] += alive;
        *started_total += started;
        if (started && count_restarts) {
            metrics_inc("stamp_replica_restarts_total", "", started);
            event(s, "Warning", "ReplicaRestarted", "restarted %d replica(s) of step %s", started,
                  st->name);
        }
    }
    json_t *jp = jchild(s->r.status, "pools");
    for (int p = 0; p < POOL_N; p++) set_int(s, jp, tpl_pool_names[p], pools[p]);
    update_endpoint(s);
    return 0;
}

/* ---- probes and scrapes ---- */

typedef struct replica_ref {
    int port;
    const tpl_step *st;
    int idx;
} replica_ref;

static int replicas_of(sctx *s, bool health, int mode, replica_ref *out, int max) {
    int n = 0;
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS || (health ? !st->health : !st->metrics)) continue;
        int ports[TPL_MAX_REPLICAS * TPL_MAX_PORTS];
        if (step_ports(s, st, ports, NULL) != 0) continue;
        int count = replica_want(s, st, mode);
        for (int r = 0; r < count && n < max; r++)
            out[n++] = (replica_ref){.port = ports[r * st->ports], .st = st, .idx = r};
    }
    return n;
}

typedef struct blockers {
    int64_t connections;   /* the workload's own count of open connections */
    int64_t jobs;
    int unreachable;
    int64_t fd_sessions;   /* HAProxy: current sessions on the stamp's server */
    int64_t fd_queue;      /* HAProxy: requests queued for it */
    bool fd_known;
} blockers;

static void scrape_blockers(sctx *s, blockers *b) {
    replica_ref reps[128];
    int n = replicas_of(s, false, SCALE_FULL, reps, 128);
    memset(b, 0, sizeof(*b));
    for (int i = 0; i < n; i++) {
        char url[512];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", reps[i].port, s->t.metrics_path);
        httpc_req rq = {.url = url, .timeout_ms = s->c->cfg->probe_timeout_ms};
        long status = 0;
        sbuf body;
        if (httpc_do(&rq, &status, &body, NULL) != 0) {
            /* A replica that is gone holds no connections. */
            b->unreachable++;
            continue;
        }
        double v;
        if (status == 200 && prom_value(body.data, "stamp_workload_active_connections", &v) == 0)
            b->connections += (int64_t)v;
        if (status == 200 && prom_value(body.data, "stamp_workload_active_jobs", &v) == 0)
            b->jobs += (int64_t)v;
        sbuf_free(&body);
    }
    if (traffic_enabled(s->c->tr)) {
        tr_stat st;
        serr e = {0};
        if (traffic_stat(s->c->tr, s->name, &st, &e) == 0) {
            b->fd_known = true;
            b->fd_sessions = st.scur;
            b->fd_queue = st.qcur;
        }
    }
}

/* ---- the front door ---- */

/* Tell the front door what the stamp's server should be.  A front door that
 * does not answer does not stop the lifecycle: it is retried, and the sync
 * loop converges HAProxy when it is back. */
static void frontdoor(sctx *s, tr_state st) {
    if (!traffic_enabled(s->c->tr)) return;
    serr e = {0};
    const char *ep = jstr(s->r.status, "endpoint", NULL);
    if (st != TR_ABSENT && ep == NULL) return;
    if (traffic_set(s->c->tr, s->name, ep, st, &e) != 0) {
        log_warnx("stamp %s: front door: %s", s->name, e.msg);
        want(s, 1000);
        return;
    }
    set_str(s, s->r.status, "frontdoor", tr_state_names[st]);
}

/* ---- health checks ---- */

static void load_checks(sctx *s, hc_set *set) {
    const char *name = s->t.health_check;
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
    /* Named but missing (or no longer valid): the default check, said loudly. */
    hc_default(s->c->cfg, s->t.health_path, set);
    snprintf(set->source, sizeof(set->source), "default (StampHealthCheck/%s: %s)", name,
             e.code == SE_NOTFOUND ? "not found" : "invalid");
}

/* Replicas that should run in `mode` and do not: the count, and the first. */
static int missing_replicas(sctx *s, int mode, char *why, size_t whylen, int *pools) {
    int missing = 0;
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        int count = st->kind == TK_PROCESS ? replica_want(s, st, mode) : 0;
        if (count == 0) continue;
        char prefix[RT_UNIT_MAX];
        snprintf(prefix, sizeof(prefix), "%s/p/%s/", s->name, st->name);
        size_t plen = strlen(prefix);
        rt_proc procs[64];
        int n = rt_scan(s->c->rt, prefix, false, procs, 64, NULL);
        if (n < 0) continue;
        bool have[TPL_MAX_REPLICAS] = {false};
        for (int k = 0; k < n && k < 64; k++) {
            int64_t idx;
            if (parse_i64(procs[k].unit + plen, 0, TPL_MAX_REPLICAS - 1, &idx) == 0) have[idx] = true;
        }
        for (int r = 0; r < count; r++)
            if (!have[r]) {
                if (missing++ == 0) snprintf(why, whylen, "replica %s-%d is not running", st->name, r);
            } else if (pools) {
                pools[st->pool]++;
            }
    }
    return missing;
}

static int tcp_probe(int port, int64_t timeout_ms, char *err, size_t errlen) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        rc = poll(&p, 1, (int)timeout_ms);
        if (rc == 0) {
            snprintf(err, errlen, "127.0.0.1:%d: connect timed out", port);
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        rc = soerr ? -1 : 0;
        errno = soerr;
    }
    if (rc != 0) snprintf(err, errlen, "127.0.0.1:%d: %s", port, strerror(errno));
    close(fd);
    return rc;
}

/* An exec check: /bin/sh -c command, its own process group, killed at the
 * timeout.  Output goes to the stamp's health log. */
static int exec_probe(sctx *s, const hc_check *c, char *err, size_t errlen) {
    vars v;
    base_vars(s, &v);
    var_set(&v, "STAMP_CHECK", c->name);
    var_set(&v, "PATH", "/usr/local/bin:/usr/bin:/bin");
    const char *env[MAX_VARS + 1];
    for (int i = 0; i < v.n; i++) env[i] = v.kv[i];
    env[v.n] = NULL;
    char logp[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/logs", s->dir);
    mkdir_p(dir, 0750, NULL);
    snprintf(logp, sizeof(logp), "%s/health-%s.log", dir, c->name);
    int out = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char *const argv[] = {"/bin/sh", "-c", (char *)c->command, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        if (devnull >= 0) dup2(devnull, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        if (chdir(s->dir) != 0 && chdir("/") != 0) _exit(127);
        execve("/bin/sh", argv, (char *const *)env);
        _exit(127);
    }
    if (out >= 0) close(out);
    if (devnull >= 0) close(devnull);
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    setpgid(pid, pid);
    int64_t until = mono_ms() + c->timeout_ms;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            snprintf(err, errlen, "waitpid: %s", strerror(errno));
            return -1;
        }
        if (mono_ms() >= until) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(err, errlen, "timed out after %lld ms (log %s)", (long long)c->timeout_ms, logp);
            return -1;
        }
        sleep_ms(5);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status)) snprintf(err, errlen, "exited %d (log %s)", WEXITSTATUS(status), logp);
    else snprintf(err, errlen, "killed by signal %d (log %s)", WTERMSIG(status), logp);
    return -1;
}

/* Runs one check against the stamp; 0 when it passes. */
static int run_check(sctx *s, const hc_check *c, int mode, char *err, size_t errlen) {
    replica_ref reps[128];
    int n;
    switch (c->type) {
    case HC_PROCESS:
        return missing_replicas(s, mode, err, errlen, NULL) ? -1 : 0;
    case HC_EXEC:
        return exec_probe(s, c, err, errlen);
    case HC_TCP:
        n = replicas_of(s, true, mode, reps, 128);
        for (int i = 0; i < n; i++)
            if (tcp_probe(reps[i].port, c->timeout_ms, err, errlen) != 0) return -1;
        return 0;
    case HC_HTTP:
        n = replicas_of(s, true, mode, reps, 128);
        for (int i = 0; i < n; i++) {
            char url[512];
            snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", reps[i].port, c->path);
            httpc_req rq = {.url = url, .timeout_ms = c->timeout_ms, .max_response = 65536};
            long status = 0;
            sbuf body;
            serr e = {0};
            int rc = httpc_do(&rq, &status, &body, &e);
            if (rc == 0) sbuf_free(&body);
            if (rc != 0) {
                snprintf(err, errlen, "%s-%d: %s: %s", reps[i].st->name, reps[i].idx, url, e.msg);
                return -1;
            }
            if (status != c->expect_status) {
                snprintf(err, errlen, "%s-%d: %s answered %ld, expected %d", reps[i].st->name,
                         reps[i].idx, c->path, status, c->expect_status);
                return -1;
            }
        }
        return 0;
    case HC_THRESHOLD: {
        double worst[HC_MAX_EXPRS];
        bool seen[HC_MAX_EXPRS] = {false};
        n = replicas_of(s, false, mode, reps, 128);
        if (n == 0) {
            snprintf(err, errlen, "no replica reports metrics");
            return -1;
        }
        for (int i = 0; i < n; i++) {
            char url[512];
            snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", reps[i].port, s->t.metrics_path);
            httpc_req rq = {.url = url, .timeout_ms = c->timeout_ms};
            long status = 0;
            sbuf body;
            serr e = {0};
            if (httpc_do(&rq, &status, &body, &e) != 0) {
                snprintf(err, errlen, "%s-%d: %s", reps[i].st->name, reps[i].idx, e.msg);
                return -1;
            }
            for (int k = 0; k < c->nexprs && status == 200; k++) {
                double v;
                if (prom_value(body.data, c->exprs[k].metric, &v) != 0) continue;
                /* The worst replica: the one that breaks the rule, if any. */
                if (!seen[k] || (!hc_expr_holds(&c->exprs[k], v) && hc_expr_holds(&c->exprs[k], worst[k])))
                    worst[k] = v;
                seen[k] = true;
            }
            sbuf_free(&body);
        }
        for (int k = 0; k < c->nexprs; k++) {
            if (!seen[k]) {
                snprintf(err, errlen, "%s: not reported by any replica", c->exprs[k].metric);
                return -1;
            }
            if (!hc_expr_holds(&c->exprs[k], worst[k])) {
                snprintf(err, errlen, "%s is %g, rule %s", c->exprs[k].metric, worst[k], c->exprs[k].text);
                return -1;
            }
        }
        return 0;
    }
    }
    return -1;
}

typedef struct health_view {
    bool all_passing; /* every check Passing */
    bool failing;     /* some check Failing */
    char why[512];    /* the first check not passing, and why */
} health_view;

/* Runs the checks that are due and reads the state of all of them. */
static void eval_health(sctx *s, const hc_set *set, int mode, health_view *h) {
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
        want(s, due);
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

/* ---- exec steps ---- */

enum { RUN_RUNNING, RUN_OK, RUN_FAILED };

/* Runs (or follows) an exec command for `tag` ("create"/"delete").  The
 * progress object st (status.steps[i] or the decommission record) carries
 * state and run id. */
static int exec_follow(sctx *s, const tpl_step *stp, const char *cmd, const char *tag,
                       json_t *prog, int *result, serr *e) {
    char runid[64], unit[RT_UNIT_MAX], rcpath[PATH_MAX], logpath[PATH_MAX], dir[PATH_MAX];
    const char *state = jstr(prog, "state", "Pending");
    int rc;
    if (strcmp(state, "Running") != 0) {
        /* Persist the intent first: after a crash we must know a run may
         * exist before we can have started it. */
        int64_t n = jint(prog, "runs", 0) + 1;
        snprintf(runid, sizeof(runid), "%s-%lld", tag, (long long)n);
        json_object_set_new(prog, "runs", json_integer(n));
        json_object_set_new(prog, "runId", json_string(runid));
        json_object_set_new(prog, "state", json_string("Running"));
        json_object_set_new(prog, "startedMs", json_integer(now_ms()));
        /* Which create commands may have run is what decides which delete
         * commands run; unlike the step progress, it is never reset. */
        if (strcmp(tag, "create") == 0) {
            json_t *created = jchild(s->r.status, "createdSteps");
            if (!json_is_string(json_object_get(created, stp->name))) {
                char when[40];
                json_object_set_new(created, stp->name,
                                    json_string(fmt_time_rfc3339_ms(now_ms(), when, sizeof(when))));
            }
        }
        s->dirty = true;
        if ((rc = save(s, e))) return rc;
    }
    str_copy(runid, sizeof(runid), jstr(prog, "runId", "run"));
    snprintf(dir, sizeof(dir), "%s/steps", s->dir);
    if ((rc = mkdir_p(dir, 0750, e))) return rc;
    snprintf(rcpath, sizeof(rcpath), "%s/%s.%s.rc", dir, stp->name, runid);
    snprintf(logpath, sizeof(logpath), "%s/%s.%s.log", dir, stp->name, runid);
    snprintf(unit, sizeof(unit), "%s/x/%s/%s", s->name, stp->name, runid);

    char *text = NULL;
    if (read_file(rcpath, 4096, &text, NULL, NULL) == 0) {
        json_t *res = json_loads(text, 0, NULL);
        free(text);
        int64_t code = res ? jint(res, "exit", -1) : -1;
        bool timed_out = res && jbool(res, "timedOut");
        json_object_set_new(prog, "endedMs", json_integer(now_ms()));
        json_object_set_new(prog, "exitCode", json_integer(code));
        json_object_set_new(prog, "log", json_string(logpath));
        if (code == 0) {
            json_object_set_new(prog, "state", json_string("Done"));
            *result = RUN_OK;
        } else {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s command %s", tag,
                     timed_out ? "timed out" : "failed");
            if (!timed_out) snprintf(msg, sizeof(msg), "%s command exited %lld", tag, (long long)code);
            json_object_set_new(prog, "state", json_string("Failed"));
            json_object_set_new(prog, "message", json_string(msg));
            *result = RUN_FAILED;
        }
        json_decref(res);
        s->dirty = true;
        return 0;
    }
    rt_proc p[2];
    int n = rt_scan(s->c->rt, unit, true, p, 2, e);
    if (n < 0) return n;
    if (n > 0) {
        *result = RUN_RUNNING;
        want(s, EXEC_POLL_MS);
        return 0;
    }
    /* Neither running nor finished: start it (the first time, or again
     * after a crash that came between persisting Running and the spawn). */
    vars v;
    base_vars(s, &v);
    var_set(&v, "STAMP_STEP", stp->name);
    const char *k;
    json_t *val;
    char buf[1024];
    json_object_foreach(stp->env, k, val) {
        char raw[512];
        if (json_is_integer(val)) snprintf(raw, sizeof(raw), "%lld", (long long)json_integer_value(val));
        else str_copy(raw, sizeof(raw), json_string_value(val));
        if ((rc = expand(&v, raw, buf, sizeof(buf), e))) return rc;
        var_set(&v, k, buf);
    }
    char prog_path[PATH_MAX], tmo[32];
    snprintf(prog_path, sizeof(prog_path), "%s/stamp-run", s->c->libexec);
    snprintf(tmo, sizeof(tmo), "%lld", (long long)stp->timeout_ms);
    const char *argv[] = {prog_path, "--rc", rcpath, "--timeout-ms", tmo, "--", "/bin/sh", "-c",
                          cmd, NULL};
    const char *env[MAX_VARS + 1];
    for (int i = 0; i < v.n; i++) env[i] = v.kv[i];
    env[v.n] = NULL;
    rt_spawn_spec sp = {.unit = unit, .argv = argv, .env = env, .log_path = logpath, .cwd = s->dir};
    pid_t pid;
    if ((rc = rt_spawn(s->c->rt, &sp, &pid, e))) return rc;
    log_info("stamp %s: step %s: running %s command (%s)", s->name, stp->name, tag, runid);
    *result = RUN_RUNNING;
    want(s, EXEC_POLL_MS);
    return 0;
}

/* ---- files: hashing trees, backups and archives ---- */

typedef int (*walk_fn)(const char *path, const char *rel, void *arg);

static int walk(const char *root, const char *rel, walk_fn fn, void *arg, serr *e) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (d == NULL) return errno == ENOENT ? 0 : serr_set(e, SE_IO, "opendir %s: %s", path, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char crel[PATH_MAX], cpath[PATH_MAX];
        snprintf(crel, sizeof(crel), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        snprintf(cpath, sizeof(cpath), "%s/%s", root, crel);
        struct stat stt;
        if (lstat(cpath, &stt) != 0) continue;
        if (S_ISDIR(stt.st_mode)) rc = walk(root, crel, fn, arg, e);
        else if (S_ISREG(stt.st_mode)) rc = fn(cpath, crel, arg);
    }
    closedir(d);
    return rc;
}

typedef struct manifest_acc {
    json_t *files;
    int64_t bytes;
    serr *e;
} manifest_acc;

static int manifest_add(const char *path, const char *rel, void *arg) {
    manifest_acc *m = arg;
    char hex[65];
    int64_t size;
    if (strcmp(rel, "manifest.json") == 0) return 0;
    int rc = sha256_file_hex(path, hex, &size, m->e);
    if (rc) return rc;
    json_array_append_new(m->files, json_pack("{s:s,s:I,s:s}", "path", rel, "size",
                                              (json_int_t)size, "sha256", hex));
    m->bytes += size;
    return 0;
}

/* Hash every file under dir; then hash them again from the source tree (when
 * given, for the entries that came from it) and compare: a copy is only
 * accepted when it reads back identical. */
static int manifest_build(const char *dir, json_t **files, int64_t *bytes, serr *e) {
    manifest_acc m = {.files = json_array(), .bytes = 0, .e = e};
    int rc = walk(dir, "", manifest_add, &m, e);
    if (rc) {
        json_decref(m.files);
        return rc;
    }
    *files = m.files;
    *bytes = m.bytes;
    return 0;
}

static int verify_copy(const char *src, const char *dst, serr *e) {
    json_t *a = NULL, *b = NULL;
    int64_t ba, bb;
    int rc = manifest_build(src, &a, &ba, e);
    if (rc == 0) rc = manifest_build(dst, &b, &bb, e);
    if (rc == 0) {
        /* Every source file must be in the copy with the same hash. */
        size_t i, j;
        json_t *fa, *fb;
        json_array_foreach(a, i, fa) {
            bool found = false;
            json_array_foreach(b, j, fb) {
                if (strcmp(jstr(fa, "path", ""), jstr(fb, "path", "")) == 0) {
                    found = strcmp(jstr(fa, "sha256", ""), jstr(fb, "sha256", "")) == 0;
                    break;
                }
            }
            if (!found) {
                rc = serr_set(e, SE_IO, "verification of %s failed: %s differs or is missing",
                              dst, jstr(fa, "path", ""));
                break;
            }
        }
    }
    json_decref(a);
    json_decref(b);
    return rc;
}

static int write_json_file(const char *path, json_t *v, serr *e) {
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text == NULL) return serr_set(e, SE_NOMEM, "json_dumps failed");
    int rc = write_file_atomic(path, text, strlen(text), 0640, e);
    free(text);
    return rc;
}

static void stamp_time_id(char *buf, size_t len) {
    int64_t ms = now_ms();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y%m%d-%H%M%S", &tm);
    snprintf(buf, len, "%s-%03lld", ts, (long long)(ms % 1000));
}

/* Back up the stamp's local state (its volumes) and verify the copy. */
static int do_backup(sctx *s, const char *why, serr *e) {
    char id[48], base[PATH_MAX], partial[PATH_MAX], final[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    stamp_time_id(id, sizeof(id));
    snprintf(base, sizeof(base), "%s/backups/%s", s->c->data_dir, s->name);
    snprintf(partial, sizeof(partial), "%s/%s.partial", base, id);
    snprintf(final, sizeof(final), "%s/%s", base, id);
    int rc = mkdir_p(partial, 0750, e);
    if (rc) return rc;
    snprintf(src, sizeof(src), "%s/volumes", s->dir);
    snprintf(dst, sizeof(dst), "%s/volumes", partial);
    if (path_exists(src)) {
        if ((rc = copy_tree(src, dst, e)) || (rc = verify_copy(src, dst, e))) {
            remove_tree(partial, NULL);
            return rc;
        }
    }
    snprintf(dst, sizeof(dst), "%s/status.json", partial);
    if ((rc = write_json_file(dst, s->r.status, e))) goto fail;
    json_t *files;
    int64_t bytes;
    if ((rc = manifest_build(partial, &files, &bytes, e))) goto fail;
    json_t *man = json_pack("{s:s,s:s,s:s,s:I,s:o,s:I}", "stamp", s->name, "id", id, "reason", why,
                            "createdMs", (json_int_t)now_ms(), "files", files, "bytes",
                            (json_int_t)bytes);
    snprintf(dst, sizeof(dst), "%s/manifest.json", partial);
    rc = write_json_file(dst, man, e);
    size_t nfiles = json_array_size(files);
    json_decref(man);
    if (rc) goto fail;
    if (rename(partial, final) != 0) {
        rc = serr_set(e, SE_IO, "rename %s: %s", partial, strerror(errno));
        goto fail;
    }
    json_t *list = json_object_get(s->r.status, "backups");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(s->r.status, "backups", list);
    }
    json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "id", id, "path", final,
                                          "reason", why, "timeMs", (json_int_t)now_ms(), "files",
                                          (json_int_t)nfiles, "bytes", (json_int_t)bytes));
    while (json_array_size(list) > 20) json_array_remove(list, 0);
    s->dirty = true;
    event(s, "Normal", "BackupCompleted", "backup %s: %zu files, %lld bytes, verified (%s)", id,
          nfiles, (long long)bytes, why);
    return 0;
fail:
    remove_tree(partial, NULL);
    return rc;
}

/* Remove leftovers of a backup or archive interrupted by a crash. */
static void remove_partials(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 8 && strcmp(de->d_name + n - 8, ".partial") == 0) {
            char p[PATH_MAX];
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            remove_tree(p, NULL);
        }
    }
    closedir(d);
}

static void snapshot_metrics(sctx *s, const char *dir) {
    replica_ref reps[128];
    int n = replicas_of(s, false, SCALE_FULL, reps, 128);
    for (int i = 0; i < n; i++) {
        char url[256], path[PATH_MAX];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", reps[i].port, s->t.metrics_path);
        httpc_req rq = {.url = url, .timeout_ms = s->c->cfg->probe_timeout_ms};
        long status;
        sbuf body;
        if (httpc_do(&rq, &status, &body, NULL) != 0) continue;
        snprintf(path, sizeof(path), "%s/%s-%d.prom", dir, reps[i].st->name, reps[i].idx);
        if (status == 200) write_file_atomic(path, body.data, body.len, 0640, NULL);
        sbuf_free(&body);
    }
}

static int do_archive(sctx *s, serr *e) {
    char base[PATH_MAX], partial[PATH_MAX], final[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    snprintf(base, sizeof(base), "%s/archive", s->c->data_dir);
    snprintf(partial, sizeof(partial), "%s/%s.partial", base, s->name);
    snprintf(final, sizeof(final), "%s/%s", base, s->name);
    remove_tree(partial, NULL);
    if (path_exists(final)) remove_tree(final, NULL); /* an older stamp of the same name */
    int rc = mkdir_p(partial, 0750, e);
    if (rc) return rc;
    static const char *const subs[] = {"logs", "steps", "quarantine"};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        snprintf(src, sizeof(src), "%s/%s", s->dir, subs[i]);
        snprintf(dst, sizeof(dst), "%s/%s", partial, subs[i]);
        if (!path_exists(src)) continue;
        if ((rc = copy_tree(src, dst, e)) || (rc = verify_copy(src, dst, e))) goto fail;
    }
    json_t *evs = NULL, *aud = NULL;
    if ((rc = store_events(s->c->st, "Stamp", s->name, 10000, &evs, e))) goto fail;
    snprintf(dst, sizeof(dst), "%s/events.json", partial);
    rc = write_json_file(dst, evs, e);
    json_decref(evs);
    if (rc) goto fail;
    if ((rc = store_audit_list(s->c->st, "Stamp", s->name, 10000, &aud, e))) goto fail;
    snprintf(dst, sizeof(dst), "%s/audit.json", partial);
    rc = write_json_file(dst, aud, e);
    json_decref(aud);
    if (rc) goto fail;
    json_t *res = resource_to_json(&s->r);
    snprintf(dst, sizeof(dst), "%s/stamp.json", partial);
    rc = write_json_file(dst, res, e);
    json_decref(res);
    if (rc) goto fail;
    json_t *files;
    int64_t bytes;
    if ((rc = manifest_build(partial, &files, &bytes, e))) goto fail;
    int64_t until = now_ms() + s->c->cfg->archive_retention_ms;
    size_t nfiles = json_array_size(files);
    json_t *man = json_pack("{s:s,s:I,s:I,s:o,s:I}", "stamp", s->name, "createdMs",
                            (json_int_t)now_ms(), "retainUntilMs", (json_int_t)until, "files",
                            files, "bytes", (json_int_t)bytes);
    snprintf(dst, sizeof(dst), "%s/manifest.json", partial);
    rc = write_json_file(dst, man, e);
    json_decref(man);
    if (rc) goto fail;
    if (rename(partial, final) != 0) {
        rc = serr_set(e, SE_IO, "rename %s: %s", partial, strerror(errno));
        goto fail;
    }
    json_t *rt = jchild(s->r.status, "retire");
    json_object_set_new(rt, "archive", json_pack("{s:s,s:I,s:I,s:I}", "path", final, "files",
                                                 (json_int_t)nfiles, "bytes", (json_int_t)bytes,
                                                 "retainUntilMs", (json_int_t)until));
    s->dirty = true;
    char d[32];
    event(s, "Normal", "Archived", "archive %s: %zu files, %lld bytes, verified, kept %s", final,
          nfiles, (long long)bytes, fmt_duration(s->c->cfg->archive_retention_ms, d, sizeof(d)));
    return 0;
fail:
    remove_tree(partial, NULL);
    return rc;
}

/* ---- phases ---- */

static const char *desired(sctx *s) { return jstr(s->r.spec, "desired", "active"); }

/* The configured timeout of the current phase has passed? Arms a timer. */
static bool timed_out(sctx *s) {
    const fsm_timeout *t = fsm_timeout_find(&stamp_fsm, s->phase);
    if (t == NULL) return false;
    int64_t limit = config_duration(s->c->cfg, t->config_key);
    if (limit <= 0) return false;
    int64_t age = phase_age_ms(&s->r);
    if (age >= limit) return true;
    want(s, limit - age);
    return false;
}

static json_t *steps_status(sctx *s) {
    json_t *arr = json_object_get(s->r.status, "steps");
    if (json_is_array(arr) && (int)json_array_size(arr) == s->t.nsteps) return arr;
    arr = json_array();
    for (int i = 0; i < s->t.nsteps; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s}", "name", s->t.steps[i].name,
                                             "phase", tpl_phase_names[s->t.steps[i].phase], "kind",
                                             s->t.steps[i].kind == TK_EXEC ? "exec" : "process",
                                             "state", "Pending"));
    json_object_set_new(s->r.status, "steps", arr);
    s->dirty = true;
    return arr;
}

static void reset_steps(sctx *s) {
    json_object_del(s->r.status, "steps");
    steps_status(s);
}

static int attempt_failed(sctx *s, const char *why, serr *e) {
    int64_t attempt = jint(s->r.status, "attempt", 1);
    event(s, "Warning", "AttemptFailed", "deployment attempt %lld of %lld failed: %s",
          (long long)attempt, (long long)s->c->cfg->creating_attempts, why);
    if (attempt >= s->c->cfg->creating_attempts) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%lld attempts failed; last: %s", (long long)attempt, why);
        set_str(s, s->r.status, "lastError", why);
        return change(s, SP_FAILED, "CreationFailed", msg, e);
    }
    set_int(s, s->r.status, "attempt", attempt + 1);
    set_int(s, s->r.status, "restarts", 0);
    set_str(s, s->r.status, "lastError", why);
    /* Retry the failed steps; finished ones stay done (idempotent). */
    size_t i;
    json_t *st;
    json_array_foreach(steps_status(s), i, st) {
        if (strcmp(jstr(st, "state", ""), "Failed") == 0)
            json_object_set_new(st, "state", json_string("Pending"));
    }
    s->dirty = true;
    /* The delay grows with the attempt, which status counts (creating-
     * attempts ends in Failed): the queue's backoff of the n-th failure. */
    want(s, wq_backoff_delay(s->c->q, (int)attempt));
    return save(s, e);
}

static int reconcile_creating(sctx *s, serr *e) {
    int rc;
    if (strcmp(desired(s), "deleted") == 0)
        return change(s, SP_DELETING, "DeploymentCancelled", "cancelled by delete", e);
    if (timed_out(s)) {
        char d[32], msg[700];
        snprintf(msg, sizeof(msg), "not Active after %s: %s",
                 fmt_duration(s->c->cfg->creating_timeout_ms, d, sizeof(d)),
                 jstr(s->r.status, "waitingFor", "deployment did not finish"));
        event(s, "Warning", "StampCreationFailed", "%s", msg);
        return change(s, SP_FAILED, "CreationTimeout", msg, e);
    }
    json_t *steps = steps_status(s);
    update_endpoint(s); /* exec steps (smoke tests) get STAMP_ENDPOINT */
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        json_t *prog = json_array_get(steps, (size_t)i);
        const char *state = jstr(prog, "state", "Pending");
        json_t *cur = jchild(s->r.status, "step");
        set_str(s, cur, "phase", tpl_phase_names[st->phase]);
        set_str(s, cur, "name", st->name);
        set_int(s, cur, "index", i);
        if (st->kind == TK_PROCESS) {
            int alive, started;
            if ((rc = ensure_step(s, st, st->replicas, &alive, &started, e))) {
                if (rc == SE_INVAL || rc == SE_TOOBIG || rc == SE_IO) return attempt_failed(s, e->msg, e);
                return rc;
            }
            if (strcmp(state, "Done") == 0 && started > 0) {
                int64_t restarts = jint(s->r.status, "restarts", 0) + started;
                set_int(s, s->r.status, "restarts", restarts);
                event(s, "Warning", "ReplicaRestarted", "step %s: restarted %d replica(s)",
                      st->name, started);
                if (restarts > s->c->cfg->restart_limit) {
                    char why[256];
                    snprintf(why, sizeof(why), "step %s: replicas keep exiting (%lld restarts)",
                             st->name, (long long)restarts);
                    set_str(s, prog, "state", "Failed");
                    return attempt_failed(s, why, e);
                }
            }
            if (strcmp(state, "Done") != 0) {
                set_str(s, prog, "state", "Done");
                event(s, "Normal", "StepDone", "%s/%s: %d replica(s) of pool %s running",
                      tpl_phase_names[st->phase], st->name, alive, tpl_pool_names[st->pool]);
            }
            continue;
        }
        if (strcmp(state, "Done") == 0) continue;
        if (strcmp(state, "Failed") == 0) return attempt_failed(s, jstr(prog, "message", "failed"), e);
        int result;
        if ((rc = exec_follow(s, st, st->run, "create", prog, &result, e))) return rc;
        if (result == RUN_RUNNING) {
            set_str(s, s->r.status, "waitingFor", "exec step running");
            return save(s, e);
        }
        if (result == RUN_FAILED) {
            char why[300];
            snprintf(why, sizeof(why), "step %s: %s (log %s)", st->name,
                     jstr(prog, "message", "failed"), jstr(prog, "log", ""));
            return attempt_failed(s, why, e);
        }
        event(s, "Normal", "StepDone", "%s/%s: command succeeded", tpl_phase_names[st->phase],
              st->name);
    }
    update_endpoint(s);
    frontdoor(s, TR_ABSENT);
    /* Health gate: every check of the stamp's StampHealthCheck passes. */
    hc_set set;
    health_view hv;
    load_checks(s, &set);
    eval_health(s, &set, SCALE_FULL, &hv);
    if (!hv.all_passing) {
        char w[600];
        snprintf(w, sizeof(w), "health: %s", hv.why);
        set_str(s, s->r.status, "waitingFor", w);
        return save(s, e);
    }
    int64_t since = jint(s->r.status, "creatingSinceMs", jint(s->r.status, "phaseSince", now_ms()));
    json_object_del(s->r.status, "waitingFor");
    json_object_del(s->r.status, "step");
    json_object_set_new(s->r.status, "activeSinceMs", json_integer(now_ms()));
    json_object_set_new(s->r.status, "health",
                        json_pack("{s:s,s:b,s:b,s:i}", "source", set.source, "healthy", 1,
                                  "inRotation", 1, "recoveries", 0));
    rc = change(s, SP_ACTIVE, "HealthChecksPassed", "all health checks pass", e);
    if (rc == 0) {
        metrics_observe("stamp_creation_duration", "", (double)(now_ms() - since) / 1000.0);
        frontdoor(s, TR_READY);
        save(s, NULL);
    }
    return rc;
}

static void drain_limits(sctx *s, json_t *dr, int64_t *conn, int64_t *jobs, int64_t *total) {
    /* A grace period given while draining (spec) wins over the one the
     * drain started with. */
    int64_t grace = jint(json_object_get(s->r.spec, "drain"), "gracePeriodMs", 0);
    if (grace <= 0) grace = jint(dr, "gracePeriodMs", 0);
    *conn = grace > 0 ? grace : s->c->cfg->drain_connections_timeout_ms;
    *jobs = grace > 0 ? grace : s->c->cfg->drain_jobs_timeout_ms;
    *total = grace > 0 ? grace : s->c->cfg->drain_total_timeout_ms;
}

static int start_drain(sctx *s, serr *e) {
    json_t *req = json_object_get(s->r.spec, "drain");
    bool del = strcmp(desired(s), "deleted") == 0;
    json_t *dr = json_object();
    json_object_set_new(dr, "startedMs", json_integer(now_ms()));
    json_object_set_new(dr, "target", json_string(del ? "Deleting" : "Ready"));
    json_object_set_new(dr, "gracePeriodMs", json_integer(jint(req, "gracePeriodMs", 0)));
    json_object_set_new(dr, "requestGeneration", json_integer(jint(req, "generation", 0)));
    json_object_set_new(s->r.status, "drain", dr);
    int64_t c, j, t;
    drain_limits(s, dr, &c, &j, &t);
    char a[32], b[32], d[32], msg[200];
    snprintf(msg, sizeof(msg), "then %s; limits: connections %s, jobs %s, total %s",
             del ? "delete" : "standby", fmt_duration(c, a, sizeof(a)), fmt_duration(j, b, sizeof(b)),
             fmt_duration(t, d, sizeof(d)));
    return change(s, SP_DRAINING, "DrainStarted", msg, e);
}

/* The longest interval of the set: a stamp healthy for ten of them has
 * recovered for good, and its recovery count starts again. */
static int64_t longest_interval(const hc_set *set) {
    int64_t m = 0;
    for (int i = 0; i < set->n; i++)
        if (set->checks[i].interval_ms > m) m = set->checks[i].interval_ms;
    return m;
}

/* Replace the stamp's workloads: stop every replica, start them again. */
static int redeploy(sctx *s, serr *e) {
    int restarted = 0, rc;
    char why[128];
    int missing = missing_replicas(s, SCALE_FULL, why, sizeof(why), NULL);
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS) continue;
        int alive, started;
        if ((rc = ensure_step(s, st, 0, &alive, &started, e))) return rc;
        if ((rc = ensure_step(s, st, st->replicas, &alive, &started, e))) return rc;
        restarted += started;
    }
    hc_reset(s->name);
    if (missing > 0) {
        metrics_inc("stamp_replica_restarts_total", "", missing);
        event(s, "Warning", "ReplicaRestarted", "%d replica(s) had exited; %d replica(s) started",
              missing, restarted);
    }
    return 0;
}

static int reconcile_active(sctx *s, serr *e) {
    const char *d = desired(s);
    if (strcmp(d, "standby") == 0 || strcmp(d, "deleted") == 0) {
        fleet_forget(s->c->fleet, s->name);
        return start_drain(s, e);
    }
    int rc;
    hc_set set;
    health_view hv;
    load_checks(s, &set);
    update_endpoint(s);
    json_t *hs = jchild(s->r.status, "health");
    json_t *rec = json_object_get(hs, "recovery"); /* a recovery under way */
    eval_health(s, &set, SCALE_FULL, &hv);
    /* A replica that has exited is a failure for certain: no need to wait
     * for thresholds before taking the stamp out of rotation. */
    char gone[200] = "";
    int pools[POOL_N] = {0};
    int missing = missing_replicas(s, SCALE_FULL, gone, sizeof(gone), pools);
    json_t *jp = jchild(s->r.status, "pools");
    for (int p = 0; p < POOL_N; p++) set_int(s, jp, tpl_pool_names[p], pools[p]);
    bool in_grace = json_is_object(rec) &&
                    now_ms() - jint(rec, "startedMs", 0) < s->c->cfg->health_recovery_grace_ms;
    bool unhealthy = (hv.failing || missing > 0) && !in_grace;
    /* Healthy enough to serve: nothing failing, nothing missing, and after a
     * recovery every check passing again.  Unknown results (stampd just
     * restarted) keep the stamp where it was. */
    bool serve = !hv.failing && missing == 0 && (!json_is_object(rec) || hv.all_passing);
    bool all_unhealthy = false;
    tr_state rot = fleet_rotation(s->c->fleet, s->name, serve, &all_unhealthy);
    frontdoor(s, rot);
    const char *reason = missing ? gone : hv.why;
    bool was_in = jbool(hs, "inRotation");
    bool now_in = rot == TR_READY;
    if (was_in != now_in) {
        json_object_set_new(hs, "inRotation", json_boolean(now_in));
        s->dirty = true;
        if (now_in) event(s, "Normal", "BackInRotation", "health checks pass again");
        else {
            metrics_inc("stamp_unhealthy_total", "", 1);
            event(s, "Warning", "OutOfRotation", "%s", reason);
        }
    }
    if (!serve && now_in && !jbool(hs, "allUnhealthy")) {
        json_object_set_new(hs, "allUnhealthy", json_true());
        s->dirty = true;
        metrics_inc("stamp_health_alerts_total", "", 1);
        event(s, "Warning", "FleetAllUnhealthy",
              "no Active stamp is healthy; policy %s keeps this one in rotation (%s)",
              s->c->cfg->all_unhealthy_policy, reason);
    } else if ((serve || !now_in) && jbool(hs, "allUnhealthy")) {
        json_object_del(hs, "allUnhealthy");
        s->dirty = true;
    }
    set_int(s, hs, "healthy", serve && !unhealthy);
    set_str(s, hs, "source", set.source);
    if (serve && json_is_object(rec) && hv.all_passing) {
        event(s, "Normal", "Recovered", "%s: every check passes (recovery %lld of %d)",
              hc_action_names[set.action], (long long)jint(hs, "recoveries", 0), set.max_retries);
        json_object_del(hs, "recovery");
        rec = NULL; /* freed with the key */
        json_object_set_new(hs, "healthySinceMs", json_integer(now_ms()));
        s->dirty = true;
    }
    /* Ten intervals healthy after a recovery: the count starts again. */
    if (serve && !json_is_object(rec) && jint(hs, "recoveries", 0) > 0 &&
        now_ms() - jint(hs, "healthySinceMs", now_ms()) >= 10 * longest_interval(&set)) {
        set_int(s, hs, "recoveries", 0);
    }
    if (!unhealthy) return save(s, e);
    /* Kept serving by the all-unhealthy policy: a redeploy or drain now
     * would take away the last capacity the fleet has, so recovery waits
     * (the FleetAllUnhealthy event and gauge say why) until another stamp
     * is healthy again. */
    if (!serve && now_in) return save(s, e);

    /* Unhealthy: recover as the policy says. */
    if (!set.recovery || set.action == HA_ALERT) {
        if (!jbool(hs, "alerted")) {
            json_object_set_new(hs, "alerted", json_true());
            s->dirty = true;
            metrics_inc("stamp_health_alerts_total", "", 1);
            event(s, "Warning", "StampUnhealthy", "%s (recovery: %s)", reason,
                  set.recovery ? "alert" : "disabled");
        }
        return save(s, e);
    }
    json_object_del(hs, "alerted");
    int64_t n = jint(hs, "recoveries", 0);
    if (n >= set.max_retries) {
        metrics_inc("stamp_health_alerts_total", "", 1);
        event(s, "Warning", "StampRecoveryFailed", "%s after %lld recovery attempt(s)", reason,
              (long long)n);
        char msg[600];
        snprintf(msg, sizeof(msg), "unhealthy after %lld recovery attempt(s): %s", (long long)n, reason);
        set_str(s, s->r.status, "lastError", reason);
        fleet_forget(s->c->fleet, s->name);
        return change(s, SP_FAILED, "RecoveryFailed", msg, e);
    }
    set_int(s, hs, "recoveries", n + 1);
    json_object_set_new(hs, "recovery", json_pack("{s:s,s:I,s:I}", "action", hc_action_names[set.action],
                                                  "attempt", (json_int_t)(n + 1), "startedMs",
                                                  (json_int_t)now_ms()));
    s->dirty = true;
    char lbl[64];
    snprintf(lbl, sizeof(lbl), "action=\"%s\"", hc_action_names[set.action]);
    metrics_inc("stamp_recoveries_total", lbl, 1);
    event(s, "Warning", "RecoveryStarted", "%s (attempt %lld of %d): %s", hc_action_names[set.action],
          (long long)(n + 1), set.max_retries, reason);
    if ((rc = save(s, e))) return rc;
    if (set.action == HA_DRAIN) {
        json_object_set_new(s->r.spec, "desired", json_string("standby"));
        json_object_set_new(s->r.spec, "drain", json_pack("{s:b,s:I,s:I}", "force", 0, "gracePeriodMs",
                                                          (json_int_t)0, "generation", (json_int_t)0));
        fleet_forget(s->c->fleet, s->name);
        return start_drain(s, e);
    }
    if ((rc = redeploy(s, e))) return rc;
    want(s, 0);
    return save(s, e);
}

static int finish_drain(sctx *s, const blockers *b, bool forced, const char *why, serr *e) {
    json_t *dr = jchild(s->r.status, "drain");
    /* Connections open at the end: what HAProxy still carries, or what the
     * workload counts when more (clients that came around the front door). */
    int64_t fd = b->fd_sessions + b->fd_queue;
    int64_t conns = fd > b->connections ? fd : b->connections;
    if (forced && traffic_enabled(s->c->tr)) {
        serr e2 = {0};
        if (traffic_shutdown_sessions(s->c->tr, s->name, &e2) != 0)
            log_warnx("stamp %s: shutdown sessions: %s", s->name, e2.msg);
    }
    int64_t dropped = forced ? conns + b->jobs : 0;
    int64_t started = jint(dr, "startedMs", now_ms());
    json_object_set_new(dr, "endedMs", json_integer(now_ms()));
    json_object_set_new(dr, "forced", json_boolean(forced));
    json_object_set_new(dr, "droppedConnections", json_integer(forced ? conns : 0));
    json_object_set_new(dr, "droppedJobs", json_integer(forced ? b->jobs : 0));
    bool del = strcmp(jstr(dr, "target", "Ready"), "Deleting") == 0 ||
               strcmp(desired(s), "deleted") == 0;
    if (forced) {
        metrics_inc("stamp_drain_dropped_total", "", (double)dropped);
        event(s, "Warning", "DrainForced",
              "%s: dropping %lld connection(s) and %lld job(s)", why, (long long)conns,
              (long long)b->jobs);
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "%s%s", forced ? "forced: " : "drained", forced ? why : "");
    frontdoor(s, TR_MAINT);
    int rc = del ? change(s, SP_DELETING, forced ? "ForceDelete" : "Drained", msg, e)
                 : change(s, SP_READY, forced ? "DrainForced" : "Drained", msg, e);
    if (rc == 0 && !del)
        metrics_observe("stamp_drain_duration", "", (double)(now_ms() - started) / 1000.0);
    return rc;
}

static int reconcile_draining(sctx *s, serr *e) {
    json_t *dr = jchild(s->r.status, "drain");
    const char *d = desired(s);
    if (strcmp(d, "active") == 0) {
        json_object_set_new(dr, "cancelledMs", json_integer(now_ms()));
        return change(s, SP_ACTIVE, "DrainCancelled", "cancelled by activate", e);
    }
    if (strcmp(d, "deleted") == 0) set_str(s, dr, "target", "Deleting");
    /* Out of the balancing, existing sessions finish (HAProxy "drain"). */
    frontdoor(s, TR_DRAIN);
    blockers b;
    scrape_blockers(s, &b);
    json_t *req = json_object_get(s->r.spec, "drain");
    bool force = jbool(req, "force") || (strcmp(d, "deleted") == 0 && jbool(s->r.spec, "deleteForce"));
    if (force) return finish_drain(s, &b, true, "--force", e);
    if (b.connections == 0 && b.jobs == 0 && b.fd_sessions == 0 && b.fd_queue == 0)
        return finish_drain(s, &b, false, "", e);
    int64_t lc, lj, lt, el = now_ms() - jint(dr, "startedMs", now_ms());
    drain_limits(s, dr, &lc, &lj, &lt);
    char buf[32], why[128];
    if (el >= lt) {
        snprintf(why, sizeof(why), "drain limit of %s passed", fmt_duration(lt, buf, sizeof(buf)));
        return finish_drain(s, &b, true, why, e);
    }
    if ((b.connections > 0 || b.fd_sessions > 0 || b.fd_queue > 0) && el >= lc) {
        snprintf(why, sizeof(why), "connections still open after %s", fmt_duration(lc, buf, sizeof(buf)));
        return finish_drain(s, &b, true, why, e);
    }
    if (b.jobs > 0 && el >= lj) {
        snprintf(why, sizeof(why), "jobs still running after %s", fmt_duration(lj, buf, sizeof(buf)));
        return finish_drain(s, &b, true, why, e);
    }
    set_int(s, dr, "connections", b.connections);
    set_int(s, dr, "jobs", b.jobs);
    if (b.fd_known) {
        set_int(s, dr, "frontdoorSessions", b.fd_sessions);
        set_int(s, dr, "frontdoorQueue", b.fd_queue);
    }
    set_int(s, dr, "deadlineConnectionsMs", jint(dr, "startedMs", 0) + lc);
    set_int(s, dr, "deadlineJobsMs", jint(dr, "startedMs", 0) + lj);
    set_int(s, dr, "deadlineTotalMs", jint(dr, "startedMs", 0) + lt);
    want(s, s->c->cfg->drain_poll_ms);
    return save(s, e);
}

static int retire(sctx *s, const char *reason, const char *msg, serr *e) {
    json_object_set_new(s->r.spec, "desired", json_string("deleted"));
    return change(s, SP_DELETING, reason, msg, e);
}

static int reconcile_ready(sctx *s, serr *e) {
    const char *d = desired(s);
    int rc, started;
    if (strcmp(d, "deleted") == 0) return change(s, SP_DELETING, "Retired", "retire signal", e);
    /* Standby is out of rotation; an activation goes back in only once
     * Active. */
    fleet_forget(s->c->fleet, s->name);
    frontdoor(s, TR_MAINT);
    if (strcmp(d, "active") != 0) {
        json_object_del(s->r.status, "activation");
        if (timed_out(s)) {
            char b[32], msg[128];
            snprintf(msg, sizeof(msg), "in standby longer than %s",
                     fmt_duration(s->c->cfg->standby_max_age_ms, b, sizeof(b)));
            return retire(s, "StandbyMaxAge", msg, e);
        }
        /* Warm standby: system pool stays, general and gpu scale to 0. */
        if ((rc = scale_all(s, SCALE_STANDBY, false, &started, e))) return rc;
        want(s, s->c->cfg->health_interval_ms * 5);
        return save(s, e);
    }
    json_t *act = json_object_get(s->r.status, "activation");
    if (!json_is_object(act)) {
        act = json_pack("{s:I,s:i}", "startedMs", (json_int_t)now_ms(), "attempt", 1);
        json_object_set_new(s->r.status, "activation", act);
        hc_reset(s->name); /* results from before the standby do not count */
        s->dirty = true;
        event(s, "Normal", "Activating", "scaling general and gpu pools up");
    }
    if ((rc = scale_all(s, SCALE_FULL, false, &started, e))) return rc;
    hc_set set;
    health_view hv;
    load_checks(s, &set);
    eval_health(s, &set, SCALE_FULL, &hv);
    const char *why = hv.why;
    if (hv.all_passing) {
        int64_t t0 = jint(act, "startedMs", now_ms());
        json_object_del(s->r.status, "activation");
        json_object_del(s->r.status, "drain");
        json_object_set_new(s->r.status, "activeSinceMs", json_integer(now_ms()));
        json_object_set_new(s->r.status, "health",
                            json_pack("{s:s,s:b,s:b,s:i}", "source", set.source, "healthy", 1,
                                      "inRotation", 1, "recoveries", 0));
        rc = change(s, SP_ACTIVE, "Activated", "pools scaled up and healthy", e);
        if (rc == 0) {
            metrics_observe("stamp_activation_duration", "", (double)(now_ms() - t0) / 1000.0);
            frontdoor(s, TR_READY);
            save(s, NULL);
        }
        return rc;
    }
    int64_t age = now_ms() - jint(act, "startedMs", now_ms());
    if (age >= s->c->cfg->activation_timeout_ms) {
        int64_t attempt = jint(act, "attempt", 1);
        event(s, "Warning", "ActivationAttemptFailed", "activation attempt %lld failed: %s",
              (long long)attempt, why);
        if (attempt >= s->c->cfg->activation_attempts) {
            event(s, "Warning", "StampActivationFailed", "activation failed %lld times",
                  (long long)attempt);
            char msg[600];
            snprintf(msg, sizeof(msg), "activation failed %lld times: %s", (long long)attempt, why);
            return change(s, SP_FAILED, "ActivationFailed", msg, e);
        }
        json_object_set_new(act, "attempt", json_integer(attempt + 1));
        json_object_set_new(act, "startedMs", json_integer(now_ms()));
        s->dirty = true;
    }
    char w[600];
    snprintf(w, sizeof(w), "health: %s", why);
    set_str(s, s->r.status, "waitingFor", w);
    return save(s, e);
}

static int reconcile_failed(sctx *s, serr *e) {
    fleet_forget(s->c->fleet, s->name);
    frontdoor(s, TR_ABSENT);
    int64_t retry = jint(s->r.spec, "retry", 0);
    if (retry > jint(s->r.status, "retryObserved", 0)) {
        json_object_set_new(s->r.status, "retryObserved", json_integer(retry));
        json_object_set_new(s->r.status, "attempt", json_integer(1));
        json_object_set_new(s->r.status, "restarts", json_integer(0));
        json_object_set_new(s->r.status, "creatingSinceMs", json_integer(now_ms()));
        json_object_del(s->r.status, "activation");
        reset_steps(s);
        return change(s, SP_CREATING, "Redeploy", "deploy requested again", e);
    }
    if (strcmp(desired(s), "deleted") == 0) return change(s, SP_DELETING, "Delete", "delete", e);
    if (timed_out(s)) return retire(s, "FailedAutoDelete", "failed-auto-delete passed", e);
    return save(s, e);
}

/* The create command of step i may have run: recorded in createdSteps, or
 * (for a stamp recorded before createdSteps existed) in its progress. */
static bool create_ran(sctx *s, int i) {
    if (json_is_string(json_object_get(json_object_get(s->r.status, "createdSteps"), s->t.steps[i].name)))
        return true;
    json_t *prog = json_array_get(json_object_get(s->r.status, "steps"), (size_t)i);
    return jint(prog, "runs", 0) > 0 || strcmp(jstr(prog, "state", "Pending"), "Pending") != 0;
}

/* Create commands still running (a deployment cancelled mid-step) stop
 * before any delete command runs. */
static int stop_create_commands(sctx *s, serr *e) {
    char prefix[RT_UNIT_MAX];
    snprintf(prefix, sizeof(prefix), "%s/x/", s->name);
    rt_proc p[16];
    int n = rt_scan(s->c->rt, prefix, true, p, 16, e);
    if (n < 0) return n;
    for (int i = 0; i < n && i < 16; i++) {
        const char *run = strrchr(p[i].unit, '/');
        if (run == NULL || strncmp(run + 1, "create-", 7) != 0) continue;
        log_info("stamp %s: stopping %s: the deployment was cancelled", s->name, p[i].unit);
        rt_stop(s->c->rt, p[i].pid, (int)s->c->cfg->stop_grace_ms, NULL);
    }
    if (n > 0) rt_invalidate(s->c->rt);
    return 0;
}

static int decommission(sctx *s, bool *done, serr *e) {
    json_t *rt = jchild(s->r.status, "retire");
    json_t *dc = jchild(rt, "decommission");
    int rc;
    *done = false;
    if ((rc = stop_create_commands(s, e))) return rc;
    for (int i = s->t.nsteps - 1; i >= 0; i--) {
        const tpl_step *st = &s->t.steps[i];
        json_t *prog = jchild(dc, st->name);
        if (strcmp(jstr(prog, "state", ""), "Done") == 0) continue;
        if (st->kind == TK_PROCESS) {
            int alive, started;
            if ((rc = ensure_step(s, st, 0, &alive, &started, e))) return rc;
            json_object_set_new(prog, "state", json_string("Done"));
            s->dirty = true;
            event(s, "Normal", "Decommissioned", "step %s: workloads stopped, volumes kept",
                  st->name);
            continue;
        }
        if (st->del == NULL) {
            json_object_set_new(prog, "state", json_string("Done"));
            s->dirty = true;
            continue;
        }
        if (!create_ran(s, i)) {
            json_object_set_new(prog, "state", json_string("Done"));
            json_object_set_new(prog, "skipped", json_string("its create command never ran"));
            s->dirty = true;
            event(s, "Normal", "Decommissioned",
                  "step %s: create command never ran; delete command not run", st->name);
            continue;
        }
        int result;
        if ((rc = exec_follow(s, st, st->del, "delete", prog, &result, e))) return rc;
        if (result == RUN_RUNNING) return save(s, e);
        if (result == RUN_FAILED) {
            /* The delete command will be run again with backoff, for
             * ever: resources it should remove may still exist, so
             * nothing after it runs.  Not an error for the engine: a
             * Deleting stamp allows no operator action, so a Stalled one
             * could only be restarted by restarting stampd.  The delay is
             * the queue's backoff of the step's runs, which status counts
             * (the engine forgets failures at each poll of a run). */
            json_object_set_new(prog, "state", json_string("Pending"));
            s->dirty = true;
            event(s, "Warning", "DecommissionFailed", "step %s: %s; retrying", st->name,
                  jstr(prog, "message", "failed"));
            want(s, wq_backoff_delay(s->c->q, (int)jint(prog, "runs", 1)));
            return save(s, e);
        }
        event(s, "Normal", "Decommissioned", "step %s: delete command succeeded", st->name);
    }
    /* A process could only be left if something restarted it; check. */
    char prefix[RT_UNIT_MAX];
    snprintf(prefix, sizeof(prefix), "%s/", s->name);
    rt_proc p[16];
    int n = rt_scan(s->c->rt, prefix, true, p, 16, e);
    if (n < 0) return n;
    for (int i = 0; i < n && i < 16; i++) rt_stop(s->c->rt, p[i].pid, (int)s->c->cfg->stop_grace_ms, NULL);
    rt_invalidate(s->c->rt);
    *done = n == 0;
    if (!*done) want(s, 0);
    return 0;
}

static int reconcile_deleting(sctx *s, serr *e) {
    json_t *rt = jchild(s->r.status, "retire");
    int rc;
    for (;;) {
        int64_t step = jint(rt, "step", 0);
        if (step >= SR_NSTEPS) break;
        set_str(s, rt, "current", stamp_retire_steps[step]);
        switch (step) {
        case SR_BACKUP: {
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%s/backups/%s", s->c->data_dir, s->name);
            remove_partials(dir);
            if ((rc = do_backup(s, "retire", e))) return rc;
            break;
        }
        case SR_QUARANTINE: {
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%s/quarantine", s->dir);
            if ((rc = mkdir_p(dir, 0750, e))) return rc;
            /* Out of rotation (the traffic driver), logs and metrics kept:
             * take a last scrape of every replica that still answers. */
            fleet_forget(s->c->fleet, s->name);
            frontdoor(s, TR_MAINT);
            snapshot_metrics(s, dir);
            event(s, "Normal", "Quarantined", "out of rotation; logs and metrics kept");
            break;
        }
        case SR_DECOMMISSION: {
            bool done;
            if ((rc = decommission(s, &done, e))) return rc;
            if (!done) return save(s, e);
            break;
        }
        case SR_ARCHIVE:
            if ((rc = do_archive(s, e))) return rc;
            break;
        case SR_PURGE: {
            /* Only with a verified archive on disk. */
            const char *ap = jstr(json_object_get(rt, "archive"), "path", NULL);
            char mp[PATH_MAX];
            snprintf(mp, sizeof(mp), "%s/manifest.json", ap ? ap : "/nonexistent");
            if (ap == NULL || !path_exists(mp)) {
                json_object_set_new(rt, "step", json_integer(SR_ARCHIVE));
                s->dirty = true;
                continue;
            }
            if (traffic_enabled(s->c->tr)) {
                /* Off the front door before the port can go to another stamp. */
                const char *ep = jstr(s->r.status, "endpoint", NULL);
                if ((rc = traffic_set(s->c->tr, s->name, ep, TR_ABSENT, e))) return serr_wrap(e, "front door");
            }
            if ((rc = remove_tree(s->dir, e))) return rc;
            char owner[256];
            for (int i = 0; i < s->t.nsteps; i++) {
                snprintf(owner, sizeof(owner), "%s/%s", s->name, s->t.steps[i].name);
                store_ports_release(s->c->st, owner, NULL);
            }
            event(s, "Normal", "Purged", "volumes, logs and ports released");
            break;
        }
        }
        json_object_set_new(rt, "step", json_integer(step + 1));
        s->dirty = true;
        if ((rc = save(s, e))) return rc;
    }
    json_object_del(s->r.status, "endpoint");
    json_t *pools = jchild(s->r.status, "pools");
    for (int p = 0; p < POOL_N; p++) json_object_set_new(pools, tpl_pool_names[p], json_integer(0));
    return change(s, SP_DELETED, "RetirementComplete", "backup, quarantine, decommission, archive, purge", e);
}

static int reconcile_deleted(sctx *s, serr *e) {
    if (traffic_enabled(s->c->tr) && traffic_set(s->c->tr, s->name, NULL, TR_ABSENT, NULL) == 0) traffic_forget(s->c->tr, s->name);
    hc_reset(s->name);
    int64_t until = jint(json_object_get(jchild(s->r.status, "retire"), "archive"), "retainUntilMs", 0);
    if (until == 0) return 0;
    int64_t left = until - now_ms();
    if (left > 0) {
        want(s, left < 3600000 ? left : 3600000);
        return 0;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/archive/%s", s->c->data_dir, s->name);
    int rc = remove_tree(dir, e);
    if (rc == 0) {
        snprintf(dir, sizeof(dir), "%s/backups/%s", s->c->data_dir, s->name);
        rc = remove_tree(dir, e);
    }
    if (rc == 0) rc = store_delete(s->c->st, "Stamp", s->name, s->r.resource_version, e);
    if (rc == 0) log_info("stamp %s: archive retention passed; archive and record removed", s->name);
    return rc;
}

/* A backup asked for with `stampctl backup`. */
static int pending_backup(sctx *s, serr *e) {
    int64_t want_n = jint(s->r.spec, "backupRequested", 0);
    if (want_n <= jint(s->r.status, "backupsDone", 0)) return 0;
    if (s->phase == SP_DELETING || s->phase == SP_DELETED || s->phase == SP_CREATING) return 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/backups/%s", s->c->data_dir, s->name);
    remove_partials(dir);
    int rc = do_backup(s, "requested", e);
    if (rc) return rc;
    json_object_set_new(s->r.status, "backupsDone", json_integer(want_n));
    s->dirty = true;
    return save(s, e);
}

int stamp_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    sctx s = {.c = c, .requeue = -1};
    int rc;
    *requeue_ms = -1;
    str_copy(s.name, sizeof(s.name), name);
    if ((rc = store_get(c->st, "Stamp", name, &s.r, e))) {
        if (rc == SE_NOTFOUND) {
            /* Gone from the store: nothing of it may stay in the front door. */
            serr_clear(e);
            fleet_forget(c->fleet, name);
            hc_reset(name);
            if (traffic_enabled(c->tr) && traffic_set(c->tr, name, NULL, TR_ABSENT, e) != 0) {
                *requeue_ms = 1000;
                log_warnx("front door: removing %s: %s", name, e->msg);
                serr_clear(e);
            } else {
                traffic_forget(c->tr, name);
            }
            return 0;
        }
        return rc;
    }
    stamp_dir(c, name, NULL, s.dir, sizeof(s.dir));
    s.phase = phase_of(&stamp_fsm, &s.r);
    if (s.phase < 0) {
        phase_init(&stamp_fsm, &s.r, SP_CREATING);
        s.phase = SP_CREATING;
        s.dirty = true;
    }
    json_t *tspec = json_object_get(s.r.spec, "templateSpec");
    if ((rc = tpl_parse(tspec, &s.t, e))) {
        /* A configuration error: fail fast with the reason in status; the
         * engine marks the stamp Stalled and retries nothing until the
         * spec changes. */
        serr_wrap(e, "template");
        set_str(&s, s.r.status, "lastError", e->msg);
        serr se = {0};
        int src = save(&s, &se);
        resource_free(&s.r);
        if (src) return serr_set(e, src, "%s", se.msg);
        return SE_INVAL; /* whatever tpl_parse said (a limit too) */
    }
    if ((rc = pending_backup(&s, e)) == 0) {
        switch (s.phase) {
        case SP_CREATING: rc = reconcile_creating(&s, e); break;
        case SP_ACTIVE: rc = reconcile_active(&s, e); break;
        case SP_DRAINING: rc = reconcile_draining(&s, e); break;
        case SP_READY: rc = reconcile_ready(&s, e); break;
        case SP_DELETING: rc = reconcile_deleting(&s, e); break;
        case SP_DELETED: rc = reconcile_deleted(&s, e); break;
        case SP_FAILED: rc = reconcile_failed(&s, e); break;
        }
    }
    if (rc == 0) rc = save(&s, e);
    *requeue_ms = s.requeue;
    resource_free(&s.r);
    return rc;
}

/* ---- views for the API: health and metrics of one stamp ---- */

int stamp_health_json(ctl_ctx *c, const char *name, json_t **out, serr *e) {
    sctx s = {.c = c, .requeue = -1};
    str_copy(s.name, sizeof(s.name), name);
    resource_init(&s.r);
    int rc = store_get(c->st, "Stamp", name, &s.r, e);
    if (rc) {
        resource_free(&s.r);
        return rc;
    }
    if ((rc = tpl_parse(json_object_get(s.r.spec, "templateSpec"), &s.t, e))) {
        resource_free(&s.r);
        return rc;
    }
    hc_set set;
    load_checks(&s, &set);
    json_t *h = hc_snapshot(name, &set);
    json_t *hs = json_object_get(s.r.status, "health");
    json_object_set_new(h, "stamp", json_string(name));
    json_object_set_new(h, "phase", json_string(jstr(s.r.status, "phase", "")));
    json_object_set_new(h, "status", hs ? json_deep_copy(hs) : json_object());
    json_object_set_new(h, "frontdoor", json_string(jstr(s.r.status, "frontdoor", "none")));
    resource_free(&s.r);
    *out = h;
    return 0;
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
        if (traffic_stat(c->tr, name, &st, &e2) == 0 && st.present)
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
    return strncmp(out->run, "create-", 7) == 0 || strncmp(out->run, "delete-", 7) == 0;
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
        char cmd[8];
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
    snprintf(path, sizeof(path), "%s/%s.%s.log", dir, v[pick].step, v[pick].run);
    free(v);
    return read_file_tail(path, tail, data, len, NULL, e);
}
