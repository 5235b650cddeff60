/*
 * jwt.c - JSON Web Tokens over OpenSSL: HS256 with stampd's own secret,
 * RS256/ES256 with keys from a JWKS (jwks.c), and the operator-role rule.
 *
 * Verification order matters: size, shape (three base64url parts), header
 * (alg must be accepted and fit the key, no "crit"), signature, and only
 * then the claims.  Nothing from an unverified payload is ever looked at.
 */
#include "auth/jwt.h"

#include <assert.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwks.h"
#include "util/util.h"
#include "util/yamljson.h"

struct jwt_verifier {
    int accepted; /* JWT_ALG_* bits */
    unsigned char *secret;
    size_t secret_len;
    char issuer[256];
    char audience[256];
    char role_claim[64];
    int64_t leeway_s;
    char *jwks_issuers;     /* NULL: issuer */
    char *operator_issuers; /* NULL: none */
    char *operator_kids;    /* NULL: any kid of an operator issuer */
    jwks_source *keys;      /* never NULL (may hold no key) */
};

static int alg_bit(const char *name) {
    if (strcmp(name, "HS256") == 0) return JWT_ALG_HS256;
    if (strcmp(name, "RS256") == 0) return JWT_ALG_RS256;
    if (strcmp(name, "ES256") == 0) return JWT_ALG_ES256;
    return 0;
}

/* item is one of the comma-separated entries of csv (spaces around an
 * entry are ignored; empty entries never match). */
static bool csv_has(const char *csv, const char *item) {
    if (csv == NULL || item == NULL || *item == '\0') return false;
    size_t n = strlen(item);
    for (const char *p = csv; *p;) {
        p += strspn(p, ", ");
        size_t m = strcspn(p, ",");
        size_t t = m;
        while (t > 0 && p[t - 1] == ' ') t--;
        if (t == n && memcmp(p, item, n) == 0) return true;
        p += m;
    }
    return false;
}

