/*
 * stampctl.c - the command-line client: a thin client of stampd's API, as
 * kubectl is of the Kubernetes API.  It reads the endpoint and a token from
 * the client config stampd writes ($STAMP_CONFIG, else
 * ~/.config/stamp/config), or from --server and --token.
 *
 * Commands are a table (below, before main): each row gives the parser
 * (cli_args.c) its words, arguments and typed flags, and the help and
 * completion are made from the same rows.  A usage error (unknown flag,
 * missing value, extra argument, bad enum value, empty or malformed token)
 * exits 2 before any request is sent.  Otherwise a command exits 0 on
 * success, 1 with one line "stampctl: <reason>" on stderr (the server's
 * message when it gave one).
 *
 * --dry-run is server-side, as kubectl's: the request carries ?dryRun=All
 * and the server validates without changing anything.  stampd ignores query
 * parameters it does not know, so a dry run is sent only to a stampd whose
 * GET /version lists the feature "dryRun"; any other stampd gets nothing and
 * the command exits 2.  ns reap --dry-run uses the reap route's own
 * ?dry_run=true, which stampd has always had.
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
#include "cli/cli_args.h"
#include "core/naming.h"
#include "cli/cli_output.h"
#include "cli/stampctl.h"
#include <curl/curl.h>

#include "util/httpc.h"
#include "util/util.h"
#include "util/yamljson.h"

static char g_server[512], g_token[JWT_MAX_LEN + 1];
long http_timeout_ms = 30000;

const char *flag(const opts *o, const char *name) { return ca_get(o, name); }

int nflag(const opts *o, const char *name, const char **vals, int max) {
    return ca_getn(o, name, vals, max);
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

_Noreturn void usage_die(const opts *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("stampctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    if (o && o->cmd) fprintf(stderr, " (see 'stampctl %s --help')", o->cmd->name);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

void fmt_or_die(char *buf, size_t len, const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) usage_die(NULL, "%s too long (at most %zu bytes)", what, len - 1);
}

/* A token given on purpose (--token, or STAMP_TOKEN set at all) is used or
 * refused, never replaced by the client config's: an empty STAMP_TOKEN is
 * what a failed $(stampctl token create) leaves, and falling back to the
 * operator token would run the next command with more rights than meant. */
static void take_token(const char *tok, const char *source) {
    const char *p = tok;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p == '\0')
        usage_die(NULL, "%s is empty; give a token, or unset it to use the client config's token", source);
    if (!ca_token_wellformed(tok))
        usage_die(NULL, "%s is not a token (expected three dot-separated base64url parts, no spaces)", source);
    if (!str_copy(g_token, sizeof(g_token), tok)) usage_die(NULL, "%s is longer than any token", source);
}

/* The server URL, the config path and the token are used whole or refused:
 * a cut one is another server, file or token. */
static void load_config(const opts *o) {
    if (o->server && !str_copy(g_server, sizeof(g_server), o->server))
        usage_die(NULL, "--server URL too long (at most %zu bytes)", sizeof(g_server) - 1);
    if (o->token_given) take_token(o->token, "--token");
    else if (getenv("STAMP_TOKEN")) take_token(getenv("STAMP_TOKEN"), "STAMP_TOKEN");
    if (g_server[0] && g_token[0]) return;
    char path[PATH_MAX];
    const char *env = getenv("STAMP_CONFIG");
    if (o->config) fmt_or_die(path, sizeof(path), "--config path", "%s", o->config);
    else if (env && *env) fmt_or_die(path, sizeof(path), "STAMP_CONFIG path", "%s", env);
    else fmt_or_die(path, sizeof(path), "client config path ($HOME/.config/stamp/config)",
                    "%s/.config/stamp/config", getenv("HOME") ? getenv("HOME") : ".");
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
    if (!g_server[0] && ep && !str_copy(g_server, sizeof(g_server), ep))
        die("client config %s: endpoint too long (at most %zu bytes)", path, sizeof(g_server) - 1);
    if (!g_token[0] && tk) {
        if (!ca_token_wellformed(tk)) die("client config %s: its token is malformed", path);
        if (!str_copy(g_token, sizeof(g_token), tk))
            die("client config %s: its token is longer than any token", path);
    }
    json_decref(cfg);
    if (!g_server[0]) str_copy(g_server, sizeof(g_server), "http://127.0.0.1:7480");
}

/* One request with a body of any type; dies when stampd cannot be reached.
 * The caller owns resp. */
long http(const char *method, const char *path, const char *data, size_t len, const char *ctype,
          sbuf *resp) {
    char url[2048];
    fmt_or_die(url, sizeof(url), "request URL", "%s%s", g_server, path);
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
    /* A follower replica sends slow work to the leader: asked once more
     * there (the request did nothing where it was refused). */
    const char *leader = jstr(json_object_get(j, "leader"), "address", "");
    bool routable = leader[0] && strlen(leader) < 200 && strchr(leader, '/') == NULL &&
                    strncmp(leader, "0.0.0.0:", 8) != 0 && strncmp(leader, "[::]:", 5) != 0 && leader[0] != ':';
    if (status == 503 && routable) {
        char saved[sizeof(g_server)];
        str_copy(saved, sizeof(saved), g_server);
        /* The scheme of the server asked first (a token never goes out in
         * clear because it went to a TLS front). */
        const char *scheme = strncmp(saved, "https://", 8) == 0 ? "https" : "http";
        fmt_or_die(g_server, sizeof(g_server), "server", "%s://%s", scheme, leader);
        json_decref(j);
        status = http(method, path, data, len, ctype, &resp);
        j = json_loadb(resp.data ? resp.data : "", resp.len, JSON_ALLOW_NUL, NULL);
        sbuf_free(&resp);
        str_copy(g_server, sizeof(g_server), saved);
    }
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

/* GET /version once: its JSON, or NULL with the reason in why (no such
 * endpoint, cannot reach stampd).  Never dies: version and the dry-run gate
 * must work against any stampd. */
static json_t *server_version(char *why, size_t len) {
    static json_t *cached;
    static char cached_why[300];
    static bool done;
    if (!done) {
        done = true;
        char url[1024]; /* g_server is under 512 bytes: always fits */
        fmt_or_die(url, sizeof(url), "request URL", "%s/version", g_server);
        httpc_req rq = {.method = "GET", .url = url, .bearer = g_token[0] ? g_token : NULL,
                        .max_response = 1 << 20, .timeout_ms = 10000};
        long status = 0;
        sbuf resp;
        serr e = {0};
        if (httpc_do(&rq, &status, &resp, &e) != 0) {
            /* why: a message for the user; a cut one still says it */
            str_fmt_cut(cached_why, sizeof(cached_why), "cannot reach stampd at %s: %s", g_server,
                        e.msg);
        } else {
            json_t *j = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL);
            if (status == 404) str_copy(cached_why, sizeof(cached_why), "no /version endpoint");
            else if (status >= 400 || !json_is_object(j))
                str_fmt_cut(cached_why, sizeof(cached_why), "GET /version answered %ld", status);
            else cached = json_incref(j);
            json_decref(j);
            sbuf_free(&resp);
        }
    }
    if (why) str_copy(why, len, cached_why);
    return cached;
}

static bool server_has_feature(const char *feature) {
    json_t *v = server_version(NULL, 0), *f;
    size_t i;
    json_array_foreach(json_object_get(v, "features"), i, f) {
        if (json_is_string(f) && strcmp(json_string_value(f), feature) == 0) return true;
    }
    return false;
}

void dry_run_gate(const char *what) {
    if (server_has_feature("dryRun")) return;
    char why[300];
    server_version(why, sizeof(why));
    fprintf(stderr,
            "stampctl: --dry-run of %s needs server-side dry run (?" DRY_RUN_QUERY "), which this stampd "
            "does not offer (%s); it would ignore the parameter and %s for real, so nothing was sent\n",
            what, why[0] ? why : "GET /version lists no \"dryRun\" feature", what);
    exit(2);
}

bool wide(const opts *o) { return o->output && strcmp(o->output, "wide") == 0; }

const ca_selector *selector_of(const opts *o, ca_selector *buf) {
    const char *l = flag(o, "selector");
    if (l == NULL) return NULL;
    char err[CA_ERR_MAX];
    if (ca_selector_parse(l, buf, err, sizeof(err)) != 0) usage_die(o, "-l: %s", err);
    return buf;
}

