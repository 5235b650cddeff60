/*
 * update.c - what an Active stamp changes without a new stamp: application
 * updates (replicas replaced one at a time per pool, each new one
 * health-gated before the old one goes, the stamp in rotation throughout;
 * a failure rolls back to the spec that ran before) and node pool sizes.
 * Also which template spec a stamp runs (sc_effective) and the identity of
 * a replica's spec (sc_step_hash).
 *
 * State, all in status so a restart resumes where the update was:
 *   applied  {generation, templateRevision, templateSpec, parameters}: the
 *            spec that ran healthy last (written when the stamp first
 *            becomes Active and when an update completes)
 *   update   {generation, phase, fromRevision, toRevision, replaced, total,
 *            message, startedMs, endedMs,
 *            inflight: {<pool>: {step, idx, hash, startedMs, promotedMs,
 *                                passes, job}}}
 * phase: Progressing -> Complete, or Progressing -> RollingBack ->
 * RolledBack (or Failed when the rollback fails too).  The spec's
 * updateGeneration names the update asked for; an update rolled back stays
 * rolled back until a new one is asked.
 *
 * A replica is "<stamp>/p/<step>/<idx>@<hash>", hash naming the spec it
 * was started from (command, environment, resources and the stamp's
 * parameters), with ports leased for that name: the new replica of a slot
 * runs beside the old one on ports of its own until it has passed its
 * gate; the front door then follows the endpoint to the new one (HAProxy's
 * `set server addr`), and the old one is stopped after a short handover.
 */
#include <stdio.h>
#include <string.h>

#include "reconcile/phase.h"
#include "stamp/internal.h"
#include "util/httpc.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/wallclock.h"

#define GATE_PASSES 2          /* consecutive passing probes before a replica serves */
#define HANDOVER_MS 1000       /* old replica stopped this long after the switch */
#define NONHTTP_READY_MS 1000  /* a replica without a health endpoint: alive this long */

/* ---- which spec runs ---- */

void sc_effective(sctx *s) {
    json_t *spec = s->r.spec, *st = s->r.status;
    json_t *applied = json_object_get(st, "applied");
    json_t *upd = json_object_get(st, "update");
    s->tspec = json_object_get(spec, "templateSpec");
    s->params = json_object_get(spec, "parameters");
    const char *sv = json_string_value(json_object_get(spec, "frontdoorServer"));
    str_copy(s->server, sizeof(s->server), sv && *sv ? sv : s->name);
    if (!json_is_object(applied)) return;
    int64_t g = jint(spec, "updateGeneration", 0);
    if (g == jint(applied, "generation", 0)) return;
    const char *ph = jstr(upd, "phase", "");
    if (jint(upd, "generation", -1) == g &&
        (strcmp(ph, "RollingBack") == 0 || strcmp(ph, "RolledBack") == 0 || strcmp(ph, "Failed") == 0)) {
        s->tspec = json_object_get(applied, "templateSpec");
        s->params = json_object_get(applied, "parameters");
    }
}

int sc_parse(sctx *s, serr *e) {
    sc_effective(s);
    int rc = tpl_parse(s->tspec, &s->t, e);
    if (rc == 0) sc_apply_pools(s);
    return rc;
}

const char *stamp_frontdoor_server(const resource *r) {
    const char *sv = json_string_value(json_object_get(r->spec, "frontdoorServer"));
    return sv && *sv ? sv : r->name;
}

/* spec.pools: an operator's pool sizes, over the template's. */
void sc_apply_pools(sctx *s) {
    json_t *pools = json_object_get(s->r.spec, "pools");
    if (!json_is_object(pools)) return;
    for (int i = 0; i < s->t.nsteps; i++) {
        tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS) continue;
        json_t *v = json_object_get(pools, tpl_pool_names[st->pool]);
        if (!json_is_integer(v)) continue;
        int64_t n = json_integer_value(v);
        st->replicas = (int)(n < 0 ? 0 : n > TPL_MAX_REPLICAS ? TPL_MAX_REPLICAS : n);
    }
}

