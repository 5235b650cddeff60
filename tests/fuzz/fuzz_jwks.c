/*
 * fuzz_jwks.c - jwk_set_parse over arbitrary JWKS document bytes; every key
 * it keeps is looked up by its kid, then the set is released.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwks.h"

static void quiet(void *arg, const char *msg) { (void)arg; (void)msg; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (text == NULL) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    jwk_set *s = NULL;
    serr e = {0};
    if (jwk_set_parse(text, size, quiet, NULL, &s, &e) == 0) {
        (void)jwk_set_count(s);
        (void)jwk_set_last_skip(s);
        (void)jwk_set_find(s, "rsa1");
        (void)jwk_set_find(s, "");
        jwk_set_release(s);
    }
    free(text);
    return 0;
}
