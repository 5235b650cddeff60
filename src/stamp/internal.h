/*
 * internal.h - what the files of the Stamp controller share.  Not for use
 * outside src/stamp/.
 *
 * Where each phase's code is: the table in phases.c names, for each phase,
 * the function that decides it (reconcile), what entering and leaving it
 * resets (on_enter, on_leave), and what happens when its timeout passes.
 * The decisions themselves are pure functions in decide.c (tested with a
 * fake world); the files by concern do the I/O:
 *
 *   phases.c    the table, the dispatch, the phase change, status writes
 *   creating.c  Creating (the deployment steps and health gate) and Failed
 *   serving.c   Active (health, rotation, recovery) and Ready (standby,
 *               activation)
 *   draining.c  Draining
 *   retiring.c  Deleting (the retirement steps) and Deleted (retention)
 *   backup.c    backups and archives: copy, hash, verify, rename
 *   exec.c      exec steps: variables, the persisted run of a command
 *   replicas.c  process steps: ports, replicas, the front door, scrapes
 *   checks.c    a stamp's health checks through src/health/probes.c
 *   views.c     what the API shows: health, metrics, step logs
 *   intent.c    spec <-> stamp_intent (also used by the API)
 */
#ifndef STAMP_STAMP_INTERNAL_H
#define STAMP_STAMP_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/stamp_fsm.h"
#include "core/template.h"
#include "health/health.h"
#include "reconcile/ctl.h"
#include "reconcile/fleet.h"
#include "reconcile/jobs.h"
#include "runtime/runtime.h"
#include "stamp/decide.h"
#include "stamp/intent.h"
#include "stamp/stamp_ctl.h"
#include "traffic/traffic.h"
#include "util/yamljson.h"

#define SC_MAX_VARS 96
#define SC_EXEC_POLL_MS 100
#define SC_MAX_REPLICA_REFS 128

enum scale_mode { SCALE_FULL, SCALE_STANDBY, SCALE_NONE };

/* One reconcile of one stamp.  Heap-allocated: the template and the health
 * checks are large. */
typedef struct sctx {
    ctl_ctx *c;
    resource r;
    tpl t;
    stamp_intent in; /* what the API asked for (spec), parsed once */
    int phase;
    char name[RES_NAME_MAX];
    char dir[PATH_MAX];
    int64_t requeue;   /* -1: nothing to do until something changes */
    bool dirty;        /* status changed and must be written */
    hc_set checks;     /* loaded by sc_load_checks */
    bool checks_loaded;
    bool in_job;       /* a copy running on the job pool: it may block */
    json_t *tspec;     /* the template spec it runs (sc_effective), borrowed */
    json_t *params;    /* its parameters, borrowed; may be NULL */
    char server[RES_NAME_MAX]; /* its front-door server (spec.frontdoorServer or its name) */
} sctx;

/* ---- phases.c: status writes and the phase change ---- */
/* A context for stamp name with its record read (*rc: store_get's answer);
 * NULL only when out of memory.  sc_free releases it. */
