/*
 * ns_reaper.c - the reaper: the Namespace controller (when a namespace is
 * reaped: finalized, or idle past inactivity-threshold, or a reap to
 * retry), the sweeps that hand it the due namespaces, the rescheduling
 * after a change of the threshold, and the retention of archives.
 *
 * Threading: ns_reconcile runs on the engine's workers, one key at a time,
 * and holds the namespace's lock only to read it and change its phase; a
 * reap attempt runs on the job pool and claims the namespace's reap
 * (nsi_reap_claim) for its run.
 */
#include "ns/ns_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob/blob.h"
#include "reconcile/engine.h"
#include "reconcile/jobs.h"
#include "reconcile/phase.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/yamljson.h"
#include "util/wallclock.h"

/* Progress of the current sweep, for the seed's "finished" log line. */
static pthread_mutex_t sweep_mu = PTHREAD_MUTEX_INITIALIZER;
static int sweep_pending, sweep_ok, sweep_failed;

/* How soon the controller looks again at a namespace another reap holds. */
#define NS_BUSY_REQUEUE_MS 1000

static void sweep_done(bool ok) {
    pthread_mutex_lock(&sweep_mu);
    if (sweep_pending > 0) {
        sweep_pending--;
        if (ok) sweep_ok++;
        else sweep_failed++;
        if (sweep_pending == 0)
            log_info("Cleanup worker finished: %d successful, %d failed", sweep_ok, sweep_failed);
    }
    pthread_mutex_unlock(&sweep_mu);
}


/* Under the namespace's lock: r read again, and the phase change that is
 * due (into reaping when idle past the threshold, or finalized).  *ph:
 * the phase after it. */
static int reconcile_phase(ctl_ctx *c, const char *name, resource *r, int *ph, serr *e) {
    ns_lock(name);
    int rc = store_get(c->st, NS_KIND, name, r, e);
    *ph = rc == 0 ? phase_of(&ns_fsm, r) : -1;
    int64_t now = now_ms();
    if (rc == 0 && *ph == NP_ACTIVE && r->due_ms > 0 && r->due_ms <= now) {
        char why[128], d[32];
        snprintf(why, sizeof(why), "no activity for %s",
                 fmt_duration(now - jint(r->status, "lastActivityMs", r->created_ms), d, sizeof(d)));
        if ((rc = nsi_to_reaping(c, r, "Inactive", why, e)) == 0) *ph = NP_REAPING;
    } else if (rc == 0 && *ph == NP_FINALIZED) {
        if ((rc = nsi_to_reaping(c, r, "FinalizedReap", NULL, e)) == 0) *ph = NP_REAPING;
    } else if (rc == 0 && *ph == NP_ACTIVE) {
        /* Make sure the directory exists (a crash between nsrt_create and
         * the store cannot leave the opposite, but a restore could). */
        serr ie = {0};
        nsrt_create(c, r->name, &ie);
    }
    ns_unlock(name);
    return rc;
}

/* One attempt of the reap of r (reaping), when due. */
static int reconcile_reap(ctl_ctx *c, resource *r, int64_t *requeue_ms, serr *e) {
    /* How long until a retry is due, by wallclock.h: a step of the clock
     * back must not hold it for as long. */
    int64_t left = -wall_age_ms(r->due_ms);
    if (left > 50) { /* a retry that is not due yet */
        *requeue_ms = left;
        return 0;
    }
    int64_t retry = -1;
    serr se = {0};
    int rc = nsi_reap_step(c, r, "reaper", &retry, &se);
    if (rc == SE_UNAVAIL) {
        *requeue_ms = retry;
        rc = 0;
        sweep_done(false);
    } else if (rc == 0) {
        sweep_done(true);
    } else {
        serr_set(e, rc, "%s", se.msg);
        sweep_done(false);
    }
    return rc;
}

/* The reaper's attempt at a reap, on the job pool: its uploads and
 * deletions never hold an engine worker.  The job claims the reap (a manual
 * reap running meanwhile has it: then this one does nothing), reads the
 * namespace again and runs one attempt; its end wakes the namespace, whose
 * next reconcile sees the outcome (reaped, or a retry not due yet). */
