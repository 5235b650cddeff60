/*
 * stampctl.c - the command-line client: a thin client of stampd's API, as
 * kubectl is of the Kubernetes API.  It reads the endpoint and a token from
 * the client config stampd writes ($STAMP_CONFIG, else
 * ~/.config/stamp/config), or from --server and --token.
 *
 * Commands are a table.  Every command exits 0 on success, otherwise
 * non-zero with one line "stampctl: <reason>" on stderr (the server's
 * message when it gave one).
 */
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "cli/cli_output.h"
#include "cli/stampctl.h"
#include "util/httpc.h"
#include "util/util.h"
#include "util/yamljson.h"

static char g_server[512], g_token[JWT_MAX_LEN + 1];
long http_timeout_ms = 30000;

const char *flag(const opts *o, const char *name) {
    for (int i = o->nflags - 1; i >= 0; i--)
        if (strcmp(o->fname[i], name) == 0) return o->fval[i];
    return NULL;
}

int nflag(const opts *o, const char *name, const char **vals, int max) {
    int n = 0;
    for (int i = 0; i < o->nflags && n < max; i++)
        if (strcmp(o->fname[i], name) == 0) vals[n++] = o->fval[i];
    return n;
}

_Noreturn void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("stampctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void load_config(const opts *o) {
    if (o->server) str_copy(g_server, sizeof(g_server), o->server);
    if (o->token) str_copy(g_token, sizeof(g_token), o->token);
    else if (getenv("STAMP_TOKEN") && *getenv("STAMP_TOKEN"))
        str_copy(g_token, sizeof(g_token), getenv("STAMP_TOKEN"));
    if (g_server[0] && g_token[0]) return;
    char path[PATH_MAX];
    const char *env = getenv("STAMP_CONFIG");
    if (o->config) str_copy(path, sizeof(path), o->config);
    else if (env && *env) str_copy(path, sizeof(path), env);
    else snprintf(path, sizeof(path), "%s/.config/stamp/config", getenv("HOME") ? getenv("HOME") : ".");
    char *text;
    size_t len;
    serr e = {0};
    if (read_file(path, 64 * 1024, &text, &len, &e) != 0) {
        if (!g_server[0]) str_copy(g_server, sizeof(g_server), "http://127.0.0.1:7480");
        if (!g_token[0] && e.code != SE_NOTFOUND) die("client config: %s", e.msg);
        return;
    }
    json_t *cfg = NULL;
    if (yaml_to_json(text, len, &cfg, NULL, &e) != 0) die("client config %s: %s", path, e.msg);
    free(text);
    const char *ep = json_string_value(json_object_get(cfg, "endpoint"));
    const char *tk = json_string_value(json_object_get(cfg, "token"));
    if (!g_server[0] && ep) str_copy(g_server, sizeof(g_server), ep);
    if (!g_token[0] && tk) str_copy(g_token, sizeof(g_token), tk);
    json_decref(cfg);
    if (!g_server[0]) str_copy(g_server, sizeof(g_server), "http://127.0.0.1:7480");
}

/* One request with a body of any type; dies when stampd cannot be reached.
 * The caller owns resp. */
long http(const char *method, const char *path, const char *data, size_t len, const char *ctype,
          sbuf *resp) {
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", g_server, path);
    httpc_req rq = {.method = method,
                    .url = url,
                    .bearer = g_token[0] ? g_token : NULL,
                    .body = data,
                    .body_len = len,
                    .content_type = ctype,
                    .max_response = (size_t)128 << 20, /* a 64 MiB log, a long list */
                    .timeout_ms = http_timeout_ms};
    long status = 0;
    serr e = {0};
    if (httpc_do(&rq, &status, resp, &e)) {
        if (e.code == SE_TOOBIG) die("stampd's answer to %s %s is larger than 128 MiB", method, path);
        die("cannot reach stampd at %s: %s", g_server, e.msg);
    }
    return status;
}

/* The server's error message in a JSON error body, or NULL. */
const char *error_message(json_t *j) {
    return json_string_value(json_object_get(json_object_get(j, "error"), "message"));
}

json_t *call_raw(const char *method, const char *path, const char *data, size_t len,
                 const char *ctype, long *status_out, bool allow_error) {
    sbuf resp;
    long status = http(method, path, data, len, ctype, &resp);
    /* A valid answer may carry \u0000 (a NUL a pod wrote): accept it. */
    json_t *j = json_loadb(resp.data ? resp.data : "", resp.len, JSON_ALLOW_NUL, NULL);
    sbuf_free(&resp);
    if (status_out) *status_out = status;
    if (status >= 400 && !allow_error) {
        const char *msg = error_message(j);
        die("%s", msg ? msg : "request failed");
    }
    if (j == NULL && status < 400) die("stampd answered %ld with a body that is not JSON", status);
    return j;
}

