/*
 * intent.c - see intent.h.
 */
#include "stamp/intent.h"

#include <string.h>

const char *const stamp_desired_names[3] = {"active", "standby", "deleted"};

static int get_int(const json_t *o, const char *key, const char *where, int64_t *out, serr *e) {
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return serr_set(e, SE_INVAL, "spec.%s%s: must be a whole number >= 0", where, key);
    *out = json_integer_value(v);
    return 0;
}

static int get_bool(const json_t *o, const char *key, const char *where, bool *out, serr *e) {
    json_t *v = json_object_get(o, key);
    *out = false;
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return serr_set(e, SE_INVAL, "spec.%s%s: must be true or false", where, key);
    *out = json_is_true(v);
    return 0;
}

int stamp_intent_parse(const json_t *spec, stamp_intent *out, serr *e) {
    memset(out, 0, sizeof(*out));
    json_t *d = json_object_get(spec, "desired");
    if (d != NULL) {
        const char *v = json_string_value(d);
        int i = 0;
        while (v && i < 3 && strcmp(stamp_desired_names[i], v) != 0) i++;
        if (v == NULL || i == 3)
            return serr_set(e, SE_INVAL, "spec.desired: must be active, standby or deleted");
        out->desired = (stamp_desired)i;
    }
    json_t *dr = json_object_get(spec, "drain");
    if (dr != NULL && !json_is_null(dr) && !json_is_object(dr))
        return serr_set(e, SE_INVAL, "spec.drain: must be an object");
    int rc;
    if ((rc = get_bool(dr, "force", "drain.", &out->drain.force, e)) ||
        (rc = get_int(dr, "gracePeriodMs", "drain.", &out->drain.grace_ms, e)) ||
        (rc = get_int(dr, "generation", "drain.", &out->drain.generation, e)) ||
        (rc = get_int(spec, "retry", "", &out->retry, e)) ||
        (rc = get_int(spec, "backupRequested", "", &out->backups, e)) ||
        (rc = get_int(spec, "activateRequested", "", &out->activations, e)) ||
        (rc = get_bool(spec, "deleteForce", "", &out->delete_force, e)))
        return rc;
    return 0;
}

void stamp_intent_emit(const stamp_intent *in, json_t *spec) {
    json_object_set_new(spec, "desired", json_string(stamp_desired_names[in->desired]));
    json_object_set_new(spec, "drain", json_pack("{s:b,s:I,s:I}", "force", in->drain.force,
                                                 "gracePeriodMs", (json_int_t)in->drain.grace_ms,
                                                 "generation", (json_int_t)in->drain.generation));
    json_object_set_new(spec, "retry", json_integer(in->retry));
    json_object_set_new(spec, "backupRequested", json_integer(in->backups));
    json_object_set_new(spec, "activateRequested", json_integer(in->activations));
    json_object_set_new(spec, "deleteForce", json_boolean(in->delete_force));
}