typedef struct reap_run {
    ctl_ctx *c;
    char name[RES_NAME_MAX];
} reap_run;

static int reaper_job(void *arg, json_t **result, serr *e) {
    reap_run *j = arg;
    if (!nsi_reap_claim(j->name, 0)) return 0;
    resource r;
    resource_init(&r);
    int64_t requeue = -1;
    int rc = store_get(j->c->st, NS_KIND, j->name, &r, e);
    if (rc == SE_NOTFOUND) rc = 0;
    else if (rc == 0 && phase_of(&ns_fsm, &r) == NP_REAPING) rc = reconcile_reap(j->c, &r, &requeue, e);
    resource_free(&r);
    nsi_reap_release(j->name);
    *result = json_pack("{s:I}", "requeueMs", (json_int_t)requeue);
    return rc;
}

/* The reaper's jobs by namespace, so that an attempt's error reaches the
 * engine (its backoff, then Stalled) as when it ran on the worker.
 * Bounded: past it the oldest is forgotten (its job is then unknown, and a
 * reap already done or retried later is what the store says). */
#define REAP_JOBS_MAX 1024
static pthread_mutex_t rj_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name[RES_NAME_MAX];
    uint64_t id;  /* the attempt running, 0: none */
    bool failed;  /* the last attempt failed: the next keeps the backoff */
} rj[REAP_JOBS_MAX];
static int rj_n;

static uint64_t rj_take(const char *name, bool *failed) {
    uint64_t id = 0;
    *failed = false;
    pthread_mutex_lock(&rj_mu);
    for (int i = 0; i < rj_n; i++)
        if (strcmp(rj[i].name, name) == 0) {
            id = rj[i].id;
            *failed = rj[i].failed;
            rj[i] = rj[--rj_n];
            break;
        }
    pthread_mutex_unlock(&rj_mu);
    return id;
}

static void rj_put(const char *name, uint64_t id, bool failed) {
    pthread_mutex_lock(&rj_mu);
    if (rj_n == REAP_JOBS_MAX) {
        memmove(&rj[0], &rj[1], sizeof(rj[0]) * (REAP_JOBS_MAX - 1));
        rj_n--;
    }
    str_copy(rj[rj_n].name, sizeof(rj[rj_n].name), name);
    rj[rj_n].failed = failed;
    rj[rj_n++].id = id;
    pthread_mutex_unlock(&rj_mu);
}

/* The last attempt's outcome: 1 while it runs, an error it ended with
 * (kept: the attempt after it answers the engine CTL_BACKOFF, so the delay
 * keeps growing), or 0 (*failed: the one before failed). */
static int reaper_job_outcome(ctl_ctx *c, const char *name, bool *failed, serr *e) {
    uint64_t id = rj_take(name, failed);
    if (id == 0) return 0;
    job_result res;
    int st = jobs_poll(c->jobs, id, &res);
    if (st == JOB_QUEUED || st == JOB_RUNNING) {
        rj_put(name, id, *failed);
        return 1;
    }
    int rc = 0;
    if (st == JOB_DONE && res.rc != 0) {
        rc = serr_set(e, res.rc, "%s", res.message);
        rj_put(name, 0, true);
    }
    if (st == JOB_DONE) job_result_free(&res);
    return rc;
}

/* Whether no reap of name runs now (a probe: the job claims it itself). */
static bool reap_free(const char *name) {
    if (!nsi_reap_claim(name, 0)) return false;
    nsi_reap_release(name);
    return true;
}

