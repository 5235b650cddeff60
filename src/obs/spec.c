/*
 * spec.c - the ObservabilityPlatform spec (obs.h): parsing and validation
 * against the catalog, with errors that name the field; and the
 * process-wide catalog that apply's validation and the controller share.
 *
 * Threading: obs_spec_parse is pure.  The catalog pointer is published
 * once at start (obs_set_catalog, before the API threads and workers
 * start) with a release store and read with an acquire load; the catalog
 * is never modified after that, so readers take no lock.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "util/util.h"
#include "util/yamljson.h"

#define CONFIG_MAX_BYTES (64 * 1024)
#define WHERE_MAX 64
#define RETENTION_MAX_MS (10LL * 366 * 24 * 3600 * 1000) /* ten years */
#define PIB (1LL << 50)

static _Atomic(obs_catalog *) g_catalog;
static char g_catalog_error[SERR_MSG_MAX];

void obs_set_catalog(obs_catalog *cat, const char *load_error) {
    str_copy(g_catalog_error, sizeof(g_catalog_error),
             cat ? "" : (load_error && *load_error ? load_error : "no catalog loaded"));
    obs_catalog *old = atomic_exchange_explicit(&g_catalog, cat, memory_order_acq_rel);
    if (old != cat) obs_catalog_free(old);
}

const obs_catalog *obs_get_catalog(void) {
    return atomic_load_explicit(&g_catalog, memory_order_acquire);
}

const char *obs_catalog_error(void) { return g_catalog_error; }

int obs_validate(json_t *spec, serr *e) {
    obs_spec *sp = malloc(sizeof(*sp));
    if (sp == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = obs_spec_parse(spec, obs_get_catalog(), sp, e);
    free(sp);
    return rc;
}

const obs_comp_spec *obs_spec_comp(const obs_spec *sp, const char *name) {
    for (int i = 0; sp && name && i < sp->n; i++)
        if (strcmp(sp->c[i].name, name) == 0) return &sp->c[i];
    return NULL;
}

int obs_parse_quantity(const char *s, int64_t *bytes) {
    static const struct {
        const char *suffix;
        int64_t mul;
    } units[] = {
        {"", 1},
        {"k", 1000LL},
        {"M", 1000LL * 1000},
        {"G", 1000LL * 1000 * 1000},
        {"T", 1000LL * 1000 * 1000 * 1000},
        {"P", 1000LL * 1000 * 1000 * 1000 * 1000},
        {"Ki", 1LL << 10},
        {"Mi", 1LL << 20},
        {"Gi", 1LL << 30},
        {"Ti", 1LL << 40},
        {"Pi", 1LL << 50},
    };
    if (s == NULL) return SE_INVAL;
    size_t nd = strspn(s, "0123456789");
    if (nd == 0 || nd > 16) return SE_INVAL;
    char digits[17];
    memcpy(digits, s, nd);
    digits[nd] = '\0';
    int64_t n;
    if (parse_i64(digits, 1, PIB, &n) != 0) return SE_INVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(s + nd, units[i].suffix) != 0) continue;
        if (n > PIB / units[i].mul) return SE_INVAL;
        *bytes = n * units[i].mul;
        return 0;
    }
    return SE_INVAL;
}

/* ms as hours, minutes, seconds and ms: what Prometheus and Go's
 * time.ParseDuration both read ("360h", "1h30m", "1500ms" -> "1s500ms"). */
static void retention_text(int64_t ms, char *buf, size_t len) {
    int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, r = ms % 1000;
    size_t n = 0;
    buf[0] = '\0';
    if (h) n += str_fmt_cut(buf + n, len - n, "%lldh", (long long)h);
    if (m) n += str_fmt_cut(buf + n, len - n, "%lldm", (long long)m);
    if (s) n += str_fmt_cut(buf + n, len - n, "%llds", (long long)s);
    if (r || n == 0) str_fmt_cut(buf + n, len - n, "%lldms", (long long)r);
}

static int check_keys(const json_t *o, const char *const *keys, const char *where, serr *e) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        bool known = false;
        for (int i = 0; keys[i] && !known; i++) known = strcmp(keys[i], k) == 0;
        if (!known) return serr_set(e, SE_INVAL, "%s.%s: unknown field", where, k);
    }
    return 0;
}

static int get_bool(const json_t *o, const char *k, bool dflt, bool *out, const char *where,
                    serr *e) {
    json_t *v = json_object_get(o, k);
    *out = dflt;
    if (v == NULL) return 0;
    if (!json_is_boolean(v)) return serr_set(e, SE_INVAL, "%s.%s: not true or false", where, k);
    *out = json_is_true(v);
    return 0;
}

