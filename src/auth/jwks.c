/*
 * jwks.c - JWKS key sets and their source (jwks.h): parsing with per-key
 * skips, reference-counted immutable sets swapped under one mutex, and the
 * background refresher for a jwks_uri.
 *
 * Invariant: s->cur is never NULL and is only replaced under s->mu; a set's
 * refcount is changed only under the set's own atomic counter, so a reader
 * holding a set never races the refresher that replaced it.
 */
#include "auth/jwks.h"

#include <assert.h>
#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "util/yamljson.h"

struct jwk_set {
    atomic_int refs;
    int n;
    char last_skip[SERR_MSG_MAX];
    jwk keys[JWT_MAX_KEYS];
};

struct jwks_source {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    jwk_set *cur;
    /* URL mode only */
    char *url, *ca_file;
    int64_t refresh_ms, min_refresh_ms, timeout_ms;
    jwt_fetch_fn fetch;
    void *fetch_arg;
    jwt_warn_fn warn;
    void *warn_arg;
    bool thread_started, stop, want;
    int64_t last_attempt; /* mono ms */
    int64_t next_due;     /* mono ms */
    pthread_t thread;
};

static void warnf(jwt_warn_fn warn, void *arg, char *last, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void warnf(jwt_warn_fn warn, void *arg, char *last, const char *fmt, ...) {
    char msg[SERR_MSG_MAX]; /* a warning for a person: a cut is harmless */
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (last) str_copy(last, SERR_MSG_MAX, msg);
    if (warn) warn(arg, msg);
}

/* A kid from the document, fit for a log line (it may be anything). */
static const char *kid_shown(const char *kid, char *buf, size_t cap) {
    if (kid == NULL) return "(none)";
    return utf8_sanitize(kid, strlen(kid), buf, cap > 64 ? 64 : cap - 1);
}

/* base64url-decoded big-endian integer of a JWK member (at most 1024
 * bytes); NULL with *nomem set when memory ran out, not the key's fault. */
static BIGNUM *jwk_bn(const json_t *k, const char *member, bool *nomem) {
    const char *v = json_string_value(json_object_get(k, member));
    if (v == NULL || strlen(v) > 1400) return NULL;
    unsigned char *buf = malloc(1100);
    if (buf == NULL) {
        *nomem = true;
        return NULL;
    }
    long n = b64url_decode(v, strlen(v), buf);
    BIGNUM *bn = n > 0 ? BN_bin2bn(buf, (int)n, NULL) : NULL;
    free(buf);
    return bn;
}

static EVP_PKEY *jwk_rsa(const json_t *k, serr *e) {
    bool nomem = false;
    BIGNUM *n = jwk_bn(k, "n", &nomem), *ex = jwk_bn(k, "e", &nomem);
    EVP_PKEY *pk = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (nomem) {
        serr_set(e, SE_NOMEM, "out of memory");
    } else if (n == NULL || ex == NULL) {
        serr_set(e, SE_INVAL, "RSA key needs base64url n and e (n up to 8192 bits)");
    } else if (BN_num_bits(n) < 2048) {
        serr_set(e, SE_INVAL, "RSA key of %d bits (2048 at least)", BN_num_bits(n));
    } else if (bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
               OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, ex) &&
               (params = OSSL_PARAM_BLD_to_param(bld)) && EVP_PKEY_fromdata_init(ctx) == 1 &&
               EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) == 1) {
        /* built */
    } else {
        serr_set(e, SE_INVAL, "RSA key rejected by OpenSSL");
    }
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(ex);
    return pk;
}

static EVP_PKEY *jwk_ec(const json_t *k, serr *e) {
    const char *crv = json_string_value(json_object_get(k, "crv"));
    if (crv == NULL || strcmp(crv, "P-256") != 0) {
        serr_set(e, SE_INVAL, "EC key curve must be P-256");
        return NULL;
    }
    unsigned char pt[65], x[48], y[48];
    const char *xs = json_string_value(json_object_get(k, "x"));
    const char *ys = json_string_value(json_object_get(k, "y"));
    if (xs == NULL || ys == NULL || strlen(xs) != 43 || strlen(ys) != 43 ||
        b64url_decode(xs, 43, x) != 32 || b64url_decode(ys, 43, y) != 32) {
        serr_set(e, SE_INVAL, "EC key needs 32-byte base64url x and y");
        return NULL;
    }
    pt[0] = 4;
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    EVP_PKEY *pk = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)),
        OSSL_PARAM_construct_end()};
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        serr_set(e, SE_INVAL, "EC key is not a point on P-256");
        pk = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pk;
}

