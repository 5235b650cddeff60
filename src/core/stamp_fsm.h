/*
 * stamp_fsm.h - the Stamp state machine of seed 000 (with seed 002's
 * retirement steps inside Deleting), as one table.  See stamp_fsm.c.
 */
#ifndef STAMP_STAMP_FSM_H
#define STAMP_STAMP_FSM_H

#include "core/fsm.h"

enum stamp_phase {
    SP_CREATING,
    SP_ACTIVE,
    SP_DRAINING,
    SP_READY,
    SP_DELETING,
    SP_DELETED,
    SP_FAILED,
    SP_NPHASES
};

enum stamp_op {
    SO_VIEW,         /* status, events, logs, metrics */
    SO_DEPLOY,       /* deploy again: retry or redeploy a Failed stamp */
    SO_DRAIN,        /* Active: start a drain; Draining: change it or --force it */
    SO_ACTIVATE,     /* Ready: scale out; Draining: cancel the drain */
    SO_STANDBY,      /* Active: drain into warm standby */
    SO_DELETE,       /* graceful: drain first where the stamp serves */
    SO_FORCE_DELETE, /* delete --force: no waiting for connections */
    SO_BACKUP,       /* back up local state now */
    SO_UPDATE,       /* Active: an application update (replicas replaced one by one) */
    SO_SCALE,        /* Active: resize a node pool within the template's bounds */
    SO_INFRA,        /* an infrastructure change: allowed nowhere (requires a new stamp) */
    SO_RESTORE,      /* Deleted: deploy a stamp from its verified backup */
    SO_REPLACE,      /* a rollout replaces the stamp with one of a new revision */
    SO_NOPS
};

/* Seed 002's retirement steps, in order, inside Deleting. */
enum stamp_retire_step {
    SR_BACKUP,
    SR_QUARANTINE,
    SR_DECOMMISSION,
    SR_ARCHIVE,
    SR_PURGE,
    SR_NSTEPS
};

extern const fsm_def stamp_fsm;
extern const char *const stamp_retire_steps[SR_NSTEPS];

#endif
