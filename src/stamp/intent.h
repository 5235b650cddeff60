/*
 * intent.h - what an operator asked of a stamp, typed.  The API is the only
 * writer of a stamp's spec and writes these keys only through
 * stamp_intent_emit; the controller reads them only through
 * stamp_intent_parse and writes only status.
 *
 * spec keys (unchanged from the JSON the API wrote before, so stored
 * stamps read the same):
 *   desired           "active" | "standby" | "deleted"
 *   drain             {force, gracePeriodMs, generation}: a drain request;
 *                     generation grows with every request, and the
 *                     controller acts on each generation once
 *                     (status.drain.requestGeneration)
 *   retry             deploy again (a Failed stamp): grows per request
 *   backupRequested   backups asked for: grows per request
 *   deleteForce       the delete was --force
 *   activateRequested activations asked for: grows per request (an
 *                     activation releases a stamp its health recovery
 *                     drained into standby)
 */
#ifndef STAMP_STAMP_INTENT_H
#define STAMP_STAMP_INTENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

typedef enum stamp_desired { SD_ACTIVE, SD_STANDBY, SD_DELETED } stamp_desired;

typedef struct stamp_drain_req {
    bool force;
    int64_t grace_ms;   /* 0: the configured limits */
    int64_t generation; /* 0: none asked */
} stamp_drain_req;

typedef struct stamp_intent {
    stamp_desired desired;
    stamp_drain_req drain;
    int64_t retry;
    int64_t backups;
    int64_t activations;
    bool delete_force;
} stamp_intent;

extern const char *const stamp_desired_names[3];

/* Reads spec; a key of the wrong type is SE_INVAL naming it.  Missing keys
 * take their zero (desired: active). */
int stamp_intent_parse(const json_t *spec, stamp_intent *out, serr *e);
/* Writes every intent key into spec (other keys untouched). */
void stamp_intent_emit(const stamp_intent *in, json_t *spec);

#endif
