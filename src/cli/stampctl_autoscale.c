/*
 * stampctl_autoscale.c - the StampAutoscaler on the command line: `get
 * autoscalers` rows, and `autoscaler simulate`, the what-if replay of an
 * autoscaler manifest against a metric trace.  simulate needs no server:
 * it runs the decision functions the controller runs (autoscale/decide.h)
 * on a model fleet (autoscale/simulate.h) and prints each decision and a
 * summary.  Its flags are checked by the parser (the table in stampctl.c)
 * before this runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/decide.h"
#include "autoscale/simulate.h"
#include "autoscale/spec.h"
#include "cli/stampctl.h"

const ca_flag f_as_simulate[] = {
    {"filename", 'f', CA_STRING, NULL, true, false, "FILE", "the StampAutoscaler manifest (YAML or JSON)", NULL},
    {"trace", 0, CA_STRING, NULL, true, false, "FILE", "the metric trace: CSV rows t,metric,value[,stamp]", NULL},
    {"initial", 0, CA_STRING, NULL, false, false, "FLEET",
     "the starting fleet, like westeurope:2,eastus:1,ready:1 (default: minStamps Active over spec.regions)", NULL},
    {"warm", 0, CA_DURATION, NULL, false, false, "DURATION", "how long a warm activation takes (default 90s)", NULL},
    {"cold", 0, CA_DURATION, NULL, false, false, "DURATION", "how long a cold deploy takes (default 7m)", NULL},
    {"drain", 0, CA_DURATION, NULL, false, false, "DURATION", "how long a drain to standby takes (default 1m)", NULL},
    {"fleet-min-regions", 0, CA_INT, NULL, false, false, "N", "the fleet rule's regions (default 2, 0: off)", NULL},
    {"speed", 0, CA_INT, NULL, false, false, "N", "pace the replay at N times real time (default: no pacing)", NULL},
    {"all", 0, CA_BOOL, NULL, false, false, NULL, "print every evaluation, not only those where something happened",
     NULL},
    {NULL, 0, CA_BOOL, NULL, false, false, NULL, NULL, NULL}};

/* ---- get autoscalers ---- */

table *as_table(bool w) {
    static const char *const h[] = {"NAME", "TEMPLATE", "REGIONS", "MIN", "MAX", "TRIGGERS", "PAUSED", "AGE"};
    (void)w;
    return table_new(8, h);
}

void as_row(table *t, json_t *a, bool w) {
    (void)w;
    json_t *sp = json_object_get(a, "spec"), *regs = json_object_get(sp, "regions");
    char regions[256] = "", mn[24], mx[24], trig[48], age[32];
    size_t o = 0, i;
    json_t *r;
    json_array_foreach(regs, i, r) o += str_fmt_cut(regions + o, sizeof(regions) - o, "%s%s", i ? "," : "",
                                                   json_string_value(r) ? json_string_value(r) : "?");
    json_t *out = json_object_get(sp, "scaleOut"), *in = json_object_get(sp, "scaleIn");
    str_fmt_cut(mn, sizeof(mn), "%lld", (long long)jint(in, "minStamps", 2));
    str_fmt_cut(mx, sizeof(mx), "%lld", (long long)jint(out, "maxStamps", 0));
    str_fmt_cut(trig, sizeof(trig), "%zu out, %zu in", json_array_size(json_object_get(out, "triggers")),
                json_array_size(json_object_get(in, "triggers")));
    age_since(jstr(json_object_get(a, "metadata"), "creationTimestamp", NULL), age, sizeof(age));
    const char *cells[] = {jstr(json_object_get(a, "metadata"), "name", "?"), jstr(sp, "template", "(the only one)"),
                           o ? regions : "(where its stamps are)", mn, mx, trig,
                           json_is_true(json_object_get(sp, "paused")) ? "true" : "false", age};
    table_add(t, cells);
}

/* ---- autoscaler simulate ---- */

/* The StampAutoscaler of a manifest file (the only one in it). */
static json_t *read_autoscaler(const char *file, as_spec *sp) {
    char *text;
    size_t len;
    serr e = {0};
    if (read_file(file, MANIFEST_MAX_BYTES, &text, &len, &e) != 0) die("%s: %s", file, e.msg);
    json_t *doc = NULL;
    int multi = 0;
    int rc = yaml_to_json(text, len, &doc, &multi, &e);
    free(text);
    if (rc) die("%s: %s", file, e.msg);
    json_t *found = NULL;
    if (multi) {
        size_t i;
        json_t *d;
        json_array_foreach(doc, i, d) {
            if (!json_is_object(d) || strcmp(jstr(d, "kind", ""), "StampAutoscaler") != 0) continue;
            if (found) die("%s: more than one StampAutoscaler; give a file with one", file);
            found = d;
        }
    } else if (json_is_object(doc) && strcmp(jstr(doc, "kind", ""), "StampAutoscaler") == 0) {
        found = doc;
    }
    if (found == NULL) die("%s: no StampAutoscaler in it (kind: StampAutoscaler)", file);
    json_incref(found);
    json_decref(doc);
    if (as_spec_parse(json_object_get(found, "spec"), sp, &e) != 0) die("%s: %s", file, e.msg);
    return found;
}