/* A duration with a unit, lo..hi ms. */
static int get_duration(const json_t *o, const char *k, int64_t dflt, int64_t lo, int64_t hi,
                        int64_t *out, const char *where, serr *e) {
    json_t *v = json_object_get(o, k);
    *out = dflt;
    if (v == NULL) return 0;
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) > 31 || parse_duration_ms(s, out) != 0 ||
        strspn(s, "0123456789") == strlen(s))
        return serr_set(e, SE_INVAL, "%s.%s: not a duration like 10s, 5m or 1h30m", where, k);
    if (*out < lo || *out > hi) {
        char a[FMT_DURATION_LEN], b[FMT_DURATION_LEN];
        return serr_set(e, SE_INVAL, "%s.%s: \"%s\" is out of range (%s to %s)", where, k, s,
                        fmt_duration(lo, a, sizeof(a)), fmt_duration(hi, b, sizeof(b)));
    }
    return 0;
}

static int retry_parse(const json_t *r, obs_retry *out, serr *e) {
    static const char *const keys[] = {"maxRetries", "initialBackoff", "maxBackoff",
                                       "backoffFactor", NULL};
    const char *w = "spec.retry";
    *out = (obs_retry){.max_retries = 5, .initial_ms = 10000, .max_ms = 300000, .factor = 2.0};
    if (r == NULL) return 0;
    if (!json_is_object(r)) return serr_set(e, SE_INVAL, "%s: not an object", w);
    int rc = check_keys(r, keys, w, e);
    if (rc) return rc;
    json_t *v = json_object_get(r, "maxRetries");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100))
        return serr_set(e, SE_INVAL, "%s.maxRetries: not an integer from 0 to 100", w);
    if (v) out->max_retries = (int)json_integer_value(v);
    if ((rc = get_duration(r, "initialBackoff", out->initial_ms, 100, 3600000, &out->initial_ms, w, e)))
        return rc;
    if ((rc = get_duration(r, "maxBackoff", out->max_ms, 100, 86400000, &out->max_ms, w, e)))
        return rc;
    if (out->max_ms < out->initial_ms)
        return serr_set(e, SE_INVAL, "%s.maxBackoff: shorter than initialBackoff", w);
    v = json_object_get(r, "backoffFactor");
    if (v && (!json_is_number(v) || !isfinite(json_number_value(v)) ||
              json_number_value(v) < 1 || json_number_value(v) > 10))
        return serr_set(e, SE_INVAL, "%s.backoffFactor: not a number from 1 to 10", w);
    if (v) out->factor = json_number_value(v);
    return 0;
}

static int secrets_parse(const json_t *s, obs_spec *out, serr *e) {
    if (s == NULL) return 0;
    if (!json_is_array(s)) return serr_set(e, SE_INVAL, "spec.secrets: not a list of names");
    if (json_array_size(s) > OBS_MAX_SECRETS)
        return serr_set(e, SE_INVAL, "spec.secrets: more than %d", OBS_MAX_SECRETS);
    size_t i;
    json_t *x;
    json_array_foreach(s, i, x) {
        const char *n = json_string_value(x);
        if (n == NULL || !name_valid(n, sizeof(out->secrets[0]) - 1))
            return serr_set(e, SE_INVAL,
                            "spec.secrets[%zu]: not a name (lowercase letters, digits, '-', at "
                            "most %zu)",
                            i, sizeof(out->secrets[0]) - 1);
        for (int j = 0; j < out->nsecrets; j++)
            if (strcmp(out->secrets[j], n) == 0)
                return serr_set(e, SE_INVAL, "spec.secrets[%zu]: %s listed twice", i, n);
        str_copy(out->secrets[out->nsecrets++], sizeof(out->secrets[0]), n);
    }
    return 0;
}

/* The versions a component has, for a message: "2.42.0, 2.53.3". */
static void versions_text(const obs_cat_comp *cc, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < cc->nv; i++)
        n += str_fmt_cut(buf + n, len - n, "%s%s", i ? ", " : "", cc->v[i].version);
}

static int version_parse(const json_t *o, const obs_catalog *cat, obs_comp_spec *c,
                         const char *where, serr *e) {
    json_t *v = json_object_get(o, "version");
    const obs_cat_comp *cc = obs_catalog_comp(cat, c->name);
    if (v && json_is_number(v))
        return serr_set(e, SE_INVAL, "%s.version: a number; quote it (\"%g\")", where,
                        json_number_value(v));
    if (v && (!json_is_string(v) || !str_copy(c->version, sizeof(c->version), json_string_value(v)) ||
              c->version[0] == '\0'))
        return serr_set(e, SE_INVAL, "%s.version: not a version string", where);
    if (cc == NULL) return 0;
    if (v == NULL) {
        str_copy(c->version, sizeof(c->version), cc->default_version);
        return 0;
    }
    if (obs_catalog_version(cc, c->version) == NULL) {
        char have[256];
        versions_text(cc, have, sizeof(have));
        return serr_set(e, SE_INVAL, "%s.version: \"%s\" is not in the catalog for %s (it has %s)",
                        where, c->version, c->name, have);
    }
    return 0;
}