size_t filter_by_labels(json_t *arr, const ca_selector *sel, bool meta) {
    for (size_t i = json_array_size(arr); i-- > 0;) {
        json_t *it = json_array_get(arr, i);
        json_t *labels = json_object_get(meta ? json_object_get(it, "metadata") : it, "labels");
        if (!ca_selector_match(sel, labels)) json_array_remove(arr, i);
    }
    return json_array_size(arr);
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

/* The parser has checked the count; this names what the argument is. */
static const char *need_name(const opts *o, const char *cmd) {
    (void)cmd;
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
    bool dry = flag(o, "dry-run") != NULL;
    if (dry) dry_run_gate("deploy");
    json_t *body = json_pack("{s:s,s:s,s:s}", "region", region, "stampId", sid, "template", tpl);
    if (flag(o, "revision")) json_object_set_new(body, "revision", json_integer(strtoll(flag(o, "revision"), NULL, 10)));
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
    json_t *r = call("POST", dry ? "/v1/stamps?" DRY_RUN_QUERY : "/v1/stamps", body, &status, false);
    json_decref(body);
    if (structured(o)) print_json_or_yaml(r, o->output);
    else
        printf("stamp/%s %s (phase %s)%s\n", jstr(json_object_get(r, "metadata"), "name", "?"),
               status == 201 ? "created" : "redeploying",
               jstr(json_object_get(r, "status"), "phase", "?"), dry ? " (server dry run)" : "");
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
    /* Table cells sized for any value (a %lld is at most 20 characters);
     * a cell is for people, so the cut helper is enough. */
    char age[32], pa[32], pools[64], attempt[24];
    age_of(st, "phaseSince", pa, sizeof(pa));
    age_since(jstr(md, "creationTimestamp", NULL), age, sizeof(age));
    json_t *p = json_object_get(st, "pools");
    str_fmt_cut(pools, sizeof(pools), "%lld/%lld/%lld", (long long)jint(p, "system", 0),
                (long long)jint(p, "general", 0), (long long)jint(p, "gpu", 0));
    str_fmt_cut(attempt, sizeof(attempt), "%lld", (long long)jint(st, "attempt", 1));
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

static table *stamp_table(bool w) {
    static const char *const h[] = {"NAME", "REGION", "PHASE", "ENDPOINT", "IN PHASE", "AGE",
                                    "TEMPLATE", "POOLS(S/G/GPU)", "ATTEMPT", "MESSAGE"};
    return table_new(w ? 10 : 6, h);
}

static void template_row(table *t, json_t *tp, bool w) {
    (void)w;
    json_t *phases = json_object_get(json_object_get(tp, "spec"), "phases");
    char np[24], ns[24]; /* any %zu fits */
    size_t steps = 0, k;
    json_t *ph;
    json_array_foreach(phases, k, ph) steps += json_array_size(json_object_get(ph, "steps"));
    str_fmt_cut(np, sizeof(np), "%zu", json_array_size(phases));
    str_fmt_cut(ns, sizeof(ns), "%zu", steps);
    char age[32];
    age_since(jstr(json_object_get(tp, "metadata"), "creationTimestamp", NULL), age, sizeof(age));
    char rev[24];
    str_fmt_cut(rev, sizeof(rev), "%lld", (long long)jint(json_object_get(tp, "metadata"), "generation", 0));
    const char *cells[] = {jstr(json_object_get(tp, "metadata"), "name", "?"), rev, np, ns, age};
    table_add(t, cells);
}

static table *template_table(bool w) {
    static const char *const h[] = {"NAME", "REVISION", "PHASES", "STEPS", "AGE"};
    (void)w;
    return table_new(5, h);
}

static void describe_stamp(json_t *r);

/* The kinds get and describe know, with where the API keeps them and the
 * kind their watch streams. */
typedef struct kind_def {
    const char *name, *single;
    const char *aliases[5];
    const char *list_path;    /* NULL: stampd has no endpoint to read it */
    const char *items_key;
    const char *get_prefix;   /* GET prefix + NAME; NULL: NAME picks from the list */
    const char *name_key;     /* the name: metadata.name when meta, else this key */
    bool meta;                /* a resource with metadata (labels there) */
    table *(*new_table)(bool wide);
    void (*row)(table *t, json_t *item, bool wide);
    void (*describe)(json_t *item);
    const char *watch_kind;   /* the kind GET /v1/watch streams; NULL: none */
} kind_def;

static table *hc_table(bool w) {
    static const char *const h[] = {"NAME", "CHECKS", "RECOVERY", "AGE"};
    (void)w;
    return table_new(4, h);
}

static void hc_row(table *t, json_t *hc, bool w) {
    (void)w;
    json_t *sp = json_object_get(hc, "spec");
    char n[24], age[32]; /* any %zu fits */
    str_fmt_cut(n, sizeof(n), "%zu", json_array_size(json_object_get(sp, "checks")));
    age_since(jstr(json_object_get(hc, "metadata"), "creationTimestamp", NULL), age, sizeof(age));
    const char *rec = jstr(json_object_get(sp, "recovery"), "action", "-");
    const char *cells[] = {jstr(json_object_get(hc, "metadata"), "name", "?"), n, rec, age};
    table_add(t, cells);
}

static const kind_def kinds[] = {
    {"stamps", "stamp", {"stamp", "st", NULL}, "/v1/stamps", "items", "/v1/stamps/", "name", true,
     stamp_table, stamp_row, describe_stamp, "Stamp"},
    {"templates", "template", {"template", "tpl", "stamptemplate", "stamptemplates", NULL}, "/v1/templates",
     "items", "/v1/templates/", "name", true, template_table, template_row, NULL, "StampTemplate"},
    {"namespaces", "namespace", {"namespace", "ns", NULL}, "/v1/platform/namespaces", "namespaces",
     "/v1/platform/namespaces/", "namespace", false, ns_table, ns_row, ns_describe, "Namespace"},
    {"bundles", "bundle", {"bundle", NULL}, "/v1/platform/bundles", "bundles", NULL, "hash", false,
     bundle_table, bundle_row, NULL, NULL},
    {"runs", "run", {"run", NULL}, "/v1/platform/runs", "runs", NULL, "run", false, run_table, run_row,
     NULL, NULL},
    {"healthchecks", "healthcheck", {"healthcheck", "hc", "stamphealthcheck", "stamphealthchecks", NULL},
     "/v1/healthchecks", "items", "/v1/healthchecks/", "name", true, hc_table, hc_row, NULL,
     "StampHealthCheck"},
    {"autoscalers", "autoscaler", {"autoscaler", "sa", "stampautoscaler", "stampautoscalers", NULL},
     "/v1/autoscalers", "items", "/v1/autoscalers/", "name", true, as_table, as_row, describe_autoscaler,
     "StampAutoscaler"},
    {"platforms", "platform", {"platform", "obs", "observabilityplatform", "observabilityplatforms", NULL},
     "/v1/platforms", "items", "/v1/platforms/", "name", true, plat_table, plat_row, describe_platform,
     "ObservabilityPlatform"},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* The kind a word names (its name or an alias), or NULL. */
static const kind_def *find_kind(const char *w) {
    for (size_t i = 0; i < NKINDS; i++) {
        if (strcasecmp(kinds[i].name, w) == 0) return &kinds[i];
        for (int k = 0; kinds[i].aliases[k]; k++)
            if (strcasecmp(kinds[i].aliases[k], w) == 0) return &kinds[i];
    }
    return NULL;
}

static const kind_def *kind_of(const opts *o, const char *w) {
    const kind_def *k = find_kind(w);
    if (k) return k;
    usage_die(o, "unknown kind \"%s\" (stamps, templates, namespaces, bundles, runs, healthchecks, autoscalers, "
                 "platforms)", w);
}

static const char *item_name(const kind_def *k, json_t *it) {
    return jstr(k->meta ? json_object_get(it, "metadata") : it, k->name_key, "");
}

/* A list answer shown as asked (sel parsed before the request, so a bad
 * one sends nothing): the server's own shape for -o json|yaml
 * (items filtered by -l, "count" kept true), one kind/name a line for
 * -o name, else a table. */
static int show_list(const opts *o, const kind_def *k, const ca_selector *sel, json_t *r) {
    json_t *items = json_object_get(r, k->items_key);
    if (!json_is_array(items)) die("stampd's answer has no %s list", k->items_key);
    if (sel) {
        size_t n = filter_by_labels(items, sel, k->meta);
        if (json_object_get(r, "count")) json_object_set_new(r, "count", json_integer((json_int_t)n));
    }
    if (printed_structured(o, r)) return 0;
    size_t i;
    json_t *it;
    if (o->output && strcmp(o->output, "name") == 0) {
        json_array_foreach(items, i, it) printf("%s/%s\n", k->single, item_name(k, it));
    } else if (json_array_size(items) == 0) {
        fprintf(stderr, "No %s found.\n", k->name);
    } else {
        table *t = k->new_table(wide(o));
        json_array_foreach(items, i, it) k->row(t, it, wide(o));
        render_table(t);
    }
    json_decref(r);
    return 0;
}

static int cmd_list(opts *o) {
    char path[512] = "/v1/stamps";
    const char *state = flag(o, "state"), *region = flag(o, "region");
    ca_selector sb;
    const ca_selector *sel = selector_of(o, &sb);
    char *es = state ? url_escape(state) : NULL, *er = region ? url_escape(region) : NULL;
    fmt_or_die(path, sizeof(path), "request path", "/v1/stamps%s%s%s%s%s%s", es || er ? "?" : "",
               es ? "state=" : "", es ? es : "", es && er ? "&" : "", er ? "region=" : "",
               er ? er : "");
    free(es);
    free(er);
    json_t *r = call("GET", path, NULL, NULL, false);
    if (json_array_size(json_object_get(r, "items")) == 0 && !structured(o) && sel == NULL) {
        json_decref(r);
        puts("No stamps found.");
        return 0;
    }
    return show_list(o, &kinds[0], sel, r);
}

/* One item of a kind: its own GET, or picked from the list by name. */
static json_t *get_item(const opts *o, const kind_def *k, const char *name) {
    char path[768];
    if (k->get_prefix) {
        char *e = url_escape(name);
        fmt_or_die(path, sizeof(path), "request path", "%s%s", k->get_prefix, e);
        free(e);
        return call("GET", path, NULL, NULL, false);
    }
    json_t *r = call("GET", k->list_path, NULL, NULL, false), *it, *found = NULL;
    size_t i;
    json_array_foreach(json_object_get(r, k->items_key), i, it) {
        if (strcmp(item_name(k, it), name) == 0) found = json_incref(it);
    }
    json_decref(r);
    if (found == NULL) die("%s \"%s\" not found", k->single, name);
    return found;
}

static const kind_def *readable_kind(const opts *o) {
    const kind_def *k = kind_of(o, o->pos[0]);
    if (k->list_path == NULL)
        die("this stampd has no endpoint to read %s (they can only be applied: stampctl apply -f)", k->name);
    return k;
}

/* ---- watches: GET /v1/watch, one JSON line per event, as it happens ---- */

#define WATCH_LINE_MAX (1024 * 1024)

typedef struct watch_out {
    sbuf line;
    const opts *o;
    bool dropped;
} watch_out;

static void watch_print(watch_out *w, const char *text, size_t len) {
    json_t *j = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
    if (j == NULL) return;
    const char *type = jstr(j, "type", "");
    if (strcmp(type, "BOOKMARK") == 0) {
        json_decref(j);
        return;
    }
    if (structured(w->o)) {
        char *t = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (t) puts(t);
        free(t);
    } else {
        json_t *ob = json_object_get(j, "object"), *ev = json_object_get(j, "event");
        char what[300], phase[80]; /* columns of a line for people */
        str_fmt_cut(what, sizeof(what), "%s/%s", jstr(ob, "kind", "?"), jstr(ob, "name", "?"));
        const char *from = jstr(ev, "from", NULL), *to = jstr(ev, "to", NULL);
        if (from && to) str_fmt_cut(phase, sizeof(phase), "%s -> %s", from, to);
        else str_copy(phase, sizeof(phase), "-");
        printf("%-24s %-9s %-40s %-22s %-20s %s\n", jstr(ev, "time", ""), type, what, phase,
               jstr(ev, "reason", ""), jstr(ev, "message", ""));
    }
    fflush(stdout);
    json_decref(j);
}

static size_t watch_write(char *p, size_t sz, size_t n, void *arg) {
    watch_out *w = arg;
    size_t len = sz * n;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            if (!w->dropped && w->line.len) watch_print(w, w->line.data, w->line.len);
            sbuf_reset(&w->line);
            w->dropped = false;
        } else if (!w->dropped && sbuf_add(&w->line, p + i, 1) != 0) {
            fprintf(stderr, "stampctl: a watch line longer than %d bytes was skipped\n", WATCH_LINE_MAX);
            w->dropped = true;
        }
    }
    return len;
}

/* Streams the events of kind (and name, when given) until stampd ends the
 * stream or the user interrupts. */
static _Noreturn void watch_stream(const opts *o, const char *kind, const char *name) {
    char url[1400], auth[JWT_MAX_LEN + 32];
    char *ek = url_escape(kind), *en = name ? url_escape(name) : NULL;
    fmt_or_die(url, sizeof(url), "watch URL", "%s/v1/watch?kind=%s%s%s", g_server, ek,
               en ? "&name=" : "", en ? en : "");
    free(ek);
    free(en);
    fmt_or_die(auth, sizeof(auth), "bearer token", "Authorization: Bearer %s", g_token);
    CURL *h = curl_easy_init();
    if (h == NULL) die("out of memory");
    struct curl_slist *hdr = g_token[0] ? curl_slist_append(NULL, auth) : NULL;
    watch_out w = {.o = o};
    sbuf_init(&w.line, WATCH_LINE_MAX);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, watch_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    sbuf_free(&w.line);
    if (rc != CURLE_OK && status >= 400) die("watch: stampd answered %ld", status);
    if (rc != CURLE_OK) die("watch: %s", curl_easy_strerror(rc));
    die("watch: stampd ended the stream");
}

static int cmd_get(opts *o) {
    const kind_def *k = readable_kind(o);
    bool ns = strcmp(k->name, "namespaces") == 0;
    if (flag(o, "all-tenants") && !ns) usage_die(o, "-A applies to namespaces only");
    if ((flag(o, "revisions") || flag(o, "revision")) && (strcmp(k->name, "templates") != 0 || o->npos != 2 || flag(o, "watch")))
        usage_die(o, "--revisions and --revision need templates NAME (and no --watch)");
    if (flag(o, "revisions")) return cmd_template_revisions(o, o->pos[1]);
    if (o->npos == 1) {
        ca_selector sb;
        const ca_selector *sel = selector_of(o, &sb);
        char path[512];
        fmt_or_die(path, sizeof(path), "request path", "%s%s", k->list_path,
                   ns && flag(o, "all-tenants") ? "?all_tenants=true" : "");
        if (flag(o, "watch") && k->watch_kind == NULL) usage_die(o, "stampd has no watch of %s", k->name);
        int rc = show_list(o, k, sel, call("GET", path, NULL, NULL, false));
        if (flag(o, "watch")) {
            fflush(stdout);
            watch_stream(o, k->watch_kind, NULL);
        }
        return rc;
    }
    if (flag(o, "selector")) usage_die(o, "-l selects from a list; it cannot be given with a NAME");
    if (flag(o, "watch") && k->watch_kind == NULL) usage_die(o, "stampd has no watch of %s", k->name);
    json_t *it = flag(o, "revision") ? get_template_revision(o->pos[1], flag(o, "revision")) : get_item(o, k, o->pos[1]);
    if (flag(o, "watch")) {
        if (!printed_structured(o, it)) {
            table *t = k->new_table(wide(o));
            k->row(t, it, wide(o));
            render_table(t);
            json_decref(it);
        }
        fflush(stdout);
        watch_stream(o, k->watch_kind, o->pos[1]);
    }
    if (printed_structured(o, it)) return 0;
    if (o->output && strcmp(o->output, "name") == 0) {
        printf("%s/%s\n", k->single, item_name(k, it));
    } else {
        table *t = k->new_table(wide(o));
        k->row(t, it, wide(o));
        render_table(t);
    }
    json_decref(it);
    return 0;
}

static int cmd_describe(opts *o) {
    const kind_def *k = readable_kind(o);
    json_t *it = get_item(o, k, o->pos[1]);
    if (printed_structured(o, it)) return 0;
    if (k->describe) k->describe(it);
    else print_json_or_yaml(it, "yaml");
    json_decref(it);
    return 0;
}

static json_t *get_stamp(const char *name) {
    char path[512], *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s", e);
    free(e);
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

/* Without a NAME: the replicas of stampd and who leads (GET /v1/cluster). */
static int cluster_status(opts *o) {
    json_t *r = call("GET", "/v1/cluster", NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    json_t *l = json_object_get(r, "leader");
    printf("Store:    %s\n", jstr(r, "backend", "?"));
    printf("This:     %s\n", jstr(r, "self", "?"));
    if (strcmp(jstr(r, "backend", ""), "postgres") != 0) {
        printf("Leader:   this stampd (one replica: nothing to elect)\n");
        json_decref(r);
        return 0;
    }
    printf("Leader:   %s, epoch %lld, since %s, lease until %s%s\n", jstr(l, "holder", "-"), (long long)jint(l, "epoch", 0),
           jstr(l, "since", "-"), jstr(l, "expiresAt", "-"),
           json_is_true(json_object_get(l, "valid")) ? "" : " (expired: an election is due)");
    printf("\n%-32s %-22s %-25s %-10s %s\n", "REPLICA", "ADDRESS", "STARTED", "SEEN", "ROLE");
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r, "replicas"), i, x) {
        char a[32];
        printf("%-32s %-22s %-25s %-10s %s%s\n", jstr(x, "id", "?"), jstr(x, "address", "?"), jstr(x, "startedAt", "?"),
               fmt_duration(jint(x, "seenMsAgo", 0), a, sizeof(a)),
               json_is_true(json_object_get(x, "leader"))  ? "leader"
               : json_is_true(json_object_get(x, "stale")) ? "gone? (not seen for a lease)"
                                                            : "follower",
               json_is_true(json_object_get(x, "self")) ? " (this)" : "");
    }
    json_decref(r);
    return 0;
}

static int cmd_status(opts *o) {
    if (o->npos == 0) return cluster_status(o);
    json_t *r = get_stamp(need_name(o, "status"));
    if (printed_structured(o, r)) return 0;
    describe_stamp(r);
    json_decref(r);
    return 0;
}

/* Long: one printf per section of `stampctl describe`, in display order. */
static void describe_stamp(json_t *r) {
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
    size_t ci;
    json_t *cd;
    json_array_foreach(json_object_get(st, "conditions"), ci, cd) {
        /* The engine stopped retrying: say why, and what restarts it. */
        if (strcmp(jstr(cd, "type", ""), "Stalled") == 0 &&
            strcmp(jstr(cd, "status", ""), "True") == 0)
            printf("Stalled:      %s since %s: %s (retried on a change, or every backoff-max)\n",
                   jstr(cd, "reason", ""), jstr(cd, "lastTransitionTime", ""),
                   jstr(cd, "message", ""));
    }
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
        static const char *const names[] = {"backup", "quarantine", "decommission", "archive", "purge"};
        /* The step to run next, by name ("done" after the last), or by
         * index as stamps recorded it before the step runner. */
        json_t *js = json_object_get(rt, "step");
        int64_t step = json_is_integer(js) ? json_integer_value(js) : 0;
        if (json_is_string(js)) {
            step = strcmp(json_string_value(js), "done") == 0 ? 5 : 0;
            for (int i = 0; i < 5; i++)
                if (strcmp(json_string_value(js), names[i]) == 0) step = i;
        }
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
            char ph[48]; /* a table cell */
            str_fmt_cut(ph, sizeof(ph), "  %s", jstr(s, "phase", ""));
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
}

static int stamp_action(opts *o, const char *verb, const char *name) {
    bool dry = flag(o, "dry-run") != NULL;
    json_t *body = json_object();
    if (flag(o, "force")) json_object_set_new(body, "force", json_true());
    if (flag(o, "skip-fleet-check")) json_object_set_new(body, "skipFleetCheck", json_true());
    const char *g = flag(o, "grace-period");
    if (g) json_object_set_new(body, "gracePeriod", json_string(g));
    char path[512];
    char *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s/%s%s", e, verb,
               dry ? "?" DRY_RUN_QUERY : "");
    free(e);
    json_t *r = call("POST", path, body, NULL, false);
    json_decref(body);
    if (structured(o)) print_json_or_yaml(r, o->output);
    else
        printf("stamp/%s: %s%s requested (phase %s)%s\n", name, verb, flag(o, "force") ? " --force" : "",
               jstr(json_object_get(r, "status"), "phase", "?"), dry ? " (server dry run)" : "");
    json_decref(r);
    return 0;
}

