/*
 * stampctl_ns.c - the platform commands: transient namespaces and their
 * pods, volumes and runs; the reaper; model bundles; MTTC verification;
 * tokens.  Their arguments and flags are checked by the parser (the table
 * in stampctl.c) before any of these runs.
 *
 * The tenant is the token's: use --token, or STAMP_TOKEN, with a token from
 * "stampctl token create".  The operator token in the client config sees
 * every tenant (ns list -A).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/stampctl.h"
#include "util/httpc.h"

/* s escaped for a URL path segment or query value. */
char *url_escape(const char *s) {
    char *d = httpc_escape(s);
    if (d == NULL) die("out of memory");
    return d;
}

/* "/v1/platform/namespaces/{ns}{suffix}" */
static void ns_path(char *buf, size_t len, const char *ns, const char *suffix) {
    char *e = url_escape(ns);
    fmt_or_die(buf, len, "request path", "/v1/platform/namespaces/%s%s", e, suffix);
    free(e);
}

/* "--flag KEY=VALUE": the key into k (whole, or exit 2: a cut key is
 * another key), the value returned. */
static const char *kv_split(const char *flagname, const char *a, char *k, size_t klen) {
    const char *eq = strchr(a, '=');
    if (eq == NULL || eq == a) die("--%s %s: expected KEY=VALUE", flagname, a);
    fmt_or_die(k, klen, "key", "%.*s", (int)(eq - a), a);
    return eq + 1;
}

/* The table decides how many of the cells show (REAP ELIGIBLE only wide). */
void ns_row(table *t, json_t *n, bool wide) {
    (void)wide; /* the table decides how many cells show */
    char age[32], idle[32];
    age_since(jstr(n, "created_at", NULL), age, sizeof(age));
    age_since(jstr(n, "last_activity", NULL), idle, sizeof(idle));
    char pods[24], pvcs[24]; /* table cells: any %lld fits */
    str_fmt_cut(pods, sizeof(pods), "%lld", (long long)jint(n, "pod_count", 0));
    str_fmt_cut(pvcs, sizeof(pvcs), "%lld", (long long)jint(n, "pvc_count", 0));
    const char *cells[] = {jstr(n, "namespace", ""), jstr(n, "bucket_id", ""), jstr(n, "tenant_id", ""),
                           jstr(n, "status", ""), pods, pvcs, idle, age,
                           jstr(n, "reap_eligible_at", "-")};
    table_add(t, cells);
}

table *ns_table(bool wide) {
    static const char *const h[] = {"NAMESPACE", "BUCKET", "TENANT", "STATUS", "PODS",
                                    "PVCS", "IDLE", "AGE", "REAP ELIGIBLE"};
    return table_new(wide ? 9 : 8, h);
}

int cmd_ns_list(opts *o) {
    char path[512];
    const char *st = flag(o, "status");
    ca_selector sb;
    const ca_selector *sel = selector_of(o, &sb);
    char *e = st ? url_escape(st) : NULL;
    fmt_or_die(path, sizeof(path), "request path", "/v1/platform/namespaces?all_tenants=%s%s%s",
               flag(o, "all-tenants") ? "true" : "false", e ? "&status=" : "", e ? e : "");
    free(e);
    json_t *r = call("GET", path, NULL, NULL, false);
    json_t *list = json_object_get(r, "namespaces");
    /* Labels are filtered here: the API has no selector. */
    if (sel) json_object_set_new(r, "count", json_integer((json_int_t)filter_by_labels(list, sel, false)));
    if (printed_structured(o, r)) return 0;
    size_t i;
    json_t *n;
    if (o->output && strcmp(o->output, "name") == 0) {
        json_array_foreach(list, i, n) printf("namespace/%s\n", jstr(n, "namespace", ""));
        json_decref(r);
        return 0;
    }
    table *t = ns_table(wide(o));
    json_array_foreach(list, i, n) ns_row(t, n, true);
    if (json_array_size(list) == 0) {
        table_free(t);
        fprintf(stderr, "No namespaces found.\n");
    } else {
        render_table(t);
    }
    json_decref(r);
    return 0;
}

static void kv(const char *k, const char *v) { printf("%-18s %s\n", k, v && *v ? v : "-"); }

static void print_map(const char *title, json_t *m) {
    printf("%s:\n", title);
    const char *k;
    json_t *v;
    if (json_object_size(m) == 0) printf("  <none>\n");
    json_object_foreach(m, k, v) printf("  %s=%s\n", k, json_is_string(v) ? json_string_value(v) : "?");
}

