/*
 * fuzz_autoscaler.c - as_spec_parse (autoscale/spec.h) of a StampAutoscaler
 * spec, then the template's name resolved against a few templates and each
 * region's minimum asked.  The bytes are YAML (or JSON); a document with a
 * "spec" mapping is a manifest and its spec is parsed, any other is the spec.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "autoscale/spec.h"
#include "util/yamljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *doc = NULL;
    serr e = {0};
    if (yaml_to_json((const char *)data, size, &doc, NULL, &e) != 0) return 0;
    json_t *spec = json_object_get(doc, "spec");
    if (!json_is_object(spec)) spec = doc;
    as_spec *sp = malloc(sizeof(*sp));
    if (sp != NULL) {
        if (as_spec_parse(spec, sp, &e) == 0) {
            static const char *const tpls[] = {"synaxis", "web", "a"};
            (void)as_spec_resolve_template(sp, tpls, 3, &e);
            static const char *const regions[] = {"eastus", "westeurope", "", "x"};
            for (int i = 0; i < 4; i++) (void)as_spec_region_min(sp, regions[i]);
        }
        free(sp);
    }
    json_decref(doc);
    return 0;
}