static int action(opts *o, const char *verb) {
    if (flag(o, "dry-run")) dry_run_gate(verb);
    return stamp_action(o, verb, need_name(o, verb));
}

/* Reads a manifest file (YAML or JSON, several documents, - for stdin)
 * into an array of documents, a List's items taken one by one. */
static json_t *read_manifests(const char *file) {
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
    json_t *out = json_array(), *d;
    size_t i;
    json_array_foreach(docs, i, d) {
        if (json_is_null(d)) continue;
        const char *kind = json_string_value(json_object_get(d, "kind"));
        json_t *items = json_object_get(d, "items");
        size_t kl = kind ? strlen(kind) : 0;
        if (json_is_array(items) && kl >= 4 && strcmp(kind + kl - 4, "List") == 0) {
            size_t k;
            json_t *it;
            json_array_foreach(items, k, it) json_array_append(out, it);
        } else {
            json_array_append(out, d);
        }
    }
    json_decref(docs);
    return out;
}

/* delete -f: every document must name a stamp (the only kind stampd can
 * delete); all are checked before the first request. */
static int delete_files(opts *o) {
    const char *file = flag(o, "filename");
    json_t *docs = read_manifests(file), *d;
    size_t i;
    json_array_foreach(docs, i, d) {
        const char *kind = jstr(d, "kind", "");
        const char *name = jstr(json_object_get(d, "metadata"), "name", NULL);
        if (strcmp(kind, "Stamp") != 0)
            die("%s: document %zu is a %s; stampd can delete only stamps (nothing was deleted)", file, i + 1,
                kind[0] ? kind : "document without kind");
        if (name == NULL || !name_valid(name, 63))
            die("%s: document %zu has no valid metadata.name (nothing was deleted)", file, i + 1);
    }
    if (json_array_size(docs) == 0) die("%s: no documents", file);
    if (flag(o, "dry-run")) dry_run_gate("delete");
    json_array_foreach(docs, i, d) stamp_action(o, "delete", jstr(json_object_get(d, "metadata"), "name", ""));
    json_decref(docs);
    return 0;
}