static void print_diag(json_t *d) {
    if (d == NULL) return;
    if (json_is_true(json_object_get(d, "diagnostics_lost")))
        printf("Diagnostics:       LOST (%s)\n", jstr(d, "error", "uploads kept failing"));
    else
        printf("Diagnostics:       %lld files, %lld bytes, %lld sentinel violations in %s\n",
               (long long)json_array_size(json_object_get(d, "blob_paths")), (long long)jint(d, "bytes", 0),
               (long long)jint(d, "sentinel_violations", 0), jstr(d, "store", jstr(d, "container", "?")));
    size_t i;
    json_t *f;
    if (json_array_size(json_object_get(d, "files")) > 0) {
        static const char *const h[] = {"PATH", "BYTES", "SHA256"};
        table *t = table_new(3, h);
        json_array_foreach(json_object_get(d, "files"), i, f) {
            char sz[24], sha[32]; /* table cells, sized to fit */
            str_fmt_cut(sz, sizeof(sz), "%lld", (long long)jint(f, "size", 0));
            str_fmt_cut(sha, sizeof(sha), "%.12s%s", jstr(f, "sha256", ""),
                     json_is_true(json_object_get(f, "truncated")) ? " (truncated)" : "");
            const char *cells[] = {jstr(f, "path", ""), sz, sha};
            table_add(t, cells);
        }
        render_table(t);
    }
    if (json_object_get(d, "files") == NULL)
        json_array_foreach(json_object_get(d, "blob_paths"), i, f) printf("  %s\n", json_string_value(f));
}

void ns_describe(json_t *n) {
    kv("Namespace:", jstr(n, "namespace", ""));
    kv("Bucket:", jstr(n, "bucket_id", ""));
    kv("Tenant:", jstr(n, "tenant_id", ""));
    kv("Status:", jstr(n, "status", ""));
    kv("Created:", jstr(n, "created_at", ""));
    kv("Last activity:", jstr(n, "last_activity", ""));
    if (json_object_get(n, "reap_eligible_at")) kv("Reap eligible at:", jstr(n, "reap_eligible_at", ""));
    if (json_object_get(n, "finalized_at")) kv("Finalized:", jstr(n, "finalized_at", ""));
    if (json_object_get(n, "reaped_at")) kv("Reaped:", jstr(n, "reaped_at", ""));
    char c[64]; /* describe lines are for people: cut helper */
    str_fmt_cut(c, sizeof(c), "%lld pods, %lld volumes", (long long)jint(n, "pod_count", 0),
             (long long)jint(n, "pvc_count", 0));
    kv("Holds:", c);
    json_t *reap = json_object_get(n, "reap");
    if (reap && json_object_get(reap, "lastError")) {
        char a[600];
        str_fmt_cut(a, sizeof(a), "step %s, %lld attempts, last error: %s", jstr(reap, "step", "?"),
                 (long long)jint(reap, "attempts", 0), jstr(reap, "lastError", ""));
        kv("Reap:", a);
    }
    if (json_object_get(n, "message")) kv("Message:", jstr(n, "message", ""));
    print_map("Labels", json_object_get(n, "labels"));
    print_map("Annotations", json_object_get(n, "annotations"));
    print_diag(json_object_get(n, "diagnostics"));
}

