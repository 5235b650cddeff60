/*
 * steps.h - one runner for every ordered, resumable sequence of sub-steps:
 * a stamp's retirement (backup, quarantine, decommission, archive, purge),
 * a namespace's reap (stop, archive, delete), and any install or upgrade
 * that must survive a kill -9 halfway.
 *
 * The sequence is a table of named steps.  Progress lives in a JSON object
 * the caller keeps inside the resource's status:
 *
 *   { "step": "<name of the step to run next>" | "done",
 *     "stepStartedMs": <when that step was first started>,
 *     "stepsDone": { "<name>": "<RFC 3339 time>", ... } }
 *
 * and is persisted (through the caller's persist function, which writes
 * the resource) BEFORE a step starts and AFTER it ends, so a restart
 * resumes at the step that was running.  A step may therefore run again
 * after a crash: every step is check-then-act (it looks at what exists
 * and does only what is missing), and anything it archives is written
 * under a ".partial" name and renamed only once verified.
 *
 * A step answers through *outcome:
 *   STEP_NEXT   done; the runner records it and goes on to the next;
 *   STEP_WAIT   not finished (a process or job is running): the runner
 *               returns, the caller saves and requeues, the step runs
 *               again on the next reconcile;
 *   STEP_REDO   a precondition it checks is gone (purge finds no
 *               verified archive): the runner goes back to the step
 *               named in *redo (earlier in the table) and runs from there.
 * or returns an error, which the runner returns unchanged (the progress
 * still names the failed step, so the next run retries it).
 *
 * Pure bookkeeping: no locks, no I/O of its own; the caller serializes runs
 * of one resource (the work queue, or the namespace's lock).
 */
#ifndef STAMP_STEPS_H
#define STAMP_STEPS_H

#include <jansson.h>
#include <stdbool.h>

#include "util/err.h"

enum step_outcome { STEP_NEXT, STEP_WAIT, STEP_REDO };

typedef struct step_def {
    const char *name;
    /* ctx: the caller's; progress: the sequence's object (steps may keep
     * their own keys in it); *redo: for STEP_REDO only. */
    int (*run)(void *ctx, json_t *progress, int *outcome, const char **redo, serr *e);
} step_def;

typedef struct step_seq {
    const char *what;          /* "retirement", "reap": for messages */
    const step_def *steps;
    int n;
    /* Write the resource that holds the progress; 0 or an error (a
     * conflict included: the runner stops and returns it). */
    int (*persist)(void *ctx, serr *e);
} step_seq;

/* Runs the sequence from where progress says, step by step, until a step
 * waits, fails, or the last is done (*complete = true; progress.step is
 * "done").  Progress of a sequence never started is initialized here.
 * An unknown step name in progress is SE_INVAL (a corrupted status). */
int steps_run(const step_seq *q, json_t *progress, void *ctx, bool *complete, serr *e);

/* Index of the step progress names (0 when unset, n when done, -1 when
 * unknown).  An integer "step" (how stamps recorded retirement before this
 * runner) is read as an index. */
int steps_index(const step_seq *q, const json_t *progress);
/* The name of that step, or "done". */
const char *steps_current(const step_seq *q, const json_t *progress);
/* Whether the named step is recorded as done. */
bool steps_done(const json_t *progress, const char *name);

#endif
