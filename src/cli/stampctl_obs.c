/*
 * stampctl_obs.c - ObservabilityPlatforms on the command line: the rows of
 * `get platforms`, the `describe platform` page, `platform pause|resume`,
 * and `delete platform NAME [--wait]`.  Creation and upgrades are `apply
 * -f` (stampctl.c).  The status is the controller's (obs/controller.c):
 * what is there is shown, what is missing is left out or shown as "-",
 * never guessed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/stampctl.h"

#define PLATFORMS_PATH "/v1/platforms/"

/* A time the status carries either as epoch milliseconds or as text. */
static const char *time_text(json_t *v, char *buf, size_t len) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v) && json_integer_value(v) > 0)
        return fmt_time_rfc3339(json_integer_value(v), buf, len);
    return "-";
}

static json_t *condition(json_t *st, const char *type) {
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(st, "conditions"), i, c) {
        if (strcmp(jstr(c, "type", ""), type) == 0) return c;
    }
    return NULL;
}

static bool comp_enabled(json_t *c) { return !json_is_false(json_object_get(c, "enabled")); }

/* The components to show: the controller's view, else the spec's. */
static json_t *components_of(json_t *p) {
    json_t *sc = json_object_get(json_object_get(p, "status"), "components");
    if (json_array_size(sc) > 0) return sc;
    return json_object_get(json_object_get(p, "spec"), "components");
}

static void phase_text(json_t *p, char *buf, size_t len) {
    json_t *md = json_object_get(p, "metadata"), *st = json_object_get(p, "status");
    str_fmt_cut(buf, len, "%s%s%s", jstr(st, "phase", "Pending"),
                json_is_true(json_object_get(json_object_get(p, "spec"), "paused")) ? ",Paused" : "",
                json_object_get(md, "deletionTimestamp") ? ",Deleting" : "");
}

table *plat_table(bool w) {
    static const char *const h[] = {"NAME", "PHASE", "READY", "AVAILABLE", "AGE", "VERSIONS", "MESSAGE"};
    return table_new(w ? 7 : 5, h);
}

void plat_row(table *t, json_t *p, bool w) {
    json_t *md = json_object_get(p, "metadata"), *st = json_object_get(p, "status");
    char phase[96], ready[48], age[32], versions[512] = "";
    phase_text(p, phase, sizeof(phase));
    long long enabled = 0, nready = 0;
    size_t i, o = 0;
    json_t *c;
    json_array_foreach(components_of(p), i, c) {
        if (!comp_enabled(c)) continue;
        enabled++;
        if (strcmp(jstr(c, "state", ""), "Ready") == 0) nready++;
        if (o < sizeof(versions) - 1)
            o += str_fmt_cut(versions + o, sizeof(versions) - o, "%s%s=%s", o ? "," : "",
                             jstr(c, "name", "?"), jstr(c, "version", "?"));
    }
    str_fmt_cut(ready, sizeof(ready), "%lld/%lld", nready, enabled);
    age_since(jstr(md, "creationTimestamp", NULL), age, sizeof(age));
    json_t *av = condition(st, "Available");
    const char *cells[7] = {jstr(md, "name", "?"), phase, ready, av ? jstr(av, "status", "Unknown") : "-",
                            age};
    if (w) {
        cells[5] = o ? versions : "-";
        cells[6] = jstr(st, "message", "");
    }
    table_add(t, cells);
}

/* ---- describe platform ---- */

/* "a=1, b=2" of an object of versions. */
static void versions_text(json_t *m, char *buf, size_t len) {
    const char *k;
    json_t *v;
    size_t o = 0;
    buf[0] = '\0';
    json_object_foreach(m, k, v) {
        if (o >= len - 1) break;
        o += str_fmt_cut(buf + o, len - o, "%s%s %s", o ? ", " : "", k,
                         json_is_string(v) ? json_string_value(v) : "?");
    }
    if (o == 0) str_copy(buf, len, "-");
}

/* The newest max events of the platform (the events endpoint pages oldest
 * first: read to the end, keep the last ones; bounded). */
