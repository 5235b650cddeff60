/*
 * fuzz_json.c - json_parse_user (util/yamljson.h): the API's request bodies
 * and every JSON document a user sends.  Duplicates refused, depth bounded.
 */
#include <stddef.h>
#include <stdint.h>

#include "util/yamljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *v = NULL;
    serr e = {0};
    if (json_parse_user((const char *)data, size, &v, &e) == 0) {
        /* What the API does next with a body: depth, then back to text. */
        (void)json_depth(v);
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        free(s);
    }
    json_decref(v);
    return 0;
}