static jwk_set *set_new(void) {
    jwk_set *s = calloc(1, sizeof(*s));
    if (s) atomic_init(&s->refs, 1);
    return s;
}

/* Why key k cannot be used, or NULL; on NULL, *bit is its algorithm. */
static const char *key_unusable(const jwk_set *s, const json_t *k, const char *kid, int *bit) {
    const char *kty = json_string_value(json_object_get(k, "kty"));
    const char *alg = json_string_value(json_object_get(k, "alg"));
    json_t *use = json_object_get(k, "use");
    if (kid == NULL || !*kid) return "no kid";
    if (strlen(kid) >= sizeof(s->keys[0].kid)) return "kid too long";
    if (strcmp(kid, JWT_LOCAL_KID) == 0) return "kid is reserved for stampd's own secret";
    if (use && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0))
        return "use is not \"sig\"";
    if (kty == NULL) return "no kty";
    *bit = strcmp(kty, "RSA") == 0 ? JWT_ALG_RS256 : strcmp(kty, "EC") == 0 ? JWT_ALG_ES256 : 0;
    if (*bit == 0) {
        /* Named only when known: the document's kty may be anything. */
        if (strcmp(kty, "OKP") == 0) return "kty OKP (Ed25519) is not supported (RSA and EC P-256 are)";
        if (strcmp(kty, "oct") == 0) return "kty oct (a shared secret) is not supported (RSA and EC P-256 are)";
        return "this kty is not supported (RSA and EC P-256 are)";
    }
    if (alg && !((*bit == JWT_ALG_RS256 && strcmp(alg, "RS256") == 0) ||
                 (*bit == JWT_ALG_ES256 && strcmp(alg, "ES256") == 0)))
        return "alg does not fit the kty (RS256 for RSA, ES256 for EC)";
    if (jwk_set_find(s, kid)) return "kid seen before in this document (the first is kept)";
    if (s->n >= JWT_MAX_KEYS) return "too many keys";
    return NULL;
}

int jwk_set_parse(const char *text, size_t len, jwt_warn_fn warn, void *warn_arg, jwk_set **out,
                  serr *e) {
    json_t *doc = NULL;
    int rc = json_load_text(text, len, JSON_REJECT_DUPLICATES, &doc, e);
    if (rc) {
        serr_wrap(e, "jwks");
        return rc;
    }
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        json_decref(doc);
        return serr_set(e, SE_INVAL, "jwks: expected {\"keys\": [...]}");
    }
    jwk_set *s = set_new();
    if (s == NULL) {
        json_decref(doc);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k) {
        char shown[80];
        const char *kid = json_string_value(json_object_get(k, "kid"));
        int bit = 0;
        const char *why = json_is_object(k) ? key_unusable(s, k, kid, &bit) : "not an object";
        if (why) {
            warnf(warn, warn_arg, s->last_skip, "jwks: key %zu (kid %s) skipped: %s", i,
                  kid_shown(kid, shown, sizeof(shown)), why);
            continue;
        }
        serr ke = {0};
        EVP_PKEY *pk = bit == JWT_ALG_RS256 ? jwk_rsa(k, &ke) : jwk_ec(k, &ke);
        if (ke.code == SE_NOMEM) {
            /* The whole document fails: a set missing a good key would
             * replace the one in use and refuse its tokens. */
            EVP_PKEY_free(pk);
            json_decref(doc);
            jwk_set_release(s);
            return serr_set(e, SE_NOMEM, "jwks: out of memory");
        }
        if (pk == NULL) {
            warnf(warn, warn_arg, s->last_skip, "jwks: key %zu (kid %s) skipped: %s", i,
                  kid_shown(kid, shown, sizeof(shown)), ke.msg);
            continue;
        }
        /* key_unusable refused a full set and a kid that does not fit. */
        assert(s->n < JWT_MAX_KEYS);
        jwk *slot = &s->keys[s->n++];
        bool fits = str_copy(slot->kid, sizeof(slot->kid), kid);
        assert(fits);
        (void)fits;
        slot->alg = bit;
        slot->pkey = pk;
    }
    json_decref(doc);
    *out = s;
    return 0;
}

