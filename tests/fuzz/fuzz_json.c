/*
 * fuzz_json.c - json_parse_user (util/yamljson.h): the API's request bodies
 * and every JSON document a user sends.  Duplicates refused, depth bounded.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/yamljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *v = NULL;
    serr e = {0};
    if (json_parse_user((const char *)data, size, &v, &e) == 0) {
        /* What the API does next with a body: depth, then back to text,
         * which must be accepted again as the same value (a document the
         * API stores and serves is one a client can send back). */
        if (json_depth(v) < 1) abort();
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s != NULL) {
            json_t *back = NULL;
            serr e2 = {0};
            if (json_parse_user(s, strlen(s), &back, &e2) != 0 || !json_equal(v, back)) {
                fprintf(stderr, "fuzz_json: %s does not parse back the same: %s\n", s, e2.msg);
                abort();
            }
            json_decref(back);
            free(s);
        }
    }
    json_decref(v);
    return 0;
}
