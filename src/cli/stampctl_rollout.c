/*
 * stampctl_rollout.c - blue-green rotation on the command line: `rollout`
 * starts one (POST /v1/rollouts), `rollout status` shows every rollout or
 * one's progress per old stamp (--watch: again at each change until it
 * ends), `rollout pause|resume|abort NAME`.  Flags are checked by the
 * parser (the table in stampctl.c) before anything here runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/stampctl.h"


const ca_flag f_rollout[] = {
    {"template", 0, CA_STRING, NULL, true, false, "NAME", "the StampTemplate whose stamps are replaced", NULL},
    {"to-revision", 0, CA_INT, NULL, true, false, "R", "the template revision the new stamps run (stampctl get templates)", NULL},
    {"max-surge", 0, CA_INT, NULL, false, false, "N", "replacements under way at once (1..10, default 1)", NULL},
    {"max-unavailable", 0, CA_INT, NULL, false, false, "N",
     "old stamps that may be retired before their replacement is Active (0..10, default 0)", NULL},
    {"timeout", 0, CA_DURATION, NULL, false, false, "DURATION",
     "how long a replacement may take to be Active and healthy (default 35m)", NULL},
    {"name", 0, CA_STRING, NULL, false, false, "NAME", "the rollout's name (default TEMPLATE-revR)", NULL},
    {"wait", 0, CA_BOOL, NULL, false, false, NULL, "show the progress until the rollout ends (as status --watch)", NULL},
    {NULL, 0, CA_BOOL, NULL, false, false, NULL, NULL, NULL}};

const ca_flag f_rollout_status[] = {
    {"watch", 'w', CA_BOOL, NULL, false, false, NULL, "print the progress again at each change, until the rollout ends", NULL},
    {NULL, 0, CA_BOOL, NULL, false, false, NULL, NULL, NULL}};


static bool finished(const char *phase) {
    return strcmp(phase, "Complete") == 0 || strcmp(phase, "Aborted") == 0 || strcmp(phase, "Failed") == 0;
}

static void progress_of(json_t *st, char *buf, size_t len) {
    json_t *p = json_object_get(st, "progress");
    if (p) str_fmt_cut(buf, len, "%lld/%lld", (long long)jint(p, "done", 0), (long long)jint(p, "total", 0));
    else str_copy(buf, len, "-");
}

static void list(json_t *items) {
    static const char *const h[] = {"NAME", "TEMPLATE", "REVISION", "PHASE", "REPLACED", "AGE"};
    table *t = table_new(6, h);
    size_t i;
    json_t *r;
    json_array_foreach(items, i, r) {
        json_t *sp = json_object_get(r, "spec"), *st = json_object_get(r, "status");
        char rev[24], prog[32], age[32];
        str_fmt_cut(rev, sizeof(rev), "%lld", (long long)jint(sp, "toRevision", 0));
        progress_of(st, prog, sizeof(prog));
        age_since(jstr(json_object_get(r, "metadata"), "creationTimestamp", NULL), age, sizeof(age));
        const char *cells[] = {jstr(json_object_get(r, "metadata"), "name", "?"), jstr(sp, "template", "?"), rev,
                               jstr(st, "phase", "Progressing"), prog, age};
        table_add(t, cells);
    }
    render_table(t);
}

/* One rollout's page into a string (to print it again only on a change). */
static char *page(json_t *r, bool times) {
    json_t *sp = json_object_get(r, "spec"), *st = json_object_get(r, "status");
    char prog[32], d[FMT_DURATION_LEN];
    progress_of(st, prog, sizeof(prog));
    sbuf b;
    sbuf_init(&b, 1u << 20);
    sbuf_addf(&b, "Name:       %s\n", jstr(json_object_get(r, "metadata"), "name", "?"));
    sbuf_addf(&b, "Template:   %s -> revision %lld\n", jstr(sp, "template", "?"), (long long)jint(sp, "toRevision", 0));
    sbuf_addf(&b, "Strategy:   maxSurge %lld, maxUnavailable %lld, timeout %s\n", (long long)jint(sp, "maxSurge", 1),
              (long long)jint(sp, "maxUnavailable", 0), jstr(sp, "timeout", "35m"));
    sbuf_addf(&b, "Phase:      %s (%s replaced)%s\n", jstr(st, "phase", "Progressing"), prog,
              json_is_true(json_object_get(sp, "paused")) ? ", paused" : "");
    if (json_object_get(st, "message")) sbuf_addf(&b, "Message:    %s\n", jstr(st, "message", ""));
    if (json_object_get(st, "baselineServing"))
        sbuf_addf(&b, "Serving:    at least %lld stamp(s) of the template at all times\n",
                  (long long)(jint(st, "baselineServing", 0) - jint(sp, "maxUnavailable", 0)));
    int64_t started = jint(st, "startedMs", 0), ended = jint(st, "completedMs", 0);
    if (started && times)
        sbuf_addf(&b, "Elapsed:    %s\n", fmt_duration((ended ? ended : now_ms()) - started, d, sizeof(d)));
    json_t *items = json_object_get(st, "items");
    if (json_array_size(items) > 0) {
        static const char *const h[] = {"OLD", "REGION", "REPLACEMENT", "PHASE", "FOR", "MESSAGE"};
        table *t = table_new(6, h);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            char age[32];
            if (times) fmt_age(now_ms() - jint(it, "sinceMs", now_ms()), age, sizeof(age));
            else str_copy(age, sizeof(age), "");
            char old[160];
            str_fmt_cut(old, sizeof(old), "%s%s", jstr(it, "old", "?"),
                        json_is_true(json_object_get(it, "standby")) ? " (standby)" : "");
            const char *cells[] = {old, jstr(it, "region", "?"), jstr(it, "replacement", "-"),
                                   jstr(it, "phase", "Pending"), age, jstr(it, "message", "")};
            table_add(t, cells);
        }
        sbuf_adds(&b, "\n");
        if (table_render(t, &b) != 0) die("table too large");
        table_free(t);
    }
    return b.data ? b.data : strdup("");
}