/* One API call with a JSON body (or none); dies with the server's message
 * on an error status unless allow_error, in which case *status tells. */
json_t *call(const char *method, const char *path, json_t *body, long *status_out, bool allow_error) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_t *j = call_raw(method, path, text, text ? strlen(text) : 0, NULL, status_out, allow_error);
    free(text);
    return j;
}

void print_json_or_yaml(json_t *v, const char *fmt) {
    if (strcmp(fmt, "yaml") == 0) {
        char *y = NULL;
        serr e = {0};
        if (json_to_yaml(v, &y, &e) != 0) die("yaml: %s", e.msg);
        fputs(y, stdout);
        free(y);
        return;
    }
    char *t = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    puts(t ? t : "null");
    free(t);
}

bool structured(const opts *o) {
    return o->output && (strcmp(o->output, "json") == 0 || strcmp(o->output, "yaml") == 0);
}

/* -o json|yaml: print r as asked and release it. */
bool printed_structured(const opts *o, json_t *r) {
    if (!structured(o)) return false;
    print_json_or_yaml(r, o->output);
    json_decref(r);
    return true;
}

static const char *need_name(const opts *o, const char *cmd) {
    if (o->npos < 1) die("%s needs a stamp name", cmd);
    if (o->npos > 1) die("%s takes one stamp name", cmd);
    return o->pos[0];
}

void render_table(table *t) {
    sbuf b;
    sbuf_init(&b, 64u << 20);
    if (table_render(t, &b) != 0) die("table too large");
    fputs(b.data ? b.data : "", stdout);
    sbuf_free(&b);
    table_free(t);
}

static void age_of(json_t *st, const char *key, char *buf, size_t len) {
    int64_t t = jint(st, key, 0);
    if (t == 0) str_copy(buf, len, "-");
    else fmt_age(now_ms() - t, buf, len);
}

/* ---- commands ---- */

static int cmd_deploy(opts *o) {
    const char *region = flag(o, "region"), *sid = flag(o, "stamp-id"), *tpl = flag(o, "template");
    if (!region || !sid || !tpl) die("deploy needs --region, --stamp-id and --template");
    json_t *body = json_pack("{s:s,s:s,s:s}", "region", region, "stampId", sid, "template", tpl);
    const char *params[MAX_ARGS];
    int np = nflag(o, "param", params, MAX_ARGS);
    if (np) {
        json_t *p = json_object();
        for (int i = 0; i < np; i++) {
            const char *eq = strchr(params[i], '=');
            if (eq == NULL) die("--param %s: expected KEY=VALUE", params[i]);
            char key[128];
            size_t kl = (size_t)(eq - params[i]);
            if (kl >= sizeof(key)) die("--param %s: name too long", params[i]);
            memcpy(key, params[i], kl);
            key[kl] = '\0';
            json_object_set_new(p, key, json_string(eq + 1));
        }
        json_object_set_new(body, "parameters", p);
    }
    long status;
    json_t *r = call("POST", "/v1/stamps", body, &status, false);
    json_decref(body);
    if (structured(o)) print_json_or_yaml(r, o->output);
    else
        printf("stamp/%s %s (phase %s)\n", jstr(json_object_get(r, "metadata"), "name", "?"),
               status == 201 ? "created" : "redeploying",
               jstr(json_object_get(r, "status"), "phase", "?"));
    json_decref(r);
    return 0;
}

/* Age from an RFC 3339 UTC timestamp as the store writes it. */
void age_since(const char *ts, char *buf, size_t len) {
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    if (ts == NULL || sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6) {
        str_copy(buf, len, "-");
        return;
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    fmt_age(now_ms() - (int64_t)timegm(&tm) * 1000, buf, len);
}

static void stamp_row(table *t, json_t *s, bool wide) {
    json_t *md = json_object_get(s, "metadata"), *sp = json_object_get(s, "spec"),
           *st = json_object_get(s, "status");
    char age[32], pa[32], pools[64], attempt[16];
    age_of(st, "phaseSince", pa, sizeof(pa));
    age_since(jstr(md, "creationTimestamp", NULL), age, sizeof(age));
    json_t *p = json_object_get(st, "pools");
    snprintf(pools, sizeof(pools), "%lld/%lld/%lld", (long long)jint(p, "system", 0),
             (long long)jint(p, "general", 0), (long long)jint(p, "gpu", 0));
    snprintf(attempt, sizeof(attempt), "%lld", (long long)jint(st, "attempt", 1));
    const char *cells[10] = {jstr(md, "name", "?"), jstr(sp, "region", "?"),
                             jstr(st, "phase", "?"), jstr(st, "endpoint", "-"), pa, age};
    if (wide) {
        cells[6] = jstr(sp, "template", "-");
        cells[7] = pools;
        cells[8] = attempt;
        cells[9] = jstr(st, "waitingFor", jstr(st, "message", ""));
    }
    table_add(t, cells);
}

static int cmd_list(opts *o) {
    char path[512] = "/v1/stamps";
    const char *state = flag(o, "state"), *region = flag(o, "region");
    size_t n = strlen(path);
    if (state) n += (size_t)snprintf(path + n, sizeof(path) - n, "%sstate=%s", "?", state);
    if (region) snprintf(path + n, sizeof(path) - n, "%sregion=%s", state ? "&" : "?", region);
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    bool wide = o->output && strcmp(o->output, "wide") == 0;
    static const char *const h[] = {"NAME", "REGION", "PHASE", "ENDPOINT", "IN PHASE", "AGE",
                                    "TEMPLATE", "POOLS(S/G/GPU)", "ATTEMPT", "MESSAGE"};
    table *t = table_new(wide ? 10 : 6, h);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(r, "items"), i, s) stamp_row(t, s, wide);
    if (json_array_size(json_object_get(r, "items")) == 0) {
        table_free(t);
        puts("No stamps found.");
    } else {
        render_table(t);
    }
    json_decref(r);
    return 0;
}

