/*
 * revisions.c - STAND-IN for the "revisions" engineer's file (see
 * revisions.h): only the current revision (the template's generation).
 */
#include "stamp/revisions.h"

int stamp_template_revision(ctl_ctx *c, const char *tname, int64_t rev, json_t **spec_out,
                            int64_t *rev_out, serr *e) {
    resource r;
    resource_init(&r);
    int rc = store_get(c->st, "StampTemplate", tname, &r, e);
    if (rc == SE_NOTFOUND) rc = serr_set(e, SE_NOTFOUND, "template %s not found", tname);
    if (rc == 0 && rev != 0 && rev != r.generation)
        rc = serr_set(e, SE_NOTFOUND, "template %s has no revision %lld (kept: %lld)", tname,
                      (long long)rev, (long long)r.generation);
    if (rc == 0) {
        *spec_out = json_deep_copy(r.spec);
        *rev_out = r.generation;
    }
    resource_free(&r);
    return rc;
}
