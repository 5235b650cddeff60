/*
 * fuzz_obs_spec.c - obs_spec_parse (obs/obs.h) of an ObservabilityPlatform
 * spec against the shipped catalog (deploy/observability/catalog.yaml, loaded
 * once), and against no catalog (the shape alone).  The bytes are YAML (or
 * JSON); a document with a "spec" mapping is a manifest and its spec is
 * parsed, any other is the spec.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "obs/obs.h"
#include "util/yamljson.h"

static obs_catalog *cat;

static void drop_catalog(void) { obs_catalog_free(cat); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    serr e = {0};
    if (obs_catalog_load(STAMP_SRC_DIR "/deploy/observability/catalog.yaml", "/opt/stamp/observability",
                         &cat, &e) != 0) {
        fprintf(stderr, "fuzz_obs_spec: the shipped catalog: %s\n", e.msg);
        abort();
    }
    atexit(drop_catalog);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *doc = NULL;
    serr e = {0};
    if (yaml_to_json((const char *)data, size, &doc, NULL, &e) != 0) return 0;
    json_t *spec = json_object_get(doc, "spec");
    if (!json_is_object(spec)) spec = doc;
    obs_spec *sp = malloc(sizeof(*sp));
    if (sp != NULL) {
        if (obs_spec_parse(spec, cat, sp, &e) == 0)
            for (int i = 0; i < sp->n; i++) (void)obs_spec_comp(sp, sp->c[i].name);
        (void)obs_spec_parse(spec, NULL, sp, &e);
        free(sp);
    }
    json_decref(doc);
    return 0;
}
