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

/* Keys: the local HS256 secret (tokens without a kid, or kid "stampd"),
 * and RSA (RS256) / EC P-256 (ES256) public keys from a JWKS document, each
 * chosen by the token's kid.  A key's type fixes its algorithm; a token
 * whose alg differs from its key's, or is not in the accepted list, is
 * refused before any signature is computed. */
typedef struct jwt_config {
    const char *alg;           /* accepted algorithms: "HS256", "HS256,RS256,ES256" */
    const unsigned char *secret; /* HS256 key bytes (required when HS256 is accepted) */
    size_t secret_len;
    const char *issuer;        /* required iss */
    const char *audience;      /* required aud */
    const char *jwks;          /* JWKS JSON text; required for RS256/ES256 */
} jwt_config;

#define JWT_MAX_KEYS 32
#define JWT_LOCAL_KID "stampd"

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
/* Any algorithm: HS256 with secret, RS256/ES256 with pkey (an EVP_PKEY *
 * holding the private key).  kid may be NULL.  For tests and tools. */
int jwt_sign(const char *alg, const unsigned char *secret, size_t secret_len, void *pkey,
             const char *kid, json_t *claims, char **token, serr *e);
/* The public half of pkey (RSA or EC P-256) as a JWK with kid and alg,
 * for building a JWKS document.  For tests and tools. */
json_t *jwt_public_jwk(void *pkey, const char *kid, serr *e);
/* The number of JWKS keys loaded (for logs). */
int jwt_verifier_nkeys(const jwt_verifier *v);

/* base64url without padding. out must hold 4*ceil(n/3)+1 bytes. */
size_t b64url_encode(const unsigned char *in, size_t n, char *out);
/* Returns decoded length or -1 on bad input; out must hold n*3/4+3 bytes. */
long b64url_decode(const char *in, size_t n, unsigned char *out);

#endif