const jwk *jwk_set_find(const jwk_set *s, const char *kid) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->keys[i].kid, kid) == 0) return &s->keys[i];
    return NULL;
}

int jwk_set_count(const jwk_set *s) { return s->n; }

const char *jwk_set_last_skip(const jwk_set *s) { return s->last_skip; }

void jwk_set_release(jwk_set *s) {
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (int i = 0; i < s->n; i++) EVP_PKEY_free(s->keys[i].pkey);
    free(s);
}

/* ---- URLs and fetching ---- */

int jwks_url_check(const char *url, serr *e) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = 0;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = serr_set(e, SE_INVAL, "jwt-jwks-url: not a URL");
    } else if (strcmp(scheme, "https") == 0) {
        rc = 0;
    } else if (strcmp(scheme, "http") != 0) {
        rc = serr_set(e, SE_INVAL, "jwt-jwks-url: https or loopback http only");
    } else if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "[::1]") != 0 &&
               strcmp(host, "localhost") != 0) {
        rc = serr_set(e, SE_INVAL, "jwt-jwks-url: plain http only to 127.0.0.1, [::1] or localhost");
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg) {
    return sbuf_add(arg, ptr, size * nmemb) == 0 ? size * nmemb : 0;
}

static int http_fetch(const jwks_source *s, sbuf *body, serr *e) {
    CURL *h = curl_easy_init();
    if (h == NULL) return serr_set(e, SE_NOMEM, "curl_easy_init failed");
    bool https = str_has_prefix(s->url, "https:");
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, https ? "https" : "http");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(s->timeout_ms < 2000 ? s->timeout_ms : 2000));
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)JWKS_MAX_BYTES);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    if (s->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED)
        return serr_set(e, SE_TOOBIG, "JWKS larger than %d bytes", JWKS_MAX_BYTES);
    if (cc != CURLE_OK) return serr_set(e, SE_UNAVAIL, "%s", curl_easy_strerror(cc));
    if (status != 200) return serr_set(e, SE_UNAVAIL, "HTTP status %ld", status);
    return 0;
}

/* One fetch and parse, no lock held.  *out is the new set on success. */
static int fetch_set(jwks_source *s, jwk_set **out, serr *e) {
    int rc;
    jwk_set *set = NULL;
    if (s->fetch) {
        char *text = NULL;
        size_t len = 0;
        rc = s->fetch(s->fetch_arg, s->url, &text, &len, e);
        if (rc == 0 && len > JWKS_MAX_BYTES) rc = serr_set(e, SE_TOOBIG, "JWKS too large");
        if (rc == 0) rc = jwk_set_parse(text, len, s->warn, s->warn_arg, &set, e);
        free(text);
    } else {
        sbuf body;
        sbuf_init(&body, JWKS_MAX_BYTES);
        rc = http_fetch(s, &body, e);
        if (rc == 0) rc = jwk_set_parse(body.data ? body.data : "", body.len, s->warn, s->warn_arg,
                                        &set, e);
        sbuf_free(&body);
    }
    if (rc == 0 && jwk_set_count(set) == 0) {
        jwk_set_release(set);
        return serr_set(e, SE_INVAL, "no usable key in the document");
    }
    if (rc == 0) *out = set;
    return rc;
}

static void swap_in(jwks_source *s, jwk_set *set) {
    assert(set != NULL);
    pthread_mutex_lock(&s->mu);
    jwk_set *old = s->cur;
    s->cur = set;
    pthread_mutex_unlock(&s->mu);
    jwk_set_release(old);
}

static void abs_deadline(int64_t mono_deadline, struct timespec *ts) {
    ts->tv_sec = (time_t)(mono_deadline / 1000);
    ts->tv_nsec = (long)(mono_deadline % 1000) * 1000000L;
}

/* The refresher: sleeps until the periodic refresh is due or a poke is
 * allowed by the rate limit, then fetches with the lock released. */
