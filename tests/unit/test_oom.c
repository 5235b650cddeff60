/*
 * test_oom.c - out of memory at every allocation of the parsers and of the
 * API's request layer (issue 16, item 3).
 *
 * A counting allocator.  This test is linked with -Wl,--wrap= for malloc,
 * calloc, realloc, strdup, strndup, realpath, asprintf and free
 * (CMakeLists.txt), so every one of those calls that stampcore's own
 * objects make comes through the counter below.  jansson's allocations
 * come to the same counter through the functions util/yamljson.c gives
 * jansson with json_set_alloc_funcs (which count jansson's failures for
 * json_load_text), whose malloc is wrapped: set-up checks that a
 * json_string is counted.
 * For each input, taken from tests/fuzz/corpus/<harness>/ and run through
 * the entry points its fuzz harness calls, a clean run counts the
 * allocations N; then, for each k in 1..N, the k-th allocation fails, and
 * again every allocation from the k-th on.  Each such run must either end
 * in an error saying "out of memory" (SE_NOMEM) or give exactly what the
 * clean run gives (that allocation was not needed for the answer): an
 * error of another kind, or a success that differs (a key dropped, a
 * field missing), is a bug.  Nothing allocated under the counter may be
 * left afterwards: leaks are counted here in every build (a set of the
 * live pointers), and LSan sees the rest in the ASan build.  Then the same
 * input with no failure must give the same answer and the same N: no
 * global state left broken.
 *
 * Not reached: the allocations libyaml makes (yaml_to_json's parser and
 * its events), OpenSSL's (JWKS keys, signatures) and libcurl's
 * (jwks_url_check).  Those happen inside the shared libraries, which call
 * libc themselves: --wrap only redirects the references of the objects
 * being linked, and faking them here would test nothing of ours.
 *
 * Calls that return a code and no message (api_fuzz_request, prom_value)
 * are held to SE_NOMEM alone.  The request layer's hook drops the reply it
 * built, so an error whose reply body could not be made counts as "not
 * needed" there; respond() sends the static out-of-memory shape for it.
 *
 * Large N: at most OOM_POINTS (256) values of k per mode and input: every
 * k when N <= 256, else k = 1..64, then a stride, then N (marked "*" and
 * "strided" in the output).  STAMP_OOM_FULL=1 injects every k;
 * STAMP_OOM_SHOW=n prints up to n violations per input (default 12).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "api/api.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "autoscale/collect.h"
#include "autoscale/observe.h"
#include "autoscale/spec.h"
#include "blob/blob.h"
#include "core/config.h"
#include "core/naming.h"
#include "core/template.h"
#include "health/health.h"
#include "ns/ns.h"
#include "obs/obs.h"
#include "traffic/traffic.h"
#include "util/httpc.h"
#include "util/util.h"
#include "util/yamljson.h"

#define OOM_POINTS 256
#define OOM_FIRST 64
static int64_t shown_max = 12; /* violations printed per input (STAMP_OOM_SHOW) */

/* ---- the counting allocator ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
char *__real_realpath(const char *path, char *resolved);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
char *__wrap_realpath(const char *path, char *resolved);
int __wrap_asprintf(char **s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void __wrap_free(void *p);

typedef struct alloc_state {
    bool armed;      /* counting: only around the calls under test */
    pthread_t owner; /* the thread whose allocations count */
    long count;      /* allocations asked for while armed */
    long fail_at;    /* the one that fails; 0: none */
    bool fail_rest;  /* and every one after it */
    long failed;     /* how many were refused */
} alloc_state;
static alloc_state A;

/* The pointers allocated while armed and not yet freed: open addressing,
 * linear probing, deletion by backward shift.  Static: 2 MiB. */
#define LIVE_BITS 17
#define LIVE_CAP ((size_t)1 << LIVE_BITS)
#define LIVE_MASK (LIVE_CAP - 1)
typedef struct live_slot {
    void *p;
    long seq; /* which allocation of its run it was */
} live_slot;
static live_slot live[LIVE_CAP];
static size_t nlive;

static size_t slot_of(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p >> 4;
    return (size_t)((x * 0x9E3779B97F4A7C15ull) >> (64 - LIVE_BITS));
}

static void live_add(void *p, long seq) {
    if (nlive >= LIVE_CAP / 4 * 3) {
        fprintf(stderr, "test_oom: more than %zu live allocations: raise LIVE_BITS\n", nlive);
        abort();
    }
    size_t i = slot_of(p);
    while (live[i].p != NULL) i = (i + 1) & LIVE_MASK;
    live[i] = (live_slot){p, seq};
    nlive++;
}

static bool live_del(void *p) {
    if (nlive == 0) return false;
    size_t i = slot_of(p);
    while (live[i].p != p) {
        if (live[i].p == NULL) return false;
        i = (i + 1) & LIVE_MASK;
    }
    nlive--;
    /* Backward shift: move later entries of the run up into the hole when
     * their home slot is not inside (hole, entry]. */
    size_t j = i;
    for (;;) {
        live[i].p = NULL;
        for (;;) {
            j = (j + 1) & LIVE_MASK;
            if (live[j].p == NULL) return true;
            size_t h = slot_of(live[j].p);
            bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
            if (!stays) break;
        }
        live[i] = live[j];
        i = j;
    }
}

static bool counting(void) { return A.armed && pthread_equal(pthread_self(), A.owner); }

/* One more allocation: true when it is to fail. */
static bool inject(void) {
    if (!counting()) return false;
    long n = ++A.count;
    if (A.fail_at > 0 && (n == A.fail_at || (A.fail_rest && n > A.fail_at))) {
        A.failed++;
        errno = ENOMEM;
        return true;
    }
    return false;
}

static void *track(void *p) {
    if (p != NULL && counting()) live_add(p, A.count);
    return p;
}

void *__wrap_malloc(size_t n) { return inject() ? NULL : track(__real_malloc(n)); }

void *__wrap_calloc(size_t n, size_t m) { return inject() ? NULL : track(__real_calloc(n, m)); }

void *__wrap_realloc(void *p, size_t n) {
    if (inject()) return NULL;
    bool tracked = p != NULL && live_del(p);
    void *q = __real_realloc(p, n);
    if (q == NULL) {
        if (tracked && n > 0) live_add(p, A.count); /* still the caller's */
        return NULL;
    }
    if (tracked) live_add(q, A.count);
    else if (p == NULL) track(q);
    return q;
}

char *__wrap_strdup(const char *s) { return inject() ? NULL : track(__real_strdup(s)); }

char *__wrap_strndup(const char *s, size_t n) {
    return inject() ? NULL : track(__real_strndup(s, n));
}

/* realpath(path, NULL) allocates its answer; with a buffer it does not. */
char *__wrap_realpath(const char *path, char *resolved) {
    if (resolved == NULL && inject()) return NULL;
    char *r = __real_realpath(path, resolved);
    return resolved == NULL ? track(r) : r;
}