static json_t *get_stamp(const char *name) {
    char path[512];
    snprintf(path, sizeof(path), "/v1/stamps/%s", name);
    return call("GET", path, NULL, NULL, false);
}

static void print_drain(json_t *dr, bool live) {
    char a[32];
    int64_t now = now_ms();
    if (!live) {
        printf("Drain:        %s after %s, dropped %lld connection(s) and %lld job(s)\n",
               json_is_true(json_object_get(dr, "forced")) ? "forced" : "completed",
               fmt_duration(jint(dr, "endedMs", now) - jint(dr, "startedMs", now), a, sizeof(a)),
               (long long)jint(dr, "droppedConnections", 0), (long long)jint(dr, "droppedJobs", 0));
        return;
    }
    printf("Drain:        waiting for %lld connection(s) and %lld job(s), then %s\n",
           (long long)jint(dr, "connections", 0), (long long)jint(dr, "jobs", 0),
           jstr(dr, "target", "Ready"));
    if (json_object_get(dr, "frontdoorSessions"))
        printf("  front door   %lld session(s), %lld queued (HAProxy, server in drain)\n",
               (long long)jint(dr, "frontdoorSessions", 0), (long long)jint(dr, "frontdoorQueue", 0));
    printf("  workload     %lld connection(s), %lld job(s) (its /metrics)\n",
           (long long)jint(dr, "connections", 0), (long long)jint(dr, "jobs", 0));
    static const struct {
        const char *key, *label;
    } clocks[] = {{"deadlineConnectionsMs", "connections"},
                  {"deadlineJobsMs", "jobs"},
                  {"deadlineTotalMs", "total"}};
    for (size_t i = 0; i < 3; i++) {
        int64_t d = jint(dr, clocks[i].key, 0);
        if (d) printf("  %-12s %s left\n", clocks[i].label, fmt_duration(d - now, a, sizeof(a)));
    }
}