static int cmd_drain(opts *o) { return action(o, "drain"); }
static int cmd_activate(opts *o) { return action(o, "activate"); }
static int cmd_standby(opts *o) { return action(o, "standby"); }
static int cmd_backup(opts *o) { return action(o, "backup"); }
/* restore NAME --as NEW: stampd verifies the backup (every file's hash)
 * before it creates anything, so the call may take as long as hashing. */
static int cmd_restore(opts *o) {
    const char *name = need_name(o, "restore"), *as = flag(o, "as"), *bk = flag(o, "backup");
    bool dry = flag(o, "dry-run") != NULL;
    if (dry) dry_run_gate("restore");
    json_t *body = json_object();
    if (as) json_object_set_new(body, "as", json_string(as));
    if (bk) json_object_set_new(body, "backup", json_string(bk));
    char path[512], *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s/restore%s", e, dry ? "?" DRY_RUN_QUERY : "");
    free(e);
    if (http_timeout_ms < 600000) http_timeout_ms = 600000;
    json_t *r = call("POST", path, body, NULL, false);
    json_decref(body);
    json_t *rf = json_object_get(json_object_get(r, "spec"), "restoreFrom");
    if (printed_structured(o, r)) return 0; /* it released r */
    printf("stamp/%s: restore from backup %s of %s requested (%lld files verified)%s; phase %s\n",
           jstr(json_object_get(r, "metadata"), "name", as ? as : "?"), jstr(rf, "backup", "?"), name,
           (long long)jint(rf, "files", 0), dry ? " (server dry run)" : "",
           jstr(json_object_get(r, "status"), "phase", "?"));
    json_decref(r);
    return 0;
}
static int check_stamp_name(const char *v, char *why, size_t len) {
    if (name_valid(v, 63)) return 0;
    str_fmt_cut(why, len, "\"%s\" is not a stamp name (like synaxis-weu-004)", v); /* a message */
    return -1;
}
static int cmd_delete(opts *o) {
    if (flag(o, "filename") && o->npos > 0) usage_die(o, "delete takes NAME or -f FILE, not both");
    const kind_def *kd = o->npos == 2 ? find_kind(o->pos[0]) : NULL;
    bool platform = kd && kd->watch_kind && strcmp(kd->watch_kind, "ObservabilityPlatform") == 0;
    if ((flag(o, "wait") || flag(o, "timeout")) && !platform)
        usage_die(o, "--wait and --timeout are for platforms (delete platform NAME --wait)");
    if (flag(o, "filename")) return delete_files(o);
    if (o->npos == 0) usage_die(o, "delete needs NAME or -f FILE");
    /* "delete platform" is a kind without its NAME, never a stamp's name. */
    const kind_def *k1 = o->npos == 1 ? find_kind(o->pos[0]) : NULL;
    if (k1 && k1->watch_kind && strcmp(k1->watch_kind, "Stamp") != 0)
        usage_die(o, "delete %s needs the %s's NAME", o->pos[0], k1->single);
    /* delete platform NAME: marked; its finalizer uninstalls it. */
    if (platform) return platform_delete(o, o->pos[1]);
    if (o->npos == 2) {
        /* delete autoscaler NAME: the autoscaler stops; its stamps stay. */
        if (kd == NULL || kd->watch_kind == NULL || strcmp(kd->watch_kind, "StampAutoscaler") != 0)
            usage_die(o, "unexpected argument \"%s\" for delete", o->pos[1]);
        if (flag(o, "force") || flag(o, "skip-fleet-check"))
            usage_die(o, "deleting an autoscaler takes no --force or --skip-fleet-check");
        if (flag(o, "dry-run")) dry_run_gate("delete");
        char path[512], *e = url_escape(o->pos[1]);
        fmt_or_die(path, sizeof(path), "request path", "/v1/autoscalers/%s%s", e,
                   flag(o, "dry-run") ? "?" DRY_RUN_QUERY : "");
        free(e);
        json_t *r = call("DELETE", path, NULL, NULL, false);
        if (!printed_structured(o, r))
            printf("autoscaler/%s deleted%s\n", o->pos[1], flag(o, "dry-run") ? " (dry run)" : "");
        json_decref(r);
        return 0;
    }
    return action(o, "delete");
}

/* How long a phase may last by stampd's defaults (creating-timeout 30m,
 * drain-total-timeout 40m, activation-timeout 10m), plus a minute of
 * slack: without --timeout, wait's deadline restarts at each phase change,
 * so a wait never gives up on a stamp still inside its phase's limit.
 * Phases without a limit of their own get ten minutes.  A drain's own
 * deadline (status.drain.deadlineTotalMs) wins when it is later. */
static int64_t phase_limit_ms(const char *phase) {
    static const struct {
        const char *phase;
        int64_t ms;
    } lim[] = {{"Creating", 30 * 60000}, {"Draining", 40 * 60000}, {"Deleting", 30 * 60000}};
    int64_t ms = 10 * 60000;
    for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++)
        if (strcmp(lim[i].phase, phase) == 0) ms = lim[i].ms;
    return ms + 60000;
}

/* Long: one poll loop that renders a progress line per phase and knows
 * each phase's own deadline; splitting it scatters that state. */
static int cmd_wait(opts *o) {
    const char *name = need_name(o, "wait");
    const char *target = flag(o, "for");
    int64_t timeout = 0;
    const char *t = flag(o, "timeout");
    if (t) parse_duration_ms(t, &timeout); /* the parser checked it */
    /* Progress on stderr: to a terminal always, elsewhere with --progress. */
    bool progress = flag(o, "progress") != NULL || isatty(2);
    int64_t start = mono_ms(), phase_start = start, last_progress = -1000000;
    /* last_phase is compared whole: a cut copy of a long phase name would
     * differ every poll and restart the phase's clock. */
    char last[512] = "", *last_phase = NULL;
    for (;;) {
        char path[512];
        char *e = url_escape(name);
        fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s", e);
        free(e);
        long status;
        json_t *r = call("GET", path, NULL, &status, true);
        if (status == 404 && strcasecmp(target, "deleted") == 0) {
            json_decref(r);
            free(last_phase);
            printf("%s: gone\n", name);
            return 0;
        }
        if (status >= 400) {
            const char *msg = error_message(r);
            die("%s", msg ? msg : "request failed");
        }
        json_t *st = json_object_get(r, "status");
        const char *phase = jstr(st, "phase", "?");
        if (last_phase == NULL || strcmp(phase, last_phase) != 0) {
            free(last_phase);
            if ((last_phase = strdup(phase)) == NULL) die("out of memory");
            phase_start = mono_ms();
        }
        /* line: progress for people, compared only with the last one shown;
         * a cut is harmless. */
        char line[512];
        json_t *step = json_object_get(st, "step");
        json_t *dr = json_object_get(st, "drain");
        json_t *rt = json_object_get(st, "retire");
        if (strcmp(phase, "Creating") == 0 && step)
            str_fmt_cut(line, sizeof(line), "%s: Creating (attempt %lld, step %s/%s%s%s)", name,
                     (long long)jint(st, "attempt", 1), jstr(step, "phase", ""), jstr(step, "name", ""),
                     json_object_get(st, "waitingFor") ? "; waiting for " : "",
                     jstr(st, "waitingFor", ""));
        else if (strcmp(phase, "Creating") == 0 || (strcmp(phase, "Ready") == 0 && json_object_get(st, "waitingFor") && json_object_get(st, "activation")))
            str_fmt_cut(line, sizeof(line), "%s: %s (waiting for %s)", name, phase, jstr(st, "waitingFor", "deployment"));
        else if (strcmp(phase, "Draining") == 0 && dr)
            str_fmt_cut(line, sizeof(line), "%s: Draining (%lld connection(s), %lld job(s) left)", name,
                     (long long)jint(dr, "connections", 0), (long long)jint(dr, "jobs", 0));
        else if (strcmp(phase, "Deleting") == 0 && rt)
            str_fmt_cut(line, sizeof(line), "%s: Deleting (step %s)", name, jstr(rt, "step", "backup"));
        else
            str_fmt_cut(line, sizeof(line), "%s: %s", name, phase);
        char a[32];
        if (strcmp(line, last) != 0) {
            printf("[%6s] %s\n", fmt_duration(mono_ms() - start, a, sizeof(a)), line);
            fflush(stdout);
            str_copy(last, sizeof(last), line);
        }
        if (strcasecmp(phase, target) == 0) {
            json_decref(r);
            free(last_phase);
            return 0;
        }
        /* A Failed stamp asked to deploy again (its spec's retry not yet
         * observed by the controller) is about to leave Failed. */
        json_t *spec = json_object_get(r, "spec");
        bool redeploying = jint(spec, "retry", 0) > jint(st, "retryObserved", 0);
        bool terminal = strcmp(phase, "Deleted") == 0 || (strcmp(phase, "Failed") == 0 && !redeploying);
        if (terminal) {
            char msg[512], ph[32];
            str_copy(msg, sizeof(msg), jstr(st, "message", ""));
            str_copy(ph, sizeof(ph), phase);
            json_decref(r);
            die("%s is %s, not %s: %s", name, ph, target, msg);
        }
        int64_t now = mono_ms();
        int64_t deadline = timeout ? start + timeout : phase_start + phase_limit_ms(phase);
        /* A drain states its own limit (a --grace-period may be longer). */
        int64_t dl = jint(dr, "deadlineTotalMs", 0);
        if (!timeout && strcmp(phase, "Draining") == 0 && dl > 0 && now + (dl - now_ms()) + 60000 > deadline)
            deadline = now + (dl - now_ms()) + 60000;
        if (progress && now - last_progress >= 3000) {
            char left[32];
            /* line is "NAME: ..." unless a long name left it cut short. */
            size_t skip = strlen(name) + 2;
            fprintf(stderr, "stampctl: waited %s for %s to be %s; now %s; gives up in %s\n",
                    fmt_duration(now - start, a, sizeof(a)), name, target,
                    skip <= strlen(line) ? line + skip : "",
                    fmt_duration(deadline > now ? deadline - now : 0, left, sizeof(left)));
            last_progress = now;
        }
        json_decref(r); /* phase pointed into r: last_phase is its copy */
        if (now > deadline) {
            if (timeout)
                die("timed out after %s waiting for %s to be %s (%s)", fmt_duration(timeout, a, sizeof(a)),
                    name, target, line);
            die("gave up waiting for %s to be %s: %s for %s, past that phase's limit (%s); --timeout sets "
                "another", name, target, last_phase, fmt_duration(now - phase_start, a, sizeof(a)), line);
        }
        sleep_ms(200);
    }
}

