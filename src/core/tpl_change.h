/*
 * tpl_change.h - what a change of a stamp's template (a new revision) or
 * of its parameters would do to the running stamp: an application change
 * (allowed on an Active stamp: an update replaces replicas) or an
 * infrastructure change (seed 000 blocks it on Active: it needs a new
 * stamp).  The classes are data of the template (template.h): each step's
 * `change`, each declared parameter's `change`; the fields below are fixed.
 *
 *   application, of an application step: command, env, resources, health,
 *     metrics, replicas (exec steps: run, delete, timeout); of the template:
 *     healthPath, metricsPath, healthCheck, pools (the bounds of scaling,
 *     itself allowed on Active); a declared application parameter's value
 *     (given, or its default).  Such a parameter reaches every step through
 *     the environment, so every application step counts as changed.
 *   infrastructure, always: adding, removing, renaming or reordering steps,
 *     a step's phase, kind, pool, ports or endpoint, the template's
 *     namePrefix or endpoint step; any application field of an
 *     infrastructure step; the value of an undeclared parameter or of one
 *     declared infrastructure.
 *   nothing: descriptions, a step's `change` itself (the new template's
 *     class is the one that counts), a declaration whose effective value
 *     stays the same.
 *
 * Pure: no I/O, no globals; the parsed templates live on the heap.
 */
#ifndef STAMP_TPL_CHANGE_H
#define STAMP_TPL_CHANGE_H

#include <jansson.h>
#include <stdbool.h>

#include "core/template.h"
#include "util/err.h"

typedef struct tpl_change {
    bool infra;                     /* some change needs a new stamp */
    char what[256];                 /* the first infrastructure change, for people */
    bool app;                       /* some application change */
    char app_what[256];             /* the first application change, for people */
    int napp_steps;
    bool app_steps[TPL_MAX_STEPS];  /* by step index (the same in both templates
                                       when !infra) */
    bool template_app;              /* healthPath, metricsPath or healthCheck */
    bool pools_changed;             /* spec.pools bounds */
    bool params_changed;            /* an application parameter's effective value */
} tpl_change;

/* Classifies going from (old_spec, old_params) to (new_spec, new_params);
 * params are a stamp's spec.parameters (NULL: none given).  0 with *out
 * filled (a change or none), or SE_INVAL when a spec is no valid template
 * (the message says which one). */
int tpl_change_classify(json_t *old_spec, json_t *old_params, json_t *new_spec, json_t *new_params,
                        tpl_change *out, serr *e);

#endif
