/*
 * draining.c - Draining: out of the front door's balancing, existing
 * sessions and jobs finish, then Ready (or Deleting, for a delete); limits
 * force it.  Decision: decide_draining.
 */
#include <stdio.h>
#include <string.h>

#include "stamp/internal.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/wallclock.h"

void sc_drain_limits(sctx *s, json_t *dr, int64_t *conn, int64_t *jobs, int64_t *total) {
    /* A grace period given while draining (the intent) wins over the one
     * the drain started with. */
    int64_t grace = s->in.drain.grace_ms;
    if (grace <= 0) grace = jint(dr, "gracePeriodMs", 0);
    *conn = grace > 0 ? grace : s->c->cfg->drain_connections_timeout_ms;
    *jobs = grace > 0 ? grace : s->c->cfg->drain_jobs_timeout_ms;
    *total = grace > 0 ? grace : s->c->cfg->drain_total_timeout_ms;
}

/* Entering Draining: the drain's record, which generation of the request
 * it answers (a --force of that generation is acted on once), its target. */
void sc_enter_draining(sctx *s, int from) {
    (void)from;
    bool del = s->in.desired == SD_DELETED;
    json_t *dr = json_object();
    json_object_set_new(dr, "startedMs", json_integer(wall_stamp_ms()));
    json_object_set_new(dr, "target", json_string(del ? "Deleting" : "Ready"));
    json_object_set_new(dr, "gracePeriodMs", json_integer(s->in.drain.grace_ms));
    json_object_set_new(dr, "requestGeneration", json_integer(s->in.drain.generation));
    /* A --force asked together with the drain is this generation's. */
    json_object_set_new(dr, "forceGeneration",
                        json_integer(s->in.drain.force ? 0 : s->in.drain.generation));
    if (json_object_get(s->r.status, "recoveryHold")) json_object_set_new(dr, "reason", json_string("recovery"));
    json_object_set_new(s->r.status, "drain", dr);
}

/* The message of the change into Draining says what follows and the limits. */
static void drain_message(sctx *s, char *msg, size_t len) {
    int64_t c, j, t;
    sc_drain_limits(s, NULL, &c, &j, &t);
    char a[32], b[32], d[32];
    snprintf(msg, len, "then %s; limits: connections %s, jobs %s, total %s",
             s->in.desired == SD_DELETED ? "delete" : "standby", fmt_duration(c, a, sizeof(a)),
             fmt_duration(j, b, sizeof(b)), fmt_duration(t, d, sizeof(d)));
}

int sc_start_drain(sctx *s, const char *reason, serr *e) {
    char msg[200];
    drain_message(s, msg, sizeof(msg));
    return sc_change(s, SP_DRAINING, reason, msg, e);
}

static int finish_drain(sctx *s, const blockers *b, int to, const char *reason, bool forced,
                        const char *why, serr *e) {
    json_t *dr = jchild(s->r.status, "drain");
    /* Connections open at the end: what HAProxy still carries, or what the
     * workload counts when more (clients that came around the front door). */
    int64_t fd = b->fd_sessions + b->fd_queue;
    int64_t conns = fd > b->connections ? fd : b->connections;
    if (forced && traffic_enabled(s->c->tr) && sc_frontdoor_owner(s)) {
        serr e2 = {0};
        if (traffic_shutdown_sessions(s->c->tr, s->server, &e2) != 0)
            log_warnx("stamp %s: shutdown sessions: %s", s->name, e2.msg);
    }
    int64_t took = wall_age_ms(jint(dr, "startedMs", 0));
    json_object_set_new(dr, "endedMs", json_integer(now_ms()));
    json_object_set_new(dr, "forced", json_boolean(forced));
    json_object_del(dr, "frontdoorError"); /* a wait's reason, not the end's */
    json_object_set_new(dr, "droppedConnections", json_integer(forced ? conns : 0));
    json_object_set_new(dr, "droppedJobs", json_integer(forced ? b->jobs : 0));
    if (forced) {
        json_object_set_new(dr, "forceGeneration", json_integer(s->in.drain.generation));
        metrics_inc("stamp_drain_dropped_total", "", (double)(conns + b->jobs));
        sc_event(s, "Warning", "DrainForced", "%s: dropping %lld connection(s) and %lld job(s)", why,
                 (long long)conns, (long long)b->jobs);
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "%s%s", forced ? "forced: " : "drained", forced ? why : "");
    sc_frontdoor(s, TR_MAINT);
    int rc = sc_change(s, to, reason, msg, e);
    if (rc == 0 && to == SP_READY)
        metrics_observe("stamp_drain_duration", "", (double)took / 1000.0);
    return rc;
}