static int ns_simple(opts *o, const char *verb, const char *done) {
    char path[512], suffix[32];
    fmt_or_die(suffix, sizeof(suffix), "request path", "/%s", verb);
    ns_path(path, sizeof(path), o->pos[0], suffix);
    json_t *r = call("POST", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    printf("namespace/%s %s (status %s)\n", jstr(r, "namespace", o->pos[0]), done, jstr(r, "status", "?"));
    json_decref(r);
    return 0;
}

int cmd_ns_activity(opts *o) { return ns_simple(o, "activity", "activity recorded"); }
int cmd_ns_finalize(opts *o) { return ns_simple(o, "finalize", "finalized"); }

static int ns_eligible(opts *o) {
    json_t *r = call("GET", "/v1/platform/reaper/eligible", NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    json_t *list = json_object_get(r, "eligible");
    if (json_array_size(list) == 0) {
        printf("No namespaces eligible for cleanup (dry run).\n");
    } else {
        printf("Would reap %zu namespaces (dry run):\n", json_array_size(list));
        table *t = ns_table(true);
        size_t i;
        json_t *n;
        json_array_foreach(list, i, n) ns_row(t, n, true);
        render_table(t);
    }
    json_decref(r);
    return 0;
}

/* The one dry run stampd already has: ?dry_run=true on the reap route, and
 * the eligible list for a reap of everything. */
int cmd_ns_reap(opts *o) {
    bool dry = flag(o, "dry-run") != NULL;
    if (o->npos == 0 && dry) {
        if (flag(o, "bucket")) usage_die(o, "ns reap --dry-run without NS lists what a sweep would reap; --bucket needs NS");
        return ns_eligible(o);
    }
    if (o->npos == 0) usage_die(o, "ns reap needs NS (or --dry-run alone, to list what is eligible)");
    char path[768], q[256] = "";
    const char *b = flag(o, "bucket");
    char *eb = b ? url_escape(b) : NULL;
    fmt_or_die(q, sizeof(q), "request path", "/reap%s%s%s%s%s", dry || eb ? "?" : "",
               dry ? "dry_run=true" : "", dry && eb ? "&" : "", eb ? "bucket_id=" : "", eb ? eb : "");
    free(eb);
    ns_path(path, sizeof(path), o->pos[0], q);
    http_timeout_ms = 180000; /* the reap waits for pods and uploads */
    long status = 0;
    json_t *r = call("POST", path, NULL, &status, true);
    if (status >= 400 && r && json_object_get(r, "success") == NULL) {
        const char *m = error_message(r);
        die("%s", m ? m : "reap failed");
    }
    if (printed_structured(o, r)) return status >= 400;
    if (dry) {
        printf("namespace/%s would be reaped (dry run, status %s)\n", jstr(r, "namespace", ""),
               jstr(r, "status", "?"));
        json_t *wd = json_object_get(r, "would_delete");
        printf("  would delete %lld pods and %lld volumes\n", (long long)jint(wd, "pods", 0),
               (long long)jint(wd, "volumes", 0));
        printf("  would archive %lld bytes to container %s (%lld sentinel violations):\n",
               (long long)jint(r, "bytes", 0), jstr(r, "container", "?"),
               (long long)jint(r, "sentinel_violations", 0));
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(r, "would_archive"), i, p) printf("    %s\n", json_string_value(p));
        json_decref(r);
        return 0;
    }
    bool ok = json_is_true(json_object_get(r, "success"));
    printf("namespace/%s %s: %s\n", jstr(r, "namespace", o->pos[0]), ok ? "reaped" : "NOT reaped",
           jstr(r, "message", ""));
    json_t *d = json_object_get(r, "diagnostics");
    size_t i;
    json_t *p;
    if (json_is_true(json_object_get(d, "diagnostics_lost"))) printf("  DIAGNOSTICS LOST\n");
    json_array_foreach(json_object_get(d, "blob_paths"), i, p) printf("  archived %s\n", json_string_value(p));
    json_decref(r);
    return ok ? 0 : 1;
}

int cmd_ns_pods(opts *o) {
    char path[512];
    ns_path(path, sizeof(path), o->pos[0], "/pods");
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    static const char *const h[] = {"NAME", "STATUS", "EXIT", "VIOLATIONS", "AGE"};
    table *t = table_new(5, h);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(r, "pods"), i, p) {
        char ex[24] = "-", age[32]; /* table cells: any %lld fits */
        if (json_object_get(p, "exitCode")) str_fmt_cut(ex, sizeof(ex), "%lld", (long long)jint(p, "exitCode", 0));
        age_since(jstr(p, "startedAt", NULL), age, sizeof(age));
        const char *v = jstr(json_object_get(p, "annotations"), "memory-sentinel-violations", "-");
        char vs[64];
        str_fmt_cut(vs, sizeof(vs), "%.60s", v);
        const char *cells[] = {jstr(p, "name", ""), jstr(p, "phase", ""), ex, vs, age};
        table_add(t, cells);
    }
    if (json_array_size(json_object_get(r, "pods")) == 0) {
        table_free(t);
        fprintf(stderr, "No pods in namespace %s.\n", o->pos[0]);
    } else {
        render_table(t);
    }
    json_decref(r);
    return 0;
}

