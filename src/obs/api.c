/*
 * api.c - what the API asks of an ObservabilityPlatform beyond apply:
 * pause and resume (spec.paused), and deletion (metadata.deletionTimestamp
 * and the finalizer).  The API writes intent only: the controller
 * (controller.c) sees the change, stops or resumes touching the
 * components, or uninstalls them and removes its finalizer, after which
 * the record goes.
 *
 * Every write is an optimistic update retried on a conflict (the
 * controller writes status at the same time), with its event in the same
 * transaction, and wakes the controller.  The caller audits.
 *
 * Threading: any API thread; state is the store's.
 */
#include <string.h>

#include "obs/obs.h"
#include "util/util.h"
#include "util/yamljson.h"

#define OBS_FINALIZER "observability.synaxis.io/finalizer"
#define UPDATE_RETRIES 8

static bool has_finalizer(const resource *r) {
    size_t i;
    json_t *f;
    json_array_foreach(r->finalizers, i, f) {
        if (json_is_string(f) && strcmp(json_string_value(f), OBS_FINALIZER) == 0) return true;
    }
    return false;
}

/* The platform as the API shows it: its own apiVersion, not the store's
 * default, so that get -o yaml applies back. */
static json_t *answer_of(const resource *r) {
    json_t *o = resource_to_json(r);
    if (o) json_object_set_new(o, "apiVersion", json_string(OBS_API_VERSION));
    return o;
}

static int get_platform(ctl_ctx *c, const char *name, resource *r, serr *e) {
    int rc = store_get(c->st, OBS_KIND, name, r, e);
    if (rc == SE_NOTFOUND)
        serr_set(e, SE_NOTFOUND, "platform %s not found (stampctl get platforms)", name);
    return rc;
}

int obs_action(ctl_ctx *c, const char *name, const char *action, const char *user, json_t **answer,
               serr *e) {
    bool pause = strcmp(action, "pause") == 0;
    if (!pause && strcmp(action, "resume") != 0)
        return serr_set(e, SE_INVAL, "platform action \"%s\": pause or resume", action);
    resource r;
    resource_init(&r);
    int rc = SE_CONFLICT;
    bool changed = false;
    for (int i = 0; i < UPDATE_RETRIES && rc == SE_CONFLICT; i++) {
        if ((rc = get_platform(c, name, &r, e))) break;
        /* A pause would stop the uninstall half-way and keep the record
         * for ever; resuming one paused before its deletion lets it go. */
        if (pause && r.deletion_ms > 0) {
            char ts[40];
            rc = serr_set(e, SE_PHASE,
                          "platform %s is being deleted (since %s): its components are being "
                          "uninstalled, and a pause would stop that half-way",
                          name, fmt_time_rfc3339(r.deletion_ms, ts, sizeof(ts)));
            break;
        }
        if (json_is_true(json_object_get(r.spec, "paused")) == pause) {
            rc = 0; /* already so: nothing to write */
            break;
        }
        json_object_set_new(r.spec, "paused", json_boolean(pause));
        char msg[200];
        str_fmt_cut(msg, sizeof(msg), "%s by %s", pause ? "paused" : "resumed", user ? user : "?");
        store_event ev = {.type = "Normal", .reason = pause ? "Paused" : "Resumed", .message = msg};
        rc = store_update(c->st, &r, &ev, e);
        changed = rc == 0;
    }
    if (rc == SE_CONFLICT)
        serr_set(e, SE_CONFLICT, "platform %s kept changing under %d attempts to %s it; try again",
                 name, UPDATE_RETRIES, action);
    if (rc == 0) {
        *answer = answer_of(&r);
        if (changed) ctl_enqueue(c, OBS_KIND, name);
    }
    resource_free(&r);
    return rc;
}

/* A platform the controller never looked at (no finalizer, no status) has
 * nothing installed: its record goes at once.  The controller adds the
 * finalizer before it touches anything, and the delete is conditional on
 * the resource version read, so a reconcile that starts meanwhile either
 * finds the record gone or makes this delete retry and mark it instead. */
int obs_delete(ctl_ctx *c, const char *name, const char *user, json_t **answer, serr *e) {
    resource r;
    resource_init(&r);
    int rc = SE_CONFLICT;
    bool wake = true;
    char msg[200];
    str_fmt_cut(msg, sizeof(msg), "deletion requested by %s", user ? user : "?");
    for (int i = 0; i < UPDATE_RETRIES && rc == SE_CONFLICT; i++) {
        if ((rc = get_platform(c, name, &r, e))) break;
        if (r.deletion_ms > 0 && has_finalizer(&r)) {
            rc = 0; /* asked already: the uninstall is under way */
            break;
        }
        if (!has_finalizer(&r) && json_object_size(r.status) == 0) {
            r.deletion_ms = now_ms();
            rc = store_delete(c->st, OBS_KIND, name, r.resource_version, e);
            if (rc == 0) {
                store_event ev = {.type = "Normal", .reason = "DeletionRequested", .message = msg};
                store_event_add(c->st, OBS_KIND, name, &ev, NULL);
                store_event ev2 = {.type = "Normal", .reason = "Deleted",
                                   .message = "never reconciled, nothing installed: removed at once"};
                store_event_add(c->st, OBS_KIND, name, &ev2, NULL);
                wake = false;
            }
            continue;
        }
        if (r.deletion_ms == 0) r.deletion_ms = now_ms();
        if (!has_finalizer(&r)) json_array_append_new(r.finalizers, json_string(OBS_FINALIZER));
        store_event ev = {.type = "Normal", .reason = "DeletionRequested", .message = msg};
        rc = store_update(c->st, &r, &ev, e);
    }
    if (rc == SE_CONFLICT)
        serr_set(e, SE_CONFLICT, "platform %s kept changing under %d attempts to delete it; try again",
                 name, UPDATE_RETRIES);
    if (rc == 0) {
        *answer = answer_of(&r);
        if (wake) ctl_enqueue(c, OBS_KIND, name);
    }
    resource_free(&r);
    return rc;
}
