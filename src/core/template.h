/*
 * template.h - StampTemplate: seed 001's ordered deployment phases (network,
 * security, data, compute, integration, validation), each a list of steps.
 * Deployment runs the steps in order; deletion runs them in reverse.
 *
 * Step kinds:
 *   process - supervised processes of the local runtime in a pool (system,
 *             general, gpu) with replicas and ports assigned from a range;
 *             in standby general and gpu scale to 0 and system stays.
 *   exec    - an operator's command (run with /bin/sh -c) with the stamp's
 *             parameters in its environment, a timeout, and its output kept
 *             as the step's log; `delete` is the command run on deletion.
 *
 * What a change of the template may do to a running stamp is data here too
 * (issue 13): each step is an application or an infrastructure step
 * (`change:`, default: process steps application, exec steps
 * infrastructure); `parameters:` declares the stamp's parameters with their
 * class, default and description (an undeclared one counts as
 * infrastructure); `pools:` bounds each pool's replicas (minReplicas,
 * maxReplicas; defaults 0 (system 1) to 20).  tpl_change.h classifies a
 * change with them.
 *
 * tpl_parse validates a template spec (JSON from YAML or JSON) and names the
 * offending field in every error.  The parsed tpl borrows strings from the
 * spec: keep the spec alive while using it.  Pure.
 */
#ifndef STAMP_TEMPLATE_H
#define STAMP_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define TPL_MAX_STEPS 64
#define TPL_MAX_ARGS 32
#define TPL_MAX_REPLICAS 32 /* per step; seed 001: the general pool up to 20 */
#define TPL_MAX_PORTS 4
#define TPL_MAX_PARAMS 32  /* as many as a deploy may give */
#define TPL_PARAM_NAME_MAX 64
#define TPL_POOL_MAX_DEFAULT 20

enum tpl_phase { TP_NETWORK, TP_SECURITY, TP_DATA, TP_COMPUTE, TP_INTEGRATION, TP_VALIDATION, TP_N };
enum tpl_kind { TK_PROCESS, TK_EXEC };
enum tpl_pool { POOL_SYSTEM, POOL_GENERAL, POOL_GPU, POOL_N };
/* What a change is: an application one is allowed on an Active stamp (an
 * update), an infrastructure one needs a new stamp. */
enum tpl_change_class { TCC_APPLICATION, TCC_INFRASTRUCTURE, TCC_N };

typedef struct tpl_step {
    const char *name;
    int phase;
    int kind;
    int change;          /* enum tpl_change_class */
    /* process */
    int pool;
    int replicas;
    int ports;           /* per replica */
    json_t *command;     /* array of strings, borrowed */
    json_t *env;         /* object of strings, borrowed, may be NULL */
    bool endpoint;       /* replica 0 is the stamp's endpoint */
    bool health;         /* probed by the health gate */
    bool metrics;        /* scraped for connections and jobs while draining */
    int64_t cpu_millis;   /* resources.cpu per replica (default 1 core): the autoscaler's capacity */
    int64_t memory_bytes; /* resources.memory per replica (default 512Mi) */
    /* exec */
    const char *run;
    const char *del;     /* may be NULL */
    int64_t timeout_ms;
} tpl_step;

/* A declared parameter (spec.parameters.NAME). */
typedef struct tpl_param {
    const char *name;
    int change;         /* enum tpl_change_class (default application) */
    json_t *dflt;       /* string or integer, borrowed; NULL: none */
    const char *description; /* may be NULL */
} tpl_param;

typedef struct tpl {
    int nsteps;
    tpl_step steps[TPL_MAX_STEPS];
    const char *name_prefix;  /* may be NULL */
    const char *health_path;  /* default "/health" */
    const char *metrics_path; /* default "/metrics" */
    const char *health_check; /* a StampHealthCheck's name, may be NULL */
    int endpoint_step;        /* index, -1 when the template runs no process */
    int nparams;
    tpl_param params[TPL_MAX_PARAMS];
    /* Replica bounds of each pool (spec.pools), and whether the template
     * gave them (pool_declared) or they are the defaults. */
    int pool_min[POOL_N], pool_max[POOL_N];
    bool pool_declared[POOL_N];
} tpl;

extern const char *const tpl_phase_names[TP_N];
extern const char *const tpl_pool_names[POOL_N];
extern const char *const tpl_change_names[TCC_N]; /* "application", "infrastructure" */

int tpl_parse(json_t *spec, tpl *out, serr *e);
int tpl_pool_parse(const char *name);
/* The declared parameter called name, or NULL. */
const tpl_param *tpl_param_find(const tpl *t, const char *name);
/* A parameter name: letters, digits, '_' and '.' (1-64 characters; not
 * starting with a digit or '.', not ending with '.', no ".."), so
 * `app.version` reads as it does in Helm values. */
bool tpl_param_name_ok(const char *name);

/* Checks that obj has only the keys listed (NULL-terminated); the error
 * names the first unknown one as "<where>.<key>". */
int json_check_keys(json_t *obj, const char *where, const char *const *keys, serr *e);

/* Typed fields of a manifest, each error naming "<where>.<key>".  Absent
 * keys give the default (json_get_str: NULL, or an error when required);
 * strings are borrowed from obj. */
int json_get_bool(json_t *o, const char *key, bool dflt, bool *out, const char *where, serr *e);
int json_get_int(json_t *o, const char *key, int dflt, int lo, int hi, int *out, const char *where,
                 serr *e);
int json_get_str(json_t *o, const char *key, bool required, size_t max, const char **out,
                 const char *where, serr *e);

#endif
