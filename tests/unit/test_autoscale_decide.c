/*
 * test_autoscale_decide.c - the StampAutoscaler's decision function, from
 * tables: each scenario is a spec (the seed's, changed field by field), a
 * world of stamps, and evaluations at increasing times with the metric
 * values and phase changes seen at each; each evaluation must take the
 * expected actions, be refused by the expected rule, and say the expected
 * words.  The state is carried from one evaluation to the next as the
 * controller and simulate carry it, so breach timers and cooldowns run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "autoscale/decide.h"
#include "autoscale/spec.h"
#include "util/util.h"

#define BASE_MS 1700000000000LL
#define W_MAX 32

/* Seed 000's spec with the decided fields of the example. */
static const char base_spec[] =
    "{\"template\":\"synaxis-stamp\",\"regions\":[\"westeurope\",\"eastus\"],\"interval\":\"15s\",\"step\":1,"
    "\"scaleOut\":{\"triggers\":[{\"metric\":\"cpu_utilization\",\"threshold\":70,\"duration\":\"5m\"},"
    "{\"metric\":\"memory_utilization\",\"threshold\":80,\"duration\":\"5m\"},"
    "{\"metric\":\"request_latency_p99\",\"threshold\":\"500ms\",\"duration\":\"3m\"}],"
    "\"cooldown\":\"10m\",\"maxStamps\":10},"
    "\"scaleIn\":{\"triggers\":[{\"metric\":\"cpu_utilization\",\"threshold\":30,\"duration\":\"15m\"},"
    "{\"metric\":\"active_connections\",\"threshold\":10,\"duration\":\"10m\"}],"
    "\"cooldown\":\"30m\",\"minStamps\":2},"
    "\"standby\":{\"maxAge\":\"72h\",\"scaleDown\":{\"generalPool\":0,\"gpuPool\":0}}}";

/* ---- a small world the steps change ---- */

typedef struct tworld {
    as_stamp st[W_MAX];
    int n;
    bool ok[W_MAX][AM_N];
    double v[W_MAX][AM_N];
} tworld;

static int metric_of(const char *s) {
    static const struct {
        const char *k;
        int m;
    } names[] = {{"cpu", AM_CPU},   {"mem", AM_MEMORY},        {"lat", AM_LATENCY_P99}, {"conn", AM_CONNECTIONS},
                 {"queue", AM_QUEUE_DEPTH}, {"jobs", AM_ACTIVE_JOBS}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i].k, s) == 0) return names[i].m;
    fail_msg("unknown metric %s in a test row", s);
    return -1;
}

static int find(tworld *w, const char *short_name) {
    char full[80];
    snprintf(full, sizeof(full), "synaxis-%s", short_name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->st[i].name, full) == 0 || strcmp(w->st[i].name, short_name) == 0) return i;
    fail_msg("no stamp %s in the world", short_name);
    return -1;
}

/* "weu-001:Active eus-002:Ready:held weu-003:Deleted eus-009:Active:other
 *  weu-002:Ready:age=7200" */
static void world_init(tworld *w, const char *text) {
    memset(w, 0, sizeof(*w));
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", text);
    for (char *tok = buf; tok && *tok;) {
        char *sp = strchr(tok, ' ');
        if (sp) *sp = '\0';
        as_stamp *s = &w->st[w->n];
        char code[8] = "", id[8] = "";
        char *c1 = strchr(tok, ':');
        assert_non_null(c1);
        *c1 = '\0';
        assert_int_equal(sscanf(tok, "%7[a-z]-%7[0-9]", code, id), 2);
        snprintf(s->name, sizeof(s->name), "synaxis-%s-%s", code, id);
        snprintf(s->region, sizeof(s->region), "%s", region_from_code(code));
        snprintf(s->id, sizeof(s->id), "%s", id);
        s->governed = true;
        char *f = c1 + 1;
        for (int k = 0; f; k++) {
            char *c = strchr(f, ':');
            if (c) *c = '\0';
            if (k == 0) s->phase = as_phase_parse(f);
            else if (strcmp(f, "held") == 0) s->held = true;
            else if (strcmp(f, "activating") == 0) s->activating = true;
            else if (strcmp(f, "other") == 0) s->governed = false;
            else if (strncmp(f, "age=", 4) == 0) s->ready_since_ms = BASE_MS - strtoll(f + 4, NULL, 10) * 1000;
            f = c ? c + 1 : NULL;
        }
        assert_true(s->phase >= 0);
        if (s->phase == AP_READY && s->ready_since_ms == 0) s->ready_since_ms = BASE_MS;
        w->n++;
        tok = sp ? sp + 1 : NULL;
    }
}