static int cmd_events(opts *o) {
    char path[512];
    json_t *r;
    if (flag(o, "watch")) watch_stream(o, "Stamp", o->npos ? o->pos[0] : NULL);
    if (o->npos == 0) {
        /* Across the fleet only where stampd has such an endpoint. */
        long status;
        r = call("GET", "/v1/events", NULL, &status, true);
        if (status == 404)
            die("this stampd has no fleet-wide events endpoint (GET /v1/events); name a stamp: stampctl events NAME");
        if (status >= 400) die("%s", error_message(r) ? error_message(r) : "request failed");
    } else if (strchr(o->pos[0], '/') != NULL) {
        /* KIND/NAME, as kubectl names objects: autoscaler/fleet. */
        const char *slash = strchr(o->pos[0], '/');
        char kind[64];
        fmt_or_die(kind, sizeof(kind), "kind", "%.*s", (int)(slash - o->pos[0]), o->pos[0]);
        const kind_def *kd = kind_of(o, kind);
        const char *k = kd->watch_kind;
        if (k == NULL) usage_die(o, "events: %s have no events", kd->name);
        /* The endpoint pages oldest first: read to the end, keep the
         * newest 256 (bounded: at most 4096 pages). */
        char *e = url_escape(slash + 1);
        json_t *items = json_array();
        int64_t since = 0;
        for (int page = 0; page < 4096; page++) {
            fmt_or_die(path, sizeof(path), "request path", "/v1/events?kind=%s&name=%s&limit=256&since=%lld", k,
                       e, (long long)since);
            json_t *pg = call("GET", path, NULL, NULL, false);
            json_t *got = json_object_get(pg, "items");
            size_t n = json_array_size(got);
            json_array_extend(items, got);
            while (json_array_size(items) > 256) json_array_remove(items, 0);
            int64_t next = jint(pg, "next", since);
            json_decref(pg);
            if (n < 256 || next <= since) break;
            since = next;
        }
        free(e);
        r = json_pack("{s:s,s:o}", "kind", "EventList", "items", items);
    } else {
        char *e = url_escape(o->pos[0]);
        fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s/events", e);
        free(e);
        r = call("GET", path, NULL, NULL, false);
    }
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
    char path[512], a[32], *en = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s/health", en);
    free(en);
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
        /* Table cells: sized for any value, cut helper for the rest. */
        char passes[48], fails[48], lat[32], last[40];
        str_fmt_cut(passes, sizeof(passes), "%lld/%lld", (long long)jint(c, "passes", 0),
                    (long long)jint(c, "healthyThreshold", 0));
        str_fmt_cut(fails, sizeof(fails), "%lld/%lld", (long long)jint(c, "fails", 0),
                    (long long)jint(c, "unhealthyThreshold", 0));
        str_fmt_cut(lat, sizeof(lat), "%lldms", (long long)jint(c, "latencyMs", 0));
        int64_t lm = jint(c, "lastMs", 0);
        if (lm) str_fmt_cut(last, sizeof(last), "%s ago", fmt_duration(now_ms() - lm, a, sizeof(a)));
        else str_copy(last, sizeof(last), "never");
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
    char path[512], a[32], *en = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s/metrics?period=%s", en,
               period ? period : "1h");
    free(en);
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
            char c[5][32]; /* any %lld fits */
            str_fmt_cut(c[0], 32, "%lld", (long long)jint(sv, "currentSessions", 0));
            str_fmt_cut(c[1], 32, "%lld", (long long)jint(sv, "queued", 0));
            str_fmt_cut(c[2], 32, "%lld", (long long)jint(sv, "sessionsTotal", 0));
            str_fmt_cut(c[3], 32, "%lld", (long long)jint(sv, "sessionRate", 0));
            str_fmt_cut(c[4], 32, "%lld", (long long)jint(sv, "requestsTotal", 0));
            const char *cells[] = {jstr(sv, "name", ""), jstr(sv, "status", ""), c[0], c[1], c[2], c[3], c[4]};
            table_add(t, cells);
        }
        render_table(t);
    }
    json_decref(r);
    return 0;
}

/* What get -o yaml prints and apply must not send: the status and the
 * metadata the server sets. */
static void strip_server_fields(json_t *d) {
    static const char *const md_fields[] = {"resourceVersion", "generation", "creationTimestamp",
                                            "deletionTimestamp", "uid", "tenant", "finalizers",
                                            "managedFields", "selfLink", NULL};
    json_object_del(d, "status");
    json_t *md = json_object_get(d, "metadata");
    for (int i = 0; md_fields[i]; i++) json_object_del(md, md_fields[i]);
}

static int cmd_apply(opts *o) {
    const char *file = flag(o, "filename");
    bool dry = flag(o, "dry-run") != NULL;
    json_t *docs = read_manifests(file);
    if (dry) dry_run_gate("apply");
    size_t i;
    json_t *d;
    int failures = 0;
    json_array_foreach(docs, i, d) {
        long status;
        strip_server_fields(d);
        json_t *r = call("POST", dry ? "/v1/apply?" DRY_RUN_QUERY : "/v1/apply", d, &status, true);
        if (status >= 400) {
            const char *msg = error_message(r);
            fprintf(stderr, "stampctl: %s: %s\n", file, msg ? msg : "apply failed");
            failures++;
        } else {
            char kind[64]; /* shown lowercased; a cut kind is still readable */
            str_copy(kind, sizeof(kind), jstr(r, "kind", "?"));
            for (char *p = kind; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
            printf("%s/%s %s%s\n", kind, jstr(r, "name", "?"), jstr(r, "result", "?"),
                   dry ? " (server dry run)" : "");
        }
        json_decref(r);
    }
    json_decref(docs);
    return failures ? 1 : 0;
}

static int cmd_templates(opts *o) {
    char path[512] = "/v1/templates";
    if (o->npos == 1) {
        char *e = url_escape(o->pos[0]);
        fmt_or_die(path, sizeof(path), "request path", "/v1/templates/%s", e);
        free(e);
    }
    json_t *r = call("GET", path, NULL, NULL, false);
    if (structured(o) || o->npos == 1) {
        print_json_or_yaml(r, o->output && *o->output ? o->output : "yaml");
        json_decref(r);
        return 0;
    }
    table *t = template_table(false);
    size_t i;
    json_t *tp;
    json_array_foreach(json_object_get(r, "items"), i, tp) template_row(t, tp, false);
    render_table(t);
    json_decref(r);
    return 0;
}

static int cmd_audit(opts *o) {
    char path[512], *en = o->npos ? url_escape(o->pos[0]) : NULL;
    fmt_or_die(path, sizeof(path), "request path", "/v1/audit?limit=%s%s%s",
               flag(o, "limit") ? flag(o, "limit") : "50", en ? "&name=" : "", en ? en : "");
    free(en);
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    static const char *const h[] = {"TIME", "USER", "TENANT", "OPERATION", "RESOURCE", "RESULT"};
    table *t = table_new(6, h);
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(r, "items"), i, a) {
        char res[200]; /* a table cell */
        str_fmt_cut(res, sizeof(res), "%s/%s", jstr(a, "kind", ""), jstr(a, "name", ""));
        const char *cells[] = {jstr(a, "time", ""), jstr(a, "user", ""), jstr(a, "tenant", ""),
                               jstr(a, "operation", ""), res, jstr(a, "result", "")};
        table_add(t, cells);
    }
    render_table(t);
    json_decref(r);
    return 0;
}

/* GET path as text; dies with the server's message on an error. */
static long get_text(const char *path, sbuf *resp) {
    long status = http("GET", path, NULL, 0, NULL, resp);
    if (status >= 400) {
        json_t *j = json_loadb(resp->data ? resp->data : "", resp->len, JSON_ALLOW_NUL, NULL);
        const char *m = error_message(j);
        die("%s", m ? m : "request failed");
    }
    return status;
}

/* logs STAMP: the stamp's exec step logs (the list, or one step's log,
 * the newest run unless --run); logs NS POD: a pod's log.  -f prints what
 * is added to the log until interrupted (the API has no log stream: stampctl
 * asks again every second for what follows the bytes it has). */