static int cmd_status(opts *o) {
    json_t *r = get_stamp(need_name(o, "status"));
    if (printed_structured(o, r)) return 0;
    json_t *md = json_object_get(r, "metadata"), *sp = json_object_get(r, "spec"),
           *st = json_object_get(r, "status");
    char a[32];
    const char *phase = jstr(st, "phase", "?");
    printf("Name:         %s\n", jstr(md, "name", "?"));
    printf("Region:       %s (%s)\n", jstr(sp, "region", "?"), jstr(sp, "regionCode", "?"));
    printf("Template:     %s\n", jstr(sp, "template", "?"));
    printf("Phase:        %s (for %s)\n", phase, fmt_duration(now_ms() - jint(st, "phaseSince", now_ms()), a, sizeof(a)));
    printf("Desired:      %s\n", jstr(sp, "desired", "active"));
    printf("Endpoint:     %s\n", jstr(st, "endpoint", "-"));
    json_t *p = json_object_get(st, "pools");
    printf("Pools:        system=%lld general=%lld gpu=%lld\n", (long long)jint(p, "system", 0),
           (long long)jint(p, "general", 0), (long long)jint(p, "gpu", 0));
    printf("Attempt:      %lld\n", (long long)jint(st, "attempt", 1));
    if (json_object_get(st, "waitingFor")) printf("Waiting for:  %s\n", jstr(st, "waitingFor", ""));
    if (json_object_get(st, "lastError")) printf("Last error:   %s\n", jstr(st, "lastError", ""));
    if (json_object_get(st, "frontdoor")) printf("Front door:   %s\n", jstr(st, "frontdoor", ""));
    json_t *hs = json_object_get(st, "health");
    if (json_is_object(hs) && strcmp(phase, "Active") == 0) {
        json_t *rec = json_object_get(hs, "recovery");
        printf("Health:       %s, %s rotation, %lld recovery(ies)%s%s (%s)\n",
               jint(hs, "healthy", 1) ? "healthy" : "unhealthy",
               json_is_false(json_object_get(hs, "inRotation")) ? "out of" : "in",
               (long long)jint(hs, "recoveries", 0), json_is_object(rec) ? "; recovering by " : "",
               json_is_object(rec) ? jstr(rec, "action", "") : "", jstr(hs, "source", "default"));
    }
    json_t *dr = json_object_get(st, "drain");
    if (json_is_object(dr)) print_drain(dr, strcmp(phase, "Draining") == 0);
    json_t *rt = json_object_get(st, "retire");
    if (json_is_object(rt)) {
        int64_t step = jint(rt, "step", 0);
        static const char *const names[] = {"backup", "quarantine", "decommission", "archive", "purge"};
        printf("Retirement:  ");
        for (int i = 0; i < 5; i++)
            printf(" %s[%s]", names[i], i < step ? "done" : i == step ? "running" : "pending");
        printf("\n");
        json_t *ar = json_object_get(rt, "archive");
        if (ar) printf("Archive:      %s (%lld files, kept until %s)\n", jstr(ar, "path", "?"),
                       (long long)jint(ar, "files", 0),
                       fmt_time_rfc3339(jint(ar, "retainUntilMs", 0), a, sizeof(a)));
    }
    json_t *steps = json_object_get(st, "steps");
    if (json_array_size(steps) > 0) {
        printf("Steps:\n");
        static const char *const h[] = {"  PHASE", "STEP", "KIND", "STATE", "MESSAGE"};
        table *t = table_new(5, h);
        size_t i;
        json_t *s;
        json_array_foreach(steps, i, s) {
            char ph[48];
            snprintf(ph, sizeof(ph), "  %s", jstr(s, "phase", ""));
            const char *cells[] = {ph, jstr(s, "name", ""), jstr(s, "kind", ""),
                                   jstr(s, "state", ""), jstr(s, "message", "")};
            table_add(t, cells);
        }
        render_table(t);
    }
    json_t *bk = json_object_get(st, "backups");
    if (json_array_size(bk) > 0) {
        printf("Backups:\n");
        size_t i;
        json_t *b;
        json_array_foreach(bk, i, b)
            printf("  %s  %s  %lld files  %lld bytes  %s\n", jstr(b, "id", ""), jstr(b, "reason", ""),
                   (long long)jint(b, "files", 0), (long long)jint(b, "bytes", 0), jstr(b, "path", ""));
    }
    printf("Message:      %s\n", jstr(st, "message", ""));
    json_decref(r);
    return 0;
}

static int action(opts *o, const char *verb) {
    const char *name = need_name(o, verb);
    json_t *body = json_object();
    if (flag(o, "force")) json_object_set_new(body, "force", json_true());
    if (flag(o, "skip-fleet-check")) json_object_set_new(body, "skipFleetCheck", json_true());
    const char *g = flag(o, "grace-period");
    if (g) json_object_set_new(body, "gracePeriod", json_string(g));
    char path[512];
    snprintf(path, sizeof(path), "/v1/stamps/%s/%s", name, verb);
    json_t *r = call("POST", path, body, NULL, false);
    json_decref(body);
    if (structured(o)) print_json_or_yaml(r, o->output);
    else
        printf("stamp/%s: %s%s requested (phase %s)\n", name, verb, flag(o, "force") ? " --force" : "",
               jstr(json_object_get(r, "status"), "phase", "?"));
    json_decref(r);
    return 0;
}

static int cmd_drain(opts *o) { return action(o, "drain"); }
static int cmd_activate(opts *o) { return action(o, "activate"); }
static int cmd_standby(opts *o) { return action(o, "standby"); }
static int cmd_delete(opts *o) { return action(o, "delete"); }
static int cmd_backup(opts *o) { return action(o, "backup"); }