sctx *sc_load(ctl_ctx *c, const char *name, int *rc, serr *e);
void sc_free(sctx *s);
void sc_want(sctx *s, int64_t ms);
void sc_set_int(sctx *s, json_t *o, const char *key, int64_t v);
void sc_set_str(sctx *s, json_t *o, const char *key, const char *v);
void sc_event(sctx *s, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int sc_save(sctx *s, serr *e);
/* The one way a stamp changes phase: the left phase's on_leave, the new
 * phase's on_enter, then phase_change() (table check, write, event, metrics). */
int sc_change(sctx *s, int to, const char *reason, const char *msg, serr *e);
/* The configured timeout of the current phase: its table row once passed
 * (the caller takes row->target with row->reason), else NULL with a timer
 * armed for when it will. */
const fsm_timeout *sc_timeout_passed(sctx *s, int64_t *limit_ms);
static inline bool sc_jbool(json_t *o, const char *key) {
    return json_is_true(json_object_get(o, key));
}

/* ---- the phases (one file each, see above) ---- */
int sc_creating(sctx *s, serr *e);
int sc_failed(sctx *s, serr *e);
int sc_active(sctx *s, serr *e);
int sc_ready(sctx *s, serr *e);
int sc_draining(sctx *s, serr *e);
int sc_deleting(sctx *s, serr *e);
int sc_deleted(sctx *s, serr *e);
/* Timeout handlers: Creating's says what it waited for; Draining's forces
 * the drain toward its target. */
int sc_creating_timeout(sctx *s, const fsm_timeout *t, int64_t limit, serr *e);
int sc_draining_timeout(sctx *s, const fsm_timeout *t, int64_t limit, serr *e);
/* on_enter: what entering a phase sets up or resets. */
void sc_enter_creating(sctx *s, int from);
void sc_enter_active(sctx *s, int from);
void sc_enter_draining(sctx *s, int from);
void sc_enter_deleted(sctx *s, int from);
void sc_leave_creating(sctx *s, int to);
/* Draining: the limits of the running drain (a grace period in the
 * intent wins over the one it started with). */
/* Active -> Draining, the message saying what follows and the limits. */
int sc_start_drain(sctx *s, const char *reason, serr *e);
void sc_drain_limits(sctx *s, json_t *dr, int64_t *conn, int64_t *jobs, int64_t *total);
/* Failed/Ready: a backup asked for with `stampctl backup`. */
int sc_pending_backup(sctx *s, serr *e);
/* Creating: the step progress array of status, built from the template. */
json_t *sc_steps_status(sctx *s);

/* ---- exec.c ---- */
typedef struct sc_vars {
    int n;
    char kv[SC_MAX_VARS][512]; /* "NAME=value" */
} sc_vars;
/* A fresh set with the stamp's variables (STAMP_NAME, ..., parameters). */
sc_vars *sc_vars_new(sctx *s);
void sc_vars_free(sc_vars *v);
void sc_var_set(sc_vars *v, const char *name, const char *value);
/* ${NAME} expansion; unknown names are a configuration error. */
int sc_expand(const sc_vars *v, const char *in, char *out, size_t len, serr *e);
/* The step's env on top of v, each value expanded. */
int sc_vars_step_env(sc_vars *v, const tpl_step *st, serr *e);
/* NULL-terminated array of v's entries (points into v; free() it). */
const char **sc_vars_envp(const sc_vars *v);

enum { RUN_RUNNING, RUN_OK, RUN_FAILED };
/* Runs (or follows) an exec command for tag ("create"/"delete"); prog
 * carries state and run id, persisted before anything starts. */
int sc_exec_follow(sctx *s, const tpl_step *stp, const char *cmd, const char *tag, json_t *prog,
                   int *result, serr *e);

/* ---- update.c: application updates, pool sizes, the front-door server ---- */
#define SC_HASH_LEN 13 /* 12 hex digits */
#define SLOT_OLD_MAX 3
/* What runs in one replica slot of a step. */
typedef struct slot_procs {
    bool cur;    /* a replica of the spec that runs now */
    rt_proc curp;
    int nold;    /* replicas of another spec */
    rt_proc old[SLOT_OLD_MAX];
    char oldhash[SLOT_OLD_MAX][SC_HASH_LEN];
} slot_procs;
/* Which template spec and parameters the stamp runs (the spec's, or
 * during and after a rollback the one that ran before), and its server. */
void sc_effective(sctx *s);
/* sc_effective, the template parsed into s->t, the pools applied. */
int sc_parse(sctx *s, serr *e);
/* spec.pools over the parsed template's replica counts. */
void sc_apply_pools(sctx *s);
/* The identity of what a replica of st runs (command, env, resources,
 * parameters), for its unit name and port lease. */
void sc_step_hash(const sctx *s, const tpl_step *st, char out[SC_HASH_LEN]);
/* An update is replacing slot (st, idx) / its new replica serves already. */
bool sc_update_owns(const sctx *s, const tpl_step *st, int idx);
bool sc_update_promoted(const sctx *s, const tpl_step *st, int idx);
/* Stops a replaced replica and releases its ports. */
void sc_retire_replica(sctx *s, const tpl_step *st, int idx, const rt_proc *p, const char *hash);
/* Active: the next move of an application update, if one is asked or under way. */
int sc_update_step(sctx *s, serr *e);
/* Active: pools resized to what the spec asks. */
int sc_scale_pools(sctx *s, serr *e);
/* Active: the operator's changes that keep a stamp Active (pool sizes,
 * then an application update's next move). */
int sc_active_changes(sctx *s, serr *e);
/* The stamp drives its front-door server (see update.c). */
bool sc_frontdoor_owner(sctx *s);

/* ---- replicas.c ---- */
typedef struct replica_ref {
    int port;
    const tpl_step *st;
    int idx;
} replica_ref;
/* The ports of replica idx of st started from the spec named hash. */
int sc_replica_ports(sctx *s, const tpl_step *st, int idx, const char *hash, int *ports, serr *e);
/* The same, only when already leased (never takes a port: for views). */
int sc_replica_ports_held(sctx *s, const tpl_step *st, int idx, const char *hash, int *ports, serr *e);
int sc_spawn_replica(sctx *s, const tpl_step *st, int idx, const char *hash, serr *e);
int sc_scan_slots(sctx *s, const tpl_step *st, const char *hash, bool fresh, int count, bool stop_extra,
                  slot_procs *slots, serr *e);
int sc_replica_want(const sctx *s, const tpl_step *st, int mode);
int sc_ensure_step(sctx *s, const tpl_step *st, int count, int *alive, int *started, serr *e);
int sc_scale_all(sctx *s, int mode, bool count_restarts, int *started_total, serr *e);
void sc_update_endpoint(sctx *s);
int sc_replicas_of(sctx *s, bool health, int mode, replica_ref *out, int max);
int sc_missing_replicas(sctx *s, int mode, char *why, size_t whylen, int *pools);
int sc_redeploy(sctx *s, serr *e);
/* Tell the front door what the stamp's server should be (retried on error). */
void sc_frontdoor(sctx *s, tr_state st);
/* Stop one process: on the job pool (or here, in a stamp job). */
void sc_stop_proc(sctx *s, const rt_proc *p);
/* Stop every process of the stamp whose unit starts with "<name>/<sub>". */
int sc_stop_units(sctx *s, const char *sub, bool create_only, int *left, serr *e);

typedef struct blockers {
    int64_t connections; /* the workload's requests in flight (else its open connections) */
    int64_t jobs;
    int unreachable;
    int64_t fd_sessions; /* HAProxy: current sessions on the stamp's server */
    int64_t fd_queue;    /* HAProxy: requests queued for it */
    bool fd_known;
    char fd_error[160];  /* why not, when the front door did not answer */
} blockers;
/* The workloads' counters by a scrape on the job pool (its id in rec.job)
 * and the front door's sessions: *ready once a scrape has answered. */
int sc_scrape_blockers(sctx *s, json_t *rec, blockers *b, bool *ready, serr *e);

/* ---- checks.c ---- */
typedef struct health_view {
    bool all_passing; /* every check Passing */
    bool failing;     /* some check Failing */
    char why[512];    /* the first check not passing, and why */
} health_view;
/* The stamp's StampHealthCheck (or the default, said in source) into s->checks. */
void sc_load_checks(sctx *s);
/* Runs the checks that are due and reads the state of all of them.  gate:
 * the stamp waits for every check to pass (Creating, an activation): a
 * check not passing yet is tried again sooner than its interval. */
void sc_eval_health(sctx *s, int mode, bool gate, health_view *h);
/* The longest interval of the checks. */
int64_t sc_longest_interval(const sctx *s);

/* ctl_job (reconcile/ctl.h) for a stamp: rec changes mark status dirty,
 * a job not done yet requeues the stamp (woken sooner when it ends). */
int sc_job(sctx *s, json_t *rec, const char *key, job_fn fn, void *arg, void (*free_arg)(void *),
           int *state, json_t **result, serr *e);
/* Work that needs the stamp itself (a redeploy: stops, then starts) on the
 * job pool: fn runs on a copy of s (in_job set, so it may block) under the
 * key "Stamp/<name>/<what>".  As sc_job otherwise. */
typedef int (*sc_stamp_fn)(sctx *copy, json_t **result, serr *e);
int sc_job_stamp(sctx *s, json_t *rec, const char *what, sc_stamp_fn fn, int *state,
                 json_t **result, serr *e);

/* ---- backup.c ---- */
/* Both run on the job pool: *state JOB_DONE when finished (the backup is
 * in status.backups, the archive in rec.archive), else the stamp waits. */
int sc_backup(sctx *s, json_t *rec, const char *why, int *state, serr *e);
int sc_archive(sctx *s, json_t *rec, int *state, serr *e);
int sc_snapshot_metrics(sctx *s, json_t *rec, const char *dir, int *state, serr *e);

/* ---- restore.c ---- */
/* Creating, before any step: a stamp with spec.restoreFrom gets the
 * backup's volumes back (a job; status.restore).  *go_on once they are in
 * place (or there is nothing to restore); a failure makes the stamp Failed. */
int sc_restore(sctx *s, bool *go_on, serr *e);

#endif
