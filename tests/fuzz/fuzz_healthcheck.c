/*
 * fuzz_healthcheck.c - hc_parse (health/health.h) of a StampHealthCheck spec,
 * threshold expressions included, and hc_expr_parse of the raw bytes as one
 * expression.  The bytes are YAML (or JSON); a document with a "spec"
 * mapping is a manifest and its spec is parsed, any other is the spec.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "health/health.h"
#include "util/yamljson.h"

static void holds(const hc_expr *x) {
    static const double vs[] = {0, -1, 1, 0.5, 1e300, -1e300};
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) (void)hc_expr_holds(x, vs[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    serr e = {0};
    /* One expression: the bytes as a C string, as the spec's strings are. */
    if (size < 512) {
        char text[512];
        memcpy(text, data, size);
        text[size] = '\0';
        hc_expr x;
        if (hc_expr_parse(text, &x, &e) == 0) holds(&x);
    }
    json_t *doc = NULL;
    if (yaml_to_json((const char *)data, size, &doc, NULL, &e) != 0) return 0;
    json_t *spec = json_object_get(doc, "spec");
    if (!json_is_object(spec)) spec = doc;
    hc_set *set = malloc(sizeof(*set));
    if (set != NULL) {
        if (hc_parse(spec, set, &e) == 0)
            for (int i = 0; i < set->n; i++)
                for (int j = 0; j < set->checks[i].nexprs; j++) holds(&set->checks[i].exprs[j]);
        free(set);
    }
    json_decref(doc);
    return 0;
}
