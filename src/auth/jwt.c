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
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

struct jwt_verifier {
    unsigned char *secret;
    size_t secret_len;
    char issuer[256];
    char audience[256];
};

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

int jwt_verifier_new(const jwt_config *cfg, jwt_verifier **out, serr *e) {
    if (cfg->alg == NULL || strcmp(cfg->alg, "HS256") != 0)
        return serr_set(e, SE_INVAL, "jwt: algorithm %s is not supported (HS256 is)",
                        cfg->alg ? cfg->alg : "(none)");
    if (cfg->secret == NULL || cfg->secret_len < 32)
        return serr_set(e, SE_INVAL, "jwt: an HS256 secret needs at least 32 bytes");
    if (cfg->issuer == NULL || cfg->audience == NULL || !*cfg->issuer || !*cfg->audience)
        return serr_set(e, SE_INVAL, "jwt: issuer and audience are required");
    jwt_verifier *v = calloc(1, sizeof(*v));
    if (v == NULL || (v->secret = malloc(cfg->secret_len)) == NULL) {
        free(v);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    memcpy(v->secret, cfg->secret, cfg->secret_len);
    v->secret_len = cfg->secret_len;
    if (!str_copy(v->issuer, sizeof(v->issuer), cfg->issuer) ||
        !str_copy(v->audience, sizeof(v->audience), cfg->audience)) {
        jwt_verifier_free(v);
        return serr_set(e, SE_INVAL, "jwt: issuer or audience too long");
    }
    *out = v;
    return 0;
}

void jwt_verifier_free(jwt_verifier *v) {
    if (v == NULL) return;
    OPENSSL_cleanse(v->secret, v->secret_len);
    free(v->secret);
    free(v);
}

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
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    bool alg_ok = alg && strcmp(alg, "HS256") == 0;
    bool crit = json_object_get(hdr, "crit") != NULL;
    json_decref(hdr);
    if (!alg_ok) return serr_set(e, SE_UNAUTH, "algorithm not accepted");
    if (crit) return serr_set(e, SE_UNAUTH, "critical header extensions not supported");

    unsigned char mac[EVP_MAX_MD_SIZE], sig[JWT_MAX_LEN];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha256(), v->secret, (int)v->secret_len, (const unsigned char *)token,
             (size_t)(d2 - token), mac, &maclen) == NULL)
        return serr_set(e, SE_INTERNAL, "hmac failed");
    long siglen = b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), sig);
    if (siglen != (long)maclen || CRYPTO_memcmp(sig, mac, maclen) != 0)
        return serr_set(e, SE_UNAUTH, "bad signature");

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
    static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *payload = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    if (payload == NULL) return serr_set(e, SE_INVAL, "jwt: claims not serializable");
    size_t plen = strlen(payload);
    size_t cap = 4 * ((sizeof(hdr) + plen + 32 + 6) / 3) + 16;
    if (cap > JWT_MAX_LEN) {
        free(payload);
        return serr_set(e, SE_TOOBIG, "jwt: claims too large");
    }
    char *t = malloc(cap);
    if (t == NULL) {
        free(payload);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    size_t n = b64url_encode((const unsigned char *)hdr, sizeof(hdr) - 1, t);
    t[n++] = '.';
    n += b64url_encode((const unsigned char *)payload, plen, t + n);
    free(payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)t, n, mac, &maclen) ==
        NULL) {
        free(t);
        return serr_set(e, SE_INTERNAL, "hmac failed");
    }
    t[n++] = '.';
    b64url_encode(mac, maclen, t + n);
    *token = t;
    return 0;
}