static int observe(sctx *s, json_t *dr, blockers *b, draining_world *w, bool *ready, serr *e) {
    int rc = sc_scrape_blockers(s, dr, b, ready, e);
    if (rc || !*ready) return rc;
    w->desired = s->in.desired;
    /* Force: a --force of a request generation not yet forced, or a
     * delete --force. */
    w->force = (s->in.drain.force && s->in.drain.generation > jint(dr, "forceGeneration", 0)) ||
               (s->in.desired == SD_DELETED && s->in.delete_force);
    w->for_delete = strcmp(jstr(dr, "target", "Ready"), "Deleting") == 0;
    w->connections = b->connections + b->fd_sessions + b->fd_queue;
    w->jobs = b->jobs;
    /* HAProxy stopped or hung: its sessions and queue are unknown, or the
     * server may not be in drain yet (still taking new requests).  Either
     * way the drain is not done; its limits still apply. */
    w->frontdoor_unknown = false; /* the successor's, or no front door */
    if (traffic_enabled(s->c->tr) && sc_frontdoor_owner(s) && jstr(s->r.status, "endpoint", NULL)) {
        bool in_drain = strcmp(jstr(s->r.status, "frontdoor", ""), "drain") == 0;
        w->frontdoor_unknown = !b->fd_known || !in_drain;
        if (b->fd_known && !in_drain) str_copy(b->fd_error, sizeof(b->fd_error), "server not in drain yet");
    }
    w->elapsed_ms = wall_age_ms(jint(dr, "startedMs", 0));
    sc_drain_limits(s, dr, &w->limit_conn_ms, &w->limit_jobs_ms, &w->limit_total_ms);
    return 0;
}

static int act(sctx *s, json_t *dr, const blockers *b, const draining_world *w, decision d, int why,
               serr *e) {
    char buf[32], text[128];
    switch (why) {
    case DRW_FORCE: snprintf(text, sizeof(text), "--force"); break;
    case DRW_TOTAL:
        snprintf(text, sizeof(text), "drain limit of %s passed",
                 fmt_duration(w->limit_total_ms, buf, sizeof(buf)));
        break;
    case DRW_CONNECTIONS:
        snprintf(text, sizeof(text), "connections still open after %s",
                 fmt_duration(w->limit_conn_ms, buf, sizeof(buf)));
        break;
    case DRW_JOBS:
        snprintf(text, sizeof(text), "jobs still running after %s",
                 fmt_duration(w->limit_jobs_ms, buf, sizeof(buf)));
        break;
    default: text[0] = '\0';
    }
    if (d.act == DR_FORCE || d.act == DR_FINISH)
        return finish_drain(s, b, d.to, d.reason, d.act == DR_FORCE, text, e);
    int64_t t0 = jint(dr, "startedMs", 0);
    sc_set_int(s, dr, "connections", b->connections);
    sc_set_int(s, dr, "jobs", b->jobs);
    if (b->fd_known) {
        sc_set_int(s, dr, "frontdoorSessions", b->fd_sessions);
        sc_set_int(s, dr, "frontdoorQueue", b->fd_queue);
    }
    if (w->frontdoor_unknown) {
        sc_set_str(s, dr, "frontdoorError", b->fd_error[0] ? b->fd_error : "front door unknown");
    } else if (json_object_del(dr, "frontdoorError") == 0) {
        s->dirty = true;
    }
    sc_set_int(s, dr, "deadlineConnectionsMs", t0 + w->limit_conn_ms);
    sc_set_int(s, dr, "deadlineJobsMs", t0 + w->limit_jobs_ms);
    sc_set_int(s, dr, "deadlineTotalMs", t0 + w->limit_total_ms);
    sc_want(s, s->c->cfg->drain_poll_ms);
    return sc_save(s, e);
}

/* Observe, decide, act; at least min_elapsed into the drain (its timeout). */
static int drain_step(sctx *s, json_t *dr, int64_t min_elapsed, serr *e) {
    blockers b;
    draining_world w = {0};
    bool ready;
    int rc = observe(s, dr, &b, &w, &ready, e);
    if (rc || !ready) return rc ? rc : sc_save(s, e);
    if (w.elapsed_ms < min_elapsed) w.elapsed_ms = min_elapsed;
    int why;
    decision d = decide_draining(&w, &why);
    return act(s, dr, &b, &w, d, why, e);
}

int sc_draining(sctx *s, serr *e) {
    json_t *dr = jchild(s->r.status, "drain");
    if (s->in.desired == SD_ACTIVE)
        return sc_change(s, SP_ACTIVE, "DrainCancelled", "cancelled by activate", e);
    if (s->in.desired == SD_DELETED) sc_set_str(s, dr, "target", "Deleting");
    /* Out of the balancing, existing sessions finish (HAProxy "drain"). */
    sc_frontdoor(s, TR_DRAIN);
    return drain_step(s, dr, 0, e);
}

/* The drain's total limit passed (the table's Draining timeout): forced
 * toward its own target, Ready or Deleting. */
int sc_draining_timeout(sctx *s, const fsm_timeout *t, int64_t limit, serr *e) {
    (void)t;
    json_t *dr = jchild(s->r.status, "drain");
    sc_frontdoor(s, TR_DRAIN);
    return drain_step(s, dr, limit, e);
}