int __wrap_asprintf(char **s, const char *fmt, ...) {
    if (inject()) {
        *s = NULL;
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(s, fmt, ap);
    va_end(ap);
    if (n >= 0) track(*s);
    return n;
}

void __wrap_free(void *p) {
    if (p != NULL) live_del(p);
    __real_free(p);
}

static void arm(void) { A.armed = true; }
static void disarm(void) { A.armed = false; }

/* ---- what a run gives ---- */

#define STEPS_MAX 96

typedef struct step {
    char name[64];
    int rc;
    char msg[SERR_MSG_MAX];
    char *detail; /* what the call produced, as text; may be NULL */
    bool nomsg;   /* the call returns a code and no message */
} step;

typedef struct outcome {
    int n;
    bool overflow;
    step s[STEPS_MAX];
} outcome;

static void outcome_clear(outcome *o) {
    for (int i = 0; i < o->n; i++) free(o->s[i].detail);
    o->n = 0;
    o->overflow = false;
}

/* Records a call's result; takes detail.  Called disarmed. */
static void note_full(outcome *o, const char *name, int rc, const char *msg, char *detail, bool nomsg) {
    if (o->n >= STEPS_MAX) {
        o->overflow = true;
        free(detail);
        return;
    }
    step *s = &o->s[o->n++];
    str_copy(s->name, sizeof(s->name), name);
    s->rc = rc;
    str_copy(s->msg, sizeof(s->msg), rc && msg ? msg : "");
    s->detail = detail;
    s->nomsg = nomsg;
}

static void note(outcome *o, const char *name, int rc, const serr *e, char *detail) {
    note_full(o, name, rc, e ? e->msg : NULL, detail, false);
}

/* Text built while disarmed (sbuf's own allocations do not count). */
static char *textf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *textf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

static char *dump(const json_t *v) {
    if (v == NULL) return textf("(null)");
    return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void sb_json(sbuf *b, const char *label, const json_t *v) {
    char *s = dump(v);
    sbuf_addf(b, " %s=%s", label, s ? s : "(dump failed)");
    free(s);
}

static bool step_equal(const step *a, const step *b) {
    return strcmp(a->name, b->name) == 0 && a->rc == b->rc && strcmp(a->msg, b->msg) == 0 &&
           ((a->detail == NULL && b->detail == NULL) ||
            (a->detail && b->detail && strcmp(a->detail, b->detail) == 0));
}

static bool outcome_equal(const outcome *a, const outcome *b) {
    if (a->n != b->n || a->overflow || b->overflow) return false;
    for (int i = 0; i < a->n; i++)
        if (!step_equal(&a->s[i], &b->s[i])) return false;
    return true;
}

static bool is_nomem(const step *s) {
    return s->rc == SE_NOMEM && (s->nomsg || strstr(s->msg, "out of memory") != NULL);
}

/* ---- inputs ---- */

typedef struct input {
    char name[96];
    char *data; /* NUL-terminated; len bytes before the NUL */
    size_t len;
} input;

static char src_dir[512];
static char tmp_dir[64] = "/tmp/test_oom.XXXXXX";
static char cat_path[160], conf_path[160], rules_link[160], obs_sub[2][128];

static void input_load(input *in, const char *rel) {
    char path[1024];
    str_fmt_cut(path, sizeof(path), "%s/tests/fuzz/corpus/%s", src_dir, rel);
    serr e = {0};
    if (read_file(path, 4 << 20, &in->data, &in->len, &e) != 0) fail_msg("%s", e.msg);
    str_copy(in->name, sizeof(in->name), rel);
}

static void input_done(input *in) {
    free(in->data);
    in->data = NULL;
}

static void put_file(const char *path, const input *in) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) fail_msg("%s: %s", path, strerror(errno));
    bool ok = fwrite(in->data, 1, in->len, f) == in->len;
    if (fclose(f) != 0 || !ok) fail_msg("writing %s failed", path);
}

/* ---- the sweep ---- */

typedef void (*runner)(const input *in, outcome *o);

typedef struct tally {
    int inputs;
    long allocs;     /* N, summed over the inputs */
    long points;     /* runs with a failure injected */
    long refused;    /* of those, ended in "out of memory" */
    long same;       /* of those, gave the clean answer all the same */
    long violations;
    char ns[256];    /* N of each input */
    double secs;
} tally;

static long run_once(runner fn, const input *in, outcome *o, long fail_at, bool rest) {
    outcome_clear(o);
    A = (alloc_state){.owner = pthread_self(), .fail_at = fail_at, .fail_rest = rest};
    fn(in, o);
    disarm();
    return A.count;
}

static void show_step(const char *who, const step *s) {
    fprintf(stderr, "    %s: %s rc %d (%s) \"%s\" %.300s\n", who, s->name, s->rc, se_name(s->rc),
            s->msg, s->detail ? s->detail : "");
}

static void violation(tally *t, int64_t *shown, const char *parser, const input *in, long k, bool rest,
                      const char *what) {
    t->violations++;
    if ((*shown)++ < shown_max)
        fprintf(stderr, "oom: %s %s: allocation %ld%s failing: %s\n", parser, in->name, k,
                rest ? " and on" : "", what);
}

/* Leaks: what the run allocated under the counter and did not free. */
static void check_leaks(tally *t, int64_t *shown, const char *parser, const input *in, long k, bool rest) {
    if (nlive == 0) return;
    char what[256];
    size_t n = str_fmt_cut(what, sizeof(what), "%zu allocation(s) not freed, made by allocation",
                           nlive);
    for (size_t i = 0, listed = 0; i < LIVE_CAP && listed < 8; i++) {
        if (live[i].p == NULL) continue;
        n += str_fmt_cut(what + n, sizeof(what) - n, " #%ld", live[i].seq);
        listed++;
    }
    violation(t, shown, parser, in, k, rest, what);
    memset(live, 0, sizeof(live)); /* counted once; LSan reports them too */
    nlive = 0;
}

/* The run with allocation k (and on) failing against the clean one: every
 * step the same, or "out of memory" and then anything but a success that
 * differs from the clean answer. */