static int cmd_wait(opts *o) {
    const char *name = need_name(o, "wait");
    const char *target = flag(o, "for");
    if (target == NULL) die("wait needs --for=STATE (creating, active, draining, ready, deleted, failed)");
    int64_t timeout = 60000;
    const char *t = flag(o, "timeout");
    if (t && (parse_duration_ms(t, &timeout) != 0 || timeout <= 0)) die("--timeout %s: not a duration", t);
    int64_t start = mono_ms();
    char last[512] = "";
    for (;;) {
        char path[512];
        snprintf(path, sizeof(path), "/v1/stamps/%s", name);
        long status;
        json_t *r = call("GET", path, NULL, &status, true);
        if (status == 404 && strcasecmp(target, "deleted") == 0) {
            json_decref(r);
            printf("%s: gone\n", name);
            return 0;
        }
        if (status >= 400) {
            const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
            die("%s", msg ? msg : "request failed");
        }
        json_t *st = json_object_get(r, "status");
        const char *phase = jstr(st, "phase", "?");
        char line[512];
        json_t *step = json_object_get(st, "step");
        json_t *dr = json_object_get(st, "drain");
        json_t *rt = json_object_get(st, "retire");
        if (strcmp(phase, "Creating") == 0 && step)
            snprintf(line, sizeof(line), "%s: Creating (attempt %lld, step %s/%s%s%s)", name,
                     (long long)jint(st, "attempt", 1), jstr(step, "phase", ""), jstr(step, "name", ""),
                     json_object_get(st, "waitingFor") ? "; waiting for " : "",
                     jstr(st, "waitingFor", ""));
        else if (strcmp(phase, "Creating") == 0 || (strcmp(phase, "Ready") == 0 && json_object_get(st, "waitingFor") && json_object_get(st, "activation")))
            snprintf(line, sizeof(line), "%s: %s (waiting for %s)", name, phase, jstr(st, "waitingFor", "deployment"));
        else if (strcmp(phase, "Draining") == 0 && dr)
            snprintf(line, sizeof(line), "%s: Draining (%lld connection(s), %lld job(s) left)", name,
                     (long long)jint(dr, "connections", 0), (long long)jint(dr, "jobs", 0));
        else if (strcmp(phase, "Deleting") == 0 && rt)
            snprintf(line, sizeof(line), "%s: Deleting (step %s)", name, jstr(rt, "current", "backup"));
        else
            snprintf(line, sizeof(line), "%s: %s", name, phase);
        if (strcmp(line, last) != 0) {
            char a[32];
            printf("[%6s] %s\n", fmt_duration(mono_ms() - start, a, sizeof(a)), line);
            fflush(stdout);
            str_copy(last, sizeof(last), line);
        }
        if (strcasecmp(phase, target) == 0) {
            json_decref(r);
            return 0;
        }
        bool terminal = strcmp(phase, "Deleted") == 0 || strcmp(phase, "Failed") == 0;
        if (terminal) {
            char msg[512], ph[32];
            str_copy(msg, sizeof(msg), jstr(st, "message", ""));
            str_copy(ph, sizeof(ph), phase);
            json_decref(r);
            die("%s is %s, not %s: %s", name, ph, target, msg);
        }
        json_decref(r);
        if (mono_ms() - start > timeout) {
            char a[32];
            die("timed out after %s waiting for %s to be %s (%s)", fmt_duration(timeout, a, sizeof(a)),
                name, target, line);
        }
        sleep_ms(200);
    }
}

static int cmd_events(opts *o) {
    const char *name = need_name(o, "events");
    char path[512];
    snprintf(path, sizeof(path), "/v1/stamps/%s/events", name);
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    static const char *const h[] = {"TIME", "TYPE", "REASON", "MESSAGE"};
    table *t = table_new(4, h);
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(r, "items"), i, ev) {
        const char *cells[] = {jstr(ev, "time", ""), jstr(ev, "type", ""), jstr(ev, "reason", ""),
                               jstr(ev, "message", "")};
        table_add(t, cells);
    }
    render_table(t);
    json_decref(r);
    return 0;
}

static int cmd_health(opts *o) {
    const char *name = need_name(o, "health");
    char path[512], a[32], b[32];
    snprintf(path, sizeof(path), "/v1/stamps/%s/health", name);
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    json_t *hs = json_object_get(r, "status"), *rec = json_object_get(r, "recovery");
    printf("Stamp:        %s (%s)\n", name, jstr(r, "phase", "?"));
    printf("Checks:       %s\n", jstr(r, "source", "default"));
    printf("Front door:   %s\n", jstr(r, "frontdoor", "none"));
    printf("Recovery:     %s, action %s, max %lld retries; %lld used\n",
           json_is_true(json_object_get(rec, "enabled")) ? "enabled" : "disabled",
           jstr(rec, "action", "?"), (long long)jint(rec, "maxRetries", 0),
           (long long)jint(hs, "recoveries", 0));
    static const char *const h[] = {"CHECK", "TYPE", "STATE", "PASSES", "FAILS", "LATENCY",
                                    "LAST RUN", "TARGET", "LAST ERROR"};
    table *t = table_new(9, h);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r, "checks"), i, c) {
        char passes[32], fails[32], lat[32], last[40];
        snprintf(passes, sizeof(passes), "%lld/%lld", (long long)jint(c, "passes", 0),
                 (long long)jint(c, "healthyThreshold", 0));
        snprintf(fails, sizeof(fails), "%lld/%lld", (long long)jint(c, "fails", 0),
                 (long long)jint(c, "unhealthyThreshold", 0));
        snprintf(lat, sizeof(lat), "%lldms", (long long)jint(c, "latencyMs", 0));
        int64_t lm = jint(c, "lastMs", 0);
        if (lm) snprintf(last, sizeof(last), "%s ago", fmt_duration(now_ms() - lm, a, sizeof(a)));
        else snprintf(last, sizeof(last), "never");
        (void)b;
        const char *cells[] = {jstr(c, "name", ""), jstr(c, "type", ""), jstr(c, "state", ""), passes,
                               fails, lm ? lat : "-", last, jstr(c, "target", ""),
                               jstr(c, "lastError", "")};
        table_add(t, cells);
    }
    render_table(t);
    json_decref(r);
    return 0;
}