static int64_t dur_flag(const opts *o, const char *name) {
    const char *v = flag(o, name);
    int64_t ms = 0;
    if (v && parse_duration_ms(v, &ms) != 0) usage_die(o, "--%s: \"%s\" is not a duration", name, v);
    return ms;
}

static int int_flag(const opts *o, const char *name, int dflt, int lo, int hi) {
    const char *v = flag(o, name);
    int64_t n = dflt;
    if (v && parse_i64(v, lo, hi, &n) != 0) usage_die(o, "--%s: a whole number from %d to %d", name, lo, hi);
    return (int)n;
}

/* "1:05:30": times in a replay are read side by side, so every one has
 * the same shape. */
static const char *clock_text(int64_t ms, char *buf, size_t len) {
    int64_t s = ms / 1000;
    str_fmt_cut(buf, len, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60),
                (long long)(s % 60));
    return buf;
}

static void print_header(const char *name, const as_spec *sp, json_t *fleet, const char *trace, int64_t end,
                         const sim_opts *so) {
    char iv[FMT_DURATION_LEN], w[FMT_DURATION_LEN], c[FMT_DURATION_LEN], d[FMT_DURATION_LEN], e[FMT_DURATION_LEN];
    printf("StampAutoscaler %s: evaluated every %s, maxStamps %d, minStamps %d%s\n", name,
           fmt_duration(sp->interval_ms, iv, sizeof(iv)), sp->out.limit, sp->in.limit, sp->paused ? ", paused" : "");
    printf("Model: warm activation %s, cold deploy %s, drain %s; trace %s, 0:00:00 to %s\n",
           fmt_duration(so->warm_ms, w, sizeof(w)), fmt_duration(so->cold_ms, c, sizeof(c)),
           fmt_duration(so->drain_ms, d, sizeof(d)), trace,
           clock_text(end, e, sizeof(e)));
    printf("Initial fleet:");
    size_t i;
    json_t *s;
    json_array_foreach(fleet, i, s) printf("%s %s %s", i ? "," : "", jstr(s, "name", "?"), jstr(s, "phase", "?"));
    printf("\n\n%-9s %s\n", "TIME", "DECISION");
}

static void print_summary(const as_spec *sp, json_t *sum) {
    json_t *h = json_object_get(sum, "stampHours");
    char dur[FMT_DURATION_LEN];
    printf("\nSummary: %s of trace, %lld evaluations\n",
           fmt_duration((int64_t)(json_number_value(json_object_get(sum, "durationS")) * 1000), dur, sizeof(dur)),
           (long long)jint(sum, "evaluations", 0));
    printf("  stamp-hours        %.2f (Active %.2f, standby %.2f, starting %.2f, draining %.2f)\n",
           json_number_value(json_object_get(h, "total")), json_number_value(json_object_get(h, "active")),
           json_number_value(json_object_get(h, "standby")), json_number_value(json_object_get(h, "starting")),
           json_number_value(json_object_get(h, "draining")));
    printf("  warm activations   %lld\n  cold deploys       %lld\n  drains             %lld\n"
           "  retirements        %lld\n  peak counted       %lld (maxStamps %d)\n",
           (long long)jint(sum, "warmActivations", 0), (long long)jint(sum, "coldDeploys", 0),
           (long long)jint(sum, "drains", 0), (long long)jint(sum, "retirements", 0),
           (long long)jint(sum, "peakCounted", 0), sp->out.limit);
    const char *k;
    json_t *v;
    printf("  blocked            ");
    if (json_object_size(json_object_get(sum, "blocked")) == 0) printf("never");
    int n = 0;
    json_object_foreach(json_object_get(sum, "blocked"), k, v)
        printf("%s%s %lld evaluation(s)", n++ ? ", " : "", k, (long long)json_integer_value(v));
    printf("\n  over thresholds    ");
    size_t i;
    json_array_foreach(json_object_get(sum, "overThreshold"), i, v)
        printf("%s%s > %s: %.2f min", i ? "; " : "", jstr(v, "metric", "?"), jstr(v, "threshold", "?"),
               json_number_value(json_object_get(v, "minutes")));
    json_t *f = json_object_get(sum, "final");
    printf("\n  final fleet        %lld Active, %lld Ready, %lld activating, %lld Creating, %lld Draining\n",
           (long long)jint(f, "active", 0), (long long)jint(f, "ready", 0), (long long)jint(f, "activating", 0),
           (long long)jint(f, "creating", 0), (long long)jint(f, "draining", 0));
}