/* "cpu=85 mem=50 conn@eus-001=-": a value for every stamp, or one ("-":
 * no value). */
static void world_set(tworld *w, const char *text) {
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", text ? text : "");
    for (char *tok = buf; tok && *tok;) {
        char *sp = strchr(tok, ' ');
        if (sp) *sp = '\0';
        char *eq = strchr(tok, '='), *at = strchr(tok, '@');
        assert_non_null(eq);
        *eq = '\0';
        if (at) *at = '\0';
        int m = metric_of(tok);
        bool ok = strcmp(eq + 1, "-") != 0;
        double v = ok ? strtod(eq + 1, NULL) : 0;
        for (int i = 0; i < w->n; i++) {
            if (at && i != find(w, at + 1)) continue;
            w->ok[i][m] = ok;
            w->v[i][m] = v;
        }
        tok = sp ? sp + 1 : NULL;
    }
}

/* "weu-002=Active eus-002=Failed" */
static void world_phases(tworld *w, const char *text) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", text ? text : "");
    for (char *tok = buf; tok && *tok;) {
        char *sp = strchr(tok, ' ');
        if (sp) *sp = '\0';
        char *eq = strchr(tok, '=');
        assert_non_null(eq);
        *eq = '\0';
        as_stamp *s = &w->st[find(w, tok)];
        s->phase = as_phase_parse(eq + 1);
        assert_true(s->phase >= 0);
        s->activating = false;
        tok = sp ? sp + 1 : NULL;
    }
}

/* What the controller would do with the actions, at once. */
static void world_apply(tworld *w, const as_decision *d, int64_t now) {
    for (int i = 0; i < d->nactions; i++) {
        const as_action *a = &d->actions[i];
        if (a->act == AA_DEPLOY) {
            assert_true(w->n < W_MAX);
            as_stamp *s = &w->st[w->n++];
            memset(s, 0, sizeof(*s));
            snprintf(s->name, sizeof(s->name), "%s", a->stamp);
            snprintf(s->region, sizeof(s->region), "%s", a->region);
            snprintf(s->id, sizeof(s->id), "%s", a->id);
            s->phase = AP_CREATING;
            s->governed = true;
            continue;
        }
        as_stamp *s = &w->st[find(w, a->stamp)];
        if (a->act == AA_ACTIVATE) s->activating = true;
        else if (a->act == AA_DRAIN) s->phase = AP_DRAINING;
    }
    for (int i = 0; i < d->nretire; i++) w->st[find(w, d->retire[i].stamp)].phase = AP_DELETED;
    (void)now;
}

static void world_fill(const as_spec *sp, tworld *w) {
    for (int i = 0; i < w->n; i++) {
        memset(w->st[i].out, 0, sizeof(w->st[i].out));
        memset(w->st[i].in, 0, sizeof(w->st[i].in));
        for (int m = 0; m < AM_N; m++) as_stamp_set(sp, &w->st[i], m, w->ok[i][m], w->v[i][m]);
    }
}

/* ---- specs ---- */

/* The base spec with "path=JSON;path=JSON" applied (null removes). */
static void spec_make(const char *mods, as_spec *sp) {
    json_t *spec = json_loads(base_spec, 0, NULL);
    assert_non_null(spec);
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", mods ? mods : "");
    for (char *tok = buf; tok && *tok;) {
        char *semi = strchr(tok, ';');
        if (semi) *semi = '\0';
        char *eq = strchr(tok, '=');
        assert_non_null(eq);
        *eq = '\0';
        json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        if (v == NULL) fail_msg("bad JSON in a test row: %s", eq + 1);
        json_t *cur = spec;
        char *p = tok;
        for (char *dot; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
            *dot = '\0';
            cur = json_object_get(cur, p);
            assert_non_null(cur);
        }
        if (json_is_null(v)) json_object_del(cur, p); /* null: leave the field out */
        else json_object_set_new(cur, p, v);
        if (json_is_null(v)) json_decref(v);
        tok = semi ? semi + 1 : NULL;
    }
    serr e = {0};
    if (as_spec_parse(spec, sp, &e) != 0) fail_msg("test spec refused: %s", e.msg);
    json_decref(spec);
}

/* ---- scenarios ---- */

