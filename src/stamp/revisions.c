/*
 * revisions.c - StampTemplate revisions (revisions.h): kept by apply in the
 * template's status in the same write as its spec, read by deploy and by
 * GET /v1/templates/{name}/revisions.  No thread of its own; every call
 * reads the store afresh.
 */
#include "stamp/revisions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/stamp_fsm.h"
#include "reconcile/phase.h"
#include "util/util.h"

/* The revisions the stamps of one template use, and how many use each. */
#define USES_MAX 256

typedef struct uses {
    const char *tname;
    json_t *current_spec; /* for stamps deployed before revisions existed */
    int64_t current;
    int n;
    struct {
        int64_t rev;
        int stamps;
    } u[USES_MAX];
} uses;

static void uses_add(uses *u, int64_t rev) {
    for (int i = 0; i < u->n; i++)
        if (u->u[i].rev == rev) {
            u->u[i].stamps++;
            return;
        }
    if (u->n < USES_MAX) {
        u->u[u->n].rev = rev;
        u->u[u->n++].stamps = 1;
    }
}

static int uses_of(const uses *u, int64_t rev) {
    for (int i = 0; i < u->n; i++)
        if (u->u[i].rev == rev) return u->u[i].stamps;
    return 0;
}

/* The revision a stamp runs: the one its controller reports running
 * (status.templateRevision), else the one it was deployed from; a stamp
 * from before revisions counts for the current one when it runs the
 * current spec. */
static int count_stamp(const resource *r, void *arg) {
    uses *u = arg;
    const char *t = json_string_value(json_object_get(r->spec, "template"));
    if (t == NULL || strcmp(t, u->tname) != 0) return 0;
    if (phase_of(&stamp_fsm, r) == SP_DELETED) return 0;
    json_t *rv = json_object_get(r->status, "templateRevision");
    if (!json_is_integer(rv)) rv = json_object_get(r->spec, "templateRevision");
    if (json_is_integer(rv)) uses_add(u, json_integer_value(rv));
    else if (u->current_spec && json_equal(json_object_get(r->spec, "templateSpec"), u->current_spec))
        uses_add(u, u->current);
    return 0;
}

static int count_uses(ctl_ctx *c, const char *tname, json_t *current_spec, int64_t current, uses *u,
                      serr *e) {
    memset(u, 0, sizeof(*u));
    u->tname = tname;
    u->current_spec = current_spec;
    u->current = current;
    return store_list(c->st, "Stamp", NULL, count_stamp, u, e);
}

static json_t *entry(int64_t rev, json_t *spec, int64_t at_ms, const char *user) {
    char ts[40];
    return json_pack("{s:I,s:O,s:s,s:s?}", "revision", (json_int_t)rev, "spec", spec, "appliedAt",
                     fmt_time_rfc3339(at_ms, ts, sizeof(ts)), "appliedBy", user);
}

/* The kept revisions of a template as stored, or (a template applied
 * before revisions were kept) its current spec as the only one. */
static json_t *kept_of(const resource *r) {
    json_t *k = json_object_get(r->status, "revisions");
    if (json_is_array(k) && json_array_size(k) > 0) return json_incref(k);
    json_t *a = json_array();
    json_array_append_new(a, entry(r->generation, r->spec, r->updated_ms, NULL));
    return a;
}