static json_t *recent_events(const char *name, size_t max) {
    char path[768], *e = url_escape(name);
    json_t *items = json_array();
    int64_t since = 0;
    for (int page = 0; page < 1024; page++) {
        fmt_or_die(path, sizeof(path), "request path",
                   "/v1/events?kind=ObservabilityPlatform&name=%s&limit=256&since=%lld", e, (long long)since);
        long status;
        json_t *pg = call("GET", path, NULL, &status, true);
        if (status >= 400) { /* a stampd without the kind's events: the page goes on without them */
            json_decref(pg);
            break;
        }
        json_t *got = json_object_get(pg, "items");
        size_t n = json_array_size(got);
        json_array_extend(items, got);
        while (json_array_size(items) > max) json_array_remove(items, 0);
        int64_t next = jint(pg, "next", since);
        json_decref(pg);
        if (n < 256 || next <= since) break;
        since = next;
    }
    free(e);
    return items;
}

/* Long: one section of the page after the other, in display order. */
void describe_platform(json_t *p) {
    json_t *md = json_object_get(p, "metadata"), *sp = json_object_get(p, "spec"),
           *st = json_object_get(p, "status");
    char a[FMT_DURATION_LEN], tb[48], buf[1024];
    const char *name = jstr(md, "name", "?");
    printf("Name:         %s\n", name);
    printf("API version:  %s\n", jstr(p, "apiVersion", "?"));
    int64_t since = jint(st, "phaseSince", 0);
    if (since > 0)
        printf("Phase:        %s (for %s, since %s)\n", jstr(st, "phase", "Pending"),
               fmt_duration(now_ms() - since, a, sizeof(a)), fmt_time_rfc3339(since, tb, sizeof(tb)));
    else
        printf("Phase:        %s%s\n", jstr(st, "phase", "Pending"),
               json_object_size(st) == 0 ? " (not reconciled yet)" : "");
    if (json_object_get(st, "message")) printf("Message:      %s\n", jstr(st, "message", ""));
    printf("Paused:       %s\n", json_is_true(json_object_get(sp, "paused")) ? "yes (nothing is touched until resume)" : "no");
    printf("Runtime:      %s\n", jstr(sp, "runtime", "local"));
    printf("Generation:   %lld (observed %s)\n", (long long)jint(md, "generation", 0),
           json_object_get(st, "observedGeneration") ? (str_fmt_cut(buf, sizeof(buf), "%lld",
                                                                    (long long)jint(st, "observedGeneration", 0)),
                                                        buf)
                                                     : "not yet");
    if (json_object_get(md, "deletionTimestamp"))
        printf("Deletion:     requested %s; the components are being uninstalled%s\n",
               jstr(md, "deletionTimestamp", ""),
               json_is_true(json_object_get(sp, "keepVolumes")) ? " (their data dirs are kept)" : "");

    json_t *conds = json_object_get(st, "conditions");
    if (json_array_size(conds) > 0) {
        printf("\nConditions:\n");
        static const char *const h[] = {"  TYPE", "STATUS", "REASON", "MESSAGE", "LAST-TRANSITION"};
        table *t = table_new(5, h);
        size_t i;
        json_t *c;
        json_array_foreach(conds, i, c) {
            char type[64], lt[48];
            str_fmt_cut(type, sizeof(type), "  %s", jstr(c, "type", ""));
            const char *cells[] = {type, jstr(c, "status", ""), jstr(c, "reason", ""), jstr(c, "message", ""),
                                   time_text(json_object_get(c, "lastTransitionTime"), lt, sizeof(lt))};
            table_add(t, cells);
        }
        render_table(t);
    }

    json_t *comps = components_of(p);
    if (json_array_size(comps) > 0) {
        bool observed = json_array_size(json_object_get(st, "components")) > 0;
        printf("\nComponents%s:\n", observed ? "" : " (as the spec asks; not reconciled yet)");
        static const char *const h[] = {"  NAME", "STATE", "VERSION", "ENDPOINT", "PID", "RESTARTS", "LAST-ERROR"};
        table *t = table_new(7, h);
        size_t i;
        json_t *c;
        json_array_foreach(comps, i, c) {
            char nm[64], pid[24], rs[24];
            str_fmt_cut(nm, sizeof(nm), "  %s", jstr(c, "name", "?"));
            if (jint(c, "pid", 0) > 0) str_fmt_cut(pid, sizeof(pid), "%lld", (long long)jint(c, "pid", 0));
            else str_copy(pid, sizeof(pid), "-");
            str_fmt_cut(rs, sizeof(rs), "%lld", (long long)jint(c, "restarts", 0));
            const char *state = !comp_enabled(c) ? "Disabled" : jstr(c, "state", observed ? "?" : "Pending");
            const char *cells[] = {nm, state, jstr(c, "version", "(catalog default)"), jstr(c, "endpoint", "-"),
                                   pid, rs, jstr(c, "lastError", "")};
            table_add(t, cells);
        }
        render_table(t);
    }

    json_t *up = json_object_get(st, "upgrade");
    if (json_is_object(up)) {
        char from[512], to[512];
        versions_text(json_object_get(up, "from"), from, sizeof(from));
        versions_text(json_object_get(up, "to"), to, sizeof(to));
        printf("\nUpgrade:      %s -> %s\n", from, to);
        if (json_object_get(up, "step")) printf("  Step:       %s\n", jstr(up, "step", ""));
        if (json_object_get(up, "backup")) printf("  Backup:     %s\n", jstr(up, "backup", ""));
        if (json_object_get(up, "startedAt"))
            printf("  Started:    %s\n", time_text(json_object_get(up, "startedAt"), tb, sizeof(tb)));
        json_t *rb = json_object_get(up, "rolledBack");
        if (json_is_object(rb))
            printf("  Rolled back at %s: %s\n", time_text(json_object_get(rb, "at"), tb, sizeof(tb)),
                   jstr(rb, "reason", ""));
    }
    json_t *lg = json_object_get(st, "lastGood");
    if (json_is_object(lg)) {
        versions_text(json_object_get(lg, "versions"), buf, sizeof(buf));
        printf("Last good:    generation %lld: %s\n", (long long)jint(lg, "generation", 0), buf);
    }
    json_t *rt = json_object_get(st, "retry");
    if (json_is_object(rt) && jint(rt, "attempts", 0) > 0) {
        json_t *mx = json_object_get(json_object_get(sp, "retry"), "maxRetries");
        char of[32] = "";
        if (json_is_integer(mx)) str_fmt_cut(of, sizeof(of), " of %lld", (long long)json_integer_value(mx));
        printf("Retry:        attempt %lld%s%s%s%s, next at %s\n", (long long)jint(rt, "attempts", 0), of,
               json_object_get(rt, "category") ? " (" : "", jstr(rt, "category", ""),
               json_object_get(rt, "category") ? " error)" : "",
               time_text(json_object_get(rt, "nextAt"), tb, sizeof(tb)));
        if (json_object_get(rt, "lastError")) printf("  Last error: %s\n", jstr(rt, "lastError", ""));
    }

    json_t *evs = recent_events(name, 10);
    printf("\nEvents:%s\n", json_array_size(evs) ? "" : " <none>");
    if (json_array_size(evs) > 0) {
        static const char *const h[] = {"  TIME", "TYPE", "REASON", "MESSAGE"};
        table *t = table_new(4, h);
        size_t i;
        json_t *ev;
        json_array_foreach(evs, i, ev) {
            char tm[64];
            str_fmt_cut(tm, sizeof(tm), "  %s", jstr(ev, "time", ""));
            const char *cells[] = {tm, jstr(ev, "type", ""), jstr(ev, "reason", ""), jstr(ev, "message", "")};
            table_add(t, cells);
        }
        render_table(t);
    }
    json_decref(evs);
}