int cmd_ns_run_pod(opts *o) {
    json_t *args = json_array(), *env = json_object(), *vols = json_array();
    for (int i = 0; i < o->nrest; i++) json_array_append_new(args, json_string(o->rest[i]));
    const char *v[MAX_ARGS];
    int n = nflag(o, "env", v, MAX_ARGS);
    for (int i = 0; i < n; i++) {
        char k[128];
        const char *val = kv_split("env", v[i], k, sizeof(k));
        json_object_set_new(env, k, json_string(val));
    }
    n = nflag(o, "volume", v, MAX_ARGS);
    for (int i = 0; i < n; i++) json_array_append_new(vols, json_string(v[i]));
    json_t *body = json_pack("{s:s,s:o,s:o,s:o}", "name", o->pos[1], "args", args, "env", env, "volumes", vols);
    char path[512];
    ns_path(path, sizeof(path), o->pos[0], "/pods");
    json_t *r = call("POST", path, body, NULL, false);
    json_decref(body);
    if (printed_structured(o, r)) return 0;
    printf("pod/%s started in namespace %s\n", o->pos[1], jstr(r, "namespace", o->pos[0]));
    json_decref(r);
    return 0;
}

/* --tail=N keeps the last N lines of what the server sends (the API can only
 * cut by bytes: limit_bytes, the end of the log). */
void write_tail(const char *data, size_t len, const char *tail) {
    int64_t want = -1;
    if (tail && parse_i64(tail, 0, INT64_MAX, &want) != 0) want = -1;
    size_t start = 0;
    if (want >= 0) {
        size_t end = len;
        if (end > 0 && data[end - 1] == '\n') end--; /* the last line's own newline */
        int64_t seen = 0;
        start = end;
        while (start > 0) {
            if (data[start - 1] == '\n' && ++seen == want) break;
            start--;
        }
        if (want == 0) start = len;
    }
    if (len > start) fwrite(data + start, 1, len - start, stdout);
}

int cmd_ns_logs(opts *o) {
    char path[768], suffix[300];
    char *ep = url_escape(o->pos[1]);
    const char *lim = flag(o, "limit-bytes");
    char *el = lim ? url_escape(lim) : NULL;
    fmt_or_die(suffix, sizeof(suffix), "request path", "/pods/%s/log%s%s", ep,
               el ? "?limit_bytes=" : "", el ? el : "");
    free(ep);
    free(el);
    ns_path(path, sizeof(path), o->pos[0], suffix);
    sbuf resp;
    long status = http("GET", path, NULL, 0, NULL, &resp);
    if (status >= 400) {
        json_t *j = json_loadb(resp.data ? resp.data : "", resp.len, JSON_ALLOW_NUL, NULL);
        const char *m = error_message(j);
        die("%s", m ? m : "request failed");
    }
    if (resp.len) write_tail(resp.data, resp.len, flag(o, "tail"));
    sbuf_free(&resp);
    return 0;
}

int cmd_ns_annotate(opts *o) {
    json_t *body = json_object();
    for (int i = 2; i < o->npos; i++) {
        const char *a = o->pos[i], *eq = strchr(a, '=');
        size_t l = strlen(a);
        char k[256]; /* an annotation key: whole, or exit 2 */
        if (eq) {
            fmt_or_die(k, sizeof(k), "annotation key", "%.*s", (int)(eq - a), a);
            json_object_set_new(body, k, json_string(eq + 1));
        } else if (l > 1 && a[l - 1] == '-') {
            fmt_or_die(k, sizeof(k), "annotation key", "%.*s", (int)(l - 1), a);
            json_object_set_new(body, k, json_null());
        } else {
            die("%s: expected KEY=VALUE or KEY-", a);
        }
    }
    char path[768], suffix[300];
    char *ep = url_escape(o->pos[1]);
    fmt_or_die(suffix, sizeof(suffix), "request path", "/pods/%s/annotations", ep);
    free(ep);
    ns_path(path, sizeof(path), o->pos[0], suffix);
    json_t *r = call("POST", path, body, NULL, false);
    json_decref(body);
    if (printed_structured(o, r)) return 0;
    printf("pod/%s annotated\n", o->pos[1]);
    json_decref(r);
    return 0;
}

int cmd_ns_volume(opts *o) {
    char path[512];
    ns_path(path, sizeof(path), o->pos[0], "/volumes");
    json_t *body = json_pack("{s:s}", "name", o->pos[1]);
    json_t *r = call("POST", path, body, NULL, false);
    json_decref(body);
    if (printed_structured(o, r)) return 0;
    printf("volume/%s created in namespace %s\n", o->pos[1], jstr(r, "namespace", o->pos[0]));
    json_decref(r);
    return 0;
}