int ns_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    *requeue_ms = -1;
    bool failed_before = false;
    if (c->jobs) {
        int out = reaper_job_outcome(c, name, &failed_before, e);
        if (out == 1) {
            *requeue_ms = 30000; /* woken when it ends; this is the fallback */
            return 0;
        }
        if (out != 0) return out; /* the engine backs off */
    }
    resource r;
    resource_init(&r);
    int ph = -1;
    int rc = reconcile_phase(c, name, &r, &ph, e);
    if (rc == SE_NOTFOUND) rc = 0;
    else if (rc == 0 && ph == NP_REAPING) {
        int64_t left = -wall_age_ms(r.due_ms);
        char key[JOBS_KEY_MAX];
        if (left > 50) {
            *requeue_ms = left; /* a retry that is not due yet */
        } else if (c->jobs == NULL ||
                   str_fmt(key, sizeof(key), NULL, "job key", "%s/%s/reap", NS_KIND, name) != 0) {
            /* No pool (a tool or a test): the attempt runs here. */
            if (nsi_reap_claim(name, 0)) {
                rc = reconcile_reap(c, &r, requeue_ms, e);
                nsi_reap_release(name);
            } else {
                *requeue_ms = NS_BUSY_REQUEUE_MS;
            }
        } else if (!reap_free(name) || jobs_find(c->jobs, key) != 0) {
            *requeue_ms = NS_BUSY_REQUEUE_MS; /* a manual reap, or our job, runs it */
        } else {
            reap_run *j = calloc(1, sizeof(*j));
            uint64_t id;
            if (j == NULL) rc = serr_set(e, SE_NOMEM, "out of memory");
            else {
                j->c = c;
                str_copy(j->name, sizeof(j->name), name);
                rc = jobs_submit(c->jobs, key, reaper_job, j, free, ctl_job_wake, c, &id, e);
                if (rc == 0) rj_put(name, id, failed_before);
            }
            /* Woken when it ends; this is the fallback.  After a failed
             * attempt, CTL_BACKOFF keeps the engine's count of failures. */
            if (rc == 0) *requeue_ms = failed_before ? CTL_BACKOFF : 30000;
        }
    }
    resource_free(&r);
    return rc;
}

/* ---- sweeps ---- */

typedef struct sweep_arg {
    ctl_ctx *c;
    bool dry_run;
    json_t *out;
    int64_t last_due;
    char last_name[RES_NAME_MAX];
    int n;
} sweep_arg;

static int sweep_one(const resource *r, void *arg) {
    sweep_arg *s = arg;
    s->last_due = r->due_ms;
    str_copy(s->last_name, sizeof(s->last_name), r->name);
    s->n++;
    if (s->dry_run) json_array_append_new(s->out, ns_to_json(s->c, r));
    else ctl_wake(s->c, NS_KIND, r->name);
    return 0;
}

int ns_sweep(ctl_ctx *c, bool dry_run, int limit, json_t **out, serr *e) {
    sweep_arg s = {.c = c, .dry_run = dry_run, .out = dry_run ? json_array() : NULL};
    int64_t now = now_ms();
    int rc = 0;
    for (;;) {
        int want = NS_SWEEP_BATCH;
        if (limit > 0 && limit - s.n < want) want = limit - s.n;
        if (want <= 0) break;
        rc = store_list_due(c->st, NS_KIND, s.last_due, s.last_name, now, want, sweep_one, &s, e);
        if (rc < 0) break;
        if (rc < want) {
            rc = 0;
            break;
        }
        rc = 0;
    }
    if (out) *out = s.out;
    else json_decref(s.out);
    if (rc < 0) return rc;
    if (!dry_run) {
        metrics_inc("namespace_reaper_sweeps_total", "", 1);
        metrics_set("namespace_reaper_eligible", "", s.n);
        if (s.n > 0) {
            log_info("Found %d namespaces eligible for cleanup", s.n);
            pthread_mutex_lock(&sweep_mu);
            sweep_pending = s.n;
            sweep_ok = sweep_failed = 0;
            pthread_mutex_unlock(&sweep_mu);
        }
    }
    return s.n;
}

typedef struct rebase_arg {
    ctl_ctx *c;
    int n;
} rebase_arg;

static int rebase_one(const resource *r, void *arg) {
    rebase_arg *ra = arg;
    if (phase_of(&ns_fsm, r) != NP_ACTIVE) return 0;
    resource copy;
    resource_init(&copy);
    if (resource_copy(&copy, r) == 0) {
        copy.due_ms = jint(r->status, "lastActivityMs", r->created_ms) + ra->c->cfg->inactivity_threshold_ms;
        if (store_update(ra->c->st, &copy, NULL, NULL) == 0) ra->n++;
    }
    resource_free(&copy);
    return 0;
}

