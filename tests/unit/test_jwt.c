/*
 * test_jwt.c - the verifier accepts exactly the tokens it should: forged,
 * expired, early, wrong-issuer, wrong-audience, alg=none and tampered
 * tokens are all refused with SE_UNAUTH and a reason.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwks.h"
#include "auth/jwt.h"

static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char other[32] = "ffffffffffffffffffffffffffffffff";
#define NOW 1800000000

static jwt_verifier *verifier(void) {
    jwt_config c = {.alg = "HS256", .secret = key, .secret_len = sizeof(key),
                    .issuer = "stampd", .audience = "stamp"};
    jwt_verifier *v = NULL;
    serr e = {0};
    assert_int_equal(jwt_verifier_new(&c, &v, &e), 0);
    return v;
}

static char *mint(const unsigned char *k, json_t *claims) {
    char *t = NULL;
    serr e = {0};
    assert_int_equal(jwt_sign_hs256(k, 32, claims, &t, &e), 0);
    json_decref(claims);
    return t;
}

static void expect_refused(const char *tok, const char *reason) {
    jwt_verifier *v = verifier();
    json_t *c = NULL;
    serr e = {0};
    assert_int_equal(jwt_verify(v, tok, NOW, &c, &e), SE_UNAUTH);
    assert_null(c);
    if (strstr(e.msg, reason) == NULL) fail_msg("reason \"%s\", wanted \"%s\"", e.msg, reason);
    jwt_verifier_free(v);
}

static json_t *good_claims(void) {
    return json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", "stampd", "aud", "stamp", "sub", "ops",
                     "exp", (json_int_t)NOW + 600, "nbf", (json_int_t)NOW - 10);
}

static void test_roundtrip(void **st) {
    char *t = mint(key, good_claims());
    jwt_verifier *v = verifier();
    json_t *c = NULL;
    serr e = {0};
    assert_int_equal(jwt_verify(v, t, NOW, &c, &e), 0);
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "ops");
    json_decref(c);
    jwt_verifier_free(v);
    free(t);
}

static void test_wrong_key(void **st) {
    char *t = mint(other, good_claims());
    expect_refused(t, "bad signature");
    free(t);
}

static void test_expired_and_early(void **st) {
    json_t *c = good_claims();
    json_object_set_new(c, "exp", json_integer(NOW - JWT_LEEWAY_S - 1));
    char *t = mint(key, c);
    expect_refused(t, "expired");
    free(t);
    c = good_claims();
    json_object_set_new(c, "nbf", json_integer(NOW + JWT_LEEWAY_S + 60));
    t = mint(key, c);
    expect_refused(t, "not yet valid");
    free(t);
    c = good_claims();
    json_object_del(c, "exp");
    t = mint(key, c);
    expect_refused(t, "no expiry");
    free(t);
}

static void test_issuer_audience(void **st) {
    json_t *c = good_claims();
    json_object_set_new(c, "iss", json_string("mallory"));
    char *t = mint(key, c);
    expect_refused(t, "issuer");
    free(t);
    c = good_claims();
    json_object_set_new(c, "aud", json_string("other"));
    t = mint(key, c);
    expect_refused(t, "audience");
    free(t);
    /* An array that contains ours is fine. */
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "x", "stamp"));
    t = mint(key, c);
    jwt_verifier *v = verifier();
    json_t *cl = NULL;
    assert_int_equal(jwt_verify(v, t, NOW, &cl, NULL), 0);
    json_decref(cl);
    jwt_verifier_free(v);
    free(t);
}

/* Re-encode a token's header with another alg, keeping payload and MAC. */
static char *with_header(const char *tok, const char *hdr, bool drop_sig) {
    char enc[512];
    b64url_encode((const unsigned char *)hdr, strlen(hdr), enc);
    const char *dot = strchr(tok, '.');
    size_t n = strlen(enc) + strlen(dot) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%s%s", enc, dot);
    if (drop_sig) strrchr(out, '.')[1] = '\0';
    return out;
}

