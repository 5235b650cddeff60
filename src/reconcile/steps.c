/*
 * steps.c - see steps.h.
 */
#include "reconcile/steps.h"

#include <assert.h>
#include <string.h>

#include "util/util.h"
#include "util/yamljson.h"

static int find(const step_seq *q, const char *name) {
    for (int i = 0; i < q->n; i++)
        if (strcmp(q->steps[i].name, name) == 0) return i;
    return strcmp(name, "done") == 0 ? q->n : -1;
}

int steps_index(const step_seq *q, const json_t *progress) {
    json_t *s = json_object_get(progress, "step");
    if (s == NULL) return 0;
    if (json_is_integer(s)) {
        json_int_t i = json_integer_value(s);
        return i < 0 || i > q->n ? -1 : (int)i;
    }
    if (!json_is_string(s)) return -1;
    return find(q, json_string_value(s));
}

const char *steps_current(const step_seq *q, const json_t *progress) {
    int i = steps_index(q, progress);
    if (i < 0) return "unknown";
    return i >= q->n ? "done" : q->steps[i].name;
}

bool steps_done(const json_t *progress, const char *name) {
    return json_is_string(json_object_get(json_object_get(progress, "stepsDone"), name));
}

static void set_step(json_t *progress, const char *name) {
    json_object_set_new(progress, "step", json_string(name));
    json_object_set_new(progress, "stepStartedMs", json_integer(now_ms()));
}

int steps_run(const step_seq *q, json_t *progress, void *ctx, bool *complete, serr *e) {
    *complete = false;
    int i = steps_index(q, progress);
    if (i < 0)
        return serr_set(e, SE_INVAL, "%s: status names a step this version does not know (%s)",
                        q->what, json_is_string(json_object_get(progress, "step"))
                                     ? json_string_value(json_object_get(progress, "step"))
                                     : "not a name");
    int rc;
    /* Redo loops are bounded: a step that keeps sending the sequence back
     * is a bug, not a reason to spin. */
    for (int redos = 0; i < q->n;) {
        assert(i >= 0 && i < q->n);
        const step_def *st = &q->steps[i];
        json_t *cur = json_object_get(progress, "step");
        if (!json_is_string(cur) || strcmp(json_string_value(cur), st->name) != 0) {
            /* Before: a restart must know this step may have begun. */
            set_step(progress, st->name);
            if ((rc = q->persist(ctx, e))) return rc;
        }
        int outcome = STEP_NEXT;
        const char *redo = NULL;
        if ((rc = st->run(ctx, progress, &outcome, &redo, e))) return rc;
        if (outcome == STEP_WAIT) return 0;
        if (outcome == STEP_REDO) {
            int to = redo ? find(q, redo) : -1;
            if (to < 0 || to >= i || ++redos > q->n)
                return serr_set(e, SE_INTERNAL, "%s: step %s asked to redo %s", q->what, st->name,
                                redo ? redo : "(none)");
            json_object_del(json_object_get(progress, "stepsDone"), q->steps[to].name);
            set_step(progress, q->steps[to].name);
            if ((rc = q->persist(ctx, e))) return rc;
            i = to;
            continue;
        }
        /* After: done, and the next step named, in one write. */
        char when[40];
        json_object_set_new(jchild(progress, "stepsDone"), st->name,
                            json_string(fmt_time_rfc3339_ms(now_ms(), when, sizeof(when))));
        i++;
        set_step(progress, i < q->n ? q->steps[i].name : "done");
        if ((rc = q->persist(ctx, e))) return rc;
    }
    *complete = true;
    return 0;
}
