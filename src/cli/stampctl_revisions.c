/*
 * stampctl_revisions.c - template revisions in stampctl (issue 13):
 * `get templates NAME --revisions` (GET /v1/templates/{name}/revisions),
 * `get templates NAME --revision N` (GET /v1/templates/{name}?revision=N)
 * and the check of deploy's --revision.  A thin client: stampd keeps the
 * revisions and counts the stamps running each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/stampctl.h"

int check_revision(const char *v, char *why, size_t len) {
    int64_t x;
    if (parse_i64(v, 1, INT64_MAX, &x) == 0) return 0;
    str_copy(why, len, "a revision is a whole number >= 1 (stampctl get templates NAME --revisions)");
    return -1;
}

json_t *get_template_revision(const char *name, const char *rev) {
    char path[768], *e = url_escape(name), *er = url_escape(rev);
    fmt_or_die(path, sizeof(path), "request path", "/v1/templates/%s?revision=%s", e, er);
    free(e);
    free(er);
    return call("GET", path, NULL, NULL, false);
}

int cmd_template_revisions(opts *o, const char *name) {
    char path[768], *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/templates/%s/revisions", e);
    free(e);
    json_t *r = call("GET", path, NULL, NULL, false);
    json_t *items = json_object_get(r, "items");
    if (!json_is_array(items)) die("stampd's answer has no items list");
    if (printed_structured(o, r)) return 0;
    size_t i;
    json_t *it;
    if (o->output && strcmp(o->output, "name") == 0) {
        json_array_foreach(items, i, it)
            printf("revision/%lld\n", (long long)jint(it, "revision", 0));
        json_decref(r);
        return 0;
    }
    static const char *const h[] = {"REVISION", "CURRENT", "APPLIED", "BY", "STAMPS"};
    table *t = table_new(5, h);
    json_array_foreach(items, i, it) {
        char rev[24], stamps[24], age[32]; /* any %lld fits */
        str_fmt_cut(rev, sizeof(rev), "%lld", (long long)jint(it, "revision", 0));
        str_fmt_cut(stamps, sizeof(stamps), "%lld", (long long)jint(it, "stamps", 0));
        age_since(jstr(it, "appliedAt", NULL), age, sizeof(age));
        const char *cells[] = {rev, json_is_true(json_object_get(it, "current")) ? "*" : "", age,
                               jstr(it, "appliedBy", "-"), stamps};
        table_add(t, cells);
    }
    render_table(t);
    json_decref(r);
    return 0;
}
