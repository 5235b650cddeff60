/*
 * fleet.c - the fleet's health and the all-unhealthy policy (fleet.h).
 * A linear table: a fleet is tens of stamps, and every call scans it anyway
 * to count the healthy ones.
 */
#include "reconcile/fleet.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "util/metrics.h"
#include "util/mutex.h"
#include "util/util.h"

#define FLEET_GAUGE "stamp_fleet_all_unhealthy"

typedef struct fl_entry {
    char name[64];
    bool healthy;
    bool in_rotation; /* the last answer was TR_READY */
} fl_entry;

struct fleet_health {
    fleet_policy policy;
    smutex mu; /* protects n and e */
    int n;
    fl_entry e[FLEET_MAX];
};

int fleet_health_new(const char *policy, fleet_health **out, serr *e) {
    *out = NULL;
    fleet_policy p;
    if (strcmp(policy, "last-healthy") == 0) p = FP_LAST_HEALTHY;
    else if (strcmp(policy, "fail-open") == 0) p = FP_FAIL_OPEN;
    else if (strcmp(policy, "fail-closed") == 0) p = FP_FAIL_CLOSED;
    else
        return serr_set(e, SE_INVAL, "all-unhealthy-policy: \"%.40s\" is not last-healthy, fail-open or fail-closed",
                        policy);
    fleet_health *f = calloc(1, sizeof(*f));
    if (f == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    f->policy = p;
    smutex_init(&f->mu);
    metrics_register(FLEET_GAUGE, MT_GAUGE, "1 when no Active stamp is healthy (the all-unhealthy policy applies)");
    *out = f;
    return 0;
}

void fleet_health_free(fleet_health *f) {
    if (f == NULL) return;
    smutex_destroy(&f->mu);
    free(f);
}

fleet_policy fleet_health_policy(const fleet_health *f) { return f->policy; }

/* Index of name, or -1; with create, a new entry (in rotation) if there is
 * room.  The caller holds the lock. */
static int find(fleet_health *f, const char *name, bool create) {
    assert(smutex_held(&f->mu));
    assert(f->n >= 0 && f->n <= FLEET_MAX);
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].name, name) == 0) return i;
    if (!create || f->n >= FLEET_MAX) return -1;
    fl_entry *x = &f->e[f->n];
    memset(x, 0, sizeof(*x));
    if (!str_copy(x->name, sizeof(x->name), name)) return -1; /* not a stamp name */
    x->in_rotation = true;
    return f->n++;
}

static int healthy_count(fleet_health *f) {
    assert(smutex_held(&f->mu));
    int n = 0;
    for (int i = 0; i < f->n; i++) n += f->e[i].healthy;
    return n;
}

tr_state fleet_rotation(fleet_health *f, const char *name, bool healthy, bool *all_unhealthy) {
    smutex_lock(&f->mu);
    int i = find(f, name, true);
    if (i >= 0) f->e[i].healthy = healthy;
    int healthy_n = healthy_count(f);
    *all_unhealthy = healthy_n == 0;
    tr_state st;
    if (healthy) st = TR_READY;
    else if (healthy_n > 0) st = TR_MAINT;
    else if (f->policy == FP_FAIL_OPEN) st = TR_READY;
    else if (f->policy == FP_FAIL_CLOSED) st = TR_MAINT;
    else st = i < 0 || f->e[i].in_rotation ? TR_READY : TR_MAINT; /* last-healthy */
    if (i >= 0) f->e[i].in_rotation = st == TR_READY;
    metrics_set(FLEET_GAUGE, "", *all_unhealthy ? 1 : 0);
    smutex_unlock(&f->mu);
    return st;
}

void fleet_forget(fleet_health *f, const char *name) {
    smutex_lock(&f->mu);
    int i = find(f, name, false);
    if (i >= 0) f->e[i] = f->e[--f->n];
    metrics_set(FLEET_GAUGE, "", f->n > 0 && healthy_count(f) == 0 ? 1 : 0);
    smutex_unlock(&f->mu);
}

bool fleet_all_unhealthy(fleet_health *f) {
    smutex_lock(&f->mu);
    bool all = f->n > 0 && healthy_count(f) == 0;
    smutex_unlock(&f->mu);
    return all;
}
