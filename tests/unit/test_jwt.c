/*
 * test_jwt.c - the verifier accepts exactly the tokens it should: forged,
 * expired, early, wrong-issuer, wrong-audience, alg=none and tampered
 * tokens are all refused with SE_UNAUTH and a reason.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),          cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_expired_and_early),  cmocka_unit_test(test_issuer_audience),
        cmocka_unit_test(test_alg_confusion),      cmocka_unit_test(test_tampered_and_malformed),
        cmocka_unit_test(test_b64url),             cmocka_unit_test(test_short_secret_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