void sc_step_hash(const sctx *s, const tpl_step *st, char out[SC_HASH_LEN]) {
    /* What the process is started from, in one canonical text. */
    json_t *id = json_pack("{s:s,s:O?,s:O?,s:I,s:I,s:O?}", "step", st->name, "command", st->command, "env",
                           st->env, "cpu", (json_int_t)st->cpu_millis, "memory", (json_int_t)st->memory_bytes,
                           "parameters", s->params);
    char *txt = id ? json_dumps(id, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char hex[65];
    sha256_hex(txt ? txt : st->name, txt ? strlen(txt) : strlen(st->name), hex);
    free(txt);
    json_decref(id);
    str_copy(out, SC_HASH_LEN, hex); /* its first 12 digits */
}

/* ---- the slots an update works on ---- */

static json_t *inflight_of(const sctx *s, int pool) {
    json_t *upd = json_object_get(s->r.status, "update");
    return json_object_get(json_object_get(upd, "inflight"), tpl_pool_names[pool]);
}

bool sc_update_owns(const sctx *s, const tpl_step *st, int idx) {
    json_t *f = inflight_of(s, st->pool);
    return f && strcmp(jstr(f, "step", ""), st->name) == 0 && jint(f, "idx", -1) == idx;
}

bool sc_update_promoted(const sctx *s, const tpl_step *st, int idx) {
    return sc_update_owns(s, st, idx) && jint(inflight_of(s, st->pool), "promotedMs", 0) > 0;
}

void sc_retire_replica(sctx *s, const tpl_step *st, int idx, const rt_proc *p, const char *hash) {
    log_info("stamp %s: stopping replica %s pid %d (replaced)", s->name, p->unit, (int)p->pid);
    sc_stop_proc(s, p);
    char owner[RES_NAME_MAX + 128];
    if (snprintf(owner, sizeof(owner), "%s/%s/%d@%s", s->name, st->name, idx, hash) < (int)sizeof(owner))
        store_ports_release(s->c->st, owner, NULL);
}

/* ---- the gate: a new replica answers its health path ---- */

typedef struct gate_run {
    char url[512];
    int64_t timeout_ms;
} gate_run;

static int gate_job(void *arg, json_t **result, serr *e) {
    (void)e;
    gate_run *g = arg;
    httpc_req rq = {.url = g->url, .timeout_ms = g->timeout_ms};
    long status = 0;
    sbuf body;
    bool ok = httpc_do(&rq, &status, &body, NULL) == 0;
    if (ok) sbuf_free(&body);
    *result = json_pack("{s:b,s:i}", "ok", ok && status >= 200 && status < 300, "status", (int)status);
    return 0;
}

/* One probe of the new replica: *verdict 1 passed, 0 not yet, -1 a probe
 * is under way. */
static int gate_probe(sctx *s, const tpl_step *st, json_t *f, int port, int *verdict, serr *e) {
    *verdict = -1;
    if (!st->health) {
        /* Nothing to ask: alive for a moment is ready. */
        *verdict = wall_age_ms(jint(f, "startedMs", 0)) >= NONHTTP_READY_MS;
        return 0;
    }
    gate_run *g = calloc(1, sizeof(*g));
    if (g == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    snprintf(g->url, sizeof(g->url), "http://127.0.0.1:%d%s", port, s->t.health_path);
    g->timeout_ms = s->c->cfg->probe_timeout_ms;
    char key[JOBS_KEY_MAX];
    snprintf(key, sizeof(key), "Stamp/%s/gate/%s/%lld", s->name, st->name, (long long)jint(f, "idx", 0));
    int state;
    json_t *res = NULL;
    int rc = sc_job(s, f, key, gate_job, g, free, &state, &res, e);
    if (rc || state != JOB_DONE) return rc;
    *verdict = sc_jbool(res, "ok");
    json_decref(res);
    return 0;
}

/* ---- the update ---- */

static const tpl_step *step_named(const sctx *s, const char *name) {
    for (int i = 0; i < s->t.nsteps; i++)
        if (s->t.steps[i].kind == TK_PROCESS && strcmp(s->t.steps[i].name, name) == 0)
            return &s->t.steps[i];
    return NULL;
}

static void record_applied(sctx *s, int64_t gen) {
    json_t *spec = s->r.spec;
    json_object_set_new(s->r.status, "applied",
                        json_pack("{s:I,s:I,s:O,s:O}", "generation", (json_int_t)gen,
                                  "templateRevision", (json_int_t)jint(spec, "templateRevision", 0),
                                  "templateSpec", json_object_get(spec, "templateSpec"),
                                  "parameters", json_object_get(spec, "parameters")
                                                   ? json_object_get(spec, "parameters")
                                                   : json_null()));
    sc_set_int(s, s->r.status, "templateRevision", jint(spec, "templateRevision", 0));
    s->dirty = true;
}

/* A failure of the update's in-flight replica: roll back (or, rolling back
 * already, give up and say so). */
static void update_failed(sctx *s, json_t *upd, const char *why) {
    const char *ph = jstr(upd, "phase", "");
    bool back = strcmp(ph, "RollingBack") == 0;
    json_object_set_new(upd, "phase", json_string(back ? "Failed" : "RollingBack"));
    json_object_set_new(upd, "message", json_string(why));
    /* A replica not yet serving is simply dropped: under the spec that
     * runs now it is outdated, and the next step stops it; its ports go
     * now (a port still bound is never leased again until it is free).
     * One that serves already is replaced back like any other. */
    const char *pool;
    json_t *f;
    json_object_foreach(json_object_get(upd, "inflight"), pool, f) {
        const char *h = jstr(f, "hash", NULL);
        char owner[RES_NAME_MAX + 128];
        if (h && jint(f, "promotedMs", 0) == 0 &&
            snprintf(owner, sizeof(owner), "%s/%s/%lld@%s", s->name, jstr(f, "step", ""),
                     (long long)jint(f, "idx", 0), h) < (int)sizeof(owner))
            store_ports_release(s->c->st, owner, NULL);
    }
    json_object_set_new(upd, "inflight", json_object());
    if (back) json_object_set_new(upd, "endedMs", json_integer(now_ms()));
    s->dirty = true;
    metrics_inc("stamp_update_failures_total", "", 1);
    sc_event(s, "Warning", back ? "UpdateRollbackFailed" : "UpdateFailed",
             back ? "the rollback failed too, replicas are left as they are: %s"
                  : "%s; rolling back to revision %lld",
             why, (long long)jint(upd, "fromRevision", 0));
    sc_want(s, 0);
}

/* Long: one in-flight slot, start -> gate -> promote -> handover, with its
 * failure paths. */
static int step_slot(sctx *s, json_t *upd, json_t *f, int pool, bool *failed, serr *e) {
    *failed = false;
    const tpl_step *st = step_named(s, jstr(f, "step", ""));
    int idx = (int)jint(f, "idx", 0);
    if (st == NULL || idx >= st->replicas) {
        /* The pool shrank under the update: nothing left to replace here. */
        json_object_del(json_object_get(upd, "inflight"), tpl_pool_names[pool]);
        s->dirty = true;
        return 0;
    }
    char hash[SC_HASH_LEN];
    sc_step_hash(s, st, hash);
    slot_procs *sl = calloc(TPL_MAX_REPLICAS, sizeof(*sl));
    if (sl == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = sc_scan_slots(s, st, hash, true, st->replicas, false, sl, e);
    if (rc < 0) goto out;
    rc = 0;
    slot_procs *p = &sl[idx];
    char why[700]; /* an event and status message: a cut is harmless */
    if (!p->cur) {
        if (jint(f, "startedMs", 0) > 0) {
            snprintf(why, sizeof(why), "new replica %s-%d exited before it was ready (see its log)",
                     st->name, idx);
            update_failed(s, upd, why);
            *failed = true;
            goto out;
        }
        /* The slot is the update's before the replica exists: after a
         * crash right after the spawn, the new replica is found, owned
         * and gated, never taken for one that replaced the old. */
        if (!sc_jbool(f, "spawning")) {
            json_object_set_new(f, "spawning", json_true());
            json_object_set_new(f, "hash", json_string(hash));
            s->dirty = true;
            if ((rc = sc_save(s, e))) goto out;
        }
        if ((rc = sc_spawn_replica(s, st, idx, hash, e))) {
            str_fmt_cut(why, sizeof(why), "new replica %s-%d: %s", st->name, idx, e->msg);
            serr_clear(e);
            rc = 0;
            update_failed(s, upd, why);
            *failed = true;
            goto out;
        }
        json_object_set_new(f, "startedMs", json_integer(wall_stamp_ms()));
        json_object_set_new(f, "hash", json_string(hash));
        s->dirty = true;
        sc_want(s, 200);
        goto out;
    }
    if (jint(f, "startedMs", 0) == 0) { /* spawned just before a crash */
        json_object_set_new(f, "startedMs", json_integer(wall_stamp_ms()));
        s->dirty = true;
    }
    int64_t promoted = jint(f, "promotedMs", 0);
    if (promoted == 0) {
        if (wall_age_ms(jint(f, "startedMs", 0)) > s->c->cfg->update_replica_timeout_ms) {
            char d[32];
            snprintf(why, sizeof(why), "new replica %s-%d not healthy after %s", st->name, idx,
                     fmt_duration(s->c->cfg->update_replica_timeout_ms, d, sizeof(d)));
            update_failed(s, upd, why);
            *failed = true;
            goto out;
        }
        int ports[TPL_MAX_PORTS] = {0}, verdict;
        if ((rc = sc_replica_ports(s, st, idx, hash, ports, e))) goto out;
        if ((rc = gate_probe(s, st, f, ports[0], &verdict, e)) || verdict < 0) goto out;
        int64_t passes = verdict ? jint(f, "passes", 0) + 1 : 0;
        sc_set_int(s, f, "passes", passes);
        if (passes < (st->health ? GATE_PASSES : 1)) {
            sc_want(s, 200);
            goto out;
        }
        json_object_set_new(f, "promotedMs", json_integer(wall_stamp_ms()));
        s->dirty = true;
        if (s->t.endpoint_step >= 0 && &s->t.steps[s->t.endpoint_step] == st && idx == 0) {
            /* The front door follows the endpoint (sc_active applies it). */
            char ep[64];
            snprintf(ep, sizeof(ep), "127.0.0.1:%d", ports[0]);
            sc_set_str(s, s->r.status, "endpoint", ep);
        }
        sc_event(s, "Normal", "ReplicaReady", "new replica %s-%d passed its gate and serves", st->name, idx);
        sc_want(s, HANDOVER_MS);
        goto out;
    }
    if (s->t.endpoint_step >= 0 && &s->t.steps[s->t.endpoint_step] == st && idx == 0 &&
        traffic_enabled(s->c->tr) && sc_frontdoor_owner(s) &&
        strcmp(jstr(s->r.status, "frontdoorEndpoint", ""), jstr(s->r.status, "endpoint", "")) != 0) {
        /* The old replica goes only once HAProxy has the new address. */
        json_object_set_new(f, "promotedMs", json_integer(wall_stamp_ms()));
        s->dirty = true;
        sc_want(s, 200);
        goto out;
    }
    if (wall_age_ms(promoted) < HANDOVER_MS) {
        sc_want(s, HANDOVER_MS - wall_age_ms(promoted));
        goto out;
    }
    for (int k = 0; k < p->nold; k++) sc_retire_replica(s, st, idx, &p->old[k], p->oldhash[k]);
    json_object_del(json_object_get(upd, "inflight"), tpl_pool_names[st->pool]);
    sc_set_int(s, upd, "replaced", jint(upd, "replaced", 0) + 1);
    metrics_inc("stamp_update_replicas_replaced_total", "", 1);
    sc_want(s, 0);
out:
    free(sl);
    return rc;
}

/* The first slot of pool (-1: any) whose replica runs another spec, or
 * NULL; *count gets how many such slots there are.  A slot where a replica
 * of the current spec runs beside others that no update is working on
 * (the new side of an update rolled back, or a crash between a switch and
 * its handover) loses the others here. */
static const tpl_step *next_outdated(sctx *s, int pool, int *idx_out, int *count, serr *e) {
    const tpl_step *found = NULL;
    *count = 0;
    slot_procs *sl = calloc(TPL_MAX_REPLICAS, sizeof(*sl));
    if (sl == NULL) return NULL;
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS || (pool >= 0 && st->pool != pool)) continue;
        char hash[SC_HASH_LEN];
        sc_step_hash(s, st, hash);
        if (sc_scan_slots(s, st, hash, false, st->replicas, false, sl, e) < 0) break;
        for (int idx = 0; idx < st->replicas; idx++) {
            if (sl[idx].cur && sl[idx].nold > 0 && !sc_update_owns(s, st, idx)) {
                for (int k = 0; k < sl[idx].nold; k++)
                    sc_retire_replica(s, st, idx, &sl[idx].old[k], sl[idx].oldhash[k]);
                continue;
            }
            if (sl[idx].cur || sl[idx].nold == 0) continue;
            (*count)++;
            if (found == NULL) {
                found = st;
                *idx_out = idx;
            }
        }
    }
    free(sl);
    return found;
}

static void update_start(sctx *s, int64_t gen) {
    json_t *applied = json_object_get(s->r.status, "applied");
    int64_t from = jint(applied, "templateRevision", 0), to = jint(s->r.spec, "templateRevision", 0);
    json_t *upd = json_pack("{s:I,s:s,s:I,s:I,s:i,s:I,s:o}", "generation", (json_int_t)gen, "phase",
                            "Progressing", "fromRevision", (json_int_t)from, "toRevision",
                            (json_int_t)to, "replaced", 0, "startedMs", (json_int_t)now_ms(),
                            "inflight", json_object());
    json_object_set_new(s->r.status, "update", upd);
    int idx, total;
    next_outdated(s, -1, &idx, &total, NULL);
    sc_set_int(s, upd, "total", total);
    s->dirty = true;
    metrics_inc("stamp_updates_total", "", 1);
    sc_event(s, "Normal", "UpdateStarted",
             "application update %lld: revision %lld -> %lld, replicas replaced one at a time per pool",
             (long long)gen, (long long)from, (long long)to);
}

static void update_end(sctx *s, json_t *upd) {
    bool back = strcmp(jstr(upd, "phase", ""), "RollingBack") == 0;
    json_object_set_new(upd, "phase", json_string(back ? "RolledBack" : "Complete"));
    json_object_set_new(upd, "endedMs", json_integer(now_ms()));
    json_object_del(upd, "inflight");
    s->dirty = true;
    if (back) {
        sc_event(s, "Warning", "UpdateRolledBack", "back on revision %lld: %s",
                 (long long)jint(upd, "fromRevision", 0), jstr(upd, "message", ""));
        return;
    }
    record_applied(s, jint(upd, "generation", 0));
    sc_event(s, "Normal", "UpdateComplete", "revision %lld runs on every replica (%lld replaced)",
             (long long)jint(upd, "toRevision", 0), (long long)jint(upd, "replaced", 0));
}

/* The step called name in a template spec, or NULL. */
static json_t *step_json(json_t *tspec, const char *name) {
    size_t i, k;
    json_t *ph, *st;
    json_array_foreach(json_object_get(tspec, "phases"), i, ph) {
        json_array_foreach(json_object_get(ph, "steps"), k, st) {
            if (strcmp(jstr(st, "name", ""), name) == 0) return st;
        }
    }
    return NULL;
}

/* Exec steps of the application whose command the update changes run
 * first, in template order, each once (its progress in
 * status.update.exec); rolling back, the command that ran before runs
 * again.  *busy while one runs; a failure rolls the update back (or, in a
 * rollback, ends it Failed). */
static int update_exec(sctx *s, json_t *upd, bool *busy, bool *failed, serr *e) {
    *busy = *failed = false;
    bool back = strcmp(jstr(upd, "phase", ""), "RollingBack") == 0;
    json_t *was = json_object_get(json_object_get(s->r.status, "applied"), "templateSpec");
    json_t *want = json_object_get(s->r.spec, "templateSpec");
    json_t *ex = jchild(upd, back ? "rollbackExec" : "exec");
    char tag[40];
    snprintf(tag, sizeof(tag), "%s%lld", back ? "rollback" : "update", (long long)jint(upd, "generation", 0));
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_EXEC) continue;
        json_t *a = step_json(was, st->name), *b = step_json(want, st->name);
        if (json_equal(json_object_get(a, "run"), json_object_get(b, "run"))) continue;
        json_t *prog = jchild(ex, st->name);
        if (strcmp(jstr(prog, "state", ""), "Done") == 0) continue;
        int result;
        int rc = sc_exec_follow(s, st, st->run, tag, prog, &result, e);
        if (rc) return rc;
        if (result == RUN_RUNNING) {
            *busy = true;
            return 0;
        }
        if (result == RUN_FAILED) {
            char why[300];
            str_fmt_cut(why, sizeof(why), "step %s: %s (stampctl logs %s --step %s)", st->name,
                        jstr(prog, "message", "command failed"), s->name, st->name);
            update_failed(s, upd, why);
            *failed = true;
            return 0;
        }
        sc_event(s, "Normal", "UpdateStepRun", "step %s: its %s command ran", st->name,
                 back ? "previous" : "new");
    }
    return 0;
}

