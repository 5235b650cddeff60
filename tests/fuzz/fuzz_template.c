/*
 * fuzz_template.c - tpl_parse (core/template.h) of a StampTemplate spec.
 * The bytes are YAML (or JSON); a document with a "spec" mapping is a
 * manifest and its spec is parsed, any other document is taken as the spec.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/template.h"
#include "util/yamljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *doc = NULL;
    serr e = {0};
    if (yaml_to_json((const char *)data, size, &doc, NULL, &e) != 0) return 0;
    json_t *spec = json_object_get(doc, "spec");
    if (!json_is_object(spec)) spec = doc;
    tpl *t = malloc(sizeof(*t));
    if (t != NULL) {
        if (tpl_parse(spec, t, &e) == 0) {
            for (int i = 0; i < t->nparams; i++) (void)tpl_param_find(t, t->params[i].name);
        }
        free(t);
    }
    json_decref(doc);
    return 0;
}