static void judge(tally *t, int64_t *shown, const char *parser, const input *in, long k, bool rest,
                  const outcome *base, const outcome *got) {
    if (outcome_equal(base, got)) {
        t->same++;
        return;
    }
    bool refused = false;
    for (int i = 0; i < got->n; i++) {
        const step *g = &got->s[i];
        if (is_nomem(g)) {
            refused = true;
            continue;
        }
        /* Before a refusal the steps line up one to one; after it (a step
         * skipped) a step is matched by name. */
        const step *b = NULL;
        bool ok = false;
        for (int j = refused ? 0 : i; j < base->n && !ok && (refused || j == i); j++) {
            if (strcmp(base->s[j].name, g->name) != 0) continue;
            b = &base->s[j];
            ok = step_equal(b, g);
        }
        if (!ok) {
            char what[SERR_MSG_MAX + 128];
            str_fmt_cut(what, sizeof(what), "step %s: %s", g->name,
                        g->rc ? "an error that is not \"out of memory\""
                              : "a success that differs from the clean run");
            violation(t, shown, parser, in, k, rest, what);
            if (*shown <= shown_max) {
                if (b) show_step("clean", b);
                show_step("got  ", g);
            }
            return;
        }
    }
    if (!refused) {
        violation(t, shown, parser, in, k, rest, "steps missing, and no \"out of memory\"");
        return;
    }
    t->refused++;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Long: the clean runs, the two modes of injection and the checks after
 * each, in one place so every parser is swept the same way. */
static void sweep(tally *t, const char *parser, runner fn, const input *in) {
    outcome *base = calloc(1, sizeof(*base)), *got = calloc(1, sizeof(*got));
    assert_non_null(base);
    assert_non_null(got);
    int64_t shown = 0;
    bool full = getenv("STAMP_OOM_FULL") != NULL;
    /* The first clean run may fill a once-only cache; the second is the
     * reference. */
    run_once(fn, in, base, 0, false);
    check_leaks(t, &shown, parser, in, 0, false);
    long n = run_once(fn, in, base, 0, false);
    check_leaks(t, &shown, parser, in, 0, false);
    if (base->overflow) violation(t, &shown, parser, in, 0, false, "more steps than STEPS_MAX");
    long stride = full || n <= OOM_POINTS ? 1 : (n - OOM_FIRST + OOM_POINTS - OOM_FIRST - 1) /
                                                   (OOM_POINTS - OOM_FIRST);
    for (int mode = 0; mode < 2; mode++) {
        bool rest = mode == 1;
        for (long k = 1; k <= n; k = k < OOM_FIRST ? k + 1 : (k + stride > n && k < n ? n : k + stride)) {
            run_once(fn, in, got, k, rest);
            t->points++;
            if (A.failed == 0)
                violation(t, &shown, parser, in, k, rest, "no allocation failed: N changed");
            else
                judge(t, &shown, parser, in, k, rest, base, got);
            check_leaks(t, &shown, parser, in, k, rest);
            long n2 = run_once(fn, in, got, 0, false);
            if (n2 != n || !outcome_equal(base, got)) {
                char what[128];
                str_fmt_cut(what, sizeof(what),
                            "the clean run after it differs (N %ld, was %ld): state left broken", n2,
                            n);
                violation(t, &shown, parser, in, k, rest, what);
            }
            check_leaks(t, &shown, parser, in, k, rest);
        }
    }
    /* What the clean run said in the end, for the log. */
    const step *last = NULL;
    for (int i = 0; i < base->n; i++)
        if (base->s[i].rc && last == NULL) last = &base->s[i];
    printf("oom: %-12s %-42s N %5ld%s; clean run: %s%s%.80s\n", parser, in->name, n,
           stride > 1 ? " (strided)" : "", last ? last->name : "ok", last ? ": " : "",
           last ? (last->msg[0] ? last->msg : se_name(last->rc)) : "");
    t->inputs++;
    t->allocs += n;
    size_t used = strlen(t->ns);
    str_fmt_cut(t->ns + used, sizeof(t->ns) - used, "%s%ld%s", used ? " " : "", n,
                stride > 1 ? "*" : "");
    outcome_clear(base);
    outcome_clear(got);
    free(base);
    free(got);
}

static void sweep_files(tally *t, const char *parser, runner fn, const char *const *files) {
    for (int i = 0; files[i]; i++) {
        input in = {0};
        input_load(&in, files[i]);
        sweep(t, parser, fn, &in);
        input_done(&in);
    }
}

static void report(tally *t, const char *parser, double t0) {
    t->secs = now_s() - t0;
    printf("oom: %-12s %2d inputs, N = %s; %ld points injected (%ld out of memory, %ld not "
           "needed), %ld violations, %.2f s\n",
           parser, t->inputs, t->ns, t->points, t->refused, t->same, t->violations, t->secs);
    fflush(stdout);
    assert_int_equal(t->violations, 0);
}

/* ---- the runners: what each fuzz harness calls, armed around the calls ---- */

static json_t *spec_of(json_t *doc) {
    json_t *spec = json_object_get(doc, "spec");
    return json_is_object(spec) ? spec : doc;
}

static char *tpl_text(const tpl *t) {
    sbuf b;
    sbuf_init(&b, 1 << 20);
    sbuf_addf(&b, "steps %d params %d endpoint %d prefix %s health %s metrics %s check %s",
              t->nsteps, t->nparams, t->endpoint_step, t->name_prefix ? t->name_prefix : "-",
              t->health_path ? t->health_path : "-", t->metrics_path ? t->metrics_path : "-",
              t->health_check ? t->health_check : "-");
    for (int i = 0; i < t->nsteps; i++) {
        const tpl_step *s = &t->steps[i];
        sbuf_addf(&b, " [%s %d %d %d %d %d %d %s]", s->name, s->phase, s->kind, s->pool,
                  s->replicas, s->ports, s->change, s->run ? s->run : "");
        sb_json(&b, "command", s->command);
        sb_json(&b, "env", s->env);
    }
    for (int i = 0; i < t->nparams; i++) {
        sbuf_addf(&b, " param %s %d", t->params[i].name, t->params[i].change);
        sb_json(&b, "default", t->params[i].dflt);
    }
    for (int i = 0; i < POOL_N; i++) sbuf_addf(&b, " pool %d-%d", t->pool_min[i], t->pool_max[i]);
    return b.data;
}

static char *hc_text(const hc_set *s) {
    sbuf b;
    sbuf_init(&b, 1 << 20);
    sbuf_addf(&b, "%s n %d recovery %d retries %d action %d", s->source, s->n, s->recovery,
              s->max_retries, s->action);
    for (int i = 0; i < s->n; i++) {
        const hc_check *c = &s->checks[i];
        sbuf_addf(&b, " [%s %d %s %d %s %lld %lld %d %d", c->name, c->type, c->path,
                  c->expect_status, c->command, (long long)c->interval_ms,
                  (long long)c->timeout_ms, c->healthy_threshold, c->unhealthy_threshold);
        for (int j = 0; j < c->nexprs; j++)
            sbuf_addf(&b, " (%s %d %.17g)", c->exprs[j].metric, c->exprs[j].op, c->exprs[j].value);
        sbuf_adds(&b, "]");
    }
    return b.data;
}

static char *as_text(const as_spec *sp) {
    sbuf b;
    sbuf_init(&b, 1 << 20);
    sbuf_addf(&b, "template %s regions %d mins %d paused %d interval %lld step %d standby %lld %d %d",
              sp->template_name, sp->nregions, sp->nmins, sp->paused, (long long)sp->interval_ms,
              sp->step, (long long)sp->standby_max_age_ms, sp->general_pool, sp->gpu_pool);
    const as_direction *d[2] = {&sp->out, &sp->in};
    for (int i = 0; i < 2; i++) {
        sbuf_addf(&b, " dir %d %lld %d", d[i]->n, (long long)d[i]->cooldown_ms, d[i]->limit);
        for (int j = 0; j < d[i]->n; j++)
            sbuf_addf(&b, " (%d %.17g %lld %s)", d[i]->t[j].metric, d[i]->t[j].threshold,
                      (long long)d[i]->t[j].duration_ms, d[i]->t[j].query);
    }
    return b.data;
}

static char *obs_spec_text(const obs_spec *sp) {
    sbuf b;
    sbuf_init(&b, 1 << 20);
    sbuf_addf(&b, "n %d paused %d keep %d exec %d retry %d %lld %lld %g secrets %d", sp->n,
              sp->paused, sp->keep_volumes, sp->exec, sp->retry.max_retries,
              (long long)sp->retry.initial_ms, (long long)sp->retry.max_ms, sp->retry.factor,
              sp->nsecrets);
    for (int i = 0; i < sp->nsecrets; i++) sbuf_addf(&b, " %s", sp->secrets[i]);
    for (int i = 0; i < sp->n; i++) {
        const obs_comp_spec *c = &sp->c[i];
        sbuf_addf(&b, " [%s %s %d %d %s %lld %lld]", c->name, c->version, c->enabled, c->port,
                  c->retention, (long long)c->retention_ms, (long long)c->storage_bytes);
        sb_json(&b, "config", c->config);
    }
    return b.data;
}

static char *catalog_text(const obs_catalog *cat) {
    sbuf b;
    sbuf_init(&b, 16 << 20);
    sbuf_addf(&b, "n %d", cat->n);
    sb_json(&b, "tools", cat->exec_tools);
    for (int i = 0; i < cat->n; i++) {
        const obs_cat_comp *cc = &cat->c[i];
        sbuf_addf(&b, "\n%s %s %s %s %d %s nv %d", cc->name, cc->title, cc->default_version,
                  cc->default_retention, cc->stores_data, cc->missing_hint, cc->nv);
        for (int j = 0; j < cc->nv; j++) {
            const obs_cat_version *v = &cc->v[j];
            sbuf_addf(&b, "\n  %s %s %s %s %s %s", v->version, v->binary, v->config_file,
                      v->ready_path, v->reload, v->backup);
            sb_json(&b, "args", v->args);
            sb_json(&b, "config", v->config);
            sb_json(&b, "check", v->check);
            sb_json(&b, "restartKeys", v->restart_keys);
            sb_json(&b, "exec", v->exec);
            sb_json(&b, "files", v->files);
        }
    }
    return b.data;
}

/* The validations h_apply runs on a document's spec, whatever its kind
 * (as tests/fuzz/fuzz_manifest.c). */
static void manifest_doc(json_t *m, outcome *o) {
    static const char *const keys[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    serr e = {0};
    if (!json_is_object(m)) return;
    arm();
    int rc = json_check_keys(m, "manifest", keys, &e);
    disarm();
    note(o, "manifest keys", rc, &e, NULL);
    json_t *spec = json_object_get(m, "spec");
    if (spec == NULL) return;
    tpl *t = malloc(sizeof(*t));
    hc_set *hs = malloc(sizeof(*hs));
    as_spec *as = malloc(sizeof(*as));
    assert_true(t && hs && as);
    serr e1 = {0}, e2 = {0}, e3 = {0}, e4 = {0};
    arm();
    int r1 = tpl_parse(spec, t, &e1);
    int r2 = hc_parse(spec, hs, &e2);
    int r3 = as_spec_parse(spec, as, &e3);
    int r4 = obs_validate(spec, &e4);
    disarm();
    note(o, "tpl_parse", r1, &e1, r1 ? NULL : tpl_text(t));
    note(o, "hc_parse", r2, &e2, r2 ? NULL : hc_text(hs));
    note(o, "as_spec_parse", r3, &e3, r3 ? NULL : as_text(as));
    note(o, "obs_validate", r4, &e4, NULL);
    free(t);
    free(hs);
    free(as);
}

/* YAML back to what was read: stampctl get -o yaml, applied again. */
static void yaml_round_trip(json_t *doc, outcome *o) {
    char *y = NULL;
    serr e = {0};
    arm();
    int rc = json_to_yaml(doc, &y, &e);
    disarm();
    note(o, "json_to_yaml", rc, &e, rc ? NULL : textf("%s", y));
    if (rc) return;
    json_t *back = NULL;
    serr be = {0};
    arm();
    rc = yaml_to_json(y, strlen(y), &back, NULL, &be);
    disarm();
    note(o, "yaml back", rc, &be, rc ? NULL : textf("%s", json_equal(doc, back) ? "same" : "differs"));
    json_decref(back);
    free(y);
}

static void run_manifest(const input *in, outcome *o) {
    json_t *doc = NULL;
    int multi = 0;
    serr e = {0};
    arm();
    int rc = yaml_to_json(in->data, in->len, &doc, &multi, &e);
    disarm();
    char *d = NULL;
    if (rc == 0) {
        char *s = dump(doc);
        d = textf("multi %d %s", multi, s);
        free(s);
    }
    note(o, "yaml_to_json", rc, &e, d);
    if (rc) return;
    if (multi) {
        size_t i;
        json_t *m;
        json_array_foreach(doc, i, m) manifest_doc(m, o);
    } else {
        manifest_doc(doc, o);
    }
    yaml_round_trip(doc, o);
    json_decref(doc);
}

/* yaml_to_json of a single document, noted; NULL when refused. */
static json_t *read_doc(const input *in, outcome *o) {
    json_t *doc = NULL;
    serr e = {0};
    arm();
    int rc = yaml_to_json(in->data, in->len, &doc, NULL, &e);
    disarm();
    note(o, "yaml_to_json", rc, &e, rc ? NULL : dump(doc));
    return doc;
}

static void run_template(const input *in, outcome *o) {
    json_t *doc = read_doc(in, o);
    if (doc == NULL) return;
    tpl *t = malloc(sizeof(*t));
    assert_non_null(t);
    serr e = {0};
    arm();
    int rc = tpl_parse(spec_of(doc), t, &e);
    for (int i = 0; rc == 0 && i < t->nparams; i++)
        if (tpl_param_find(t, t->params[i].name) != &t->params[i]) rc = SE_INTERNAL;
    disarm();
    note(o, "tpl_parse", rc, &e, rc ? NULL : tpl_text(t));
    free(t);
    json_decref(doc);
}

static void run_healthcheck(const input *in, outcome *o) {
    serr e = {0};
    if (in->len < 512) {
        hc_expr x;
        arm();
        int rc = hc_expr_parse(in->data, &x, &e);
        disarm();
        note(o, "hc_expr_parse", rc, &e,
             rc ? NULL : textf("%s %d %.17g %d", x.metric, x.op, x.value, hc_expr_holds(&x, 0.5)));
    }
    json_t *doc = read_doc(in, o);
    if (doc == NULL) return;
    hc_set *s = malloc(sizeof(*s));
    assert_non_null(s);
    arm();
    int rc = hc_parse(spec_of(doc), s, &e);
    disarm();
    note(o, "hc_parse", rc, &e, rc ? NULL : hc_text(s));
    free(s);
    json_decref(doc);
}

static void run_autoscaler(const input *in, outcome *o) {
    json_t *doc = read_doc(in, o);
    if (doc == NULL) return;
    as_spec *sp = malloc(sizeof(*sp));
    assert_non_null(sp);
    serr e = {0};
    arm();
    int rc = as_spec_parse(spec_of(doc), sp, &e);
    disarm();
    note(o, "as_spec_parse", rc, &e, rc ? NULL : as_text(sp));
    if (rc == 0) {
        static const char *const tpls[] = {"synaxis", "web", "a"};
        static const char *const regions[] = {"eastus", "westeurope", "", "x"};
        serr re = {0};
        int mins[4];
        arm();
        rc = as_spec_resolve_template(sp, tpls, 3, &re);
        for (int i = 0; i < 4; i++) mins[i] = as_spec_region_min(sp, regions[i]);
        disarm();
        note(o, "as_spec_resolve_template", rc, &re,
             textf("%s %d %d %d %d", sp->template_name, mins[0], mins[1], mins[2], mins[3]));
    }
    free(sp);
    json_decref(doc);
}

static void run_obs_spec(const input *in, outcome *o) {
    json_t *doc = read_doc(in, o);
    if (doc == NULL) return;
    obs_spec *sp = malloc(sizeof(*sp));
    assert_non_null(sp);
    serr e = {0}, e2 = {0};
    arm();
    int rc = obs_spec_parse(spec_of(doc), obs_get_catalog(), sp, &e);
    disarm();
    note(o, "obs_spec_parse", rc, &e, rc ? NULL : obs_spec_text(sp));
    arm();
    rc = obs_spec_parse(spec_of(doc), NULL, sp, &e2);
    disarm();
    note(o, "obs_spec_parse (no catalog)", rc, &e2, rc ? NULL : obs_spec_text(sp));
    free(sp);
    json_decref(doc);
}

static void run_catalog(const input *in, outcome *o) {
    put_file(cat_path, in);
    obs_catalog *cat = NULL;
    serr e = {0};
    arm();
    int rc = obs_catalog_load(cat_path, "/opt/stamp/observability", &cat, &e);
    disarm();
    note(o, "obs_catalog_load", rc, &e, rc ? NULL : catalog_text(cat));
    obs_catalog_free(cat);
}

static void run_json(const input *in, outcome *o) {
    json_t *v = NULL;
    serr e = {0};
    arm();
    int rc = json_parse_user(in->data, in->len, &v, &e);
    disarm();
    note(o, "json_parse_user", rc, &e, rc ? NULL : dump(v));
    if (rc) return;
    /* What the API does next with a body: back to text (json_text, as
     * its answers), which must read back as the same value. */
    arm();
    char *s = json_text(v, JSON_COMPACT | JSON_ENCODE_ANY);
    disarm();
    note_full(o, "json_text", s ? 0 : SE_NOMEM, "", NULL, true);
    if (s != NULL) {
        json_t *back = NULL;
        serr e2 = {0};
        arm();
        rc = json_parse_user(s, strlen(s), &back, &e2);
        disarm();
        note(o, "json_parse_user (back)", rc, &e2,
             rc ? NULL : textf("%s", json_equal(v, back) ? "same" : "differs"));
        json_decref(back);
        free(s);
    }
    json_decref(v);
}

/* JWT: the verifier of tests/fuzz/fuzz_jwt.c (the corpus's tokens are
 * signed with these test keys), built once, disarmed. */
#define JWT_NOW 1800000000
static const unsigned char jwt_secret[32] = "0123456789abcdef0123456789abcdef";
static const char rsa_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCkbJ0DPOtoi68Y\n"
    "4diUelxadSkS6FY7wGfCl22KaxOyYC6IUiMADvDC/QT3pwxIqMZk3m/Wx177wclT\n"
    "TWWuw+govOKaSUadW0tdJj7xsdXowoJ3ww/UkbwrZ09e/ysMoTutMnNJhZO4aCvV\n"
    "59skF2DaQdtYT8/4EZLz65kq3xW17Hi9rnTDjUatGuxLI25SFH8tTngo1cbk7UQP\n"
    "oAHCQyBQjUO2YpBMLZJTvcRjOA8ibHC2NBz9wPc4g5KzEwtBd42NiSyw3/dS7B0l\n"
    "kYqtSmPPHtI9xaWsyjlLR6v3oxoiXynT7I+yOQe3zcoywM8QYhjvpPU785+pOXcg\n"
    "cZSvukbfAgMBAAECggEADLdbs07oU+cNrSp2UhFeiB5shUpTtP5N6AZHEf/y/4Yh\n"
    "wyg7DbuaEjJ4SmDwecQXx+BOHPnBVk4n8FnZhdkf4Nqu2cjV/cB8RSF6l72tsfkt\n"
    "Fu8Oj92PhHnScSHh5fGoSF5Q/Twn7wibb0klsRZfxrF2Mc/GYUSWrWeoqmCjcLTP\n"
    "zt3JcaB1HKSZLbSv85TqANpV3MFNfUc14dZG8hJcP5p81FeHPJLPrihr6j1bO9qc\n"
    "zFp8G1m9PbddHQ7ye5Ps1pBP/y6fXA+ntph7YSyh7YfRIeIK2FcOmkvbFOSqP0l5\n"
    "fVnE3IIapADNUKtiYHkiPSMimCp6TLnxeoZONt9xDQKBgQDfLydb0D85XqerebtT\n"
    "zA8LQgKsbLJAMlVJeaTyaFkER1T1zFw1K9O0P12TZgtkTp8RkvlarYdpznGAl2Wp\n"
    "aVojQf6gI4p7o0CLXXPkpUcKAIOBweJThkZo7txv80pIajYB+PmhbIzoBqdKjR6x\n"
    "j74hznO8dBMRseuubwE/dfks/QKBgQC8ma9pl0JL+1qWyuXcVaQx/h5T5mfZ59Gt\n"
    "GqhDVOYT9ODnUNDdLe9vKl3qMZ0GFbKetCXmtnX7C1ZkNn51Sd0Y89OOKypfV4ht\n"
    "YMQ5rwRue1tp2qhQ5Mib1w3zxyTdVrG9ntTRN034I4dbYjhf06ZhCAU3tHQDtxiJ\n"
    "wwBRu0Y4CwKBgBdgCO9E0Fph343GIiiUpr63GzCT8ddnbidT5kK9SxV3ox5bWQz4\n"
    "miO2v0ZA2dCXq3Fbw2IL6rLaPGkLckpcDmTC9LgxAMASSSBPmWPJK7eQdjWQ6PN2\n"
    "jMlQuyW+hXkwJpfuS7bsd5WVnM/iF+Tg+TjxNo32WkjwKY8LcUYERSTBAoGAKvw4\n"
    "L6/K63hxcDb0ZuCaGM7baLH174NXlcWinh4GhnvkmrQftpmWndahKxR9vnpJiMR0\n"
    "cv4ZK8usuBB3iBH6s4o3KIsMEEjqDkvkzWTndKrm7dxpSm6qjmJYirxT2aK9xgMi\n"
    "bEDXo3utiRV81dJudGUYk1asroAXtqZcN0Sgv3sCgYAl9cO3ycOnGQePpdVX7wOs\n"
    "ug3gQ2Bt0HU3fuQ01DU5idYP/e/jpgw/2qENRsnOOhbk6pLtg2pY1it6YYcGQbK3\n"
    "hUNTIESedeVs1qoV6hceeSDbgtOhk9U2b9ob569etKtetosOpTL5zAU5dFznJ0BN\n"
    "cynP1/gy5c18uR/6O8C1UQ==\n"
    "-----END PRIVATE KEY-----\n";
static const char ec_pem[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIJwRJkSJABwOadUxl4Xz2ZjgXqf1Bft1D8gsSPSAag1AoAoGCCqGSM49\n"
    "AwEHoUQDQgAEQ4/gayDZRKlV0yobSJei97wLLo0YGanoR0yCeNDQ0DAQqa+ibOgB\n"
    "YpBinS0moOz+g3EvLyicMuae0bepdiv8hA==\n"
    "-----END EC PRIVATE KEY-----\n";

static jwt_verifier *verifier;

static void quiet(void *arg, const char *msg) {
    (void)arg;
    (void)msg;
}

static EVP_PKEY *pem_key(const char *pem) {
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return k;
}

static int verifier_setup(void) {
    EVP_PKEY *rsa = pem_key(rsa_pem), *ec = pem_key(ec_pem);
    if (rsa == NULL || ec == NULL) return -1;
    serr e = {0};
    json_t *keys = json_array();
    json_array_append_new(keys, jwt_public_jwk(rsa, "rsa1", &e));
    json_array_append_new(keys, jwt_public_jwk(ec, "ec1", &e));
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *jwks = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    jwt_config c = {.alg = "HS256,RS256,ES256", .secret = jwt_secret,
                    .secret_len = sizeof(jwt_secret), .issuer = "stampd", .audience = "stamp",
                    .jwks = jwks, .jwks_issuers = "stampd,https://idp.example",
                    .operator_issuers = "https://idp.example", .leeway_s = JWT_LEEWAY_S,
                    .warn = quiet};
    int rc = jwks ? jwt_verifier_new(&c, &verifier, &e) : -1;
    free(jwks);
    if (rc) fprintf(stderr, "test_oom: verifier: %s\n", e.msg);
    return rc;
}

static void run_jwt(const input *in, outcome *o) {
    json_t *claims = NULL;
    serr e = {0};
    arm();
    int rc = jwt_verify(verifier, in->data, JWT_NOW, &claims, &e);
    disarm();
    note(o, "jwt_verify", rc, &e, rc ? NULL : dump(claims));
    if (rc == 0) {
        serr e2 = {0};
        arm();
        int g = jwt_grants_operator(verifier, in->data, claims, &e2);
        disarm();
        /* 1 or 0 is an answer; a negative code an error. */
        note(o, "jwt_grants_operator", g < 0 ? g : 0, &e2, textf("%d %s", g, e2.msg));
        json_decref(claims);
    }
}

static void run_jwks(const input *in, outcome *o) {
    jwk_set *s = NULL;
    serr e = {0};
    arm();
    int rc = jwk_set_parse(in->data, in->len, quiet, NULL, &s, &e);
    disarm();
    note(o, "jwk_set_parse", rc, &e,
         rc ? NULL
            : textf("%d keys; rsa1 %d ec1 %d; last skip: %s", jwk_set_count(s),
                    jwk_set_find(s, "rsa1") != NULL, jwk_set_find(s, "ec1") != NULL,
                    jwk_set_last_skip(s)));
    jwk_set_release(s);
}

/* Every name checker (tests/fuzz/fuzz_names.c): they allocate nothing of
 * ours; run so that one that starts to is swept too. */
static void run_names(const input *in, outcome *o) {
    const char *s = in->data;
    size_t n1 = strlen(s);
    const char *s2 = n1 < in->len ? s + n1 + 1 : "";
    char out[STAMP_NAME_MAX + 1] = "";
    serr e[12];
    memset(e, 0, sizeof(e));
    int rc[12];
    arm();
    rc[0] = stamp_id_normalize(s, out, sizeof(out), &e[0]);
    rc[1] = stamp_name_build(s, s2, s2, out, sizeof(out), &e[1]);
    rc[2] = ns_bucket_check(s, &e[2]);
    rc[3] = ns_name_check(s, &e[3]);
    rc[4] = ns_tenant_check(s, &e[4]);
    rc[5] = ns_pod_check(s, &e[5]);
    rc[6] = nsrt_env_check(s, &e[6]);
    rc[7] = nsrt_annotate_check(s, s2, &e[7]);
    rc[8] = jwks_url_check(s, &e[8]);
    int flags = (region_code(s) != NULL) | (region_from_code(s) != NULL) << 1 |
                ns_hash_valid(s) << 2 | blob_container_valid(s) << 3 | blob_path_valid(s) << 4 |
                tpl_param_name_ok(s) << 5;
    disarm();
    static const char *const names[] = {"stamp_id_normalize", "stamp_name_build", "ns_bucket_check",
                                        "ns_name_check",      "ns_tenant_check",  "ns_pod_check",
                                        "nsrt_env_check",     "nsrt_annotate_check",
                                        "jwks_url_check"};
    for (int i = 0; i < 9; i++) note(o, names[i], rc[i], &e[i], NULL);
    note(o, "predicates", 0, NULL, textf("%d %s", flags, out));
}

static void run_config(const input *in, outcome *o) {
    put_file(conf_path, in);
    stamp_config *c = malloc(sizeof(*c));
    assert_non_null(c);
    config_defaults(c);
    serr e = {0}, ve = {0};
    arm();
    int rc = config_load_file(c, conf_path, &e);
    int vrc = rc == 0 ? config_validate(c, &ve) : 0;
    disarm();
    char *text = NULL;
    size_t tlen = 0;
    if (rc == 0) {
        FILE *f = open_memstream(&text, &tlen);
        assert_non_null(f);
        config_print(c, f);
        fclose(f);
    }
    note(o, "config_load_file", rc, &e, text);
    if (rc == 0) note(o, "config_validate", vrc, &ve, NULL);
    free(c);
}

static void run_azure_xml(const input *in, outcome *o) {
    static const long statuses[] = {400, 403, 404, 409, 500, 503};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        serr e = {0};
        arm();
        int rc = blob_az_error(statuses[i], in->data, "get blob", &e);
        disarm();
        note(o, "blob_az_error", rc, &e, NULL);
    }
}

/* The rows haproxy_stat_parse reports, appended to a fixed buffer: the
 * callback runs armed and allocates nothing. */
static char csv_rows[16384];
static size_t csv_len;

static void csv_row(const char *name, const tr_stat *s, void *arg) {
    (void)arg;
    csv_len += str_fmt_cut(csv_rows + csv_len, sizeof(csv_rows) - csv_len,
                           "%s %s %lld %lld %lld %lld %lld %lld %lld;", name, s->status,
                           (long long)s->scur, (long long)s->qcur, (long long)s->stot,
                           (long long)s->rate, (long long)s->req_tot, (long long)s->hrsp_5xx,
                           (long long)s->rtime_ms);
}

static void run_haproxy_csv(const input *in, outcome *o) {
    serr e = {0};
    csv_len = 0;
    csv_rows[0] = '\0';
    arm();
    int rc = haproxy_stat_parse(in->data, csv_row, NULL, &e);
    disarm();
    note(o, "haproxy_stat_parse", rc, &e, textf("%s", csv_rows));
}

static void run_prom_text(const input *in, outcome *o) {
    static const char *const gauges[] = {
        "stamp_workload_active_connections", "stamp_workload_queue_depth",
        "stamp_workload_active_jobs", "stamp_workload_job_capacity", "up",
        "stamp_workload_request_duration_seconds_count",
    };
    for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
        double v = 0;
        arm();
        int rc = prom_value(in->data, gauges[i], &v);
        disarm();
        note_full(o, "prom_value", rc, "", rc ? NULL : textf("%.17g", v), true);
    }
    as_hist *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    serr e = {0};
    arm();
    int rc = as_hist_parse(in->data, AS_LATENCY_HISTOGRAM, h, &e);
    double q = rc == 0 ? as_hist_quantile(h, 0.99) : 0;
    disarm();
    note(o, "as_hist_parse", rc, &e, rc ? NULL : textf("%d buckets, p99 %.17g", h->n, q));
    free(h);
}

/* "METHOD PATH?QUERY\n" then the body (tests/fuzz/fuzz_http.c); "X" is
 * every method. */
static void run_http(const input *in, outcome *o) {
    char *line = textf("%s", in->data);
    assert_non_null(line);
    const char *body = "";
    size_t blen = 0;
    char *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        body = in->data + (nl + 1 - line);
        blen = in->len - (size_t)(nl + 1 - line);
    }
    char *sp = strchr(line, ' ');
    const char *method = "GET", *path = line, *query = "";
    if (sp) {
        *sp = '\0';
        method = line;
        path = sp + 1;
    }
    char *q = strchr(sp ? sp + 1 : line, '?');
    if (q) {
        *q = '\0';
        query = q + 1;
    }
    static const char *const all[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    bool every = strcmp(method, "X") == 0;
    for (size_t i = 0; i < (every ? 5 : 1); i++) {
        const char *m = every ? all[i] : method;
        arm();
        int rc = api_fuzz_request(m, path, query, body, blen);
        disarm();
        note_full(o, m, rc, "", NULL, true);
    }
    free(line);
}

/* ---- the tests ---- */

static void oom_manifest(void **state) {
    (void)state;
    static const char *const files[] = {
        "manifest/cbbab39c700f58bf", /* StampTemplate, 4.7 KB, the large valid one */
        "manifest/0762965faddae87f", /* ObservabilityPlatform */
        "manifest/652a92253852a7ed", /* StampHealthCheck */
        "manifest/5690594f7f3cc171", /* StampAutoscaler */
        "manifest/a21d631e1f25b907", /* ComponentCatalog */
        "json/a3d4b116e5be4870",     /* a StampTemplate as JSON */
        "json/0bb3cf538fd3acce",     /* an ObservabilityPlatform as JSON */
        NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "manifest", run_manifest, files);
    /* Several documents in one stream, each kind once. */
    input parts[4] = {0};
    input_load(&parts[0], "manifest/02d41cc6866499be");
    input_load(&parts[1], "manifest/1a4a41d92ecd9e12");
    input_load(&parts[2], "manifest/1ce83284401fb8f6");
    input_load(&parts[3], "manifest/a95243110614356c");
    input multi = {.name = "4 documents in one stream"};
    multi.data = textf("%s\n---\n%s\n---\n%s\n---\n%s\n", parts[0].data, parts[1].data, parts[2].data,
                       parts[3].data);
    assert_non_null(multi.data);
    multi.len = strlen(multi.data);
    sweep(&t, "manifest", run_manifest, &multi);
    input_done(&multi);
    for (int i = 0; i < 4; i++) input_done(&parts[i]);
    report(&t, "manifest", t0);
}

static void oom_template(void **state) {
    (void)state;
    static const char *const files[] = {"template/cbbab39c700f58bf", "template/02d41cc6866499be",
                                        "template/2ebd2a1ddf4f34fa", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "template", run_template, files);
    report(&t, "template", t0);
}

static void oom_healthcheck(void **state) {
    (void)state;
    static const char *const files[] = {"healthcheck/c4afaf1a3d24c107", "healthcheck/1a4a41d92ecd9e12",
                                        "healthcheck/74db1372853fcc8a", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "healthcheck", run_healthcheck, files);
    report(&t, "healthcheck", t0);
}

static void oom_autoscaler(void **state) {
    (void)state;
    static const char *const files[] = {"autoscaler/01d8a2eb4bb9d089", "autoscaler/5690594f7f3cc171",
                                        "autoscaler/ef086238b47a897f", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "autoscaler", run_autoscaler, files);
    report(&t, "autoscaler", t0);
}

static void oom_obs_spec(void **state) {
    (void)state;
    static const char *const files[] = {"obs_spec/0762965faddae87f", "obs_spec/6d27fa2f4ae5f806",
                                        "obs_spec/a95243110614356c", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "obs_spec", run_obs_spec, files);
    /* A config just over the 64 KiB limit: refused only when it can be
     * measured (not in the corpus: its files are small). */
    sbuf b;
    sbuf_init(&b, 1 << 20);
    sbuf_adds(&b, "{\"components\": [{\"name\": \"prometheus\", \"config\": {");
    for (int i = 0; i < 940; i++) sbuf_addf(&b, "%s\"key%04d\": \"%060d\"", i ? ", " : "", i, i);
    sbuf_adds(&b, "}}]}");
    input big = {.name = "a 68 KB config", .data = b.data, .len = b.len};
    sweep(&t, "obs_spec", run_obs_spec, &big);
    sbuf_free(&b);
    report(&t, "obs_spec", t0);
}

static void oom_catalog(void **state) {
    (void)state;
    static const char *const files[] = {"catalog/shipped.yaml", "catalog/mini.yaml", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "catalog", run_catalog, files);
    report(&t, "catalog", t0);
}

static void oom_json(void **state) {
    (void)state;
    static const char *const files[] = {"json/a3d4b116e5be4870", "json/4d1825ed165ab446",
                                        "json/2a6d3bab9507d542", "json/7bc31c4afc1e2f10", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "json", run_json, files);
    report(&t, "json", t0);
}

static void oom_jwt(void **state) {
    (void)state;
    static const char *const files[] = {
        "jwt/rs256_ok",   "jwt/es256_header", "jwt/hs256_ok",           "jwt/hs256_aud_array",
        "jwt/hs256_kid",  "jwt/hs256_iat",    "jwt/hs256_expired",      "jwt/alg_none",
        "jwt/tampered",   "jwt/rs256_unknown_kid", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "jwt", run_jwt, files);
    report(&t, "jwt", t0);
}

static void oom_jwks(void **state) {
    (void)state;
    static const char *const files[] = {"jwks/rsa_ec.json", "jwks/okp", "jwks/rsa_small",
                                        "jwks/empty", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "jwks", run_jwks, files);
    report(&t, "jwks", t0);
}

static void oom_names(void **state) {
    (void)state;
    static const char *const files[] = {"names/annotation", "names/blobpath", "names/bucket",
                                        "names/env",        "names/hash",     "names/id_digit",
                                        "names/ns",         "names/prefix",   "names/region",
                                        "names/tenant",     "names/url",      "names/url_loopback",
                                        NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "names", run_names, files);
    report(&t, "names", t0);
}

static void oom_config(void **state) {
    (void)state;
    static const char *const files[] = {"config/azure.conf", "config/auth.conf", "config/basic.conf",
                                        NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "config", run_config, files);
    report(&t, "config", t0);
}

static void oom_azure_xml(void **state) {
    (void)state;
    static const char *const files[] = {"azure_xml/auth_failed", "azure_xml/blob_not_found",
                                        "azure_xml/container_exists", "azure_xml/empty_code", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "azure_xml", run_azure_xml, files);
    report(&t, "azure_xml", t0);
}

static void oom_haproxy_csv(void **state) {
    (void)state;
    static const char *const files[] = {"haproxy_csv/two_servers", "haproxy_csv/short_header", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "haproxy_csv", run_haproxy_csv, files);
    report(&t, "haproxy_csv", t0);
}

static void oom_prom_text(void **state) {
    (void)state;
    static const char *const files[] = {"prom_text/workload", "prom_text/labels",
                                        "prom_text/exposition_with_name", NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "prom_text", run_prom_text, files);
    report(&t, "prom_text", t0);
}

static void oom_http(void **state) {
    (void)state;
    static const char *const files[] = {
        "http/stamps_create", "http/ns_create",   "http/stamp_action",  "http/metrics_period",
        "http/stamp_delete",  "http/any_method",  "http/audit_bad_int", "http/bundles_raw",
        "http/healthz",       "http/pct_escapes", "http/stamps_list",   "http/templates_rev",
        "http/unknown_param", "http/watch",       NULL};
    tally t = {0};
    double t0 = now_s();
    sweep_files(&t, "http", run_http, files);
    /* The large valid one: an apply with a 2.4 KB JSON body from the
     * corpus. */
    input body = {0};
    input_load(&body, "json/a3d4b116e5be4870");
    input apply = {.name = "POST /v1/apply with json/a3d4b116e5be4870"};
    apply.data = textf("POST /v1/apply?dryRun=All\n%s", body.data);
    assert_non_null(apply.data);
    apply.len = strlen(apply.data);
    sweep(&t, "http", run_http, &apply);
    input_done(&apply);
    input_done(&body);
    report(&t, "http", t0);
}

/* ---- set-up ---- */

static int group_setup(void **state) {
    (void)state;
    const char *src = getenv("STAMP_SRC");
    const char *show = getenv("STAMP_OOM_SHOW");
    if (show && parse_i64(show, 0, 1000000, &shown_max) != 0) shown_max = 12;
    str_copy(src_dir, sizeof(src_dir), src ? src : ".");
    if (mkdtemp(tmp_dir) == NULL) return -1;
    /* The catalog's layout as deploy/ has it: files under observability/
     * name ../prometheus/stamp-alerts.yaml. */
    str_fmt_cut(obs_sub[0], sizeof(obs_sub[0]), "%s/observability", tmp_dir);
    str_fmt_cut(obs_sub[1], sizeof(obs_sub[1]), "%s/prometheus", tmp_dir);
    str_fmt_cut(cat_path, sizeof(cat_path), "%s/catalog.yaml", obs_sub[0]);
    str_fmt_cut(rules_link, sizeof(rules_link), "%s/stamp-alerts.yaml", obs_sub[1]);
    str_fmt_cut(conf_path, sizeof(conf_path), "%s/stampd.conf", tmp_dir);
    char rules[1024];
    str_fmt_cut(rules, sizeof(rules), "%s/deploy/prometheus/stamp-alerts.yaml", src_dir);
    if (mkdir(obs_sub[0], 0700) != 0 || mkdir(obs_sub[1], 0700) != 0 || symlink(rules, rules_link) != 0)
        return -1;
    /* The shipped catalog, which obs_validate reads (as stampd at start). */
    char shipped[1024];
    str_fmt_cut(shipped, sizeof(shipped), "%s/deploy/observability/catalog.yaml", src_dir);
    obs_catalog *cat = NULL;
    serr e = {0};
    if (obs_catalog_load(shipped, "/opt/stamp/observability", &cat, &e) != 0) {
        fprintf(stderr, "test_oom: %s\n", e.msg);
        return -1;
    }
    obs_set_catalog(cat, NULL);
    if (verifier_setup() != 0) return -1;
    /* jansson's allocations reach the counter through stampcore's own
     * allocation functions for it (util/yamljson.c sets them with
     * json_set_alloc_funcs), whose malloc is wrapped like any other. */
    A = (alloc_state){.owner = pthread_self()};
    arm();
    json_t *probe = json_string("counted?");
    disarm();
    json_decref(probe);
    if (A.count != 2) {
        fprintf(stderr, "test_oom: jansson's allocations are not counted (%ld of 2)\n", A.count);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    jwt_verifier_free(verifier);
    obs_set_catalog(NULL, "exiting");
    unlink(cat_path);
    unlink(conf_path);
    unlink(rules_link);
    rmdir(obs_sub[0]);
    rmdir(obs_sub[1]);
    rmdir(tmp_dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oom_manifest),    cmocka_unit_test(oom_template),
        cmocka_unit_test(oom_healthcheck), cmocka_unit_test(oom_autoscaler),
        cmocka_unit_test(oom_obs_spec),    cmocka_unit_test(oom_catalog),
        cmocka_unit_test(oom_json),        cmocka_unit_test(oom_jwt),
        cmocka_unit_test(oom_jwks),        cmocka_unit_test(oom_names),
        cmocka_unit_test(oom_config),      cmocka_unit_test(oom_azure_xml),
        cmocka_unit_test(oom_haproxy_csv), cmocka_unit_test(oom_prom_text),
        cmocka_unit_test(oom_http),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