int sc_update_step(sctx *s, serr *e) {
    json_t *st = s->r.status;
    int64_t g = jint(s->r.spec, "updateGeneration", 0);
    if (!json_is_object(json_object_get(st, "applied"))) record_applied(s, g);
    json_t *upd = json_object_get(st, "update");
    if (g != jint(json_object_get(st, "applied"), "generation", 0) && jint(upd, "generation", -1) != g) {
        update_start(s, g);
        upd = json_object_get(st, "update");
    }
    const char *ph = jstr(upd, "phase", "");
    if (strcmp(ph, "Progressing") != 0 && strcmp(ph, "RollingBack") != 0) return 0;
    bool running, failed;
    int rc = update_exec(s, upd, &running, &failed, e);
    if (rc || running || failed) return rc;
    int busy = 0;
    for (int pool = 0; pool < POOL_N && rc == 0; pool++) {
        json_t *f = inflight_of(s, pool);
        if (f == NULL) {
            int idx = 0, left;
            const tpl_step *stp = next_outdated(s, pool, &idx, &left, e);
            if (stp == NULL) continue;
            f = json_pack("{s:s,s:i}", "step", stp->name, "idx", idx);
            json_object_set_new(jchild(upd, "inflight"), tpl_pool_names[pool], f);
            s->dirty = true;
        }
        busy++;
        if ((rc = step_slot(s, upd, f, pool, &failed, e)) || failed) break;
    }
    if (rc == 0 && busy == 0) update_end(s, upd);
    return rc;
}