static void test_alg_confusion(void **st) {
    char *t = mint(key, good_claims());
    char *none = with_header(t, "{\"alg\":\"none\",\"typ\":\"JWT\"}", true);
    expect_refused(none, "algorithm not accepted");
    char *rs = with_header(t, "{\"alg\":\"RS256\"}", false);
    expect_refused(rs, "algorithm not accepted");
    char *hs512 = with_header(t, "{\"alg\":\"HS512\"}", false);
    expect_refused(hs512, "algorithm not accepted");
    free(none);
    free(rs);
    free(hs512);
    free(t);
}

static void test_tampered_and_malformed(void **st) {
    char *t = mint(key, good_claims());
    /* Flip one payload character. */
    char *p = strchr(t, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    expect_refused(t, "bad signature");
    free(t);
    expect_refused("abc", "malformed");
    expect_refused("a.b", "malformed");
    expect_refused("a.b.c.d", "malformed");
    expect_refused("!!!.b.c", "malformed");
    char *big = malloc(JWT_MAX_LEN + 10);
    memset(big, 'a', JWT_MAX_LEN + 9);
    big[JWT_MAX_LEN + 9] = '\0';
    expect_refused(big, "too long");
    free(big);
}

static void test_b64url(void **st) {
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[32];
        unsigned char back[32];
        b64url_encode((const unsigned char *)in[i], strlen(in[i]), out);
        assert_string_equal(out, want[i]);
        long n = b64url_decode(out, strlen(out), back);
        assert_int_equal(n, (long)strlen(in[i]));
        assert_memory_equal(back, in[i], (size_t)n);
    }
    unsigned char b[8];
    assert_int_equal(b64url_decode("Zh", 2, b), -1); /* non-zero pad bits */
    assert_int_equal(b64url_decode("Z", 1, b), -1);
    assert_int_equal(b64url_decode("Zm+v", 4, b), -1);
}

static void test_short_secret_refused(void **st) {
    jwt_config c = {.alg = "HS256", .secret = key, .secret_len = 8, .issuer = "i", .audience = "a"};
    jwt_verifier *v = NULL;
    assert_int_equal(jwt_verifier_new(&c, &v, NULL), SE_INVAL);
    c.secret_len = 32;
    c.alg = "none";
    assert_int_equal(jwt_verifier_new(&c, &v, NULL), SE_INVAL);
}

/* ---- RS256 / ES256 with keys from a JWKS document ---- */

static EVP_PKEY *rsa_key, *rsa_other, *ec_key, *rsa_small;

static int keys_setup(void **st) {
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return rsa_key && rsa_other && ec_key && rsa_small ? 0 : -1;
}

static int keys_teardown(void **st) {
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(rsa_small);
    EVP_PKEY_free(ec_key);
    return 0;
}

static char *jwks_text(void) {
    serr e = {0};
    json_t *r = jwt_public_jwk(rsa_key, "rsa-1", &e), *c = jwt_public_jwk(ec_key, "ec-1", &e);
    assert_non_null(r);
    assert_non_null(c);
    json_t *doc = json_pack("{s:[o,o]}", "keys", r, c);
    char *t = json_dumps(doc, 0);
    json_decref(doc);
    return t;
}

static jwt_verifier *asym_verifier(const char *algs) {
    char *jwks = jwks_text();
    jwt_config c = {.alg = algs, .secret = key, .secret_len = sizeof(key), .issuer = "stampd",
                    .audience = "stamp", .jwks = jwks};
    jwt_verifier *v = NULL;
    serr e = {0};
    if (jwt_verifier_new(&c, &v, &e)) fail_msg("verifier: %s", e.msg);
    free(jwks);
    return v;
}

static char *sign_with(const char *alg, EVP_PKEY *k, const char *kid) {
    json_t *claims = good_claims();
    char *t = NULL;
    serr e = {0};
    if (jwt_sign(alg, key, sizeof(key), k, kid, claims, &t, &e)) fail_msg("sign: %s", e.msg);
    json_decref(claims);
    return t;
}

