/*
 * replicas.c - process steps on the local runtime: ports leased in the
 * store, replicas started, adopted and stopped by their unit markers (so a
 * replica started just before a crash is adopted, never started twice),
 * the front door told what the stamp's server should be, and the
 * workloads' own counters scraped for a drain.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "stamp/internal.h"
#include "util/httpc.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"

#define SCAN_MAX 64

static int port_free(int port, void *arg) {
    (void)arg;
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

/* A replica started by a stampd from before replicas carried their spec
 * (unit "<idx>", no hash) holds its ports in its step's one lease
 * "<stamp>/<step>", replicas x ports long: read, never taken. */
static int legacy_ports(sctx *s, const tpl_step *st, int idx, int *ports, serr *e) {
    char owner[RES_NAME_MAX + 80];
    int all[TPL_MAX_REPLICAS * TPL_MAX_PORTS];
    int held = 0;
    snprintf(owner, sizeof(owner), "%s/%s", s->name, st->name);
    int rc = store_ports_held(s->c->st, owner, all, (int)(sizeof(all) / sizeof(all[0])), &held, e);
    if (rc) return rc;
    if (held < (idx + 1) * st->ports) return serr_set(e, SE_NOTFOUND, "no legacy lease for replica %d", idx);
    memcpy(ports, all + idx * st->ports, sizeof(int) * (size_t)st->ports);
    return 0;
}

/* A replica's ports: read when leased already (every reconcile asks, and
 * a read takes no write transaction); else, with take, leased. */
static int lease(sctx *s, const tpl_step *st, int idx, const char *hash, bool take, int *ports, serr *e) {
    if (st->ports == 0) return 0;
    if (hash[0] == '\0') return legacy_ports(s, st, idx, ports, e);
    char owner[RES_NAME_MAX + 128];
    if (snprintf(owner, sizeof(owner), "%s/%s/%d@%s", s->name, st->name, idx, hash) >= (int)sizeof(owner))
        return serr_set(e, SE_TOOBIG, "port owner name too long");
    int held = 0, rc = store_ports_held(s->c->st, owner, ports, st->ports, &held, e);
    if (rc || held == st->ports) return rc;
    if (!take) return serr_set(e, SE_NOTFOUND, "%s holds no ports", owner);
    return store_ports_lease(s->c->st, owner, st->ports, (int)s->c->cfg->port_lo, (int)s->c->cfg->port_hi,
                             port_free, NULL, ports, e);
}

int sc_replica_ports(sctx *s, const tpl_step *st, int idx, const char *hash, int *ports, serr *e) {
    return lease(s, st, idx, hash, true, ports, e);
}

int sc_replica_ports_held(sctx *s, const tpl_step *st, int idx, const char *hash, int *ports, serr *e) {
    return lease(s, st, idx, hash, false, ports, e);
}

int sc_replica_want(const sctx *s, const tpl_step *st, int mode) {
    (void)s;
    if (mode == SCALE_NONE) return 0;
    if (mode == SCALE_STANDBY && st->pool != POOL_SYSTEM) return 0;
    return st->replicas;
}

static int replica_vars(sctx *s, const tpl_step *st, int idx, const int *ports, sc_vars *v,
                        char *logp, size_t loglen, serr *e) {
    char buf[PATH_MAX];
    sc_var_set(v, "STAMP_POOL", tpl_pool_names[st->pool]);
    sc_var_set(v, "STAMP_STEP", st->name);
    snprintf(buf, sizeof(buf), "%d", idx);
    sc_var_set(v, "STAMP_REPLICA", buf);
    for (int p = 0; p < st->ports; p++) {
        char pn[16];
        snprintf(buf, sizeof(buf), "%d", ports[p]);
        snprintf(pn, sizeof(pn), "PORT_%d", p);
        sc_var_set(v, pn, buf);
        if (p == 0) sc_var_set(v, "PORT", buf);
    }
    int rc;
    if ((rc = str_fmt(buf, sizeof(buf), e, "path", "%s/volumes/%s-%d", s->dir, st->name, idx)))
        return rc;
    sc_var_set(v, "STATE_DIR", buf);
    if ((rc = mkdir_p(buf, 0750, e)) || (rc = str_fmt(buf, sizeof(buf), e, "path", "%s/logs", s->dir)) ||
        (rc = mkdir_p(buf, 0750, e)) ||
        (rc = str_fmt(logp, loglen, e, "path", "%s/logs/%s-%d.log", s->dir, st->name, idx)))
        return rc;
    return sc_vars_step_env(v, st, e);
}