typedef struct step {
    int t;              /* seconds from the start */
    const char *set;    /* metric values seen from now on */
    const char *phases; /* phase changes before the evaluation */
    const char *acts;   /* "activate synaxis-weu-002, deploy synaxis-eus-002", or "none" */
    int block;          /* the rule that refused (AB_NONE: none) */
    const char *text;   /* words the decision's line must hold, or NULL */
    bool apply;         /* then the actions happen in the world */
} step;

typedef struct scenario {
    const char *name;
    const char *mods;
    const char *world;
    int fleet_min_regions;
    int last_out, last_in; /* seconds from the start of a scale before the first step (0: never) */
    step steps[12];
} scenario;

#define END {-1, NULL, NULL, NULL, 0, NULL, false}

static void actions_text(const as_decision *d, char *buf, size_t len) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < d->nactions; i++)
        o += str_fmt_cut(buf + o, len - o, "%s%s %s", o ? ", " : "", as_act_names[d->actions[i].act], d->actions[i].stamp);
    for (int i = 0; i < d->nretire; i++)
        o += str_fmt_cut(buf + o, len - o, "%sretire %s", o ? ", " : "", d->retire[i].stamp);
    if (o == 0) str_fmt_cut(buf, len, "none");
}

static void run(const scenario *sc, as_spec *sp, tworld *w, as_decision *d) {
    spec_make(sc->mods, sp);
    world_init(w, sc->world);
    as_state st;
    memset(&st, 0, sizeof(st));
    if (sc->last_out) st.last_out_ms = BASE_MS + (int64_t)sc->last_out * 1000;
    if (sc->last_in) st.last_in_ms = BASE_MS + (int64_t)sc->last_in * 1000;
    for (int k = 0; sc->steps[k].t >= 0; k++) {
        const step *s = &sc->steps[k];
        world_set(w, s->set);
        world_phases(w, s->phases);
        world_fill(sp, w);
        as_world aw = {.stamps = w->st, .n = w->n, .fleet_min_regions = sc->fleet_min_regions};
        int64_t now = BASE_MS + (int64_t)s->t * 1000;
        assert_int_equal(as_decide(sp, &aw, now, &st, &st, d), 0);
        char acts[512], line[1024];
        actions_text(d, acts, sizeof(acts));
        as_decision_line(sp, d, line, sizeof(line));
        if (strcmp(acts, s->acts) != 0 || d->block != s->block || (s->text && strstr(line, s->text) == NULL))
            fail_msg("%s, t=%ds:\n  got  %s [%s]\n  want %s [%s] with \"%s\"\n  line %s", sc->name, s->t, acts,
                     as_block_names[d->block], s->acts, as_block_names[s->block], s->text ? s->text : "", line);
        /* The record renders, and says what the line says. */
        json_t *j = as_decision_to_json(sp, d);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "reason")), d->reason);
        assert_int_equal(json_array_size(json_object_get(j, "actions")), d->nactions);
        assert_int_equal(json_array_size(json_object_get(j, "conditions")), 3);
        json_decref(j);
        if (s->apply) world_apply(w, d, now);
    }
}

