/*
 * stampctl_ops.c - the in-place operations on an Active stamp: `scale`
 * (a node pool's replicas) and `update` (the application: parameters or a
 * template revision's application part), with --wait to follow an update
 * to its end.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/stampctl.h"

#define WAIT_POLL_MS 500

static void post_op(const opts *o, const char *name, const char *verb, json_t *body, json_t **out) {
    bool dry = flag(o, "dry-run") != NULL;
    if (dry) dry_run_gate(verb);
    char path[512];
    char *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s/%s%s", e, verb, dry ? "?" DRY_RUN_QUERY : "");
    free(e);
    *out = call("POST", path, body, NULL, false);
}

int cmd_scale(opts *o) {
    const char *name = o->pos[0];
    int64_t n;
    if (parse_i64(flag(o, "replicas"), 0, 1000, &n) != 0)
        usage_die(o, "--replicas %s: not a number from 0 to 1000", flag(o, "replicas"));
    json_t *body = json_pack("{s:s,s:I}", "pool", flag(o, "pool"), "replicas", (json_int_t)n);
    json_t *r;
    post_op(o, name, "scale", body, &r);
    json_decref(body);
    if (structured(o)) print_json_or_yaml(r, o->output);
    else
        printf("stamp/%s: pool %s to %lld replica(s) requested%s\n", name, flag(o, "pool"), (long long)n,
               flag(o, "dry-run") ? " (server dry run)" : "");
    json_decref(r);
    return 0;
}

/* Follows the update of generation gen until it ends: 0 Complete, 1
 * otherwise.  A line per change of progress. */
static int follow_update(const char *name, int64_t gen) {
    char path[512], last[256] = "";
    char *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s", e);
    free(e);
    for (;;) {
        json_t *r = call("GET", path, NULL, NULL, false);
        json_t *st = json_object_get(r, "status");
        json_t *u = json_object_get(st, "update");
        const char *ph = jstr(u, "phase", "Pending");
        bool ours = jint(u, "generation", -1) == gen;
        char line[256];
        if (!ours)
            str_fmt_cut(line, sizeof(line), "update %lld: requested, waiting for the controller", (long long)gen);
        else
            str_fmt_cut(line, sizeof(line), "update %lld: %s, %lld of %lld replica(s) replaced%s%s", (long long)gen,
                        ph, (long long)jint(u, "replaced", 0), (long long)jint(u, "total", 0),
                        jstr(u, "message", NULL) ? ": " : "", jstr(u, "message", ""));
        if (strcmp(line, last) != 0) {
            printf("%s\n", line);
            fflush(stdout);
            str_copy(last, sizeof(last), line);
        }
        const char *phase = jstr(st, "phase", "");
        int done = -1;
        if (ours && strcmp(ph, "Complete") == 0) done = 0;
        else if (ours && (strcmp(ph, "RolledBack") == 0 || strcmp(ph, "Failed") == 0)) done = 1;
        else if (strcmp(phase, "Active") != 0) {
            fprintf(stderr, "stampctl: stamp %s is %s: the update waits until it is Active again\n", name, phase);
            done = 1;
        }
        json_decref(r);
        if (done >= 0) return done;
        struct timespec ts = {0, WAIT_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int cmd_update(opts *o) {
    const char *name = o->pos[0];
    const char *sets[MAX_ARGS];
    int ns = nflag(o, "set", sets, MAX_ARGS);
    const char *rev = flag(o, "revision");
    bool latest = flag(o, "latest") != NULL;
    if (ns == 0 && rev == NULL && !latest)
        usage_die(o, "nothing to update: give --set KEY=VALUE, --revision N or --latest");
    if (rev && latest) usage_die(o, "--revision and --latest are one or the other");
    json_t *body = json_object();
    if (ns) {
        json_t *p = json_object();
        for (int i = 0; i < ns; i++) {
            const char *eq = strchr(sets[i], '=');
            char key[128];
            size_t kl = eq ? (size_t)(eq - sets[i]) : 0;
            if (eq == NULL || kl == 0) usage_die(o, "--set %s: expected KEY=VALUE", sets[i]);
            if (kl >= sizeof(key)) usage_die(o, "--set %s: name too long", sets[i]);
            memcpy(key, sets[i], kl);
            key[kl] = '\0';
            json_object_set_new(p, key, json_string(eq + 1));
        }
        json_object_set_new(body, "set", p);
    }
    if (rev) {
        int64_t n;
        if (parse_i64(rev, 1, INT64_MAX, &n) != 0) usage_die(o, "--revision %s: not a revision number", rev);
        json_object_set_new(body, "revision", json_integer(n));
    }
    if (latest) json_object_set_new(body, "latest", json_true());
    json_t *r;
    post_op(o, name, "update", body, &r);
    json_decref(body);
    int rc = 0;
    if (structured(o)) {
        print_json_or_yaml(r, o->output);
    } else if (strcmp(jstr(r, "result", ""), "unchanged") == 0) {
        printf("stamp/%s: unchanged (it runs this already)\n", name);
    } else {
        json_t *spec = json_object_get(r, "spec");
        int64_t gen = jint(spec, "updateGeneration", 0);
        printf("stamp/%s: update %lld to revision %lld requested%s\n", name, (long long)gen,
               (long long)jint(spec, "templateRevision", 0), flag(o, "dry-run") ? " (server dry run)" : "");
        if (flag(o, "wait") && !flag(o, "dry-run")) rc = follow_update(name, gen);
    }
    json_decref(r);
    return rc;
}