/* The argument vector and environment are on the heap: up to 32 arguments
 * of 1 KiB and 96 variables of 512 bytes. */
typedef struct spawn_buf {
    char args[TPL_MAX_ARGS][1024];
    const char *argv[TPL_MAX_ARGS + 1];
    char logp[PATH_MAX];
} spawn_buf;

int sc_spawn_replica(sctx *s, const tpl_step *st, int idx, const char *hash, serr *e) {
    int ports[TPL_MAX_PORTS];
    int prc = sc_replica_ports(s, st, idx, hash, ports, e);
    if (prc) return prc;
    sc_vars *v = sc_vars_new(s);
    spawn_buf *b = calloc(1, sizeof(*b));
    const char **env = NULL;
    int rc = 0;
    if (v == NULL || b == NULL) rc = serr_set(e, SE_NOMEM, "out of memory");
    if (rc == 0) rc = replica_vars(s, st, idx, ports, v, b->logp, sizeof(b->logp), e);
    size_t argc = json_array_size(st->command);
    for (size_t i = 0; rc == 0 && i < argc && i < TPL_MAX_ARGS; i++) {
        if ((rc = sc_expand(v, json_string_value(json_array_get(st->command, i)), b->args[i],
                            sizeof(b->args[i]), e)))
            serr_wrap(e, "step %s command", st->name);
        b->argv[i] = b->args[i];
    }
    if (rc == 0 && (env = sc_vars_envp(v)) == NULL) rc = serr_set(e, SE_NOMEM, "out of memory");
    if (rc == 0) {
        char unit[RT_UNIT_MAX];
        snprintf(unit, sizeof(unit), "%s/p/%s/%d@%s", s->name, st->name, idx, hash);
        rt_spawn_spec sp = {.unit = unit, .argv = b->argv, .env = env, .log_path = b->logp, .cwd = s->dir};
        pid_t pid;
        rc = rt_spawn(s->c->rt, &sp, &pid, e);
        if (rc == 0) log_debug("stamp %s: started %s pid %d", s->name, unit, (int)pid);
    }
    free(env);
    free(b);
    sc_vars_free(v);
    return rc;
}

/* A stop (SIGTERM, up to stop-grace, then SIGKILL) on the job pool, so the
 * reconcile worker does not wait out the grace period; the job's end wakes
 * the stamp, whose next scan no longer sees the process.  A stamp job (a
 * redeploy, s->in_job) may wait: it runs on the pool already. */
typedef struct stop_run {
    runtime *rt;
    pid_t pid;
    int grace_ms;
} stop_run;

static int stop_job(void *arg, json_t **result, serr *e) {
    (void)result;
    stop_run *r = arg;
    int rc = rt_stop(r->rt, r->pid, r->grace_ms, e);
    rt_invalidate(r->rt);
    return rc;
}