/* --set K=V: V as JSON when it parses (numbers, true), else as a string. */
static json_t *config_from_flags(const opts *o) {
    json_t *cfg = NULL;
    const char *file = flag(o, "from-file");
    if (file) {
        json_error_t je;
        cfg = json_load_file(file, 0, &je);
        if (cfg == NULL) die("--from-file %s: line %d: %s", file, je.line, je.text);
        if (!json_is_object(cfg)) die("--from-file %s: must be a JSON object", file);
    } else {
        cfg = json_object();
    }
    const char *v[MAX_ARGS];
    int n = nflag(o, "set", v, MAX_ARGS);
    for (int i = 0; i < n; i++) {
        char k[128];
        const char *text = kv_split("set", v[i], k, sizeof(k));
        json_t *val = json_loads(text, JSON_DECODE_ANY, NULL);
        json_object_set_new(cfg, k, val ? val : json_string(text));
    }
    return cfg;
}

static void print_run(json_t *r) {
    printf("run/%s %s in namespace %s (bucket %s)\n", jstr(r, "run", "?"), jstr(r, "status", "?"),
           jstr(r, "namespace", "?"), jstr(r, "bucket_id", "?"));
    printf("  bundle       %s\n", jstr(r, "model_bundle_hash", "-"));
    printf("  result hash  %s\n", jstr(r, "result_hash", "-"));
    if (json_object_get(r, "message")) printf("  message      %s\n", jstr(r, "message", ""));
}

int cmd_ns_run(opts *o) {
    const char *h = flag(o, "bundle");
    json_t *body = json_pack("{s:s,s:o}", "model_bundle_hash", h, "config", config_from_flags(o));
    char path[512];
    ns_path(path, sizeof(path), o->pos[0], "/runs");
    http_timeout_ms = 3600000; /* the pipeline's own time (pipeline-timeout) */
    long status = 0;
    json_t *r = call("POST", path, body, &status, true);
    json_decref(body);
    if (status >= 400 && r && json_object_get(r, "run") == NULL) {
        const char *m = error_message(r);
        die("%s", m ? m : "run failed");
    }
    if (printed_structured(o, r)) return status >= 400;
    print_run(r);
    json_decref(r);
    return status >= 400;
}

int cmd_ns_create(opts *o) {
    char path[512];
    char *b = url_escape(o->pos[0]);
    fmt_or_die(path, sizeof(path), "request path", "/v1/platform/namespaces?bucket_id=%s", b);
    free(b);
    json_t *r = call("POST", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    printf("namespace/%s created\n", jstr(r, "namespace", ""));
    json_decref(r);
    return 0;
}

int cmd_ns_get(opts *o) {
    char path[512];
    ns_path(path, sizeof(path), o->pos[0], "");
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    ns_describe(r);
    json_decref(r);
    return 0;
}

int cmd_ns_sweep(opts *o) {
    json_t *r = call("POST", "/v1/platform/reaper/sweep", NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    printf("reaper sweep: %lld namespaces enqueued\n", (long long)jint(r, "enqueued", 0));
    json_decref(r);
    return 0;
}

int cmd_bundle_push(opts *o) {
    char *data = NULL;
    size_t len = 0;
    serr e = {0};
    if (read_file(o->pos[0], (size_t)1 << 30, &data, &len, &e)) die("%s", e.msg);
    if (len == 0) die("%s: empty file", o->pos[0]);
    http_timeout_ms = 600000;
    json_t *r = call_raw("POST", "/v1/platform/bundles", data, len, "application/octet-stream", NULL, false);
    free(data);
    if (printed_structured(o, r)) return 0;
    printf("bundle/%s %s (%lld bytes)\n", jstr(r, "hash", ""),
           json_is_true(json_object_get(r, "existed")) ? "unchanged" : "pushed",
           (long long)jint(r, "size", 0));
    json_decref(r);
    return 0;
}

table *bundle_table(bool wide) {
    static const char *const h[] = {"HASH", "SIZE", "PUSHED BY", "AGE"};
    (void)wide;
    return table_new(4, h);
}

void bundle_row(table *t, json_t *b, bool wide) {
    char sz[32], age[32];
    (void)wide;
    str_fmt_cut(sz, sizeof(sz), "%lld", (long long)jint(b, "size", 0)); /* fits */
    age_since(jstr(b, "pushed_at", NULL), age, sizeof(age));
    const char *cells[] = {jstr(b, "hash", ""), sz, jstr(b, "pushed_by", ""), age};
    table_add(t, cells);
}

int cmd_bundle_list(opts *o) {
    json_t *r = call("GET", "/v1/platform/bundles", NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    table *t = bundle_table(false);
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(r, "bundles"), i, b) bundle_row(t, b, false);
    render_table(t);
    json_decref(r);
    return 0;
}

table *run_table(bool wide) {
    static const char *const h[] = {"RUN", "BUCKET", "STATUS", "BUNDLE", "RESULT", "AGE"};
    (void)wide;
    return table_new(6, h);
}

void run_row(table *t, json_t *x, bool wide) {
    char bh[16], rh[16], age[32]; /* short hashes for people, 12 on purpose */
    (void)wide;
    str_fmt_cut(bh, sizeof(bh), "%.12s", jstr(x, "model_bundle_hash", "-"));
    str_fmt_cut(rh, sizeof(rh), "%.12s", jstr(x, "result_hash", "-"));
    age_since(jstr(x, "created_at", NULL), age, sizeof(age));
    const char *cells[] = {jstr(x, "run", ""), jstr(x, "bucket_id", ""), jstr(x, "status", ""), bh, rh, age};
    table_add(t, cells);
}

int cmd_runs(opts *o) {
    char path[512] = "/v1/platform/runs";
    const char *b = flag(o, "bucket");
    if (b) {
        char *e = url_escape(b);
        fmt_or_die(path, sizeof(path), "request path", "/v1/platform/runs?bucket_id=%s", e);
        free(e);
    }
    json_t *r = call("GET", path, NULL, NULL, false);
    if (printed_structured(o, r)) return 0;
    table *t = run_table(false);
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r, "runs"), i, x) run_row(t, x, false);
    render_table(t);
    json_decref(r);
    return 0;
}

