/*
 * stamp_fsm.c - the Stamp table.  Phase names are seed 000's; the operations
 * each phase allows are seed 000's "Operations Allowed" lists mapped onto
 * stampctl's verbs:
 *
 *   Creating  view deployment logs, cancel deployment (delete)
 *   Active    all normal operations, application updates (update), node
 *             pool scaling (scale), replacement by a rollout; blocked:
 *             infrastructure changes (they require a new stamp)
 *   Draining  monitor (view), force completion (drain --force), cancel the
 *             drain (activate), force delete; blocked: new deployments,
 *             scale and configuration changes
 *   Ready     activate, retire (delete), view; backup (seed 000's retire
 *             runbook starts with `stampctl backup`); replacement by a
 *             rollout (a retirement with a successor); blocked:
 *             infrastructure modifications (update and scale among them)
 *   Deleting  view the deletion
 *   Deleted   view deletion logs, restore from the verified backup
 *   Failed    view, redeploy (deploy), delete
 *
 * Timeouts: Creating 30 min -> Failed; Draining 40 min -> forced, Ready with
 * a warning; Ready 72 h -> retired; Failed -> deleted only when the optional
 * auto-delete is configured.  The durations live in the configuration table
 * under the keys named here.
 */
#include "core/stamp_fsm.h"

static const char *const phases[SP_NPHASES] = {
    [SP_CREATING] = "Creating", [SP_ACTIVE] = "Active",   [SP_DRAINING] = "Draining",
    [SP_READY] = "Ready",       [SP_DELETING] = "Deleting", [SP_DELETED] = "Deleted",
    [SP_FAILED] = "Failed",
};

static const char *const ops[SO_NOPS] = {
    [SO_VIEW] = "view",       [SO_DEPLOY] = "deploy",   [SO_DRAIN] = "drain",
    [SO_ACTIVATE] = "activate", [SO_STANDBY] = "standby", [SO_DELETE] = "delete",
    [SO_FORCE_DELETE] = "delete --force", [SO_BACKUP] = "backup", [SO_UPDATE] = "update",
    [SO_SCALE] = "scale", [SO_INFRA] = "infrastructure change", [SO_RESTORE] = "restore",
    [SO_REPLACE] = "rollout",
};

const char *const stamp_retire_steps[SR_NSTEPS] = {
    [SR_BACKUP] = "backup",   [SR_QUARANTINE] = "quarantine", [SR_DECOMMISSION] = "decommission",
    [SR_ARCHIVE] = "archive", [SR_PURGE] = "purge",
};

static const fsm_transition transitions[] = {
    {SP_CREATING, SP_ACTIVE, "all health checks pass"},
    {SP_CREATING, SP_FAILED, "creation timeout or attempts exhausted"},
    {SP_CREATING, SP_DELETING, "deployment cancelled"},
    {SP_ACTIVE, SP_DRAINING, "scale-in signal or drain"},
    {SP_ACTIVE, SP_FAILED, "health recovery exhausted"},
    {SP_DRAINING, SP_READY, "connections closed and jobs done"},
    {SP_DRAINING, SP_ACTIVE, "drain cancelled"},
    {SP_DRAINING, SP_DELETING, "force delete or drained for deletion"},
    {SP_READY, SP_ACTIVE, "scale-out signal or activate"},
    {SP_READY, SP_DELETING, "retire signal or standby max age"},
    {SP_READY, SP_FAILED, "activation failed 3 times"},
    {SP_FAILED, SP_CREATING, "retry or redeploy"},
    {SP_FAILED, SP_DELETING, "delete"},
    {SP_DELETING, SP_DELETED, "retirement steps complete"},
};

static const fsm_timeout timeouts[] = {
    {SP_CREATING, "creating-timeout", SP_FAILED, "CreationTimeout"},
    {SP_DRAINING, "drain-total-timeout", SP_READY, "DrainTimeout"},
    {SP_READY, "standby-max-age", SP_DELETING, "StandbyMaxAge"},
    {SP_FAILED, "failed-auto-delete", SP_DELETING, "FailedAutoDelete"},
};

#define B(op) (1u << (op))
static const uint32_t allowed[SP_NPHASES] = {
    [SP_CREATING] = B(SO_VIEW) | B(SO_DELETE) | B(SO_FORCE_DELETE),
    [SP_ACTIVE] = B(SO_VIEW) | B(SO_DRAIN) | B(SO_STANDBY) | B(SO_DELETE) | B(SO_FORCE_DELETE) |
                  B(SO_BACKUP) | B(SO_UPDATE) | B(SO_SCALE) | B(SO_REPLACE),
    [SP_DRAINING] = B(SO_VIEW) | B(SO_DRAIN) | B(SO_ACTIVATE) | B(SO_STANDBY) | B(SO_FORCE_DELETE),
    [SP_READY] = B(SO_VIEW) | B(SO_ACTIVATE) | B(SO_DELETE) | B(SO_FORCE_DELETE) | B(SO_BACKUP) |
                 B(SO_REPLACE),
    [SP_DELETING] = B(SO_VIEW),
    [SP_DELETED] = B(SO_VIEW) | B(SO_RESTORE),
    [SP_FAILED] = B(SO_VIEW) | B(SO_DEPLOY) | B(SO_DELETE) | B(SO_FORCE_DELETE),
};
#undef B

static const bool warning[SP_NPHASES] = {[SP_FAILED] = true};

/* Seed 000's "Operations Blocked", quoted in every refusal. */
static const char *const blocked[SP_NPHASES] = {
    [SP_CREATING] = "routing traffic and accepting connections",
    [SP_ACTIVE] = "infrastructure changes (requires new stamp)",
    [SP_DRAINING] = "new deployments, scale operations and configuration changes",
    [SP_READY] = "infrastructure modifications",
    [SP_DELETED] = "all runtime operations",
};

const fsm_def stamp_fsm = {
    .kind = "stamp",
    .phases = phases,
    .nphases = SP_NPHASES,
    .ops = ops,
    .nops = SO_NOPS,
    .transitions = transitions,
    .ntransitions = (int)(sizeof(transitions) / sizeof(transitions[0])),
    .timeouts = timeouts,
    .ntimeouts = (int)(sizeof(timeouts) / sizeof(timeouts[0])),
    .allowed = allowed,
    .warning = warning,
    .blocked = blocked,
    .transitions_metric = "stamp_transitions_total",
    .duration_metric = "stamp_state_duration",
};