void sc_stop_proc(sctx *s, const rt_proc *p) {
    int grace = (int)s->c->cfg->stop_grace_ms;
    stop_run *r = s->in_job || s->c->jobs == NULL ? NULL : calloc(1, sizeof(*r));
    if (r != NULL) {
        *r = (stop_run){.rt = s->c->rt, .pid = p->pid, .grace_ms = grace};
        char key[JOBS_KEY_MAX];
        uint64_t id;
        serr e = {0};
        snprintf(key, sizeof(key), "Stamp/%s/stop/%d-%lld", s->name, (int)p->pid,
                 (long long)p->start_ticks);
        if (jobs_submit(s->c->jobs, key, stop_job, r, free, ctl_job_wake, s->c, &id, &e) == 0) {
            sc_want(s, 200); /* the job's end wakes it sooner */
            return;
        }
        log_warnx("stamp %s: stop of pid %d not queued (%s): stopping it here", s->name,
                  (int)p->pid, e.msg);
    }
    rt_stop(s->c->rt, p->pid, grace, NULL);
    rt_invalidate(s->c->rt);
}

/* Parses the part of a unit name after "<stamp>/p/<step>/": "<idx>@<hash>",
 * or "<idx>" (a replica of a stampd from before hashes: *hash ""). */
static bool unit_slot(const char *rest, int *idx, const char **hash) {
    const char *at = strchr(rest, '@');
    char num[16];
    size_t nl = at ? (size_t)(at - rest) : strlen(rest);
    if (nl == 0 || nl >= sizeof(num) || (at && strlen(at + 1) != SC_HASH_LEN - 1)) return false;
    memcpy(num, rest, nl);
    num[nl] = '\0';
    int64_t v;
    if (parse_i64(num, 0, TPL_MAX_REPLICAS - 1, &v) != 0) return false;
    *idx = (int)v;
    *hash = at ? at + 1 : "";
    return true;
}

/* What runs in each replica slot of a step (a scan of the runtime): the
 * replica of the current spec (hash), and replicas of another (an update's
 * old side, or the new side of one rolled back).  Units beyond count, a
 * second copy of one, or of a name stampd never gives are stopped when
 * stop_extra.  Returns the number of slots below count with something
 * running. */