static const scenario scenarios[] = {
    {"a breach must hold for its whole duration, then the warm stamp goes first",
     NULL, "weu-001:Active eus-001:Active weu-002:Ready", 2, 0, 0,
     {{0, "cpu=40 mem=50 lat=0.2 conn=200", NULL, "none", AB_NONE, "steady: scale-out cpu_utilization 40% <= 70%", false},
      {60, "cpu=85", NULL, "none", AB_NONE, "cpu_utilization 85% > 70% for 0ms of 5m", false},
      {240, NULL, NULL, "none", AB_NONE, "cpu_utilization 85% > 70% for 3m of 5m", false},
      {300, "cpu=60", NULL, "none", AB_NONE, "cpu_utilization 60% <= 70%", false},
      {360, "cpu=85", NULL, "none", AB_NONE, "for 0ms of 5m", false},
      {645, NULL, NULL, "none", AB_NONE, "for 4m45s of 5m", false},
      {660, NULL, NULL, "activate synaxis-weu-002", AB_NONE, "activate synaxis-weu-002: cpu_utilization 85% > 70% for 5m of 5m", true},
      END}},
    {"after a scale-out, its cooldown; then a deploy in the most loaded region with the next free id",
     NULL, "weu-001:Active eus-001:Active weu-002:Ready weu-003:Deleted", 2, 0, 0,
     {{0, "cpu=85 mem=50 lat=0.2 conn=200", NULL, "none", AB_NONE, NULL, false},
      {300, NULL, NULL, "activate synaxis-weu-002", AB_NONE, NULL, true},
      {315, NULL, NULL, "none", AB_COOLDOWN, "scale-out blocked: cooldown 9m45s left (last scale-out 15s ago)", false},
      {390, NULL, "weu-002=Active", "none", AB_COOLDOWN, "cooldown 8m30s left", false},
      {899, "cpu@weu-001=90 cpu@weu-002=90 cpu@eus-001=75", NULL, "none", AB_COOLDOWN, "cooldown 1s left", false},
      {900, NULL, NULL, "deploy synaxis-weu-004", AB_NONE, "cpu_utilization 85% > 70% for 15m of 5m", true},
      {915, NULL, NULL, "none", AB_COOLDOWN, NULL, false},
      END}},
    {"a stamp held by its recovery, or already activating, is no warm candidate; on equal load the region "
     "with fewer serving stamps (activating counts) gets the deploy",
     NULL, "weu-001:Active eus-001:Active weu-002:Ready:held eus-002:Ready:activating", 2, 0, 0,
     {{0, "cpu=85 mem=50 lat=0.2 conn=200", NULL, "none", AB_NONE, NULL, false},
      {300, NULL, NULL, "deploy synaxis-weu-003", AB_NONE, "deploy synaxis-weu-003: cpu_utilization", false},
      END}},
    {"maxStamps counts Creating, activating and Draining stamps",
     "scaleOut.maxStamps=4;scaleIn.minStamps=1", "weu-001:Active eus-001:Active eus-002:Creating weu-002:Draining weu-003:Ready", 2, 0, 0,
     {{0, "cpu=85 mem=50 lat=0.2 conn=200", NULL, "none", AB_NONE, NULL, false},
      {300, NULL, NULL, "none", AB_MAX_STAMPS,
       "scale-out blocked: maxStamps 4 reached (2 Active, 1 Creating, 0 activating, 1 Draining)", false},
      {315, NULL, "weu-002=Ready", "activate synaxis-weu-003", AB_NONE, NULL, true},
      {915, NULL, NULL, "none", AB_MAX_STAMPS, "1 activating", false},
      END}},
    {"Failed stamps count toward maxStamps: a template that keeps failing is not deployed without end",
     "scaleOut.maxStamps=3", "weu-001:Active eus-001:Failed eus-002:Failed", 2, 0, 0,
     {{0, "cpu=50 mem=10 lat=0.1 conn=100", NULL, "none", AB_MAX_STAMPS,
       "maxStamps 3 reached (1 Active, 0 Creating, 0 activating, 0 Draining, 2 Failed (delete them))", false},
      END}},
    {"scale-in: every trigger held, both cooldowns, least loaded first; a scale-out during the scale-in cooldown",
     NULL, "weu-001:Active weu-002:Active eus-001:Active eus-002:Active", 2, -600, 0,
     {{0, "cpu=20 mem=50 lat=0.2 conn=5 cpu@weu-002=10 cpu@eus-002=15", NULL, "none", AB_NONE, NULL, false},
      {600, NULL, NULL, "none", AB_NONE, "active_connections 5 < 10 for 10m of 10m", false},
      {900, NULL, NULL, "none", AB_COOLDOWN, "scale-in blocked: cooldown 5m left (last scale-out 25m ago)", false},
      {1200, NULL, NULL, "drain synaxis-weu-002", AB_NONE, "every scale-in trigger held: cpu_utilization", true},
      {1215, NULL, NULL, "none", AB_COOLDOWN, "scale-in blocked: cooldown 29m45s left (last scale-in 15s ago)", false},
      {1260, "cpu=85", "weu-002=Ready", "none", AB_NONE, "cpu_utilization 85% > 70% for 0ms", false},
      {1560, NULL, NULL, "activate synaxis-weu-002", AB_NONE, NULL, true},
      END}},
    {"a breaching scale-out trigger stops a scale-in",
     NULL, "weu-001:Active weu-002:Active eus-001:Active", 2, 0, 0,
     {{0, "cpu=20 mem=50 lat=0.1 conn=5", NULL, "none", AB_NONE, NULL, false},
      {800, "lat=0.9", NULL, "none", AB_NONE, "request_latency_p99 900ms > 500ms for 0ms of 3m", false},
      {900, NULL, NULL, "none", AB_NONE, "steady: scale-out", false},
      {1000, "lat=0.2", NULL, "drain synaxis-weu-002", AB_NONE, NULL, false},
      END}},
    {"minStamps blocks a scale-in",
     NULL, "weu-001:Active eus-001:Active", 2, 0, 0,
     {{0, "cpu=10 mem=10 lat=0.1 conn=1", NULL, "none", AB_NONE, NULL, false},
      {900, NULL, NULL, "none", AB_MIN_STAMPS, "scale-in blocked: minStamps 2 reached (2 Active)", false},
      END}},
    {"the fleet rule blocks a scale-in",
     "scaleIn.minStamps=1", "weu-001:Active eus-001:Active", 2, 0, 0,
     {{0, "cpu=10 mem=10 lat=0.1 conn=1", NULL, "none", AB_NONE, NULL, false},
      {900, NULL, NULL, "none", AB_FLEET_RULE, "would leave 1 Active stamp(s) in 1 region(s); the fleet rule needs at least 2 in 2 regions", false},
      END}},
    {"the fleet rule passes over the least loaded stamp to the next",
     "scaleIn.minStamps=1", "weu-001:Active weu-002:Active eus-001:Active", 2, 0, 0,
     {{0, "cpu=20 mem=10 lat=0.1 conn=1 cpu@eus-001=5 cpu@weu-002=10", NULL, "none", AB_NONE, NULL, false},
      {900, NULL, NULL, "drain synaxis-weu-002", AB_NONE, NULL, false},
      END}},
    {"the fleet rule counts Active stamps of other templates; 0 turns it off",
     "scaleIn.minStamps=1", "weu-001:Active eus-001:Active eus-009:Active:other", 2, 0, 0,
     {{0, "cpu=20 mem=10 lat=0.1 conn=1 cpu@eus-001=5", NULL, "none", AB_NONE, NULL, false},
      {900, NULL, NULL, "drain synaxis-eus-001", AB_NONE, NULL, false},
      END}},
    {"a region minimum blocks draining there, and the next region's stamp goes",
     "scaleIn.minStamps=1;regionMinimums={\"eastus\":2}", "weu-001:Active weu-002:Active eus-001:Active eus-002:Active", 2, 0, 0,
     {{0, "cpu=20 mem=10 lat=0.1 conn=1 cpu@eus-001=5 cpu@eus-002=10 cpu@weu-002=25", NULL, "none", AB_NONE, NULL, false},
      {900, NULL, NULL, "drain synaxis-weu-001", AB_NONE, NULL, false},
      END}},
    {"a region minimum alone blocks a scale-in",
     "scaleIn.minStamps=1;regionMinimums={\"eastus\":2,\"westeurope\":2}", "weu-001:Active weu-002:Active eus-001:Active eus-002:Active", 2, 0, 0,
     {{0, "cpu=20 mem=10 lat=0.1 conn=1", NULL, "none", AB_NONE, NULL, false},
      {900, NULL, NULL, "none", AB_REGION_MIN, "synaxis-weu-002 would leave westeurope below its minimum 2 (2 Active)", false},
      END}},
    {"a region under its minimum gets a stamp with no trigger (the floor), and gets the next scale-out first",
     "regionMinimums={\"eastus\":1}", "weu-001:Active weu-002:Active eus-001:Failed", 2, 0, 0,
     {{0, "cpu=50 mem=10 lat=0.1 conn=100", NULL, "deploy synaxis-eus-002", AB_NONE, "below the floor: 2 serving stamp(s), minStamps 2, eastus minimum 1", true},
      {15, NULL, NULL, "none", AB_NONE, "steady", false},
      END}},
    {"below minStamps: the floor activates a warm stamp without waiting for a cooldown",
     NULL, "weu-001:Active eus-001:Draining eus-002:Ready", 2, -60, 0,
     {{0, "cpu=50 mem=10 lat=0.1 conn=100", NULL, "activate synaxis-eus-002", AB_NONE, "below the floor: 1 serving", true},
      {15, NULL, NULL, "none", AB_NONE, NULL, false},
      END}},
    {"missing data blocks scale-in and says where from",
     NULL, "weu-001:Active weu-002:Active eus-001:Active", 2, 0, 0,
     {{0, "cpu=10 mem=10 lat=0.1 conn=1 conn@eus-001=-", NULL, "none", AB_MISSING,
       "scale-in blocked: no metric for active_connections from synaxis-eus-001", false},
      {900, NULL, NULL, "none", AB_MISSING, "active_connections 1 (2 of 3 stamps report)", false},
      {915, "conn@eus-001=1", NULL, "none", AB_NONE, "active_connections 1 < 10 for 0ms of 10m", false},
      {1515, NULL, NULL, "drain synaxis-weu-002", AB_NONE, NULL, false},
      END}},
    {"missing data does not stop another trigger's scale-out, nor a breach seen on the stamps that report",
     NULL, "weu-001:Active eus-001:Active weu-002:Ready", 2, 0, 0,
     {{0, "cpu=40 mem=90 lat=0.1 conn=100 cpu@eus-001=- lat@weu-001=-", NULL, "none", AB_NONE,
       "no metric for cpu_utilization from synaxis-eus-001; no metric for request_latency_p99 from synaxis-weu-001", false},
      {300, NULL, NULL, "activate synaxis-weu-002", AB_NONE, "memory_utilization 90% > 80% for 5m of 5m", true},
      {301, "mem=50 cpu@weu-001=95 cpu@weu-002=95", "weu-002=Active", "none", AB_NONE,
       "cpu_utilization 95% > 70% for 0ms of 5m", false},
      {601, NULL, NULL, "none", AB_COOLDOWN, "scale-out blocked: cooldown 4m59s left", false},
      {901, NULL, NULL, "deploy synaxis-weu-003", AB_NONE, "cpu_utilization 95% > 70% for 10m of 5m", false}, /* eastus: no cpu value */
      END}},
    {"no value at all counts for neither direction",
     NULL, "weu-001:Active eus-001:Active weu-002:Ready", 2, 0, 0,
     {{0, "cpu=- mem=- lat=- conn=-", NULL, "none", AB_MISSING, "cpu_utilization: no value", false},
      {900, NULL, NULL, "none", AB_MISSING, "no metric for cpu_utilization from synaxis-weu-001, synaxis-eus-001", false},
      END}},
    {"paused: evaluates and records, never acts",
     "paused=true", "weu-001:Active eus-001:Active weu-002:Ready", 2, 0, 0,
     {{0, "cpu=85 mem=50 lat=0.2 conn=200", NULL, "none", AB_NONE, NULL, false},
      {300, NULL, NULL, "none", AB_PAUSED, "paused: would activate synaxis-weu-002", false},
      {315, NULL, NULL, "none", AB_PAUSED, "cpu_utilization 85% > 70% for 5m15s of 5m", false},
      END}},
    {"a failed activation: reported once, the next scale-out deploys at once",
     NULL, "weu-001:Active eus-001:Active weu-002:Ready weu-003:Ready", 2, 0, 0,
     {{0, "cpu=85 mem=50 lat=0.2 conn=200", NULL, "none", AB_NONE, NULL, false},
      {300, NULL, NULL, "activate synaxis-weu-002", AB_NONE, NULL, true},
      {315, NULL, NULL, "none", AB_COOLDOWN, NULL, false},
      {420, NULL, "weu-002=Failed", "deploy synaxis-weu-004", AB_NONE, "(activation of synaxis-weu-002 failed)", true},
      {435, NULL, NULL, "none", AB_COOLDOWN, NULL, false},
      {1035, NULL, NULL, "activate synaxis-weu-003", AB_NONE, NULL, false},
      END}},
    {"standby past maxAge retires, unless a scale-out takes it",
     "standby={\"maxAge\":\"1h\"}", "weu-001:Active eus-001:Active weu-002:Ready:age=7200 eus-002:Ready:age=600", 2, 0, 0,
     {{0, "cpu=50 mem=50 lat=0.2 conn=200", NULL, "retire synaxis-weu-002", AB_NONE, NULL, false},
      {15, "cpu=85", NULL, "retire synaxis-weu-002", AB_NONE, NULL, false},
      {315, NULL, NULL, "activate synaxis-weu-002", AB_NONE, NULL, false},
      END}},
    {"step 2 activates the warm stamp and deploys another, up to maxStamps",
     "step=2;scaleOut.maxStamps=4", "weu-001:Active eus-001:Active weu-002:Ready", 2, 0, 0,
     {{0, "cpu=85 mem=50 lat=0.2 conn=200", NULL, "none", AB_NONE, NULL, false},
      {300, NULL, NULL, "activate synaxis-weu-002, deploy synaxis-eus-002", AB_NONE, NULL, true},
      {900, "cpu=85", "weu-002=Active eus-002=Active", "none", AB_MAX_STAMPS, "maxStamps 4 reached", false},
      END}},
    {"a scale-in threshold of 0 holds at 0",
     "scaleIn.triggers=[{\"metric\":\"queue_depth\",\"threshold\":0,\"duration\":\"10m\"}]",
     "weu-001:Active weu-002:Active eus-001:Active", 2, 0, 0,
     {{0, "cpu=40 mem=10 lat=0.1 queue=1", NULL, "none", AB_NONE, "queue_depth 1 >= 0", false},
      {60, "queue=0", NULL, "none", AB_NONE, "queue_depth 0 <= 0 for 0ms of 10m", false},
      {660, NULL, NULL, "drain synaxis-weu-002", AB_NONE, NULL, false},
      END}},
};