static json_t *tick_json(const as_spec *sp, const sim_tick *k, const char *line) {
    char t[32];
    json_t *ev = json_array();
    for (int i = 0; i < k->nevents; i++) json_array_append_new(ev, json_string(k->events[i]));
    return json_pack("{s:f,s:s,s:b,s:s,s:o,s:o}", "t", (double)k->t_ms / 1000.0, "time",
                     clock_text(k->t_ms, t, sizeof(t)), "decided", k->decided, "line", line, "events", ev,
                     "decision", as_decision_to_json(sp, k->d));
}

/* Long: options into the model, the tick loop with its two outputs (a
 * line per decision, or JSON), then the summary. */
int cmd_autoscaler_simulate(opts *o) {
    as_spec *sp = malloc(sizeof(*sp));
    if (sp == NULL) die("out of memory");
    const char *file = flag(o, "filename"), *trace = flag(o, "trace");
    json_t *m = read_autoscaler(file, sp);
    serr e = {0};
    sim_trace *tr;
    if (sim_trace_load(trace, &tr, &e) != 0) die("%s", e.msg);
    sim_opts so = {.initial = flag(o, "initial"),
                   .warm_ms = flag(o, "warm") ? dur_flag(o, "warm") : SIM_WARM_MS,
                   .cold_ms = flag(o, "cold") ? dur_flag(o, "cold") : SIM_COLD_MS,
                   .drain_ms = flag(o, "drain") ? dur_flag(o, "drain") : SIM_DRAIN_MS,
                   .fleet_min_regions = int_flag(o, "fleet-min-regions", 2, 0, 100)};
    int speed = int_flag(o, "speed", 0, 1, 1000000);
    bool all = flag(o, "all") != NULL, structured_out = structured(o);
    sim *s;
    if (sim_new(sp, tr, &so, &s, &e) != 0) die("%s", e.msg);
    const char *name = jstr(json_object_get(m, "metadata"), "name", "?");
    json_t *initial = sim_fleet_json(s), *ticks = json_array();
    if (!structured_out) print_header(name, sp, initial, trace, sim_trace_end_ms(tr), &so);
    sim_tick *k = malloc(sizeof(*k));
    if (k == NULL) die("out of memory");
    while (sim_step(s, k) == 1) {
        char line[1024], t[32];
        as_decision_line(sp, k->d, line, sizeof(line));
        if (all || k->notable) {
            if (structured_out) {
                json_array_append_new(ticks, tick_json(sp, k, line));
            } else {
                for (int i = 0; i < k->nevents; i++) printf("%-9s %s\n", clock_text(k->t_ms, t, sizeof(t)), k->events[i]);
                if (all || k->decided)
                    printf("%-9s %s\n", clock_text(k->t_ms, t, sizeof(t)), line);
                fflush(stdout);
            }
        }
        if (speed > 0) sleep_ms(sp->interval_ms / speed);
    }
    json_t *sum = sim_summary_json(s);
    if (structured_out) {
        json_t *out = json_pack("{s:s,s:o,s:{s:s,s:I,s:I,s:I,s:i},s:O,s:o,s:o}", "autoscaler", name, "initial",
                                initial, "model", "trace", trace, "warmMs",
                                (json_int_t)so.warm_ms, "coldMs", (json_int_t)so.cold_ms, "drainMs",
                                (json_int_t)so.drain_ms, "fleetMinRegions",
                                so.fleet_min_regions, "summary", sum, "decisions", ticks, "fleet", sim_fleet_json(s));
        print_json_or_yaml(out, o->output);
        json_decref(out);
    } else {
        print_summary(sp, sum);
        json_decref(initial);
        json_decref(ticks);
    }
    json_decref(sum);
    free(k);
    sim_free(s);
    sim_trace_free(tr);
    json_decref(m);
    free(sp);
    return 0;
}

/* `stampctl describe autoscaler NAME`: what kubectl describe hpa shows,
 * from status: conditions, every trigger with its value and breach timer,
 * the last decisions, what is blocked and why, and the recent events.
 * Long: one section after another, in the order kubectl describe hpa uses. */