int sc_scan_slots(sctx *s, const tpl_step *st, const char *hash, bool fresh, int count, bool stop_extra,
                  slot_procs *slots, serr *e) {
    char prefix[RT_UNIT_MAX];
    snprintf(prefix, sizeof(prefix), "%s/p/%s/", s->name, st->name);
    size_t plen = strlen(prefix);
    rt_proc *procs = calloc(SCAN_MAX, sizeof(*procs));
    if (procs == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int n = rt_scan(s->c->rt, prefix, fresh, procs, SCAN_MAX, e);
    if (n < 0) {
        free(procs);
        return n;
    }
    if (n > SCAN_MAX) n = SCAN_MAX;
    memset(slots, 0, sizeof(*slots) * TPL_MAX_REPLICAS);
    for (int i = 0; i < n; i++) {
        int idx;
        const char *h;
        bool ok = unit_slot(procs[i].unit + plen, &idx, &h) && idx < count;
        slot_procs *sl = ok ? &slots[idx] : NULL;
        bool cur = ok && strcmp(h, hash) == 0;
        if (ok && cur && !sl->cur) {
            sl->cur = true;
            sl->curp = procs[i];
            continue;
        }
        if (ok && !cur && sl->nold < SLOT_OLD_MAX) {
            sl->old[sl->nold] = procs[i];
            str_copy(sl->oldhash[sl->nold], SC_HASH_LEN, h);
            sl->nold++;
            continue;
        }
        if (!stop_extra) continue;
        log_info("stamp %s: stopping %sreplica %s pid %d", s->name, count > 0 ? "extra " : "",
                 procs[i].unit, (int)procs[i].pid);
        sc_stop_proc(s, &procs[i]);
        /* Its ports go with it, unless a replica of the same slot and spec
         * still runs (a second copy). */
        char owner[RES_NAME_MAX + 128];
        bool second_copy = ok && cur;
        if (unit_slot(procs[i].unit + plen, &idx, &h) && !second_copy &&
            snprintf(owner, sizeof(owner), "%s/%s/%s", s->name, st->name, procs[i].unit + plen) <
                (int)sizeof(owner))
            store_ports_release(s->c->st, owner, NULL);
    }
    free(procs);
    int nhave = 0;
    for (int i = 0; i < count; i++) nhave += slots[i].cur || slots[i].nold > 0;
    return nhave;
}

/* Long: the scan, the starts and, outside an update, the stops of
 * replicas another replica of the current spec has replaced. */
int sc_ensure_step(sctx *s, const tpl_step *st, int count, int *alive, int *started, serr *e) {
    char hash[SC_HASH_LEN];
    sc_step_hash(s, st, hash);
    slot_procs *slots = calloc(TPL_MAX_REPLICAS, sizeof(*slots));
    if (slots == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    *alive = *started = 0;
    int nhave = sc_scan_slots(s, st, hash, false, count, true, slots, e);
    /* Never start a replica on the word of a cached scan. */
    if (nhave >= 0 && nhave < count) nhave = sc_scan_slots(s, st, hash, true, count, true, slots, e);
    if (nhave < 0) {
        free(slots);
        return nhave;
    }
    int rc = 0;
    for (int idx = 0; idx < count && rc == 0; idx++) {
        slot_procs *sl = &slots[idx];
        if (sl->cur && sl->nold > 0 && !sc_update_owns(s, st, idx)) {
            /* Replaced by a replica of the current spec (a finished or a
             * rolled-back update, or a crash between its two halves). */
            for (int k = 0; k < sl->nold; k++) sc_retire_replica(s, st, idx, &sl->old[k], sl->oldhash[k]);
            continue;
        }
        if (sl->cur || sl->nold > 0) continue; /* an old one serves until an update replaces it */
        if ((rc = sc_spawn_replica(s, st, idx, hash, e))) break;
        (*started)++;
        nhave++;
    }
    free(slots);
    *alive = nhave;
    return rc;
}

/* The replica of a slot that serves: the old one while an update's new one
 * has not passed its gate, else the current one, else whatever runs.  Its
 * port (leased for its spec), or the current spec's (to be started). */
static int serving_port(sctx *s, const tpl_step *st, int idx, const slot_procs *sl, const char *hash,
                        int *port) {
    const char *h = hash;
    if (sl->nold > 0 && (!sl->cur || (sc_update_owns(s, st, idx) && !sc_update_promoted(s, st, idx))))
        h = sl->oldhash[0];
    int ports[TPL_MAX_PORTS];
    int rc = sc_replica_ports(s, st, idx, h, ports, NULL);
    if (rc == 0) *port = ports[0];
    return rc;
}

void sc_update_endpoint(sctx *s) {
    if (s->t.endpoint_step < 0) return;
    const tpl_step *st = &s->t.steps[s->t.endpoint_step];
    char hash[SC_HASH_LEN];
    sc_step_hash(s, st, hash);
    slot_procs *sl = calloc(TPL_MAX_REPLICAS, sizeof(*sl));
    int port = 0;
    if (sl && sc_scan_slots(s, st, hash, false, st->replicas > 0 ? st->replicas : 1, false, sl, NULL) >= 0 &&
        serving_port(s, st, 0, &sl[0], hash, &port) == 0) {
        char ep[64];
        snprintf(ep, sizeof(ep), "127.0.0.1:%d", port);
        sc_set_str(s, s->r.status, "endpoint", ep);
    }
    free(sl);
}

int sc_scale_all(sctx *s, int mode, bool count_restarts, int *started_total, serr *e) {
    int pools[POOL_N] = {0};
    *started_total = 0;
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS) continue;
        int alive, started;
        int rc = sc_ensure_step(s, st, sc_replica_want(s, st, mode), &alive, &started, e);
        if (rc) return rc;
        pools[st->pool] += alive;
        *started_total += started;
        if (started && count_restarts) {
            metrics_inc("stamp_replica_restarts_total", "", started);
            sc_event(s, "Warning", "ReplicaRestarted", "restarted %d replica(s) of step %s", started,
                     st->name);
        }
    }
    json_t *jp = jchild(s->r.status, "pools");
    for (int p = 0; p < POOL_N; p++) sc_set_int(s, jp, tpl_pool_names[p], pools[p]);
    sc_update_endpoint(s);
    return 0;
}