static int dup_list(const char *csv, char **out, serr *e) {
    *out = NULL;
    if (csv == NULL || csv[strspn(csv, ", ")] == '\0') return 0;
    if ((*out = strdup(csv)) == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    return 0;
}

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t b64url_encode(const unsigned char *in, size_t n, char *out) {
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
        out[o++] = b64url_chars[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64val(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

long b64url_decode(const char *in, size_t n, unsigned char *out) {
    if (n % 4 == 1) return -1;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0) return -1;
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    /* Leftover bits must be zero, so every token has one encoding. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return -1;
    return (long)o;
}


/* Long: one check per configuration field, each with its own message. */
int jwt_verifier_new(const jwt_config *cfg, jwt_verifier **out, serr *e) {
    jwt_verifier *v = calloc(1, sizeof(*v));
    if (v == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = 0;
    char algs[64];
    if (cfg->alg == NULL) {
        rc = serr_set(e, SE_INVAL, "jwt: no accepted algorithm");
        goto fail;
    }
    if (!str_copy(algs, sizeof(algs), cfg->alg)) { /* a cut list would drop an algorithm */
        rc = serr_set(e, SE_TOOBIG, "jwt: algorithm list too long (at most %zu bytes)",
                      sizeof(algs) - 1);
        goto fail;
    }
    for (char *t = algs; *t;) {
        size_t n = strcspn(t, ", ");
        char *next = t + n + (t[n] ? 1 : 0);
        t[n] = '\0';
        if (n == 0) {
            t = next;
            continue;
        }
        int bit = alg_bit(t);
        if (bit == 0) {
            rc = serr_set(e, SE_INVAL, "jwt: algorithm %s is not supported (HS256, RS256, ES256 are)", t);
            goto fail;
        }
        v->accepted |= bit;
        t = next;
    }
    if (v->accepted == 0) {
        rc = serr_set(e, SE_INVAL, "jwt: no accepted algorithm");
        goto fail;
    }
    if (v->accepted & JWT_ALG_HS256) {
        if (cfg->secret == NULL || cfg->secret_len < 32) {
            rc = serr_set(e, SE_INVAL, "jwt: an HS256 secret needs at least 32 bytes");
            goto fail;
        }
        if ((v->secret = malloc(cfg->secret_len)) == NULL) {
            rc = serr_set(e, SE_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(v->secret, cfg->secret, cfg->secret_len);
        v->secret_len = cfg->secret_len;
    }
    if (cfg->issuer == NULL || cfg->audience == NULL || !*cfg->issuer || !*cfg->audience) {
        rc = serr_set(e, SE_INVAL, "jwt: issuer and audience are required");
        goto fail;
    }
    if (!str_copy(v->issuer, sizeof(v->issuer), cfg->issuer) ||
        !str_copy(v->audience, sizeof(v->audience), cfg->audience)) {
        rc = serr_set(e, SE_INVAL, "jwt: issuer or audience too long");
        goto fail;
    }
    if (cfg->leeway_s < 0 || cfg->leeway_s > JWT_MAX_LEEWAY_S) {
        rc = serr_set(e, SE_INVAL, "jwt: leeway must be 0 to %d seconds", JWT_MAX_LEEWAY_S);
        goto fail;
    }
    v->leeway_s = cfg->leeway_s;
    const char *rclaim = cfg->role_claim && *cfg->role_claim ? cfg->role_claim : "role";
    if (!str_copy(v->role_claim, sizeof(v->role_claim), rclaim)) {
        rc = serr_set(e, SE_INVAL, "jwt: role claim name too long");
        goto fail;
    }
    if ((rc = dup_list(cfg->jwks_issuers, &v->jwks_issuers, e)) ||
        (rc = dup_list(cfg->operator_issuers, &v->operator_issuers, e)) ||
        (rc = dup_list(cfg->operator_kids, &v->operator_kids, e)))
        goto fail;
    bool asym = v->accepted & (JWT_ALG_RS256 | JWT_ALG_ES256);
    bool have_jwks = (cfg->jwks && *cfg->jwks) || (cfg->jwks_url && *cfg->jwks_url);
    if (asym && !have_jwks) {
        rc = serr_set(e, SE_INVAL, "jwt: RS256/ES256 accepted but no JWKS file or URL is set");
        goto fail;
    }
    jwks_source_config sc = {.text = cfg->jwks,
                             .url = cfg->jwks_url,
                             .ca_file = cfg->jwks_ca_file,
                             .refresh_ms = cfg->jwks_refresh_ms,
                             .min_refresh_ms = cfg->jwks_min_refresh_ms,
                             .timeout_ms = cfg->jwks_timeout_ms,
                             .fetch = cfg->jwks_fetch,
                             .fetch_arg = cfg->jwks_fetch_arg,
                             .warn = cfg->warn,
                             .warn_arg = cfg->warn_arg};
    if ((rc = jwks_source_new(&sc, &v->keys, e)) != 0) goto fail;
    /* Without HS256 a verifier with no key could accept nothing: refuse to
     * start.  With HS256, stampd's own tokens still work (and a URL's keys
     * may come with the next refresh). */
    if (asym && !(v->accepted & JWT_ALG_HS256) && jwt_verifier_nkeys(v) == 0) {
        jwk_set *s = jwks_source_acquire(v->keys);
        rc = serr_set(e, SE_INVAL, "jwt: no usable JWKS key%s%s", *jwk_set_last_skip(s) ? "; last: " : "",
                      jwk_set_last_skip(s));
        jwk_set_release(s);
        goto fail;
    }
    *out = v;
    return 0;
fail:
    jwt_verifier_free(v);
    return rc;
}

void jwt_verifier_free(jwt_verifier *v) {
    if (v == NULL) return;
    if (v->secret) OPENSSL_cleanse(v->secret, v->secret_len);
    free(v->secret);
    free(v->jwks_issuers);
    free(v->operator_issuers);
    free(v->operator_kids);
    jwks_source_free(v->keys);
    free(v);
}

int jwt_verifier_nkeys(const jwt_verifier *v) {
    jwk_set *s = jwks_source_acquire(v->keys);
    int n = jwk_set_count(s);
    jwk_set_release(s);
    return n;
}

/* A base64url JSON part of the token: 0, SE_NOMEM, or SE_INVAL for bytes
 * that are not base64url or not JSON. */
static int decode_part(const char *s, size_t n, json_t **out) {
    *out = NULL;
    unsigned char *buf = malloc(n / 4 * 3 + 3);
    if (buf == NULL) return SE_NOMEM;
    long m = b64url_decode(s, n, buf);
    int rc = m < 0 ? SE_INVAL
                   : json_load_text((const char *)buf, (size_t)m, JSON_REJECT_DUPLICATES, out, NULL);
    free(buf);
    return rc;
}

/* read_header's answer when memory ran out (compared by address). */
static const char hdr_nomem[] = "out of memory";

static bool aud_matches(const json_t *aud, const char *want) {
    if (json_is_string(aud)) return strcmp(json_string_value(aud), want) == 0;
    if (json_is_array(aud)) {
        size_t i;
        json_t *a;
        json_array_foreach(aud, i, a) {
            if (json_is_string(a) && strcmp(json_string_value(a), want) == 0) return true;
        }
    }
    return false;
}

/* ES256 signatures are r||s, 32 bytes each; OpenSSL wants DER. */
static int pkey_verify(EVP_PKEY *pk, int bit, const unsigned char *msg, size_t n,
                       const unsigned char *sig, size_t siglen) {
    unsigned char der[160];
    const unsigned char *s = sig;
    size_t slen = siglen;
    if (bit == JWT_ALG_ES256) {
        if (siglen != 64) return -1;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
        if (es == NULL || r == NULL || ss == NULL || ECDSA_SIG_set0(es, r, ss) != 1) {
            BN_free(r);
            BN_free(ss);
            ECDSA_SIG_free(es);
            return -1;
        }
        unsigned char *p = der;
        int dl = i2d_ECDSA_SIG(es, NULL);
        if (dl <= 0 || dl > (int)sizeof(der)) {
            ECDSA_SIG_free(es);
            return -1;
        }
        i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        s = der;
        slen = (size_t)dl;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
             EVP_DigestVerify(md, s, slen, msg, n) == 1;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

/* The signature over token[0..signed_len) against the local secret (key
 * NULL) or a JWKS key. */
static int check_signature(const jwt_verifier *v, const jwk *key, int bit, const char *token,
                           size_t signed_len, const char *sig64, size_t sig64_len, serr *e) {
    unsigned char *sig = malloc(sig64_len / 4 * 3 + 3);
    if (sig == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    long siglen = b64url_decode(sig64, sig64_len, sig);
    int rc = 0;
    if (siglen < 0) {
        rc = serr_set(e, SE_UNAUTH, "bad signature");
    } else if (key == NULL) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (HMAC(EVP_sha256(), v->secret, (int)v->secret_len, (const unsigned char *)token,
                 signed_len, mac, &maclen) == NULL)
            rc = serr_set(e, SE_INTERNAL, "hmac failed");
        else if (siglen != (long)maclen || CRYPTO_memcmp(sig, mac, maclen) != 0)
            rc = serr_set(e, SE_UNAUTH, "bad signature");
    } else if (pkey_verify(key->pkey, bit, (const unsigned char *)token, signed_len, sig,
                           (size_t)siglen) != 0) {
        rc = serr_set(e, SE_UNAUTH, "bad signature");
    }
    free(sig);
    return rc;
}

/* A NumericDate claim: 0 absent, 1 present in [0, JWT_MAX_TIME], -1 anything
 * else (a real, a string, INT64_MAX...).  Bounding the value here is what
 * keeps the comparisons below free of overflow. */
static int time_claim(const json_t *p, const char *name, int64_t *out) {
    const json_t *j = json_object_get(p, name);
    if (j == NULL) return 0;
    if (!json_is_integer(j)) return -1;
    json_int_t t = json_integer_value(j);
    if (t < 0 || t > JWT_MAX_TIME) return -1;
    *out = (int64_t)t;
    return 1;
}

/* Why the claims are refused, or NULL.  jwks: the token was signed by a JWKS
 * key (not stampd's own secret). */
static const char *claims_refusal(const jwt_verifier *v, const json_t *p, int64_t now_s, bool jwks) {
    int64_t exp = 0, nbf = 0, iat = 0;
    int he = time_claim(p, "exp", &exp), hn = time_claim(p, "nbf", &nbf),
        hi = time_claim(p, "iat", &iat);
    /* now_s comes from the clock; a value outside [0, JWT_MAX_TIME] is a
     * caller bug, refused rather than compared. */
    if (now_s < 0 || now_s > JWT_MAX_TIME) return "clock out of range";
    /* exp + leeway <= JWT_MAX_TIME + JWT_MAX_LEEWAY_S and nbf - leeway >=
     * -JWT_MAX_LEEWAY_S: no overflow either way. */
    if (he == 0) return "token has no expiry";
    if (he < 0) return "malformed exp claim";
    if (exp + v->leeway_s < now_s) return "token expired";
    if (hn < 0) return "malformed nbf claim";
    if (hn > 0 && nbf - v->leeway_s > now_s) return "token not yet valid";
    if (hi < 0) return "malformed iat claim";
    if (hi > 0 && iat - v->leeway_s > now_s) return "token issued in the future";
    const char *iss = json_string_value(json_object_get(p, "iss"));
    if (iss == NULL) return "wrong issuer";
    if (!jwks || v->jwks_issuers == NULL) {
        if (strcmp(iss, v->issuer) != 0) return "wrong issuer";
    } else if (!csv_has(v->jwks_issuers, iss)) {
        return "wrong issuer";
    }
    if (!aud_matches(json_object_get(p, "aud"), v->audience)) return "wrong audience";
    return NULL;
}

/* The header's alg bit (0 if absent or unknown), kid ("" if none) and
 * whether it is acceptable at all. */
static const char *read_header(const char *s, size_t n, int *bit, char *kid, size_t kidcap) {
    json_t *hdr = NULL;
    int rc = decode_part(s, n, &hdr);
    const char *why = NULL;
    *bit = 0;
    kid[0] = '\0';
    if (rc == SE_NOMEM) return hdr_nomem;
    if (!json_is_object(hdr)) {
        json_decref(hdr);
        return "malformed token header";
    }
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    json_t *kidj = json_object_get(hdr, "kid");
    *bit = alg ? alg_bit(alg) : 0;
    if (json_object_get(hdr, "crit") != NULL)
        why = "critical header extensions not supported";
    else if (kidj && !(json_is_string(kidj) && str_copy(kid, kidcap, json_string_value(kidj))))
        why = "malformed kid";
    json_decref(hdr);
    return why;
}

int jwt_verify(const jwt_verifier *v, const char *token, int64_t now_s, json_t **claims,
               serr *e) {
    *claims = NULL;
    size_t len = strnlen(token, JWT_MAX_LEN + 1);
    if (len > JWT_MAX_LEN) return serr_set(e, SE_UNAUTH, "token too long");
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return serr_set(e, SE_UNAUTH, "malformed token");

    int bit = 0;
    char kid[128];
    const char *why = read_header(token, (size_t)(d1 - token), &bit, kid, sizeof(kid));
    /* Not the token's fault: said as what it is, not as "malformed". */
    if (why == hdr_nomem) return serr_set(e, SE_NOMEM, "token check: out of memory");
    if (why && strcmp(why, "malformed token header") == 0) return serr_set(e, SE_UNAUTH, "%s", why);
    if (bit == 0 || !(v->accepted & bit)) return serr_set(e, SE_UNAUTH, "algorithm not accepted");
    if (why) return serr_set(e, SE_UNAUTH, "%s", why);

    /* The key: by kid; the local secret for no kid or the reserved kid.  The
     * key's algorithm must be the token's. */
    jwk_set *set = NULL;
    const jwk *key = NULL;
    if (kid[0] && strcmp(kid, JWT_LOCAL_KID) != 0) {
        set = jwks_source_acquire(v->keys);
        key = jwk_set_find(set, kid);
        if (key == NULL || key->alg != bit) {
            jwk_set_release(set);
            if (key != NULL) return serr_set(e, SE_UNAUTH, "algorithm does not match the key");
            /* Perhaps the provider rotated its keys: ask for a refresh. */
            jwks_source_poke(v->keys);
            return serr_set(e, SE_UNAUTH, "unknown key id");
        }
    } else if (bit != JWT_ALG_HS256) {
        return serr_set(e, SE_UNAUTH, "%s token needs a kid",
                        bit == JWT_ALG_RS256 ? "RS256" : "ES256");
    }
    int rc = check_signature(v, key, bit, token, (size_t)(d2 - token), d2 + 1,
                             len - (size_t)(d2 + 1 - token), e);
    jwk_set_release(set);
    if (rc) return rc;

    json_t *p = NULL;
    if (decode_part(d1 + 1, (size_t)(d2 - d1 - 1), &p) == SE_NOMEM)
        return serr_set(e, SE_NOMEM, "token check: out of memory");
    if (!json_is_object(p)) {
        json_decref(p);
        return serr_set(e, SE_UNAUTH, "malformed token payload");
    }
    if ((why = claims_refusal(v, p, now_s, key != NULL)) != NULL) {
        json_decref(p);
        return serr_set(e, SE_UNAUTH, "%s", why);
    }
    *claims = p;
    return 0;
}

static bool role_has(const json_t *r, const char *want) {
    if (json_is_string(r)) return strcmp(json_string_value(r), want) == 0;
    size_t i;
    json_t *x;
    if (!json_is_array(r)) return false;
    json_array_foreach(r, i, x) {
        if (json_is_string(x) && strcmp(json_string_value(x), want) == 0) return true;
    }
    return false;
}

int jwt_grants_operator(const jwt_verifier *v, const char *token, const json_t *claims, serr *e) {
    if (e) serr_clear(e);
    const char *d1 = token ? strchr(token, '.') : NULL;
    int bit = 0;
    char kid[128];
    const char *why = d1 == NULL || (size_t)(d1 - token) > JWT_MAX_LEN
                          ? "not a token"
                          : read_header(token, (size_t)(d1 - token), &bit, kid, sizeof(kid));
    /* No memory: no role (refused), and said, rather than "not operator". */
    if (why == hdr_nomem) return serr_set(e, SE_NOMEM, "operator role: out of memory");
    if (why != NULL) return 0; /* not a token jwt_verify accepted */
    /* jwt_verify sends a token without a kid, or with the reserved one, to
     * stampd's own HS256 secret and nowhere else. */
    bool local = kid[0] == '\0' || strcmp(kid, JWT_LOCAL_KID) == 0;
    if (local) return bit == JWT_ALG_HS256 && role_has(json_object_get(claims, "role"), "operator");
    if (!role_has(json_object_get(claims, v->role_claim), "operator")) return 0;
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    char is[80], ks[80];
    utf8_sanitize(iss ? iss : "", iss ? strlen(iss) : 0, is, 64);
    utf8_sanitize(kid, strlen(kid), ks, 64);
    if (!csv_has(v->operator_issuers, iss))
        return serr_set(e, SE_FORBIDDEN,
                        "operator role refused: issuer \"%s\" (kid \"%s\") is not in jwt-operator-issuers",
                        is, ks);
    if (v->operator_kids && !csv_has(v->operator_kids, kid))
        return serr_set(e, SE_FORBIDDEN,
                        "operator role refused: key \"%s\" of issuer \"%s\" is not in jwt-operator-kids",
                        ks, is);
    return 1;
}

int jwt_sign_hs256(const unsigned char *secret, size_t secret_len, json_t *claims, char **token,
                   serr *e) {
    return jwt_sign("HS256", secret, secret_len, NULL, NULL, claims, token, e);
}

int jwt_sign(const char *alg, const unsigned char *secret, size_t secret_len, void *pkey,
             const char *kid, json_t *claims, char **token, serr *e) {
    int bit = alg ? alg_bit(alg) : 0;
    if (bit == 0) return serr_set(e, SE_INVAL, "jwt: cannot sign with %s", alg ? alg : "(none)");
    json_t *hdr = json_pack("{s:s,s:s}", "alg", alg, "typ", "JWT");
    if (kid) json_object_set_new(hdr, "kid", json_string(kid));
    char *h = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    char *payload = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hdr);
    int rc = 0;
    char *t = NULL;
    size_t hl = h ? strlen(h) : 0, pl = payload ? strlen(payload) : 0;
    size_t cap = 4 * ((hl + pl + 600) / 3) + 16;
    if (h == NULL || payload == NULL) {
        rc = serr_set(e, SE_INVAL, "jwt: claims not serializable");
    } else if (cap > JWT_MAX_LEN + 1024) {
        rc = serr_set(e, SE_TOOBIG, "jwt: claims too large");
    } else if ((t = malloc(cap)) == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
    }
    if (rc) {
        free(h);
        free(payload);
        return rc;
    }
    size_t n = b64url_encode((const unsigned char *)h, hl, t);
    t[n++] = '.';
    n += b64url_encode((const unsigned char *)payload, pl, t + n);
    free(h);
    free(payload);
    unsigned char sig[600];
    size_t siglen = sizeof(sig);
    if (bit == JWT_ALG_HS256) {
        unsigned int ml = 0;
        if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)t, n, sig, &ml) == NULL)
            rc = serr_set(e, SE_INTERNAL, "hmac failed");
        siglen = ml;
    } else {
        unsigned char der[600];
        size_t dl = sizeof(der);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (pkey == NULL || md == NULL ||
            EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, (EVP_PKEY *)pkey) != 1 ||
            EVP_DigestSign(md, der, &dl, (const unsigned char *)t, n) != 1) {
            rc = serr_set(e, SE_INVAL, "jwt: %s signing failed", alg);
        } else if (bit == JWT_ALG_ES256) {
            const unsigned char *p = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
            const BIGNUM *r = NULL, *s = NULL;
            if (es) ECDSA_SIG_get0(es, &r, &s);
            if (es == NULL || BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32)
                rc = serr_set(e, SE_INTERNAL, "jwt: ES256 signature conversion failed");
            ECDSA_SIG_free(es);
            siglen = 64;
        } else {
            memcpy(sig, der, dl);
            siglen = dl;
        }
        EVP_MD_CTX_free(md);
    }
    if (rc) {
        free(t);
        return rc;
    }
    /* cap counted 600 signature bytes: the largest key's signature fits. */
    assert(siglen <= sizeof(sig) && n + 1 + (siglen + 2) / 3 * 4 < cap);
    t[n++] = '.';
    b64url_encode(sig, siglen, t + n);
    *token = t;
    return 0;
}

static json_t *b64_member(const unsigned char *p, size_t n) {
    char out[1500]; /* 1024 bytes are 1366 base64url characters */
    if (n > 1024) return NULL;
    b64url_encode(p, n, out);
    return json_string(out);
}

json_t *jwt_public_jwk(void *pkey, const char *kid, serr *e) {
    EVP_PKEY *pk = pkey;
    if (pk == NULL || kid == NULL) {
        serr_set(e, SE_INVAL, "jwk: key and kid required");
        return NULL;
    }
    if (EVP_PKEY_is_a(pk, "RSA")) {
        BIGNUM *n = NULL, *x = NULL;
        unsigned char nb[1024], xb[16];
        json_t *o = NULL;
        if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
            EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &x) == 1 && BN_num_bytes(n) <= 1024 &&
            BN_num_bytes(x) <= 16) {
            int nl = BN_bn2bin(n, nb), xl = BN_bn2bin(x, xb);
            o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o}", "kty", "RSA", "kid", kid, "alg", "RS256", "use",
                          "sig", "n", b64_member(nb, (size_t)nl), "e", b64_member(xb, (size_t)xl));
        }
        BN_free(n);
        BN_free(x);
        if (o == NULL) serr_set(e, SE_INVAL, "jwk: cannot read the RSA key");
        return o;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        unsigned char pt[65];
        size_t len = 0;
        char group[32];
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) != 1 ||
            strcmp(group, "prime256v1") != 0 ||
            EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &len) != 1 ||
            len != 65 || pt[0] != 4) {
            serr_set(e, SE_INVAL, "jwk: EC keys must be P-256");
            return NULL;
        }
        return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "kty", "EC", "kid", kid, "alg", "ES256", "use",
                         "sig", "crv", "P-256", "x", b64_member(pt + 1, 32), "y", b64_member(pt + 33, 32));
    }
    serr_set(e, SE_INVAL, "jwk: only RSA and EC P-256 keys");
    return NULL;
}
