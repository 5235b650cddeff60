/*
 * jwks.h - the identity provider's public keys (a JWKS document) for the
 * JWT verifier: parsing into an immutable, reference-counted key set, and a
 * source that holds the current set and, for a jwks_uri, refreshes it.
 *
 * Parsing skips every key it cannot use safely (unknown kty such as OKP,
 * RSA under 2048 bits, EC curves other than P-256, use other than "sig",
 * no kid, the reserved kid, a kid seen before, alg not fitting the kty)
 * and says why through the warn callback, naming the kid.  Only a document
 * that is not {"keys": [...]} is an error.
 *
 * Fetching model: the first fetch of a URL happens in jwks_source_new (the
 * caller's thread, at start-up, bounded by the timeout).  After that one
 * background thread fetches every refresh_ms, and sooner when the verifier
 * met an unknown kid (jwks_source_poke), but never twice within
 * min_refresh_ms.  A failed fetch keeps the last good set (and is retried
 * after min_refresh_ms).  No lock is held across a fetch; API threads never
 * wait for one: the request that met the unknown kid is refused now, and
 * the ones after the refresh succeed.
 *
 * URLs: https, or http on loopback only (127.0.0.1, [::1], localhost);
 * no redirects; responses capped at JWKS_MAX_BYTES.
 *
 * Threading: acquire/poke from any thread; a set is immutable and lives
 * until its last holder releases it.
 */
#ifndef STAMP_JWKS_H
#define STAMP_JWKS_H

#include <openssl/evp.h>
#include <stdint.h>

#include "auth/jwt.h"

enum { JWT_ALG_HS256 = 1, JWT_ALG_RS256 = 2, JWT_ALG_ES256 = 4 };

#define JWKS_MAX_BYTES (1 << 20)

typedef struct jwk {
    char kid[128];
    int alg; /* JWT_ALG_RS256 or JWT_ALG_ES256 */
    EVP_PKEY *pkey;
} jwk;

typedef struct jwk_set jwk_set;

/* Parse a JWKS document; unusable keys are skipped with a warning. */
int jwk_set_parse(const char *text, size_t len, jwt_warn_fn warn, void *warn_arg, jwk_set **out,
                  serr *e);
const jwk *jwk_set_find(const jwk_set *s, const char *kid);
int jwk_set_count(const jwk_set *s);
/* The reason the last key was skipped ("" if none), for error messages. */
const char *jwk_set_last_skip(const jwk_set *s);
void jwk_set_release(jwk_set *s);

/* 0 when url may be fetched (https, or http to a loopback host). */
int jwks_url_check(const char *url, serr *e);

typedef struct jwks_source jwks_source;

typedef struct jwks_source_config {
    const char *text;     /* a JWKS document (from a file), or */
    const char *url;      /* a jwks_uri, fetched and refreshed */
    const char *ca_file;  /* CA bundle for https (default: the system's) */
    int64_t refresh_ms;   /* default 1h */
    int64_t min_refresh_ms; /* default 30s */
    int64_t timeout_ms;   /* one fetch; default 5s */
    jwt_fetch_fn fetch;   /* tests: replaces the HTTP fetch */
    void *fetch_arg;
    jwt_warn_fn warn;
    void *warn_arg;
} jwks_source_config;

/* A failed first fetch is not an error here (warned; the set is empty and
 * the background thread retries); a malformed document from text is. */
int jwks_source_new(const jwks_source_config *c, jwks_source **out, serr *e);
/* The current set (never NULL); jwk_set_release it when done. */
jwk_set *jwks_source_acquire(jwks_source *s);
/* An unknown kid was seen: ask for a refresh (rate-limited). */
void jwks_source_poke(jwks_source *s);
void jwks_source_free(jwks_source *s);

#endif