static int cmd_metrics(opts *o) {
    const char *name = need_name(o, "metrics");
    const char *period = flag(o, "period");
    char path[512], a[32];
    snprintf(path, sizeof(path), "/v1/stamps/%s/metrics?period=%s", name, period ? period : "1h");
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    printf("Stamp:        %s (%s), last %s\n", name, jstr(r, "phase", "?"),
           fmt_duration(jint(r, "periodMs", 0), a, sizeof(a)));
    printf("Transitions:  %lld\n", (long long)jint(r, "transitionsTotal", 0));
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(r, "transitions"), k, v)
        printf("  %-24s %lld\n", k, (long long)json_integer_value(v));
    printf("Time in phase:\n");
    json_object_foreach(json_object_get(r, "timeInPhaseMs"), k, v)
        printf("  %-24s %s\n", k, fmt_duration(json_integer_value(v), a, sizeof(a)));
    static const char *const lists[][2] = {{"drains", "Drains"}, {"activations", "Activations"}};
    for (size_t l = 0; l < 2; l++) {
        json_t *arr = json_object_get(r, lists[l][0]);
        printf("%-14s%zu", lists[l][1], json_array_size(arr));
        size_t i;
        json_t *d;
        json_array_foreach(arr, i, d) printf("%s%s", i ? ", " : ": ",
                                             fmt_duration(jint(d, "durationMs", 0), a, sizeof(a)));
        printf("\n");
    }
    json_t *fd = json_object_get(r, "frontdoor");
    if (json_is_object(fd) && json_object_get(fd, "currentSessions")) {
        printf("Front door:   %s; %lld session(s) now, %lld queued; %lld session(s)/s; %lld request(s), "
               "%lld 5xx, avg response %lldms\n",
               jstr(fd, "status", "?"), (long long)jint(fd, "currentSessions", 0),
               (long long)jint(fd, "queued", 0), (long long)jint(fd, "sessionRate", 0),
               (long long)jint(fd, "requestsTotal", 0), (long long)jint(fd, "responses5xx", 0),
               (long long)jint(fd, "avgResponseMs", 0));
    } else if (json_is_object(fd)) {
        printf("Front door:   %s\n", jstr(fd, "status", "?"));
    } else {
        printf("Front door:   none (traffic driver none)\n");
    }
    json_decref(r);
    return 0;
}