/* Long: the retention rule reads best in one place. */
int stamp_template_revisions_apply(ctl_ctx *c, resource *r, json_t *new_spec, bool created,
                                   const char *user, serr *e) {
    int64_t now = now_ms();
    if (created) {
        json_t *a = json_array();
        json_array_append_new(a, entry(1, new_spec, now, user));
        json_object_set_new(r->status, "revisions", a);
        json_object_set_new(r->status, "revision", json_integer(1));
        return 0;
    }
    if (json_equal(r->spec, new_spec)) return 0;
    /* The store bumps the generation of a changed spec by one in the same
     * write: that is the new revision. */
    int64_t rev = r->generation + 1;
    json_t *kept = kept_of(r);
    json_array_append_new(kept, entry(rev, new_spec, now, user));
    /* What the stamps still use is kept beyond the newest few. */
    uses *u = malloc(sizeof(*u));
    if (u == NULL) {
        json_decref(kept);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    int rc = count_uses(c, r->name, r->spec, r->generation, u, e);
    if (rc) {
        free(u);
        json_decref(kept);
        return rc;
    }
    size_t n = json_array_size(kept);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(kept, i);
        int64_t v = json_integer_value(json_object_get(it, "revision"));
        bool newest = i + STAMP_REVISIONS_KEEP >= n;
        if (newest || uses_of(u, v) > 0) json_array_append(out, it);
    }
    while (json_array_size(out) > STAMP_REVISIONS_MAX) json_array_remove(out, 0);
    free(u);
    json_decref(kept);
    json_object_set_new(r->status, "revisions", out);
    json_object_set_new(r->status, "revision", json_integer(rev));
    return 0;
}

/* "5, 4, 1": the revisions kept, newest first, for messages. */
static void kept_list(json_t *kept, char *buf, size_t len) {
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = json_array_size(kept); i-- > 0;)
        o += str_fmt_cut(buf + o, len - o, "%s%lld", o ? ", " : "",
                         (long long)json_integer_value(json_object_get(json_array_get(kept, i), "revision")));
}

int stamp_template_revision(ctl_ctx *c, const char *tname, int64_t rev, json_t **spec_out,
                            int64_t *rev_out, serr *e) {
    resource r;
    resource_init(&r);
    int rc = store_get(c->st, "StampTemplate", tname, &r, e);
    if (rc) {
        if (rc == SE_NOTFOUND)
            serr_set(e, SE_NOTFOUND, "template %s not found (stampctl apply -f it first)", tname);
        resource_free(&r);
        return rc;
    }
    if (rev == 0 || rev == r.generation) {
        *spec_out = json_incref(r.spec);
        *rev_out = r.generation;
        resource_free(&r);
        return 0;
    }
    json_t *kept = kept_of(&r), *it;
    size_t i;
    rc = SE_NOTFOUND;
    json_array_foreach(kept, i, it) {
        if (json_integer_value(json_object_get(it, "revision")) != rev) continue;
        *spec_out = json_incref(json_object_get(it, "spec"));
        *rev_out = rev;
        rc = 0;
    }
    if (rc) {
        char list[256]; /* for the message: a cut list still reads */
        kept_list(kept, list, sizeof(list));
        serr_set(e, SE_NOTFOUND, "template %s has no revision %lld (revisions kept: %s; current %lld)",
                 tname, (long long)rev, list, (long long)r.generation);
    }
    json_decref(kept);
    resource_free(&r);
    return rc;
}

int stamp_template_revisions_list(ctl_ctx *c, const char *tname, json_t **out, serr *e) {
    resource r;
    resource_init(&r);
    int rc = store_get(c->st, "StampTemplate", tname, &r, e);
    if (rc) {
        if (rc == SE_NOTFOUND) serr_set(e, SE_NOTFOUND, "template %s not found", tname);
        resource_free(&r);
        return rc;
    }
    uses *u = malloc(sizeof(*u));
    if (u == NULL) {
        resource_free(&r);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    rc = count_uses(c, tname, r.spec, r.generation, u, e);
    if (rc == 0) {
        json_t *kept = kept_of(&r), *items = json_array();
        for (size_t i = json_array_size(kept); i-- > 0;) {
            json_t *it = json_deep_copy(json_array_get(kept, i));
            int64_t v = json_integer_value(json_object_get(it, "revision"));
            json_object_set_new(it, "current", json_boolean(v == r.generation));
            json_object_set_new(it, "stamps", json_integer(uses_of(u, v)));
            if (!json_object_get(it, "appliedBy")) json_object_set_new(it, "appliedBy", json_null());
            json_array_append_new(items, it);
        }
        json_decref(kept);
        *out = json_pack("{s:s,s:s,s:I,s:o}", "kind", "StampTemplateRevisionList", "template", tname,
                         "current", (json_int_t)r.generation, "items", items);
    }
    free(u);
    resource_free(&r);
    return rc;
}
