/*
 * fsm.h - state machines as tables.  A kind's phases, its transitions with
 * their triggers, the timeout of each phase with its target, and which
 * operations each phase allows are data in one fsm_def; code asks the table
 * and never spreads the rules through ifs.
 *
 * Pure: no I/O, no allocation.  The one function that performs a phase change
 * (validate against the table, persist, record the event, count it) is
 * phase_change() in reconcile/phase.h, built on fsm_transition_find().
 */
#ifndef STAMP_FSM_H
#define STAMP_FSM_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define FSM_MAX_OPS 32

typedef struct fsm_transition {
    int from;
    int to;
    const char *trigger; /* as the seed words it: "health checks pass" */
} fsm_transition;

typedef struct fsm_timeout {
    int phase;
    const char *config_key; /* duration key in the configuration table */
    int target;             /* phase to move to when it passes */
    const char *reason;     /* event reason */
} fsm_timeout;

typedef struct fsm_def {
    const char *kind;
    const char *const *phases;
    int nphases;
    const char *const *ops;
    int nops;
    const fsm_transition *transitions;
    int ntransitions;
    const fsm_timeout *timeouts;
    int ntimeouts;
    const uint32_t *allowed; /* per phase: bit i set = ops[i] allowed */
    const bool *warning;     /* per phase: entering it is a Warning event */
    const char *const *blocked; /* per phase: what the seed says it blocks, or NULL */
    const char *transitions_metric; /* counter {from,to} */
    const char *duration_metric;    /* histogram {state}: time spent */
} fsm_def;

/* Phase by name, case-insensitive; -1 when unknown. */
int fsm_phase_parse(const fsm_def *d, const char *name);
const char *fsm_phase_name(const fsm_def *d, int phase);
int fsm_op_parse(const fsm_def *d, const char *name);
const char *fsm_op_name(const fsm_def *d, int op);

/* The transition from -> to, or NULL when the table has none. */
const fsm_transition *fsm_transition_find(const fsm_def *d, int from, int to);
const fsm_timeout *fsm_timeout_find(const fsm_def *d, int phase);

bool fsm_op_allowed(const fsm_def *d, int phase, int op);
/* 0, or SE_PHASE with "<kind> <name> is <Phase>: <op> is not allowed
 * (<Phase> blocks <what the seed lists>; it allows: a, b, c)". */
int fsm_check_op(const fsm_def *d, const char *name, int phase, int op, serr *e);
/* "a, b, c" of the ops allowed in phase. */
void fsm_allowed_list(const fsm_def *d, int phase, char *buf, size_t len);

#endif