static int retention_parse(const json_t *o, const obs_cat_comp *cc, obs_comp_spec *c,
                           const char *where, serr *e) {
    json_t *v = json_object_get(o, "retention");
    const char *s = v ? json_string_value(v) : (cc ? cc->default_retention : "");
    if (v && cc && cc->default_retention[0] == '\0')
        return serr_set(e, SE_INVAL, "%s.retention: %s keeps no data to retain", where, c->name);
    if (s == NULL || (v && *s == '\0'))
        return serr_set(e, SE_INVAL, "%s.retention: not a duration like 15d or 12h", where);
    if (*s == '\0') return 0; /* keeps none, or no catalog to say */
    int64_t ms;
    if (strlen(s) > 31 || parse_duration_ms(s, &ms) != 0 || strspn(s, "0123456789") == strlen(s))
        return serr_set(e, SE_INVAL, "%s.retention: \"%s\" is not a duration like 15d or 12h",
                        where, s);
    if (ms < 60000 || ms > RETENTION_MAX_MS)
        return serr_set(e, SE_INVAL, "%s.retention: \"%s\" is out of range (1m to 10 years)",
                        where, s);
    c->retention_ms = ms;
    retention_text(ms, c->retention, sizeof(c->retention));
    return 0;
}

/* Long: one block per field of a component entry, each naming it. */
static int comp_parse(const json_t *o, const obs_catalog *cat, obs_comp_spec *c, const char *where,
                      serr *e) {
    static const char *const keys[] = {"name", "version", "enabled", "port", "retention",
                                       "storage", "config", NULL};
    if (!json_is_object(o)) return serr_set(e, SE_INVAL, "%s: not an object", where);
    int rc = check_keys(o, keys, where, e);
    if (rc) return rc;
    const char *name = jstr(o, "name", NULL);
    if (name == NULL || !name_valid(name, OBS_NAME_MAX - 1))
        return serr_set(e, SE_INVAL, "%s.name: required, a component name", where);
    str_copy(c->name, sizeof(c->name), name);
    const obs_cat_comp *cc = obs_catalog_comp(cat, name);
    if (cat && cc == NULL) {
        char have[256];
        size_t n = 0;
        have[0] = '\0';
        for (int i = 0; i < cat->n; i++)
            n += str_fmt_cut(have + n, sizeof(have) - n, "%s%s", i ? ", " : "", cat->c[i].name);
        return serr_set(e, SE_INVAL, "%s.name: %s is not a component of the catalog (%s)", where,
                        name, have);
    }
    if ((rc = version_parse(o, cat, c, where, e))) return rc;
    if ((rc = get_bool(o, "enabled", true, &c->enabled, where, e))) return rc;
    json_t *v = json_object_get(o, "port");
    if (v && (!json_is_integer(v) || (json_integer_value(v) != 0 &&
                                      (json_integer_value(v) < 1024 || json_integer_value(v) > 65535))))
        return serr_set(e, SE_INVAL, "%s.port: not 0 (leased) or a port from 1024 to 65535", where);
    c->port = v ? (int)json_integer_value(v) : 0;
    if ((rc = retention_parse(o, cc, c, where, e))) return rc;
    json_t *st = json_object_get(o, "storage");
    if (st) {
        static const char *const skeys[] = {"size", NULL};
        char w[WHERE_MAX + 16];
        str_fmt_cut(w, sizeof(w), "%s.storage", where);
        if (!json_is_object(st)) return serr_set(e, SE_INVAL, "%s: not an object", w);
        if ((rc = check_keys(st, skeys, w, e))) return rc;
        json_t *sz = json_object_get(st, "size");
        const char *s = json_string_value(sz);
        if (json_is_integer(sz) && json_integer_value(sz) > 0 && json_integer_value(sz) <= PIB)
            c->storage_bytes = json_integer_value(sz);
        else if (sz && (s == NULL || obs_parse_quantity(s, &c->storage_bytes) != 0))
            return serr_set(e, SE_INVAL, "%s.size: not a size like 512Mi, 1Gi or 10G (at most 1Pi)",
                            w);
        if (cc && !cc->stores_data && c->storage_bytes)
            return serr_set(e, SE_INVAL, "%s.size: %s stores no data", w, name);
    }
    v = json_object_get(o, "config");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v)) return serr_set(e, SE_INVAL, "%s.config: not an object", where);
        if (json_depth(v) > MANIFEST_MAX_DEPTH)
            return serr_set(e, SE_INVAL, "%s.config: nested deeper than %d", where,
                            MANIFEST_MAX_DEPTH);
        /* json_dumpb answers 0 when it runs out of memory (an object is at
         * least "{}"): the size unknown, the limit would be skipped. */
        unsigned long nomem = json_alloc_failures();
        size_t size = json_dumpb(v, NULL, 0, JSON_COMPACT);
        if (size == 0 || json_alloc_failures() != nomem)
            return serr_set(e, SE_NOMEM, "%s.config: out of memory measuring it", where);
        if (size > CONFIG_MAX_BYTES)
            return serr_set(e, SE_INVAL, "%s.config: %zu bytes serialized; the limit is %d", where,
                            size, CONFIG_MAX_BYTES);
        const obs_cat_version *cv = obs_catalog_version(cc, c->version);
        if (cv && cv->config == NULL && json_object_size(v) > 0)
            return serr_set(e, SE_INVAL, "%s.config: %s %s has no configuration file", where, name,
                            c->version);
        c->config = v;
    }
    return 0;
}