int sc_replicas_of(sctx *s, bool health, int mode, replica_ref *out, int max) {
    int n = 0;
    slot_procs *sl = calloc(TPL_MAX_REPLICAS, sizeof(*sl));
    if (sl == NULL) return 0;
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS || (health ? !st->health : !st->metrics)) continue;
        int count = sc_replica_want(s, st, mode);
        char hash[SC_HASH_LEN];
        sc_step_hash(s, st, hash);
        if (count == 0 || sc_scan_slots(s, st, hash, false, count, false, sl, NULL) < 0) continue;
        for (int r = 0; r < count && n < max; r++) {
            int port;
            if (serving_port(s, st, r, &sl[r], hash, &port) == 0)
                out[n++] = (replica_ref){.port = port, .st = st, .idx = r};
        }
    }
    free(sl);
    return n;
}

int sc_missing_replicas(sctx *s, int mode, char *why, size_t whylen, int *pools) {
    int missing = 0;
    slot_procs *sl = calloc(TPL_MAX_REPLICAS, sizeof(*sl));
    if (sl == NULL) return 0;
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        int count = st->kind == TK_PROCESS ? sc_replica_want(s, st, mode) : 0;
        if (count == 0) continue;
        char hash[SC_HASH_LEN];
        sc_step_hash(s, st, hash);
        if (sc_scan_slots(s, st, hash, false, count, false, sl, NULL) < 0) continue;
        for (int r = 0; r < count; r++)
            if (!sl[r].cur && sl[r].nold == 0) {
                if (missing++ == 0) snprintf(why, whylen, "replica %s-%d is not running", st->name, r);
            } else if (pools) {
                pools[st->pool]++;
            }
    }
    free(sl);
    return missing;
}

/* Replace the stamp's workloads: stop every replica, start them again. */
int sc_redeploy(sctx *s, serr *e) {
    int restarted = 0, rc;
    char why[128];
    int missing = sc_missing_replicas(s, SCALE_FULL, why, sizeof(why), NULL);
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS) continue;
        int alive, started;
        if ((rc = sc_ensure_step(s, st, 0, &alive, &started, e))) return rc;
        if ((rc = sc_ensure_step(s, st, st->replicas, &alive, &started, e))) return rc;
        restarted += started;
    }
    hc_reset(s->name);
    if (missing > 0) {
        metrics_inc("stamp_replica_restarts_total", "", missing);
        sc_event(s, "Warning", "ReplicaRestarted", "%d replica(s) had exited; %d replica(s) started",
                 missing, restarted);
    }
    return 0;
}

