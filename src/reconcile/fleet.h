/*
 * fleet.h - the fleet's health as the stamp controller sees it, and the
 * all-unhealthy policy (the all-unhealthy-policy key): which Active stamps
 * stay in rotation when none of them is healthy.  Domain logic, not the
 * front door's: the answer is a tr_state the caller hands to traffic_set,
 * whatever the traffic driver (none included).
 *
 * A small table, stamp name -> {healthy, in rotation}, holds the Active
 * stamps the controller has asked about.  An unhealthy stamp is out of
 * rotation while another Active stamp is healthy.  When none is:
 *   last-healthy  keep in rotation the stamps that are in it now (the last
 *                 answer for each), take none back;
 *   fail-open     every Active stamp in rotation;
 *   fail-closed   every unhealthy stamp out (an outage, by choice).
 * A stamp the table does not hold counts as in rotation: every way into
 * Active (health gate passed, activation, cancelled drain) puts it there.
 * The stamp_fleet_all_unhealthy gauge follows every answer.
 *
 * Threading: one mutex per table, held only for the table's own work (no
 * I/O), so any reconcile worker may call in.
 */
#ifndef STAMP_FLEET_H
#define STAMP_FLEET_H

#include <stdbool.h>

#include "traffic/traffic.h"
#include "util/err.h"

#define FLEET_MAX 1024

typedef enum fleet_policy { FP_LAST_HEALTHY, FP_FAIL_OPEN, FP_FAIL_CLOSED } fleet_policy;

typedef struct fleet_health fleet_health;

/* policy: last-healthy, fail-open or fail-closed. */
int fleet_health_new(const char *policy, fleet_health **out, serr *e);
void fleet_health_free(fleet_health *f); /* accepts NULL */
fleet_policy fleet_health_policy(const fleet_health *f);

/* The Active stamp `name` is (not) healthy: whether it should serve
 * (TR_READY) or not (TR_MAINT), given the fleet.  Sets *all_unhealthy when
 * no Active stamp in the table is healthy. */
tr_state fleet_rotation(fleet_health *f, const char *name, bool healthy, bool *all_unhealthy);

/* The stamp is not Active any more: it no longer counts, and when it is
 * Active again it starts in rotation. */
void fleet_forget(fleet_health *f, const char *name);

/* No Active stamp in the table is healthy (and there is at least one). */
bool fleet_all_unhealthy(fleet_health *f);

#endif
