/*
 * stamp-jwt - keys and tokens for stampd's RS256/ES256 support: make a key
 * pair, publish public keys as a JWKS file for --set jwt-jwks=FILE, and
 * sign a token the way an identity provider would.  The tests use it to
 * mint good tokens and forged ones.
 *
 *   stamp-jwt keygen rsa|ec KEY.pem        private key (0600)
 *   stamp-jwt pubkey KEY.pem               its public key, PEM
 *   stamp-jwt jwks KID=KEY.pem...          JWKS document of the public keys
 *   stamp-jwt sign ALG KEY KID CLAIMS      token; ALG RS256|ES256 with a PEM
 *                                          key, HS256 with KEY a file of
 *                                          secret bytes; KID "-" for none
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "util/util.h"

static int usage(void) {
    fputs("usage: stamp-jwt keygen rsa|ec KEY.pem | pubkey KEY.pem | jwks KID=KEY.pem... |\n"
          "       sign RS256|ES256|HS256 KEY KID|- CLAIMS-JSON\n",
          stderr);
    return 2;
}

static int fail(const char *what, const char *detail) {
    fprintf(stderr, "stamp-jwt: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 1;
}

static EVP_PKEY *load_key(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

static int keygen(const char *type, const char *path) {
    EVP_PKEY *k = NULL;
    if (strcmp(type, "rsa") == 0) k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else if (strcmp(type, "ec") == 0) k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else return usage();
    if (k == NULL) return fail("key generation failed", type);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ok = f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    if (f) ok = fclose(f) == 0 && ok;
    else if (fd >= 0) close(fd);
    EVP_PKEY_free(k);
    return ok ? 0 : fail("cannot write", path);
}

static int pubkey(const char *path) {
    EVP_PKEY *k = load_key(path);
    if (k == NULL) return fail("cannot read a private key from", path);
    int ok = PEM_write_PUBKEY(stdout, k) == 1;
    EVP_PKEY_free(k);
    return ok ? 0 : fail("cannot write the public key", NULL);
}

static int jwks(int n, char **specs) {
    json_t *keys = json_array();
    for (int i = 0; i < n; i++) {
        char kid[128];
        const char *eq = strchr(specs[i], '=');
        if (eq == NULL || eq == specs[i] || (size_t)(eq - specs[i]) >= sizeof(kid)) return usage();
        snprintf(kid, sizeof(kid), "%.*s", (int)(eq - specs[i]), specs[i]); /* fits: checked above */
        EVP_PKEY *k = load_key(eq + 1);
        if (k == NULL) return fail("cannot read a private key from", eq + 1);
        serr e = {0};
        json_t *jwk = jwt_public_jwk(k, kid, &e);
        EVP_PKEY_free(k);
        if (jwk == NULL) return fail(e.msg, eq + 1);
        json_array_append_new(keys, jwk);
    }
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *t = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    puts(t ? t : "{}");
    free(t);
    json_decref(doc);
    return 0;
}

static int sign(const char *alg, const char *keyfile, const char *kid, const char *claims_text) {
    json_error_t je;
    json_t *claims = json_loads(claims_text, 0, &je);
    if (!json_is_object(claims)) return fail("claims must be a JSON object", je.text);
    EVP_PKEY *k = NULL;
    char *secret = NULL;
    size_t slen = 0;
    serr e = {0};
    if (strcmp(alg, "HS256") == 0) {
        if (read_file(keyfile, 1 << 20, &secret, &slen, &e)) return fail(e.msg, NULL);
    } else if ((k = load_key(keyfile)) == NULL) {
        return fail("cannot read a private key from", keyfile);
    }
    char *tok = NULL;
    int rc = jwt_sign(alg, (const unsigned char *)secret, slen, k, strcmp(kid, "-") ? kid : NULL,
                      claims, &tok, &e);
    json_decref(claims);
    EVP_PKEY_free(k);
    free(secret);
    if (rc) return fail(e.msg, NULL);
    puts(tok);
    free(tok);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    if (strcmp(argv[1], "keygen") == 0 && argc == 4) return keygen(argv[2], argv[3]);
    if (strcmp(argv[1], "pubkey") == 0 && argc == 3) return pubkey(argv[2]);
    if (strcmp(argv[1], "jwks") == 0 && argc >= 3) return jwks(argc - 2, argv + 2);
    if (strcmp(argv[1], "sign") == 0 && argc == 6) return sign(argv[2], argv[3], argv[4], argv[5]);
    return usage();
}