int sc_stop_units(sctx *s, const char *sub, bool create_only, int *left, serr *e) {
    char prefix[RT_UNIT_MAX];
    snprintf(prefix, sizeof(prefix), "%s/%s", s->name, sub);
    rt_proc *p = calloc(SCAN_MAX, sizeof(*p));
    if (p == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int n = rt_scan(s->c->rt, prefix, true, p, SCAN_MAX, e);
    *left = 0;
    for (int i = 0; i < n && i < SCAN_MAX; i++) {
        const char *run = strrchr(p[i].unit, '/');
        if (create_only && (run == NULL || strncmp(run + 1, "create-", 7) != 0)) continue;
        if (create_only)
            log_info("stamp %s: stopping %s: the deployment was cancelled", s->name, p[i].unit);
        sc_stop_proc(s, &p[i]);
        (*left)++;
    }
    free(p);
    return n < 0 ? n : 0;
}

void sc_frontdoor(sctx *s, tr_state st) {
    if (!traffic_enabled(s->c->tr) || !sc_frontdoor_owner(s)) return;
    serr e = {0};
    const char *ep = jstr(s->r.status, "endpoint", NULL);
    if (st != TR_ABSENT && ep == NULL) return;
    if (traffic_set(s->c->tr, s->server, ep, st, &e) != 0) {
        log_warnx("stamp %s: front door: %s", s->name, e.msg);
        sc_want(s, 1000);
        return;
    }
    sc_set_str(s, s->r.status, "frontdoor", tr_state_names[st]);
    if (ep) sc_set_str(s, s->r.status, "frontdoorEndpoint", ep);
}

/* A scrape of every replica's own counters (connections, jobs), on the job
 * pool: a replica that does not answer holds a worker no longer. */
typedef struct scrape_run {
    int n;
    int ports[SC_MAX_REPLICA_REFS];
    char metrics_path[256];
    int64_t timeout_ms;
} scrape_run;

static int scrape_job(void *arg, json_t **result, serr *e) {
    (void)e;
    scrape_run *r = arg;
    int64_t conns = 0, jobs = 0;
    int unreachable = 0;
    for (int i = 0; i < r->n; i++) {
        char url[512];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", r->ports[i], r->metrics_path);
        httpc_req rq = {.url = url, .timeout_ms = r->timeout_ms};
        long status = 0;
        sbuf body;
        if (httpc_do(&rq, &status, &body, NULL) != 0) {
            /* A replica that is gone holds no connections. */
            unreachable++;
            continue;
        }
        /* What a drain waits for is requests in flight: an idle
         * keep-alive connection (the front door's pool, a scraper) holds
         * none.  A workload that does not count them gives its open
         * connections instead. */
        double v;
        if (status == 200 && (prom_value(body.data, "stamp_workload_inflight_requests", &v) == 0 ||
                              prom_value(body.data, "stamp_workload_active_connections", &v) == 0))
            conns += (int64_t)v;
        if (status == 200 && prom_value(body.data, "stamp_workload_active_jobs", &v) == 0)
            jobs += (int64_t)v;
        /* Jobs still queued are not done either. */
        if (status == 200 && prom_value(body.data, "stamp_workload_queue_depth", &v) == 0)
            jobs += (int64_t)v;
        sbuf_free(&body);
    }
    *result = json_pack("{s:I,s:I,s:i}", "connections", (json_int_t)conns, "jobs", (json_int_t)jobs,
                        "unreachable", unreachable);
    return 0;
}

int sc_scrape_blockers(sctx *s, json_t *rec, blockers *b, bool *ready, serr *e) {
    memset(b, 0, sizeof(*b));
    *ready = false;
    scrape_run *r = calloc(1, sizeof(*r));
    if (r == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    replica_ref reps[SC_MAX_REPLICA_REFS];
    r->n = sc_replicas_of(s, false, SCALE_FULL, reps, SC_MAX_REPLICA_REFS);
    for (int i = 0; i < r->n; i++) r->ports[i] = reps[i].port;
    str_copy(r->metrics_path, sizeof(r->metrics_path), s->t.metrics_path);
    r->timeout_ms = s->c->cfg->probe_timeout_ms;
    char key[JOBS_KEY_MAX];
    snprintf(key, sizeof(key), "Stamp/%s/scrape", s->name);
    int state;
    json_t *res = NULL;
    int rc = sc_job(s, rec, key, scrape_job, r, free, &state, &res, e);
    if (rc || state != JOB_DONE) return rc;
    b->connections = jint(res, "connections", 0);
    b->jobs = jint(res, "jobs", 0);
    b->unreachable = (int)jint(res, "unreachable", 0);
    json_decref(res);
    *ready = true;
    if (traffic_enabled(s->c->tr)) {
        tr_stat st;
        serr e2 = {0};
        if (sc_frontdoor_owner(s) && traffic_stat(s->c->tr, s->server, &st, &e2) == 0) {
            b->fd_known = true;
            b->fd_sessions = st.scur;
            b->fd_queue = st.qcur;
        } else {
            str_fmt_cut(b->fd_error, sizeof(b->fd_error), "%s", e2.msg);
        }
    }
    return 0;
}