static void test_scenarios(void **state) {
    as_spec *sp = malloc(sizeof(*sp));
    tworld *w = malloc(sizeof(*w));
    as_decision *d = malloc(sizeof(*d));
    assert_non_null(sp);
    assert_non_null(w);
    assert_non_null(d);
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) run(&scenarios[i], sp, w, d);
    free(sp);
    free(w);
    free(d);
}

/* The scenarios must be able to fail: a wrong expectation is caught. */
static void test_table_can_fail(void **state) {
    as_spec *sp = malloc(sizeof(*sp));
    tworld *w = malloc(sizeof(*w));
    as_decision *d = malloc(sizeof(*d));
    spec_make(NULL, sp);
    world_init(w, "weu-001:Active eus-001:Active weu-002:Ready");
    world_set(w, "cpu=85 mem=50 lat=0.2 conn=200");
    world_fill(sp, w);
    as_world aw = {.stamps = w->st, .n = w->n, .fleet_min_regions = 2};
    as_state st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(as_decide(sp, &aw, BASE_MS, &st, &st, d), 0);
    assert_int_equal(d->nactions, 0);
    assert_int_equal(as_decide(sp, &aw, BASE_MS + 299999, &st, &st, d), 0);
    assert_int_equal(d->nactions, 0); /* one ms short of 5m */
    assert_int_equal(as_decide(sp, &aw, BASE_MS + 300000, &st, &st, d), 0);
    assert_int_equal(d->nactions, 1);
    free(sp);
    free(w);
    free(d);
}