static void check(jwt_verifier *v, char *tok, const char *reason) {
    json_t *c = NULL;
    serr e = {0};
    int rc = jwt_verify(v, tok, NOW, &c, &e);
    if (reason == NULL) {
        if (rc) fail_msg("refused: %s", e.msg);
        assert_string_equal(json_string_value(json_object_get(c, "sub")), "ops");
        json_decref(c);
    } else {
        assert_int_equal(rc, SE_UNAUTH);
        assert_null(c);
        if (strstr(e.msg, reason) == NULL) fail_msg("reason \"%s\", wanted \"%s\"", e.msg, reason);
    }
    free(tok);
}

static void test_rs256_es256(void **st) {
    jwt_verifier *v = asym_verifier("HS256,RS256,ES256");
    assert_int_equal(jwt_verifier_nkeys(v), 2);
    check(v, sign_with("RS256", rsa_key, "rsa-1"), NULL);
    check(v, sign_with("ES256", ec_key, "ec-1"), NULL);
    check(v, sign_with("HS256", NULL, NULL), NULL);             /* the local secret */
    check(v, sign_with("HS256", NULL, JWT_LOCAL_KID), NULL);
    check(v, sign_with("RS256", rsa_other, "rsa-1"), "bad signature");
    check(v, sign_with("RS256", rsa_key, "nobody"), "unknown key id");
    check(v, sign_with("RS256", rsa_key, NULL), "needs a kid");
    check(v, sign_with("ES256", ec_key, "rsa-1"), "does not match the key");
    check(v, sign_with("RS256", rsa_key, "ec-1"), "does not match the key");
    /* A tampered ES256 signature (last byte of r||s). */
    char *t = sign_with("ES256", ec_key, "ec-1");
    char *last = t + strlen(t) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    check(v, t, "bad signature");
    jwt_verifier_free(v);
}

/* The classic confusion: HS256 "signed" with the RSA public key's PEM as
 * the secret, naming the RSA key.  The key fixes RS256, so it is refused
 * before any MAC is computed; without a kid it meets the local secret. */
static void test_hs256_with_public_key_refused(void **st) {
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b, rsa_key), 1);
    char *pem = NULL;
    long n = BIO_get_mem_data(b, &pem);
    json_t *claims = good_claims();
    jwt_verifier *v = asym_verifier("HS256,RS256");
    for (int with_kid = 0; with_kid < 2; with_kid++) {
        char *t = NULL;
        serr e = {0};
        assert_int_equal(jwt_sign("HS256", (const unsigned char *)pem, (size_t)n, NULL,
                                  with_kid ? "rsa-1" : NULL, claims, &t, &e), 0);
        check(v, t, with_kid ? "does not match the key" : "bad signature");
    }
    jwt_verifier_free(v);
    json_decref(claims);
    BIO_free(b);
}

static void test_algorithms_from_config(void **st) {
    /* JWKS loaded but only HS256 accepted: RS256 tokens are refused. */
    jwt_verifier *v = asym_verifier("HS256");
    check(v, sign_with("RS256", rsa_key, "rsa-1"), "algorithm not accepted");
    check(v, sign_with("ES256", ec_key, "ec-1"), "algorithm not accepted");
    jwt_verifier_free(v);
    /* RS256 only: no HS256, not even with the local secret. */
    v = asym_verifier("RS256");
    check(v, sign_with("HS256", NULL, NULL), "algorithm not accepted");
    check(v, sign_with("RS256", rsa_key, "rsa-1"), NULL);
    jwt_verifier_free(v);
}