static int components_parse(const json_t *list, const obs_catalog *cat, obs_spec *out, serr *e) {
    if (!json_is_array(list) || json_array_size(list) == 0)
        return serr_set(e, SE_INVAL, "spec.components: required, a list of components");
    if (json_array_size(list) > OBS_MAX_COMP)
        return serr_set(e, SE_INVAL, "spec.components: more than %d", OBS_MAX_COMP);
    size_t i;
    json_t *o;
    char where[WHERE_MAX];
    int idx[OBS_MAX_COMP]; /* where each entry came from, for messages */
    json_array_foreach(list, i, o) {
        str_fmt_cut(where, sizeof(where), "spec.components[%zu]", i);
        obs_comp_spec *c = &out->c[out->n];
        int rc = comp_parse(o, cat, c, where, e);
        if (rc) return rc;
        for (int j = 0; j < out->n; j++) {
            if (strcmp(out->c[j].name, c->name) == 0)
                return serr_set(e, SE_INVAL, "%s.name: %s is listed twice (also components[%d])",
                                where, c->name, idx[j]);
            if (c->enabled && out->c[j].enabled && c->port && c->port == out->c[j].port)
                return serr_set(e, SE_INVAL, "%s.port: %d is also the port of %s", where, c->port,
                                out->c[j].name);
        }
        if (out->exec && cat) {
            const obs_cat_version *cv =
                obs_catalog_version(obs_catalog_comp(cat, c->name), c->version);
            if (c->enabled && cv && cv->exec == NULL)
                return serr_set(e, SE_INVAL,
                                "%s: runtime exec, but the catalog has no exec commands for %s %s",
                                where, c->name, c->version);
        }
        idx[out->n++] = (int)i;
    }
    /* The catalog's install order, whatever order the manifest uses
     * (insertion sort: at most OBS_MAX_COMP entries). */
    for (int a = 1; cat && a < out->n; a++) {
        obs_comp_spec t = out->c[a];
        int ka = obs_catalog_order(cat, t.name), b = a - 1;
        while (b >= 0 && obs_catalog_order(cat, out->c[b].name) > ka) {
            out->c[b + 1] = out->c[b];
            b--;
        }
        out->c[b + 1] = t;
    }
    return 0;
}

int obs_spec_parse(json_t *spec, const obs_catalog *cat, obs_spec *out, serr *e) {
    static const char *const keys[] = {"paused", "keepVolumes", "runtime", "retry",
                                       "secrets", "components", NULL};
    memset(out, 0, sizeof(*out));
    if (!json_is_object(spec)) return serr_set(e, SE_INVAL, "spec: required, an object");
    int rc = check_keys(spec, keys, "spec", e);
    if (rc) return rc;
    if ((rc = get_bool(spec, "paused", false, &out->paused, "spec", e))) return rc;
    if ((rc = get_bool(spec, "keepVolumes", false, &out->keep_volumes, "spec", e))) return rc;
    json_t *rt = json_object_get(spec, "runtime");
    const char *rts = rt ? json_string_value(rt) : "local";
    if (rts == NULL || (strcmp(rts, "local") != 0 && strcmp(rts, "exec") != 0))
        return serr_set(e, SE_INVAL, "spec.runtime: not local or exec");
    out->exec = strcmp(rts, "exec") == 0;
    if ((rc = retry_parse(json_object_get(spec, "retry"), &out->retry, e))) return rc;
    if ((rc = secrets_parse(json_object_get(spec, "secrets"), out, e))) return rc;
    return components_parse(json_object_get(spec, "components"), cat, out, e);
}