/* A trigger changed between evaluations does not inherit the old one's
 * breach timer. */
static void test_changed_trigger_restarts(void **state) {
    as_spec *sp = malloc(sizeof(*sp)), *sp2 = malloc(sizeof(*sp2));
    tworld *w = malloc(sizeof(*w));
    as_decision *d = malloc(sizeof(*d));
    spec_make(NULL, sp);
    spec_make("scaleOut.triggers=[{\"metric\":\"cpu_utilization\",\"threshold\":75,\"duration\":\"5m\"}]", sp2);
    world_init(w, "weu-001:Active eus-001:Active weu-002:Ready");
    world_set(w, "cpu=85 mem=50 lat=0.2 conn=200");
    world_fill(sp, w);
    as_world aw = {.stamps = w->st, .n = w->n, .fleet_min_regions = 2};
    as_state st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(as_decide(sp, &aw, BASE_MS, &st, &st, d), 0);
    assert_int_equal(as_decide(sp, &aw, BASE_MS + 240000, &st, &st, d), 0);
    world_fill(sp2, w);
    assert_int_equal(as_decide(sp2, &aw, BASE_MS + 300000, &st, &st, d), 0);
    assert_int_equal(d->nactions, 0);
    assert_int_equal(d->evals[0].since_ms, BASE_MS + 300000);
    assert_int_equal(as_decide(sp2, &aw, BASE_MS + 600000, &st, &st, d), 0);
    assert_int_equal(d->nactions, 1);
    free(sp);
    free(sp2);
    free(w);
    free(d);
}