static int cmd_logs(opts *o) {
    if (o->npos == 2) {
        if (flag(o, "step") || flag(o, "run")) die("--step and --run are for a stamp's logs (logs STAMP)");
        if (!flag(o, "follow")) return cmd_ns_logs(o);
    }
    char path[1024], *en = url_escape(o->pos[0]);
    if (o->npos == 2) {
        char *ep = url_escape(o->pos[1]);
        fmt_or_die(path, sizeof(path), "request path", "/v1/platform/namespaces/%s/pods/%s/log", en, ep);
        free(ep);
    } else if (flag(o, "step")) {
        char *es = url_escape(flag(o, "step")), *er = flag(o, "run") ? url_escape(flag(o, "run")) : NULL;
        fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s/logs?step=%s%s%s", en, es,
                   er ? "&run=" : "", er ? er : "");
        free(es);
        free(er);
    } else {
        if (flag(o, "follow")) die("-f needs --step S (which step's log to follow)");
        fmt_or_die(path, sizeof(path), "request path", "/v1/stamps/%s/logs", en);
        free(en);
        json_t *r = call("GET", path, NULL, NULL, false);
        if (printed_structured(o, r)) return 0;
        static const char *const h[] = {"STEP", "RUN", "BYTES", "MODIFIED"};
        table *t = table_new(4, h);
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(r, "items"), i, it) {
            char b[32]; /* any %lld fits */
            str_fmt_cut(b, sizeof(b), "%lld", (long long)jint(it, "bytes", 0));
            const char *row[] = {jstr(it, "step", ""), jstr(it, "run", ""), b, jstr(it, "modified", "")};
            table_add(t, row);
        }
        json_decref(r);
        render_table(t);
        return 0;
    }
    free(en);
    sbuf resp;
    get_text(path, &resp);
    if (resp.len) write_tail(resp.data, resp.len, flag(o, "tail"));
    fflush(stdout);
    size_t seen = resp.len;
    sbuf_free(&resp);
    if (!flag(o, "follow")) return 0;
    /* Follow: the whole log again each second, printing what is new.  A log
     * that got shorter (a new run, a cut pod log) is printed again whole. */
    for (;;) {
        sleep_ms(1000);
        get_text(path, &resp);
        if (resp.len < seen) seen = 0;
        if (resp.len > seen) fwrite(resp.data + seen, 1, resp.len - seen, stdout);
        fflush(stdout);
        seen = resp.len;
        sbuf_free(&resp);
    }
}

static int cmd_version(opts *o) {
    char why[300];
    json_t *v = server_version(why, sizeof(why));
    if (structured(o)) {
        json_t *out = json_pack("{s:{s:s},s:O?}", "client", "version", STAMP_VERSION, "server", v);
        if (v == NULL) json_object_set_new(out, "serverUnknown", json_string(why));
        print_json_or_yaml(out, o->output);
        json_decref(out);
        return 0;
    }
    printf("client: stampctl %s\n", STAMP_VERSION);
    if (v) printf("server: stampd %s\n", jstr(v, "version", "?"));
    else printf("server: unknown (%s)\n", why);
    return 0;
}

static int cmd_help(opts *o);
static int cmd_completion(opts *o);

/* Flag tables.  Enum values are matched case-insensitively. */
#define F_BOOL(n, a, h) {n, a, CA_BOOL, NULL, false, false, NULL, h, NULL}
#define F_STR(n, a, mv, h) {n, a, CA_STRING, NULL, false, false, mv, h, NULL}
#define F_NEED(n, mv, h) {n, 0, CA_STRING, NULL, true, false, mv, h, NULL}
#define F_DUR(n, h) {n, 0, CA_DURATION, NULL, false, false, "DURATION", h, NULL}
#define F_INT(n, mv, h) {n, 0, CA_INT, NULL, false, false, mv, h, NULL}
#define F_ENUM(n, vals, req, mv, h) {n, 0, CA_ENUM, vals, req, false, mv, h, NULL}
#define F_KV(n, mv, h) {n, 0, CA_KV, NULL, false, true, mv, h, NULL}
#define F_END {NULL, 0, CA_BOOL, NULL, false, false, NULL, NULL, NULL}
#define F_DRY(what) F_BOOL("dry-run", 0, "server-side dry run: validate and show, change nothing (" what ")")
#define F_SEL F_STR("selector", 'l', "KEY=VALUE[,...]", "only items whose labels match (filtered by stampctl: the API has no selector)")

static int check_region(const char *v, char *why, size_t len) {
    if (region_code(v) || region_from_code(v)) return 0;
    char known[1024];
    region_list(known, sizeof(known));
    str_fmt_cut(why, len, "unknown region \"%s\" (known: %s)", v, known); /* a message */
    return -1;
}

static const char *const phases[] = {"creating", "active", "draining", "ready", "deleting", "deleted", "failed", NULL};
static const char *const ns_statuses[] = {"active", "finalized", "reaping", "reaped", NULL};
static const char *const roles[] = {"tenant", "operator", NULL};
static const char *const out_list[] = {"json", "yaml", "wide", "name", NULL};
static const char *const out_get[] = {"json", "yaml", "wide", "name", NULL};
static const char *const out_ro[] = {"json", "yaml", NULL};

static const ca_flag f_deploy[] = {
    {"region", 0, CA_STRING, NULL, true, false, "REGION", "Azure region name, like westeurope", check_region},
    F_NEED("stamp-id", "ID", "the stamp's number (003) or id"),
    F_NEED("template", "NAME", "the StampTemplate to deploy (stampctl get templates)"),
    F_KV("param", "KEY=VALUE", "a template parameter"),
    {"revision", 0, CA_INT, NULL, false, false, "N", "deploy this revision of the template (default: its current one)", check_revision},
    F_DRY("needs stampd with the dryRun feature"),
    F_END};
static const ca_flag f_wait[] = {
    F_ENUM("for", phases, true, "PHASE", "the phase to wait for"),
    F_DUR("timeout", "give up after this long (default: each phase's own limit, see below)"),
    F_BOOL("progress", 0, "report progress on stderr every 3s even when it is not a terminal"),
    F_END};
static const ca_flag f_drain[] = {
    F_BOOL("force", 0, "finish the drain now, dropping what is left"),
    F_DUR("grace-period", "total drain limit instead of the configured one"),
    F_BOOL("skip-fleet-check", 0, "allow it even if the fleet would fall below its minimum"),
    F_DRY("needs stampd with the dryRun feature"),
    F_END};
static const ca_flag f_standby[] = {
    F_BOOL("force", 0, "finish the drain now"),
    F_DUR("grace-period", "total drain limit instead of the configured one"),
    F_BOOL("skip-fleet-check", 0, "allow it even if the fleet would fall below its minimum"),
    F_END};
static const ca_flag f_delete[] = {
    F_BOOL("force", 0, "terminate at once instead of draining first"),
    F_BOOL("skip-fleet-check", 0, "allow it even if the fleet would fall below its minimum"),
    F_STR("filename", 'f', "FILE", "delete the stamps a manifest names (- for stdin)"),
    F_DRY("needs stampd with the dryRun feature"),
    F_BOOL("wait", 0, "platforms: follow the uninstall until the record is gone"),
    F_DUR("timeout", "platforms: how long --wait waits (default 15m)"),
    F_END};
static const char *const pools[] = {"system", "general", "gpu", NULL};
static const ca_flag f_scale[] = {
    F_ENUM("pool", pools, true, "POOL", "the node pool: system, general or gpu"),
    F_NEED("replicas", "N", "replicas of each of the pool's steps, within the template's bounds"),
    F_DRY("needs stampd with the dryRun feature"),
    F_END};
static const ca_flag f_update[] = {
    F_KV("set", "KEY=VALUE", "a parameter the template declares as application"),
    F_STR("revision", 0, "N", "run the application part of this template revision"),
    F_BOOL("latest", 0, "run the application part of the template's current revision"),
    F_BOOL("wait", 0, "follow the update until it completes or rolls back (exit 1 then)"),
    F_DRY("needs stampd with the dryRun feature"),
    F_END};
static const ca_flag f_restore[] = {
    {"as", 0, CA_STRING, NULL, false, false, "NEW-NAME",
     "the restored stamp's name: PREFIX-REGIONCODE-ID in the backed-up stamp's region, a name no stamp has",
     check_stamp_name},
    F_STR("backup", 0, "ID", "which of its backups (default: the one its retirement took)"),
    F_DRY("needs stampd with the dryRun feature"),
    F_END};
static const ca_flag f_list[] = {
    F_ENUM("state", phases, false, "PHASE", "only stamps in this phase (filtered by stampd)"),
    {"region", 0, CA_STRING, NULL, false, false, "REGION", "only stamps in this region, name or code (filtered by stampd)", check_region},
    F_SEL, F_END};
static const ca_flag f_get[] = {
    F_SEL, F_BOOL("all-tenants", 'A', "namespaces of every tenant (operator token)"),
    F_BOOL("watch", 'w', "after the list, print each change as it happens (until interrupted)"),
    F_BOOL("revisions", 0, "a template's kept revisions and how many stamps run each (templates NAME)"),
    {"revision", 0, CA_INT, NULL, false, false, "N", "a template as it was at revision N (templates NAME)", check_revision}, F_END};
static const ca_flag f_events[] = {
    F_BOOL("watch", 'w', "print new events as they happen (until interrupted)"), F_END};
static const ca_flag f_metrics[] = {F_DUR("period", "the window (default 1h, up to 90d)"), F_END};
static const ca_flag f_apply[] = {
    {"filename", 'f', CA_STRING, NULL, true, false, "FILE", "YAML or JSON manifests, - for stdin", NULL},
    F_DRY("needs stampd with the dryRun feature"),
    F_END};
static const ca_flag f_audit[] = {F_INT("limit", "N", "at most N entries (default 50)"), F_END};
static const ca_flag f_logs[] = {
    F_STR("step", 0, "STEP", "a stamp's step whose log to print (logs STAMP)"),
    F_STR("run", 0, "RUN", "which run of the step: create-N or delete-N (default: the newest)"),
    F_BOOL("follow", 'f', "keep printing what is added to the log"),
    F_INT("tail", "N", "only the last N lines (cut by stampctl from what stampd sends)"),
    F_INT("limit-bytes", "N", "stampd sends at most the last N bytes of the log"),
    F_END};
static const ca_flag f_ns_list[] = {
    F_ENUM("status", ns_statuses, false, "STATUS", "only namespaces with this status (filtered by stampd)"),
    F_BOOL("all-tenants", 'A', "every tenant's namespaces (operator token)"), F_SEL, F_END};
static const ca_flag f_ns_reap[] = {
    F_STR("bucket", 0, "BUCKET", "the bucket id the namespace must belong to"),
    F_BOOL("dry-run", 0, "show what would be deleted and archived; without NS, list what is eligible"),
    F_END};
static const ca_flag f_run_pod[] = {
    {"volume", 0, CA_STRING, NULL, false, true, "NAME", "mount this volume of the namespace", NULL},
    F_KV("env", "KEY=VALUE", "an environment variable of the pod"),
    F_END};