int sc_active_changes(sctx *s, serr *e) {
    int rc = sc_scale_pools(s, e);
    return rc ? rc : sc_update_step(s, e);
}

/* ---- pool sizes ---- */

int sc_scale_pools(sctx *s, serr *e) {
    /* Per pool, the replicas of all its steps: it changes whenever one
     * step's count does. */
    json_t *applied = jchild(s->r.status, "poolsApplied");
    int want[POOL_N] = {0};
    bool seen[POOL_N] = {false};
    for (int i = 0; i < s->t.nsteps; i++) {
        const tpl_step *st = &s->t.steps[i];
        if (st->kind != TK_PROCESS) continue;
        want[st->pool] += st->replicas;
        seen[st->pool] = true;
    }
    for (int p = 0; p < POOL_N; p++) {
        if (!seen[p]) continue;
        json_t *have = json_object_get(applied, tpl_pool_names[p]);
        if (have == NULL) { /* first look: what the stamp was created with */
            sc_set_int(s, applied, tpl_pool_names[p], want[p]);
            continue;
        }
        if (json_integer_value(have) == want[p]) continue;
        int started = 0;
        for (int i = 0; i < s->t.nsteps; i++) {
            const tpl_step *st = &s->t.steps[i];
            if (st->kind != TK_PROCESS || st->pool != p) continue;
            int alive, n;
            int rc = sc_ensure_step(s, st, st->replicas, &alive, &n, e);
            if (rc) return rc;
            started += n;
        }
        sc_event(s, "Normal", "PoolScaled", "pool %s: %lld -> %d replica(s) (%d started)",
                 tpl_pool_names[p], (long long)json_integer_value(have), want[p], started);
        sc_set_int(s, applied, tpl_pool_names[p], want[p]);
        hc_reset(s->name); /* new replicas are probed afresh */
    }
    return 0;
}