static void test_state_json(void **state) {
    as_state a, b;
    memset(&a, 0, sizeof(a));
    a.out_since_ms[0] = BASE_MS;
    a.in_since_ms[1] = BASE_MS + 5;
    a.out_sig[0] = 0xfedcba9876543210ULL;
    a.in_sig[15] = 1;
    a.last_out_ms = BASE_MS + 7;
    a.last_in_ms = BASE_MS + 9;
    a.nactivated = 1;
    snprintf(a.activated[0], sizeof(a.activated[0]), "synaxis-weu-002");
    a.replace = true;
    json_t *j = as_state_to_json(&a);
    serr e = {0};
    assert_int_equal(as_state_from_json(j, &b, &e), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    /* Bad state is refused and reads as a fresh start. */
    json_object_set_new(j, "lastScaleOutMs", json_integer(-1));
    assert_int_equal(as_state_from_json(j, &b, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "lastScaleOutMs"));
    assert_int_equal(b.out_since_ms[0], 0);
    json_object_set_new(j, "lastScaleOutMs", json_integer(0));
    json_array_set_new(json_object_get(j, "outSig"), 3, json_string("xyz"));
    assert_int_equal(as_state_from_json(j, &b, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "outSig[3]"));
    assert_int_equal(as_state_from_json(NULL, &b, &e), SE_INVAL);
    json_decref(j);
}

static void test_next_id_and_regions(void **state) {
    as_spec *sp = malloc(sizeof(*sp));
    tworld *w = malloc(sizeof(*w));
    spec_make(NULL, sp);
    world_init(w, "weu-001:Active weu-003:Deleted eus-001:Active eus-002:Failed");
    as_world aw = {.stamps = w->st, .n = w->n};
    char id[AS_ID_MAX];
    serr e = {0};
    assert_int_equal(as_next_stamp_id(&aw, "westeurope", NULL, 0, id, sizeof(id), &e), 0);
    assert_string_equal(id, "002");
    as_action plan = {.act = AA_DEPLOY, .region = "westeurope", .id = "002"};
    assert_int_equal(as_next_stamp_id(&aw, "westeurope", &plan, 1, id, sizeof(id), &e), 0);
    assert_string_equal(id, "004");
    assert_int_equal(as_next_stamp_id(&aw, "eastus", NULL, 0, id, sizeof(id), &e), 0);
    assert_string_equal(id, "003");
    assert_int_equal(as_next_stamp_id(&aw, "southeastasia", NULL, 0, id, sizeof(id), &e), 0);
    assert_string_equal(id, "001");
    /* Without spec.regions: the governed stamps' regions, alphabetically. */
    spec_make("regions=null", sp);
    char regs[8][AS_REGION_MAX];
    assert_int_equal(sp->nregions, 0);
    assert_int_equal(as_regions(sp, &aw, regs, 8), 2);
    assert_string_equal(regs[0], "eastus");
    assert_string_equal(regs[1], "westeurope");
    /* The most loaded region by a trigger's mean over its Active stamps. */
    world_set(w, "cpu@weu-001=80 cpu@eus-001=60");
    world_fill(sp, w);
    char r[AS_REGION_MAX];
    as_most_loaded_region(sp, &aw, AS_OUT, 0, r, sizeof(r));
    assert_string_equal(r, "westeurope");
    free(sp);
    free(w);
}

static void test_no_region_and_prometheus(void **state) {
    as_spec *sp = malloc(sizeof(*sp));
    as_decision *d = malloc(sizeof(*d));
    /* Nothing governed and no regions: the floor asks, nothing can answer. */
    spec_make("regions=null", sp);
    as_world empty = {0};
    as_state st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(as_decide(sp, &empty, BASE_MS, &st, &st, d), 0);
    assert_int_equal(d->block, AB_NO_ROOM);
    assert_non_null(strstr(d->blocked, "no region to deploy to"));
    /* A prometheus trigger's value is fleet-wide; its failure is named. */
    spec_make("scaleOut.triggers=[{\"metric\":\"prometheus\",\"query\":\"sum(up)\",\"threshold\":3,\"duration\":\"1m\"}]", sp);
    tworld w;
    world_init(&w, "weu-001:Active eus-001:Active");
    world_set(&w, "cpu=50 conn=50");
    world_fill(sp, &w);
    as_world aw = {.stamps = w.st, .n = w.n, .fleet_min_regions = 2};
    aw.fleet_out[0] = (as_fleet_sample){.given = true, .ok = false, .why = "prometheus: connection refused"};
    memset(&st, 0, sizeof(st));
    assert_int_equal(as_decide(sp, &aw, BASE_MS, &st, &st, d), 0);
    assert_non_null(strstr(d->reason, "no metric for prometheus from prometheus: connection refused"));
    aw.fleet_out[0] = (as_fleet_sample){.given = true, .ok = true, .v = 5};
    assert_int_equal(as_decide(sp, &aw, BASE_MS + 15000, &st, &st, d), 0);
    assert_true(d->evals[0].breaching && d->evals[0].fleet);
    assert_int_equal(as_decide(sp, &aw, BASE_MS + 75000, &st, &st, d), 0);
    assert_int_equal(d->nactions, 1);
    assert_int_equal(d->actions[0].act, AA_DEPLOY); /* no per-region load: the fewest serving, then order */
    assert_string_equal(d->actions[0].stamp, "synaxis-weu-002");
    free(sp);
    free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios),          cmocka_unit_test(test_table_can_fail),
        cmocka_unit_test(test_changed_trigger_restarts), cmocka_unit_test(test_state_json),
        cmocka_unit_test(test_next_id_and_regions), cmocka_unit_test(test_no_region_and_prometheus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