static json_t *get_rollout(const char *name) {
    char *e = url_escape(name);
    char path[512];
    fmt_or_die(path, sizeof(path), "request path", "/v1/rollouts/%s", e);
    free(e);
    return call("GET", path, NULL, NULL, false);
}

/* Prints the page at each change until the rollout ends; exit 1 unless
 * it is Complete. */
static int watch(const char *name) {
    char *last = NULL;
    const char *ph;
    for (;;) {
        json_t *r = get_rollout(name);
        /* Printed again when something but the clocks changed. */
        char *p = page(r, false);
        if (last == NULL || strcmp(p, last) != 0) {
            char *shown = page(r, true);
            printf("%s%s", last ? "\n" : "", shown);
            free(shown);
            fflush(stdout);
        }
        free(last);
        last = p;
        static char phase[32];
        str_copy(phase, sizeof(phase), jstr(json_object_get(r, "status"), "phase", "Progressing"));
        json_decref(r);
        ph = phase;
        if (finished(ph)) break;
        sleep(1);
    }
    free(last);
    return strcmp(ph, "Complete") == 0 ? 0 : 1;
}

int cmd_rollout(opts *o) {
    json_t *body = json_object();
    int64_t v;
    json_object_set_new(body, "template", json_string(flag(o, "template")));
    if (parse_i64(flag(o, "to-revision"), 1, INT64_MAX, &v) != 0) usage_die(o, "--to-revision: a revision from 1");
    json_object_set_new(body, "toRevision", json_integer(v));
    if (flag(o, "max-surge")) {
        if (parse_i64(flag(o, "max-surge"), 1, 10, &v) != 0) usage_die(o, "--max-surge: 1 to 10");
        json_object_set_new(body, "maxSurge", json_integer(v));
    }
    if (flag(o, "max-unavailable")) {
        if (parse_i64(flag(o, "max-unavailable"), 0, 10, &v) != 0) usage_die(o, "--max-unavailable: 0 to 10");
        json_object_set_new(body, "maxUnavailable", json_integer(v));
    }
    if (flag(o, "timeout")) json_object_set_new(body, "timeout", json_string(flag(o, "timeout")));
    if (flag(o, "name")) json_object_set_new(body, "name", json_string(flag(o, "name")));
    json_t *r = call("POST", "/v1/rollouts", body, NULL, false);
    json_decref(body);
    char name[160];
    str_copy(name, sizeof(name), jstr(json_object_get(r, "metadata"), "name", "?"));
    if (printed_structured(o, r)) return 0;
    json_decref(r);
    printf("rollout/%s started (stampctl rollout status %s)\n", name, name);
    if (flag(o, "wait")) return watch(name);
    return 0;
}

int cmd_rollout_status(opts *o) {
    if (o->npos == 0) {
        json_t *r = call("GET", "/v1/rollouts", NULL, NULL, false);
        if (printed_structured(o, r)) return 0;
        list(json_object_get(r, "items"));
        json_decref(r);
        return 0;
    }
    if (flag(o, "watch")) {
        if (structured(o)) usage_die(o, "--watch prints the progress page; leave out -o");
        return watch(o->pos[0]);
    }
    json_t *r = get_rollout(o->pos[0]);
    if (printed_structured(o, r)) return 0;
    char *p = page(r, true);
    fputs(p, stdout);
    free(p);
    json_decref(r);
    return 0;
}

static int verb(opts *o, const char *action) {
    char *e = url_escape(o->pos[0]);
    char path[512];
    fmt_or_die(path, sizeof(path), "request path", "/v1/rollouts/%s/%s", e, action);
    free(e);
    json_t *r = call("POST", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    json_decref(r);
    printf("rollout/%s %s\n", o->pos[0],
           strcmp(action, "pause") == 0 ? "paused (nothing new starts; what runs finishes its step)"
           : strcmp(action, "resume") == 0 ? "resumed"
                                           : "aborted (what was replaced stays replaced)");
    return 0;
}

int cmd_rollout_pause(opts *o) { return verb(o, "pause"); }
int cmd_rollout_resume(opts *o) { return verb(o, "resume"); }
int cmd_rollout_abort(opts *o) { return verb(o, "abort"); }