static void test_jwks_refusals(void **st) {
    static const char *const bad[] = {
        "not json",
        "{\"keys\": {}}",
        "{\"keys\": [{\"kty\": \"RSA\"}]}",                                       /* no kid */
        "{\"keys\": [{\"kty\": \"oct\", \"kid\": \"k\", \"k\": \"AAAA\"}]}",     /* symmetric */
        "{\"keys\": [{\"kty\": \"EC\", \"kid\": \"k\", \"crv\": \"P-384\", \"x\": \"a\", \"y\": \"b\"}]}",
        "{\"keys\": [{\"kty\": \"EC\", \"kid\": \"stampd\", \"crv\": \"P-256\", \"x\": \"a\", \"y\": \"b\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        jwt_config c = {.alg = "RS256,ES256", .issuer = "i", .audience = "a", .jwks = bad[i]};
        jwt_verifier *v = NULL;
        serr e = {0};
        if (jwt_verifier_new(&c, &v, &e) == 0) fail_msg("accepted %s", bad[i]);
    }
    /* A 1024-bit RSA key, an EC point off the curve, and a kid twice. */
    serr e = {0};
    json_t *small = jwt_public_jwk(rsa_small, "small", &e);
    json_t *ec = jwt_public_jwk(ec_key, "ec", &e);
    json_t *off = json_deep_copy(ec);
    json_object_set_new(off, "y", json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    json_t *docs[] = {json_pack("{s:[O]}", "keys", small), json_pack("{s:[O]}", "keys", off)};
    const char *why[] = {"2048", "P-256"};
    for (int i = 0; i < 2; i++) {
        char *t = json_dumps(docs[i], 0);
        jwt_config c = {.alg = "RS256,ES256", .issuer = "i", .audience = "a", .jwks = t};
        jwt_verifier *v = NULL;
        serr ve = {0};
        assert_int_not_equal(jwt_verifier_new(&c, &v, &ve), 0);
        if (strstr(ve.msg, why[i]) == NULL) fail_msg("reason \"%s\", wanted \"%s\"", ve.msg, why[i]);
        free(t);
        json_decref(docs[i]);
    }
    json_decref(small);
    json_decref(ec);
    json_decref(off);
}

/* ---- time claims at the edges of int64 (UBSan: no overflow) ---- */

static jwt_verifier *leeway_verifier(int64_t leeway) {
    jwt_config c = {.alg = "HS256", .secret = key, .secret_len = sizeof(key), .issuer = "stampd",
                    .audience = "stamp", .leeway_s = leeway};
    jwt_verifier *v = NULL;
    serr e = {0};
    if (jwt_verifier_new(&c, &v, &e)) fail_msg("verifier: %s", e.msg);
    return v;
}

/* A correctly signed token whose claim name is set to value. */
static void time_case(jwt_verifier *v, const char *name, json_int_t value, const char *reason) {
    json_t *c = good_claims();
    json_object_set_new(c, name, json_integer(value));
    json_object_set_new(c, "sub", json_string("ops"));
    check(v, mint(key, c), reason);
}

static void test_time_extremes(void **st) {
    jwt_verifier *v = leeway_verifier(30);
    time_case(v, "exp", INT64_MAX, "malformed exp");
    time_case(v, "exp", INT64_MIN, "malformed exp");
    time_case(v, "exp", -1, "malformed exp");
    time_case(v, "exp", JWT_MAX_TIME + 1, "malformed exp");
    time_case(v, "exp", JWT_MAX_TIME, NULL); /* far, but a real date */
    time_case(v, "nbf", INT64_MIN, "malformed nbf");
    time_case(v, "nbf", INT64_MAX, "malformed nbf");
    time_case(v, "nbf", 0, NULL);
    time_case(v, "iat", INT64_MAX, "malformed iat");
    time_case(v, "iat", INT64_MIN, "malformed iat");
    time_case(v, "iat", NOW, NULL);
    time_case(v, "iat", NOW + 30, NULL);
    time_case(v, "iat", NOW + 31, "issued in the future");
    /* The leeway, exactly. */
    time_case(v, "exp", NOW - 30, NULL);
    time_case(v, "exp", NOW - 31, "expired");
    time_case(v, "nbf", NOW + 30, NULL);
    time_case(v, "nbf", NOW + 31, "not yet valid");
    json_t *c = good_claims();
    json_object_set_new(c, "exp", json_real(1e300));
    check(v, mint(key, c), "malformed exp");
    jwt_verifier_free(v);
    /* No leeway at all; an absurd leeway is a configuration error. */
    v = leeway_verifier(0);
    time_case(v, "exp", NOW - 1, "expired");
    time_case(v, "exp", NOW, NULL);
    jwt_verifier_free(v);
    jwt_config bad = {.alg = "HS256", .secret = key, .secret_len = sizeof(key), .issuer = "i",
                      .audience = "a", .leeway_s = INT64_MAX};
    jwt_verifier *bv = NULL;
    assert_int_equal(jwt_verifier_new(&bad, &bv, NULL), SE_INVAL);
    bad.leeway_s = -1;
    assert_int_equal(jwt_verifier_new(&bad, &bv, NULL), SE_INVAL);
    /* A clock outside [0, JWT_MAX_TIME] is refused, not compared. */
    v = leeway_verifier(30);
    json_t *cl = NULL;
    char *t = mint(key, good_claims());
    assert_int_equal(jwt_verify(v, t, INT64_MIN, &cl, NULL), SE_UNAUTH);
    assert_int_equal(jwt_verify(v, t, INT64_MAX, &cl, NULL), SE_UNAUTH);
    free(t);
    jwt_verifier_free(v);
}

/* ---- JWKS keys that cannot be used are skipped, with a warning ---- */

typedef struct warnings {
    int n;
    char text[4096];
} warnings;

static void collect(void *arg, const char *msg) {
    warnings *w = arg;
    size_t used = strlen(w->text);
    snprintf(w->text + used, sizeof(w->text) - used, "%s\n", msg);
    w->n++;
}

static void test_jwks_skips_unusable_keys(void **st) {
    serr e = {0};
    json_t *rsa = jwt_public_jwk(rsa_key, "rsa-1", &e);
    json_t *small = jwt_public_jwk(rsa_small, "small", &e);
    json_t *ec = jwt_public_jwk(ec_key, "ec-1", &e);
    json_t *enc = json_deep_copy(ec);
    json_object_set_new(enc, "kid", json_string("ec-enc"));
    json_object_set_new(enc, "use", json_string("enc"));
    json_t *p384 = json_deep_copy(ec);
    json_object_set_new(p384, "kid", json_string("ec-384"));
    json_object_set_new(p384, "crv", json_string("P-384"));
    json_t *nokid = json_deep_copy(rsa);
    json_object_del(nokid, "kid");
    json_t *dup = json_deep_copy(ec);
    json_object_set_new(dup, "x", json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    json_t *doc = json_pack(
        "{s:[{s:s,s:s,s:s,s:s},O,o,O,o,o,o,{s:s,s:s},o,s]}", "keys", "kty", "OKP", "crv", "Ed25519",
        "kid", "ed-1", "x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", rsa, small, ec, enc,
        p384, nokid, "kty", "oct", "kid", "hmac-1", dup, "junk");
    char *text = json_dumps(doc, 0);
    json_decref(doc);
    json_decref(rsa); /* packed with O: the document held its own references */
    json_decref(ec);
    warnings w = {0};
    jwt_config c = {.alg = "RS256,ES256", .issuer = "stampd", .audience = "stamp", .jwks = text,
                    .warn = collect, .warn_arg = &w};
    jwt_verifier *v = NULL;
    if (jwt_verifier_new(&c, &v, &e)) fail_msg("verifier: %s", e.msg);
    assert_int_equal(jwt_verifier_nkeys(v), 2); /* rsa-1 and ec-1 */
    check(v, sign_with("RS256", rsa_key, "rsa-1"), NULL);
    check(v, sign_with("ES256", ec_key, "ec-1"), NULL);
    check(v, sign_with("RS256", rsa_small, "small"), "unknown key id");
    assert_int_equal(w.n, 8);
    const char *want[] = {"ed-1", "OKP", "small", "2048", "ec-enc", "use", "ec-384",
                          "P-256", "(none)", "hmac-1", "seen before", "not an object"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(w.text, want[i]) == NULL) fail_msg("warnings lack \"%s\":\n%s", want[i], w.text);
    jwt_verifier_free(v);
    free(text);
    /* Only an Ed25519 key: nothing usable.  Fatal when RS256/ES256 is all
     * that is accepted, a warning when HS256 is too. */
    const char *okp = "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed-1\",\"x\":\"AA\"}]}";
    jwt_config only = {.alg = "RS256", .issuer = "i", .audience = "a", .jwks = okp};
    serr oe = {0};
    assert_int_equal(jwt_verifier_new(&only, &v, &oe), SE_INVAL);
    if (strstr(oe.msg, "no usable JWKS key") == NULL || strstr(oe.msg, "ed-1") == NULL)
        fail_msg("message: %s", oe.msg);
    only.alg = "HS256,RS256";
    only.secret = key;
    only.secret_len = sizeof(key);
    assert_int_equal(jwt_verifier_new(&only, &v, &oe), 0);
    assert_int_equal(jwt_verifier_nkeys(v), 0);
    jwt_verifier_free(v);
}

/* ---- who is an operator ---- */

static char *idp_token(EVP_PKEY *k, const char *kid, const char *iss, const char *claim,
                       json_t *role) {
    json_t *claims = good_claims();
    json_object_set_new(claims, "iss", json_string(iss));
    if (claim) json_object_set_new(claims, claim, role);
    char *t = NULL;
    serr e = {0};
    if (jwt_sign(k ? "RS256" : "HS256", key, sizeof(key), k, kid, claims, &t, &e))
        fail_msg("sign: %s", e.msg);
    json_decref(claims);
    return t;
}

/* jwt_grants_operator on a token that must verify. */
static int grants(jwt_verifier *v, char *tok, serr *e) {
    json_t *c = NULL;
    serr ve = {0};
    if (jwt_verify(v, tok, NOW, &c, &ve)) fail_msg("refused: %s", ve.msg);
    int r = jwt_grants_operator(v, tok, c, e);
    json_decref(c);
    free(tok);
    return r;
}

static jwt_verifier *role_verifier(const char *op_issuers, const char *op_kids, const char *claim) {
    serr e = {0};
    json_t *a = jwt_public_jwk(rsa_key, "rsa-1", &e), *b = jwt_public_jwk(rsa_other, "rsa-2", &e);
    json_t *doc = json_pack("{s:[o,o]}", "keys", a, b);
    char *jwks = json_dumps(doc, 0);
    json_decref(doc);
    jwt_config c = {.alg = "HS256,RS256", .secret = key, .secret_len = sizeof(key),
                    .issuer = "stampd", .audience = "stamp", .jwks = jwks,
                    .jwks_issuers = "https://idp.example, https://other.example",
                    .operator_issuers = op_issuers, .operator_kids = op_kids, .role_claim = claim};
    jwt_verifier *v = NULL;
    if (jwt_verifier_new(&c, &v, &e)) fail_msg("verifier: %s", e.msg);
    free(jwks);
    return v;
}

static void test_operator_roles(void **st) {
    const char *idp = "https://idp.example";
    serr e = {0};
    /* Defaults: stampd's own tokens only. */
    jwt_verifier *v = role_verifier(NULL, NULL, NULL);
    assert_int_equal(grants(v, idp_token(NULL, NULL, "stampd", "role", json_string("operator")), &e), 1);
    assert_int_equal(grants(v, idp_token(NULL, JWT_LOCAL_KID, "stampd", "role", json_string("operator")), &e), 1);
    assert_int_equal(grants(v, idp_token(NULL, NULL, "stampd", "role", json_string("tenant")), &e), 0);
    assert_int_equal(grants(v, idp_token(NULL, NULL, "stampd", NULL, NULL), &e), 0);
    assert_int_equal(grants(v, idp_token(rsa_key, "rsa-1", idp, "role", json_string("operator")), &e),
                     SE_FORBIDDEN);
    if (strstr(e.msg, "jwt-operator-issuers") == NULL || strstr(e.msg, idp) == NULL)
        fail_msg("message: %s", e.msg);
    assert_int_equal(grants(v, idp_token(rsa_key, "rsa-1", idp, "role", json_string("viewer")), &e), 0);
    assert_string_equal(e.msg, "");
    /* JWKS tokens need an iss from jwks_issuers; stampd's own, jwt-issuer. */
    check(v, idp_token(rsa_key, "rsa-1", "stampd", NULL, NULL), "wrong issuer");
    check(v, idp_token(NULL, NULL, idp, NULL, NULL), "wrong issuer");
    jwt_verifier_free(v);

    /* An operator issuer. */
    v = role_verifier("https://idp.example", NULL, NULL);
    assert_int_equal(grants(v, idp_token(rsa_key, "rsa-1", idp, "role", json_string("operator")), &e), 1);
    assert_int_equal(grants(v, idp_token(rsa_other, "rsa-2", idp, "role", json_string("operator")), &e), 1);
    assert_int_equal(grants(v, idp_token(rsa_key, "rsa-1", "https://other.example", "role",
                                         json_string("operator")), &e),
                     SE_FORBIDDEN);
    jwt_verifier_free(v);

    /* ... whose operator tokens must come from one key. */
    v = role_verifier("https://idp.example", "rsa-1", NULL);
    assert_int_equal(grants(v, idp_token(rsa_key, "rsa-1", idp, "role", json_string("operator")), &e), 1);
    assert_int_equal(grants(v, idp_token(rsa_other, "rsa-2", idp, "role", json_string("operator")), &e),
                     SE_FORBIDDEN);
    if (strstr(e.msg, "jwt-operator-kids") == NULL) fail_msg("message: %s", e.msg);
    jwt_verifier_free(v);

    /* A custom claim, string or array; stampd's own tokens keep "role". */
    v = role_verifier("https://idp.example", NULL, "roles");
    assert_int_equal(grants(v, idp_token(rsa_key, "rsa-1", idp, "roles",
                                         json_pack("[s,s]", "viewer", "operator")), &e), 1);
    assert_int_equal(grants(v, idp_token(rsa_key, "rsa-1", idp, "roles", json_string("operator")), &e), 1);
    assert_int_equal(grants(v, idp_token(rsa_key, "rsa-1", idp, "role", json_string("operator")), &e), 0);
    assert_int_equal(grants(v, idp_token(NULL, NULL, "stampd", "role", json_string("operator")), &e), 1);
    jwt_verifier_free(v);
}

/* ---- JWKS from a URL: refresh on an unknown kid, keep keys on failure ---- */

typedef struct fake_idp {
    pthread_mutex_t mu;
    char *doc;  /* NULL: the fetch fails */
    int fetches;
} fake_idp;

static int fake_fetch(void *arg, const char *url, char **text, size_t *len, serr *e) {
    fake_idp *f = arg;
    pthread_mutex_lock(&f->mu);
    f->fetches++;
    int rc = 0;
    if (f->doc == NULL) rc = serr_set(e, SE_UNAVAIL, "connection refused");
    else *len = strlen(*text = strdup(f->doc));
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int idp_fetches(fake_idp *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->fetches;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static int64_t mono_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void idp_serve(fake_idp *f, EVP_PKEY *k, const char *kid) {
    char *doc = NULL;
    if (k) {
        json_t *d = json_pack("{s:[o]}", "keys", jwt_public_jwk(k, kid, NULL));
        doc = json_dumps(d, 0);
        json_decref(d);
    }
    pthread_mutex_lock(&f->mu);
    free(f->doc);
    f->doc = doc;
    pthread_mutex_unlock(&f->mu);
}

/* Polls until tok verifies (the refresher runs in the background). */
static bool accepted_within(jwt_verifier *v, const char *tok, int ms) {
    for (int i = 0; i < ms / 10; i++) {
        json_t *c = NULL;
        if (jwt_verify(v, tok, NOW, &c, NULL) == 0) {
            json_decref(c);
            return true;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void test_jwks_url_refresh(void **st) {
    fake_idp f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    idp_serve(&f, rsa_key, "rsa-1");
    warnings w = {0};
    jwt_config c = {.alg = "RS256", .issuer = "stampd", .audience = "stamp",
                    .jwks_url = "https://idp.example/jwks", .jwks_refresh_ms = 3600 * 1000,
                    .jwks_min_refresh_ms = 100, .jwks_fetch = fake_fetch, .jwks_fetch_arg = &f,
                    .warn = collect, .warn_arg = &w};
    jwt_verifier *v = NULL;
    serr e = {0};
    if (jwt_verifier_new(&c, &v, &e)) fail_msg("verifier: %s", e.msg);
    assert_int_equal(idp_fetches(&f), 1);
    check(v, sign_with("RS256", rsa_key, "rsa-1"), NULL);
    /* The provider rotates: the first token under the new kid is refused
     * and asks for a refresh; soon after, it verifies. */
    idp_serve(&f, rsa_other, "rsa-2");
    char *t2 = sign_with("RS256", rsa_other, "rsa-2");
    json_t *cl = NULL;
    assert_int_equal(jwt_verify(v, t2, NOW, &cl, &e), SE_UNAUTH);
    assert_true(accepted_within(v, t2, 3000));
    check(v, sign_with("RS256", rsa_key, "rsa-1"), "unknown key id"); /* rotated out */
    /* The provider fails: the last good keys stay, and it says so. */
    idp_serve(&f, NULL, NULL);
    int before = idp_fetches(&f);
    check(v, sign_with("RS256", rsa_key, "nobody"), "unknown key id");
    for (int i = 0; i < 300 && idp_fetches(&f) == before; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_true(idp_fetches(&f) > before);
    assert_true(accepted_within(v, t2, 1000));
    if (strstr(w.text, "keeping the last good keys") == NULL) fail_msg("warnings: %s", w.text);
    /* Unknown kids do not fetch more often than min_refresh (100ms). */
    char *nobody = sign_with("RS256", rsa_key, "nobody");
    before = idp_fetches(&f);
    int64_t t0 = mono_now_ms();
    for (int i = 0; i < 200; i++) {
        json_t *nc = NULL;
        assert_int_equal(jwt_verify(v, nobody, NOW, &nc, NULL), SE_UNAUTH);
    }
    int64_t took = mono_now_ms() - t0;
    if (idp_fetches(&f) - before > took / 100 + 2)
        fail_msg("%d fetches in %lld ms", idp_fetches(&f) - before, (long long)took);
    free(nobody);
    free(t2);
    jwt_verifier_free(v);
    idp_serve(&f, NULL, NULL);

    /* The first fetch fails and only RS256 is accepted: no start. */
    c.warn = NULL;
    assert_int_not_equal(jwt_verifier_new(&c, &v, &e), 0);
    /* URLs: https, or http on loopback only; never both a file and a URL. */
    assert_int_equal(jwks_url_check("https://idp.example/.well-known/jwks.json", NULL), 0);
    assert_int_equal(jwks_url_check("http://127.0.0.1:8080/jwks", NULL), 0);
    assert_int_equal(jwks_url_check("http://[::1]/jwks", NULL), 0);
    assert_int_equal(jwks_url_check("http://localhost/jwks", NULL), 0);
    assert_int_equal(jwks_url_check("http://idp.example/jwks", NULL), SE_INVAL);
    assert_int_equal(jwks_url_check("http://127.0.0.1@idp.example/jwks", NULL), SE_INVAL);
    assert_int_equal(jwks_url_check("file:///etc/passwd", NULL), SE_INVAL);
    assert_int_equal(jwks_url_check("ftp://idp.example/jwks", NULL), SE_INVAL);
    assert_int_equal(jwks_url_check("not a url", NULL), SE_INVAL);
    c.jwks = "{\"keys\":[]}";
    assert_int_equal(jwt_verifier_new(&c, &v, &e), SE_INVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),          cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_expired_and_early),  cmocka_unit_test(test_issuer_audience),
        cmocka_unit_test(test_alg_confusion),      cmocka_unit_test(test_tampered_and_malformed),
        cmocka_unit_test(test_b64url),             cmocka_unit_test(test_short_secret_refused),
    };
    const struct CMUnitTest asym[] = {
        cmocka_unit_test(test_rs256_es256),
        cmocka_unit_test(test_hs256_with_public_key_refused),
        cmocka_unit_test(test_algorithms_from_config),
        cmocka_unit_test(test_jwks_refusals),
        cmocka_unit_test(test_time_extremes),
        cmocka_unit_test(test_jwks_skips_unusable_keys),
        cmocka_unit_test(test_operator_roles),
        cmocka_unit_test(test_jwks_url_refresh),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + cmocka_run_group_tests(asym, keys_setup, keys_teardown);
}