void describe_autoscaler(json_t *it) {
    json_t *md = json_object_get(it, "metadata"), *spec = json_object_get(it, "spec");
    json_t *st = json_object_get(it, "status"), *d = json_object_get(st, "lastDecision");
    const char *name = jstr(md, "name", "");
    printf("Name:          %s\n", name);
    printf("Template:      %s\n", jstr(spec, "template", "(the only StampTemplate)"));
    json_t *regs = json_object_get(spec, "regions");
    printf("Regions:       ");
    size_t i;
    json_t *x;
    json_array_foreach(regs, i, x) printf("%s%s", i ? ", " : "", json_string_value(x));
    printf("%s\n", json_array_size(regs) ? "" : "(those of its stamps)");
    json_t *so = json_object_get(spec, "scaleOut"), *si = json_object_get(spec, "scaleIn");
    printf("Stamps:        min %lld, max %lld; desired %lld\n", (long long)jint(si, "minStamps", 2),
           (long long)jint(so, "maxStamps", 0), (long long)jint(st, "desiredStamps", 0));
    json_t *cnt = json_object_get(d, "stamps");
    if (cnt)
        printf("Now:           %lld active, %lld creating, %lld activating, %lld draining, %lld ready\n",
               (long long)jint(cnt, "active", 0), (long long)jint(cnt, "creating", 0),
               (long long)jint(cnt, "activating", 0), (long long)jint(cnt, "draining", 0),
               (long long)jint(cnt, "ready", 0));
    printf("Paused:        %s\n", json_is_true(json_object_get(spec, "paused")) ? "yes" : "no");
    if (json_object_get(st, "lastError")) printf("Error:         %s\n", jstr(st, "lastError", ""));
    if (d == NULL) {
        printf("Not evaluated yet.\n");
        return;
    }
    printf("Decision:      %s\n", jstr(d, "reason", ""));
    json_t *bl = json_object_get(d, "blocked");
    if (bl) printf("Blocked:       %s\n", jstr(bl, "reason", ""));
    printf("\nConditions:\n");
    static const char *const ch[] = {"TYPE", "STATUS", "REASON", "MESSAGE"};
    table *t = table_new(4, ch);
    json_array_foreach(json_object_get(d, "conditions"), i, x) {
        const char *cells[] = {jstr(x, "type", ""), jstr(x, "status", ""), jstr(x, "reason", ""),
                               jstr(x, "message", "")};
        table_add(t, cells);
    }
    render_table(t);
    printf("\nTriggers:\n");
    static const char *const th[] = {"DIRECTION", "METRIC", "VALUE", "THRESHOLD", "FOR", "DURATION", "MET",
                                     "REPORTING", "MISSING"};
    t = table_new(9, th);
    json_array_foreach(json_object_get(d, "triggers"), i, x) {
        char rep[32];
        snprintf(rep, sizeof(rep), "%lld/%lld", (long long)jint(x, "reporting", 0), (long long)jint(x, "expected", 0));
        const char *cells[] = {jstr(x, "direction", ""), jstr(x, "metric", ""), jstr(x, "valueText", "<none>"),
                               jstr(x, "thresholdText", ""), jstr(x, "for", "-"), jstr(x, "duration", ""),
                               json_is_true(json_object_get(x, "met")) ? "yes" : "no", rep,
                               jstr(x, "missing", "")};
        table_add(t, cells);
    }
    render_table(t);
    printf("\nLast decisions:\n");
    static const char *const dh[] = {"TIME", "WANT", "ACTIONS", "REASON"};
    t = table_new(4, dh);
    json_array_foreach(json_object_get(st, "decisions"), i, x) {
        char n[16];
        snprintf(n, sizeof(n), "%lld", (long long)jint(x, "actions", 0));
        const char *cells[] = {jstr(x, "time", ""), jstr(x, "want", ""), n, jstr(x, "reason", "")};
        table_add(t, cells);
    }
    render_table(t);
    char path[512], *e = url_escape(name);
    fmt_or_die(path, sizeof(path), "request path", "/v1/events?kind=StampAutoscaler&name=%s&limit=256", e);
    free(e);
    json_t *evs = call("GET", path, NULL, NULL, false);
    json_t *items = json_object_get(evs, "items");
    printf("\nEvents:\n");
    static const char *const eh[] = {"TIME", "TYPE", "REASON", "MESSAGE"};
    t = table_new(4, eh);
    size_t n = json_array_size(items), from = n > 10 ? n - 10 : 0;
    for (i = from; i < n; i++) {
        x = json_array_get(items, i);
        const char *cells[] = {jstr(x, "time", ""), jstr(x, "type", ""), jstr(x, "reason", ""),
                               jstr(x, "message", "")};
        table_add(t, cells);
    }
    render_table(t);
    json_decref(evs);
}