static void *refresher(void *arg) {
    jwks_source *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        int64_t now = mono_ms();
        int64_t due = s->next_due;
        if (s->want) {
            int64_t allowed = s->last_attempt + s->min_refresh_ms;
            if (allowed < due) due = allowed;
        }
        if (now < due) {
            struct timespec ts;
            abs_deadline(due, &ts);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        s->want = false;
        s->last_attempt = now;
        pthread_mutex_unlock(&s->mu);
        jwk_set *set = NULL;
        serr e = {0};
        int rc = fetch_set(s, &set, &e);
        if (rc == 0) {
            swap_in(s, set);
        } else {
            char shown[256];
            warnf(s->warn, s->warn_arg, NULL, "jwks: refresh from %s failed, keeping the last good keys: %s",
                  utf8_sanitize(s->url, strlen(s->url), shown, sizeof(shown) - 1), e.msg);
        }
        pthread_mutex_lock(&s->mu);
        s->next_due = mono_ms() + (rc == 0 ? s->refresh_ms : s->min_refresh_ms);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int jwks_source_new(const jwks_source_config *c, jwks_source **out, serr *e) {
    jwks_source *s = calloc(1, sizeof(*s));
    if (s == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->warn = c->warn;
    s->warn_arg = c->warn_arg;
    if (c->text && *c->text && c->url && *c->url) {
        rc = serr_set(e, SE_INVAL, "jwt: set either a JWKS file or a JWKS URL, not both");
        goto fail;
    }
    if (c->url && *c->url) {
        if ((rc = jwks_url_check(c->url, e)) != 0) goto fail;
        s->url = strdup(c->url);
        s->ca_file = c->ca_file && *c->ca_file ? strdup(c->ca_file) : NULL;
        if (s->url == NULL || (c->ca_file && *c->ca_file && s->ca_file == NULL)) {
            rc = serr_set(e, SE_NOMEM, "out of memory");
            goto fail;
        }
        s->refresh_ms = c->refresh_ms > 0 ? c->refresh_ms : 3600 * 1000;
        s->min_refresh_ms = c->min_refresh_ms > 0 ? c->min_refresh_ms : 30 * 1000;
        s->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : 5000;
        s->fetch = c->fetch;
        s->fetch_arg = c->fetch_arg;
        serr fe = {0};
        int frc = fetch_set(s, &s->cur, &fe);
        s->last_attempt = mono_ms();
        s->next_due = s->last_attempt + (frc == 0 ? s->refresh_ms : s->min_refresh_ms);
        if (frc != 0) {
            char shown[256];
            warnf(s->warn, s->warn_arg, NULL, "jwks: first fetch from %s failed (retrying): %s",
                  utf8_sanitize(s->url, strlen(s->url), shown, sizeof(shown) - 1), fe.msg);
        }
    } else if (c->text && *c->text) {
        if ((rc = jwk_set_parse(c->text, strlen(c->text), c->warn, c->warn_arg, &s->cur, e)) != 0)
            goto fail;
    }
    if (s->cur == NULL && (s->cur = set_new()) == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
        goto fail;
    }
    if (s->url) {
        if (pthread_create(&s->thread, NULL, refresher, s) != 0) {
            rc = serr_set(e, SE_INTERNAL, "jwt: cannot start the JWKS refresher");
            goto fail;
        }
        s->thread_started = true;
    }
    *out = s;
    return 0;
fail:
    jwks_source_free(s);
    return rc;
}

jwk_set *jwks_source_acquire(jwks_source *s) {
    pthread_mutex_lock(&s->mu);
    jwk_set *set = s->cur;
    assert(set != NULL); /* the invariant above: set at creation, only ever replaced */
    atomic_fetch_add(&set->refs, 1);
    pthread_mutex_unlock(&s->mu);
    return set;
}

void jwks_source_poke(jwks_source *s) {
    if (s->url == NULL) return;
    pthread_mutex_lock(&s->mu);
    if (!s->want) {
        s->want = true;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void jwks_source_free(jwks_source *s) {
    if (s == NULL) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    jwk_set_release(s->cur);
    free(s->url);
    free(s->ca_file);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