static const ca_flag f_ns_run[] = {
    F_NEED("bundle", "HASH", "the model bundle (stampctl bundle list)"),
    F_STR("from-file", 0, "CONFIG.json", "the run's configuration"),
    F_KV("set", "KEY=VALUE", "one configuration value (JSON when it parses, else a string)"),
    F_END};
static const ca_flag f_runs[] = {F_STR("bucket", 0, "BUCKET", "only runs of this bucket"), F_END};
static const ca_flag f_mttc[] = {F_NEED("bucket", "BUCKET", "the bucket whose run is verified"),
                                 F_NEED("bundle", "HASH", "the model bundle"), F_END};
static const ca_flag f_token[] = {
    F_NEED("tenant", "TENANT", "the tenant the token acts for"),
    F_NEED("user", "USER", "the user recorded in the audit log"),
    F_ENUM("role", roles, false, "ROLE", "operator grants every tenant and the operator routes"),
    F_DUR("ttl", "lifetime (default 1h)"),
    F_END};

#define STAMP_NOTES_PHASES "PHASE is one of creating, active, draining, ready, deleting, deleted, failed."

static const ca_cmd commands[] = {
    {cmd_deploy, "deploy", NULL, 0, 0, false, f_deploy, NULL, "Deploy a new stamp from a template",
     "stampctl deploy --region westeurope --stamp-id 003 --template synaxis-stamp\n"
     "stampctl deploy --region westeurope --stamp-id 004 --template synaxis-stamp --param SKU=premium\n"
     "stampctl deploy --region westeurope --stamp-id 005 --template synaxis-stamp --revision 2 --param app.version=2",
     "--dry-run is refused (exit 2, nothing sent) unless stampd's GET /version lists the \"dryRun\" feature: "
     "today's stampd would ignore ?dryRun=All and deploy for real.  The stamp records the template revision "
     "it was deployed from (spec.templateRevision); a parameter the template declares takes its default "
     "when no --param gives it."},
    {cmd_wait, "wait", "NAME", 1, 1, false, f_wait, NULL, "Wait until a stamp reaches a phase",
     "stampctl wait --for=active synaxis-weu-003\nstampctl wait --for=ready synaxis-weu-003 --timeout 45m",
     "Prints each change of phase or step on stdout.  Without --timeout the limit follows the phase: "
     "Creating 31m, Draining 41m (or the drain's own deadline plus a minute, if later), Deleting 31m, "
     "others 11m (stampd's defaults plus a minute), counted from when the phase was first seen.  Progress (elapsed time, phase, step) goes to stderr every 3s "
     "when stderr is a terminal, or always with --progress."},
    {cmd_drain, "drain", "NAME", 1, 1, false, f_drain, NULL, "Take a stamp out of traffic and drain it to Ready",
     "stampctl drain synaxis-weu-003\nstampctl drain synaxis-weu-003 --force\n"
     "stampctl drain synaxis-weu-003 --grace-period=60m", NULL},
    {cmd_activate, "activate", "NAME", 1, 1, false, NULL, NULL, "Bring a Ready stamp into traffic",
     "stampctl activate synaxis-weu-003", NULL},
    {cmd_standby, "standby", "NAME", 1, 1, false, f_standby, NULL, "Drain a stamp and keep it warm (Ready)",
     "stampctl standby synaxis-weu-003", NULL},
    {cmd_delete, "delete", "[autoscaler|platform] [NAME]", 0, 2, false, f_delete, NULL,
     "Retire a stamp (NAME, or those a manifest names), or delete an autoscaler or a platform",
     "stampctl delete synaxis-weu-003\nstampctl delete synaxis-weu-003 --force\nstampctl delete -f stamps.yaml\n"
     "stampctl delete platform fleet-monitoring --wait",
     "-f accepts what 'stampctl get stamps -o yaml' prints; every document must be a Stamp (stampd can "
     "delete no other kind by file) and all are checked before the first request.  Deleting a platform "
     "marks it: stampd uninstalls its components (keeping their data dirs when spec.keepVolumes), then "
     "removes the record; --wait follows that until it is gone."},
    {cmd_backup, "backup", "NAME", 1, 1, false, NULL, NULL, "Back up a stamp's local state",
     "stampctl backup synaxis-weu-003", NULL},
    {cmd_scale, "scale", "NAME", 1, 1, false, f_scale, out_get, "Resize a node pool of an Active stamp",
     "stampctl scale synaxis-weu-003 --pool general --replicas 5",
     "Within the template's bounds (pools.<pool>.minReplicas/maxReplicas); refused while Draining "
     "(blocks scale operations) and Ready (blocks infrastructure modifications).  Remembered across "
     "standby and activation."},
    {cmd_update, "update", "NAME", 1, 1, false, f_update, out_get,
     "Update an Active stamp's application, replica by replica",
     "stampctl update synaxis-weu-003 --set app.version=2 --wait\n"
     "stampctl update synaxis-weu-003 --revision 4",
     "Each pool's replicas are replaced one at a time: a new replica starts beside the old one and must "
     "answer its health path twice before the front door moves to it and the old one stops.  A new "
     "replica that exits or is not healthy within update-replica-timeout rolls the update back.  Only "
     "what the template classes as application may change (steps with change: application, parameters "
     "declared with change: application); anything else is refused: it requires a new stamp "
     "(stampctl rollout)."},
    {cmd_restore, "restore", "NAME", 1, 1, false, f_restore, NULL,
     "Deploy a stamp from a Deleted stamp's verified backup",
     "stampctl restore synaxis-weu-003 --as synaxis-weu-004\n"
     "stampctl restore synaxis-weu-003 --as synaxis-weu-004 --dry-run -o yaml",
     "Only a Deleted stamp can be restored, until its archive's retention (archive-retention, 30d) passes. "
     "Every file of the backup is hashed against its manifest first: a missing or changed file refuses the "
     "restore, naming the file, and nothing is created.  The new stamp has the old one's region, template "
     "spec and parameters; its volumes are put back (each copy verified) before its workloads start.  --as "
     "is needed: the Deleted record keeps the old stamp's archive and audit until the retention passes."},
    {cmd_list, "list", NULL, 0, 0, false, f_list, out_list, "List stamps",
     "stampctl list\nstampctl list --state=active\nstampctl list --region=westeurope\n"
     "stampctl list -l template=synaxis-stamp -o name", STAMP_NOTES_PHASES},
    {cmd_get, "get", "KIND [NAME]", 1, 2, false, f_get, out_get, "Show resources of a kind, or one of them",
     "stampctl get stamps\nstampctl get st -l region=westeurope -o wide\nstampctl get templates synaxis-stamp -o yaml\n"
     "stampctl get ns -A\nstampctl get bundles -o name\n"
     "stampctl get templates synaxis-stamp --revisions\nstampctl get templates synaxis-stamp --revision 1 -o yaml",
     "KIND: stamps (stamp, st), templates (template, tpl), namespaces (namespace, ns), bundles (bundle), "
     "runs (run), healthchecks (healthcheck, hc), autoscalers (autoscaler, sa), platforms (platform, obs).  "
     "-w streams changes after the list.  -l is "
     "filtered by stampctl (the API has no selector).  -o yaml of a list reads back with apply -f.  "
     "Every change of a template's spec is a new revision (REVISION); --revisions lists the ones kept "
     "(REVISION CURRENT APPLIED BY STAMPS), --revision N shows one."},
    {cmd_describe, "describe", "KIND NAME", 2, 2, false, NULL, NULL, "Show one resource in detail",
     "stampctl describe stamp synaxis-weu-003\nstampctl describe ns acme-bucket-1\n"
     "stampctl describe platform fleet-monitoring", NULL},
    {cmd_status, "status", "[NAME]", 0, 1, false, NULL, NULL, "Show a stamp's status, or without NAME the replicas of stampd and their leader",
     "stampctl status synaxis-weu-003\nstampctl status synaxis-weu-003 -o json\nstampctl status",
     "Without NAME: GET /v1/cluster: the store (sqlite or postgres), the replicas (id, API address, when "
     "started, when last seen), which one leads the controllers, its epoch and until when its lease holds."},
    {cmd_events, "events", "[NAME]", 0, 1, false, f_events, NULL, "Show a stamp's events, or every object's",
     "stampctl events synaxis-weu-003\nstampctl events\nstampctl events -w",
     "Without NAME, the events of every object.  -w streams new stamp events from stampd's watch "
     "(GET /v1/watch) as they are written."},
    {cmd_health, "health", "NAME", 1, 1, false, NULL, NULL, "Show a stamp's health checks",
     "stampctl health synaxis-weu-003", NULL},
    {cmd_frontdoor, "frontdoor", NULL, 0, 0, false, NULL, NULL, "Show the front door and its servers",
     "stampctl frontdoor", NULL},
    {cmd_metrics, "metrics", "NAME", 1, 1, false, f_metrics, NULL, "Show a stamp's lifecycle metrics",
     "stampctl metrics synaxis-weu-003 --period=1h", NULL},
    {cmd_apply, "apply", NULL, 0, 0, false, f_apply, NULL,
     "Create or update StampTemplate, StampHealthCheck, StampAutoscaler and ObservabilityPlatform resources",
     "stampctl apply -f deploy/templates/synaxis-stamp.yaml\n"
     "stampctl get templates synaxis-stamp -o yaml | stampctl apply -f -",
     "A List (what get -o yaml prints) is applied item by item; status and the metadata stampd sets "
     "(resourceVersion, generation, creationTimestamp, uid, tenant, ...) are dropped before sending."},
    {cmd_templates, "templates", "[NAME]", 0, 1, false, NULL, NULL, "List stamp templates, or show one",
     "stampctl templates\nstampctl templates synaxis-stamp", NULL},
    {cmd_audit, "audit", "[NAME]", 0, 1, false, f_audit, NULL, "Show the audit log",
     "stampctl audit --limit 20\nstampctl audit synaxis-weu-003", NULL},
    {cmd_logs, "logs", "STAMP | NS POD", 1, 2, false, f_logs, NULL, "Print a stamp's step logs, or a pod's log",
     "stampctl logs synaxis-weu-003\nstampctl logs synaxis-weu-003 --step datastore\n"
     "stampctl logs synaxis-weu-003 --step smoke --run create-2 -f\nstampctl logs livecalc-bucket-b1 w1 --tail=20",
     "With one name, the exec steps of that stamp that have logs (in every phase, from the archive "
     "once Deleted), or with --step the newest run's output.  With two, a pod's log."},
    {cmd_version, "version", NULL, 0, 0, false, NULL, NULL, "Print the client's and the server's version",
     "stampctl version\nstampctl --version", NULL},
    {cmd_help, "help", "[COMMAND]", 0, 2, false, NULL, NULL, "Show help for stampctl or a command",
     "stampctl help\nstampctl help drain\nstampctl help ns reap", NULL},
    {cmd_completion, "completion", "bash|zsh", 1, 1, false, NULL, NULL, "Print a shell completion script",
     "source <(stampctl completion bash)\nsource <(stampctl completion zsh)", NULL},
    {cmd_ns_create, "ns create", "BUCKET", 1, 1, false, NULL, NULL, "Create a transient namespace for a bucket",
     "stampctl ns create acme-bucket-1", NULL},
    {cmd_ns_list, "ns list", NULL, 0, 0, false, f_ns_list, out_list, "List namespaces",
     "stampctl ns list\nstampctl ns list -A --status=finalized", NULL},
    {cmd_ns_get, "ns get", "NS", 1, 1, false, NULL, NULL, "Show a namespace", "stampctl ns get ns-acme-1", NULL},
    {cmd_ns_activity, "ns activity", "NS", 1, 1, false, NULL, NULL, "Record activity (resets the idle clock)",
     "stampctl ns activity ns-acme-1", NULL},
    {cmd_ns_finalize, "ns finalize", "NS", 1, 1, false, NULL, NULL, "Mark a namespace done; the reaper takes it",
     "stampctl ns finalize ns-acme-1", NULL},
    {cmd_ns_reap, "ns reap", "[NS]", 0, 1, false, f_ns_reap, NULL, "Archive a namespace's diagnostics and delete it",
     "stampctl ns reap ns-acme-1\nstampctl ns reap ns-acme-1 --dry-run\nstampctl ns reap --dry-run", NULL},
    {cmd_ns_pods, "ns pods", "NS", 1, 1, false, NULL, NULL, "List a namespace's pods", "stampctl ns pods ns-acme-1",
     NULL},
    {cmd_ns_run_pod, "ns run-pod", "NS POD", 2, 2, true, f_run_pod, NULL, "Start a pod; arguments after -- go to it",
     "stampctl ns run-pod ns-acme-1 w1 -- --steps 5\nstampctl ns run-pod ns-acme-1 w2 --volume results --env K=V", NULL},
    {cmd_ns_logs, "ns logs", "NS POD", 2, 2, false, f_logs, NULL, "Print a pod's log",
     "stampctl ns logs ns-acme-1 w1 --tail=2", NULL},
    {cmd_ns_annotate, "ns annotate", "NS POD KEY=VALUE...", 3, -1, false, NULL, NULL,
     "Set (KEY=VALUE) or remove (KEY-) pod annotations", "stampctl ns annotate ns-acme-1 w1 note=ok old-", NULL},
    {cmd_ns_volume, "ns volume", "NS NAME", 2, 2, false, NULL, NULL, "Create a volume in a namespace",
     "stampctl ns volume ns-acme-1 results", NULL},
    {cmd_ns_run, "ns run", "NS", 1, 1, false, f_ns_run, NULL, "Run the pipeline of a model bundle",
     "stampctl ns run ns-acme-1 --bundle HASH --set scenarios=300", NULL},
    {cmd_ns_sweep, "ns sweep", NULL, 0, 0, false, NULL, NULL, "Enqueue every eligible namespace for reaping",
     "stampctl ns sweep", NULL},
    {cmd_bundle_push, "bundle push", "FILE", 1, 1, false, NULL, NULL, "Upload a model bundle",
     "stampctl bundle push model.tar", NULL},
    {cmd_bundle_list, "bundle list", NULL, 0, 0, false, NULL, NULL, "List model bundles", "stampctl bundle list", NULL},
    {cmd_runs, "runs", NULL, 0, 0, false, f_runs, NULL, "List pipeline runs", "stampctl runs --bucket acme-bucket-1",
     NULL},
    {cmd_mttc_verify, "mttc verify", NULL, 0, 0, false, f_mttc, NULL, "Verify a run resumes to the same result",
     "stampctl mttc verify --bucket acme-bucket-1 --bundle HASH", NULL},
    {cmd_autoscaler_simulate, "autoscaler simulate", NULL, 0, 0, false, f_as_simulate, NULL,
     "Replay a StampAutoscaler against a metric trace (offline, no stampd)",
     "stampctl autoscaler simulate -f deploy/autoscaler/synaxis-autoscaler.yaml --trace deploy/autoscaler/example-trace.csv\n"
     "stampctl autoscaler simulate -f as.yaml --trace load.csv --initial westeurope:2,eastus:1,ready:1 --cold 10m -o json",
     "Runs the controller's decision functions on a model fleet, one evaluation per spec.interval of the trace, "
     "time-compressed (--speed N paces it at N times real time).  The trace is CSV t,metric,value[,stamp]: t in "
     "seconds, a value fleet-wide unless a stamp is named, empty for a source that is down.  Fleet-wide load is "
     "the demand as the initial fleet shows it, spread evenly over the Active stamps (utilizations, connections "
     "and queue depth; latency and prometheus values as written).  A new stamp counts toward maxStamps but carries "
     "no load until its activation (--warm) or deploy (--cold) is done.  --initial: REGION:N Active stamps, "
     "ready:N warm stamps in the first region of spec.regions, REGION:ready:N in a named one."},
    {cmd_rollout, "rollout", NULL, 0, 0, false, f_rollout, out_ro,
     "Replace a template's stamps by stamps of a revision (blue-green)",
     "stampctl rollout --template synaxis-stamp --to-revision 2\n"
     "stampctl rollout --template synaxis-stamp --to-revision 3 --max-surge 2 --max-unavailable 1 --wait",
     "Each Active or Ready stamp of the template that does not run the revision gets a replacement in its region; "
     "once the replacement is Active and healthy the old stamp is retired (it drains first; the fleet rule holds).  "
     "Serving stamps never fall below their number at the start minus --max-unavailable.  One rollout per template "
     "at a time; its autoscaler holds until it ends.  See rollout status, pause, resume, abort."},
    {cmd_rollout_status, "rollout status", "[NAME]", 0, 1, false, f_rollout_status, out_ro,
     "Show rollouts, or one rollout's progress per old stamp",
     "stampctl rollout status\nstampctl rollout status synaxis-stamp-rev2 --watch", NULL},
    {cmd_rollout_pause, "rollout pause", "NAME", 1, 1, false, NULL, out_ro,
     "Pause a rollout: nothing new starts; what runs finishes its step", "stampctl rollout pause synaxis-stamp-rev2",
     NULL},
    {cmd_rollout_resume, "rollout resume", "NAME", 1, 1, false, NULL, out_ro,
     "Resume a paused rollout, or retry a Failed one's replacements in place",
     "stampctl rollout resume synaxis-stamp-rev2", NULL},
    {cmd_rollout_abort, "rollout abort", "NAME", 1, 1, false, NULL, out_ro,
     "Stop a rollout for good; what was replaced stays replaced", "stampctl rollout abort synaxis-stamp-rev2", NULL},
    {cmd_platform_pause, "platform pause", "NAME", 1, 1, false, NULL, out_ro,
     "Pause an observability platform: stampd touches none of its components until resume",
     "stampctl platform pause fleet-monitoring",
     "Sets spec.paused; what runs keeps running, unwatched (no heals, reloads or upgrades).  An apply "
     "whose manifest does not say paused keeps it paused.  Refused while the platform is being deleted."},
    {cmd_platform_resume, "platform resume", "NAME", 1, 1, false, NULL, out_ro,
     "Resume a paused observability platform", "stampctl platform resume fleet-monitoring", NULL},
    {cmd_token_create, "token create", NULL, 0, 0, false, f_token, NULL, "Mint a token for a tenant's user",
     "export STAMP_TOKEN=$(stampctl token create --tenant acme --user alice)", NULL},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static int cmd_help(opts *o) {
    if (o->npos == 0) {
        ca_help_all(commands, NCOMMANDS, NULL, stdout);
        return 0;
    }
    char *argv[4] = {"stampctl", (char *)o->pos[0], o->npos > 1 ? (char *)o->pos[1] : "--help", "--help"};
    ca_parsed p;
    char err[CA_ERR_MAX];
    if (ca_parse(commands, NCOMMANDS, 4, argv, &p, err, sizeof(err)) != 0) usage_die(NULL, "%s", err);
    if (p.cmd) ca_help_cmd(p.cmd, stdout);
    else ca_help_all(commands, NCOMMANDS, p.group, stdout);
    return 0;
}

static int cmd_completion(opts *o) {
    if (strcmp(o->pos[0], "bash") == 0) ca_completion_bash(commands, NCOMMANDS, stdout);
    else if (strcmp(o->pos[0], "zsh") == 0) ca_completion_zsh(commands, NCOMMANDS, stdout);
    else usage_die(o, "completion: \"%s\" is not a shell stampctl knows (bash, zsh)", o->pos[0]);
    return 0;
}

/* Commands that need no server. */
static bool offline(const ca_cmd *c) {
    return c->run == cmd_help || c->run == cmd_completion || c->run == cmd_autoscaler_simulate;
}

int main(int argc, char **argv) {
    /* The API carries text: an argument that is not UTF-8 could only be
     * dropped or altered on the way, so it is refused before anything is
     * sent. */
    for (int i = 1; i < argc; i++) {
        if (!utf8_valid(argv[i], strlen(argv[i]))) {
            fprintf(stderr, "stampctl: argument %d is not valid UTF-8 text (the API carries text only)\n", i);
            return 2;
        }
    }
    opts o;
    char err[CA_ERR_MAX];
    if (ca_parse(commands, NCOMMANDS, argc, argv, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "stampctl: %s\n", err);
        return 2;
    }
    if (o.help) {
        if (o.cmd) ca_help_cmd(o.cmd, stdout);
        else ca_help_all(commands, NCOMMANDS, o.group, stdout);
        return 0;
    }
    httpc_global_init();
    if (!offline(o.cmd)) load_config(&o);
    return o.cmd->run(&o);
}
