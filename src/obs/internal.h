/*
 * internal.h - what the ObservabilityPlatform controller's files share:
 * its phase table, a component's rendered plan, the jobs that act on
 * processes (unit.c), and the context of one reconcile.
 */
#ifndef STAMP_OBS_INTERNAL_H
#define STAMP_OBS_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/fsm.h"
#include "obs/obs.h"
#include "runtime/runtime.h"
#include "store/store.h"

enum obs_phase { OP_PENDING, OP_INSTALLING, OP_READY, OP_FAILED, OP_UPGRADING, OP_NPHASES };
enum obs_op { OO_VIEW, OO_APPLY, OO_PAUSE, OO_RESUME, OO_DELETE, OO_NOPS };
extern const fsm_def obs_fsm;

/* A component's own states (seed 003). */
enum obs_cstate { CS_PENDING, CS_INSTALLING, CS_READY, CS_FAILED, CS_UPGRADING, CS_N };
extern const char *const obs_cstate_names[CS_N];
int obs_cstate_parse(const char *s);

#define OBS_FINALIZER "observability.synaxis.io/finalizer"

/* Error categories (seed 003), counted in observability_platform_errors_total. */
#define CAT_TRANSIENT "transient"
#define CAT_CONFIG "configuration"
#define CAT_RESOURCE "resource"
#define CAT_COMPONENT "component"

/* What one component's process is started from, rendered from the
 * catalog's version and the spec. */
typedef struct obs_plan {
    char comp[OBS_NAME_MAX];
    char version[OBS_VERSION_MAX];
    char unit[RT_UNIT_MAX];   /* obs/<platform>/<comp>@<hash> */
    char prefix[RT_UNIT_MAX]; /* obs/<platform>/<comp>@ */
    char hash[16];            /* of binary and arguments */
    char **argv;
    char *config;             /* the rendered document (text), or NULL */
    char config_hash[65];     /* of config and the copied files' names; "" without */
    char **check;             /* validates "<config_path>.new", or NULL */
    char root[512];           /* <data-dir>/observability/<platform>/<comp> */
    char confdir[560], datadir[560], logdir[560];
    char config_path[640], log_path[640];
    char files_from[16][512]; /* copied into confdir (the catalog allows 16) */
    char files_to[16][64];
    int nfiles;
    char secrets_dir[512];    /* spec.secrets are copied from here */
    char secrets[OBS_MAX_SECRETS][64];
    int nsecrets;
    char ready_url[256];
    char reload[32];
    char backup[32];
    int port;
    bool stores_data;
} obs_plan;
void obs_plan_free(obs_plan *p);

/* ---- jobs (unit.c); each runs on the job pool, never touches the store ---- */

enum obs_job_kind { OJ_ENSURE, OJ_STOP, OJ_PROBE, OJ_BACKUP, OJ_RESTORE };

typedef struct obs_job {
    int kind;
    runtime *rt;
    int grace_ms;
    int64_t wait_ms;       /* how long ENSURE waits for readiness */
    bool keep_config;      /* ENSURE: run what is on disk (a rollback) */
    bool restart;          /* ENSURE: the config changed a flag-like key */
    obs_plan p[OBS_MAX_COMP]; /* ENSURE, STOP, RESTORE: p[0]; PROBE, BACKUP: n */
    int n;
    char dir[640];         /* BACKUP, RESTORE: the backup's directory */
} obs_job;
obs_job *obs_job_new(int kind, ctl_ctx *c);
void obs_job_free(void *arg);
/* job_fn: the result is an object:
 *   ENSURE  {pid, unit, started, reloaded, ready, configHash, error}
 *   STOP    {stopped: n}
 *   PROBE   {<comp>: {alive, pid, ready, error}}
 *   BACKUP  {dir, components: [...]}
 *   RESTORE {}
 * An ENSURE whose config the component's own check rejects fails with
 * SE_INVAL (the message has the check's words); the running config is
 * left as it was. */
int obs_job_run(void *arg, json_t **result, serr *e);

/* ---- one reconcile (controller.c) ---- */

typedef struct obs_ctx {
    ctl_ctx *c;
    resource r;
    obs_spec sp;
    bool spec_ok;
    serr spec_err;
    const obs_catalog *cat;
    char dir[512];          /* <data-dir>/observability/<name> */
    int ports[OBS_MAX_COMP];/* per spec component: its port, 0 unknown */
    int64_t requeue;        /* the answer, CTL_DONE when nothing asked */
    bool dirty;             /* status changed: save */
} obs_ctx;

void obs_requeue(obs_ctx *x, int64_t ms);
/* status.components[] entry of comp (created when missing). */
json_t *obs_cstatus(obs_ctx *x, const char *comp);
void obs_cstate_set(obs_ctx *x, const char *comp, int state, const char *error);
void obs_event(obs_ctx *x, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Renders the plan of a spec component at a version (the spec's when NULL). */
int obs_plan_make(obs_ctx *x, const obs_comp_spec *cs, const char *version, obs_plan *p, serr *e);
/* Runs (or polls) the platform's one job; *state JOB_*; *res on JOB_DONE. */
int obs_work(obs_ctx *x, const char *what, const char *comp, obs_job *j, int *state, json_t **res,
             serr *e);
int obs_phase(obs_ctx *x, int to, const char *reason, const char *message, serr *e);
int obs_fail(obs_ctx *x, const char *category, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

json_t *obs_sobj(obs_ctx *x, const char *key);          /* status.<key>, created */
void obs_sset(obs_ctx *x, json_t *o, const char *key, json_t *v); /* set if different; v stolen */
int obs_comp_index(const obs_ctx *x, const char *comp); /* in sp.c[], -1 */
void obs_record_good(obs_ctx *x); /* status.lastGood = what runs now */
enum { EN_DONE, EN_WAIT, EN_FAILED };
int obs_ensure(obs_ctx *x, int k, const char *version, const char *what, bool restart, bool keep_config,
               const char **how, serr *e);

/* upgrade.c: the Upgrading phase. */
bool obs_upgrade_wanted(obs_ctx *x);
int obs_upgrading(obs_ctx *x, serr *e);

/* conditions.c: the one place conditions and the component gauge are
 * computed; written into status only when they change. */
void obs_conditions(obs_ctx *x);
void obs_component_gauge(const char *platform, const json_t *components, bool gone);

#endif