/* ---- platform pause | resume ---- */

static int verb(opts *o, const char *action) {
    char path[512], *e = url_escape(o->pos[0]);
    fmt_or_die(path, sizeof(path), "request path", PLATFORMS_PATH "%s/%s", e, action);
    free(e);
    json_t *r = call("POST", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    json_decref(r);
    if (strcmp(action, "pause") == 0)
        printf("platform/%s paused (stampd touches none of its components until resume)\n", o->pos[0]);
    else
        printf("platform/%s resumed\n", o->pos[0]);
    return 0;
}

int cmd_platform_pause(opts *o) { return verb(o, "pause"); }
int cmd_platform_resume(opts *o) { return verb(o, "resume"); }

/* ---- delete platform NAME [--wait] ---- */

static json_t *get_platform(const char *name, long *status) {
    char path[512], *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", PLATFORMS_PATH "%s", e);
    free(e);
    return call("GET", path, NULL, status, true);
}

/* One line of progress: the phase and what is still installed. */
static void progress_line(json_t *p, const char *name, char *buf, size_t len) {
    json_t *st = json_object_get(p, "status");
    char phase[96];
    phase_text(p, phase, sizeof(phase));
    size_t o = str_fmt_cut(buf, len, "%s: %s", name, phase);
    size_t i, n = 0;
    json_t *c;
    json_array_foreach(json_object_get(st, "components"), i, c) {
        if (o >= len - 1) break;
        o += str_fmt_cut(buf + o, len - o, "%s%s %s", n++ ? ", " : " (", jstr(c, "name", "?"),
                         jstr(c, "state", "?"));
    }
    if (n && o < len - 1) o += str_fmt_cut(buf + o, len - o, ")");
    if (json_object_get(st, "message") && o < len - 1) str_fmt_cut(buf + o, len - o, ": %s", jstr(st, "message", ""));
}

int platform_delete(opts *o, const char *name) {
    if (flag(o, "force") || flag(o, "skip-fleet-check") || flag(o, "dry-run"))
        usage_die(o, "deleting a platform takes no --force, --skip-fleet-check or --dry-run");
    if (flag(o, "timeout") && !flag(o, "wait")) usage_die(o, "--timeout is how long --wait waits; give --wait");
    if (flag(o, "wait") && structured(o)) usage_die(o, "--wait prints its progress; leave out -o");
    char path[512], *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", PLATFORMS_PATH "%s", e);
    free(e);
    json_t *r = call("DELETE", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    json_decref(r);
    long status;
    json_t *p = get_platform(name, &status);
    if (status == 404) {
        json_decref(p);
        printf("platform/%s deleted\n", name);
        return 0;
    }
    if (status >= 400) die("%s", error_message(p) ? error_message(p) : "request failed");
    if (!flag(o, "wait")) {
        json_decref(p);
        printf("platform/%s marked for deletion: its components are being uninstalled, then the record goes "
               "(stampctl get platforms %s; --wait follows it)\n", name, name);
        return 0;
    }
    int64_t timeout = 15 * 60000;
    if (flag(o, "timeout")) parse_duration_ms(flag(o, "timeout"), &timeout); /* the parser checked it */
    int64_t start = mono_ms();
    char last[1024] = "", line[1024], a[FMT_DURATION_LEN];
    for (;;) {
        if (status == 404) {
            printf("[%6s] %s: gone\n", fmt_duration(mono_ms() - start, a, sizeof(a)), name);
            json_decref(p);
            return 0;
        }
        if (status >= 400) {
            char msg[512];
            str_copy(msg, sizeof(msg), error_message(p) ? error_message(p) : "request failed");
            json_decref(p);
            die("%s", msg);
        }
        progress_line(p, name, line, sizeof(line));
        json_decref(p);
        if (strcmp(line, last) != 0) {
            printf("[%6s] %s\n", fmt_duration(mono_ms() - start, a, sizeof(a)), line);
            fflush(stdout);
            str_copy(last, sizeof(last), line);
        }
        if (mono_ms() - start > timeout)
            die("timed out after %s waiting for platform %s to be gone (%s); it is still being deleted",
                fmt_duration(timeout, a, sizeof(a)), name, last);
        sleep_ms(500);
        p = get_platform(name, &status);
    }
}
