/*
 * fuzz_http.c - the API's request layer in-process (api_fuzz_request, no
 * network and no handler): path segment checks, route matching, the query
 * string's decoding and its check against the route's declared parameters,
 * and the JSON body's parse.
 *
 * Input: "METHOD PATH?QUERY\n" then the body; no newline means no body.
 * The method is tried as given and, when the line starts "X ", as each of
 * the API's methods (so the corpus need not guess them).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *in = malloc(size + 1);
    if (in == NULL) return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    char *nl = memchr(in, '\n', size);
    const char *body = "";
    size_t blen = 0;
    if (nl) {
        *nl = '\0';
        body = nl + 1;
        blen = size - (size_t)(nl + 1 - in);
    }
    /* the line: method, space, target */
    char *sp = strchr(in, ' ');
    const char *method = "GET", *target = in;
    if (sp) {
        *sp = '\0';
        method = in;
        target = sp + 1;
    }
    char *path = strdup(target);
    if (path == NULL) abort();
    char *q = strchr(path, '?');
    const char *query = "";
    if (q) {
        *q = '\0';
        query = q + 1;
    }
    if (strcmp(method, "X") == 0) {
        static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
            (void)api_fuzz_request(methods[i], path, query, body, blen);
    } else {
        (void)api_fuzz_request(method, path, query, body, blen);
    }
    free(path);
    free(in);
    return 0;
}
