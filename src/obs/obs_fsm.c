/*
 * obs_fsm.c - the ObservabilityPlatform table: seed 003's five phases and
 * its diagram's transitions, word for word.  Deletion is not a phase (the
 * seed's "[*]"): a finalizer runs it from whatever phase the platform is
 * in, once what is running there has ended (obs.h).
 *
 * Every phase allows view, apply, pause, resume and delete: a version
 * change during an upgrade is taken once the upgrade has ended, and a
 * delete waits for the job in flight.
 */
#include "obs/internal.h"

#include <string.h>
#include <strings.h>

static const char *const phases[OP_NPHASES] = {[OP_PENDING] = "Pending",
                                               [OP_INSTALLING] = "Installing",
                                               [OP_READY] = "Ready",
                                               [OP_FAILED] = "Failed",
                                               [OP_UPGRADING] = "Upgrading"};

static const char *const ops[OO_NOPS] = {[OO_VIEW] = "view", [OO_APPLY] = "apply", [OO_PAUSE] = "pause",
                                         [OO_RESUME] = "resume", [OO_DELETE] = "delete"};

static const fsm_transition transitions[] = {
    {OP_PENDING, OP_INSTALLING, "Validated"},
    {OP_PENDING, OP_FAILED, "Validation Error"},
    {OP_INSTALLING, OP_READY, "All Components Ready"},
    {OP_INSTALLING, OP_FAILED, "Deployment Error"},
    {OP_READY, OP_UPGRADING, "Version Change"},
    {OP_READY, OP_FAILED, "Health Check Failed"},
    {OP_READY, OP_READY, "Minor Update"},
    {OP_FAILED, OP_INSTALLING, "Retry/Fix"},
    {OP_UPGRADING, OP_READY, "Success"},
    {OP_UPGRADING, OP_FAILED, "Upgrade Error"},
};

#define ALL ((1u << OO_NOPS) - 1u)
static const uint32_t allowed[OP_NPHASES] = {ALL, ALL, ALL, ALL, ALL};
#undef ALL
static const bool warning[OP_NPHASES] = {[OP_FAILED] = true};

const fsm_def obs_fsm = {
    .kind = "ObservabilityPlatform",
    .phases = phases,
    .nphases = OP_NPHASES,
    .ops = ops,
    .nops = OO_NOPS,
    .transitions = transitions,
    .ntransitions = (int)(sizeof(transitions) / sizeof(transitions[0])),
    .timeouts = NULL,
    .ntimeouts = 0,
    .allowed = allowed,
    .warning = warning,
    .blocked = NULL,
    .transitions_metric = "observability_platform_state_transitions_total",
    .duration_metric = NULL,
};

const char *const obs_cstate_names[CS_N] = {[CS_PENDING] = "Pending",
                                            [CS_INSTALLING] = "Installing",
                                            [CS_READY] = "Ready",
                                            [CS_FAILED] = "Failed",
                                            [CS_UPGRADING] = "Upgrading"};

int obs_cstate_parse(const char *s) {
    for (int i = 0; s && i < CS_N; i++)
        if (strcasecmp(obs_cstate_names[i], s) == 0) return i;
    return CS_PENDING;
}
