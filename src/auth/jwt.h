/*
 * jwt.h - JSON Web Tokens, verified with OpenSSL directly.
 *
 * The accepted algorithm is fixed by the verifier's configuration and by the
 * key, never by the token: an HS256 verifier rejects any header whose alg is
 * not exactly "HS256" before it looks at the signature (so "none" and
 * RS256-vs-HS256 confusion both fail).  MACs are compared with
 * CRYPTO_memcmp.  exp and nbf are checked with a configured leeway, iss
 * exactly, aud as a string or an array that contains the expected audience.
 * Tokens longer than JWT_MAX_LEN are refused unparsed.
 *
 * Time claims (exp, nbf, iat) must be integers in [0, JWT_MAX_TIME]; with
 * the leeway capped at JWT_MAX_LEEWAY_S no comparison can overflow.
 *
 * Issuers: tokens under stampd's own HS256 secret need iss = issuer; tokens
 * under a JWKS key need an iss in jwks_issuers (default: issuer).
 *
 * Roles (jwt_grants_operator): the operator role is honoured from stampd's
 * own HS256 tokens (claim "role", which stampd mints), and from JWKS tokens
 * only when their iss is in operator_issuers (default: none) and, when
 * operator_kids is set, their kid is in it; the claim is role_claim
 * (default "role"), a string or an array of strings.
 *
 * Threading: verify and jwt_grants_operator may run on any thread at once;
 * JWKS keys from a URL are refreshed by a background thread (jwks.h).
 */
#ifndef STAMP_JWT_H
#define STAMP_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define JWT_MAX_LEN 8192
#define JWT_LEEWAY_S 30              /* the default of jwt-leeway */
#define JWT_MAX_LEEWAY_S 86400
#define JWT_MAX_TIME 253402300799LL  /* 9999-12-31T23:59:59Z */

typedef struct jwt_verifier jwt_verifier;

/* Warnings from the verifier (skipped JWKS keys, failed refreshes); the
 * caller logs them.  May be called from the refresher thread. */
typedef void (*jwt_warn_fn)(void *arg, const char *msg);
/* Replaces the HTTP fetch of the JWKS URL (tests): *text is malloc'ed. */
typedef int (*jwt_fetch_fn)(void *arg, const char *url, char **text, size_t *len, serr *e);

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
    const char *jwks;          /* JWKS JSON text, or */
    const char *jwks_url;      /* a jwks_uri (https, or loopback http) */
    const char *jwks_ca_file;  /* CA bundle for jwks_url (default: system) */
    int64_t jwks_refresh_ms;   /* default 1h */
    int64_t jwks_min_refresh_ms; /* an unknown kid refetches at most this often; 30s */
    int64_t jwks_timeout_ms;   /* one fetch; default 5s */
    jwt_fetch_fn jwks_fetch;   /* tests only */
    void *jwks_fetch_arg;
    const char *jwks_issuers;  /* iss accepted under JWKS keys, comma separated; default issuer */
    const char *operator_issuers; /* JWKS iss that may grant operator; default none */
    const char *operator_kids; /* if set, only these JWKS kids may grant operator */
    const char *role_claim;    /* claim read from JWKS tokens; default "role" */
    int64_t leeway_s;          /* clock skew allowed on exp/nbf/iat; 0 = none */
    jwt_warn_fn warn;
    void *warn_arg;
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

/* Whether a token that jwt_verify accepted (token and its claims) carries
 * the operator role and may: 1 yes; 0 no role claimed (e cleared);
 * SE_FORBIDDEN when it claims operator without the right (e says why, fit
 * for a log line); SE_NOMEM when the header could not be read again (no
 * role granted).  Such a token still works as a tenant token. */
int jwt_grants_operator(const jwt_verifier *v, const char *token, const json_t *claims, serr *e);

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
/* The number of JWKS keys loaded now (for logs). */
int jwt_verifier_nkeys(const jwt_verifier *v);

/* base64url without padding. out must hold 4*ceil(n/3)+1 bytes. */
size_t b64url_encode(const unsigned char *in, size_t n, char *out);
/* Returns decoded length or -1 on bad input; out must hold n*3/4+3 bytes. */
long b64url_decode(const char *in, size_t n, unsigned char *out);

#endif