/* ---- the front-door server ---- */

/* A stamp serves through a shared server while it is Active and meant to
 * stay so.  Its health is not asked: an Active stamp whose checks fail
 * takes its server out of rotation itself, as any stamp does, and a
 * predecessor taking the server back at every blip would move the
 * tenants back and forth. */
static bool serves(const resource *r, const char *server) {
    return strcmp(stamp_frontdoor_server(r), server) == 0 && phase_of(&stamp_fsm, r) == SP_ACTIVE &&
           strcmp(jstr(r->spec, "desired", "active"), "active") == 0;
}

/* Reads stamp name into out: true when it exists. */
static bool peer(sctx *s, const char *name, resource *out) {
    return store_get(s->c->st, "Stamp", name, out, NULL) == 0;
}

/* A stamp drives its front-door server unless it shares it.  A rollout's
 * replacement takes over its predecessor's server (the same place on the
 * consistent-hash ring, so tenants move once); who drives it is decided
 * afresh on every reconcile from both stamps' records, never remembered:
 *   the predecessor, until its successor serves (Active, meant to stay
 *   so), and again whenever the successor stops serving while the
 *   predecessor is still there;
 *   the successor, while it serves, and alone once the predecessor is
 *   Deleted or gone. */
bool sc_frontdoor_owner(sctx *s) {
    const char *next = json_string_value(json_object_get(s->r.spec, "replacedBy"));
    const char *prev = json_string_value(json_object_get(s->r.spec, "replaces"));
    bool own = true;
    resource n;
    resource_init(&n);
    if (next && peer(s, next, &n) && serves(&n, s->server)) own = false;
    resource_free(&n);
    if (own && strcmp(s->server, s->name) != 0 && !serves(&s->r, s->server) && prev) {
        resource p;
        resource_init(&p);
        own = !peer(s, prev, &p) || phase_of(&stamp_fsm, &p) == SP_DELETED;
        resource_free(&p);
    }
    /* Events when it changes hands (the flag only keeps them to one). */
    bool was = json_object_get(s->r.status, "frontdoorHandedTo") != NULL;
    if (next && !own && !was) {
        json_object_set_new(s->r.status, "frontdoorHandedTo", json_string(next));
        s->dirty = true;
        sc_event(s, "Normal", "FrontDoorHandedOver", "front-door server %s now serves %s", s->server, next);
    } else if (own && was) {
        json_object_del(s->r.status, "frontdoorHandedTo");
        s->dirty = true;
        sc_event(s, "Warning", "FrontDoorReclaimed", "front-door server %s serves %s again: %s does not serve",
                 s->server, s->name, next ? next : "its successor");
    }
    return own;
}
