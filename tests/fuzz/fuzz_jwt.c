/*
 * fuzz_jwt.c - jwt_verify (and jwt_grants_operator on what it accepts) over
 * arbitrary token bytes, against one verifier built at start-up with an
 * HS256 secret and a JWKS holding an RSA (kid "rsa1") and an EC P-256 (kid
 * "ec1") key.  The keys are fixed here so the seed tokens in corpus/jwt/
 * (signed with them) reach the claim checks.  Test keys only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt.h"

#define NOW 1800000000

static const unsigned char secret[32] = "0123456789abcdef0123456789abcdef";

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

static EVP_PKEY *load(const char *pem) {
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (k == NULL) abort();
    return k;
}

static void quiet(void *arg, const char *msg) { (void)arg; (void)msg; }

static void setup(void) {
    EVP_PKEY *rsa = load(rsa_pem), *ec = load(ec_pem);
    serr e = {0};
    json_t *keys = json_array();
    json_array_append_new(keys, jwt_public_jwk(rsa, "rsa1", &e));
    json_array_append_new(keys, jwt_public_jwk(ec, "ec1", &e));
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *jwks = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    jwt_config c = {.alg = "HS256,RS256,ES256", .secret = secret, .secret_len = sizeof(secret),
                    .issuer = "stampd", .audience = "stamp", .jwks = jwks,
                    .jwks_issuers = "stampd,https://idp.example",
                    .operator_issuers = "https://idp.example", .leeway_s = JWT_LEEWAY_S,
                    .warn = quiet};
    if (jwks == NULL || jwt_verifier_new(&c, &verifier, &e) != 0) abort();
    free(jwks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (verifier == NULL) setup();
    char *tok = malloc(size + 1);
    if (tok == NULL) return 0;
    memcpy(tok, data, size);
    tok[size] = '\0';
    json_t *claims = NULL;
    serr e = {0};
    if (jwt_verify(verifier, tok, NOW, &claims, &e) == 0) {
        serr e2 = {0};
        (void)jwt_grants_operator(verifier, tok, claims, &e2);
        json_decref(claims);
    }
    /* The base64url decoder on its own, over the same bytes. */
    unsigned char *out = malloc(size * 3 / 4 + 3);
    if (out) (void)b64url_decode(tok, size, out);
    free(out);
    free(tok);
    return 0;
}