static int cmd_frontdoor(opts *o) {
    json_t *r = call("GET", "/v1/frontdoor", NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    printf("Driver:       %s\n", jstr(r, "driver", "?"));
    if (json_object_get(r, "servers")) {
        printf("Listen:       %s\n", jstr(r, "listen", "-"));
        printf("Admin socket: %s (backend %s)\n", jstr(r, "adminSocket", "?"), jstr(r, "backend", "?"));
        printf("All unhealthy: %s\n", jstr(r, "allUnhealthyPolicy", "?"));
        static const char *const h[] = {"SERVER", "STATUS", "SESSIONS", "QUEUED", "TOTAL", "RATE/S", "REQUESTS"};
        table *t = table_new(7, h);
        size_t i;
        json_t *sv;
        json_array_foreach(json_object_get(r, "servers"), i, sv) {
            char c[5][32];
            snprintf(c[0], 32, "%lld", (long long)jint(sv, "currentSessions", 0));
            snprintf(c[1], 32, "%lld", (long long)jint(sv, "queued", 0));
            snprintf(c[2], 32, "%lld", (long long)jint(sv, "sessionsTotal", 0));
            snprintf(c[3], 32, "%lld", (long long)jint(sv, "sessionRate", 0));
            snprintf(c[4], 32, "%lld", (long long)jint(sv, "requestsTotal", 0));
            const char *cells[] = {jstr(sv, "name", ""), jstr(sv, "status", ""), c[0], c[1], c[2], c[3], c[4]};
            table_add(t, cells);
        }
        render_table(t);
    }
    json_decref(r);
    return 0;
}

static int cmd_apply(opts *o) {
    const char *file = flag(o, "f");
    if (file == NULL) die("apply needs -f FILE (YAML or JSON; - for stdin)");
    char *text;
    size_t len;
    serr e = {0};
    int rc = strcmp(file, "-") == 0 ? read_file("/dev/stdin", MANIFEST_MAX_BYTES, &text, &len, &e)
                                    : read_file(file, MANIFEST_MAX_BYTES, &text, &len, &e);
    if (rc) die("%s", e.msg);
    json_t *doc;
    int multi = 0;
    if (yaml_to_json(text, len, &doc, &multi, &e) != 0) die("%s: %s", file, e.msg);
    free(text);
    json_t *docs = multi ? doc : json_pack("[O]", doc);
    if (!multi) json_decref(doc);
    size_t i;
    json_t *d;
    int failures = 0;
    json_array_foreach(docs, i, d) {
        if (json_is_null(d)) continue;
        long status;
        json_t *r = call("POST", "/v1/apply", d, &status, true);
        if (status >= 400) {
            const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
            fprintf(stderr, "stampctl: %s: %s\n", file, msg ? msg : "apply failed");
            failures++;
        } else {
            char kind[64];
            str_copy(kind, sizeof(kind), jstr(r, "kind", "?"));
            for (char *p = kind; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
            printf("%s/%s %s\n", kind, jstr(r, "name", "?"), jstr(r, "result", "?"));
        }
        json_decref(r);
    }
    json_decref(docs);
    return failures ? 1 : 0;
}

static int cmd_templates(opts *o) {
    char path[512] = "/v1/templates";
    if (o->npos == 1) snprintf(path, sizeof(path), "/v1/templates/%s", o->pos[0]);
    json_t *r = call("GET", path, NULL, NULL, false);
    if (structured(o) || o->npos == 1) {
        print_json_or_yaml(r, o->output && *o->output ? o->output : "yaml");
        json_decref(r);
        return 0;
    }
    static const char *const h[] = {"NAME", "PHASES", "STEPS", "AGE"};
    table *t = table_new(4, h);
    size_t i;
    json_t *tp;
    json_array_foreach(json_object_get(r, "items"), i, tp) {
        json_t *phases = json_object_get(json_object_get(tp, "spec"), "phases");
        char np[16], ns[16];
        size_t steps = 0, k;
        json_t *ph;
        json_array_foreach(phases, k, ph) steps += json_array_size(json_object_get(ph, "steps"));
        snprintf(np, sizeof(np), "%zu", json_array_size(phases));
        snprintf(ns, sizeof(ns), "%zu", steps);
        char age[32];
        age_since(jstr(json_object_get(tp, "metadata"), "creationTimestamp", NULL), age,
                  sizeof(age));
        const char *cells[] = {jstr(json_object_get(tp, "metadata"), "name", "?"), np, ns, age};
        table_add(t, cells);
    }
    render_table(t);
    json_decref(r);
    return 0;
}

static int cmd_audit(opts *o) {
    char path[512];
    snprintf(path, sizeof(path), "/v1/audit?limit=%s%s%s", flag(o, "limit") ? flag(o, "limit") : "50",
             o->npos ? "&name=" : "", o->npos ? o->pos[0] : "");
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    static const char *const h[] = {"TIME", "USER", "TENANT", "OPERATION", "RESOURCE", "RESULT"};
    table *t = table_new(6, h);
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(r, "items"), i, a) {
        char res[200];
        snprintf(res, sizeof(res), "%s/%s", jstr(a, "kind", ""), jstr(a, "name", ""));
        const char *cells[] = {jstr(a, "time", ""), jstr(a, "user", ""), jstr(a, "tenant", ""),
                               jstr(a, "operation", ""), res, jstr(a, "result", "")};
        table_add(t, cells);
    }
    render_table(t);
    json_decref(r);
    return 0;
}

typedef struct command {
    const char *name;
    int (*fn)(opts *o);
    const char *usage;
} command;

static const command commands[] = {
    {"deploy", cmd_deploy, "deploy --region R --stamp-id N --template T [--param K=V]"},
    {"wait", cmd_wait, "wait --for=STATE NAME [--timeout 60s]"},
    {"drain", cmd_drain, "drain NAME [--force] [--grace-period 60m] [--skip-fleet-check]"},
    {"activate", cmd_activate, "activate NAME"},
    {"standby", cmd_standby, "standby NAME [--force] [--skip-fleet-check]"},
    {"delete", cmd_delete, "delete NAME [--force] [--skip-fleet-check]"},
    {"list", cmd_list, "list [--state S] [--region R] [-o json|yaml|wide]"},
    {"status", cmd_status, "status NAME [-o json|yaml]"},
    {"backup", cmd_backup, "backup NAME"},
    {"events", cmd_events, "events NAME [-o json|yaml]"},
    {"health", cmd_health, "health NAME [-o json|yaml]"},
    {"frontdoor", cmd_frontdoor, "frontdoor [-o json|yaml]"},
    {"metrics", cmd_metrics, "metrics NAME [--period=1h] [-o json|yaml]"},
    {"apply", cmd_apply, "apply -f FILE"},
    {"templates", cmd_templates, "templates [NAME] [-o json|yaml]"},
    {"audit", cmd_audit, "audit [NAME] [--limit N]"},
    {"ns", cmd_ns, "ns create BUCKET | list [-A] [--status S] | get NS | activity NS | finalize NS"},
    {"ns", cmd_ns, "ns reap NS [--bucket B] [--dry-run] | reap --dry-run | sweep"},
    {"ns", cmd_ns, "ns pods NS | run-pod NS POD [--volume V] [--env K=V] [-- ARGS...] | logs NS POD"},
    {"ns", cmd_ns, "ns annotate NS POD KEY=VALUE... | volume NS NAME | run NS --bundle H [--set K=V]"},
    {"bundle", cmd_bundle, "bundle push FILE | list"},
    {"runs", cmd_runs, "runs [--bucket B]"},
    {"mttc", cmd_mttc, "mttc verify --bucket B --bundle H"},
    {"token", cmd_token, "token create --tenant T --user U [--role operator] [--ttl 1h]"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f) {
    fprintf(f, "usage: stampctl [--server URL] [--token TOKEN] [--config FILE] COMMAND ...\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  stampctl %s\n", commands[i].usage);
}

/* Flags that take no value. */
static bool is_switch(const char *name) {
    return strcmp(name, "force") == 0 || strcmp(name, "dry-run") == 0 ||
           strcmp(name, "skip-fleet-check") == 0 || strcmp(name, "A") == 0 ||
           strcmp(name, "all-tenants") == 0;
}

int main(int argc, char **argv) {
    opts o = {.output = ""};
    const char *cmd = NULL;
    /* The API carries text: an argument that is not UTF-8 could only be
     * dropped or altered on the way, so it is refused before anything is
     * sent. */
    for (int i = 1; i < argc; i++) {
        if (!utf8_valid(argv[i], strlen(argv[i]))) {
            fprintf(stderr, "stampctl: argument %d is not valid UTF-8 text (the API carries text only)\n", i);
            return 2;
        }
    }
    httpc_global_init();
    bool rest = false; /* after "--", everything is an argument */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!rest && strcmp(a, "--") == 0) {
            rest = true;
            continue;
        }
        if (rest) {
            if (cmd == NULL) cmd = a;
            else if (o.npos < MAX_ARGS) o.pos[o.npos++] = a;
            else die("too many arguments");
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (a[0] == '-' && a[1] != '\0') {
            const char *name = a + (a[1] == '-' ? 2 : 1);
            char key[64];
            const char *eq = strchr(name, '=');
            const char *val = NULL;
            size_t kl = eq ? (size_t)(eq - name) : strlen(name);
            if (kl >= sizeof(key)) die("flag %s too long", a);
            memcpy(key, name, kl);
            key[kl] = '\0';
            if (eq) val = eq + 1;
            else if (is_switch(key)) val = "true";
            else if (i + 1 < argc) val = argv[++i];
            else die("flag %s needs a value", a);
            if (strcmp(key, "server") == 0) o.server = val;
            else if (strcmp(key, "token") == 0) o.token = val;
            else if (strcmp(key, "config") == 0) o.config = val;
            else if (strcmp(key, "o") == 0 || strcmp(key, "output") == 0) {
                if (strcmp(val, "json") && strcmp(val, "yaml") && strcmp(val, "wide"))
                    die("-o %s: expected json, yaml or wide", val);
                o.output = val;
            } else {
                if (o.nflags >= MAX_ARGS) die("too many flags");
                char *k = strdup(key);
                if (k == NULL) die("out of memory");
                o.fname[o.nflags] = k;
                o.fval[o.nflags++] = val;
            }
            continue;
        }
        if (cmd == NULL) cmd = a;
        else if (o.npos < MAX_ARGS) o.pos[o.npos++] = a;
        else die("too many arguments");
    }
    if (cmd == NULL) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, cmd) != 0) continue;
        load_config(&o);
        int rc = commands[i].fn(&o);
        for (int k = 0; k < o.nflags; k++) free((char *)o.fname[k]);
        return rc;
    }
    die("unknown command \"%s\" (stampctl --help lists them)", cmd);
}
