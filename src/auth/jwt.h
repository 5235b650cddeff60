/*
 * jwt.h - JSON Web Tokens, verified with OpenSSL directly.
 *
 * The accepted algorithm is fixed by the verifier's configuration and by the
 * key, never by the token: an HS256 verifier rejects any header whose alg is
 * not exactly "HS256" before it looks at the signature (so "none" and
 * RS256-vs-HS256 confusion both fail).  MACs are compared with
 * CRYPTO_memcmp.  exp and nbf are checked with a small leeway, iss exactly,
 * aud as a string or an array that contains the expected audience.  Tokens
 * longer than JWT_MAX_LEN are refused unparsed.
 *
 * Threading: a jwt_verifier is immutable after creation; verify may run on
 * any thread at once.
 */
#ifndef STAMP_JWT_H
#define STAMP_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define JWT_MAX_LEN 8192
#define JWT_LEEWAY_S 30

typedef struct jwt_verifier jwt_verifier;

typedef struct jwt_config {
    const char *alg;           /* "HS256" (this issue), later "RS256"/"ES256" */
    const unsigned char *secret; /* HS256 key bytes */
    size_t secret_len;
    const char *issuer;        /* required iss */
    const char *audience;      /* required aud */
} jwt_config;

int jwt_verifier_new(const jwt_config *cfg, jwt_verifier **out, serr *e);
void jwt_verifier_free(jwt_verifier *v);

/* Verify token at time now_s (seconds since the epoch).  On success *claims
 * is the payload object (caller json_decref's it).  Every failure is
 * SE_UNAUTH with a short reason ("token expired", "bad signature",
 * "algorithm not accepted", ...). */
int jwt_verify(const jwt_verifier *v, const char *token, int64_t now_s, json_t **claims,
               serr *e);

/* Mint an HS256 token over claims (borrowed; iat/exp are not added here). */
int jwt_sign_hs256(const unsigned char *secret, size_t secret_len, json_t *claims, char **token,
                   serr *e);

/* base64url without padding. out must hold 4*ceil(n/3)+1 bytes. */
size_t b64url_encode(const unsigned char *in, size_t n, char *out);
/* Returns decoded length or -1 on bad input; out must hold n*3/4+3 bytes. */
long b64url_decode(const char *in, size_t n, unsigned char *out);

#endif