int ns_rebase_due(ctl_ctx *c, serr *e) {
    char want[32], *have = NULL;
    snprintf(want, sizeof(want), "%lld", (long long)c->cfg->inactivity_threshold_ms);
    int rc = store_meta_get(c->st, "ns_inactivity_threshold_ms", &have, NULL);
    bool same = rc == 0 && strcmp(have, want) == 0;
    free(have);
    if (same) return 0;
    rebase_arg ra = {.c = c};
    if (rc == 0) {
        if ((rc = store_list(c->st, NS_KIND, NULL, rebase_one, &ra, e))) return rc;
        log_info("inactivity-threshold changed: %d active namespaces rescheduled", ra.n);
    }
    return store_meta_set(c->st, "ns_inactivity_threshold_ms", want, e);
}

/* A verification runs inside one API call and reaps its own namespace at
 * the end; a verification namespace still active when a term starts
 * belongs to a call that stampd's crash (or the previous leader's) cut
 * short, and nothing would ever finalize it: it would hold its pods and
 * disk until the inactivity threshold.  It is finalized now, so the reaper
 * archives its diagnostics and reaps it as for any other. */
typedef struct orphan_arg {
    ctl_ctx *c;
    char names[16][RES_NAME_MAX];
    int n;
} orphan_arg;

static int orphan_one(const resource *r, void *arg) {
    orphan_arg *oa = arg;
    if (phase_of(&ns_fsm, r) != NP_ACTIVE || !str_has_prefix(r->name, NS_MTTC_PREFIX)) return 0;
    if (strcmp(jstr(r->labels, "purpose", ""), "mttc-verify") != 0) return 0;
    if (oa->n < (int)(sizeof(oa->names) / sizeof(oa->names[0])))
        str_copy(oa->names[oa->n++], sizeof(oa->names[0]), r->name);
    return 0;
}

int ns_finalize_orphan_verifications(ctl_ctx *c, serr *e) {
    orphan_arg *oa = calloc(1, sizeof(*oa));
    if (oa == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    oa->c = c;
    int rc;
    bool more = true;
    while (more) { /* 16 names a pass, gathered before any write */
        oa->n = 0;
        if ((rc = store_list(c->st, NS_KIND, NULL, orphan_one, oa, e))) break;
        more = oa->n == (int)(sizeof(oa->names) / sizeof(oa->names[0]));
        for (int i = 0; i < oa->n; i++) {
            resource r;
            resource_init(&r);
            serr fe = {0};
            if (store_get(c->st, NS_KIND, oa->names[i], &r, &fe) == 0 && ns_finalize(c, &r, NULL, &fe) == 0) {
                store_event ev = {.type = "Warning", .reason = "VerificationInterrupted",
                                  .message = "the MTTC verification using this namespace was cut short "
                                             "(stampd stopped); finalized so its diagnostics are archived "
                                             "and it is reaped"};
                store_event_add(c->st, NS_KIND, oa->names[i], &ev, NULL);
                log_warnx("namespace %s: its MTTC verification was cut short; finalized for the reaper",
                          oa->names[i]);
            } else {
                /* the store is failing: the next start or term tries again */
                log_warnx("namespace %s: finalizing an interrupted verification: %s", oa->names[i], fe.msg);
                more = false;
                resource_free(&r);
                break;
            }
            resource_free(&r);
        }
    }
    free(oa);
    return rc;
}

int64_t ns_retention_ms(ctl_ctx *c, const char *tenant) {
    const char *list = c->cfg->regulatory_locked_tenants;
    size_t tl = strlen(tenant);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ", ");
        if (n == tl && strncmp(p, tenant, n) == 0) return c->cfg->regulatory_retention_ms;
        p += n;
        while (*p == ',' || *p == ' ') p++;
    }
    return c->cfg->diagnostics_retention_ms;
}

static int64_t retention_cb(const char *tenant, void *arg) { return ns_retention_ms(arg, tenant); }

int ns_retention_sweep(ctl_ctx *c, serr *e) {
    int n = blob_expire(c->blobs, c->cfg->diagnostic_container, now_ms(), retention_cb, c, e);
    if (n > 0) {
        metrics_inc("namespace_archives_expired_total", "", n);
        log_info("retention: %d archived diagnostics blobs expired", n);
    }
    return n < 0 ? n : 0;
}
