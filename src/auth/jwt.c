/*
 * jwt.c - HS256 JSON Web Tokens over OpenSSL's HMAC.
 *
 * Verification order matters: size, shape (three base64url parts), header
 * (alg must equal the configured algorithm, no "crit"), signature, and only
 * then the claims.  Nothing from an unverified payload is ever looked at.
 */
#include "auth/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

enum { ALG_HS256 = 1, ALG_RS256 = 2, ALG_ES256 = 4 };

typedef struct jwk {
    char kid[128];
    int alg;
    EVP_PKEY *pkey;
} jwk;

struct jwt_verifier {
    int accepted; /* ALG_* bits */
    unsigned char *secret;
    size_t secret_len;
    char issuer[256];
    char audience[256];
    jwk keys[JWT_MAX_KEYS];
    int nkeys;
};

static int alg_bit(const char *name) {
    if (strcmp(name, "HS256") == 0) return ALG_HS256;
    if (strcmp(name, "RS256") == 0) return ALG_RS256;
    if (strcmp(name, "ES256") == 0) return ALG_ES256;
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

/* base64url-decoded big-endian integer of a JWK member. */
static BIGNUM *jwk_bn(const json_t *k, const char *member, int *nbytes) {
    const char *v = json_string_value(json_object_get(k, member));
    if (v == NULL || strlen(v) > 1400) return NULL;
    unsigned char buf[1100];
    long n = b64url_decode(v, strlen(v), buf);
    if (n <= 0) return NULL;
    if (nbytes) *nbytes = (int)n;
    return BN_bin2bn(buf, (int)n, NULL);
}

static EVP_PKEY *jwk_rsa(const json_t *k, serr *e) {
    BIGNUM *n = jwk_bn(k, "n", NULL), *ex = jwk_bn(k, "e", NULL);
    EVP_PKEY *pk = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (n == NULL || ex == NULL) {
        serr_set(e, SE_INVAL, "RSA key needs base64url n and e");
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

static int load_jwks(jwt_verifier *v, const char *text, serr *e) {
    json_error_t je;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        json_decref(doc);
        return serr_set(e, SE_INVAL, "jwks: expected {\"keys\": [...]}");
    }
    size_t i;
    json_t *k;
    int rc = 0;
    json_array_foreach(keys, i, k) {
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *kid = json_string_value(json_object_get(k, "kid"));
        const char *alg = json_string_value(json_object_get(k, "alg"));
        const char *use = json_string_value(json_object_get(k, "use"));
        if (use && strcmp(use, "sig") != 0) continue;
        if (kty == NULL || kid == NULL || !*kid || strlen(kid) >= sizeof(v->keys[0].kid)) {
            rc = serr_set(e, SE_INVAL, "jwks: key %zu needs kty and kid", i);
            break;
        }
        int bit = strcmp(kty, "RSA") == 0 ? ALG_RS256 : strcmp(kty, "EC") == 0 ? ALG_ES256 : 0;
        if (bit == 0) {
            rc = serr_set(e, SE_INVAL, "jwks: key %s: kty %s is not RSA or EC", kid, kty);
            break;
        }
        if (alg && alg_bit(alg) != bit) {
            rc = serr_set(e, SE_INVAL, "jwks: key %s: alg %s does not fit kty %s", kid, alg, kty);
            break;
        }
        if (strcmp(kid, JWT_LOCAL_KID) == 0) {
            rc = serr_set(e, SE_INVAL, "jwks: kid %s is reserved for the local secret", kid);
            break;
        }
        for (int j = 0; j < v->nkeys; j++)
            if (strcmp(v->keys[j].kid, kid) == 0) rc = serr_set(e, SE_INVAL, "jwks: kid %s twice", kid);
        if (rc) break;
        if (v->nkeys >= JWT_MAX_KEYS) {
            rc = serr_set(e, SE_LIMIT, "jwks: more than %d keys", JWT_MAX_KEYS);
            break;
        }
        EVP_PKEY *pk = bit == ALG_RS256 ? jwk_rsa(k, e) : jwk_ec(k, e);
        if (pk == NULL) {
            rc = serr_wrap(e, "jwks: key %s", kid);
            break;
        }
        jwk *slot = &v->keys[v->nkeys++];
        str_copy(slot->kid, sizeof(slot->kid), kid);
        slot->alg = bit;
        slot->pkey = pk;
    }
    json_decref(doc);
    return rc;
}

int jwt_verifier_new(const jwt_config *cfg, jwt_verifier **out, serr *e) {
    jwt_verifier *v = calloc(1, sizeof(*v));
    if (v == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = 0;
    char algs[64];
    if (cfg->alg == NULL || !str_copy(algs, sizeof(algs), cfg->alg)) {
        rc = serr_set(e, SE_INVAL, "jwt: no accepted algorithm");
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
    if (v->accepted & ALG_HS256) {
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
    if (cfg->jwks && *cfg->jwks && (rc = load_jwks(v, cfg->jwks, e)) != 0) goto fail;
    if ((v->accepted & (ALG_RS256 | ALG_ES256)) && v->nkeys == 0) {
        rc = serr_set(e, SE_INVAL, "jwt: RS256/ES256 accepted but no JWKS key loaded");
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
    for (int i = 0; i < v->nkeys; i++) EVP_PKEY_free(v->keys[i].pkey);
    free(v);
}

int jwt_verifier_nkeys(const jwt_verifier *v) { return v->nkeys; }

static json_t *decode_part(const char *s, size_t n) {
    unsigned char buf[JWT_MAX_LEN];
    long m = b64url_decode(s, n, buf);
    if (m < 0) return NULL;
    return json_loadb((const char *)buf, (size_t)m, JSON_REJECT_DUPLICATES, NULL);
}

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
    if (bit == ALG_ES256) {
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

int jwt_verify(const jwt_verifier *v, const char *token, int64_t now_s, json_t **claims,
               serr *e) {
    *claims = NULL;
    size_t len = strnlen(token, JWT_MAX_LEN + 1);
    if (len > JWT_MAX_LEN) return serr_set(e, SE_UNAUTH, "token too long");
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return serr_set(e, SE_UNAUTH, "malformed token");

    json_t *hdr = decode_part(token, (size_t)(d1 - token));
    if (!json_is_object(hdr)) {
        json_decref(hdr);
        return serr_set(e, SE_UNAUTH, "malformed token header");
    }
    char alg[16] = "";
    const char *algv = json_string_value(json_object_get(hdr, "alg"));
    if (algv) str_copy(alg, sizeof(alg), algv); /* hdr is released below */
    json_t *kidj = json_object_get(hdr, "kid");
    int bit = algv && strlen(algv) < sizeof(alg) ? alg_bit(alg) : 0;
    bool crit = json_object_get(hdr, "crit") != NULL;
    char kid[128] = "";
    bool kid_ok = kidj == NULL ||
                  (json_is_string(kidj) && str_copy(kid, sizeof(kid), json_string_value(kidj)));
    json_decref(hdr);
    if (bit == 0 || !(v->accepted & bit)) return serr_set(e, SE_UNAUTH, "algorithm not accepted");
    if (crit) return serr_set(e, SE_UNAUTH, "critical header extensions not supported");
    if (!kid_ok) return serr_set(e, SE_UNAUTH, "malformed kid");

    /* The key: by kid; the local secret for no kid or the reserved kid.  The
     * key's algorithm must be the token's. */
    const jwk *key = NULL;
    if (kid[0] && strcmp(kid, JWT_LOCAL_KID) != 0) {
        for (int i = 0; i < v->nkeys; i++)
            if (strcmp(v->keys[i].kid, kid) == 0) key = &v->keys[i];
        if (key == NULL) return serr_set(e, SE_UNAUTH, "unknown key id");
        if (key->alg != bit) return serr_set(e, SE_UNAUTH, "algorithm does not match the key");
    } else if (bit != ALG_HS256) {
        return serr_set(e, SE_UNAUTH, "%s token needs a kid", alg);
    }

    unsigned char sigbuf[JWT_MAX_LEN];
    long siglen = b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), sigbuf);
    if (siglen < 0) return serr_set(e, SE_UNAUTH, "bad signature");
    const unsigned char *signed_part = (const unsigned char *)token;
    size_t signed_len = (size_t)(d2 - token);
    if (bit == ALG_HS256) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (HMAC(EVP_sha256(), v->secret, (int)v->secret_len, signed_part, signed_len, mac,
                 &maclen) == NULL)
            return serr_set(e, SE_INTERNAL, "hmac failed");
        if (siglen != (long)maclen || CRYPTO_memcmp(sigbuf, mac, maclen) != 0)
            return serr_set(e, SE_UNAUTH, "bad signature");
    } else if (pkey_verify(key->pkey, bit, signed_part, signed_len, sigbuf, (size_t)siglen) != 0) {
        return serr_set(e, SE_UNAUTH, "bad signature");
    }

    json_t *p = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!json_is_object(p)) {
        json_decref(p);
        return serr_set(e, SE_UNAUTH, "malformed token payload");
    }
    const char *why = NULL;
    json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf");
    const char *iss = json_string_value(json_object_get(p, "iss"));
    if (!json_is_integer(exp)) why = "token has no expiry";
    else if (json_integer_value(exp) + JWT_LEEWAY_S < now_s) why = "token expired";
    else if (nbf && !json_is_integer(nbf)) why = "malformed nbf claim";
    else if (nbf && json_integer_value(nbf) - JWT_LEEWAY_S > now_s) why = "token not yet valid";
    else if (iss == NULL || strcmp(iss, v->issuer) != 0) why = "wrong issuer";
    else if (!aud_matches(json_object_get(p, "aud"), v->audience)) why = "wrong audience";
    if (why) {
        json_decref(p);
        return serr_set(e, SE_UNAUTH, "%s", why);
    }
    *claims = p;
    return 0;
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
    if (bit == ALG_HS256) {
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
        } else if (bit == ALG_ES256) {
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
    t[n++] = '.';
    b64url_encode(sig, siglen, t + n);
    *token = t;
    return 0;
}

static json_t *b64_member(const unsigned char *p, size_t n) {
    char out[1500];
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