int cmd_mttc_verify(opts *o) {
    const char *b = flag(o, "bucket"), *h = flag(o, "bundle");
    json_t *body = json_pack("{s:s,s:s}", "bucket_id", b, "model_bundle_hash", h);
    http_timeout_ms = 3600000;
    json_t *r = call("POST", "/v1/platform/mttc/verify", body, NULL, false);
    json_decref(body);
    bool ok = json_is_true(json_object_get(r, "success"));
    if (printed_structured(o, r)) return ok ? 0 : 1;
    printf("%s\n", jstr(r, "message", ok ? "MTTC verification passed" : "MTTC verification failed"));
    printf("  original result  %s\n", jstr(r, "original_result_hash", "-"));
    printf("  resumed result   %s\n", jstr(r, "resumed_result_hash", "-"));
    printf("  namespace        %s (cleanup %s)\n", jstr(r, "verification_namespace", "-"),
           jstr(r, "cleanup", "-"));
    json_t *d = json_object_get(r, "duration_seconds"), *tg = json_object_get(r, "target_seconds");
    printf("  duration         %.2fs of a %.0fs target\n", json_number_value(d), json_number_value(tg));
    json_t *st = json_object_get(r, "steps");
    const char *k;
    json_t *v;
    json_object_foreach(st, k, v) printf("    %-26s %.3fs\n", k, json_number_value(v));
    json_decref(r);
    return ok ? 0 : 1;
}

int cmd_token_create(opts *o) {
    const char *t = flag(o, "tenant"), *u = flag(o, "user");
    json_t *body = json_pack("{s:s,s:s}", "tenant_id", t, "user_id", u);
    /* "tenant" is the default: no role claim. */
    if (flag(o, "role") && strcmp(flag(o, "role"), "operator") == 0)
        json_object_set_new(body, "role", json_string("operator"));
    if (flag(o, "ttl")) json_object_set_new(body, "ttl", json_string(flag(o, "ttl")));
    json_t *r = call("POST", "/v1/tokens", body, NULL, false);
    json_decref(body);
    if (printed_structured(o, r)) return 0;
    /* Only the token on stdout, so $(stampctl token create ...) works. */
    printf("%s\n", jstr(r, "token", ""));
    fprintf(stderr, "token for %s/%s expires %s\n", jstr(r, "tenant_id", ""), jstr(r, "user_id", ""),
            jstr(r, "expires_at", ""));
    json_decref(r);
    return 0;
}
